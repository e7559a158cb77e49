//! What the admin commands print: the API's answer as pretty JSON with `--json`, else tables and
//! lines for people. Every function here only formats a JSON answer; the requests are made in
//! `commands`. Statuses are printed as the API spells them and recognised through the enums of
//! [`crate::status`].

use std::str::FromStr;

use anyhow::Result;
use serde_json::Value;

use super::out::escape;
use crate::status::{CampaignDeviceStatus, CampaignState};

/// A status field of an answer as its enum; `None` when it is absent or unknown.
pub(super) fn status<T: FromStr>(v: &Value) -> Option<T> {
    v.as_str()?.parse().ok()
}

/// A campaign's count of devices with `status` (in `totals` or a wave's `counts`).
fn count(counts: &Value, status: CampaignDeviceStatus) -> u64 {
    counts[status.as_str()].as_u64().unwrap_or(0)
}

pub(super) fn print_json(v: &Value) -> Result<()> {
    out!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

// ---- clients and device management ----

pub(super) fn clients(v: &Value) {
    let list = v.as_array().cloned().unwrap_or_default();
    // The node column only when several servers share the fleet (several owners).
    let owners: std::collections::BTreeSet<&str> = list
        .iter()
        .filter_map(|r| r["owner_node"].as_str())
        .collect();
    let nodes = owners.len() > 1;
    let node_of = |r: &Value| match nodes {
        true => format!("{:<20} ", escape(r["owner_node"].as_str().unwrap_or("-"))),
        false => String::new(),
    };
    out!(
        "{:<24} {:<28} {:>8} {:<6} {:<5} {}objects",
        "endpoint",
        "address",
        "lifetime",
        "lwm2m",
        "queue",
        if nodes {
            format!("{:<20} ", "node")
        } else {
            String::new()
        }
    );
    for r in &list {
        out!(
            "{:<24} {:<28} {:>8} {:<6} {:<5} {}{}",
            escape(r["endpoint"].as_str().unwrap_or("")),
            r["address"].as_str().unwrap_or(""),
            r["lifetime_s"].to_string(),
            r["lwm2m_version"].as_str().unwrap_or(""),
            if r["queue_mode"] == true { "yes" } else { "no" },
            node_of(r),
            escape(r["objects"].as_str().unwrap_or(""))
        );
    }
    out!("{} registered", list.len());
}

/// `/3/0/3  Firmware Version       = 1.0.0`, with units and what an enumerated value means.
pub(super) fn values(v: &Value) {
    for item in v["values"].as_array().cloned().unwrap_or_default() {
        let mut value = match &item["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let Some(u) = item["units"].as_str() {
            value.push_str(&format!(" {u}"));
        }
        if let Some(m) = item["meaning"].as_str() {
            value.push_str(&format!(" ({m})"));
        }
        out!(
            "{:<12} {:<34} = {value}",
            item["path"].as_str().unwrap_or(""),
            item["name"].as_str().unwrap_or("")
        );
    }
}

/// A Discover answer, one line per link: path, name, operations, type, units, attributes.
pub(super) fn discovered(v: &Value) {
    for r in v["resources"].as_array().cloned().unwrap_or_default() {
        let attrs: Vec<String> = r["attributes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| match v.as_str() {
                        Some(v) => format!("{k}={v}"),
                        None => k.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out!(
            "{:<12} {:<34} {:<3} {:<9} {:<6} {}",
            r["path"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or("(no model)"),
            r["operations"].as_str().unwrap_or(""),
            r["type"].as_str().unwrap_or(""),
            r["units"].as_str().unwrap_or(""),
            attrs.join(" ")
        );
    }
}

// ---- object models ----

pub(super) fn models(v: &Value) {
    out!(
        "{:>6}  {:<34} {:<8} {:>9}  {:<8} urn",
        "id",
        "name",
        "version",
        "resources",
        "source"
    );
    for m in v.as_array().cloned().unwrap_or_default() {
        out!(
            "{:>6}  {:<34} {:<8} {:>9}  {:<8} {}",
            m["id"].as_u64().unwrap_or(0),
            m["name"].as_str().unwrap_or(""),
            m["object_version"].as_str().unwrap_or(""),
            m["resources"].as_u64().unwrap_or(0),
            m["source"].as_str().unwrap_or(""),
            m["urn"].as_str().unwrap_or("")
        );
    }
}

pub(super) fn model(v: &Value) {
    out!(
        "object {} {} (version {}, {} instances, {}; {})",
        v["id"],
        v["name"].as_str().unwrap_or(""),
        v["object_version"].as_str().unwrap_or(""),
        if v["multiple"] == true {
            "multiple"
        } else {
            "single"
        },
        if v["mandatory"] == true {
            "mandatory"
        } else {
            "optional"
        },
        v["source"].as_str().unwrap_or("")
    );
    out!(
        "{:>6}  {:<34} {:<3} {:<9} {:<6} {:<9} range",
        "id",
        "name",
        "ops",
        "type",
        "units",
        "instances"
    );
    for r in v["resources"].as_array().cloned().unwrap_or_default() {
        out!(
            "{:>6}  {:<34} {:<3} {:<9} {:<6} {:<9} {}",
            r["id"].as_u64().unwrap_or(0),
            r["name"].as_str().unwrap_or(""),
            r["operations"].as_str().unwrap_or(""),
            r["type"].as_str().unwrap_or(""),
            r["units"].as_str().unwrap_or(""),
            if r["multiple"] == true {
                "multiple"
            } else {
                "single"
            },
            r["range"].as_str().unwrap_or("")
        );
    }
}

/// The response code of a write or an execute.
pub(super) fn code(v: &Value) {
    out!("{}", v["code"].as_str().unwrap_or("done"));
}

// ---- releases ----

pub(super) fn release(v: &Value, json: bool) -> Result<()> {
    if json {
        return print_json(v);
    }
    let r = &v["release"];
    out!(
        "{} {} (version {}, {} bytes){}",
        if v["new"] == true {
            "added release"
        } else {
            "release already present:"
        },
        v["id"].as_str().unwrap_or(""),
        r["version"].as_str().unwrap_or("-"),
        r["image_size"],
        r["sequence_number"]
            .as_u64()
            .map(|s| format!(", sequence {s}"))
            .unwrap_or_default()
            + &delta_note(r).map(|n| format!(", {n}")).unwrap_or_default()
            + &r["max_block_size"]
                .as_u64()
                .map(|n| format!(", served in blocks of at most {n} bytes"))
                .unwrap_or_default()
    );
    Ok(())
}

pub(super) fn releases(v: &Value) {
    out!(
        "{:<17} {:<6} {:<12} {:>9} {:>10}  uri",
        "id",
        "kind",
        "version",
        "sequence",
        "bytes"
    );
    for r in v.as_array().cloned().unwrap_or_default() {
        out!(
            "{:<17} {:<6} {:<12} {:>9} {:>10}  {}",
            r["id"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            r["version"].as_str().unwrap_or("-"),
            r["sequence_number"]
                .as_u64()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            r["image_size"],
            r["image_uri"].as_str().unwrap_or("-")
        );
        if let Some(note) = delta_note(&r) {
            out!("{:<17} {note}", "");
        }
    }
}

/// For a delta release: its precursor and what the patch saves, e.g. `delta from 1.0.0
/// (0123456789abcdef), patch 1234 of 56789 bytes (2.2 %)`.
fn delta_note(r: &Value) -> Option<String> {
    let pre = r["precursor_sha256"].as_str()?;
    let short = pre.get(..16).unwrap_or(pre);
    let from = match r["precursor_version"].as_str() {
        Some(v) => format!("{v} ({short})"),
        None => format!("{short}, version not known here"),
    };
    let patch = r["image_size"].as_u64().unwrap_or(0);
    let image = r["new_image_size"].as_u64().unwrap_or(0);
    let percent = if image == 0 {
        String::new()
    } else {
        format!(" ({:.1} %)", patch as f64 * 100.0 / image as f64)
    };
    Some(format!(
        "delta from {from}, patch {patch} of {image} bytes{percent}"
    ))
}

// ---- jobs ----

/// One device of a job: status, Object 5 State and Result in words, version, what it was sent
/// (a delta, or the full image after a refused one), error.
pub(super) fn device_line(d: &Value) -> String {
    let sent = match (d["bytes_saved"].as_u64(), d["fallback"].as_str()) {
        (Some(saved), _) => format!(", delta (saves {saved} bytes)"),
        (None, Some(why)) => format!(", full image after the delta: {why}"),
        (None, None) => String::new(),
    };
    format!(
        "{:<11} {}{}{sent}{}",
        d["status"].as_str().unwrap_or(""),
        crate::words::object5(d["state"].as_i64(), d["result"].as_i64()),
        d["pkg_version"]
            .as_str()
            .map(|v| format!(" version {v}"))
            .unwrap_or_default(),
        d["error"]
            .as_str()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    )
}

pub(super) fn jobs(v: &Value) {
    for j in v.as_array().cloned().unwrap_or_default() {
        let n = j["devices"].as_array().map(Vec::len).unwrap_or(0);
        out!(
            "job {:<5} release {} {:<10} {n} device(s)",
            j["id"],
            j["release_id"].as_str().unwrap_or(""),
            j["status"].as_str().unwrap_or("")
        );
    }
}

pub(super) fn job(job: i64, v: &Value) {
    out!(
        "job {job} ({}) release {}",
        v["status"].as_str().unwrap_or(""),
        v["release_id"].as_str().unwrap_or("")
    );
    for d in v["devices"].as_array().cloned().unwrap_or_default() {
        out!(
            "  {:<24} {}",
            escape(d["endpoint"].as_str().unwrap_or("")),
            device_line(&d)
        );
    }
}

// ---- campaigns ----

pub(super) fn campaign_created(v: &Value) {
    let camp = &v["campaign"];
    out!(
        "campaign {} ({}): release {}, {} devices in waves {}",
        v["id"],
        camp["state"].as_str().unwrap_or(""),
        camp["release_id"].as_str().unwrap_or(""),
        count(&camp["totals"], CampaignDeviceStatus::Queued)
            + count(&camp["totals"], CampaignDeviceStatus::Running),
        wave_sizes_text(camp)
    );
    out!(
        "follow it with: lwm2m-server campaign show {} --watch",
        v["id"]
    );
}

fn wave_sizes_text(camp: &Value) -> String {
    camp["waves"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| format!("{}%:{}", w["percent"], w["size"]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// `3 ok, 1 failed, 2 running, 10 queued`, and the other outcomes where there are any.
pub(super) fn counts_text(c: &Value) -> String {
    use CampaignDeviceStatus::*;
    let mut s = format!(
        "{} ok, {} failed, {} running, {} queued",
        count(c, Succeeded),
        count(c, Failed),
        count(c, Running),
        count(c, Queued)
    );
    for k in [Unreachable, Cancelled, Skipped] {
        if count(c, k) > 0 {
            s.push_str(&format!(", {} {k}", count(c, k)));
        }
    }
    s
}

pub(super) fn campaigns(v: &Value) {
    out!(
        "{:<5} {:<10} {:<17} {:<6} {:>8}  progress",
        "id",
        "state",
        "release",
        "wave",
        "devices"
    );
    for camp in v.as_array().cloned().unwrap_or_default() {
        let waves = camp["waves"].as_array().map(Vec::len).unwrap_or(0);
        let total: u64 = CampaignDeviceStatus::ALL
            .iter()
            .map(|&k| count(&camp["totals"], k))
            .sum();
        out!(
            "{:<5} {:<10} {:<17} {:<6} {:>8}  {}",
            camp["id"],
            camp["state"].as_str().unwrap_or(""),
            camp["release_id"].as_str().unwrap_or(""),
            format!(
                "{}/{}",
                camp["current_wave"].as_u64().unwrap_or(0) + 1,
                waves
            ),
            total,
            counts_text(&camp["totals"])
        );
    }
}

pub(super) fn campaign_header(v: &Value) -> String {
    let mut s = format!(
        "campaign {} ({}) release {}{}: wave {}/{}",
        v["id"],
        v["state"].as_str().unwrap_or(""),
        v["release_id"].as_str().unwrap_or(""),
        v["release_version"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        v["current_wave"].as_u64().unwrap_or(0) + 1,
        v["waves"].as_array().map(Vec::len).unwrap_or(0)
    );
    if let Some(r) = v["reason"].as_str() {
        s.push_str(&format!(" - {r}"));
    }
    if status(&v["state"]) == Some(CampaignState::Soaking) {
        if let Some(until) = v["soak_until_ms"].as_i64() {
            s.push_str(&format!(" (soak ends at {until} ms)"));
        }
    }
    s
}

/// The campaign is final and nothing is in flight: a watch ends.
pub(super) fn is_settled(v: &Value) -> bool {
    status(&v["state"]).is_some_and(CampaignState::is_final)
        && count(&v["totals"], CampaignDeviceStatus::Running) == 0
}

/// The devices of a wave that have an outcome (a watch's progress bar).
pub(super) fn wave_done(w: &Value) -> u64 {
    CampaignDeviceStatus::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|&s| count(&w["counts"], s))
        .sum()
}

pub(super) fn campaign(v: &Value) {
    out!("{}", campaign_header(v));
    for w in v["waves"].as_array().cloned().unwrap_or_default() {
        out!(
            "  wave {:<2} {:>3}% {:>6} devices: {}",
            w["wave"].as_u64().unwrap_or(0) + 1,
            w["percent"],
            w["size"],
            counts_text(&w["counts"])
        );
    }
    for d in v["devices"].as_array().cloned().unwrap_or_default() {
        if status(&d["status"]) == Some(CampaignDeviceStatus::Queued) {
            continue;
        }
        out!(
            "    {:<24} wave {:<2} {:<11} {}{}",
            escape(d["endpoint"].as_str().unwrap_or("")),
            d["wave"].as_u64().unwrap_or(0) + 1,
            d["status"].as_str().unwrap_or(""),
            d["mesh"].as_str().unwrap_or(""),
            d["error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
}

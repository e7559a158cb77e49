//! One function per admin subcommand: the request to the REST API, then what it prints (the
//! answer as is with `--json`, else `output`'s text), and the live views of `--watch`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::json;

use super::client::AdminClient;
use super::output::{self, print_json};
use super::request::{CampaignArgs, campaign_request};
use crate::status::JobStatus;

/// The LwM2M path as it goes into a URL: `/3/0/3` → `3/0/3`.
fn url_path(path: &str) -> &str {
    path.trim_start_matches('/')
}

fn read_file(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
}

// ---- clients and device management ----

pub fn clients(c: &AdminClient, json: bool) -> Result<()> {
    let v = c.get("/clients")?;
    if json {
        return print_json(&v);
    }
    output::clients(&v);
    Ok(())
}

pub fn read(c: &AdminClient, ep: &str, path: &str, format: Option<&str>, json: bool) -> Result<()> {
    let q = format.map(|f| format!("?format={f}")).unwrap_or_default();
    let v = c.get(&format!("/clients/{ep}/read/{}{q}", url_path(path)))?;
    if json {
        return print_json(&v);
    }
    output::values(&v);
    Ok(())
}

/// The value goes as the text typed; the server encodes it by the resource's type (or refuses
/// it, saying why).
pub fn write(
    c: &AdminClient,
    ep: &str,
    path: &str,
    value: &str,
    format: Option<&str>,
    json: bool,
) -> Result<()> {
    let mut body = json!({ "value": value });
    if let Some(f) = format {
        body["format"] = json!(f);
    }
    let v = c.post_json(&format!("/clients/{ep}/write/{}", url_path(path)), &body)?;
    if json {
        return print_json(&v);
    }
    output::code(&v);
    Ok(())
}

pub fn exec(c: &AdminClient, ep: &str, path: &str, args: Option<&str>, json: bool) -> Result<()> {
    let v = c.post_json(
        &format!("/clients/{ep}/execute/{}", url_path(path)),
        &json!({ "args": args }),
    )?;
    if json {
        return print_json(&v);
    }
    output::code(&v);
    Ok(())
}

pub fn discover(c: &AdminClient, ep: &str, path: &str, json: bool) -> Result<()> {
    let v = c.get(&format!("/clients/{ep}/discover/{}", url_path(path)))?;
    if json {
        return print_json(&v);
    }
    output::discovered(&v);
    Ok(())
}

// ---- object models ----

pub fn add_model(c: &AdminClient, file: &Path, json: bool) -> Result<()> {
    let xml = read_file(file)?;
    let v = c
        .post_body("/models", "application/xml", xml)
        .with_context(|| format!("{}", file.display()))?;
    if json {
        return print_json(&v);
    }
    out!(
        "{} object {} ({}, {} resources){}",
        if v["replaced"] == true {
            "replaced"
        } else {
            "added"
        },
        v["id"],
        v["model"]["name"].as_str().unwrap_or(""),
        v["model"]["resources"],
        if v["replaced"] == true {
            ": the earlier definition of this id is no longer used"
        } else {
            ""
        }
    );
    Ok(())
}

pub fn models(c: &AdminClient, json: bool) -> Result<()> {
    let v = c.get("/models")?;
    if json {
        return print_json(&v);
    }
    output::models(&v);
    Ok(())
}

pub fn show_model(c: &AdminClient, id: u16, json: bool) -> Result<()> {
    let v = c.get(&format!("/models/{id}"))?;
    if json {
        return print_json(&v);
    }
    output::model(&v);
    Ok(())
}

// ---- releases ----

/// Adds a SUIT release; `max_block` caps the Block2 size it is served in.
pub fn add_suit(
    c: &AdminClient,
    envelope: &Path,
    image: &Path,
    max_block: Option<u16>,
    json: bool,
) -> Result<()> {
    let (env, img) = (read_file(envelope)?, read_file(image)?);
    let cap = max_block.map(|n| n.to_string());
    let mut fields: Vec<(&str, &[u8])> = vec![("envelope", &env), ("image", &img)];
    if let Some(cap) = &cap {
        fields.push(("max_block_size", cap.as_bytes()));
    }
    let v = c.post_form("/releases", &fields)?;
    output::release(&v, json)
}

/// Adds a plain release; `max_block` caps the Block2 size it is served in.
pub fn add_plain(
    c: &AdminClient,
    image: &Path,
    version: &str,
    max_block: Option<u16>,
    json: bool,
) -> Result<()> {
    let img = read_file(image)?;
    let cap = max_block.map(|n| n.to_string());
    let mut fields: Vec<(&str, &[u8])> = vec![("image", &img), ("version", version.as_bytes())];
    if let Some(cap) = &cap {
        fields.push(("max_block_size", cap.as_bytes()));
    }
    let v = c.post_form("/releases", &fields)?;
    output::release(&v, json)
}

pub fn releases(c: &AdminClient, json: bool) -> Result<()> {
    let v = c.get("/releases")?;
    if json {
        return print_json(&v);
    }
    output::releases(&v);
    Ok(())
}

// ---- jobs ----

pub fn start_job(c: &AdminClient, release: &str, endpoints: &[String], json: bool) -> Result<()> {
    let v = c.post_json(
        "/jobs",
        &json!({ "release": release, "endpoints": endpoints }),
    )?;
    if json {
        return print_json(&v);
    }
    out!("{}", v["id"]);
    Ok(())
}

pub fn cancel_job(c: &AdminClient, job: i64, json: bool) -> Result<()> {
    let v = c.post_json(&format!("/jobs/{job}/cancel"), &json!({}))?;
    if json {
        return print_json(&v);
    }
    out!("cancel requested for job {job}; devices already updating finish their update");
    Ok(())
}

pub fn job_status(c: &AdminClient, job: Option<i64>, watch: bool, json: bool) -> Result<()> {
    let Some(job) = job else {
        let v = c.get("/jobs")?;
        if json {
            return print_json(&v);
        }
        output::jobs(&v);
        return Ok(());
    };
    if !watch {
        let v = c.get(&format!("/jobs/{job}"))?;
        if json {
            return print_json(&v);
        }
        output::job(job, &v);
        return Ok(());
    }
    watch_job(c, job, json)
}

/// A live progress bar per device until the job ends.
fn watch_job(c: &AdminClient, job: i64, json: bool) -> Result<()> {
    let multi = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:<24} [{bar:30}] {bytes:>9}/{total_bytes:<9} {msg}",
    )
    .map_err(|e| anyhow!("{e}"))?
    .progress_chars("=> ");
    let mut bars: Vec<(String, indicatif::ProgressBar)> = Vec::new();
    loop {
        let v = c.get(&format!("/jobs/{job}"))?;
        for d in v["devices"].as_array().cloned().unwrap_or_default() {
            let ep = d["endpoint"].as_str().unwrap_or("").to_string();
            let bar = match bars.iter().find(|(e, _)| *e == ep) {
                Some((_, b)) => b.clone(),
                None => {
                    let b = multi.add(
                        indicatif::ProgressBar::new(0)
                            .with_style(style.clone())
                            .with_prefix(super::out::escape(&ep).into_owned()),
                    );
                    bars.push((ep, b.clone()));
                    b
                }
            };
            bar.set_length(d["bytes_total"].as_u64().unwrap_or(0).max(1));
            bar.set_position(d["bytes_done"].as_u64().unwrap_or(0));
            bar.set_message(output::device_line(&d));
        }
        if output::status(&v["status"]) != Some(JobStatus::Running) {
            for (_, b) in &bars {
                b.finish();
            }
            if json {
                print_json(&v)?;
            } else {
                out!("job {job}: {}", v["status"].as_str().unwrap_or(""));
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ---- campaigns ----

pub fn create_campaign(c: &AdminClient, a: &CampaignArgs, json: bool) -> Result<()> {
    let v = c.post_json("/campaigns", &campaign_request(a)?)?;
    if json {
        return print_json(&v);
    }
    output::campaign_created(&v);
    Ok(())
}

pub fn campaigns(c: &AdminClient, json: bool) -> Result<()> {
    let v = c.get("/campaigns")?;
    if json {
        return print_json(&v);
    }
    output::campaigns(&v);
    Ok(())
}

pub fn show_campaign(c: &AdminClient, id: i64, watch: bool, json: bool) -> Result<()> {
    if watch {
        return watch_campaign(c, id, json);
    }
    let v = c.get(&format!("/campaigns/{id}"))?;
    if json {
        return print_json(&v);
    }
    output::campaign(&v);
    Ok(())
}

/// A progress bar per wave (devices with an outcome out of the wave's size) until the campaign
/// is final and nothing is in flight.
fn watch_campaign(c: &AdminClient, id: i64, json: bool) -> Result<()> {
    let multi = indicatif::MultiProgress::new();
    let style =
        indicatif::ProgressStyle::with_template("{prefix:<16} [{bar:30}] {pos:>6}/{len:<6} {msg}")
            .map_err(|e| anyhow!("{e}"))?
            .progress_chars("=> ");
    let header = multi.add(indicatif::ProgressBar::new_spinner());
    let mut bars: Vec<indicatif::ProgressBar> = Vec::new();
    loop {
        // Only the counts: the device rows are not needed for the bars.
        let v = c.get(&format!("/campaigns/{id}?limit=0"))?;
        header.set_message(output::campaign_header(&v));
        header.tick();
        for (i, w) in v["waves"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if bars.len() <= i {
                bars.push(
                    multi.add(
                        indicatif::ProgressBar::new(0)
                            .with_style(style.clone())
                            .with_prefix(format!("wave {} ({}%)", i + 1, w["percent"])),
                    ),
                );
            }
            bars[i].set_length(w["size"].as_u64().unwrap_or(0));
            bars[i].set_position(output::wave_done(w));
            bars[i].set_message(output::counts_text(&w["counts"]));
        }
        if output::is_settled(&v) {
            for b in &bars {
                b.finish();
            }
            header.finish();
            if json {
                print_json(&v)?;
            } else {
                out!("{}", output::campaign_header(&v));
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `pause`, `resume` or `abort`.
pub fn campaign_command(c: &AdminClient, id: i64, what: &str, json: bool) -> Result<()> {
    let v = c.post_json(&format!("/campaigns/{id}/{what}"), &json!({}))?;
    if json {
        return print_json(&v);
    }
    let note = match what {
        "pause" => "; devices already updating finish, no new ones start",
        "abort" => {
            "; running jobs are cancelled (a device already installing finishes), queued devices skipped"
        }
        _ => "",
    };
    out!("campaign {id}: {}{note}", v["state"].as_str().unwrap_or(""));
    Ok(())
}

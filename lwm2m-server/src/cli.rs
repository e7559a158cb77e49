//! The admin subcommands of the `lwm2m-server` binary: a small blocking HTTP client of the REST API
//! and the text each command prints. Errors say what to do next.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::store::Store;

/// A client of the admin API.
pub struct AdminClient {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl AdminClient {
    pub fn new(url: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        AdminClient {
            url: url.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<(String, Vec<u8>)>) -> Result<Value> {
        let url = format!("{}/api{path}", self.url);
        let auth = format!("Bearer {}", self.token.as_deref().unwrap_or(""));
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            (_, Some((content_type, bytes))) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .content_type(content_type)
                .send(&bytes[..]),
            (_, None) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_empty(),
        };
        let mut response = sent.with_context(|| {
            format!("cannot reach the server at {} (is `lwm2m-server serve` running? set OTAFLEET_URL or --url)", self.url)
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "error": text }));
        match status {
            200..=299 => Ok(value),
            401 => bail!(
                "the server refused the admin token: set OTAFLEET_TOKEN or --token (serve printed it at its first start)"
            ),
            _ => bail!(
                "{}",
                value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("request failed")
            ),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(
            "POST",
            path,
            Some(("application/json".into(), serde_json::to_vec(body)?)),
        )
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        self.call("DELETE", path, None)
    }

    /// Uploads form fields as multipart/form-data.
    pub fn post_form(&self, path: &str, fields: &[(&str, &[u8])]) -> Result<Value> {
        let boundary = format!("otafleet-{:016x}", rand::random::<u64>());
        let mut body = Vec::new();
        for (name, bytes) in fields {
            write!(
                body,
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n"
            )?;
            write!(body, "Content-Type: application/octet-stream\r\n\r\n")?;
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        write!(body, "--{boundary}--\r\n")?;
        self.call(
            "POST",
            path,
            Some((format!("multipart/form-data; boundary={boundary}"), body)),
        )
    }
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The LwM2M path as it goes into a URL: `/3/0/3` → `3/0/3`.
fn url_path(path: &str) -> &str {
    path.trim_start_matches('/')
}

pub fn clients(c: &AdminClient, json: bool) -> Result<()> {
    let v = c.get("/clients")?;
    if json {
        return print_json(&v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    println!(
        "{:<24} {:<28} {:>8} {:<6} {:<5} objects",
        "endpoint", "address", "lifetime", "lwm2m", "queue"
    );
    for r in &list {
        println!(
            "{:<24} {:<28} {:>8} {:<6} {:<5} {}",
            r["endpoint"].as_str().unwrap_or(""),
            r["address"].as_str().unwrap_or(""),
            r["lifetime_s"].to_string(),
            r["lwm2m_version"].as_str().unwrap_or(""),
            if r["queue_mode"] == true { "yes" } else { "no" },
            r["objects"].as_str().unwrap_or("")
        );
    }
    println!("{} registered", list.len());
    Ok(())
}

fn print_values(v: &Value) {
    for item in v["values"].as_array().cloned().unwrap_or_default() {
        let value = match &item["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("{} = {value}", item["path"].as_str().unwrap_or(""));
    }
}

pub fn read(c: &AdminClient, ep: &str, path: &str, format: Option<&str>, json: bool) -> Result<()> {
    let q = format.map(|f| format!("?format={f}")).unwrap_or_default();
    let v = c.get(&format!("/clients/{ep}/read/{}{q}", url_path(path)))?;
    if json {
        return print_json(&v);
    }
    print_values(&v);
    Ok(())
}

pub fn write(c: &AdminClient, ep: &str, path: &str, value: &str, json: bool) -> Result<()> {
    // Numbers and booleans as such; anything else as a string.
    let parsed: Value = match serde_json::from_str::<Value>(value) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(value.to_string()),
    };
    let v = c.post_json(
        &format!("/clients/{ep}/write/{}", url_path(path)),
        &json!({ "value": parsed }),
    )?;
    if json {
        return print_json(&v);
    }
    println!("{}", v["code"].as_str().unwrap_or("done"));
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
    println!("{}", v["code"].as_str().unwrap_or("done"));
    Ok(())
}

pub fn discover(c: &AdminClient, ep: &str, path: &str, json: bool) -> Result<()> {
    let v = c.get(&format!("/clients/{ep}/discover/{}", url_path(path)))?;
    if json {
        return print_json(&v);
    }
    println!("{}", v["links"].as_str().unwrap_or(""));
    Ok(())
}

fn read_file(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
}

fn print_release(v: &Value, json: bool) -> Result<()> {
    if json {
        return print_json(v);
    }
    let r = &v["release"];
    println!(
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
    );
    Ok(())
}

pub fn add_suit(c: &AdminClient, envelope: &Path, image: &Path, json: bool) -> Result<()> {
    let (env, img) = (read_file(envelope)?, read_file(image)?);
    let v = c.post_form("/releases", &[("envelope", &env), ("image", &img)])?;
    print_release(&v, json)
}

pub fn add_plain(c: &AdminClient, image: &Path, version: &str, json: bool) -> Result<()> {
    let img = read_file(image)?;
    let v = c.post_form(
        "/releases",
        &[("image", &img), ("version", version.as_bytes())],
    )?;
    print_release(&v, json)
}

pub fn releases(c: &AdminClient, json: bool) -> Result<()> {
    let v = c.get("/releases")?;
    if json {
        return print_json(&v);
    }
    println!(
        "{:<17} {:<6} {:<12} {:>9} {:>10}  uri",
        "id", "kind", "version", "sequence", "bytes"
    );
    for r in v.as_array().cloned().unwrap_or_default() {
        println!(
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
    }
    Ok(())
}

pub fn start_job(c: &AdminClient, release: &str, endpoints: &[String], json: bool) -> Result<()> {
    let v = c.post_json(
        "/jobs",
        &json!({ "release": release, "endpoints": endpoints }),
    )?;
    if json {
        return print_json(&v);
    }
    println!("{}", v["id"]);
    Ok(())
}

pub fn cancel_job(c: &AdminClient, job: i64, json: bool) -> Result<()> {
    let v = c.post_json(&format!("/jobs/{job}/cancel"), &json!({}))?;
    if json {
        return print_json(&v);
    }
    println!("cancel requested for job {job}; devices already updating finish their update");
    Ok(())
}

fn device_line(d: &Value) -> String {
    format!(
        "{:<11} state {} result {}{}{}",
        d["status"].as_str().unwrap_or(""),
        d["state"]
            .as_i64()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into()),
        d["result"]
            .as_i64()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into()),
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

pub fn job_status(c: &AdminClient, job: Option<i64>, watch: bool, json: bool) -> Result<()> {
    let Some(job) = job else {
        let v = c.get("/jobs")?;
        if json {
            return print_json(&v);
        }
        for j in v.as_array().cloned().unwrap_or_default() {
            let n = j["devices"].as_array().map(Vec::len).unwrap_or(0);
            println!(
                "job {:<5} release {} {:<10} {n} device(s)",
                j["id"],
                j["release_id"].as_str().unwrap_or(""),
                j["status"].as_str().unwrap_or("")
            );
        }
        return Ok(());
    };
    if !watch {
        let v = c.get(&format!("/jobs/{job}"))?;
        if json {
            return print_json(&v);
        }
        println!(
            "job {job} ({}) release {}",
            v["status"].as_str().unwrap_or(""),
            v["release_id"].as_str().unwrap_or("")
        );
        for d in v["devices"].as_array().cloned().unwrap_or_default() {
            println!(
                "  {:<24} {}",
                d["endpoint"].as_str().unwrap_or(""),
                device_line(&d)
            );
        }
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
                            .with_prefix(ep.clone()),
                    );
                    bars.push((ep, b.clone()));
                    b
                }
            };
            bar.set_length(d["bytes_total"].as_u64().unwrap_or(0).max(1));
            bar.set_position(d["bytes_done"].as_u64().unwrap_or(0));
            bar.set_message(device_line(&d));
        }
        if v["status"] != "running" {
            for (_, b) in &bars {
                b.finish();
            }
            if json {
                print_json(&v)?;
            } else {
                println!("job {job}: {}", v["status"].as_str().unwrap_or(""));
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The base of Package URIs when none is given: the CoAP address, with a wildcard address
/// replaced by loopback (devices cannot be sent to 0.0.0.0).
pub fn default_public_uri(coap: SocketAddr) -> String {
    let mut addr = coap;
    if addr.ip().is_unspecified() {
        if addr.is_ipv4() {
            addr.set_ip([127, 0, 0, 1].into());
        } else {
            addr.set_ip(std::net::Ipv6Addr::LOCALHOST.into());
        }
        tracing::warn!(
            "--coap is a wildcard address: Package URIs will use {addr}; set --public-uri to an address devices can reach"
        );
    }
    format!("coap://{addr}")
}

/// The admin token: given (flag or OTAFLEET_TOKEN), or the one kept in the store, or a new one
/// generated, stored and printed once.
pub fn admin_token(store: &Store, given: Option<String>, data: &Path) -> Result<String> {
    if let Some(t) = given.filter(|t| !t.is_empty()) {
        return Ok(t);
    }
    if let Some(t) = store.setting("admin_token")? {
        return Ok(t);
    }
    let token = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    store.set_setting("admin_token", &token)?;
    println!(
        "admin token (kept in {}; shown only now): {token}",
        data.join("otafleet.db").display()
    );
    println!("use it with: export OTAFLEET_TOKEN={token}");
    Ok(token)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

// ---- campaigns ----

/// What `campaign create` sends (the flags, parsed).
#[derive(Clone, Debug, Default)]
pub struct CampaignArgs {
    pub release: String,
    pub name: Option<String>,
    pub endpoints: Vec<String>,
    pub pattern: Option<String>,
    pub model: Option<String>,
    pub firmware_version: Option<String>,
    pub waves: Option<String>,
    pub threshold: Option<f64>,
    pub soak: Option<String>,
    pub max_concurrent: Option<u32>,
    pub max_per_mesh: Option<u32>,
    pub mesh_prefix_v6: Option<u8>,
    pub mesh_prefix_v4: Option<u8>,
    pub paused: bool,
}

/// `1,10,50,100` → [1, 10, 50, 100]; the server checks the values.
pub fn parse_waves(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(|w| {
            let w = w.trim().trim_end_matches('%');
            w.parse::<u32>().map_err(|_| {
                anyhow!("bad --waves {s:?}: give cumulative percentages separated by commas, e.g. 1,10,50,100")
            })
        })
        .collect()
}

/// `600`, `600s`, `10m`, `2h`, `0.5s` → seconds.
pub fn parse_duration_s(s: &str) -> Result<f64> {
    let t = s.trim();
    let (num, mul) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('h') => (&t[..t.len() - 1], 3600.0),
        _ => (t, 1.0),
    };
    let n: f64 = num.parse().map_err(|_| {
        anyhow!("bad duration {s:?}: give seconds, or a number with s, m or h (e.g. 10m)")
    })?;
    if !n.is_finite() || n < 0.0 {
        bail!("bad duration {s:?}: it must be 0 or more");
    }
    Ok(n * mul)
}

/// The JSON body of `POST /api/campaigns` for these flags.
pub fn campaign_request(a: &CampaignArgs) -> Result<Value> {
    let mut target = serde_json::Map::new();
    if !a.endpoints.is_empty() {
        target.insert("endpoints".into(), json!(a.endpoints));
    }
    for (k, v) in [
        ("pattern", &a.pattern),
        ("model", &a.model),
        ("firmware_version", &a.firmware_version),
    ] {
        if let Some(v) = v {
            target.insert(k.into(), json!(v));
        }
    }
    let mut body = serde_json::Map::new();
    body.insert("release".into(), json!(a.release));
    body.insert("target".into(), Value::Object(target));
    if let Some(n) = &a.name {
        body.insert("name".into(), json!(n));
    }
    if let Some(w) = &a.waves {
        body.insert("waves".into(), json!(parse_waves(w)?));
    }
    if let Some(t) = a.threshold {
        body.insert("failure_threshold".into(), json!(t));
    }
    if let Some(s) = &a.soak {
        body.insert("soak_s".into(), json!(parse_duration_s(s)?));
    }
    for (k, v) in [
        ("max_concurrent", a.max_concurrent),
        ("max_per_mesh", a.max_per_mesh),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    }
    for (k, v) in [
        ("mesh_prefix_v6", a.mesh_prefix_v6),
        ("mesh_prefix_v4", a.mesh_prefix_v4),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    }
    if a.paused {
        body.insert("start".into(), json!(false));
    }
    Ok(Value::Object(body))
}

pub fn create_campaign(c: &AdminClient, a: &CampaignArgs, json: bool) -> Result<()> {
    let v = c.post_json("/campaigns", &campaign_request(a)?)?;
    if json {
        return print_json(&v);
    }
    let camp = &v["campaign"];
    println!(
        "campaign {} ({}): release {}, {} devices in waves {}",
        v["id"],
        camp["state"].as_str().unwrap_or(""),
        camp["release_id"].as_str().unwrap_or(""),
        camp["totals"]["queued"].as_u64().unwrap_or(0)
            + camp["totals"]["running"].as_u64().unwrap_or(0),
        wave_sizes_text(camp)
    );
    println!(
        "follow it with: lwm2m-server campaign show {} --watch",
        v["id"]
    );
    Ok(())
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

fn counts_text(c: &Value) -> String {
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let mut s = format!(
        "{} ok, {} failed, {} running, {} queued",
        n("succeeded"),
        n("failed"),
        n("running"),
        n("queued")
    );
    for k in ["unreachable", "cancelled", "skipped"] {
        if n(k) > 0 {
            s.push_str(&format!(", {} {k}", n(k)));
        }
    }
    s
}

pub fn campaigns(c: &AdminClient, json: bool) -> Result<()> {
    let v = c.get("/campaigns")?;
    if json {
        return print_json(&v);
    }
    println!(
        "{:<5} {:<10} {:<17} {:<6} {:>8}  progress",
        "id", "state", "release", "wave", "devices"
    );
    for camp in v.as_array().cloned().unwrap_or_default() {
        let waves = camp["waves"].as_array().map(Vec::len).unwrap_or(0);
        let total: u64 = [
            "queued",
            "running",
            "succeeded",
            "failed",
            "unreachable",
            "cancelled",
            "skipped",
        ]
        .iter()
        .map(|k| camp["totals"][k].as_u64().unwrap_or(0))
        .sum();
        println!(
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
    Ok(())
}

fn campaign_header(v: &Value) -> String {
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
    if v["state"] == "soaking" {
        if let Some(until) = v["soak_until_ms"].as_i64() {
            s.push_str(&format!(" (soak ends at {until} ms)"));
        }
    }
    s
}

fn is_settled(v: &Value) -> bool {
    matches!(
        v["state"].as_str(),
        Some("halted" | "aborted" | "completed")
    ) && v["totals"]["running"].as_u64().unwrap_or(0) == 0
}

pub fn show_campaign(c: &AdminClient, id: i64, watch: bool, json: bool) -> Result<()> {
    if watch {
        return watch_campaign(c, id, json);
    }
    let v = c.get(&format!("/campaigns/{id}"))?;
    if json {
        return print_json(&v);
    }
    println!("{}", campaign_header(&v));
    for w in v["waves"].as_array().cloned().unwrap_or_default() {
        println!(
            "  wave {:<2} {:>3}% {:>6} devices: {}",
            w["wave"].as_u64().unwrap_or(0) + 1,
            w["percent"],
            w["size"],
            counts_text(&w["counts"])
        );
    }
    for d in v["devices"].as_array().cloned().unwrap_or_default() {
        if d["status"] == "queued" {
            continue;
        }
        println!(
            "    {:<24} wave {:<2} {:<11} {}{}",
            d["endpoint"].as_str().unwrap_or(""),
            d["wave"].as_u64().unwrap_or(0) + 1,
            d["status"].as_str().unwrap_or(""),
            d["mesh"].as_str().unwrap_or(""),
            d["error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
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
        header.set_message(campaign_header(&v));
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
            let k = &w["counts"];
            let done: u64 = ["succeeded", "failed", "unreachable", "cancelled", "skipped"]
                .iter()
                .map(|s| k[s].as_u64().unwrap_or(0))
                .sum();
            bars[i].set_length(w["size"].as_u64().unwrap_or(0));
            bars[i].set_position(done);
            bars[i].set_message(counts_text(k));
        }
        if is_settled(&v) {
            for b in &bars {
                b.finish();
            }
            header.finish();
            if json {
                print_json(&v)?;
            } else {
                println!("{}", campaign_header(&v));
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
    println!("campaign {id}: {}{note}", v["state"].as_str().unwrap_or(""));
    Ok(())
}

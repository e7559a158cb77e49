//! One function per admin subcommand: the request to the REST API, then what it prints (the
//! answer as is with `--json`, else `output`'s text), and the live views of `--watch`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

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
    println!("{}", v["links"].as_str().unwrap_or(""));
    Ok(())
}

// ---- releases ----

pub fn add_suit(c: &AdminClient, envelope: &Path, image: &Path, json: bool) -> Result<()> {
    let (env, img) = (read_file(envelope)?, read_file(image)?);
    let v = c.post_form("/releases", &[("envelope", &env), ("image", &img)])?;
    output::release(&v, json)
}

pub fn add_plain(c: &AdminClient, image: &Path, version: &str, json: bool) -> Result<()> {
    let img = read_file(image)?;
    let v = c.post_form(
        "/releases",
        &[("image", &img), ("version", version.as_bytes())],
    )?;
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
                            .with_prefix(ep.clone()),
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
                println!("job {job}: {}", v["status"].as_str().unwrap_or(""));
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
                println!("{}", output::campaign_header(&v));
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

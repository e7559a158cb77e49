//! The body of `POST /api/campaigns` built from the flags of `campaign create`: the waves and
//! the soak time are parsed here, the values are checked by the server.

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

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

/// A number given on the command line that must be finite: `NaN` and `inf` parse as `f64` but
/// mean nothing as a threshold (and JSON cannot carry them: they would go as `null`).
pub fn parse_finite(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if n.is_finite() {
        Ok(n)
    } else {
        Err(format!("{s:?} is not a finite number"))
    }
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
        if !t.is_finite() {
            bail!("bad --threshold {t}: give a fraction from 0 to 1, e.g. 0.1");
        }
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

//! `device add|list|remove`: provisioning of DTLS credentials and OSCORE contexts. Keys and
//! secrets go to the server once and are never printed back.

use anyhow::{Result, anyhow};
use serde_json::json;

use super::AdminClient;
use super::output::print_json;
use crate::security::{parse_hex_field, parse_hex_key};

/// What `device add` sets: a PSK, an OSCORE context (hex, the server's IDs), or both.
pub struct NewDevice<'a> {
    pub endpoint: &'a str,
    pub psk: Option<(&'a str, &'a str)>,
    /// Sender ID, Recipient ID, Master Secret, Master Salt.
    pub oscore: Option<(&'a str, &'a str, &'a str, Option<&'a str>)>,
}

pub fn add_device(c: &AdminClient, d: &NewDevice<'_>, json: bool) -> Result<()> {
    let endpoint = d.endpoint;
    let mut body = json!({ "endpoint": endpoint });
    // Checked here too, so a typo is reported before anything is sent.
    if let Some((identity, key_hex)) = d.psk {
        parse_hex_key(key_hex).map_err(|e| anyhow!("--psk-key: {e}"))?;
        body["psk_identity"] = json!(identity);
        body["psk_key"] = json!(key_hex);
    }
    if let Some((sender, recipient, secret, salt)) = d.oscore {
        for (flag, v) in [
            ("--oscore-sender-id", sender),
            ("--oscore-recipient-id", recipient),
            ("--oscore-master-secret", secret),
            ("--oscore-master-salt", salt.unwrap_or_default()),
        ] {
            parse_hex_field("value", v).map_err(|e| anyhow!("{flag}: {e}"))?;
        }
        body["oscore_sender_id"] = json!(sender);
        body["oscore_recipient_id"] = json!(recipient);
        body["oscore_master_secret"] = json!(secret);
        if let Some(salt) = salt {
            body["oscore_master_salt"] = json!(salt);
        }
    }
    let v = c.post_json("/devices", &body)?;
    if json {
        return print_json(&v);
    }
    if let Some((identity, _)) = d.psk {
        println!("{endpoint}: DTLS PSK identity {identity:?} set");
    }
    if let Some((sender, recipient, _, _)) = d.oscore {
        println!(
            "{endpoint}: OSCORE context set (server Sender ID {sender}, Recipient ID {recipient})"
        );
    }
    println!("{endpoint}: it registers over coaps:// or OSCORE only");
    Ok(())
}

pub fn devices(c: &AdminClient, json: bool) -> Result<()> {
    let v = c.get("/devices")?;
    if json {
        return print_json(&v);
    }
    println!(
        "{:<32} {:<24} oscore (sender/recipient id)",
        "endpoint", "psk identity"
    );
    for d in v.as_array().cloned().unwrap_or_default() {
        let text = |k: &str| d[k].as_str().unwrap_or("-").escape_debug().to_string();
        let oscore = match d["oscore_recipient_id"].as_str() {
            Some(_) => format!(
                "{}/{}",
                text("oscore_sender_id"),
                text("oscore_recipient_id")
            ),
            None => "-".into(),
        };
        println!(
            "{:<32} {:<24} {oscore}",
            text("endpoint"),
            text("psk_identity")
        );
    }
    Ok(())
}

pub fn remove_device(c: &AdminClient, endpoint: &str, json: bool) -> Result<()> {
    let v = c.delete(&format!("/devices/{}", urlencode(endpoint)))?;
    if json {
        return print_json(&v);
    }
    println!("{endpoint}: credentials removed");
    Ok(())
}

/// Percent-encodes a path segment (endpoint names may hold any printable character).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

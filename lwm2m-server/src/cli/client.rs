//! [`AdminClient`]: a small blocking HTTP client of the REST API. Its errors say what to do next.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Bodies larger than this are sent with `Expect: 100-continue`.
const EXPECT_CONTINUE_ABOVE: usize = 64 * 1024;

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
        let body_len = body.as_ref().map_or(0, |(_, b)| b.len());
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            // A large body waits for the server's 100 Continue, so that a refusal (413) arrives
            // as an answer instead of a connection closed in the middle of the upload.
            (_, Some((content_type, bytes))) if bytes.len() > EXPECT_CONTINUE_ABOVE => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Expect", "100-continue")
                .content_type(content_type)
                .send(&bytes[..]),
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
            if body_len > EXPECT_CONTINUE_ABOVE {
                format!(
                    "the server at {} closed the connection during the upload of {} MiB: it may be larger than the server takes (`serve --max-upload-mib`)",
                    self.url,
                    body_len.div_ceil(1 << 20)
                )
            } else {
                format!("cannot reach the server at {} (is `lwm2m-server serve` running? set OTAFLEET_URL or --url)", self.url)
            }
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

    /// POSTs `body` as it is, with `content_type`.
    pub fn post_body(&self, path: &str, content_type: &str, body: Vec<u8>) -> Result<Value> {
        self.call("POST", path, Some((content_type.into(), body)))
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

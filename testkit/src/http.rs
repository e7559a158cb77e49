//! The admin HTTP API as a test calls it: blocking ureq on a blocking thread, errors as statuses
//! (never as `Err`), every call bounded in time, and the server-sent event stream read on a thread
//! of its own.

use std::io::BufRead;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// How long one call may take.
const CALL_LIMIT: Duration = Duration::from_secs(30);
/// How long the event stream is read at most.
const STREAM_LIMIT: Duration = Duration::from_secs(120);

/// One HTTP answer. For `text/event-stream` only the head is read.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case, as the server sent them.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// A header's value, `""` if absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    /// The body as JSON, `Null` if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

fn agent(limit: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(limit))
        .build()
        .into()
}

/// `method` (`GET` or `POST`) on `url`, with `Authorization: Bearer <token>` when a token is given
/// and `body` as JSON (a POST without a body sends none).
pub async fn request(
    method: &'static str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let url = url.to_owned();
    let auth = token.map(|t| format!("Bearer {t}"));
    tokio::task::spawn_blocking(move || {
        let agent = agent(CALL_LIMIT);
        let mut r = match method {
            "GET" => {
                let mut req = agent.get(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            "POST" => {
                let mut req = agent.post(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                match &body {
                    Some(b) => req.send_json(b),
                    None => req.send_empty(),
                }
            }
            other => panic!("unsupported method {other}"),
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let headers = r
            .headers()
            .iter()
            .map(|(n, v)| {
                let value = v.to_str().unwrap_or("").to_owned();
                (n.as_str().to_owned(), value)
            })
            .collect();
        let streaming = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = if streaming {
            String::new()
        } else {
            r.body_mut().read_to_string().unwrap_or_default()
        };
        Reply {
            status: r.status().as_u16(),
            headers,
            body,
        }
    })
    .await
    .expect("the HTTP call panicked")
}

/// The events of `url` (`/api/events`), each `data:` line as JSON, in order. The stream is read
/// on a thread of its own until the receiver is dropped and the next event arrives, or for
/// [`STREAM_LIMIT`] at most. Returns once the server has answered (it subscribes before it
/// answers), so no event after the call is missed; panics if that takes over 20 s.
pub fn event_stream(url: &str, token: &str) -> mpsc::Receiver<Value> {
    let (url, auth) = (url.to_owned(), format!("Bearer {token}"));
    let (tx, rx) = mpsc::channel();
    let (answered_tx, answered) = mpsc::channel();
    let what = url.clone();
    std::thread::spawn(move || {
        let response = agent(STREAM_LIMIT)
            .get(&url)
            .header("Authorization", &auth)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let _ = answered_tx.send(());
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines().map_while(Result::ok) {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let event = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    answered
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("GET {what}: no answer within 20 s ({e})"));
    rx
}

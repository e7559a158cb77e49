//! The dashboard's static files as the admin HTTP port serves them (status, content type, the
//! security headers, nothing loaded from another origin), that the event stream takes the token
//! only in the Authorization header, and the fleet summary the dashboard shows.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lwm2m_server::clock::SystemClock;
use lwm2m_server::server::{Server, ServerConfig};
use serde_json::Value;
use support::fake_device::{DeviceConfig, FakeDevice};

const TOKEN: &str = "dashboard-test-token";

async fn start() -> (Arc<Server>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let config = ServerConfig::new(dir.path().to_path_buf(), format!("coap://{addr}"));
    let server = Server::start(socket, config, Arc::new(SystemClock))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = format!("http://{}", listener.local_addr().unwrap());
    let app = lwm2m_server::api::router(server.clone(), TOKEN, 1 << 20);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (server, http, dir)
}

struct Reply {
    status: u16,
    content_type: String,
    csp: String,
    body: String,
}

/// A GET with an optional Authorization header; for the event stream only the head is read.
async fn get(url: String, auth: Option<String>) -> Reply {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut req = agent.get(&url);
        if let Some(a) = auth {
            req = req.header("Authorization", &a);
        }
        let mut r = req.call().unwrap();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (content_type, csp) = (header("content-type"), header("content-security-policy"));
        let status = r.status().as_u16();
        let body = if content_type.starts_with("text/event-stream") {
            String::new()
        } else {
            r.body_mut().read_to_string().unwrap_or_default()
        };
        Reply {
            status,
            content_type,
            csp,
            body,
        }
    })
    .await
    .unwrap()
}

/// Every `http://` or `https://` in a text, except the SVG namespace name (an identifier that
/// no browser fetches; `createElementNS` and an SVG file need it).
fn external_urls(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        for (i, _) in text.match_indices(scheme) {
            let rest: String = text[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '`' | ')' | '<'))
                .collect();
            if rest != "http://www.w3.org/2000/svg" {
                found.push(rest);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_with_its_content_types_and_loads_nothing_from_elsewhere() {
    let (_server, http, _dir) = start().await;
    for &(path, content_type, embedded) in lwm2m_server::dashboard::ASSETS {
        let r = get(format!("{http}{path}"), None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.content_type, content_type, "{path}");
        assert_eq!(r.body, embedded, "{path} is served as embedded");
        assert!(
            r.csp.contains("default-src 'none'") && r.csp.contains("connect-src 'self'"),
            "{path}: CSP {:?}",
            r.csp
        );
        let urls = external_urls(&r.body);
        assert!(urls.is_empty(), "{path} names other origins: {urls:?}");
    }
    // The page refers to its own files, which are all served.
    let index = get(format!("{http}/"), None).await.body;
    for asset in ["/assets/app.js", "/assets/app.css", "/assets/favicon.svg"] {
        assert!(index.contains(asset), "index.html does not load {asset}");
    }
    assert!(index.contains("data-testid=\"token-input\""));
    assert_eq!(get(format!("{http}/index.html"), None).await.status, 200);
    assert_eq!(
        get(format!("{http}/assets/nope.js"), None).await.status,
        404
    );
    // The page holds no secret, the API still does.
    assert_eq!(get(format!("{http}/api/clients"), None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_takes_the_token_in_the_header_only() {
    let (_server, http, _dir) = start().await;
    let url = format!("{http}/api/events");
    assert_eq!(get(url.clone(), None).await.status, 401);
    let wrong = get(url.clone(), Some("Bearer not-the-token".into())).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("wrong admin token"), "{}", wrong.body);
    // The page reads the stream with fetch() and the header; a token in the URL (which would end
    // up in logs and history) is not accepted, right or wrong.
    assert_eq!(
        get(format!("{url}?token=not-the-token"), None).await.status,
        401
    );
    assert_eq!(get(format!("{url}?token={TOKEN}"), None).await.status, 401);
    let ok = get(url, Some(format!("Bearer {TOKEN}"))).await;
    assert_eq!(ok.status, 200);
    assert!(ok.content_type.starts_with("text/event-stream"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_summary_counts_devices_and_learns_versions_from_reads() {
    let (server, http, _dir) = start().await;
    let mut devices = Vec::new();
    for ep in ["dash-a", "dash-b", "other-c"] {
        devices.push(FakeDevice::start(DeviceConfig::new(ep, server.coap_addr())).await);
    }
    let auth = Some(format!("Bearer {TOKEN}"));
    let mut fleet = Value::Null;
    for _ in 0..200 {
        let r = get(format!("{http}/api/fleet"), auth.clone()).await;
        assert_eq!(r.status, 200, "{}", r.body);
        fleet = serde_json::from_str(&r.body).unwrap();
        if fleet["registered"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fleet["registered"], 3, "{fleet:#}");
    assert_eq!(fleet["queue_mode"], 0);
    assert_eq!(fleet["asleep"], 0);
    assert_eq!(
        fleet["versions"],
        serde_json::json!([{"version": null, "count": 3}])
    );

    // A read of /3/0/3 through the API fills the cache the fleet view counts from.
    let r = get(
        format!("{http}/api/clients/dash-a/read/3/0/3"),
        auth.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(format!("{http}/api/fleet?filter=dash"), auth.clone()).await;
    let fleet: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(fleet["registered"], 3);
    assert_eq!(fleet["matching"], 2, "{fleet:#}");
    let eps: Vec<&str> = fleet["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(eps, ["dash-a", "dash-b"]);
    assert_eq!(fleet["devices"][0]["firmware_version"], "1.0.0");
    assert_eq!(
        fleet["versions"],
        serde_json::json!([{"version": null, "count": 2}, {"version": "1.0.0", "count": 1}])
    );
    // A glob, and a limit on the rows (not on the counts).
    let r = get(format!("{http}/api/fleet?filter=*-c&limit=0"), auth).await;
    let fleet: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(fleet["matching"], 1);
    assert_eq!(fleet["devices"], serde_json::json!([]));
    drop(devices);
}

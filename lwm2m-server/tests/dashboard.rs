//! The dashboard's static files as the admin HTTP port serves them (status, content type, the
//! security headers, nothing loaded from another origin), that the event stream takes the token
//! only in the Authorization header, and the fleet summary the dashboard shows.

use std::time::Duration;

use serde_json::Value;
use testkit::device::{self, Device, Spec};
use testkit::{TOKEN, TestServer};

async fn start() -> TestServer {
    TestServer::start(|_| {}).await
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
    let s = start().await;
    for &(path, content_type, embedded) in lwm2m_server::dashboard::ASSETS {
        let r = s.get(path, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), content_type, "{path}");
        assert_eq!(r.body, embedded, "{path} is served as embedded");
        let csp = r.header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{path}: CSP {csp:?}"
        );
        let urls = external_urls(&r.body);
        assert!(urls.is_empty(), "{path} names other origins: {urls:?}");
    }
    // The page refers to its own files, which are all served.
    let index = s.get("/", None).await.body;
    for asset in ["/assets/app.js", "/assets/app.css", "/assets/favicon.svg"] {
        assert!(index.contains(asset), "index.html does not load {asset}");
    }
    assert!(index.contains("data-testid=\"token-input\""));
    assert_eq!(s.get("/index.html", None).await.status, 200);
    assert_eq!(s.get("/assets/nope.js", None).await.status, 404);
    // The page holds no secret, the API still does.
    assert_eq!(s.get("/api/clients", None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_takes_the_token_in_the_header_only() {
    let s = start().await;
    let url = "/api/events";
    assert_eq!(s.get(url, None).await.status, 401);
    let wrong = s.get(url, Some("not-the-token")).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("wrong admin token"), "{}", wrong.body);
    // The page reads the stream with fetch() and the header; a token in the URL (which would end
    // up in logs and history) is not accepted, right or wrong.
    assert_eq!(
        s.get(&format!("{url}?token=not-the-token"), None)
            .await
            .status,
        401
    );
    assert_eq!(
        s.get(&format!("{url}?token={TOKEN}"), None).await.status,
        401
    );
    let ok = s.get(url, Some(TOKEN)).await;
    assert_eq!(ok.status, 200);
    assert!(ok.header("content-type").starts_with("text/event-stream"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_summary_counts_devices_and_learns_versions_from_reads() {
    let s = start().await;
    let mut devices = Vec::new();
    for ep in ["dash-a", "dash-b", "other-c"] {
        devices.push(Device::start(Spec::new(device::config(ep, s.coap_addr(), &s.trust()))).await);
    }
    let auth = Some(TOKEN);
    let mut fleet = Value::Null;
    for _ in 0..200 {
        let r = s.get("/api/fleet", auth).await;
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
    let r = s.get("/api/clients/dash-a/read/3/0/3", auth).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.get("/api/fleet?filter=dash", auth).await;
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
    let r = s.get("/api/fleet?filter=*-c&limit=0", auth).await;
    let fleet: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(fleet["matching"], 1);
    assert_eq!(fleet["devices"], serde_json::json!([]));
    drop(devices);
}

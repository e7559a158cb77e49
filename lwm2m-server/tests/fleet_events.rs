//! Events between nodes: two `lwm2m-server serve --store postgres://...` nodes on one throw-away
//! PostgreSQL (`support::pg`), each on a CoAP port of its own, and the event stream
//! (`/api/events`) of each read over HTTP. A device registering on one node shows on the other
//! node's stream exactly once, naming the node that heard it, and once on its own node's stream
//! (a node hears its own NOTIFYs and must not pass them on again). A malformed NOTIFY is logged
//! and skipped, and after a restart of PostgreSQL events flow again.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::pg::PgCluster;
use support::process::{Running, free_port, free_udp_port};
use testkit::device::{self, Device, Spec};
use testkit::release;

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");

/// A node on CoAP port `coap` of its own, logging to `log`; waits for its admin API.
fn start(name: &str, store: &str, data: &Path, trust: &Path, coap: u16, log: &Path) -> Running {
    let http = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--node-id", name])
        .args(["--coap", &format!("127.0.0.1:{coap}"), "--http", &http])
        .args(["--admin-token", "t", "--store", store])
        .args(["--read-device-info", "off", "--data"])
        .arg(data)
        .arg("--trust-key")
        .arg(trust)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    Running::start(cmd, &http)
}

/// Reads `stream` for `quiet` after the last event, or until `limit`: every event seen.
fn drain(stream: &Receiver<Value>, quiet: Duration, limit: Instant) -> Vec<Value> {
    let mut seen = Vec::new();
    while Instant::now() < limit {
        match stream.recv_timeout(quiet) {
            Ok(v) => seen.push(v),
            Err(_) => break,
        }
    }
    seen
}

/// Reads `stream` until an event of `kind` for `endpoint` arrives (at most 20 s), then for 2 s
/// more: every such event seen.
fn events_of(stream: &Receiver<Value>, kind: &str, endpoint: &str, what: &str) -> Vec<Value> {
    let matches = |v: &Value| v["type"] == kind && v["endpoint"] == endpoint;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stream.recv_timeout(left) {
            Ok(v) if matches(&v) => {
                seen.push(v);
                break;
            }
            Ok(_) => {}
            Err(_) => panic!("no {kind} event of {endpoint} on {what} within 20 s"),
        }
    }
    let more = drain(
        stream,
        Duration::from_secs(2),
        Instant::now() + Duration::from_secs(2),
    );
    seen.extend(more.into_iter().filter(matches));
    seen
}

/// Waits (at most 30 s) until `log` has `text` `count` times (off the runtime's threads' work:
/// the devices run there).
fn wait_for_log(log: &Path, text: &str, count: usize) {
    tokio::task::block_in_place(|| wait_for_log_blocking(log, text, count));
}

fn wait_for_log_blocking(log: &Path, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::fs::read_to_string(log).unwrap_or_default();
        if now.matches(text).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{text:?} not logged {count} times in {}:\n{now}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A device registers on `coap` (the real engine); waits until it is registered.
async fn register(ep: &str, coap: u16, key: &p256::ecdsa::SigningKey) -> Device {
    let server = SocketAddr::from(([127, 0, 0, 1], coap));
    let d = Device::start(Spec::new(device::config(ep, server, key.verifying_key()))).await;
    d.wait_for("registered", |d| d.counters().registrations >= 1)
        .await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_node_once_and_survive_a_restart_of_postgres() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.new_database();
    let dir = tempfile::tempdir().unwrap();
    let key = release::key();
    let trust = release::write_release(dir.path(), &key, "2.0.0", 1_000).trust;
    let data = dir.path().join("data");
    let logs = [dir.path().join("n1.log"), dir.path().join("n2.log")];
    let coap = [free_udp_port(), free_udp_port()];
    let mut nodes = Vec::new();
    for i in 0..2 {
        let (url, data, trust, log) = (url.clone(), data.clone(), trust.clone(), logs[i].clone());
        let name = format!("n{}", i + 1);
        nodes.push(
            tokio::task::spawn_blocking(move || start(&name, &url, &data, &trust, coap[i], &log))
                .await
                .unwrap(),
        );
    }
    for log in &logs {
        wait_for_log(log, "sending and hearing the other nodes' events", 1);
    }
    let streams: Vec<Receiver<Value>> = nodes
        .iter()
        .map(|n| testkit::http::event_stream(&format!("{}/api/events", n.http), "t"))
        .collect();

    // A device on n2 first: both streams are live once n2's own stream shows it, and n1 hears
    // n2 (the other way round).
    let warm = register("fe-warm", coap[1], &key).await;
    let on_n2 = tokio::task::block_in_place(|| {
        events_of(&streams[1], "registered", "fe-warm", "n2's stream")
    });
    assert_eq!(on_n2.len(), 1, "{on_n2:?}");
    assert_eq!(on_n2[0]["node"], "n2", "{on_n2:?}");
    let on_n1 = tokio::task::block_in_place(|| {
        events_of(&streams[0], "registered", "fe-warm", "n1's stream")
    });
    assert_eq!(on_n1.len(), 1, "{on_n1:?}");
    assert_eq!(on_n1[0]["node"], "n2", "{on_n1:?}");

    // A device registers on n1: n2's stream shows it once, with n1 named; n1's own stream
    // shows it once (not again when n1 hears its own NOTIFY).
    let first = register("fe-one", coap[0], &key).await;
    assert_eq!(first.counters().registrations, 1);
    let on_n2 =
        tokio::task::block_in_place(|| events_of(&streams[1], "registered", "fe-one", "n2"));
    assert_eq!(on_n2.len(), 1, "{on_n2:?}");
    assert_eq!(on_n2[0]["node"], "n1", "{on_n2:?}");
    assert!(on_n2[0]["reg_id"].as_str().is_some_and(|r| !r.is_empty()));
    let on_n1 =
        tokio::task::block_in_place(|| events_of(&streams[0], "registered", "fe-one", "n1"));
    assert_eq!(on_n1.len(), 1, "{on_n1:?}");
    assert_eq!(on_n1[0]["node"], "n1", "{on_n1:?}");
    assert_eq!(on_n1[0]["reg_id"], on_n2[0]["reg_id"]);

    // Garbage on the channel is logged and skipped by both nodes, which carry on.
    pg.sql_in(&url, "NOTIFY otafleet_events, 'not an event'");
    pg.sql_in(
        &url,
        r#"NOTIFY otafleet_events, '{"node":"x","events":[{"no":"type"}]}'"#,
    );
    for log in &logs {
        wait_for_log(log, "skipped a malformed notification", 2);
    }

    // PostgreSQL restarts: every connection is cut. The nodes say that events may have been
    // missed, open their connections again, and events flow again.
    tokio::task::block_in_place(|| pg.restart());
    for log in &logs {
        wait_for_log(log, "may have been missed", 1);
    }
    let after = register("fe-after", coap[0], &key).await;
    let on_n2 =
        tokio::task::block_in_place(|| events_of(&streams[1], "registered", "fe-after", "n2"));
    assert_eq!(on_n2.len(), 1, "{on_n2:?}");
    assert_eq!(on_n2[0]["node"], "n1", "{on_n2:?}");
    let on_n1 =
        tokio::task::block_in_place(|| events_of(&streams[0], "registered", "fe-after", "n1"));
    assert_eq!(on_n1.len(), 1, "{on_n1:?}");
    // It was restarted indeed.
    assert_eq!(
        pg.log().matches("ready to accept connections").count(),
        2,
        "{}",
        pg.log()
    );
    drop((warm, first, after));
    drop(nodes);
    drop(pg);
}

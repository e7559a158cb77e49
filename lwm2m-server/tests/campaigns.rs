//! Campaigns end to end over real UDP and HTTP on loopback: the real device engine (testkit's
//! `Device`), the REST API served by axum, the `lwm2m-server campaign` commands run as a process,
//! and the server-sent event stream.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::TestServer;
use testkit::device::{self, Device, Spec};
use testkit::release::firmware;
use testkit::server::sleepy_devices;

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");

async fn start() -> TestServer {
    TestServer::start(|_| {}).await
}

/// The real engine as `ep`, trusting the server's key.
fn spec(s: &TestServer, ep: &str) -> Spec {
    Spec::new(device::config(ep, s.coap_addr(), &s.trust()))
}

/// The events of the stream until a campaign reaches `final_state`: the campaign events, in
/// order.
fn campaign_events(
    events: std::sync::mpsc::Receiver<Value>,
    final_state: &'static str,
) -> std::thread::JoinHandle<Vec<Value>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while let Ok(v) = events.recv_timeout(Duration::from_secs(60)) {
            if v["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("campaign-"))
            {
                let done = v["type"] == "campaign-state" && v["state"] == final_state;
                seen.push(v);
                if done {
                    break;
                }
            }
        }
        seen
    })
}

/// POST /api/campaigns: the status and the answer.
async fn create(s: &TestServer, body: Value) -> (u16, Value) {
    s.api("POST", "/campaigns", Some(body)).await
}

/// POST /api/campaigns/{id}/{action} (pause, resume, abort): the status and the answer.
async fn act(s: &TestServer, id: i64, action: &str) -> (u16, Value) {
    s.api("POST", &format!("/campaigns/{id}/{action}"), None)
        .await
}

/// Waits (at most 60 s) until campaign `id` is final with no device running, and returns it.
async fn settled(s: &TestServer, id: i64) -> Value {
    let what = format!("campaign {id} to settle");
    testkit::wait::until(&what, Duration::from_secs(60), async || {
        let (code, v) = s.api("GET", &format!("/campaigns/{id}"), None).await;
        assert_eq!(code, 200, "{v}");
        let fin = matches!(
            v["state"].as_str(),
            Some("completed" | "halted" | "aborted")
        );
        (fin && v["totals"]["running"] == 0).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_created_with_the_cli_rolls_out_in_waves_one_device_per_mesh_at_a_time() {
    let s = start().await;
    let rel = s.add_release(&firmware("2.0.0", 3000), 5, "2.0.0");
    let mut devs = Vec::new();
    for i in 1..=4 {
        let ep = format!("dev-{i}");
        devs.push(Device::start(spec(&s, &ep)).await);
        s.registered(&ep).await;
    }
    // Not a target: its name does not match.
    let other = Device::start(spec(&s, "gw-1")).await;
    s.registered("gw-1").await;
    let events = campaign_events(s.events(), "completed");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (ok, out, err) = s
        .cli(
            BIN,
            &[
                "campaign",
                "create",
                "--release",
                &rel,
                "--pattern",
                "dev-*",
                "--waves",
                "25,100",
                "--soak",
                "0.5s",
                "--max-per-mesh",
                "1",
                "--json",
            ],
        )
        .await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["campaign"]["waves"][0]["size"], 1);
    assert_eq!(created["campaign"]["waves"][1]["size"], 3);

    // --watch follows it until it is final, then prints it.
    let (ok, out, err) = s
        .cli(
            BIN,
            &["campaign", "show", &id.to_string(), "--watch", "--json"],
        )
        .await;
    assert!(ok, "{err}");
    let watched: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(watched["state"], "completed", "{watched}");

    let v = settled(&s, id).await;
    assert_eq!(v["state"], "completed");
    assert_eq!(v["release_version"], "2.0.0");
    assert_eq!(v["totals"]["succeeded"], 4, "{v}");
    assert_eq!(v["waves"][0]["counts"]["succeeded"], 1);
    assert_eq!(v["waves"][1]["counts"]["succeeded"], 3);
    let rows = v["devices"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    // All on 127.0.0.0/24, one mesh, limit 1: the devices ran one after the other.
    let mut spans: Vec<(i64, i64)> = rows
        .iter()
        .map(|d| {
            assert_eq!(d["mesh"], "127.0.0.0/24");
            assert!(d["job_id"].as_i64().is_some());
            (
                d["started_at_ms"].as_i64().unwrap(),
                d["finished_at_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "overlapping downloads on one mesh: {spans:?}"
    );
    // The soak of 0.5 s separates the waves.
    let w0_end = v["waves"][0]["finished_at_ms"].as_i64().unwrap();
    let w1_start = v["waves"][1]["started_at_ms"].as_i64().unwrap();
    assert!(w1_start >= w0_end + 500, "{w0_end} {w1_start}");
    for d in &devs {
        assert_eq!(d.installed_version(), "2.0.0");
    }
    assert_ne!(other.installed_version(), "2.0.0", "gw-1 was not a target");

    // The event stream carried the campaign: waves, devices, states.
    let events = tokio::task::spawn_blocking(move || events.join().unwrap())
        .await
        .unwrap();
    let kinds = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!(kinds("campaign-wave"), 2, "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "campaign-device" && e["status"] == "succeeded")
            .count(),
        4,
        "{events:?}"
    );
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "campaign-state")
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states, ["running", "soaking", "running", "completed"]);

    // list and show in text.
    let (ok, out, _) = s.cli(BIN, &["campaign", "list"]).await;
    assert!(ok && out.contains("completed"), "{out}");
    let (ok, out, _) = s.cli(BIN, &["campaign", "show", &id.to_string()]).await;
    assert!(
        ok && out.contains("dev-3") && out.contains("succeeded"),
        "{out}"
    );
    // A final campaign cannot be paused: 409 and a non-zero exit with the reason.
    let (ok, _, err) = s.cli(BIN, &["campaign", "pause", &id.to_string()]).await;
    assert!(!ok && err.contains("completed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_first_wave_halts_and_pause_resume_abort_work_over_rest() {
    let s = start().await;
    let rel = s.add_release(&firmware("3.0.0", 2000), 5, "3.0.0");
    let mut devs = Vec::new();
    for i in 1..=4 {
        let ep = format!("h-{i}");
        let mut spec = spec(&s, &ep);
        if i == 1 {
            // h-1's update fails: it is hardware of another class, which refuses the release
            // (Update Result 6). It also runs an older version, so a version filter can leave it
            // out.
            spec.config.identity.class_id = [9; 16];
            spec.factory_version = "0.9.0".into();
        }
        devs.push(Device::start(spec).await);
        s.registered(&ep).await;
    }
    // Wave 1 is h-1 alone, whose update fails: halted, nobody else touched.
    let (code, v) = create(
        &s,
        json!({
            "release": rel,
            "target": { "endpoints": ["h-1", "h-2", "h-3", "h-4"] },
            "waves": [25, 100],
            "soak_s": 0
        }),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let v = settled(&s, id).await;
    assert_eq!(v["state"], "halted", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("wave 1"), "{v}");
    assert_eq!(v["waves"][0]["counts"]["failed"], 1);
    assert_eq!(v["waves"][1]["counts"]["skipped"], 3);
    assert!(v["waves"][1]["started_at_ms"].is_null());
    for d in &devs[1..] {
        assert!(d.transfers().is_empty(), "a device of wave 2 downloaded");
    }
    let (code, v) = act(&s, id, "resume").await;
    assert_eq!(code, 409, "{v}");

    // Created paused, started with resume, paused, resumed, aborted.
    let (code, v) = create(
        &s,
        json!({
            "release": rel,
            "target": { "pattern": "h-*", "firmware_version": "1.0.0" },
            "waves": [100],
            "max_per_mesh": 1,
            "start": false
        }),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["campaign"]["state"], "created");
    // h-1 reports 0.9.0 (read from the device): left out by the filter.
    assert_eq!(v["campaign"]["waves"][0]["size"], 3, "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, v) = s.api("GET", &format!("/campaigns/{id}"), None).await;
    assert_eq!(v["totals"]["queued"], 3, "a created campaign started: {v}");
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["endpoint"] != "h-1"),
        "{v}"
    );
    let (code, v) = act(&s, id, "resume").await;
    assert_eq!((code, v["state"].as_str()), (200, Some("running")), "{v}");
    let (code, v) = act(&s, id, "pause").await;
    assert_eq!((code, v["state"].as_str()), (200, Some("paused")), "{v}");
    // The device in flight finishes; nothing else starts.
    for _ in 0..300 {
        let (_, v) = s.api("GET", &format!("/campaigns/{id}"), None).await;
        if v["totals"]["running"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, v) = s.api("GET", &format!("/campaigns/{id}"), None).await;
    let started = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| !d["started_at_ms"].is_null())
        .count();
    assert_eq!(started, 1, "devices started while paused: {v}");
    let (code, _) = act(&s, id, "resume").await;
    assert_eq!(code, 200);
    let (code, v) = act(&s, id, "abort").await;
    assert_eq!((code, v["state"].as_str()), (200, Some("aborted")), "{v}");
    let v = settled(&s, id).await;
    assert_eq!(v["state"], "aborted");
    assert_eq!(v["reason"], "aborted by the operator");
    assert_eq!(v["totals"]["queued"], 0, "{v}");
    assert!(v["totals"]["skipped"].as_u64().unwrap() >= 1, "{v}");
    let (code, _) = act(&s, id, "abort").await;
    assert_eq!(code, 409);
    let (code, v) = s.api("GET", "/campaigns", None).await;
    assert_eq!((code, v.as_array().map(Vec::len)), (200, Some(2)));
    assert!(v[0].get("devices").is_none(), "lists carry no device rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_device_holds_no_slot_and_is_updated_when_it_wakes() {
    // Awake 300 ms after it last sent (the server believes 250 ms), an Update every second.
    let s = TestServer::start(sleepy_devices).await;
    let rel = s.add_release(&firmware("4.0.0", 2000), 5, "4.0.0");
    let sleeper = Device::start(spec(&s, "a-sleeper").sleepy()).await;
    s.registered("a-sleeper").await;
    let awake = Device::start(spec(&s, "b-awake")).await;
    s.registered("b-awake").await;
    // Start while the sleeper sleeps; it comes first in the order and the limit is one device.
    for _ in 0..100 {
        if !s.server.registry.is_reachable("a-sleeper") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!s.server.registry.is_reachable("a-sleeper"));
    let (code, v) = create(
        &s,
        json!({
            "release": rel,
            "target": { "endpoints": ["a-sleeper", "b-awake"] },
            "waves": [100],
            "max_concurrent": 1
        }),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let v = settled(&s, id).await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(v["totals"]["succeeded"], 2, "{v}");
    let row = |ep: &str| {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["endpoint"] == ep)
            .cloned()
            .unwrap()
    };
    // The awake device did not wait behind the sleeper's slot.
    let (a, b) = (row("a-sleeper"), row("b-awake"));
    assert!(
        b["started_at_ms"].as_i64() < a["started_at_ms"].as_i64(),
        "the sleeper held the only slot: {a} {b}"
    );
    assert_eq!(sleeper.installed_version(), "4.0.0");
    assert_eq!(awake.installed_version(), "4.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_campaign_requests_get_400_with_a_reason_and_the_cli_exits_non_zero() {
    let s = start().await;
    let rel = s.add_release(&firmware("5.0.0", 1000), 5, "5.0.0");
    let _dev = Device::start(spec(&s, "x-1")).await;
    s.registered("x-1").await;
    let target = json!({ "pattern": "x-*" });
    let cases = [
        (
            json!({ "release": "0000000000000000", "target": target }),
            "no release",
        ),
        (
            json!({ "release": rel, "target": { "pattern": "nomatch-*" } }),
            "target set is empty",
        ),
        (json!({ "release": rel, "target": {} }), "no target"),
        (
            json!({ "release": rel, "target": { "endpoints": [] } }),
            "empty",
        ),
        (
            json!({ "release": rel, "target": { "endpoints": ["ghost"] } }),
            "not registered",
        ),
        (
            json!({ "release": rel, "target": target, "waves": [] }),
            "empty",
        ),
        (
            json!({ "release": rel, "target": target, "waves": [10, 5, 100] }),
            "increase",
        ),
        (
            json!({ "release": rel, "target": target, "waves": [50, 150] }),
            "range",
        ),
        (
            json!({ "release": rel, "target": target, "waves": [10, 50] }),
            "last wave",
        ),
        (
            json!({ "release": rel, "target": target, "failure_threshold": 1.5 }),
            "threshold",
        ),
        (
            json!({ "release": rel, "target": target, "failure_threshold": -0.1 }),
            "threshold",
        ),
        (
            json!({ "release": rel, "target": target, "max_per_mesh": 0 }),
            "at least 1",
        ),
        (
            json!({ "release": rel, "target": target, "soak_s": 1e300 }),
            "soak time",
        ),
        (
            json!({ "release": rel, "target": target, "soak_s": -1 }),
            "soak time",
        ),
        (json!({ "target": target }), "release"),
        (
            json!({ "release": rel, "target": target, "wavez": [1] }),
            "wavez",
        ),
    ];
    for (body, want) in cases {
        let (code, v) = create(&s, body.clone()).await;
        assert_eq!(code, 400, "{body} -> {v}");
        let msg = v["error"].as_str().unwrap_or("");
        assert!(msg.contains(want), "{body}: {msg:?} lacks {want:?}");
    }
    let (code, _) = s.api("GET", "/campaigns/99", None).await;
    assert_eq!(code, 404);
    assert!(s.server.campaigns.list().unwrap().is_empty());

    // The CLI: non-zero, the server's reason on stderr.
    for (args, want) in [
        (vec!["--release", "0000000000000000", "x-1"], "no release"),
        (
            vec!["--release", rel.as_str(), "--waves", "10,5,100", "x-1"],
            "increase",
        ),
        (
            vec!["--release", rel.as_str(), "--waves", "1,x", "x-1"],
            "bad --waves",
        ),
        (
            vec!["--release", rel.as_str(), "--threshold", "2", "x-1"],
            "threshold",
        ),
        (
            vec!["--release", rel.as_str(), "--pattern", "nomatch-*"],
            "target set is empty",
        ),
        (
            vec!["--release", rel.as_str(), "--soak", "ten"],
            "bad duration",
        ),
    ] {
        let mut full = vec!["campaign", "create"];
        full.extend(args.iter().copied());
        let (ok, _, err) = s.cli(BIN, &full).await;
        assert!(!ok, "{full:?} succeeded");
        assert!(err.contains(want), "{full:?}: {err:?} lacks {want:?}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    }
    let (ok, _, err) = s.cli(BIN, &["campaign", "show", "42"]).await;
    assert!(!ok && err.contains("no campaign 42"), "{err}");
}

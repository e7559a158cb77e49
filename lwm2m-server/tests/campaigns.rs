//! Campaigns end to end over real UDP and HTTP on loopback: scripted LwM2M devices
//! (tests/support/fake_device.rs), the REST API served by axum, the `lwm2m-server campaign`
//! commands run as a process, and the server-sent event stream.

mod support;

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use lwm2m_server::clock::SystemClock;
use lwm2m_server::server::{Server, ServerConfig};
use serde_json::{Value, json};
use suit_manifest::TrustAnchor;
use suit_manifest::builder::{self, ComponentSpec, ManifestSpec};
use support::fake_device::{Behaviour, DeviceConfig, FakeDevice};

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");
const TOKEN: &str = "campaign-test-token";
const VENDOR: [u8; 16] = [0xaa; 16];
const CLASS: [u8; 16] = [0xbb; 16];

struct Setup {
    server: Arc<Server>,
    key: p256::ecdsa::SigningKey,
    http: String,
    _dir: tempfile::TempDir,
}

async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let key = suit_manifest::keyfile::generate().unwrap();
    let mut config = ServerConfig::new(dir.path().to_path_buf(), format!("coap://{addr}"));
    config
        .trust
        .push(TrustAnchor::from_key(*key.verifying_key()));
    config.jobs.poll_interval = Duration::from_millis(300);
    config.jobs.retry_delay = Duration::from_millis(100);
    config.jobs.download_timeout = Duration::from_secs(20);
    config.jobs.update_timeout = Duration::from_secs(15);
    config.dm.request_timeout = Duration::from_secs(10);
    config.campaigns.tick = Duration::from_millis(100);
    tweak(&mut config);
    let server = Server::start(socket, config, Arc::new(SystemClock))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = format!("http://{}", listener.local_addr().unwrap());
    let app = lwm2m_server::api::router(server.clone(), TOKEN, 1 << 20);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Setup {
        server,
        key,
        http,
        _dir: dir,
    }
}

fn add_suit(s: &Setup, img: &[u8], seq: u64, version: &str) -> String {
    let mut comp = ComponentSpec::for_image(img, VENDOR, CLASS);
    comp.uri = Some("image".into());
    comp.version = Some(version.into());
    let env = builder::signed_envelope(
        &ManifestSpec::new(seq, comp),
        &s.key,
        suit_manifest::Algorithm::Es256,
    )
    .unwrap();
    s.server.repo.add_suit(&env, img, 0).unwrap().0.id
}

fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

fn suit_device(s: &Setup, ep: &str) -> DeviceConfig {
    DeviceConfig {
        trust: Some(TrustAnchor::from_key(*s.key.verifying_key())),
        vendor_id: VENDOR,
        class_id: CLASS,
        sequence: 1,
        ..DeviceConfig::new(ep, s.server.coap_addr())
    }
}

async fn registered(s: &Setup, ep: &str) {
    for _ in 0..200 {
        if s.server.registry.get(ep).is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{ep} did not register");
}

/// A REST call (blocking ureq on a blocking thread): status and JSON body.
async fn http(s: &Setup, method: &'static str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}/api{path}", s.http);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let auth = format!("Bearer {TOKEN}");
        let mut r = match (method, body) {
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            (_, Some(b)) => agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(&b),
            (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
        }
        .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

/// Runs `lwm2m-server <args>` against the test server: success, stdout, stderr.
async fn cli(s: &Setup, args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let url = s.http.clone();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(BIN)
            .args(&args)
            .env("OTAFLEET_URL", url)
            .env("OTAFLEET_TOKEN", TOKEN)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Reads `/api/events` until a campaign reaches `final_state`; returns the campaign events.
fn sse_until(http: String, final_state: &'static str) -> std::thread::JoinHandle<Vec<Value>> {
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let r = agent
            .get(&format!("{http}/api/events"))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap();
        let mut seen = Vec::new();
        let reader = std::io::BufReader::new(r.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let v: Value = serde_json::from_str(data.trim()).unwrap();
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

async fn settled(s: &Setup, id: i64) -> Value {
    for _ in 0..600 {
        let (code, v) = http(s, "GET", &format!("/campaigns/{id}"), None).await;
        assert_eq!(code, 200, "{v}");
        let fin = matches!(
            v["state"].as_str(),
            Some("completed" | "halted" | "aborted")
        );
        if fin && v["totals"]["running"] == 0 {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("campaign {id} did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_created_with_the_cli_rolls_out_in_waves_one_device_per_mesh_at_a_time() {
    let s = start_with(|_| {}).await;
    let rel = add_suit(&s, &image(3000, 1), 5, "2.0.0");
    let mut devs = Vec::new();
    for i in 1..=4 {
        let ep = format!("dev-{i}");
        devs.push(FakeDevice::start(suit_device(&s, &ep)).await);
        registered(&s, &ep).await;
    }
    // Not a target: its name does not match.
    let other = FakeDevice::start(suit_device(&s, "gw-1")).await;
    registered(&s, "gw-1").await;
    let events = sse_until(s.http.clone(), "completed");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (ok, out, err) = cli(
        &s,
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
    let (ok, out, err) = cli(
        &s,
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
    let (ok, out, _) = cli(&s, &["campaign", "list"]).await;
    assert!(ok && out.contains("completed"), "{out}");
    let (ok, out, _) = cli(&s, &["campaign", "show", &id.to_string()]).await;
    assert!(
        ok && out.contains("dev-3") && out.contains("succeeded"),
        "{out}"
    );
    // A final campaign cannot be paused: 409 and a non-zero exit with the reason.
    let (ok, _, err) = cli(&s, &["campaign", "pause", &id.to_string()]).await;
    assert!(!ok && err.contains("completed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_first_wave_halts_and_pause_resume_abort_work_over_rest() {
    let s = start_with(|_| {}).await;
    let rel = add_suit(&s, &image(2000, 2), 5, "3.0.0");
    let mut devs = Vec::new();
    for i in 1..=4 {
        let ep = format!("h-{i}");
        let behaviour = if i == 1 {
            Behaviour::FailUpdate
        } else {
            Behaviour::Normal
        };
        // h-1 also runs an older version, so a version filter can leave it out.
        let installed_version = if i == 1 { "0.9.0" } else { "1.0.0" };
        devs.push(
            FakeDevice::start(DeviceConfig {
                behaviour,
                installed_version: installed_version.into(),
                ..suit_device(&s, &ep)
            })
            .await,
        );
        registered(&s, &ep).await;
    }
    // Wave 1 is h-1 alone, whose update fails: halted, nobody else touched.
    let (code, v) = http(
        &s,
        "POST",
        "/campaigns",
        Some(json!({
            "release": rel,
            "target": { "endpoints": ["h-1", "h-2", "h-3", "h-4"] },
            "waves": [25, 100],
            "soak_s": 0
        })),
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
    let (code, v) = http(&s, "POST", &format!("/campaigns/{id}/resume"), None).await;
    assert_eq!(code, 409, "{v}");

    // Created paused, started with resume, paused, resumed, aborted.
    let (code, v) = http(
        &s,
        "POST",
        "/campaigns",
        Some(json!({
            "release": rel,
            "target": { "pattern": "h-*", "firmware_version": "1.0.0" },
            "waves": [100],
            "max_per_mesh": 1,
            "start": false
        })),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["campaign"]["state"], "created");
    // h-1 reports 0.9.0 (read from the device): left out by the filter.
    assert_eq!(v["campaign"]["waves"][0]["size"], 3, "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, v) = http(&s, "GET", &format!("/campaigns/{id}"), None).await;
    assert_eq!(v["totals"]["queued"], 3, "a created campaign started: {v}");
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["endpoint"] != "h-1"),
        "{v}"
    );
    let (code, v) = http(&s, "POST", &format!("/campaigns/{id}/resume"), None).await;
    assert_eq!((code, v["state"].as_str()), (200, Some("running")), "{v}");
    let (code, v) = http(&s, "POST", &format!("/campaigns/{id}/pause"), None).await;
    assert_eq!((code, v["state"].as_str()), (200, Some("paused")), "{v}");
    // The device in flight finishes; nothing else starts.
    for _ in 0..300 {
        let (_, v) = http(&s, "GET", &format!("/campaigns/{id}"), None).await;
        if v["totals"]["running"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, v) = http(&s, "GET", &format!("/campaigns/{id}"), None).await;
    let started = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| !d["started_at_ms"].is_null())
        .count();
    assert_eq!(started, 1, "devices started while paused: {v}");
    let (code, _) = http(&s, "POST", &format!("/campaigns/{id}/resume"), None).await;
    assert_eq!(code, 200);
    let (code, v) = http(&s, "POST", &format!("/campaigns/{id}/abort"), None).await;
    assert_eq!((code, v["state"].as_str()), (200, Some("aborted")), "{v}");
    let v = settled(&s, id).await;
    assert_eq!(v["state"], "aborted");
    assert_eq!(v["reason"], "aborted by the operator");
    assert_eq!(v["totals"]["queued"], 0, "{v}");
    assert!(v["totals"]["skipped"].as_u64().unwrap() >= 1, "{v}");
    let (code, _) = http(&s, "POST", &format!("/campaigns/{id}/abort"), None).await;
    assert_eq!(code, 409);
    let (code, v) = http(&s, "GET", "/campaigns", None).await;
    assert_eq!((code, v.as_array().map(Vec::len)), (200, Some(2)));
    assert!(v[0].get("devices").is_none(), "lists carry no device rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_device_holds_no_slot_and_is_updated_when_it_wakes() {
    let s = start_with(|c| c.registry.awake_window = Duration::from_millis(250)).await;
    let rel = add_suit(&s, &image(2000, 3), 5, "4.0.0");
    let sleeper = FakeDevice::start(DeviceConfig {
        queue_mode: true,
        awake_window: Duration::from_millis(300),
        update_interval: Duration::from_millis(1500),
        ..suit_device(&s, "a-sleeper")
    })
    .await;
    registered(&s, "a-sleeper").await;
    let awake = FakeDevice::start(suit_device(&s, "b-awake")).await;
    registered(&s, "b-awake").await;
    // Start while the sleeper sleeps; it comes first in the order and the limit is one device.
    for _ in 0..100 {
        if !s.server.registry.is_reachable("a-sleeper") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!s.server.registry.is_reachable("a-sleeper"));
    let (code, v) = http(
        &s,
        "POST",
        "/campaigns",
        Some(json!({
            "release": rel,
            "target": { "endpoints": ["a-sleeper", "b-awake"] },
            "waves": [100],
            "max_concurrent": 1
        })),
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
    let s = start_with(|_| {}).await;
    let rel = add_suit(&s, &image(1000, 4), 5, "5.0.0");
    let _dev = FakeDevice::start(suit_device(&s, "x-1")).await;
    registered(&s, "x-1").await;
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
        let (code, v) = http(&s, "POST", "/campaigns", Some(body.clone())).await;
        assert_eq!(code, 400, "{body} -> {v}");
        let msg = v["error"].as_str().unwrap_or("");
        assert!(msg.contains(want), "{body}: {msg:?} lacks {want:?}");
    }
    let (code, _) = http(&s, "GET", "/campaigns/99", None).await;
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
        let (ok, _, err) = cli(&s, &full).await;
        assert!(!ok, "{full:?} succeeded");
        assert!(err.contains(want), "{full:?}: {err:?} lacks {want:?}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    }
    let (ok, _, err) = cli(&s, &["campaign", "show", "42"]).await;
    assert!(!ok && err.contains("no campaign 42"), "{err}");
}

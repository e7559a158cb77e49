//! The operator's view, end to end on loopback with the real device engine: the model and
//! firmware version read once per registration (and not at all when off), reads named by the
//! object models, models added over the API and the command line, download progress from the
//! distinct blocks served, and the binary's logs, shell completions and version.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coap_lite::RequestType;
use lwm2m_server::device_info::ReadDeviceInfo;
use lwm2m_server::events::ServerEvent;
use serde_json::{Value, json};
use testkit::device::{self, Device, Spec};
use testkit::release::firmware;
use testkit::{TestServer, wait};

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");

fn spec(s: &TestServer, ep: &str) -> Spec {
    Spec::new(device::config(ep, s.coap_addr(), &s.trust()))
}

/// GETs of `path` the device answered (first copies only, not while it was off).
fn reads(dev: &Device, path: &str) -> usize {
    dev.requests()
        .iter()
        .filter(|r| {
            r.method == RequestType::Get && r.path == path && !r.retransmission && !r.while_off
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_and_version_are_read_once_per_registration() {
    let s = TestServer::start(|c| c.read_device_info = ReadDeviceInfo::OnRegister).await;
    let mut events = s.server.events.subscribe();
    let dev = Device::start(spec(&s, "info-1")).await;
    s.registered("info-1").await;
    let info = wait::until(
        "the model and version read at registration",
        Duration::from_secs(10),
        async || {
            let i = s.server.store.device_info("info-1").unwrap()?;
            (i.model.is_some() && i.firmware_version.is_some()).then_some(i)
        },
    )
    .await;
    assert_eq!(
        (info.model.as_deref(), info.firmware_version.as_deref()),
        (Some("test"), Some("1.0.0"))
    );
    assert_eq!((reads(&dev, "/3/0/1"), reads(&dev, "/3/0/3")), (1, 1));
    // The fleet view shows them, and the event stream told it so.
    let (_, fleet) = s.api("GET", "/fleet", None).await;
    assert_eq!(
        (
            &fleet["devices"][0]["model"],
            &fleet["devices"][0]["firmware_version"]
        ),
        (&json!("test"), &json!("1.0.0"))
    );
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(ServerEvent::DeviceInfo {
                endpoint, model, ..
            }) = events.recv().await
            {
                return (endpoint, model);
            }
        }
    })
    .await
    .expect("a device-info event");
    assert_eq!(ev, ("info-1".to_string(), Some("test".to_string())));

    // A registration Update (Registration Update Trigger) is not a new registration: no read.
    let before = s.server.registry.get("info-1").unwrap();
    let (status, _) = s
        .api("POST", "/clients/info-1/execute/1/0/8", Some(json!({})))
        .await;
    assert_eq!(status, 200);
    wait::until(
        "the registration update",
        Duration::from_secs(10),
        async || {
            (s.server.registry.get("info-1")?.updated_at_ms > before.updated_at_ms).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (reads(&dev, "/3/0/1"), reads(&dev, "/3/0/3")),
        (1, 1),
        "read again on an Update"
    );

    // A reboot registers again: read once more, once.
    let (status, _) = s
        .api("POST", "/clients/info-1/execute/3/0/4", Some(json!({})))
        .await;
    assert_eq!(status, 200);
    wait::until(
        "the second registration's reads",
        Duration::from_secs(15),
        async || {
            let r = s.server.registry.get("info-1")?;
            (r.reg_id != before.reg_id && reads(&dev, "/3/0/3") == 2).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((reads(&dev, "/3/0/1"), reads(&dev, "/3/0/3")), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_device_info_is_read_when_it_is_off() {
    let s = TestServer::start(|c| c.read_device_info = ReadDeviceInfo::Off).await;
    let dev = Device::start(spec(&s, "quiet-1")).await;
    s.registered("quiet-1").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        dev.requests().is_empty(),
        "the server asked: {:?}",
        dev.requests()
    );
    assert!(s.server.store.device_info("quiet-1").unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_discovers_are_named_typed_and_given_units() {
    let s = TestServer::start(|_| {}).await;
    let _dev = Device::start(spec(&s, "named-1")).await;
    s.registered("named-1").await;
    let (status, v) = s.api("GET", "/clients/named-1/read/1/0", None).await;
    assert_eq!(status, 200, "{v}");
    let lifetime = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "/1/0/1")
        .unwrap();
    assert_eq!(
        (&lifetime["name"], &lifetime["units"], &lifetime["type"]),
        (&json!("Lifetime"), &json!("s"), &json!("unsigned"))
    );
    let (_, v) = s.api("GET", "/clients/named-1/read/5/0/3", None).await;
    assert_eq!(
        (&v["values"][0]["name"], &v["values"][0]["meaning"]),
        (&json!("State"), &json!("Idle"))
    );
    let (status, v) = s.api("GET", "/clients/named-1/discover/5/0", None).await;
    assert_eq!(status, 200, "{v}");
    let res = v["resources"].as_array().unwrap();
    let uri = res.iter().find(|r| r["path"] == "/5/0/1").unwrap();
    assert_eq!(
        (&uri["name"], &uri["operations"], &uri["type"]),
        (&json!("Package URI"), &json!("RW"), &json!("string"))
    );
    // A typed write round trip on the real engine: Lifetime is an Unsigned Integer.
    let (status, v) = s
        .api(
            "POST",
            "/clients/named-1/write/1/0/1",
            Some(json!({"value": "3.5"})),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (
            400,
            "/1/0/1 (Lifetime, Unsigned Integer): \"3.5\" is not a whole number"
        )
    );
    let (status, _) = s
        .api(
            "POST",
            "/clients/named-1/write/1/0/1",
            Some(json!({"value": "600"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, v) = s.api("GET", "/clients/named-1/read/1/0/1", None).await;
    assert_eq!(v["values"][0]["value"], 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_model_is_added_over_the_api_and_the_cli_and_kept() {
    let s = TestServer::start(|_| {}).await;
    let xml = r#"<?xml version="1.0"?>
<LWM2M><Object ObjectType="MODefinition"><Name>Valve</Name><ObjectID>32800</ObjectID>
<MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory><Resources>
<Item ID="0"><Name>Opening</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances>
<Mandatory>Mandatory</Mandatory><Type>Integer</Type><RangeEnumeration>0..100</RangeEnumeration><Units>%</Units></Item>
</Resources></Object></LWM2M>"#;
    let file = s.scratch().join("valve.xml");
    std::fs::write(&file, xml).unwrap();
    let (ok, out, err) = s.cli(BIN, &["models", "add", file.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "added object 32800 (Valve, 1 resources)");
    let (ok, out, _) = s.cli(BIN, &["models", "show", "32800"]).await;
    assert!(
        ok && out.contains("Opening") && out.contains("RW") && out.contains("%"),
        "{out}"
    );
    let (ok, out, _) = s.cli(BIN, &["models", "list"]).await;
    assert!(
        ok && out.contains("Valve") && out.contains("custom") && out.contains("Firmware Update"),
        "{out}"
    );
    // Kept in the data dir, so a restarted server knows it.
    let kept = lwm2m_server::model::Models::open(s.data_dir().join("models"));
    assert_eq!(kept.get(32800).unwrap().name, "Valve");

    // Bad XML: a precise error, exit status non-zero, nothing added.
    let broken = s.scratch().join("broken.xml");
    std::fs::write(
        &broken,
        xml.replace("<Type>Integer</Type>", "<Type>Int</Type>")
            .replace("32800", "32801"),
    )
    .unwrap();
    let (ok, _, err) = s
        .cli(BIN, &["models", "add", broken.to_str().unwrap()])
        .await;
    assert!(!ok);
    assert!(
        err.contains("line 5") && err.contains("<Type> of resource 32801/0 is \"Int\""),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let (status, _) = s.api("GET", "/models/32801", None).await;
    assert_eq!(status, 404);
    let (status, v) = s.api("GET", "/models/3", None).await;
    assert_eq!(
        (status, &v["resources"][3]["name"]),
        (200, &json!("Firmware Version"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_progress_counts_distinct_bytes_served_to_the_device() {
    let s = TestServer::start(|_| {}).await;
    let image = firmware("2.0.0", 20_000);
    let rel = s.add_release(&image, 2, "2.0.0");
    let _dev = Device::start(spec(&s, "dl-1")).await;
    s.registered("dl-1").await;
    let mut events = s.server.events.subscribe();
    let collect = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(ev) = events.recv().await {
            if let ServerEvent::Download {
                endpoint,
                bytes_done,
                bytes_total,
                ..
            } = ev
            {
                if endpoint == "dl-1" {
                    seen.push((bytes_done, bytes_total));
                    if bytes_done == bytes_total {
                        return seen;
                    }
                }
            }
        }
        seen
    });
    let job = s.server.jobs.start(&rel, &["dl-1".into()]).unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .unwrap()
        .unwrap();
    // Coalesced: the first block, a few a second, and the one that completes the image.
    assert!(seen.len() >= 2, "{} download events", seen.len());
    assert!(
        seen[0].0 < 20_000,
        "the first event is the first block: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress went back: {seen:?}"
    );
    assert_eq!(*seen.last().unwrap(), (20_000, 20_000));
    let v = s.finished(job).await;
    assert_eq!(v.devices[0].bytes_done, 20_000);
    let (status, v) = s.api("GET", "/clients/dl-1/download", None).await;
    assert_eq!(
        (status, v),
        (200, Value::Null),
        "forgotten once the job ended"
    );
}

/// Starts `serve` with `args`, gives its stderr lines to `check` until it returns true (at most
/// 20 s), then kills it.
fn serve_stderr(args: &[&str], mut check: impl FnMut(&str) -> bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--coap",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--admin-token",
            "t",
            "--data",
        ])
        .arg(dir.path())
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let done = check(&line);
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn json_logs_are_one_json_object_a_line_and_text_logs_have_no_colour_in_a_pipe() {
    let lines = serve_stderr(&["--log-format", "json"], |l| l.contains("serving CoAP"));
    assert!(
        lines.last().is_some_and(|l| l.contains("serving CoAP")),
        "{lines:?}"
    );
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{l}"
        );
    }
    let lines = serve_stderr(&[], |l| l.contains("serving CoAP"));
    assert!(lines.iter().any(|l| l.contains("INFO")), "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "ANSI escapes in a pipe: {lines:?}"
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_lwm2m__server()"),
        ("zsh", "#compdef lwm2m-server"),
        ("fish", "complete -c lwm2m-server"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        assert!(
            text.contains("models") && text.contains("campaign"),
            "{shell}: subcommands missing"
        );
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let want = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        text.trim(),
        format!("lwm2m-server {} (commit {want})", env!("CARGO_PKG_VERSION"))
    );
}

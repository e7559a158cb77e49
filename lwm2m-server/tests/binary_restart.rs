//! The `lwm2m-server` binary killed with SIGKILL and started again on the same data dir keeps its
//! registrations, releases and generated admin token.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use support::process::{Running, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");

/// Starts the server; returns it and the lines it printed on stdout before the API answered.
fn serve(data: &Path, coap: u16, token: Option<&str>) -> (Running, Vec<String>) {
    let http = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--coap",
        &format!("127.0.0.1:{coap}"),
        "--http",
        &http,
        "--data",
    ])
    .arg(data)
    .env_remove("OTAFLEET_TOKEN")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(t) = token {
        cmd.args(["--admin-token", t]);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    // stdout is read on a thread and handed over line by line, so a server that prints nothing
    // does not block the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let running = Running {
        child,
        http: format!("http://{http}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&http).is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // What the server prints at start comes before its API answers; allow a moment for the pipe.
    std::thread::sleep(Duration::from_millis(200));
    let printed = rx.try_iter().collect();
    (running, printed)
}

fn admin(r: &Running, token: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--url", &r.http, "--token", token])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn register(coap: u16, ep: &str) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = 7;
    p.set_token(vec![1, 2]);
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    for q in [format!("ep={ep}"), "lt=3600".into()] {
        p.add_option(CoapOption::UriQuery, q.into_bytes());
    }
    p.payload = b"</1/0>,</3/0>,</5/0>".to_vec();
    s.send_to(
        &p.to_bytes().unwrap(),
        SocketAddr::from(([127, 0, 0, 1], coap)),
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    let r = Packet::from_bytes(&buf[..n]).unwrap();
    assert_eq!(u8::from(r.header.code), 0x41, "2.01 Created");
}

#[test]
fn sigkill_and_restart_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let coap = free_port();
    // First start without a token: one is generated, printed once, and kept.
    let (first, printed) = serve(dir.path(), coap, None);
    let token = printed
        .iter()
        .find_map(|l| l.strip_prefix("use it with: export OTAFLEET_TOKEN="))
        .unwrap_or_else(|| panic!("no token printed: {printed:?}"))
        .to_string();
    register(coap, "survivor");
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, vec![0x42u8; 5000]).unwrap();
    let (ok, out) = admin(
        &first,
        &token,
        &[
            "firmware",
            "add",
            "--plain",
            image.to_str().unwrap(),
            "--version",
            "7.0",
            "--json",
        ],
    );
    assert!(ok, "{out}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut first = first;
    // SIGKILL: no chance to flush anything.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let (second, printed) = serve(dir.path(), coap, None);
    assert!(
        !printed.iter().any(|l| l.contains("OTAFLEET_TOKEN=")),
        "the token is printed only once: {printed:?}"
    );
    let (ok, out) = admin(&second, &token, &["clients", "--json"]);
    assert!(ok, "the stored token still works: {out}");
    assert!(out.contains("\"survivor\""), "{out}");
    let (ok, out) = admin(&second, &token, &["firmware", "list", "--json"]);
    assert!(ok && out.contains(&id), "{out}");
    let (ok, out) = admin(&second, "not-the-token", &["clients"]);
    assert!(!ok && out.contains("refused the admin token"), "{out}");
}

/// A job in the middle of a download survives a SIGKILL of the server: the restarted server picks
/// the job up where its store says it was and drives it to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_carries_on_after_the_server_is_killed_mid_download() {
    use testkit::device::{self, Device, Spec};
    use testkit::release;

    let dir = tempfile::tempdir().unwrap();
    let key = release::key();
    let release::ReleaseFiles {
        trust,
        envelope: env_path,
        image: img_path,
    } = release::write_release(dir.path(), &key, "8.0.0", 40_000);

    let coap = free_port();
    let data = dir.path().join("data");
    let start = move |data: std::path::PathBuf, trust: std::path::PathBuf| {
        let http = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--coap",
            &format!("127.0.0.1:{coap}"),
            "--http",
            &http,
            "--admin-token",
            "t",
            "--poll-interval",
            "1",
            "--data",
        ])
        .arg(&data)
        .arg("--trust-key")
        .arg(&trust)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        Running::start(cmd, &http)
    };
    let first = tokio::task::spawn_blocking({
        let (data, trust) = (data.clone(), trust.clone());
        move || start(data, trust)
    })
    .await
    .unwrap();
    let (ok, out) = admin(
        &first,
        "t",
        &[
            "firmware",
            "add",
            env_path.to_str().unwrap(),
            img_path.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(ok, "{out}");
    let rel = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Small blocks make the download long enough to be cut in the middle.
    let server = SocketAddr::from(([127, 0, 0, 1], coap));
    let mut spec = Spec::new(device::config("restart-dev", server, key.verifying_key()));
    spec.config.block_size = 16;
    let dev = Device::start(spec).await;
    dev.wait_for("registered", |d| d.counters().registrations >= 1)
        .await;
    let (ok, out) = admin(
        &first,
        "t",
        &[
            "update",
            "start",
            "--release",
            &rel,
            "restart-dev",
            "--json",
        ],
    );
    assert!(ok, "{out}");
    let job = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap();
    dev.wait_for("image download under way", |d| d.staged_bytes() > 1000)
        .await;
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert_eq!(
        dev.state(),
        lwm2m_core::object5::State::Downloading,
        "killed in the middle of the download"
    );

    let second = tokio::task::spawn_blocking(move || start(data, trust))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (ok, out) = admin(
            &second,
            "t",
            &["update", "status", &job.to_string(), "--json"],
        );
        assert!(ok, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v["status"] != "running" || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["devices"][0]["result"], 1);
    assert_eq!(dev.installed_version(), "8.0.0");
}

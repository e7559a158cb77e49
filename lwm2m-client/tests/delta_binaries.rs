//! A delta update end to end with the real binaries on loopback: `suit` signs the releases,
//! `lwm2m-server serve` hosts them, `lwm2m-client` is the device. The images are real code (see
//! `support::real_code`) wrapped by `lwm2m-client make-image --payload`: v1, and v2 a rebuild of
//! it. The server holds full v1, full v2 and the delta v1 → v2 that `suit create --delta-from`
//! made. The device is updated to v1 (full), then to "2.0.0": the server sends the delta, the
//! device applies the patch onto the image it runs and ends on v2 byte for byte, and the job says
//! it was sent the delta (no fallback to the full image).
//!
//! `lwm2m-server` and `suit` are other packages' binaries, found beside this test's own (`cargo
//! test --workspace` builds them all into one target directory). Missing ones fail the test when
//! CI=true and skip it with a notice elsewhere.
#![cfg(feature = "std")]

mod support;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lwm2m_client::storage::layout::Layout;
use support::real_code;

/// Kills the processes when the test ends, passed or not.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// target/<profile>, where the workspace's binaries are.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("profile dir")
        .to_path_buf()
}

fn free_port() -> u16 {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.local_addr().expect("addr").port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Polls `check` every 200 ms for up to `limit`; the first `Some` it returns.
fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = check() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn the_binaries_update_a_device_from_v1_to_v2_with_the_delta() {
    let dir = bin_dir();
    let bin = |name: &str| dir.join(name);
    if let Some(missing) = ["suit", "lwm2m-server"].iter().find(|n| !bin(n).exists()) {
        let msg = format!(
            "{} is not built: run `cargo test --workspace --all-features`",
            bin(missing).display()
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        println!("skipped: {msg}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let file = |name: &str| tmp.join(name);
    let (coap_port, http_port) = (free_port(), {
        let l = TcpListener::bind("127.0.0.1:0").expect("tcp");
        l.local_addr().expect("addr").port()
    });
    let (token, url) = ("delta-e2e-token", format!("http://127.0.0.1:{http_port}"));
    let client = env!("CARGO_BIN_EXE_lwm2m-client");

    // Two builds of real code, wrapped as images by the device's own tool.
    let p1 = real_code::code(64 * 1024, 0);
    let p2 = real_code::rebuild(&p1, 700);
    std::fs::write(file("p1.bin"), &p1).unwrap();
    std::fs::write(file("p2.bin"), &p2).unwrap();
    for (v, p, img) in [("1.1.0", "p1.bin", "v1.img"), ("2.0.0", "p2.bin", "v2.img")] {
        run(Command::new(client)
            .args(["make-image", "--version", v, "--payload"])
            .arg(file(p))
            .arg("-o")
            .arg(file(img)));
    }
    let (v1, v2) = (
        std::fs::read(file("v1.img")).unwrap(),
        std::fs::read(file("v2.img")).unwrap(),
    );

    // The releases: full v1, full v2, and the delta from v1 with its patch.
    run(Command::new(bin("suit"))
        .args(["keygen", "-o"])
        .arg(file("key.pem")));
    let create = |img: &str, seq: &str, version: &str, out: &str| {
        let mut c = Command::new(bin("suit"));
        c.args(["create", "--image"])
            .arg(file(img))
            .args(["--vendor-id", "acme.example", "--class-id", "sensor-rev-b"])
            .args([
                "--sequence",
                seq,
                "--uri",
                "image",
                "--version",
                version,
                "--key",
            ])
            .arg(file("key.pem"))
            .arg("-o")
            .arg(file(out));
        c
    };
    run(&mut create("v1.img", "2", "1.1.0", "v1.suit"));
    run(&mut create("v2.img", "3", "2.0.0", "v2.suit"));
    run(create("v2.img", "3", "2.0.0", "v2d.suit")
        .arg("--delta-from")
        .arg(file("v1.img"))
        .arg("--patch-out")
        .arg(file("v2.patch")));
    let patch = std::fs::read(file("v2.patch")).unwrap();

    let mut procs = Processes(Vec::new());
    procs.0.push(
        Command::new(bin("lwm2m-server"))
            .args(["serve", "--coap", &format!("127.0.0.1:{coap_port}")])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .arg("--data")
            .arg(file("srv"))
            .arg("--trust-key")
            .arg(file("key.pub.pem"))
            .args(["--admin-token", token])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(file("server.log")).unwrap())
            .spawn()
            .expect("server"),
    );
    let admin = |args: &[&str]| {
        let mut cmd = Command::new(bin("lwm2m-server"));
        cmd.args(args)
            .env("OTAFLEET_URL", &url)
            .env("OTAFLEET_TOKEN", token);
        cmd
    };
    let up = wait_for(Duration::from_secs(20), || {
        let ok = admin(&["clients", "--json"])
            .output()
            .ok()?
            .status
            .success();
        ok.then_some(())
    });
    assert!(up.is_some(), "lwm2m-server did not come up");
    let add = |args: &[&Path]| {
        let mut c = admin(&["firmware", "add", "--json"]);
        c.args(args);
        json(&run(&mut c))["id"]
            .as_str()
            .expect("release id")
            .to_string()
    };
    let full1 = add(&[&file("v1.suit"), &file("v1.img")]);
    let full2 = add(&[&file("v2.suit"), &file("v2.img")]);
    let delta = add(&[&file("v2d.suit"), &file("v2.patch")]);

    let log = file("client.log");
    procs.0.push(
        Command::new(client)
            .args(["--server", &format!("coap://127.0.0.1:{coap_port}")])
            .args(["--endpoint", "dev-delta", "--flash"])
            .arg(file("dev.flash"))
            .arg("--trust")
            .arg(file("key.pub.pem"))
            .args(["--vendor-id", "acme.example", "--class-id", "sensor-rev-b"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("client"),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let registered = wait_for(Duration::from_secs(30), || {
        let o = admin(&["clients", "--json"]).output().ok()?;
        String::from_utf8_lossy(&o.stdout)
            .contains("dev-delta")
            .then_some(())
    });
    assert!(
        registered.is_some(),
        "dev-delta never registered: {}",
        read_log()
    );

    // Runs a job to the end; its status JSON.
    let update = |release: &str| {
        let job = json(&run(&mut admin(&[
            "update",
            "start",
            "--release",
            release,
            "dev-delta",
            "--json",
        ])));
        let job = job["id"].as_i64().expect("job id").to_string();
        wait_for(Duration::from_secs(120), || {
            let o = admin(&["update", "status", &job, "--json"]).output().ok()?;
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
            (v["status"] != "running" && v["status"] != "pending").then_some(v)
        })
        .unwrap_or_else(|| panic!("job {job} did not end: {}", read_log()))
    };
    let first = update(&full1);
    assert_eq!(first["status"], "succeeded", "{first:#}\n{}", read_log());
    assert_eq!(first["devices"][0]["sent"], "full", "{first:#}");

    // To "2.0.0": the device runs v1, the delta's precursor, so it is sent the patch.
    let second = update("2.0.0");
    let d = &second["devices"][0];
    assert_eq!(second["status"], "succeeded", "{second:#}\n{}", read_log());
    assert_eq!(
        (d["sent"].as_str(), d["sent_release_id"].as_str()),
        (Some("delta"), Some(delta.as_str())),
        "{second:#}"
    );
    assert!(
        d["fallback"].is_null(),
        "it fell back to the full image: {d}"
    );
    assert_eq!(
        d["bytes_saved"].as_u64(),
        Some((v2.len() - patch.len()) as u64),
        "{d}"
    );
    assert_ne!(d["sent_release_id"].as_str(), Some(full2.as_str()));
    let text = read_log();
    assert!(
        text.contains("dev-delta: 1.1.0 confirmed") && text.contains("dev-delta: 2.0.0 confirmed"),
        "{text}"
    );

    // The device's flash: ACTIVE holds v2 byte for byte.
    drop(procs);
    let flash = std::fs::read(file("dev.flash")).unwrap();
    let active = Layout::NRF52840.active().start as usize;
    assert!(
        flash[active..active + v2.len()] == v2[..],
        "ACTIVE is not v2 after the delta update"
    );
    println!(
        "v1 {} bytes, v2 {} bytes, patch {} bytes ({:.1} % of v2)",
        v1.len(),
        v2.len(),
        patch.len(),
        patch.len() as f64 * 100.0 / v2.len() as f64
    );
}

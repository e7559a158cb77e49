//! Real processes through `sim-network proxy` at 20 % frame loss on the raw radio (no MAC
//! retries: the loss reaches CoAP), in real time: the `lwm2m-server`
//! and `lwm2m-client` binaries complete a signed update of a small image, and the device's flash
//! then runs exactly the new image.
//!
//! The other crates' binaries are found beside this test's own (`cargo test --workspace` builds
//! them all into the same target directory). Missing binaries fail the test when CI=true and skip
//! it with a notice elsewhere.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("profile dir")
        .to_path_buf()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .expect("udp")
        .local_addr()
        .expect("addr")
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("tcp")
        .local_addr()
        .expect("addr")
        .port()
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

#[test]
fn server_and_client_binaries_update_through_the_proxy_at_20_percent_loss() {
    let dir = bin_dir();
    let bin = |name: &str| dir.join(name);
    let needed = ["suit", "lwm2m-server", "lwm2m-client", "sim-network"];
    if let Some(missing) = needed.iter().find(|n| !bin(n).exists()) {
        let msg = format!(
            "{} is not built: run `cargo test --workspace --all-features`",
            bin(missing).display()
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        println!("skipped: {msg}");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("otafleet-proxy-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("tmp");
    let seed = 11;
    let (proxy_port, coap_port, http_port) = (free_udp_port(), free_udp_port(), free_tcp_port());
    let token = "proxy-e2e-token";
    let url = format!("http://127.0.0.1:{http_port}");
    let mut procs = Processes(Vec::new());

    run(Command::new(bin("suit"))
        .args(["keygen", "-o"])
        .arg(tmp.join("key.pem")));
    procs.0.push(
        Command::new(bin("lwm2m-server"))
            .args(["serve", "--coap", &format!("127.0.0.1:{coap_port}")])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .args(["--public-uri", &format!("coap://127.0.0.1:{proxy_port}")])
            .arg("--data")
            .arg(tmp.join("srv"))
            .arg("--trust-key")
            .arg(tmp.join("key.pub.pem"))
            .args(["--admin-token", token])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server"),
    );
    procs.0.push(
        Command::new(bin("sim-network"))
            .args(["proxy", "--listen", &format!("127.0.0.1:{proxy_port}")])
            .args(["--upstream", &format!("127.0.0.1:{coap_port}")])
            .args(["--loss", "0.2", "--mac", "raw", "--seed", &seed.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("proxy"),
    );
    let admin = |args: &[&str]| {
        let mut cmd = Command::new(bin("lwm2m-server"));
        cmd.args(args)
            .env("OTAFLEET_URL", &url)
            .env("OTAFLEET_TOKEN", token);
        cmd
    };
    // The server is up when its API answers (bounded).
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        admin(&["clients", "--json"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(up, "lwm2m-server did not come up");

    let img = tmp.join("img.bin");
    run(Command::new(bin("lwm2m-client"))
        .args(["make-image", "--version", "2.0.0", "--size", "4096", "-o"])
        .arg(&img));
    run(Command::new(bin("suit"))
        .args(["create", "--image"])
        .arg(&img)
        .args(["--vendor-id", "acme.example", "--class-id", "sensor-rev-b"])
        .args([
            "--sequence",
            "2",
            "--uri",
            "image",
            "--version",
            "2.0.0",
            "--key",
        ])
        .arg(tmp.join("key.pem"))
        .arg("-o")
        .arg(tmp.join("rel.suit")));
    let added = json(&run(admin(&["firmware", "add"])
        .arg(tmp.join("rel.suit"))
        .arg(&img)
        .arg("--json")));
    let release = added["id"].as_str().expect("release id").to_string();

    let flash = tmp.join("dev.img");
    procs.0.push(
        Command::new(bin("lwm2m-client"))
            .args(["--server", &format!("coap://127.0.0.1:{proxy_port}")])
            .args(["--endpoint", "dev-proxy", "--flash"])
            .arg(&flash)
            .arg("--trust")
            .arg(tmp.join("key.pub.pem"))
            .args(["--vendor-id", "acme.example", "--class-id", "sensor-rev-b"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("client"),
    );
    let registered = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(300));
        admin(&["clients", "--json"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("dev-proxy"))
    });
    assert!(
        registered,
        "dev-proxy never registered through the proxy (seed {seed})"
    );

    let job = json(&run(&mut admin(&[
        "update",
        "start",
        "--release",
        &release,
        "dev-proxy",
        "--json",
    ])));
    let job = job["id"].as_i64().expect("job id").to_string();
    let started = Instant::now();
    let mut status = serde_json::Value::Null;
    while started.elapsed() < Duration::from_secs(240) {
        std::thread::sleep(Duration::from_secs(2));
        if let Ok(o) = admin(&["update", "status", &job, "--json"]).output() {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) {
                status = v;
                if status["status"] != "running" && status["status"] != "pending" {
                    break;
                }
            }
        }
    }
    assert_eq!(status["status"], "succeeded", "seed {seed}: {status:#}");
    assert_eq!(status["devices"][0]["result"], 1, "{status:#}");
    println!(
        "updated through 20 % loss in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // The device now runs the new image: its firmware version (/3/0/3) comes from the header of
    // the image the bootloader started, read over the same lossy path (a few tries).
    let version = (0..5).find_map(|_| {
        let o = admin(&["read", "dev-proxy", "/3/0/3"]).output().ok()?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        o.status.success().then_some(text)
    });
    drop(procs);
    let version = version.expect("/3/0/3 could not be read in 5 tries");
    assert!(version.contains("2.0.0"), "the device runs {version}");
    let _ = std::fs::remove_dir_all(&tmp);
}

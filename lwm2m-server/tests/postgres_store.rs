//! The `lwm2m-server` binary on the PostgreSQL store (`serve --store postgres://...`), on a
//! throw-away cluster (`support::pg`): a device registers, a release is added, an update job
//! succeeds; the server is killed with SIGKILL and started again on the same database and data
//! dir, and still lists the device and its job as succeeded. And what `--store` refuses.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pg::PgCluster;
use support::process::{Running, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");

/// Starts `serve --store URL` and waits (at most 20 s) for its admin API.
fn start(store: &str, data: &Path, trust: &Path, coap: u16) -> Running {
    let http = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--coap",
        &format!("127.0.0.1:{coap}"),
        "--http",
        &http,
    ])
    .args([
        "--admin-token",
        "t",
        "--poll-interval",
        "1",
        "--store",
        store,
        "--data",
    ])
    .arg(data)
    .arg("--trust-key")
    .arg(trust)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    Running::start(cmd, &http)
}

fn admin(r: &Running, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(args)
        .args(["--url", &r.http, "--token", "t", "--json"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// The job's status once it left `running` (at most 60 s).
async fn finished(r: &Running, job: i64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = admin(r, &["update", "status", &job.to_string()]);
        if v["status"] != "running" || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_on_the_postgres_store_survives_a_sigkill_of_the_server() {
    use testkit::device::{self, Device, Spec};
    use testkit::release;

    let Some(pg) = PgCluster::start() else { return };
    let url = pg.new_database();
    let dir = tempfile::tempdir().unwrap();
    let key = release::key();
    let release::ReleaseFiles {
        trust,
        envelope: env_path,
        image: img_path,
    } = release::write_release(dir.path(), &key, "9.0.0", 4_000);
    // The release files live here; the database holds everything else.
    let data: PathBuf = dir.path().join("data");
    let coap = free_port();

    let first = tokio::task::spawn_blocking({
        let (url, data, trust) = (url.clone(), data.clone(), trust.clone());
        move || start(&url, &data, &trust, coap)
    })
    .await
    .unwrap();
    let rel = admin(
        &first,
        &[
            "firmware",
            "add",
            env_path.to_str().unwrap(),
            img_path.to_str().unwrap(),
        ],
    );
    let rel = rel["id"].as_str().unwrap().to_string();
    let server = SocketAddr::from(([127, 0, 0, 1], coap));
    let dev = Device::start(Spec::new(device::config(
        "pg-dev",
        server,
        key.verifying_key(),
    )))
    .await;
    dev.wait_for("registered", |d| d.counters().registrations >= 1)
        .await;
    let job = admin(&first, &["update", "start", "--release", &rel, "pg-dev"])["id"]
        .as_i64()
        .unwrap();
    let status = finished(&first, job).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(dev.installed_version(), "9.0.0");

    // SIGKILL: nothing is flushed; PostgreSQL has every committed transaction.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let second = tokio::task::spawn_blocking(move || start(&url, &data, &trust, coap))
        .await
        .unwrap();
    let status = admin(&second, &["update", "status", &job.to_string()]);
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["devices"][0]["endpoint"], "pg-dev", "{status}");
    assert_eq!(status["devices"][0]["result"], 1, "{status}");
    let clients = admin(&second, &["clients"]).to_string();
    assert!(clients.contains("\"pg-dev\""), "{clients}");
    let releases = admin(&second, &["firmware", "list"]).to_string();
    assert!(releases.contains(&rel), "{releases}");
    // SIGTERM: a clean exit (dropping the PostgreSQL client on a runtime thread used to panic).
    let mut second = second;
    let pid = second.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    drop(pg);
}

/// `serve --store` with something other than a reachable PostgreSQL URL: one clear line, exit 1.
#[test]
fn a_bad_store_url_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = format!("postgres://postgres@127.0.0.1:{}/otafleet", free_port());
    for (store, expected) in [
        (
            "mysql://u@h/db",
            "--store takes postgres://USER@HOST:PORT/DB",
        ),
        ("postgres://u@[::1/db", "bad PostgreSQL URL"),
        (unreachable.as_str(), "is it running?"),
    ] {
        let out = Command::new(BIN)
            .args([
                "serve",
                "--coap",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--store",
                store,
                "--data",
            ])
            .arg(dir.path())
            .env_remove("OTAFLEET_TOKEN")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store}: {err}");
        assert!(err.contains(expected), "{store}: {err}");
    }
}

//! Three `lwm2m-server serve --reuse-port --store postgres://...` nodes on one CoAP port and one
//! throw-away PostgreSQL (`support::pg`), a fleet of test devices (the real client engine,
//! each on a socket of its own, so the kernel's SO_REUSEPORT hash spreads them over the
//! nodes), a campaign started through one node's API, and a `kill -9` of that node in the
//! middle of it: the campaign is picked up by another node, the killed node's devices are
//! taken over by the nodes their next datagrams land on, every device ends on the new image
//! (by what the device itself runs), installed once, and every remaining node's API lists the
//! whole fleet with its owners. The same with PostgreSQL down for 20 s instead of the kill: the
//! nodes open their connections again and carry on, and no job step taken meanwhile is lost.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pg::PgCluster;
use support::process::{Running, free_port};
use testkit::device::{self, Device, Spec};
use testkit::release;

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");
/// Devices in the campaign: 30 in CI; `MULTI_NODE_DEVICES=1000` for the full-size run
/// (by hand: minutes of wall time). The waits grow with it.
fn devices_in_campaign() -> usize {
    std::env::var("MULTI_NODE_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

/// Starts node `name` on the shared CoAP port and waits (at most 20 s) for its admin API.
fn start(name: &str, store: &str, data: &Path, trust: &Path, coap: u16, log: &Path) -> Running {
    let http = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--reuse-port", "--node-id", name])
        .args(["--coap", &format!("127.0.0.1:{coap}"), "--http", &http])
        .args([
            "--admin-token",
            "t",
            "--poll-interval",
            "1",
            // Every simulated device sends from 127.0.0.1: no per-source Register limit.
            "--register-rate",
            "0",
            "--store",
            store,
        ])
        .args(["--read-device-info", "off", "--data"])
        .arg(data)
        .arg("--trust-key")
        .arg(trust)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    Running::start(cmd, &http)
}

/// An admin command's success and output (stdout and stderr).
fn admin_raw(http: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--url", http, "--token", "t", "--json"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn admin(http: &str, args: &[&str]) -> serde_json::Value {
    let (ok, text) = admin_raw(http, args);
    assert!(ok, "{args:?}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// The owner of each endpoint in one node's `clients`.
fn owners(http: &str) -> BTreeMap<String, String> {
    admin(http, &["clients"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["endpoint"].as_str().unwrap().to_string(),
                c["owner_node"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The nodes' logs, for a failure's message.
fn logs(dir: &Path) -> String {
    (1..=3)
        .map(|i| {
            let text = std::fs::read_to_string(dir.join(format!("n{i}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- n{i} ---\n{}", tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What happens in the middle of the campaign.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Disruption {
    /// `kill -9` of n1, the node the campaign was started on.
    KillNode,
    /// PostgreSQL stopped (`pg_ctl stop -m fast`: every connection cut) for [`OUTAGE`], then
    /// started again.
    RestartPostgres,
}

/// How long PostgreSQL stays down: longer than the devices' 8 s lifetime, so that Updates,
/// job steps and saves fail meanwhile, not only the open connections.
const OUTAGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_survives_a_sigkill_of_the_node_that_started_it() {
    campaign_through(Disruption::KillNode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_survives_a_restart_of_postgres() {
    campaign_through(Disruption::RestartPostgres).await;
}

async fn campaign_through(disruption: Disruption) {
    let fleet_size = devices_in_campaign();
    // Seconds added to each wait per device beyond CI's 30.
    let more = |per_device: f64| {
        Duration::from_secs_f64(fleet_size.saturating_sub(30) as f64 * per_device)
    };
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.new_database();
    let dir = tempfile::tempdir().unwrap();
    let key = release::key();
    // Large enough that the kill lands while downloads are in flight.
    let release::ReleaseFiles {
        trust,
        envelope: env_path,
        image: img_path,
    } = release::write_release(dir.path(), &key, "2.0.0", 24_000);
    // One data dir for all: the release files are on a path every node reads.
    let data: PathBuf = dir.path().join("data");
    let coap = free_port();
    let began = Instant::now();

    let mut nodes = Vec::new();
    for i in 1..=3 {
        let (url, data, trust) = (url.clone(), data.clone(), trust.clone());
        let log = dir.path().join(format!("n{i}.log"));
        // MULTI_NODE_LOGS=DIR keeps the nodes' logs (linked there) after the test.
        if let Some(keep) = std::env::var_os("MULTI_NODE_LOGS") {
            let kept = Path::new(&keep).join(format!("{disruption:?}-n{i}.log"));
            let _ = std::fs::remove_file(&kept);
            std::fs::write(&log, "").unwrap();
            std::fs::hard_link(&log, &kept).unwrap();
        }
        nodes.push(
            tokio::task::spawn_blocking(move || {
                start(&format!("n{i}"), &url, &data, &trust, coap, &log)
            })
            .await
            .unwrap(),
        );
    }
    let https: Vec<String> = nodes.iter().map(|n| n.http.clone()).collect();

    let server = SocketAddr::from(([127, 0, 0, 1], coap));
    let mut devices = Vec::new();
    for i in 0..fleet_size {
        let mut cfg = device::config(&format!("mn-{i:02}"), server, key.verifying_key());
        // Updates every few seconds: a device whose node died is heard by another one soon.
        cfg.lifetime_s = 8;
        devices.push(Device::start(Spec::new(cfg)).await);
    }
    for d in &devices {
        d.wait_for("registered", |d| d.counters().registrations >= 1)
            .await;
    }
    // Every node lists every device, with the node that heard it.
    let deadline = Instant::now() + Duration::from_secs(10) + more(0.05);
    let owned = loop {
        let seen: Vec<BTreeMap<String, String>> = https.iter().map(|h| owners(h)).collect();
        if seen
            .iter()
            .all(|o| o.len() == fleet_size && o.values().all(|n| !n.is_empty()))
        {
            break seen[0].clone();
        }
        assert!(Instant::now() < deadline, "{seen:?}\n{}", logs(dir.path()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let per_node: BTreeMap<&str, usize> = owned.values().fold(BTreeMap::new(), |mut m, n| {
        *m.entry(n.as_str()).or_default() += 1;
        m
    });
    eprintln!("devices per node: {per_node:?}");

    let rel = admin(
        &https[0],
        &[
            "firmware",
            "add",
            env_path.to_str().unwrap(),
            img_path.to_str().unwrap(),
        ],
    );
    let rel = rel["id"].as_str().unwrap().to_string();
    let created = admin(
        &https[0],
        &[
            "campaign",
            "create",
            "--release",
            &rel,
            "--pattern",
            "mn-*",
            "--waves",
            "100",
            "--soak",
            "0",
            "--max-per-mesh",
            "100",
        ],
    );
    let id = created["id"].as_i64().unwrap().to_string();

    // Wait until some devices are in the middle of their update, then kill the node that
    // started the campaign (and runs it) with SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(30);
    while devices.iter().filter(|d| d.staged_bytes() > 0).count() < 3 {
        assert!(
            Instant::now() < deadline,
            "no download started\n{}",
            logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done_before = devices
        .iter()
        .filter(|d| d.installed_version() == "2.0.0")
        .count();
    match disruption {
        Disruption::KillNode => {
            let mut first = nodes.remove(0);
            first.child.kill().unwrap();
            first.child.wait().unwrap();
        }
        Disruption::RestartPostgres => {
            tokio::task::block_in_place(|| pg.stop_for(OUTAGE));
        }
    }
    let killed_at = Instant::now();
    eprintln!(
        "{disruption:?} {:?} after the nodes were started, {done_before} devices already updated",
        killed_at - began
    );
    // The nodes that are still up.
    let alive = match disruption {
        Disruption::KillNode => vec!["n2", "n3"],
        Disruption::RestartPostgres => vec!["n1", "n2", "n3"],
    };
    let https: Vec<String> = match disruption {
        Disruption::KillNode => https[1..].to_vec(),
        Disruption::RestartPostgres => https,
    };

    // The campaign completes on the remaining nodes.
    let deadline = Instant::now() + Duration::from_secs(120) + more(0.5);
    let campaign = loop {
        let v = admin(&https[0], &["campaign", "show", &id]);
        if v["state"] == "completed" || v["state"] == "halted" || v["state"] == "aborted" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the campaign did not finish: {v}\n{}",
            logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ended = Instant::now();
    eprintln!(
        "campaign final {:?} after the disruption, {:?} in all",
        killed_at.elapsed(),
        began.elapsed()
    );
    assert_eq!(
        campaign["state"],
        "completed",
        "{campaign}\n{}",
        logs(dir.path())
    );
    let rows = campaign["devices"].as_array().unwrap();
    assert_eq!(rows.len(), fleet_size, "{campaign}");
    let mut jobs = HashSet::new();
    for row in rows {
        assert_eq!(row["status"], "succeeded", "{row}\n{}", logs(dir.path()));
        // One job per device: nothing was started twice.
        assert!(jobs.insert(row["job_id"].as_i64().unwrap()), "{campaign}");
    }
    // The devices' own word: each runs the new image, installed once (one reboot into it).
    for d in &devices {
        assert_eq!(d.installed_version(), "2.0.0", "{:?}", d.counters());
        assert_eq!(d.sequence(), 2);
        assert_eq!(d.boots(), 2, "booted once into the new image");
        // A Register per boot and no more: a device of the dead node was taken over at its
        // next datagram, not told 4.04 and made to register again. (The job may read the
        // new version before the Register of the new boot is answered: wait for it.)
        let deadline = Instant::now() + Duration::from_secs(60);
        while d.counters().registrations < 2 {
            if Instant::now() > deadline {
                let views: Vec<String> = https
                    .iter()
                    .map(|h| {
                        admin_raw(h, &["clients"])
                            .1
                            .lines()
                            .filter(|l| l.contains(&format!("{:?}", d.addr().unwrap().port())))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                panic!(
                    "not registered after its update: {d:?}\nthe nodes' views: {views:?}\n{}",
                    logs(dir.path())
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let registers = match disruption {
            Disruption::KillNode => 2,
            // A device whose Update failed while PostgreSQL was down may register again.
            Disruption::RestartPostgres => d.counters().registrations.max(2),
        };
        assert_eq!(
            d.counters().registrations,
            registers,
            "{:?} {:?}\n{}",
            d.addr(),
            d.counters(),
            logs(dir.path())
        );
    }
    let taken: usize = (1..=3)
        .map(|i| {
            std::fs::read_to_string(dir.path().join(format!("n{i}.log")))
                .unwrap_or_default()
                .matches("took over")
                .count()
        })
        .sum();
    eprintln!("takeovers logged: {taken}");
    // Notifications of observations another node made, taken on by the node the device moved
    // to (the State of a device downloading from n1 when it was killed, at least).
    let adopted: usize = (1..=3)
        .map(|i| {
            std::fs::read_to_string(dir.path().join(format!("n{i}.log")))
                .unwrap_or_default()
                .matches("took on the observation")
                .count()
        })
        .sum();
    eprintln!("observations taken on: {adopted}");
    if disruption == Disruption::RestartPostgres {
        // It was restarted indeed, and the nodes noticed (and carried on, above).
        let starts = pg.log().matches("ready to accept connections").count();
        assert_eq!(starts, 2, "{}", pg.log());
        let errors: usize = (1..=3)
            .map(|i| {
                std::fs::read_to_string(dir.path().join(format!("n{i}.log")))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("ERROR"))
                    .count()
            })
            .sum();
        eprintln!("errors logged by the nodes while PostgreSQL was down: {errors}");
    }
    assert!(
        disruption != Disruption::KillNode || taken >= 1 || !per_node.contains_key("n1"),
        "{}",
        logs(dir.path())
    );
    assert!(
        disruption != Disruption::KillNode || adopted >= 1 || !per_node.contains_key("n1"),
        "no node took on an observation of a device that moved\n{}",
        logs(dir.path())
    );
    eprintln!(
        "every device registered after its update {:?} after the campaign ended",
        ended.elapsed()
    );
    // Each job's device counts one success, with Update Result 1.
    for job in &jobs {
        let v = admin(
            &https[https.len() - 1],
            &["update", "status", &job.to_string()],
        );
        let devs = v["devices"].as_array().unwrap();
        assert_eq!(devs.len(), 1, "{v}");
        assert_eq!(devs[0]["status"], "succeeded", "{v}");
        assert_eq!(devs[0]["result"], 1, "{v}");
    }
    // Every remaining node lists the whole fleet, owned by the living nodes only.
    let deadline = Instant::now() + Duration::from_secs(20) + more(0.05);
    loop {
        let seen: Vec<BTreeMap<String, String>> = https.iter().map(|h| owners(h)).collect();
        let ok = seen
            .iter()
            .all(|o| o.len() == fleet_size && o.values().all(|n| alive.contains(&n.as_str())));
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "{seen:?}\n{}", logs(dir.path()));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A device-management request works on any node: the owner answers it, another node
    // forwards it to the owner's admin API.
    let owned = owners(&https[0]);
    let (ep, owner) = owned.iter().next().unwrap();
    let at = |node: &str| &https[alive.iter().position(|n| *n == node).unwrap()];
    let read = admin(at(owner), &["read", ep, "/3/0/3"]).to_string();
    assert!(read.contains("2.0.0"), "{read}");
    let other = alive.iter().find(|n| *n != owner).unwrap();
    let forwarded = admin(at(other), &["read", ep, "/3/0/3"]).to_string();
    assert_eq!(forwarded, read);
    drop(devices);
    drop(nodes);
    drop(pg);
}

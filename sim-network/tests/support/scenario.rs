//! Shared by the end-to-end scenarios: a small deployment in virtual time, and the checks that
//! every device's flash, its own report and the server's job agree.

use std::time::Duration;

use lwm2m_server::jobs::{JobDeviceStatus, JobView};
use sha2::{Digest, Sha256};
use sim_network::model::{LinkConfig, LossModel, Mac};
use sim_network::sim::release::Release;
use sim_network::sim::world::{World, WorldConfig};

#[allow(unused_imports)]
pub use sim_network::sim::release::{Fault, Firmware};

/// Ends the test process if a scenario runs longer than `wall` of real time: a busy loop in
/// the code under test freezes virtual time, and the test would otherwise hang instead of failing.
/// Dropping the guard disarms it.
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

pub fn watchdog(what: String, wall: Duration) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(wall) {
            eprintln!(
                "{what}: still running after {wall:?} of wall time: virtual time is frozen (a busy loop?)"
            );
            std::process::exit(101);
        }
    });
    Watchdog(Some(tx))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A deployment of `devices` devices on one mesh.
pub fn config(devices: usize, link: LinkConfig, image_size: usize, seed: u64) -> WorldConfig {
    WorldConfig {
        devices,
        mesh_size: devices,
        link,
        image_size,
        seed,
        boot_spread: Duration::from_secs(10),
        ..WorldConfig::default()
    }
}

/// Frame loss `p` on each of `hops` hops, on the raw radio: no MAC retries hide the loss, so it
/// reaches CoAP and the device's recovery is what the scenario tests.
pub fn lossy(p: f64, hops: u32) -> LinkConfig {
    LinkConfig {
        loss: if p == 0.0 {
            LossModel::None
        } else {
            LossModel::Bernoulli { p }
        },
        hops,
        mac: Mac::Raw,
        ..LinkConfig::default()
    }
}

/// Registers everyone, adds `release` and updates every device; the job as it ended.
pub async fn roll_out(world: &World, release: &Release, limit: Duration) -> JobView {
    let seed = world.cfg.seed;
    world
        .wait_registered(Duration::from_secs(1800))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let id = world
        .add_release(release, None)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    run_job(world, &id, limit).await
}

/// Starts a job for every device to `release_id` and waits until it ends.
pub async fn run_job(world: &World, release_id: &str, limit: Duration) -> JobView {
    let seed = world.cfg.seed;
    let job = world
        .start_update(release_id)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    world
        .wait_job(job, limit, Duration::from_secs(10), |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
}

pub fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Which of the two images ACTIVE holds byte for byte ("old", "new"), else a panic naming the seed.
pub fn running_image(world: &World, i: usize, old: &[u8], new: &[u8]) -> &'static str {
    let d = &world.devices[i].device;
    let seed = world.cfg.seed;
    if d.active_sha256(new.len()) == Some(sha(new)) {
        "new"
    } else if d.active_sha256(old.len()) == Some(sha(old)) {
        "old"
    } else {
        panic!(
            "seed {seed}: {} runs neither image (header says {:?})",
            d.endpoint,
            d.active_version()
        )
    }
}

/// The job's record of device `i`.
pub fn job_device<'v>(
    view: &'v JobView,
    world: &World,
    i: usize,
) -> &'v lwm2m_server::store::JobDeviceRecord {
    let ep = &world.devices[i].device.endpoint;
    view.devices
        .iter()
        .find(|d| &d.endpoint == ep)
        .unwrap_or_else(|| panic!("seed {}: {ep} is not in the job", world.cfg.seed))
}

/// Reads a resource of device `i` through the server (retrying over the lossy mesh).
pub async fn read_text(world: &World, i: usize, path: &str) -> Option<String> {
    let ep = world.devices[i].device.endpoint.clone();
    let path = lwm2m_core::path::Path::parse(path).ok()?;
    for _ in 0..10 {
        let server = world.server().ok()?;
        if let Ok(a) = server.dm.read(&ep, &path, None).await {
            let v = a.values.first()?.value.clone();
            return Some(match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    None
}

/// Every device: the server says succeeded with Result 1, the device's flash holds the new image
/// byte for byte, and the device itself reports the new version in /3/0/3.
pub async fn assert_all_updated(world: &World, view: &JobView, release: &Release) {
    let seed = world.cfg.seed;
    for i in 0..world.devices.len() {
        let rec = job_device(view, world, i);
        assert_eq!(
            rec.status,
            JobDeviceStatus::Succeeded,
            "seed {seed}: {} ended {} ({:?})",
            rec.endpoint,
            rec.status,
            rec.error
        );
        assert_eq!(rec.fw_result, Some(1), "seed {seed}: {}", rec.endpoint);
        let d = &world.devices[i].device;
        assert_eq!(
            d.active_sha256(release.image.len()),
            Some(sha(&release.image)),
            "seed {seed}: {} does not hold the new image byte for byte",
            rec.endpoint
        );
        assert_eq!(
            read_text(world, i, "/3/0/3").await.as_deref(),
            Some(release.version.as_str()),
            "seed {seed}: {} reports another version",
            rec.endpoint
        );
    }
}

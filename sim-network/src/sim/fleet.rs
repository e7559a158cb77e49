//! `sim-network fleet` and the demo: one update of a whole simulated fleet, start to finish, and
//! the report of what happened to every device.

use std::fmt;
use std::time::{Duration, Instant as WallInstant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use lwm2m_server::jobs::{JobDeviceStatus, JobView};
use serde::Serialize;

use super::release::{Firmware, Release};
use super::world::{World, WorldConfig};

/// What to roll out and how long to wait.
#[derive(Clone, Debug)]
pub struct FleetRun {
    pub world: WorldConfig,
    /// Virtual time the update may take before the run gives up.
    pub time_limit: Duration,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// One device's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceOutcome {
    pub endpoint: String,
    pub mesh: usize,
    /// `updated` (the server says succeeded, the device runs the new image and its ACTIVE slot
    /// holds it byte for byte), `failed`, or `unfinished`.
    pub outcome: String,
    pub running_version: String,
    pub job_status: String,
    pub update_result: Option<i64>,
    pub error: Option<String>,
    /// When the server recorded the final status, in virtual seconds from the start.
    pub finished_at_s: Option<f64>,
    pub image_verified: bool,
    pub boots: u32,
    pub datagrams_up: u64,
    pub datagrams_down: u64,
    pub retransmissions: u64,
    pub airtime_s: f64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct FleetReport {
    pub device_count: usize,
    pub updated: usize,
    pub failed: usize,
    pub unfinished: usize,
    pub seed: u64,
    pub loss: String,
    pub hops: u32,
    pub meshes: usize,
    pub image_size: usize,
    pub block_size: u16,
    /// Virtual time from the start of the update to the last device's final status.
    pub virtual_time_s: f64,
    pub wall_time_s: f64,
    /// Medium time used on all hops of all meshes.
    pub airtime_s: f64,
    pub datagrams_up: u64,
    pub datagrams_down: u64,
    pub frames: u64,
    pub frames_lost: u64,
    pub retransmissions: u64,
    pub devices: Vec<DeviceOutcome>,
}

impl FleetReport {
    pub fn all_updated(&self) -> bool {
        self.updated == self.device_count
    }
}

/// Runs an update of every device from the factory image 1.0.0 to `2.0.0`.
pub fn run(run: &FleetRun) -> Result<FleetReport> {
    let wall = WallInstant::now();
    super::world::block_on_seeded(run.world.seed, async {
        let firmware = Firmware::new(run.world.seed, run.world.image_size)?;
        let release = firmware.release("2.0.0", 2, run.world.image_size, None)?;
        let world = World::start(run.world.clone(), firmware).await?;
        update(&world, &release, run, wall).await
    })?
}

/// Rolls `release` out to every device of `world` and reports.
pub async fn update(
    world: &World,
    release: &Release,
    run: &FleetRun,
    wall: WallInstant,
) -> Result<FleetReport> {
    let bar = progress_bar(run.progress, world.devices.len());
    // Without a terminal (CI, a log file) the bar is hidden: print a line every 10 virtual minutes.
    let lines = run.progress && bar.is_hidden();
    let mut next_line = Duration::ZERO;
    bar.set_message("devices powering on and registering");
    world
        .wait_registered(world.cfg.boot_spread + Duration::from_secs(600))
        .await?;
    let release_id = world.add_release(release, None)?;
    let job = world.start_update(&release_id)?;
    let started = world.elapsed();
    let total_bytes = (release.image.len() * world.devices.len()) as u64;
    let view = world
        .wait_job(job, run.time_limit, Duration::from_secs(10), |v, t| {
            let done = v.devices.iter().filter(|d| d.status.is_final()).count();
            let bytes: u64 = v.devices.iter().map(|d| d.bytes_done).sum();
            let msg = format!(
                "virtual {} | downloaded {:.0} %",
                hms(t.saturating_sub(started)),
                100.0 * bytes as f64 / total_bytes.max(1) as f64
            );
            if lines && t >= next_line {
                eprintln!("  {done}/{} devices done | {msg}", v.devices.len());
                next_line = t + Duration::from_secs(600);
            }
            bar.set_position(done as u64);
            bar.set_message(msg);
        })
        .await?;
    bar.finish_and_clear();
    Ok(report(world, release, &view, started, wall))
}

fn progress_bar(show: bool, len: usize) -> ProgressBar {
    if !show || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} devices done  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// What the server, the network and every device's flash say.
pub fn report(
    world: &World,
    release: &Release,
    view: &JobView,
    started: Duration,
    wall: WallInstant,
) -> FleetReport {
    let epoch_ms = view.created_at_ms;
    let want = release.image_sha256();
    let mut devices = Vec::with_capacity(world.devices.len());
    let mut last_final = 0.0f64;
    let (mut frames, mut frames_lost) = (0, 0);
    for d in &world.devices {
        let rec = view
            .devices
            .iter()
            .find(|r| r.endpoint == d.device.endpoint);
        let dev_view = d.device.view();
        let traffic = world.net.traffic(d.addr).unwrap_or_default();
        frames += traffic.path.up.frames_sent + traffic.path.down.frames_sent;
        frames_lost += traffic.path.up.frames_lost + traffic.path.down.frames_lost;
        let running = d.device.active_version().unwrap_or_default();
        let image_verified = d.device.active_sha256(release.image.len()) == Some(want);
        let job_status = rec.map(|r| r.status);
        let finished_at_s = rec
            .filter(|r| r.status.is_final())
            .map(|r| started.as_secs_f64() + (r.updated_at_ms - epoch_ms) as f64 / 1000.0);
        if let Some(t) = finished_at_s {
            last_final = last_final.max(t - started.as_secs_f64());
        }
        let outcome = if job_status == Some(JobDeviceStatus::Succeeded)
            && running == release.version
            && image_verified
        {
            "updated"
        } else if job_status.is_some_and(JobDeviceStatus::is_final) {
            "failed"
        } else {
            "unfinished"
        };
        devices.push(DeviceOutcome {
            endpoint: d.device.endpoint.clone(),
            mesh: d.mesh,
            outcome: outcome.into(),
            running_version: running,
            job_status: job_status.map(|s| s.to_string()).unwrap_or_default(),
            update_result: rec.and_then(|r| r.fw_result),
            error: rec.and_then(|r| r.error.clone()),
            finished_at_s,
            image_verified,
            boots: dev_view.boots,
            datagrams_up: traffic.path.up.datagrams_sent,
            datagrams_down: traffic.path.down.datagrams_sent,
            retransmissions: traffic.retransmissions_up + traffic.retransmissions_down,
            airtime_s: (traffic.path.up.airtime + traffic.path.down.airtime).as_secs_f64(),
        });
    }
    let count = |o: &str| devices.iter().filter(|d| d.outcome == o).count();
    let sum = |f: fn(&DeviceOutcome) -> u64| devices.iter().map(f).sum::<u64>();
    FleetReport {
        device_count: devices.len(),
        updated: count("updated"),
        failed: count("failed"),
        unfinished: count("unfinished"),
        seed: world.cfg.seed,
        loss: format!("{:?}", world.cfg.link.loss),
        hops: world.cfg.link.hops,
        meshes: world.meshes.len(),
        image_size: release.image.len(),
        block_size: world.cfg.block_size,
        virtual_time_s: last_final,
        wall_time_s: wall.elapsed().as_secs_f64(),
        airtime_s: world
            .meshes
            .iter()
            .map(|m| m.airtime_used().as_secs_f64())
            .sum(),
        datagrams_up: sum(|d| d.datagrams_up),
        datagrams_down: sum(|d| d.datagrams_down),
        frames,
        frames_lost,
        retransmissions: sum(|d| d.retransmissions),
        devices,
    }
}

/// `1h02m03s`.
pub fn hms(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl fmt::Display for FleetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:>4} {:<10} {:<8} {:>6} {:>9} {:>7} {:>7} {:>6} {:>9}",
            "device",
            "mesh",
            "outcome",
            "running",
            "result",
            "done at",
            "up",
            "down",
            "retx",
            "airtime"
        )?;
        for d in &self.devices {
            writeln!(
                f,
                "{:<10} {:>4} {:<10} {:<8} {:>6} {:>9} {:>7} {:>7} {:>6} {:>8.1}s{}",
                d.endpoint,
                d.mesh,
                d.outcome,
                d.running_version,
                d.update_result
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into()),
                d.finished_at_s
                    .map(|t| hms(Duration::from_secs_f64(t.max(0.0))))
                    .unwrap_or_else(|| "-".into()),
                d.datagrams_up,
                d.datagrams_down,
                d.retransmissions,
                d.airtime_s,
                d.error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "updated: {}/{} devices ({} failed, {} unfinished)",
            self.updated, self.device_count, self.failed, self.unfinished
        )?;
        writeln!(
            f,
            "network: {} meshes, {} hop(s), loss {}, {} B image in {} B blocks, seed {}",
            self.meshes, self.hops, self.loss, self.image_size, self.block_size, self.seed
        )?;
        writeln!(
            f,
            "virtual time to the last result: {} | airtime {:.0} s | datagrams up {} down {} | frames {} ({} lost) | retransmissions {} | wall {:.1} s",
            hms(Duration::from_secs_f64(self.virtual_time_s.max(0.0))),
            self.airtime_s,
            self.datagrams_up,
            self.datagrams_down,
            self.frames,
            self.frames_lost,
            self.retransmissions,
            self.wall_time_s
        )
    }
}

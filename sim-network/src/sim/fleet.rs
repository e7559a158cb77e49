//! `sim-network fleet` and the demo: one update of a whole simulated fleet, start to finish, and
//! the report of what happened to every device.

use std::fmt;
use std::time::{Duration, Instant as WallInstant};

use anyhow::{Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use lwm2m_server::campaign::CampaignRequest;
use lwm2m_server::campaign::target::TargetSpec;
use lwm2m_server::jobs::{JobDeviceStatus, JobView};
use lwm2m_server::store::JobDeviceRecord;
use serde::Serialize;

use super::delta::DeltaReleases;
use super::release::{Firmware, Release};
use super::world::{World, WorldConfig};

/// How the fleet is updated to 2.0.0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateKind {
    /// 2.0.0 is an image of its own: every device downloads all of it.
    #[default]
    Full,
    /// 2.0.0 is a rebuild of the factory image and the server also holds the delta to it: the
    /// job targets the full release and the server sends each device the delta.
    Delta,
}

/// What the server is given for the update.
#[derive(Clone, Debug)]
pub enum Rollout {
    Full(Release),
    Delta(DeltaReleases),
}

impl Rollout {
    /// The releases of an update of kind `kind` to 2.0.0 (sequence 2) of `image_size` bytes.
    pub fn new(firmware: &Firmware, kind: UpdateKind, image_size: usize) -> Result<Rollout> {
        Ok(match kind {
            UpdateKind::Full => Rollout::Full(firmware.release("2.0.0", 2, image_size, None)?),
            UpdateKind::Delta => Rollout::Delta(firmware.delta_releases("2.0.0", 2)?),
        })
    }

    pub fn kind(&self) -> UpdateKind {
        match self {
            Rollout::Full(_) => UpdateKind::Full,
            Rollout::Delta(_) => UpdateKind::Delta,
        }
    }

    /// The full release every device must end up running.
    pub fn target(&self) -> &Release {
        match self {
            Rollout::Full(r) => r,
            Rollout::Delta(d) => &d.full,
        }
    }

    /// The bytes each device is meant to download: the image, or the patch.
    pub fn payload_len(&self) -> usize {
        match self {
            Rollout::Full(r) => r.image.len(),
            Rollout::Delta(d) => d.delta.image.len(),
        }
    }

    /// Hosts the releases on the server; the id of the job's target (the full release).
    pub fn add_to(&self, world: &World) -> Result<String> {
        match self {
            Rollout::Full(r) => world.add_release(r, None),
            Rollout::Delta(d) => d.add_to(world).map(|(full, _)| full),
        }
    }
}

/// What the job sent a device: "delta" (and no fallback since), "full", or None before it chose.
pub fn sent_kind(rec: &JobDeviceRecord) -> Option<&'static str> {
    rec.sent_release_id.as_ref()?;
    Some(if rec.bytes_saved.is_some() && rec.fallback.is_none() {
        "delta"
    } else {
        "full"
    })
}

/// Downloads at once per mesh when a fleet is rolled out as a campaign: the server's campaign
/// default (`max_per_mesh`).
pub const DEFAULT_PER_MESH: u32 = 4;

/// What to roll out and how long to wait.
#[derive(Clone, Debug)]
pub struct FleetRun {
    pub world: WorldConfig,
    /// Virtual time the update may take before the run gives up.
    pub time_limit: Duration,
    /// Show a progress bar on stderr.
    pub progress: bool,
    pub update: UpdateKind,
    /// Downloads at once per mesh: the update runs as a campaign (one wave) with this
    /// `max_per_mesh`, as an operator would run it; 0 starts one job for every device at once.
    pub per_mesh: u32,
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
    /// When the server started this device's update, in virtual seconds from the start.
    pub started_at_s: Option<f64>,
    /// When the server recorded the final status, in virtual seconds from the start.
    pub finished_at_s: Option<f64>,
    pub image_verified: bool,
    /// What the server sent it: `delta`, `full` (also after a delta's fallback), or none.
    pub sent: Option<String>,
    /// Its block requests for the image (or the patch): what the download cost it in requests.
    pub image_requests: u64,
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
    /// The link model in one line (hops, loss and what it applies to, MAC).
    pub model: String,
    pub meshes: usize,
    /// Downloads at once per mesh (0: every device at once, in one job).
    pub per_mesh: u32,
    /// The new image.
    pub image_size: usize,
    /// Full image or delta, and the bytes each device is meant to download (the image or the
    /// patch).
    pub update: UpdateKind,
    pub payload_size: usize,
    /// Devices the server sent the delta (and that did not fall back to the full image), and
    /// those that fell back.
    pub sent_delta: usize,
    pub fallbacks: usize,
    /// Block requests for the image or patch, all devices.
    pub image_requests: u64,
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
    /// MAC retransmissions of frames (with MAC acknowledgements), all hops and directions.
    pub mac_retries: u64,
    /// MAC acknowledgements sent (on the air too, not among `frames`).
    pub acks: u64,
    /// Frames given up after every MAC retry.
    pub mac_failures: u64,
    /// Attempts that found the channel busy (OpenThread: CCA failures), and of those, the ones
    /// that collided.
    pub channel_busy: u64,
    pub collisions: u64,
    /// Time the radios really transmitted (frames and ACKs, SHR and PHR included, no back-offs or
    /// gaps): OpenThread's measure of airtime.
    pub signal_airtime_s: f64,
    pub retransmissions: u64,
    pub devices: Vec<DeviceOutcome>,
}

impl FleetReport {
    pub fn all_updated(&self) -> bool {
        self.updated == self.device_count
    }
}

/// Runs an update of every device from the factory image 1.0.0 to `2.0.0`, by `run.update`.
pub fn run(run: &FleetRun) -> Result<FleetReport> {
    let wall = WallInstant::now();
    super::world::block_on_seeded(run.world.seed, async {
        let firmware = Firmware::new(run.world.seed, run.world.image_size)?;
        let rollout = Rollout::new(&firmware, run.update, run.world.image_size)?;
        let world = World::start(run.world.clone(), firmware).await?;
        update(&world, &rollout, run, wall).await
    })?
}

/// Rolls `rollout` out to every device of `world` and reports.
pub async fn update(
    world: &World,
    rollout: &Rollout,
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
    let release_id = rollout.add_to(world)?;
    if run.per_mesh > 0 {
        let view = by_campaign(world, &release_id, run, &bar, lines).await?;
        bar.finish_and_clear();
        return Ok(report(world, rollout, &view.0, view.1, wall, run.per_mesh));
    }
    let job = world.start_update(&release_id)?;
    let started = world.elapsed();
    let total_bytes = (rollout.payload_len() * world.devices.len()) as u64;
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
    Ok(report(world, rollout, &view, started, wall, 0))
}

/// Rolls the release out as a campaign of one wave that lets `run.per_mesh` devices of a mesh
/// download at once: a mesh's devices share its air, and with all 50 at once the relays' queues
/// and the retransmissions they cause make the rollout collapse (docs/BENCHMARKS.md). Returns
/// every device's job record (the campaign starts one job per device) as one view, and when the
/// campaign started.
async fn by_campaign(
    world: &World,
    release_id: &str,
    run: &FleetRun,
    bar: &ProgressBar,
    lines: bool,
) -> Result<(JobView, Duration)> {
    let req = CampaignRequest {
        release: release_id.to_string(),
        name: Some("fleet".into()),
        target: TargetSpec {
            pattern: Some("*".into()),
            ..TargetSpec::default()
        },
        waves: Some(vec![100]),
        // The fleet reports every device's outcome: no failure halts it.
        failure_threshold: Some(0.99),
        soak_s: Some(0.0),
        max_concurrent: Some(u32::MAX),
        max_per_mesh: Some(run.per_mesh),
        ..CampaignRequest::default()
    };
    let started = world.elapsed();
    let id = world.start_campaign(&req).await?;
    let mut next_line = Duration::ZERO;
    world
        .wait_campaign(id, run.time_limit, Duration::from_secs(10), |v, t| {
            let c = &v.totals;
            let done = c.succeeded + c.failed + c.cancelled + c.skipped;
            let msg = format!(
                "virtual {} | {} downloading, {} waiting",
                hms(t.saturating_sub(started)),
                c.running,
                c.queued
            );
            if lines && t >= next_line {
                eprintln!("  {done}/{} devices done | {msg}", world.devices.len());
                next_line = t + Duration::from_secs(600);
            }
            bar.set_position(done);
            bar.set_message(msg);
        })
        .await?;
    let jobs = world.server()?.jobs.list()?;
    let mut merged = jobs
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("the campaign started no job"))?;
    merged.created_at_ms = jobs.iter().map(|j| j.created_at_ms).min().unwrap_or(0);
    merged.devices = jobs.into_iter().flat_map(|j| j.devices).collect();
    Ok((merged, started))
}

pub(crate) fn progress_bar(show: bool, len: usize) -> ProgressBar {
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
    rollout: &Rollout,
    view: &JobView,
    started: Duration,
    wall: WallInstant,
    per_mesh: u32,
) -> FleetReport {
    let release = rollout.target();
    let epoch_ms = view.created_at_ms;
    let want = release.image_sha256();
    let mut devices = Vec::with_capacity(world.devices.len());
    let mut last_final = 0.0f64;
    let (mut frames, mut frames_lost, mut mac_retries) = (0, 0, 0);
    let mut radio = crate::model::LinkStats::default();
    for d in &world.devices {
        let rec = view
            .devices
            .iter()
            .find(|r| r.endpoint == d.device.endpoint);
        let dev_view = d.device.view();
        let traffic = world.net.traffic(d.addr).unwrap_or_default();
        frames += traffic.path.up.frames_sent + traffic.path.down.frames_sent;
        frames_lost += traffic.path.up.frames_lost + traffic.path.down.frames_lost;
        mac_retries += traffic.path.up.mac_retries + traffic.path.down.mac_retries;
        for l in [traffic.path.up, traffic.path.down] {
            radio.acks_sent += l.acks_sent;
            radio.mac_failures += l.mac_failures;
            radio.channel_busy += l.channel_busy;
            radio.collisions += l.collisions;
            radio.frames_sent += l.frames_sent;
            radio.frame_bytes += l.frame_bytes;
        }
        let running = d.device.active_version().unwrap_or_default();
        let image_verified = d.device.active_sha256(release.image.len()) == Some(want);
        let job_status = rec.map(|r| r.status);
        let finished_at_s = rec
            .filter(|r| r.status.is_final())
            .map(|r| started.as_secs_f64() + (r.updated_at_ms - epoch_ms) as f64 / 1000.0);
        let started_at_s = rec
            .and_then(|r| r.started_at_ms)
            .map(|t| started.as_secs_f64() + (t - epoch_ms) as f64 / 1000.0);
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
            started_at_s,
            finished_at_s,
            image_verified,
            sent: rec.and_then(sent_kind).map(String::from),
            image_requests: traffic.image_requests,
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
        model: world.cfg.link.summary(),
        meshes: world.meshes.len(),
        per_mesh,
        image_size: release.image.len(),
        update: rollout.kind(),
        payload_size: rollout.payload_len(),
        sent_delta: devices
            .iter()
            .filter(|d| d.sent.as_deref() == Some("delta"))
            .count(),
        fallbacks: view.devices.iter().filter(|r| r.fallback.is_some()).count(),
        image_requests: sum(|d| d.image_requests),
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
        mac_retries,
        acks: radio.acks_sent,
        mac_failures: radio.mac_failures,
        channel_busy: radio.channel_busy,
        collisions: radio.collisions,
        signal_airtime_s: if world.cfg.link.on_air {
            radio.signal_airtime(world.cfg.link.bitrate).as_secs_f64()
        } else {
            0.0
        },
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
            "network: {} meshes, {}, {} B image in {} B blocks, seed {}",
            self.meshes, self.model, self.image_size, self.block_size, self.seed
        )?;
        if self.update == UpdateKind::Delta {
            writeln!(
                f,
                "delta: {} B patch for the {} B image; sent to {} devices, {} fell back to the full image",
                self.payload_size, self.image_size, self.sent_delta, self.fallbacks
            )?;
        }
        writeln!(
            f,
            "virtual time to the last result: {} | airtime {:.0} s | datagrams up {} down {} | frames {} ({} lost, {} MAC retries) | retransmissions {} | wall {:.1} s",
            hms(Duration::from_secs_f64(self.virtual_time_s.max(0.0))),
            self.airtime_s,
            self.datagrams_up,
            self.datagrams_down,
            self.frames,
            self.frames_lost,
            self.mac_retries,
            self.retransmissions,
            self.wall_time_s
        )
    }
}

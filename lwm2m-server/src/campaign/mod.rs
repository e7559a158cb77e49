//! Update campaigns: a release rolled out to a target set in waves (cumulative percentages), one
//! update job per device, with a failure threshold per wave that halts the campaign, a soak time
//! between waves, and limits on concurrent downloads overall and per mesh (a device's mesh is its
//! address prefix, which names the border router whose airtime it shares).
//!
//! - [`target`]: which devices (list, name glob, model/version filter).
//! - [`plan`]: wave sizes, the threshold decision, mesh prefixes.
//! - [`db`]: the tables; everything is persisted, so a restarted server carries on.
//! - [`runner`]: the loop that starts devices, records outcomes and moves between waves.
//!
//! Sleeping (queue-mode) devices: a device is started only while the registry says it can be
//! reached (awake, or not in queue mode), so a sleeper never holds a concurrency slot while it
//! sleeps; it stays queued and the runner tries it again when it speaks. A wave waits for its
//! sleepers at most `CampaignConfig::wake_timeout`; then they are `skipped`, never `failed`. A
//! started device whose job ends because it stayed unreachable is `unreachable`, which does not
//! count against the threshold either: neither says anything about the release.

pub mod db;
pub mod plan;
pub mod runner;
pub mod target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwm2m_core::Path;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::dm::DeviceManager;
use crate::events::{EventBus, ServerEvent};
use crate::jobs::JobManager;
use crate::paths::{DEVICE_FIRMWARE_VERSION, DEVICE_MODEL_NUMBER, FW_PKG_VERSION};
use crate::registry::Registry;
pub use crate::status::{CampaignDeviceStatus, CampaignState};
use crate::store::{Store, StoreError};
use db::{CampaignDeviceRecord, CampaignRecord, Counts, NewCampaign, WaveRecord};
use target::{DeviceInfo, TargetSpec};

/// Defaults and timing of campaigns.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    /// How often the runner looks at its devices when no event wakes it.
    pub tick: Duration,
    /// How long a wave waits for a device that is asleep or not registered before skipping it.
    pub wake_timeout: Duration,
    /// How long reading a device's model and version (for a filter) may take.
    pub info_read_timeout: Duration,
    /// Devices read at once when a filter needs their model or version.
    pub info_read_concurrency: usize,
    pub default_waves: Vec<u32>,
    pub default_failure_threshold: f64,
    pub default_soak: Duration,
    pub default_max_concurrent: u32,
    pub default_max_per_mesh: u32,
    pub default_mesh_prefix_v6: u8,
    pub default_mesh_prefix_v4: u8,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        CampaignConfig {
            tick: Duration::from_secs(2),
            wake_timeout: Duration::from_secs(24 * 3600),
            info_read_timeout: Duration::from_secs(10),
            info_read_concurrency: 32,
            default_waves: plan::DEFAULT_WAVES.to_vec(),
            default_failure_threshold: 0.1,
            default_soak: Duration::from_secs(600),
            default_max_concurrent: 100,
            // A Thread mesh shares one channel: a few block-wise downloads at once fill it.
            default_max_per_mesh: 4,
            default_mesh_prefix_v6: 64,
            default_mesh_prefix_v4: 24,
        }
    }
}

/// `POST /api/campaigns`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    pub release: String,
    #[serde(default)]
    pub name: Option<String>,
    pub target: TargetSpec,
    /// Cumulative percentages, e.g. [1, 10, 50, 100].
    #[serde(default)]
    pub waves: Option<Vec<u32>>,
    /// Fraction of a wave's decided devices that may fail, e.g. 0.1.
    #[serde(default)]
    pub failure_threshold: Option<f64>,
    /// Seconds between the end of a wave and the start of the next.
    #[serde(default)]
    pub soak_s: Option<f64>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    #[serde(default)]
    pub max_per_mesh: Option<u32>,
    #[serde(default)]
    pub mesh_prefix_v6: Option<u8>,
    #[serde(default)]
    pub mesh_prefix_v4: Option<u8>,
    /// Start at once (default); `false` leaves it `created` until `resume`.
    #[serde(default)]
    pub start: Option<bool>,
}

/// A new state and its reason.
pub(crate) type Next = (CampaignState, Option<String>);

/// Why a campaign request was refused.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The request is wrong (unknown release, empty target set, bad waves...).
    #[error("{0}")]
    Invalid(String),
    #[error("no campaign {0}")]
    Unknown(i64),
    /// The campaign is in a state where the command makes no sense.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A wave with its counts, as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct WaveView {
    #[serde(flatten)]
    pub wave: WaveRecord,
    pub counts: Counts,
}

/// A campaign as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CampaignView {
    #[serde(flatten)]
    pub campaign: CampaignRecord,
    pub release_version: Option<String>,
    pub totals: Counts,
    pub waves: Vec<WaveView>,
    /// A page of the devices (all of them unless the request asks for a page); absent in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<CampaignDeviceRecord>>,
}

/// Which devices a view includes.
#[derive(Clone, Debug, Default)]
pub struct DevicePage {
    /// Only devices with this status, as the API spells it ([`CampaignDeviceStatus`]); a text
    /// that is no status matches no device.
    pub status: Option<String>,
    pub limit: Option<usize>,
    pub offset: usize,
}

/// The campaign manager: creates campaigns, runs one runner task per unfinished campaign.
pub struct CampaignManager {
    pub(crate) store: Arc<Store>,
    pub(crate) jobs: Arc<JobManager>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) dm: Arc<DeviceManager>,
    pub(crate) events: EventBus,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: CampaignConfig,
    /// Serialises changes of a campaign's state between the runners and the operator's commands.
    pub(crate) state_lock: Mutex<()>,
    wakers: Mutex<HashMap<i64, Arc<Notify>>>,
    tasks: Mutex<HashMap<i64, tokio::task::JoinHandle<()>>>,
    /// The campaign locks this node holds ([`CampaignManager::pick_up`]).
    locks: Mutex<CampaignLocks>,
}

/// The campaign locks held, and on which connection (the store's [`Store::session`]).
#[derive(Default)]
struct CampaignLocks {
    session: u64,
    held: std::collections::HashSet<i64>,
}

impl CampaignManager {
    pub fn new(
        store: Arc<Store>,
        jobs: Arc<JobManager>,
        registry: Arc<Registry>,
        dm: Arc<DeviceManager>,
        events: EventBus,
        clock: Arc<dyn Clock>,
        config: CampaignConfig,
    ) -> Arc<Self> {
        Arc::new(CampaignManager {
            store,
            jobs,
            registry,
            dm,
            events,
            clock,
            config,
            state_lock: Mutex::new(()),
            wakers: Mutex::default(),
            tasks: Mutex::default(),
            locks: Mutex::default(),
        })
    }

    /// Validates the request, selects the target set, plans the waves, stores the campaign and
    /// (unless `start: false`) starts its first wave. Returns its id.
    pub async fn create(self: &Arc<Self>, req: &CampaignRequest) -> Result<i64, CampaignError> {
        let cfg = &self.config;
        let invalid = CampaignError::Invalid;
        let release = self.store.release_by_id_or_version(&req.release)?.ok_or_else(|| {
            invalid(format!(
                "no release {:?}: add it with `lwm2m-server firmware add` and use the id it prints or its version (`firmware list` shows them)",
                req.release
            ))
        })?;
        let waves = req
            .waves
            .clone()
            .unwrap_or_else(|| cfg.default_waves.clone());
        plan::validate_waves(&waves).map_err(invalid)?;
        let threshold = req
            .failure_threshold
            .unwrap_or(cfg.default_failure_threshold);
        plan::validate_threshold(threshold).map_err(invalid)?;
        let soak_s = req.soak_s.unwrap_or(cfg.default_soak.as_secs_f64());
        // A year at most: beyond that a soak is a typo, and the deadline arithmetic stays safe.
        if !soak_s.is_finite() || !(0.0..=365.0 * 86_400.0).contains(&soak_s) {
            return Err(invalid(format!(
                "soak time {soak_s} s is out of range: give seconds from 0 to a year"
            )));
        }
        let max_concurrent = req.max_concurrent.unwrap_or(cfg.default_max_concurrent);
        let max_per_mesh = req.max_per_mesh.unwrap_or(cfg.default_max_per_mesh);
        if max_concurrent == 0 || max_per_mesh == 0 {
            return Err(invalid(
                "max_concurrent and max_per_mesh must be at least 1".into(),
            ));
        }
        let v6 = req.mesh_prefix_v6.unwrap_or(cfg.default_mesh_prefix_v6);
        let v4 = req.mesh_prefix_v4.unwrap_or(cfg.default_mesh_prefix_v4);
        if v6 > 128 || v4 > 32 {
            return Err(invalid(format!(
                "mesh prefix /{v6} (IPv6) or /{v4} (IPv4) is too long: at most /128 and /32"
            )));
        }
        req.target.validate().map_err(invalid)?;

        // On PostgreSQL the whole fleet, whichever node holds each device.
        let registered: Vec<String> = self
            .registry
            .fleet()
            .into_iter()
            .map(|r| r.endpoint)
            .collect();
        let infos = if req.target.needs_device_info() {
            let candidates: Vec<String> = registered
                .iter()
                .filter(|ep| req.target.name_matches(ep))
                .cloned()
                .collect();
            self.device_infos(&candidates).await
        } else {
            HashMap::new()
        };
        let targets = target::select(&req.target, &registered, |ep| infos.get(ep).cloned())
            .map_err(invalid)?;
        if targets.is_empty() {
            return Err(invalid(format!(
                "the target set is empty: no registered device matches {} (see `lwm2m-server clients`)",
                serde_json::to_string(&req.target).unwrap_or_default()
            )));
        }
        let devices: Vec<(String, Option<String>)> = targets
            .into_iter()
            .map(|ep| {
                let mesh = self
                    .registry
                    .lookup(&ep)
                    .map(|r| plan::mesh_of(r.address, v6, v4));
                (ep, mesh)
            })
            .collect();
        let devices = plan::interleave_meshes(&devices);
        let sizes = plan::wave_sizes(devices.len(), &waves);
        let start = req.start.unwrap_or(true);
        let now = self.clock.now_ms();
        let id = self.store.create_campaign(
            &NewCampaign {
                name: req.name.as_deref(),
                release_id: &release.id,
                target: &req.target,
                waves: &waves,
                sizes: &sizes,
                failure_threshold: threshold,
                soak_ms: (soak_s * 1000.0).round() as i64,
                max_concurrent,
                max_per_mesh,
                mesh_prefix_v6: v6,
                mesh_prefix_v4: v4,
                state: CampaignState::Created,
                devices: &devices,
            },
            now,
        )?;
        if start {
            self.transition(id, |c| match c.state {
                CampaignState::Created => Ok(Some((CampaignState::Running, None))),
                _ => Ok(None),
            })?;
        }
        self.spawn(id);
        Ok(id)
    }

    /// Model and firmware version of each endpoint: cached, else read from the device (a few at
    /// a time, each bounded by `info_read_timeout`); a device that cannot be read is left out.
    async fn device_infos(&self, endpoints: &[String]) -> HashMap<String, DeviceInfo> {
        let mut out = HashMap::new();
        let mut to_read = Vec::new();
        for ep in endpoints {
            match self.store.device_info(ep) {
                Ok(Some(i)) if i.model.is_some() && i.firmware_version.is_some() => {
                    out.insert(ep.clone(), i);
                }
                _ => to_read.push(ep.clone()),
            }
        }
        for chunk in to_read.chunks(self.config.info_read_concurrency.max(1)) {
            let mut set = tokio::task::JoinSet::new();
            for ep in chunk {
                let dm = self.dm.clone();
                let ep = ep.clone();
                let timeout = self.config.info_read_timeout;
                let now = self.clock.now_ms();
                set.spawn(async move {
                    let info = read_info(&dm, &ep, timeout, now).await;
                    (ep, info)
                });
            }
            while let Some(done) = set.join_next().await {
                let Ok((ep, info)) = done else { continue };
                if info.model.is_none() && info.firmware_version.is_none() {
                    continue;
                }
                if let Err(e) = self.store.put_device_info(&ep, &info) {
                    tracing::warn!("{ep}: cannot cache the device info: {e}");
                }
                out.insert(ep, info);
            }
        }
        out
    }

    /// Picks up every unfinished campaign (after a restart): a wave in progress continues, a
    /// soak keeps its deadline.
    pub fn resume_all(self: &Arc<Self>) -> Result<usize, StoreError> {
        let ids = self.store.unfinished_campaigns()?;
        for id in &ids {
            self.spawn(*id);
        }
        Ok(ids.len())
    }

    fn waker(&self, id: i64) -> Arc<Notify> {
        self.wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    fn wake(&self, id: i64) {
        self.waker(id).notify_one();
    }

    /// Runs campaign `id` here, unless it runs here already or, on PostgreSQL, another node
    /// holds its lock (see [`CampaignManager::pick_up`]).
    fn spawn(self: &Arc<Self>, id: i64) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.get(&id).is_some_and(|t| !t.is_finished()) {
            return;
        }
        {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // The connection was opened again and `pick_up` has not seen it yet: it will.
            if locks.session != self.store.session() {
                return;
            }
            if !locks.held.contains(&id) {
                match self.store.try_lock_campaign(id) {
                    Ok(true) => {
                        locks.held.insert(id);
                    }
                    Ok(false) => return,
                    Err(e) => {
                        tracing::error!("campaign {id}: cannot take its lock: {e}");
                        return;
                    }
                }
            }
        }
        let me = self.clone();
        let wake = self.waker(id);
        tasks.insert(id, tokio::spawn(runner::run(me, id, wake)));
    }

    /// On PostgreSQL, every node calls this every second: it runs each unfinished campaign whose
    /// lock no node holds (one created on a node that died, or whose node lost its
    /// connection), and gives up the locks of the runners that ended here.
    ///
    /// Why a session advisory lock per campaign, not a leader lease: PostgreSQL releases it the
    /// moment the holder's connection closes (a node killed with SIGKILL: its socket is closed
    /// by the kernel), so another node takes over within a second without a lease timeout,
    /// heartbeats or clocks; and campaigns spread over the nodes instead of one leader running
    /// them all. A connection opened again has lost its locks: the runners here stop and the
    /// campaigns are taken again by whichever node locks them first.
    pub fn pick_up(self: &Arc<Self>) {
        let session = self.store.session();
        let lost: Vec<i64> = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.session == session {
                Vec::new()
            } else {
                locks.session = session;
                locks.held.drain().collect()
            }
        };
        if !lost.is_empty() {
            tracing::warn!(
                "the PostgreSQL connection was opened again: stopping {} campaign runners until their locks are taken again",
                lost.len()
            );
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            for id in &lost {
                if let Some(t) = tasks.remove(id) {
                    t.abort();
                }
            }
        }
        let ended: Vec<i64> = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let ended = tasks
                .iter()
                .filter(|(_, t)| t.is_finished())
                .map(|(id, _)| *id)
                .collect::<Vec<_>>();
            for id in &ended {
                tasks.remove(id);
            }
            ended
        };
        for id in ended {
            let held = self
                .locks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .held
                .remove(&id);
            if held && let Err(e) = self.store.unlock_campaign(id) {
                tracing::error!("campaign {id}: cannot give up its lock: {e}");
            }
        }
        match self.store.unfinished_campaigns() {
            Ok(ids) => {
                for id in ids {
                    self.spawn(id);
                }
            }
            Err(e) => tracing::error!("cannot look for campaigns to run: {e}"),
        }
    }

    /// Whether this node still holds campaign `id`'s lock: on the connection that took it. A
    /// runner checks before each pass and before starting a device, so that it stops as soon
    /// as its connection was replaced, not only at the next [`CampaignManager::pick_up`].
    pub(crate) fn holds(&self, id: i64) -> bool {
        let locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.session == self.store.session() && locks.held.contains(&id)
    }

    /// Stops every runner without recording anything (the server is killed).
    pub fn abort_all(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks.into_values() {
            t.abort();
        }
    }

    /// Applies a change of state under the state lock: `decide` returns the new state (or `None`
    /// for no change) or refuses. Publishes the change.
    pub(crate) fn transition(
        &self,
        id: i64,
        decide: impl FnOnce(&CampaignRecord) -> Result<Option<Next>, CampaignError>,
    ) -> Result<CampaignRecord, CampaignError> {
        let _g = self.state_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = self.store.campaign(id)?.ok_or(CampaignError::Unknown(id))?;
        let Some((next, reason)) = decide(&c)? else {
            return Ok(c);
        };
        let previous = c.state;
        c.reason = reason;
        let now = self.clock.now_ms();
        let starting = previous == CampaignState::Created && next == CampaignState::Running;
        c.state = next;
        if next.is_final() {
            c.finished_at_ms = Some(now);
        }
        self.store.set_campaign_state(&c, previous, now)?;
        if starting {
            self.store.set_wave_started(id, c.current_wave, now)?;
            self.publish_wave(&c);
        }
        self.publish_state(&c);
        Ok(c)
    }

    pub(crate) fn publish_state(&self, c: &CampaignRecord) {
        self.events.publish(ServerEvent::CampaignState {
            campaign_id: c.id,
            state: c.state,
            reason: c.reason.clone(),
            wave: c.current_wave,
            soak_until_ms: c.soak_until_ms,
        });
    }

    pub(crate) fn publish_wave(&self, c: &CampaignRecord) {
        let size = self
            .store
            .campaign_waves(c.id)
            .ok()
            .and_then(|w| w.get(c.current_wave as usize).map(|w| w.size))
            .unwrap_or(0);
        self.events.publish(ServerEvent::CampaignWave {
            campaign_id: c.id,
            wave: c.current_wave,
            percent: c.waves.get(c.current_wave as usize).copied().unwrap_or(100),
            size,
        });
    }

    /// Pause: no device starts; the ones running finish. A soak keeps its deadline.
    pub fn pause(&self, id: i64) -> Result<CampaignRecord, CampaignError> {
        let c = self.transition(id, |c| match c.state {
            CampaignState::Running | CampaignState::Soaking | CampaignState::Created => {
                Ok(Some((CampaignState::Paused, None)))
            }
            s => Err(CampaignError::Conflict(format!(
                "campaign {id} is {s}: only a created, running or soaking campaign can be paused"
            ))),
        })?;
        self.wake(id);
        Ok(c)
    }

    /// Resume a paused campaign (or start a created one).
    pub fn resume(self: &Arc<Self>, id: i64) -> Result<CampaignRecord, CampaignError> {
        let c = self.transition(id, |c| match c.state {
            CampaignState::Paused if c.soak_until_ms.is_some() => {
                Ok(Some((CampaignState::Soaking, None)))
            }
            CampaignState::Paused | CampaignState::Created => {
                Ok(Some((CampaignState::Running, None)))
            }
            s => Err(CampaignError::Conflict(format!(
                "campaign {id} is {s}: only a paused or created campaign can be resumed"
            ))),
        })?;
        self.spawn(id);
        self.wake(id);
        Ok(c)
    }

    /// Abort: running jobs are cancelled (a device already installing finishes), every queued
    /// device is skipped.
    pub fn abort(self: &Arc<Self>, id: i64) -> Result<CampaignRecord, CampaignError> {
        let c = self.transition(id, |c| match c.state {
            s if s.is_final() => Err(CampaignError::Conflict(format!(
                "campaign {id} is already {s}; nothing to abort"
            ))),
            _ => Ok(Some((
                CampaignState::Aborted,
                Some("aborted by the operator".into()),
            ))),
        })?;
        let now = self.clock.now_ms();
        self.store.skip_queued(id, "campaign aborted", now)?;
        for d in self.store.running_campaign_devices(id)? {
            if let Some(job) = d.job_id {
                if let Err(e) = self.jobs.cancel(job) {
                    tracing::warn!("campaign {id}: cannot cancel job {job}: {e}");
                }
            }
        }
        self.spawn(id);
        self.wake(id);
        Ok(c)
    }

    /// A campaign with its waves, counts and a page of its devices.
    pub fn view(
        &self,
        id: i64,
        page: Option<&DevicePage>,
    ) -> Result<Option<CampaignView>, StoreError> {
        let Some(campaign) = self.store.campaign(id)? else {
            return Ok(None);
        };
        let counts = self.store.campaign_counts(id)?;
        let mut totals = Counts::default();
        for c in &counts {
            totals.add_all(c);
        }
        let waves = self
            .store
            .campaign_waves(id)?
            .into_iter()
            .map(|w| WaveView {
                counts: counts.get(w.wave as usize).cloned().unwrap_or_default(),
                wave: w,
            })
            .collect();
        let devices = match page {
            Some(p) => {
                Some(
                    self.store
                        .campaign_devices(id, p.status.as_deref(), p.limit, p.offset)?,
                )
            }
            None => None,
        };
        let release_version = self
            .store
            .release(&campaign.release_id)?
            .and_then(|r| r.version);
        Ok(Some(CampaignView {
            campaign,
            release_version,
            totals,
            waves,
            devices,
        }))
    }

    /// Every campaign, without devices.
    pub fn list(&self) -> Result<Vec<CampaignView>, StoreError> {
        let mut out = Vec::new();
        for c in self.store.campaigns()? {
            if let Some(v) = self.view(c.id, None)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Waits until the campaign's runner has ended (tests).
    pub async fn wait_runner(&self, id: i64) {
        loop {
            let done = self
                .tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .is_none_or(|t| t.is_finished());
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads the model (/3/0/1) and the firmware version (/3/0/3, else the PkgVersion /5/0/7) of a
/// device, each bounded by `timeout`.
async fn read_info(dm: &DeviceManager, ep: &str, timeout: Duration, now: i64) -> DeviceInfo {
    async fn text(dm: &DeviceManager, ep: &str, path: Path, timeout: Duration) -> Option<String> {
        let answer = tokio::time::timeout(timeout, dm.read(ep, &path, None))
            .await
            .ok()?
            .ok()?;
        let v = answer.values.first()?.value.clone();
        Some(match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .filter(|s| !s.is_empty())
    }
    let model = text(dm, ep, DEVICE_MODEL_NUMBER, timeout).await;
    let mut version = text(dm, ep, DEVICE_FIRMWARE_VERSION, timeout).await;
    if version.is_none() {
        version = text(dm, ep, FW_PKG_VERSION, timeout).await;
    }
    DeviceInfo {
        model,
        firmware_version: version,
        read_at_ms: now,
    }
}

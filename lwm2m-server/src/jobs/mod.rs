//! Update jobs: the Object 5 procedure, run for each device of a job and persisted at every step
//! so that it carries on after a re-registration, an address change or a server restart.
//!
//! For each device: read State (/5/0/3), reset it when it is not Idle, read the protocols (/5/0/8)
//! and delivery methods (/5/0/9), prefer pull (write the manifest URI, or the image URI of a plain
//! release, to /5/0/1) and fall back to push (Block1 to /5/0/0), observe State and Update Result
//! (/5/0/5) and poll when notifications stop, execute Update (/5/0/2) once Downloaded, and count
//! the job succeeded only when the device then reports Update Result 1 and the release's version
//! (PkgVersion, else Firmware Version). A Result 1 left over from an earlier update never counts:
//! Update is executed only after the device was seen Downloaded, which resets the Result to 0.
//!
//! The device's word is not enough: Downloaded counts only once this server has served that
//! device the image's last block (its own record, `downloads`) or the device took the whole push;
//! otherwise the download is tried again. An impostor that re-registers the endpoint can stall a
//! job, never complete one without fetching the image, and leaves a line in the audit trail.
//!
//! - this module: [`JobManager`] (start, resume, cancel, view; one task per device) and its
//!   configuration and errors;
//! - `run`: the procedure for one device, step by step.

mod delta;
mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::dm::DeviceManager;
use crate::downloads::DownloadTracker;
use crate::events::EventBus;
use crate::registry::Registry;
use crate::repository::Repository;
pub use crate::status::{JobDeviceStatus, JobStatus, JobStep};
use crate::store::{JobDeviceRecord, JobRecord, ReleaseRecord, Store, StoreError};
use run::DeviceRun;

/// Timeouts and retries of update jobs.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// Download attempts per device before the job fails (a lost connection is retried).
    pub max_attempts: u32,
    /// How long one download may take.
    pub download_timeout: Duration,
    /// How long the device may take from Execute Update to its final result.
    pub update_timeout: Duration,
    /// How long the preparation (reading and resetting Object 5) may take, sleeping clients included.
    pub prepare_timeout: Duration,
    /// How often State and Result are read when no notification arrives.
    pub poll_interval: Duration,
    /// Block size for push (Block1) transfers.
    pub push_block_size: usize,
    /// Wait before retrying a failed download; doubles (up to 5 minutes) while a device stays
    /// unreachable.
    pub retry_delay: Duration,
    /// How long a device may stay unreachable (no answer, not registered) before its job fails.
    /// Unreachability does not use up `max_attempts`: on a lossy mesh a request of the job can
    /// go unanswered many times over hours without anything being wrong with the update.
    pub unreachable_limit: Duration,
    /// Base of the Package URIs written to devices with DTLS credentials (`coaps://host:5684`);
    /// None when the server has no `coaps://` listener.
    pub public_coaps_uri: Option<String>,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            max_attempts: 3,
            download_timeout: Duration::from_secs(4 * 3600),
            update_timeout: Duration::from_secs(30 * 60),
            prepare_timeout: Duration::from_secs(24 * 3600),
            poll_interval: Duration::from_secs(30),
            push_block_size: 256,
            retry_delay: Duration::from_secs(10),
            unreachable_limit: Duration::from_secs(6 * 3600),
            public_coaps_uri: None,
        }
    }
}

/// Why a job could not be started.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(
        "no release {0}: give a release id or the version of one full release (`firmware list`)"
    )]
    UnknownRelease(String),
    #[error("no job {0}")]
    UnknownJob(i64),
    #[error("no endpoints given")]
    NoEndpoints,
    #[error("{0} is not registered")]
    UnknownClient(String),
    #[error("{0} already has an update job running (job {1}); cancel it first")]
    Busy(String, i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A job with its devices, as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct JobView {
    pub id: i64,
    pub release_id: String,
    pub release_version: Option<String>,
    pub created_at_ms: i64,
    pub cancel_requested: bool,
    /// `running`, `succeeded` (all devices), `failed` (any device failed), `cancelled`.
    pub status: JobStatus,
    pub devices: Vec<JobDeviceRecord>,
}

/// The job manager.
pub struct JobManager {
    store: Arc<Store>,
    dm: Arc<DeviceManager>,
    pub(super) registry: Arc<Registry>,
    repo: Arc<Repository>,
    downloads: Arc<DownloadTracker>,
    events: EventBus,
    clock: Arc<dyn Clock>,
    config: JobConfig,
    /// Base of the Package URIs written to devices, e.g. `coap://[2001:db8::1]:5683`.
    public_uri: String,
    cancels: Mutex<HashMap<i64, watch::Sender<bool>>>,
    running: Mutex<HashMap<(i64, String), tokio::task::JoinHandle<()>>>,
}

impl JobManager {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        dm: Arc<DeviceManager>,
        registry: Arc<Registry>,
        repo: Arc<Repository>,
        downloads: Arc<DownloadTracker>,
        events: EventBus,
        clock: Arc<dyn Clock>,
        config: JobConfig,
        public_uri: String,
    ) -> Arc<Self> {
        Arc::new(JobManager {
            store,
            dm,
            registry,
            repo,
            downloads,
            events,
            clock,
            config,
            public_uri: public_uri.trim_end_matches('/').to_string(),
            cancels: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Where `endpoint` fetches releases from: over DTLS if it has DTLS credentials (never in
    /// plain text), else over `coap://` (plain, or with OSCORE for a device with a context).
    pub(crate) fn package_base(&self, endpoint: &str) -> Option<String> {
        if self.dm.uses_dtls(endpoint) {
            let base = self.config.public_coaps_uri.as_deref()?;
            Some(base.trim_end_matches('/').to_string())
        } else {
            Some(self.public_uri.clone())
        }
    }

    /// Starts a job updating `endpoints` to `release_id` (a release id, or the version of one full
    /// release); returns its id.
    pub fn start(
        self: &Arc<Self>,
        release_id: &str,
        endpoints: &[String],
    ) -> Result<i64, JobError> {
        if endpoints.is_empty() {
            return Err(JobError::NoEndpoints);
        }
        // A version names its full release; each device then gets that or a delta of it.
        let Some(target) = self.store.release_by_id_or_version(release_id)? else {
            return Err(JobError::UnknownRelease(release_id.into()));
        };
        let release_id = target.id.as_str();
        for ep in endpoints {
            // On a shared store the device may be another node's: its owner runs the step.
            if self.registry.lookup(ep).is_none() {
                return Err(JobError::UnknownClient(ep.clone()));
            }
            if let Some(job) = self
                .store
                .unfinished_job_devices()?
                .iter()
                .find(|d| &d.endpoint == ep)
            {
                return Err(JobError::Busy(ep.clone(), job.job_id));
            }
        }
        let mut unique = endpoints.to_vec();
        unique.sort();
        unique.dedup();
        let id = match self
            .store
            .create_job(release_id, &unique, self.clock.now_ms())
        {
            Ok(id) => id,
            // Another node started one between the check above and here.
            Err(StoreError::JobBusy(ep, job)) => return Err(JobError::Busy(ep, job)),
            Err(e) => return Err(e.into()),
        };
        for ep in unique {
            if self.drives(&ep) {
                self.spawn(id, ep);
            }
        }
        Ok(id)
    }

    /// Picks up every unfinished device of every job (after a restart).
    pub fn resume_all(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut n = 0;
        for d in self.store.unfinished_job_devices()? {
            if self.drives(&d.endpoint) && self.spawn(d.job_id, d.endpoint) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether this node runs the job steps of `endpoint`: always on a store of its own; on a
    /// shared store only for a device it holds (it heard it last), so that each device's step
    /// runs on one node, the one whose socket reaches it.
    fn drives(&self, endpoint: &str) -> bool {
        !self.registry.is_shared() || self.registry.get(endpoint).is_some()
    }

    /// Starts the unfinished job devices of `endpoint` that are not running here: after this
    /// node took the device over from another. Each resumes at the step the store holds.
    pub fn resume_endpoint(self: &Arc<Self>, endpoint: &str) {
        match self.store.unfinished_job_devices() {
            Ok(devices) => {
                for d in devices.into_iter().filter(|d| d.endpoint == endpoint) {
                    if self.spawn(d.job_id, d.endpoint) {
                        tracing::info!("resumed job {} for {endpoint}", d.job_id);
                    }
                }
            }
            Err(e) => tracing::error!("cannot resume the jobs of {endpoint}: {e}"),
        }
    }

    fn cancel_signal(&self, job_id: i64) -> watch::Receiver<bool> {
        let mut c = self.cancels.lock().unwrap_or_else(|p| p.into_inner());
        let cancelled = self
            .store
            .job(job_id)
            .ok()
            .flatten()
            .is_some_and(|(j, _)| j.cancel_requested);
        c.entry(job_id)
            .or_insert_with(|| watch::channel(cancelled).0)
            .subscribe()
    }

    /// Passes on the cancellations asked through another node's API to the job steps running
    /// here (a cancel on this node signals them at once). One query.
    pub fn sync_cancels(&self) -> Result<(), StoreError> {
        let first = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running.retain(|_, t| !t.is_finished());
            running.keys().map(|(job, _)| *job).min()
        };
        let Some(first) = first else { return Ok(()) };
        let cancelled = self.store.cancelled_jobs_from(first)?;
        let c = self.cancels.lock().unwrap_or_else(|p| p.into_inner());
        for job in cancelled {
            if let Some(tx) = c.get(&job)
                && !*tx.borrow()
            {
                tx.send_replace(true);
            }
        }
        Ok(())
    }

    /// Stops the job steps running here for `endpoint` (another node took the device over and
    /// resumes them from the store), as a kill would: nothing is recorded.
    pub fn stop_endpoint(&self, endpoint: &str) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|(_, ep), task| {
            if ep == endpoint {
                task.abort();
            }
            ep != endpoint
        });
    }

    /// Runs a job device unless it runs here already; whether it started it.
    fn spawn(self: &Arc<Self>, job_id: i64, endpoint: String) -> bool {
        let key = (job_id, endpoint.clone());
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.get(&key).is_some_and(|t| !t.is_finished()) {
            return false;
        }
        let me = self.clone();
        let cancel = self.cancel_signal(job_id);
        let task = tokio::spawn(async move { me.run_device(job_id, endpoint, cancel).await });
        running.insert(key, task);
        true
    }

    /// Stops every job task at once without recording anything (the server is killed; the store
    /// keeps where each device was, and [`JobManager::resume_all`] picks it up after a restart).
    pub fn abort_all(&self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        for task in running.into_values() {
            task.abort();
        }
    }

    /// Cancels a job: devices not yet updating are told to cancel (/5/0/10) and stop.
    pub fn cancel(&self, job_id: i64) -> Result<(), JobError> {
        if !self.store.request_cancel(job_id, self.clock.now_ms())? {
            return Err(JobError::UnknownJob(job_id));
        }
        let mut c = self.cancels.lock().unwrap_or_else(|p| p.into_inner());
        c.entry(job_id)
            .or_insert_with(|| watch::channel(true).0)
            .send_replace(true);
        Ok(())
    }

    /// A job with its devices.
    pub fn view(&self, job_id: i64) -> Result<Option<JobView>, StoreError> {
        let Some((job, devices)) = self.store.job(job_id)? else {
            return Ok(None);
        };
        let release = self.store.release(&job.release_id)?;
        Ok(Some(view(job, release, devices)))
    }

    /// Every job.
    pub fn list(&self) -> Result<Vec<JobView>, StoreError> {
        let mut out = Vec::new();
        for job in self.store.jobs()? {
            if let Some(v) = self.view(job.id)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Waits until every device task has ended (tests, shutdown).
    pub async fn wait_idle(&self) {
        loop {
            let running = {
                let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
                r.retain(|_, t| !t.is_finished());
                r.len()
            };
            if running == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn run_device(
        self: Arc<Self>,
        job_id: i64,
        endpoint: String,
        mut cancel: watch::Receiver<bool>,
    ) {
        let Ok(Some((job, devices))) = self.store.job(job_id) else {
            return;
        };
        let Some(mut rec) = devices.into_iter().find(|d| d.endpoint == endpoint) else {
            return;
        };
        let Ok(Some(target)) = self.store.release(&job.release_id) else {
            return;
        };
        // A device resumed after a restart keeps what it was sent (a delta or the full image).
        let sent = match &rec.sent_release_id {
            Some(id) => self.store.release(id).ok().flatten(),
            None => None,
        };
        let mut run = DeviceRun {
            jm: &self,
            target: &target,
            release: sent.unwrap_or_else(|| target.clone()),
            rec: &mut rec,
            cancel: &mut cancel,
            unsaved: None,
        };
        run.drive().await;
        run.save_until_stored().await;
        let sent_id = run.release.id.clone();
        if let Some(reg) = self.registry.get(&endpoint) {
            self.downloads.forget(reg.address, &sent_id);
        }
    }
}

fn view(job: JobRecord, release: Option<ReleaseRecord>, devices: Vec<JobDeviceRecord>) -> JobView {
    JobView {
        id: job.id,
        release_id: job.release_id,
        release_version: release.and_then(|r| r.version),
        created_at_ms: job.created_at_ms,
        cancel_requested: job.cancel_requested,
        status: JobStatus::of(devices.iter().map(|d| d.status)),
        devices,
    }
}

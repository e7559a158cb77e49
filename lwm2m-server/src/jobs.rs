//! Update jobs: the Object 5 procedure, run for each device of a job and persisted at every step
//! so that it carries on after a re-registration, an address change or a server restart.
//!
//! For each device: read State (/5/0/3), reset it when it is not Idle, read the protocols (/5/0/8)
//! and delivery methods (/5/0/9), prefer pull (write the manifest URI, or the image URI of a plain
//! release, to /5/0/1) and fall back to push (Block1 to /5/0/0), observe State and Update Result
//! (/5/0/5) and poll when notifications stop, execute Update (/5/0/2) once Downloaded, and count
//! the job succeeded only when the device then reports Update Result 1 (and, where it reports a
//! PkgVersion, the release's version). A Result 1 left over from an earlier update never counts:
//! Update is executed only after the device was seen Downloaded, which resets the Result to 0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwm2m_core::Path;
use lwm2m_core::content;
use lwm2m_core::object5::{self, State, UpdateResult};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::coap::block::set_uint_option;
use crate::dm::{DeviceManager, DmError};
use crate::downloads::DownloadTracker;
use crate::events::{EventBus, ServerEvent};
use crate::paths::{
    FW_CANCEL, FW_DELIVERY_METHOD, FW_PACKAGE, FW_PACKAGE_URI, FW_PKG_VERSION, FW_PROTOCOL_SUPPORT,
    FW_STATE, FW_UPDATE, FW_UPDATE_RESULT,
};
use crate::registry::Registry;
use crate::repository::Repository;
pub use crate::status::{JobDeviceStatus, JobStatus, JobStep};
use crate::store::{JobDeviceRecord, JobRecord, ReleaseRecord, Store, StoreError};

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
        }
    }
}

/// Why a job could not be started.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no release {0}")]
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

/// How a step ended when it did not simply move on.
enum Stop {
    /// Try the download again (connection lost, timeout), if attempts remain.
    Retry(String),
    /// The device did not answer or is not registered: try again later, for as long as
    /// `unreachable_limit` allows.
    Unreachable(String),
    /// The device failed; no retry helps.
    Fail(String),
    /// The job was cancelled.
    Cancelled,
}

impl From<DmError> for Stop {
    fn from(e: DmError) -> Self {
        match e {
            // The device may be rebooting or out of reach for a while: worth another attempt.
            DmError::Timeout | DmError::Coap(_) | DmError::Asleep | DmError::UnknownClient(_) => {
                Stop::Unreachable(e.to_string())
            }
            other => Stop::Fail(other.to_string()),
        }
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Fail(format!("store: {e}"))
    }
}

/// Resolves when the job is cancelled; never, once nobody can cancel it any more (the sender is
/// gone: past Execute Update). A closed channel must not resolve: every `select!` on it would spin.
async fn cancel_requested(mut rx: watch::Receiver<bool>) {
    if *rx.borrow_and_update() {
        return;
    }
    while rx.changed().await.is_ok() {
        if *rx.borrow_and_update() {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// The job manager.
pub struct JobManager {
    store: Arc<Store>,
    dm: Arc<DeviceManager>,
    registry: Arc<Registry>,
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

    /// Starts a job updating `endpoints` to `release_id`; returns its id.
    pub fn start(
        self: &Arc<Self>,
        release_id: &str,
        endpoints: &[String],
    ) -> Result<i64, JobError> {
        if endpoints.is_empty() {
            return Err(JobError::NoEndpoints);
        }
        if self.store.release(release_id)?.is_none() {
            return Err(JobError::UnknownRelease(release_id.into()));
        }
        for ep in endpoints {
            if self.registry.get(ep).is_none() {
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
        let id = self
            .store
            .create_job(release_id, &unique, self.clock.now_ms())?;
        for ep in unique {
            self.spawn(id, ep);
        }
        Ok(id)
    }

    /// Picks up every unfinished device of every job (after a restart).
    pub fn resume_all(self: &Arc<Self>) -> Result<usize, StoreError> {
        let devices = self.store.unfinished_job_devices()?;
        let n = devices.len();
        for d in devices {
            self.spawn(d.job_id, d.endpoint);
        }
        Ok(n)
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

    fn spawn(self: &Arc<Self>, job_id: i64, endpoint: String) {
        let me = self.clone();
        let cancel = self.cancel_signal(job_id);
        let key = (job_id, endpoint.clone());
        let task = tokio::spawn(async move { me.run_device(job_id, endpoint, cancel).await });
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, task);
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
        let Ok(Some(release)) = self.store.release(&job.release_id) else {
            return;
        };
        let mut run = DeviceRun {
            jm: &self,
            release: &release,
            rec: &mut rec,
            cancel: &mut cancel,
        };
        run.drive().await;
        if let Some(reg) = self.registry.get(&endpoint) {
            self.downloads.forget(reg.address, &release.id);
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

/// One device's run of the procedure.
struct DeviceRun<'a> {
    jm: &'a Arc<JobManager>,
    release: &'a ReleaseRecord,
    rec: &'a mut JobDeviceRecord,
    cancel: &'a mut watch::Receiver<bool>,
}

impl DeviceRun<'_> {
    fn ep(&self) -> String {
        self.rec.endpoint.clone()
    }

    /// Saves the record with an audit line and publishes the change.
    fn save(&mut self, event: &str, detail: Option<&str>) {
        self.rec.updated_at_ms = self.jm.clock.now_ms();
        if let Err(e) = self.jm.store.save_job_device(self.rec, event, detail) {
            tracing::error!(
                "job {} {}: cannot save progress: {e}",
                self.rec.job_id,
                self.rec.endpoint
            );
        }
        self.jm.events.publish(ServerEvent::Job {
            job_id: self.rec.job_id,
            endpoint: self.rec.endpoint.clone(),
            status: self.rec.status,
            state: self.rec.fw_state,
            result: self.rec.fw_result,
            detail: detail.map(Into::into),
        });
    }

    fn set(&mut self, status: JobDeviceStatus, step: JobStep, event: &str, detail: Option<&str>) {
        self.rec.status = status;
        self.rec.step = step;
        self.save(event, detail);
    }

    async fn drive(&mut self) {
        if self.rec.started_at_ms.is_none() {
            self.rec.started_at_ms = Some(self.jm.clock.now_ms());
        }
        let mut unreachable_since: Option<Instant> = None;
        let mut backoff = self.jm.config.retry_delay;
        loop {
            if self.rec.status.is_final() {
                return;
            }
            let outcome = match self.rec.step {
                JobStep::Start => self.prepare().await,
                JobStep::Deliver => self.deliver().await,
                JobStep::Downloading => self.await_download().await,
                JobStep::Execute => self.execute().await,
                JobStep::Updating => self.await_update().await,
                JobStep::Done => return,
            };
            let delay = match outcome {
                Ok(()) => {
                    unreachable_since = None;
                    backoff = self.jm.config.retry_delay;
                    continue;
                }
                Err(Stop::Cancelled) => return self.cancelled().await,
                Err(Stop::Fail(reason)) => return self.fail(&reason),
                Err(Stop::Retry(reason)) => {
                    self.rec.attempts += 1;
                    if self.rec.attempts >= self.jm.config.max_attempts {
                        return self
                            .fail(&format!("{reason} (after {} attempts)", self.rec.attempts));
                    }
                    self.rec.error = Some(reason.clone());
                    self.set(
                        JobDeviceStatus::Pending,
                        JobStep::Start,
                        "retry",
                        Some(&reason),
                    );
                    self.jm.config.retry_delay
                }
                Err(Stop::Unreachable(reason)) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.jm.config.unreachable_limit {
                        return self.fail(&format!(
                            "{reason} (unreachable for {} s)",
                            since.elapsed().as_secs()
                        ));
                    }
                    self.rec.error = Some(reason.clone());
                    if self.rec.step == JobStep::Execute {
                        // The package is staged: only Update is left to send.
                        self.save("unreachable", Some(&reason));
                    } else {
                        self.set(
                            JobDeviceStatus::Pending,
                            JobStep::Start,
                            "unreachable",
                            Some(&reason),
                        );
                    }
                    let d = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                    d
                }
            };
            if self.sleep_or_cancel(delay).await.is_err() {
                return self.cancelled().await;
            }
        }
    }

    fn fail(&mut self, reason: &str) {
        self.rec.error = Some(reason.into());
        self.set(
            JobDeviceStatus::Failed,
            JobStep::Done,
            "failed",
            Some(reason),
        );
    }

    fn cancelled_now(&self) -> bool {
        *self.cancel.borrow()
    }

    async fn sleep_or_cancel(&mut self, d: Duration) -> Result<(), Stop> {
        if self.cancelled_now() {
            return Err(Stop::Cancelled);
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = cancel_requested(self.cancel.clone()) => Err(Stop::Cancelled),
        }
    }

    /// Runs `f` unless the job is cancelled first.
    async fn or_cancel<T>(&mut self, f: impl std::future::Future<Output = T>) -> Result<T, Stop> {
        if self.cancelled_now() {
            return Err(Stop::Cancelled);
        }
        let cancel = self.cancel.clone();
        tokio::select! {
            v = f => Ok(v),
            _ = cancel_requested(cancel) => Err(Stop::Cancelled),
        }
    }

    async fn read_int(&mut self, path: Path) -> Result<Option<i64>, Stop> {
        let dm = self.jm.dm.clone();
        let ep = self.ep();
        let answer = self
            .or_cancel(async move { dm.read(&ep, &path, None).await })
            .await?;
        match answer {
            Ok(a) => Ok(a.values.first().and_then(|i| i.value.as_i64())),
            Err(DmError::Device { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_ints(&mut self, path: Path) -> Result<Vec<i64>, Stop> {
        let dm = self.jm.dm.clone();
        let ep = self.ep();
        let answer = self
            .or_cancel(async move { dm.read(&ep, &path, Some(content::LWM2M_TLV)).await })
            .await?;
        match answer {
            Ok(a) => Ok(a.values.iter().filter_map(|i| i.value.as_i64()).collect()),
            Err(DmError::Device { .. }) => Ok(vec![]),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_uri(&mut self, uri: &str) -> Result<Result<(), DmError>, Stop> {
        let dm = self.jm.dm.clone();
        let ep = self.ep();
        let value = serde_json::Value::String(uri.into());
        self.or_cancel(async move {
            dm.write(&ep, &FW_PACKAGE_URI, &value, true)
                .await
                .map(|_| ())
        })
        .await
    }

    /// Reads State; resets Object 5 when it is not Idle; reads the protocols and delivery methods.
    async fn prepare(&mut self) -> Result<(), Stop> {
        let deadline = Instant::now() + self.jm.config.prepare_timeout;
        let prepared = tokio::time::timeout_at(deadline, async {
            let state = self.read_int(FW_STATE).await?;
            self.rec.fw_state = state;
            self.rec.fw_result = self.read_int(FW_UPDATE_RESULT).await?;
            if state.is_some_and(|s| s != State::Idle as i64) {
                if state == Some(State::Updating as i64) {
                    return Err(Stop::Retry(
                        "the device is in the middle of another update".into(),
                    ));
                }
                // Reset: an empty Package URI (pull devices) puts Object 5 back to Idle.
                if let Err(e) = self.write_uri("").await? {
                    tracing::info!(
                        "{}: resetting with an empty URI failed ({e}); trying a null Package",
                        self.rec.endpoint
                    );
                    let dm = self.jm.dm.clone();
                    let ep = self.ep();
                    self.or_cancel(async move {
                        dm.write(
                            &ep,
                            &FW_PACKAGE,
                            &serde_json::Value::String("00".into()),
                            true,
                        )
                        .await
                    })
                    .await?
                    .map_err(Stop::from)?;
                }
                let after = self.read_int(FW_STATE).await?;
                if after.is_some_and(|s| s != State::Idle as i64) {
                    return Err(Stop::Retry(format!(
                        "the device stays in State {after:?} after a reset"
                    )));
                }
                self.save("reset", Some(&format!("State was {state:?}")));
            }
            let protocols = self.read_ints(FW_PROTOCOL_SUPPORT).await?;
            let delivery = self.read_int(FW_DELIVERY_METHOD).await?;
            Ok((protocols, delivery))
        })
        .await;
        let (protocols, delivery) = prepared
            .map_err(|_| Stop::Retry("the device did not answer the preparation".into()))??;
        let pull_ok = delivery.is_none_or(|d| d == 0 || d == 2)
            && (protocols.is_empty()
                || protocols.contains(&(object5::ProtocolSupport::Coap as i64)));
        let push_ok = delivery.is_some_and(|d| d == 1 || d == 2);
        let integrated = self
            .jm
            .repo
            .files(&self.release.id)
            .is_some_and(|f| f.is_integrated());
        let mode = match (pull_ok, push_ok) {
            (_, true) if integrated => "push",
            (true, _) => "pull",
            (false, true) => "push",
            (false, false) => {
                return Err(Stop::Fail(format!(
                    "the device supports neither CoAP pull nor push (delivery {delivery:?}, protocols {protocols:?})"
                )));
            }
        };
        self.rec.delivery = Some(mode.into());
        self.rec.bytes_total = self.release.image_size;
        self.rec.bytes_done = 0;
        self.set(
            JobDeviceStatus::Pending,
            JobStep::Deliver,
            "prepared",
            Some(&format!("delivery {mode}")),
        );
        Ok(())
    }

    /// Starts the download: writes the Package URI (pull) or pushes the package (push).
    async fn deliver(&mut self) -> Result<(), Stop> {
        // Observe State and Result so that progress arrives as it happens; polling covers the rest.
        self.observe_fw().await;
        if self.rec.delivery.as_deref() == Some("push") {
            return self.push().await;
        }
        let what = if self.release.kind == "suit" {
            "manifest"
        } else {
            "image"
        };
        let uri = format!("{}/fw/{}/{what}", self.jm.public_uri, self.release.id);
        match self.write_uri(&uri).await? {
            Ok(()) => {}
            Err(DmError::Device { code: 0x80, .. }) => {
                return Err(Stop::Retry(
                    "the device refused the Package URI (not Idle)".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.set(
            JobDeviceStatus::Downloading,
            JobStep::Downloading,
            "download-started",
            Some(&uri),
        );
        Ok(())
    }

    async fn push(&mut self) -> Result<(), Stop> {
        let files = self
            .jm
            .repo
            .files(&self.release.id)
            .ok_or_else(|| Stop::Fail("release files missing".into()))?;
        if self.release.kind == "suit" && !files.is_integrated() {
            return Err(Stop::Fail(
                "the device only takes push, and this SUIT release is not integrated: add one made with `suit create --integrated`".into(),
            ));
        }
        self.set(
            JobDeviceStatus::Downloading,
            JobStep::Downloading,
            "push-started",
            None,
        );
        let peer = self
            .jm
            .dm
            .address(&self.rec.endpoint)
            .await
            .map_err(Stop::from)?;
        let mut base = coap_lite::Packet::new();
        base.header.code = coap_lite::MessageClass::Request(coap_lite::RequestType::Put);
        for id in FW_PACKAGE.ids() {
            base.add_option(coap_lite::CoapOption::UriPath, id.to_string().into_bytes());
        }
        set_uint_option(
            &mut base,
            coap_lite::CoapOption::ContentFormat,
            u32::from(content::OCTET_STREAM),
        );
        let body = crate::repository::PushBody(files);
        let total = crate::coap::driver::BodySource::total_len(&body);
        self.rec.bytes_total = total;
        let store = self.jm.store.clone();
        let clock = self.jm.clock.clone();
        let (job_id, ep) = (self.rec.job_id, self.rec.endpoint.clone());
        let mut last_saved = 0u64;
        let progress = move |sent: u64, total: u64| {
            // Every 4 KiB: enough for a progress bar, cheap for the store.
            if sent >= last_saved + 4096 || sent == total {
                last_saved = sent;
                let _ = store.save_job_progress(job_id, &ep, sent, total, clock.now_ms());
            }
        };
        let coap = self.jm.dm.coap().clone();
        let block = self.jm.config.push_block_size;
        let timeout = self.jm.config.download_timeout;
        let pushed = self
            .or_cancel(tokio::time::timeout(
                timeout,
                coap.push_block1(peer, base, body, block, progress),
            ))
            .await?
            .map_err(|_| Stop::Retry("the push timed out".into()))?
            .map_err(|e| Stop::Retry(format!("push: {e}")))?;
        let code = u8::from(pushed.header.code);
        if code >> 5 != 2 {
            return Err(Stop::Fail(format!(
                "the device refused the package: {}",
                crate::dm::code_text(code)
            )));
        }
        self.rec.bytes_done = total;
        self.save("push-complete", None);
        Ok(())
    }

    async fn observe_fw(&mut self) {
        for p in [FW_STATE, FW_UPDATE_RESULT] {
            let dm = self.jm.dm.clone();
            let ep = self.ep();
            // Observation is best effort (RFC 7641): a client that refuses it is polled instead.
            if let Err(e) = dm.observe(&ep, &p).await {
                tracing::debug!("{ep}: observe {p} failed: {e}");
            }
        }
    }

    /// Waits for State and Result (notifications or polling) until `judge` decides.
    async fn watch<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut judge: impl FnMut(Option<i64>, Option<i64>) -> Option<Result<T, Stop>>,
    ) -> Result<T, Stop> {
        let deadline = Instant::now() + timeout;
        let mut events = self.jm.events.subscribe();
        let mut poll = tokio::time::interval(self.jm.config.poll_interval);
        let ep = self.ep();
        // Notifications name their path as text.
        let (state_path, result_path) = (FW_STATE.to_string(), FW_UPDATE_RESULT.to_string());
        loop {
            if let Some(done) = judge(self.rec.fw_state, self.rec.fw_result) {
                return done;
            }
            let cancel = self.cancel.clone();
            let (mut state, mut result) = (self.rec.fw_state, self.rec.fw_result);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Err(Stop::Retry(format!("timed out waiting for {what}"))),
                _ = cancel_requested(cancel) => return Err(Stop::Cancelled),
                _ = poll.tick() => {
                    // Polling: notifications are best effort and lost across a reboot.
                    let dm = self.jm.dm.clone();
                    if let Ok(a) = dm.read(&ep, &FW_STATE, None).await {
                        state = a.values.first().and_then(|i| i.value.as_i64()).or(state);
                    }
                    if let Ok(a) = dm.read(&ep, &FW_UPDATE_RESULT, None).await {
                        result = a.values.first().and_then(|i| i.value.as_i64()).or(result);
                    }
                    self.track_download();
                }
                ev = events.recv() => match ev {
                    Ok(ServerEvent::Notification { endpoint, path: p, value }) if endpoint == ep => {
                        let v = value.get(0).and_then(|i| i.get("value")).and_then(|v| v.as_i64());
                        if p == state_path { state = v.or(state) } else if p == result_path { result = v.or(result) }
                    }
                    Ok(ServerEvent::Registered { endpoint, .. }) if endpoint == ep => {
                        // A re-registered client (after a reboot) lost its observations.
                        self.observe_fw().await;
                        poll.reset_immediately();
                    }
                    Ok(ServerEvent::Download { .. }) => self.track_download(),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => poll.reset_immediately(),
                    _ => {}
                },
            }
            if (state, result) != (self.rec.fw_state, self.rec.fw_result) {
                self.rec.fw_state = state;
                self.rec.fw_result = result;
                self.save(
                    "object5",
                    Some(&format!("State {state:?}, Result {result:?}")),
                );
            }
        }
    }

    /// Copies the firmware server's record of fetched blocks into the job (pull).
    fn track_download(&mut self) {
        if self.rec.delivery.as_deref() != Some("pull") {
            return;
        }
        let Some(reg) = self.jm.registry.get(&self.rec.endpoint) else {
            return;
        };
        if let Some(p) = self.jm.downloads.progress(reg.address, &self.release.id) {
            if p.bytes_done() != self.rec.bytes_done {
                self.rec.bytes_done = p.bytes_done();
                let _ = self.jm.store.save_job_progress(
                    self.rec.job_id,
                    &self.rec.endpoint,
                    self.rec.bytes_done,
                    self.rec.bytes_total,
                    self.jm.clock.now_ms(),
                );
            }
        }
    }

    /// Waits for Downloaded, or for a failed download.
    async fn await_download(&mut self) -> Result<(), Stop> {
        let timeout = self.jm.config.download_timeout;
        self.watch(timeout, "the download", |state, result| {
            let state = state.and_then(|s| State::try_from(s).ok());
            let result = result.and_then(|r| UpdateResult::try_from(r).ok());
            match (state, result) {
                (Some(State::Downloaded), _) => Some(Ok(())),
                (Some(State::Idle), Some(r))
                    if r.is_download_failure() || r == UpdateResult::Cancelled =>
                {
                    Some(Err(match r {
                        UpdateResult::ConnectionLost | UpdateResult::OutOfRam => Stop::Retry(
                            format!("download failed: Update Result {} ({r:?})", r as u8),
                        ),
                        _ => Stop::Fail(format!(
                            "download failed: Update Result {} ({r:?})",
                            r as u8
                        )),
                    }))
                }
                _ => None,
            }
        })
        .await?;
        self.rec.bytes_done = self.rec.bytes_total;
        self.set(
            JobDeviceStatus::Downloaded,
            JobStep::Execute,
            "downloaded",
            None,
        );
        Ok(())
    }

    /// Executes Update (/5/0/2).
    async fn execute(&mut self) -> Result<(), Stop> {
        let dm = self.jm.dm.clone();
        let ep = self.ep();
        match self
            .or_cancel(async move { dm.execute(&ep, &FW_UPDATE, None).await })
            .await?
        {
            Ok(_) => {}
            // A device that reboots at once may not answer; the result tells the truth later
            // (and if the Update itself was lost, `await_update` sees the package still held
            // and sends it again).
            Err(DmError::Timeout | DmError::Coap(_)) => tracing::info!(
                "{}: no answer to Update; waiting for the result",
                self.rec.endpoint
            ),
            // An error may answer a retransmitted Execute whose first copy the device already
            // carried out (the 2.04 was lost, the device rebooted into the new image and now
            // refuses Update in its new state). Only a device still holding the package refused.
            Err(e @ DmError::Device { .. }) => {
                // Unreadable (rebooting, gone quiet) counts as "not holding it": the result decides.
                let state = self.read_int(FW_STATE).await.ok().flatten();
                if state == Some(State::Downloaded as i64) {
                    return Err(Stop::Fail(format!("Update refused: {e}")));
                }
                tracing::info!(
                    "{}: Update answered {e} in State {state:?}: an earlier Update's answer was \
                     probably lost; waiting for the result",
                    self.rec.endpoint
                );
            }
            Err(e) => return Err(e.into()),
        }
        // From here on the update cannot be cancelled (the device answers Cancel with 4.05).
        self.rec.fw_state = Some(State::Updating as i64);
        self.set(
            JobDeviceStatus::Updating,
            JobStep::Updating,
            "update-executed",
            None,
        );
        Ok(())
    }

    /// Waits for the device's verdict on the update: Result 1 (then PkgVersion), or a failure.
    async fn await_update(&mut self) -> Result<(), Stop> {
        let timeout = self.jm.config.update_timeout;
        // Cancel no longer applies: watch without the cancel signal.
        *self.cancel = watch::channel(false).1;
        let outcome = self
            .watch(timeout, "the update result", |state, result| {
                let result = result.and_then(|r| UpdateResult::try_from(r).ok());
                match (state, result) {
                    (Some(0), Some(UpdateResult::Success)) => Some(Ok(true)),
                    (_, Some(UpdateResult::UpdateFailed | UpdateResult::IntegrityFailure)) => {
                        Some(Ok(false))
                    }
                    // Still holding the package: the Update never arrived (its answer and
                    // every retransmission were lost). A device that got it would be updating,
                    // rebooting, or reporting a result.
                    (Some(2), _) => Some(Err(Stop::Unreachable(
                        "the device still holds the package: Update not delivered".into(),
                    ))),
                    _ => None,
                }
            })
            .await;
        match outcome {
            Ok(true) => {}
            Err(Stop::Unreachable(reason))
                if self.rec.fw_state == Some(State::Downloaded as i64) =>
            {
                self.set(
                    JobDeviceStatus::Downloaded,
                    JobStep::Execute,
                    "update-not-delivered",
                    Some(&reason),
                );
                return Err(Stop::Unreachable(reason));
            }
            Ok(false) => {
                return Err(Stop::Fail(format!(
                    "the update failed: Update Result {:?}",
                    self.rec.fw_result
                )));
            }
            Err(Stop::Retry(reason) | Stop::Unreachable(reason)) => return Err(Stop::Fail(reason)),
            Err(other) => return Err(other),
        }
        // Where the device reports a PkgVersion, it must be the release's.
        let dm = self.jm.dm.clone();
        let ep = self.ep();
        if let Ok(a) = dm.read(&ep, &FW_PKG_VERSION, None).await {
            let reported = a
                .values
                .first()
                .and_then(|i| i.value.as_str())
                .unwrap_or("")
                .to_string();
            if !reported.is_empty() {
                self.rec.pkg_version = Some(reported.clone());
                if let Some(want) = &self.release.version {
                    if &reported != want {
                        return Err(Stop::Fail(format!(
                            "the device reports PkgVersion {reported}, the release is {want}"
                        )));
                    }
                }
            }
        }
        self.rec.error = None;
        self.set(JobDeviceStatus::Succeeded, JobStep::Done, "succeeded", None);
        Ok(())
    }

    /// Tells the device to cancel (when it is downloading or downloaded) and ends.
    async fn cancelled(&mut self) {
        let state = self.rec.fw_state;
        if matches!(
            self.rec.step,
            JobStep::Deliver | JobStep::Downloading | JobStep::Execute
        ) || state
            .is_some_and(|s| s == State::Downloading as i64 || s == State::Downloaded as i64)
        {
            let dm = self.jm.dm.clone();
            let ep = self.ep();
            match dm.execute(&ep, &FW_CANCEL, None).await {
                Ok(_) => self.rec.fw_result = Some(UpdateResult::Cancelled as i64),
                Err(e) => tracing::info!("{ep}: Cancel ({FW_CANCEL}) failed: {e}"),
            }
        }
        self.set(JobDeviceStatus::Cancelled, JobStep::Done, "cancelled", None);
    }
}

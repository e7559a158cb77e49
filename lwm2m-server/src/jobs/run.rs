//! One device's run of the update procedure ([`DeviceRun`]): prepare, deliver (pull or push),
//! wait for the download, execute Update, wait for the result, each step persisted so that the
//! run resumes where it was; and how a step stops ([`Stop`]): retry, unreachable, fail, cancel.

use std::sync::Arc;
use std::time::Duration;

use lwm2m_core::Path;
use lwm2m_core::coap::Code;
use lwm2m_core::content;
use lwm2m_core::object5::{self, State, UpdateResult};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{JobDeviceStatus, JobManager, JobStep};
use crate::coap::block::set_uint_option;
use crate::dm::DmError;
use crate::events::ServerEvent;
use crate::paths::{
    DEVICE_FIRMWARE_VERSION, FW_CANCEL, FW_DELIVERY_METHOD, FW_PACKAGE, FW_PACKAGE_URI,
    FW_PKG_VERSION, FW_PROTOCOL_SUPPORT, FW_STATE, FW_UPDATE, FW_UPDATE_RESULT,
};
use crate::store::{JobDeviceRecord, ReleaseRecord, StoreError};
use crate::words;

/// How a step ended when it did not simply move on.
pub(super) enum Stop {
    /// Try the download again (connection lost, timeout), if attempts remain.
    Retry(String),
    /// The device did not answer or is not registered: try again later, for as long as
    /// `unreachable_limit` allows.
    Unreachable(String),
    /// The device failed; no retry helps.
    Fail(String),
    /// The server's database failed (down or restarting): the same step again after
    /// [`STORE_RETRY_WAIT`]. The device is not to blame, so no attempt is used up.
    Store(String),
    /// The job was cancelled.
    Cancelled,
}

impl From<DmError> for Stop {
    fn from(e: DmError) -> Self {
        match e {
            // The device may be rebooting or out of reach for a while: worth another attempt.
            DmError::Timeout
            | DmError::Coap(_)
            | DmError::Asleep
            | DmError::UnknownClient(_)
            | DmError::Elsewhere { .. } => Stop::Unreachable(e.to_string()),
            other => Stop::Fail(other.to_string()),
        }
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(format!("store: {e}"))
    }
}

/// How long a step waits for the database before it runs again ([`Stop::Store`]).
const STORE_RETRY_WAIT: Duration = Duration::from_secs(2);

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

/// One device's run of the procedure.
pub(super) struct DeviceRun<'a> {
    pub(super) jm: &'a Arc<JobManager>,
    /// The job's release: the family every device ends in.
    pub(super) target: &'a ReleaseRecord,
    /// What this device is sent: the target's full release or a delta of its family (chosen in
    /// `prepare`, see `delta::choice`).
    pub(super) release: ReleaseRecord,
    pub(super) rec: &'a mut JobDeviceRecord,
    pub(super) cancel: &'a mut watch::Receiver<bool>,
    /// The audit event and detail of the last save, when the store refused it (the database
    /// was down): the record in memory is newer than the stored one until a save succeeds.
    pub(super) unsaved: Option<(String, Option<String>)>,
}

/// The first wait before writing an unsaved record again; it doubles up to [`RESAVE_MAX_WAIT`].
const RESAVE_FIRST_WAIT: Duration = Duration::from_millis(500);
const RESAVE_MAX_WAIT: Duration = Duration::from_secs(5);

impl DeviceRun<'_> {
    fn ep(&self) -> String {
        self.rec.endpoint.clone()
    }

    /// Saves the record with an audit line and publishes the change.
    pub(super) fn save(&mut self, event: &str, detail: Option<&str>) {
        self.rec.updated_at_ms = self.jm.clock.now_ms();
        match self.jm.store.save_job_device(self.rec, event, detail) {
            Ok(()) => self.unsaved = None,
            Err(e) => {
                tracing::error!(
                    "job {} {}: cannot save progress: {e}",
                    self.rec.job_id,
                    self.rec.endpoint
                );
                self.unsaved = Some((event.into(), detail.map(Into::into)));
            }
        }
        self.jm.events.publish(ServerEvent::Job {
            job_id: self.rec.job_id,
            endpoint: self.rec.endpoint.clone(),
            status: self.rec.status,
            state: self.rec.fw_state,
            state_name: words::state_name(self.rec.fw_state),
            result: self.rec.fw_result,
            result_name: words::result_name(self.rec.fw_result),
            detail: detail.map(Into::into),
        });
    }

    /// When the last save failed, writes the record again until the store takes it. Until then
    /// the device's task stays alive, so no second run of the device starts on this node from
    /// the stale record the store holds ([`JobManager::resume_all`] skips a device whose task
    /// runs): after a database outage the job carries on from where the device really is, not
    /// from a step it passed (which would deliver the package again, and a device that
    /// installed it refuses the replay with Result 6). The audit lines of failed saves are lost;
    /// the last one is written with the record.
    pub(super) async fn save_until_stored(&mut self) {
        let mut wait = RESAVE_FIRST_WAIT;
        while let Some((event, detail)) = self.unsaved.clone() {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RESAVE_MAX_WAIT);
            if self
                .jm
                .store
                .save_job_device(self.rec, &event, detail.as_deref())
                .is_ok()
            {
                tracing::info!(
                    "job {} {}: progress saved after the database came back",
                    self.rec.job_id,
                    self.rec.endpoint
                );
                self.unsaved = None;
            }
        }
    }

    pub(super) fn set(
        &mut self,
        status: JobDeviceStatus,
        step: JobStep,
        event: &str,
        detail: Option<&str>,
    ) {
        self.rec.status = status;
        self.rec.step = step;
        self.save(event, detail);
    }

    pub(super) async fn drive(&mut self) {
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
            // The device's own word that it is back (any datagram) ends an unreachable wait.
            let mut until_heard = false;
            let delay = match outcome {
                Ok(()) => {
                    unreachable_since = None;
                    backoff = self.jm.config.retry_delay;
                    continue;
                }
                Err(Stop::Cancelled) => return self.cancelled().await,
                Err(Stop::Store(reason)) => {
                    tracing::warn!(
                        "job {} {}: {reason}; the step runs again in {} s",
                        self.rec.job_id,
                        self.rec.endpoint,
                        STORE_RETRY_WAIT.as_secs()
                    );
                    STORE_RETRY_WAIT
                }
                Err(Stop::Fail(reason)) => {
                    if self.delta_landed().await || self.fall_back(&reason) {
                        continue;
                    }
                    return self.fail(&reason);
                }
                Err(Stop::Retry(reason)) => {
                    self.rec.attempts += 1;
                    if self.rec.attempts >= self.jm.config.max_attempts {
                        let reason = format!("{reason} (after {} attempts)", self.rec.attempts);
                        if self.delta_landed().await || self.fall_back(&reason) {
                            continue;
                        }
                        return self.fail(&reason);
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
                    until_heard = true;
                    d
                }
            };
            let waited = if until_heard {
                self.sleep_until_heard(delay).await
            } else {
                self.sleep_or_cancel(delay).await
            };
            if waited.is_err() {
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

    /// [`DeviceRun::sleep_or_cancel`], ended early when the device speaks (registers, updates or
    /// sends anything this node hears): a device that was out of reach for minutes is served
    /// as it comes back, not at the end of a backoff of up to 5 minutes.
    async fn sleep_until_heard(&mut self, d: Duration) -> Result<(), Stop> {
        let waker = self.jm.registry.waker(&self.rec.endpoint);
        let heard = waker.notified();
        tokio::select! {
            r = self.sleep_or_cancel(d) => r,
            _ = heard => Ok(()),
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

    pub(super) async fn read_int(&mut self, path: Path) -> Result<Option<i64>, Stop> {
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
                        "the device stays {} after a reset",
                        words::state(after)
                    )));
                }
                let was = words::state(state);
                self.save("reset", Some(&format!("was {was}, reset to Idle")));
            }
            let protocols = self.read_ints(FW_PROTOCOL_SUPPORT).await?;
            let delivery = self.read_int(FW_DELIVERY_METHOD).await?;
            Ok((protocols, delivery))
        })
        .await;
        let (protocols, delivery) = prepared
            .map_err(|_| Stop::Retry("the device did not answer the preparation".into()))??;
        // A device with DTLS credentials fetches over coaps://, any other over coap:// (with
        // OSCORE when it has a context).
        let wanted = if self.jm.dm.uses_dtls(&self.rec.endpoint) {
            object5::ProtocolSupport::Coaps
        } else {
            object5::ProtocolSupport::Coap
        };
        let pull_ok = delivery.is_none_or(|d| d == 0 || d == 2)
            && (protocols.is_empty() || protocols.contains(&(wanted as i64)));
        let push_ok = delivery.is_some_and(|d| d == 1 || d == 2);
        self.choose().await?;
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
                let delivery = delivery
                    .map(|d| {
                        match words::meaning(object5::OBJECT_ID, object5::DELIVERY_METHOD, d) {
                            Some(name) => format!("{name} ({d})"),
                            None => d.to_string(),
                        }
                    })
                    .unwrap_or_else(|| "not read".into());
                let protocols: Vec<String> = protocols
                    .iter()
                    .map(|&p| {
                        match words::meaning(object5::OBJECT_ID, object5::PROTOCOL_SUPPORT, p) {
                            Some(name) => format!("{name} ({p})"),
                            None => p.to_string(),
                        }
                    })
                    .collect();
                return Err(Stop::Fail(format!(
                    "the device supports neither CoAP pull nor push (delivery method {delivery}; protocols {})",
                    if protocols.is_empty() {
                        "not read".into()
                    } else {
                        protocols.join(", ")
                    }
                )));
            }
        };
        self.rec.delivery = Some(mode.into());
        self.rec.bytes_total = self.release.image_size;
        self.rec.bytes_done = 0;
        // A new delivery: the evidence is looked for again when the device reports Downloaded.
        self.rec.image_served = false;
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
        let what = if self.release.has_manifest() {
            "manifest"
        } else {
            "image"
        };
        let base = self.jm.package_base(&self.rec.endpoint).ok_or_else(|| {
            Stop::Fail(
                "the device has DTLS credentials but the server has no coaps:// listener".into(),
            )
        })?;
        let uri = format!("{base}/fw/{}/{what}", self.release.id);
        match self.write_uri(&uri).await? {
            Ok(()) => {}
            Err(DmError::Device { code, .. }) if Code(code) == Code::BAD_REQUEST => {
                return Err(Stop::Retry(
                    "the device refused the Package URI (not Idle)".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        // The write started a new download: a failure result read before it (the delta this
        // device refused, a lost connection) says nothing about this one.
        if self.rec.fw_result.is_some_and(|r| r != 0) {
            self.rec.fw_result = None;
        }
        self.set(
            JobDeviceStatus::Downloading,
            JobStep::Downloading,
            "download-started",
            Some(&uri),
        );
        if let Some(saves) = self.rec.bytes_saved {
            let size = self.release.image_size;
            // A family without a full release has nothing to compare with (nor to fall back to).
            let line = if saves == 0 {
                format!("delta sent ({size} bytes, no full release to compare)")
            } else {
                format!("delta sent ({size} bytes, saves {saves} bytes vs full)")
            };
            self.save("delta-sent", Some(&line));
        }
        Ok(())
    }

    async fn push(&mut self) -> Result<(), Stop> {
        let files = self
            .jm
            .repo
            .files(&self.release.id)
            .ok_or_else(|| Stop::Fail("release files missing".into()))?;
        if self.release.has_manifest() && !files.is_integrated() {
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
        let coap = self
            .jm
            .dm
            .coap_for(&self.rec.endpoint)
            .map_err(|e| Stop::Fail(e.to_string()))?
            .clone();
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
        let code = Code(u8::from(pushed.header.code));
        if !code.is_success() {
            return Err(Stop::Fail(format!(
                "the device refused the package: {code}"
            )));
        }
        self.rec.bytes_done = total;
        self.rec.image_served = true;
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
                    // Its own device's, or a fetch from an address no registration has (a
                    // device may fetch from another port): not every device's in the fleet.
                    Ok(ServerEvent::Download { endpoint, .. })
                        if endpoint == ep || endpoint.parse::<std::net::SocketAddr>().is_ok() =>
                    {
                        self.track_download()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => poll.reset_immediately(),
                    _ => {}
                },
            }
            if (state, result) != (self.rec.fw_state, self.rec.fw_result) {
                self.rec.fw_state = state;
                self.rec.fw_result = result;
                self.save("object5", Some(&words::object5(state, result)));
            }
        }
    }

    /// Copies the firmware server's record of fetched blocks into the job (pull), and notes
    /// (once, in the audit trail too) when the image's last block has been served.
    fn track_download(&mut self) {
        if self.rec.delivery.as_deref() != Some("pull") {
            return;
        }
        let Some(reg) = self.jm.registry.get(&self.rec.endpoint) else {
            return;
        };
        if let Some(p) = self.jm.downloads.progress(reg.address, &self.release.id) {
            if p.last_block_served && !self.rec.image_served {
                self.rec.image_served = true;
                self.rec.bytes_done = p.bytes_done;
                let detail = format!("last block served to {}", reg.address);
                self.save("image-served", Some(&detail));
            } else if p.bytes_done != self.rec.bytes_done {
                self.rec.bytes_done = p.bytes_done;
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

    /// Whether the store has the image's last block served to this endpoint at its IP address.
    fn served_before(&self) -> Result<bool, Stop> {
        let Some(reg) = self.jm.registry.get(&self.rec.endpoint) else {
            return Ok(false);
        };
        let ip = reg.address.ip().to_string();
        Ok(self
            .jm
            .store
            .image_served(&self.release.id, &self.rec.endpoint, &ip)?)
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
                        UpdateResult::ConnectionLost | UpdateResult::OutOfRam => {
                            Stop::Retry(words::failed("Download", r))
                        }
                        _ => Stop::Fail(words::failed("Download", r)),
                    }))
                }
                _ => None,
            }
        })
        .await?;
        // The device's word is not enough: this server must have served it the image (in this
        // run, or before a restart, or for an earlier delivery whose image the device kept).
        self.track_download();
        if !self.rec.image_served && self.served_before()? {
            self.rec.image_served = true;
            self.save("image-served", Some("served to this device earlier"));
        }
        if !self.rec.image_served {
            return Err(Stop::Retry(
                "the device reports Downloaded, but this server never served it the image's last block"
                    .into(),
            ));
        }
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
                    "{}: Update answered {e} in {}: an earlier Update's answer was probably \
                     lost; waiting for the result",
                    self.rec.endpoint,
                    words::state(state)
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
                let result = self.rec.fw_result;
                return Err(Stop::Fail(
                    match result.and_then(|r| UpdateResult::try_from(r).ok()) {
                        Some(r) => words::failed("Update", r),
                        None => format!("Update failed: {}", words::result(result)),
                    },
                ));
            }
            Err(Stop::Retry(reason) | Stop::Unreachable(reason)) => return Err(Stop::Fail(reason)),
            Err(other) => return Err(other),
        }
        self.confirm_installed().await
    }

    /// After Result 1: the job succeeds only if this server delivered the image and the device
    /// reports the release's version.
    pub(super) async fn confirm_installed(&mut self) -> Result<(), Stop> {
        if !self.rec.image_served {
            return Err(Stop::Fail(
                "the device reports Result 1, but this server never delivered the image to it"
                    .into(),
            ));
        }
        // The device must report the release's version (PkgVersion, else Firmware Version).
        let reported = self.reported_version().await;
        if let Some(v) = &reported {
            self.rec.pkg_version = Some(v.clone());
        }
        let want = self
            .release
            .version
            .as_ref()
            .or(self.target.version.as_ref());
        if let Some(want) = want {
            match reported {
                Some(v) if &v == want => {}
                Some(v) => {
                    return Err(Stop::Fail(format!(
                        "the device reports version {v}, the release is {want}"
                    )));
                }
                None => {
                    return Err(Stop::Fail(format!(
                        "the device reports Result 1 but not its version (PkgVersion {FW_PKG_VERSION}, Firmware Version {DEVICE_FIRMWARE_VERSION}); the release is {want}"
                    )));
                }
            }
        }
        self.rec.error = None;
        let detail = self
            .rec
            .pkg_version
            .as_ref()
            .map(|v| format!("the device runs PkgVersion {v}"));
        self.set(
            JobDeviceStatus::Succeeded,
            JobStep::Done,
            "succeeded",
            detail.as_deref(),
        );
        Ok(())
    }

    /// The version the device reports after an update: PkgVersion, else Firmware Version (for a
    /// device without /5/0/7); a few tries, since it has just rebooted.
    async fn reported_version(&mut self) -> Option<String> {
        const TRIES: usize = 3;
        let dm = self.jm.dm.clone();
        let ep = self.ep();
        for _ in 0..TRIES {
            for path in [FW_PKG_VERSION, DEVICE_FIRMWARE_VERSION] {
                if let Ok(a) = dm.read(&ep, &path, None).await {
                    let v = a
                        .values
                        .first()
                        .and_then(|i| i.value.as_str())
                        .unwrap_or("");
                    if !v.is_empty() {
                        return Some(v.to_string());
                    }
                }
            }
        }
        None
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

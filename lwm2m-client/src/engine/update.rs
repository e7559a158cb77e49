//! Update and its ends: Execute Update (/5/0/2) with the user's deferral, the handover to the A/B
//! boot, Cancel (/5/0/10), and a download that failed.

use lwm2m_core::coap::Code;
use lwm2m_core::object5::{Event as FwEvent, Refusal, State, UpdateResult};
use sha2::{Digest, Sha256};

use super::{Engine, Event, refusal_code};
use crate::platform::{PendingUpdate, Platform};
use crate::time::{Duration, Instant};

impl<P: Platform> Engine<P> {
    pub(super) fn fail_download(&mut self, now: Instant, result: UpdateResult) {
        // PkgVersion names the package; a refused one is gone, so report the running firmware.
        self.fw.pkg_version = self.running_version.clone();
        self.drop_package();
        let changed = self.fw.download_failed(now, result);
        self.fw_changed(changed);
        self.save();
    }

    /// Forgets the package in progress or staged: the download or push, its block requests in
    /// flight, its release, and the record of both (a reset,
    /// Cancel, or a failed download).
    pub(super) fn drop_package(&mut self) {
        self.download = None;
        self.manifest.clear_delta();
        self.release = None;
        self.push = None;
        self.exchanges.cancel_blocks();
        self.record.download = None;
        self.record.staged = None;
    }

    /// An image is in the staging slot, all of it (`whole`) or not: the one place a pulled or
    /// pushed image becomes Downloaded. The hash is finished and compared with the digest the
    /// manifest promised (`expected`), and `confirm` may check that digest further; then the image
    /// is recorded as the update that Execute hands over (`pending`, whose version PkgVersion now
    /// reports) and Object 5 goes Downloaded. Otherwise the download fails.
    pub(super) fn staged(
        &mut self,
        now: Instant,
        whole: bool,
        expected: [u8; 32],
        pending: PendingUpdate,
        confirm: impl FnOnce(&Self, [u8; 32]) -> Result<(), UpdateResult>,
    ) {
        let digest: [u8; 32] = core::mem::replace(&mut self.hasher, Sha256::new())
            .finalize()
            .into();
        if !whole || digest != expected {
            return self.fail_download(now, UpdateResult::IntegrityFailure);
        }
        if let Err(result) = confirm(self, digest) {
            return self.fail_download(now, result);
        }
        self.fw.pkg_version = pending.version.clone();
        self.record.staged = Some(pending);
        let changed = self
            .fw
            .apply(now, FwEvent::DownloadComplete)
            .unwrap_or_default();
        self.fw_changed(changed);
    }

    /// Execute Update (/5/0/2): mark the staged image for a trial boot and ask for a reboot.
    // A frame of its own, not inlined into the request handler: each request's locals stay
    // off the stack of the others (stack budget).
    #[inline(never)]
    pub(super) fn execute_update(&mut self, now: Instant) -> Result<Code, Code> {
        if self.fw.state != State::Downloaded {
            return Err(refusal_code(Refusal::NotDownloaded));
        }
        let may_defer =
            self.cfg.defer_updates && self.fw.severity != 0 && self.fw.max_defer_period > 0;
        if may_defer && self.deferred_until.is_none() {
            let changed = self
                .fw
                .apply(now, FwEvent::UpdateDeferred)
                .map_err(refusal_code)?;
            self.deferred_until =
                Some(now + Duration::from_secs(u64::from(self.fw.max_defer_period)));
            self.fw_changed(changed);
            return Ok(Code::CHANGED);
        }
        self.deferred_until = None;
        self.start_update(now)
    }

    /// Marks the staged image for a trial boot and asks for a reboot.
    pub(super) fn start_update(&mut self, now: Instant) -> Result<Code, Code> {
        let changed = self
            .fw
            .apply(now, FwEvent::UpdateExecuted)
            .map_err(refusal_code)?;
        // The record must name the handed-over image before the bootloader can act on it.
        self.record.pending = self.record.staged.clone();
        self.record.state = self.fw.state;
        self.record.result = self.fw.result;
        self.record.pkg_version = self.fw.pkg_version.clone();
        let saved = self.platform.save(&self.record).is_ok();
        if !saved || self.platform.mark_for_test_boot().is_err() {
            self.record.pending = None;
            self.event(Event::PlatformError);
            let undo = self
                .fw
                .apply(now, FwEvent::UpdateFailed { package_kept: true });
            if let Ok(c) = undo {
                self.fw_changed(c);
            }
            return Ok(Code::CHANGED);
        }
        self.fw_changed(changed);
        self.event(Event::Reboot);
        Ok(Code::CHANGED)
    }

    /// Cancel (/5/0/10): refused with 4.05 once Updating.
    pub(super) fn cancel(&mut self, now: Instant) -> Result<Code, Code> {
        let changed = self.fw.apply(now, FwEvent::Cancel).map_err(refusal_code)?;
        self.drop_package();
        self.fw_changed(changed);
        Ok(Code::CHANGED)
    }
}

//! Update and its ends: Execute Update (/5/0/2) with the user's deferral, the handover to the A/B
//! boot, Cancel (/5/0/10), and a download that failed.

use lwm2m_core::coap::Code;
use lwm2m_core::object5::{Event as FwEvent, Refusal, State, UpdateResult};

use super::{Engine, Event, refusal_code};
use crate::platform::Platform;
use crate::time::{Duration, Instant};

impl<P: Platform> Engine<P> {
    pub(super) fn fail_download(&mut self, now: Instant, result: UpdateResult) {
        // PkgVersion names the package; a refused one is gone, so report the running firmware.
        self.fw.pkg_version = self.running_version.clone();
        self.download = None;
        self.reorder.clear();
        self.release = None;
        self.push = None;
        self.exchanges.cancel_blocks();
        self.record.download = None;
        self.record.staged = None;
        let changed = self.fw.download_failed(now, result);
        self.fw_changed(changed);
        self.save();
    }

    /// Execute Update (/5/0/2): mark the staged image for a trial boot and ask for a reboot.
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
        self.download = None;
        self.release = None;
        self.push = None;
        self.exchanges.cancel_blocks();
        self.record.download = None;
        self.record.staged = None;
        self.fw_changed(changed);
        Ok(Code::CHANGED)
    }
}

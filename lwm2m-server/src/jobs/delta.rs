//! The delta part of one device's run (issue 15): which release of the job's family it is sent
//! (`choose`, in `prepare`: the image it runs is known from its reported version, or from the
//! release it last installed with this server when that one has the version it reports), and the one fallback to the full image when a delta fails for it
//! (refused with Update Result 6 or 5, or any failure of the delta's attempt). The fallback is
//! not a failed attempt: the device's attempts start again, its job does not fail, and so a
//! campaign's failure threshold never sees it.

use super::JobDeviceStatus;
use super::JobStep;
use super::run::{DeviceRun, Stop};
use crate::delta::choice;
use crate::paths::{DEVICE_FIRMWARE_VERSION, FW_UPDATE_RESULT};
use lwm2m_core::object5::UpdateResult;

impl DeviceRun<'_> {
    /// Picks what this device is sent: a delta from the image it runs, else the full release
    /// (always after a fallback).
    pub(super) async fn choose(&mut self) -> Result<(), Stop> {
        let releases = self.jm.store.releases()?;
        let family = self.target.family_sha256();
        let has_deltas = releases
            .iter()
            .any(|r| r.is_delta() && r.family_sha256() == family);
        let full_only = self.rec.fallback.is_some();
        // The running image matters only when there is a delta to pick (no read otherwise).
        let running = if has_deltas && !full_only {
            let version = self.running_version().await;
            let installed = self.jm.store.last_release_installed(&self.rec.endpoint)?;
            choice::running_image_of(&releases, version.as_deref(), installed.as_deref())
        } else {
            None
        };
        let c = choice::choose(self.target, &releases, running.as_deref(), full_only);
        self.rec.sent_release_id = Some(c.release.id.clone());
        self.rec.bytes_saved = c.saves;
        self.release = c.release;
        Ok(())
    }

    /// The version the device runs: the one it reported (the device-info cache, filled at
    /// registration), else read now (/3/0/3, a few tries: on a lossy mesh one read can fail
    /// where a download would still succeed, and a lost read sends the full image, tens of
    /// times the patch); None when it does not say.
    async fn running_version(&mut self) -> Option<String> {
        const TRIES: usize = 3;
        let ep = self.rec.endpoint.clone();
        if let Ok(Some(info)) = self.jm.store.device_info(&ep)
            && let Some(v) = info.firmware_version
        {
            return Some(v);
        }
        for _ in 0..TRIES {
            let Ok(answer) = self.jm.dm.read(&ep, &DEVICE_FIRMWARE_VERSION, None).await else {
                continue;
            };
            let v = answer.values.first()?.value.as_str()?;
            return (!v.is_empty()).then(|| v.to_string());
        }
        None
    }

    /// Whether a delta's attempt that ended in a failure (typically its end not seen in time on
    /// a congested mesh) installed the release after all: this server served the patch's last
    /// block, the device reports Result 1 and the release's version. Then the job succeeds (in
    /// `confirm_installed`) instead of falling back: a full image of the same sequence number
    /// would be refused as already installed (Result 6) and the job would fail a device that
    /// runs the release.
    pub(super) async fn delta_landed(&mut self) -> bool {
        if !self.release.is_delta() || self.rec.fallback.is_some() || !self.rec.image_served {
            return false;
        }
        match self.read_int(FW_UPDATE_RESULT).await {
            Ok(Some(r)) if r == UpdateResult::Success as i64 => {}
            _ => return false,
        }
        self.confirm_installed().await.is_ok()
    }

    /// After `reason` ended a delta's attempt: starts over with the full image, once. False when
    /// there is nothing to fall back to (not a delta, fell back already, no full release).
    pub(super) fn fall_back(&mut self, reason: &str) -> bool {
        if !self.release.is_delta() || self.rec.fallback.is_some() {
            return false;
        }
        let Ok(releases) = self.jm.store.releases() else {
            return false;
        };
        let full = choice::choose(self.target, &releases, None, true);
        if full.release.is_delta() {
            return false;
        }
        if let Some(reg) = self.jm.registry.get(&self.rec.endpoint) {
            self.jm.downloads.forget(reg.address, &self.release.id);
        }
        self.rec.fallback = Some(reason.to_string());
        self.rec.attempts = 0;
        self.rec.error = None;
        self.rec.bytes_saved = None;
        self.rec.sent_release_id = Some(full.release.id.clone());
        self.release = full.release;
        let line = format!("fell back to full image: {reason}");
        self.set(
            JobDeviceStatus::Pending,
            JobStep::Start,
            "delta-fallback",
            Some(&line),
        );
        true
    }
}

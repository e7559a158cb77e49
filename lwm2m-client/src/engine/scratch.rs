//! The manifest's buffer, shared with a delta's applier: once a delta release's manifest is
//! accepted, its digest and the image's size and digest are in the release and the buffer is not
//! read again (a reboot fetches the manifest anew), so the ~470 bytes of patch state take its
//! place and the engine stays within its 8 KiB.

use super::limits::MANIFEST_CAP;
use crate::firmware::delta::DeltaRun;

// The point of the enum: the smaller state lives in the larger one's room.
#[allow(clippy::large_enum_variant)]
pub(super) enum Scratch {
    Manifest([u8; MANIFEST_CAP]),
    Delta(DeltaRun),
}

impl Scratch {
    pub(super) const fn new() -> Self {
        Scratch::Manifest([0; MANIFEST_CAP])
    }

    /// The manifest buffer; empty while a delta runs.
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Scratch::Manifest(b) => b,
            Scratch::Delta(_) => &[],
        }
    }

    /// The manifest buffer, ending a delta run if one was on.
    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        if matches!(self, Scratch::Delta(_)) {
            *self = Scratch::new();
        }
        match self {
            Scratch::Manifest(b) => b,
            Scratch::Delta(_) => &mut [],
        }
    }

    pub(super) fn delta_mut(&mut self) -> Option<&mut DeltaRun> {
        match self {
            Scratch::Delta(run) => Some(run),
            Scratch::Manifest(_) => None,
        }
    }

    pub(super) fn is_delta(&self) -> bool {
        matches!(self, Scratch::Delta(_))
    }

    /// Starts a delta run in the buffer's room. A frame of its own: the new state is built on
    /// the stack only here, not in the caller's frame (stack budget).
    #[inline(never)]
    pub(super) fn begin_delta(&mut self, old_size: u32, new_size: u32) {
        *self = Scratch::Delta(DeltaRun::new(old_size, new_size));
    }

    /// Gives the buffer back to manifests, dropping a delta run if one is on. In a frame of its
    /// own, as above.
    #[inline(never)]
    pub(super) fn clear_delta(&mut self) {
        if self.is_delta() {
            *self = Scratch::new();
        }
    }

    /// Ends the delta run, if any, giving the buffer back to manifests.
    pub(super) fn end_delta(&mut self) -> Option<DeltaRun> {
        match core::mem::replace(self, Scratch::new()) {
            Scratch::Delta(run) => Some(run),
            manifest @ Scratch::Manifest(_) => {
                *self = manifest;
                None
            }
        }
    }
}

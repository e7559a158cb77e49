//! A delta release applied in the engine: the patch is fed to delta-patch's [`Applier`] strictly
//! in patch order, the old image is read from the running (active) slot through the
//! [`Platform`], and the new image is programmed front to back into the staging slot.
//!
//! No reorder buffer: patch bytes ahead of the applier are dropped and asked again (the download
//! runs with a window of one block). A patch is a few per cent of the image, so the lost
//! pipelining costs little, and the device keeps no patch bytes besides the applier's own state.
//!
//! Flash rules as a full download's (see `engine/pull.rs`): the new image goes out in units of
//! 64 bytes at 64-byte offsets, each page is erased right before its first unit of this run and
//! each word is programmed once. A run always starts at patch byte 0 and staging byte 0, so a
//! page is erased again by every run that reaches it (resume = restart, see [`DeltaRun`]).

use core::cell::RefCell;

use delta_patch::{Applier, ApplyError, NewImage, OldImage};
use lwm2m_core::object5::UpdateResult;

use crate::platform::Platform;

/// The flash unit the new image is programmed in: the applier's largest write, so one program
/// per 64 bytes (a full download programs its 64-byte blocks the same way).
const UNIT: usize = 64;

/// One application of a patch, from its first byte. After a reboot the engine starts a new one
/// from patch byte 0 rather than persisting this state: the applier is ~450 bytes that would have
/// to go into the record (a flash write per checkpoint, and a record format change), while
/// restarting costs only the patch again, a few per cent of the image.
#[derive(Clone, Debug)]
pub struct DeltaRun {
    applier: Applier,
    /// Patch bytes fed so far.
    fed: u32,
    /// The old image's size (the precursor the manifest named).
    old_size: u32,
    out: Out,
}

/// New-image bytes on their way to the staging slot.
#[derive(Clone, Debug)]
struct Out {
    pending: [u8; UNIT],
    pending_len: usize,
    /// Bytes programmed into the staging slot.
    written: u32,
}

/// Why feeding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaError {
    /// The patch is malformed or does not produce the manifest's image.
    Patch(delta_patch::PatchError),
    /// The active slot could not be read.
    Old,
    /// The staging slot could not be erased or programmed.
    Flash,
}

impl DeltaError {
    /// The Object 5 result: a bad patch is an integrity failure (5), a flash failure is 2.
    pub fn result(self) -> UpdateResult {
        match self {
            DeltaError::Patch(_) => UpdateResult::IntegrityFailure,
            DeltaError::Old | DeltaError::Flash => UpdateResult::NotEnoughFlash,
        }
    }
}

impl DeltaRun {
    /// A run against a running image of `old_size` bytes making an image of `new_size` bytes.
    pub const fn new(old_size: u32, new_size: u32) -> Self {
        DeltaRun {
            applier: Applier::new(old_size, new_size),
            fed: 0,
            old_size,
            out: Out {
                pending: [0xFF; UNIT],
                pending_len: 0,
                written: 0,
            },
        }
    }

    /// Patch bytes fed so far: the next block must continue here.
    pub fn fed(&self) -> u32 {
        self.fed
    }

    /// Feeds `bytes` found at patch offset `offset`: only the part that continues at
    /// [`DeltaRun::fed`] is taken. Returns the bytes taken (0 for a block ahead or behind).
    pub fn feed<P: Platform>(
        &mut self,
        platform: &mut P,
        offset: u32,
        bytes: &[u8],
    ) -> Result<u32, DeltaError> {
        let Some(skip) = self.fed.checked_sub(offset) else {
            return Ok(0); // ahead of the applier: not kept
        };
        let Some(new) = bytes.get(skip as usize..) else {
            return Ok(0); // behind: already fed
        };
        if new.is_empty() {
            return Ok(0);
        }
        let flash = RefCell::new(platform);
        let mut old = Old {
            flash: &flash,
            size: self.old_size,
        };
        let mut sink = Sink {
            flash: &flash,
            out: &mut self.out,
        };
        self.applier
            .feed(new, &mut old, &mut sink)
            .map_err(|e| match e {
                ApplyError::Patch(p) => DeltaError::Patch(p),
                ApplyError::ReadOld(()) => DeltaError::Old,
                ApplyError::WriteNew(()) => DeltaError::Flash,
            })?;
        let n = new.len() as u32;
        self.fed = self.fed.saturating_add(n);
        Ok(n)
    }

    /// The patch ended: the last unit is programmed. Returns the new image's size.
    pub fn finish<P: Platform>(&mut self, platform: &mut P) -> Result<u32, DeltaError> {
        let size = self.applier.finish().map_err(DeltaError::Patch)?;
        let flash = RefCell::new(platform);
        Sink {
            flash: &flash,
            out: &mut self.out,
        }
        .flush()?;
        Ok(size)
    }
}

/// The running image, read through the platform.
struct Old<'a, 'p, P> {
    flash: &'a RefCell<&'p mut P>,
    size: u32,
}

impl<P: Platform> OldImage for Old<'_, '_, P> {
    type Error = ();
    fn size(&self) -> u32 {
        self.size
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ()> {
        let mut p = self.flash.try_borrow_mut().map_err(|_| ())?;
        p.active_read(offset, buf).then_some(()).ok_or(())
    }
}

/// The staging slot, programmed front to back in units of [`UNIT`].
struct Sink<'a, 'p, P> {
    flash: &'a RefCell<&'p mut P>,
    out: &'a mut Out,
}

impl<P: Platform> Sink<'_, '_, P> {
    /// Programs the pending bytes at the next offset, erasing the page first when it starts one.
    fn program(&mut self) -> Result<(), DeltaError> {
        let len = self.out.pending_len;
        let bytes = self.out.pending.get(..len).ok_or(DeltaError::Flash)?;
        if len == 0 {
            return Ok(());
        }
        let mut p = self.flash.try_borrow_mut().map_err(|_| DeltaError::Flash)?;
        let page = p.page_size().max(1);
        let at = self.out.written;
        if at.checked_rem(page) == Some(0) {
            let index = at.checked_div(page).ok_or(DeltaError::Flash)?;
            p.stage_erase(index).map_err(|_| DeltaError::Flash)?;
        }
        p.stage_write(at, bytes).map_err(|_| DeltaError::Flash)?;
        self.out.written = at.saturating_add(len as u32);
        self.out.pending = [0xFF; UNIT];
        self.out.pending_len = 0;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeltaError> {
        self.program()
    }
}

impl<P: Platform> NewImage for Sink<'_, '_, P> {
    type Error = ();
    fn write(&mut self, mut bytes: &[u8]) -> Result<(), ()> {
        while !bytes.is_empty() {
            let room = UNIT.saturating_sub(self.out.pending_len);
            let n = room.min(bytes.len());
            let (now, rest) = bytes.split_at_checked(n).ok_or(())?;
            let start = self.out.pending_len;
            self.out
                .pending
                .get_mut(start..start.saturating_add(n))
                .ok_or(())?
                .copy_from_slice(now);
            self.out.pending_len = start.saturating_add(n);
            bytes = rest;
            if self.out.pending_len == UNIT {
                self.program().map_err(|_| ())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::FirmwareRecord;
    use std::vec::Vec;

    /// A staging slot of 4 pages of 1 KiB in RAM and a running image.
    struct Mem {
        slot: Vec<u8>,
        active: Vec<u8>,
        erases: usize,
    }

    impl Platform for Mem {
        type Error = ();
        fn slot_size(&self) -> u32 {
            self.slot.len() as u32
        }
        fn page_size(&self) -> u32 {
            1024
        }
        fn stage_erase(&mut self, page: u32) -> Result<(), ()> {
            let at = page as usize * 1024;
            self.slot.get_mut(at..at + 1024).ok_or(())?.fill(0xFF);
            self.erases += 1;
            Ok(())
        }
        fn stage_write(&mut self, offset: u32, data: &[u8]) -> Result<(), ()> {
            let at = offset as usize;
            let dst = self.slot.get_mut(at..at + data.len()).ok_or(())?;
            assert!(dst.iter().all(|&b| b == 0xFF), "programmed twice at {at}");
            dst.copy_from_slice(data);
            Ok(())
        }
        fn stage_read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ()> {
            let at = offset as usize;
            buf.copy_from_slice(self.slot.get(at..at + buf.len()).ok_or(())?);
            Ok(())
        }
        fn mark_for_test_boot(&mut self) -> Result<(), ()> {
            Ok(())
        }
        fn save(&mut self, _: &FirmwareRecord) -> Result<(), ()> {
            Ok(())
        }
        fn active_read(&mut self, offset: u32, buf: &mut [u8]) -> bool {
            let at = offset as usize;
            match self.active.get(at..at + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    fn pair() -> (Vec<u8>, Vec<u8>) {
        let old: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = old.clone();
        new[100] ^= 1;
        new.extend_from_slice(&[9; 333]);
        (old, new)
    }

    #[test]
    fn blocks_ahead_are_dropped_and_the_image_comes_out_in_order() {
        let (old, new) = pair();
        let patch = delta_patch::create_patch(&old, &new, delta_patch::Compression::None);
        let mut p = Mem {
            slot: std::vec![0u8; 4096],
            active: old.clone(),
            erases: 0,
        };
        let mut run = DeltaRun::new(old.len() as u32, new.len() as u32);
        let blocks: Vec<&[u8]> = patch.chunks(32).collect();
        assert!(blocks.len() > 2);
        // Block 1 before block 0: not taken.
        assert_eq!(run.feed(&mut p, 32, blocks[1]), Ok(0));
        assert_eq!(run.fed(), 0);
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(run.feed(&mut p, 32 * i as u32, b), Ok(b.len() as u32));
            // The same block again (a duplicate answer): nothing new.
            assert_eq!(run.feed(&mut p, 32 * i as u32, b), Ok(0));
        }
        assert_eq!(run.finish(&mut p), Ok(new.len() as u32));
        assert_eq!(&p.slot[..new.len()], &new[..]);
        assert_eq!(p.erases, new.len().div_ceil(1024), "each page erased once");
    }

    #[test]
    fn a_bad_patch_is_a_typed_error_and_result_5() {
        let (old, new) = pair();
        let mut patch = delta_patch::create_patch(&old, &new, delta_patch::Compression::None);
        patch[0] = 0x7F; // an unknown patch type
        let mut p = Mem {
            slot: std::vec![0u8; 4096],
            active: old.clone(),
            erases: 0,
        };
        let mut run = DeltaRun::new(old.len() as u32, new.len() as u32);
        let e = run.feed(&mut p, 0, &patch).unwrap_err();
        assert!(matches!(e, DeltaError::Patch(_)), "{e:?}");
        assert_eq!(e.result(), UpdateResult::IntegrityFailure);
        // An old image that cannot be read is a platform failure.
        let patch = delta_patch::create_patch(&old, &new, delta_patch::Compression::None);
        p.active.clear();
        let mut run = DeltaRun::new(old.len() as u32, new.len() as u32);
        assert_eq!(run.feed(&mut p, 0, &patch), Err(DeltaError::Old));
    }
}

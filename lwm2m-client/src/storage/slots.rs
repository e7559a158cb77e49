//! The A/B hand-over, done by embassy-boot (not a hand-written swap):
//!
//! 1. [`Staging`] writes the downloaded image into DFU, erasing and programming the partition
//!    directly, in any order (the downloader tracks which pages it erased).
//! 2. [`mark_for_test_boot`] sets the swap magic (`mark_updated`).
//! 3. At reset, [`boot`] runs what the bootloader runs (`prepare_boot`): it swaps ACTIVE and DFU page
//!    by page ([`BootOutcome::Swapped`]: a trial boot), or, if the previous trial was never
//!    confirmed, swaps them back ([`BootOutcome::Reverted`]). Both resume after a power cut.
//! 4. The new image self-tests and calls [`confirm`] (`mark_booted`); without it the next reset
//!    reverts.
//!
//! Trap avoided: embassy-boot's `FirmwareUpdater::write_firmware` erases a sector whenever a
//! write lands in another sector than the previous one, so writing page 0, page 1, then page 0
//! again would wipe page 0. Blocks that arrive out of order would do exactly that, so [`Staging`]
//! does not write through it: erasing is the caller's, page by page, once per page per download.
//!
//! Ground truth after a reset is the ACTIVE image itself ([`read_active`]): the persisted
//! `pending` record says which version was staged, and comparing it with the running image's
//! header settles every case, including a cut that leaves no [`BootOutcome`] to report.

use core::fmt;

use embassy_boot::{
    AlignedBuffer, BlockingFirmwareState, BootError, BootLoader, BootLoaderConfig,
    FirmwareUpdaterError, State,
};
use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

use super::layout::{BOOT_CHUNK, DeviceFlash, MAX_WORD, Partition};

/// Erased flash reads as this (embassy-boot without `flash-erase-zero`).
const ERASED: u8 = 0xFF;

/// A failed slot operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    /// The flash failed (a power cut shows up as `Other`).
    Flash(NorFlashErrorKind),
    /// An update is marked or on trial (boot state Swap): confirm or reset first. embassy-boot
    /// refuses to stage over it, because that could corrupt the image a revert would restore.
    TrialPending,
    /// The range leaves the slot (an image can use ACTIVE's size, not DFU's extra page).
    OutsideSlot,
    /// The offset is not a multiple of the flash word.
    Misaligned,
    /// The bootloader found an invalid magic.
    BadMagic,
    /// An embassy-boot error this crate never provokes (signature verification is off).
    Updater,
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::Flash(kind) => write!(f, "slot flash: {kind}"),
            SlotError::TrialPending => f.write_str("an update is marked or on trial"),
            SlotError::OutsideSlot => f.write_str("outside the slot"),
            SlotError::Misaligned => f.write_str("offset not aligned to the flash word"),
            SlotError::BadMagic => f.write_str("bad boot magic"),
            SlotError::Updater => f.write_str("unexpected updater error"),
        }
    }
}

impl From<FirmwareUpdaterError> for SlotError {
    fn from(e: FirmwareUpdaterError) -> Self {
        match e {
            FirmwareUpdaterError::Flash(kind) => SlotError::Flash(kind),
            FirmwareUpdaterError::BadState => SlotError::TrialPending,
            FirmwareUpdaterError::Signature(_) => SlotError::Updater,
        }
    }
}

impl From<BootError> for SlotError {
    fn from(e: BootError) -> Self {
        match e {
            BootError::Flash(kind) => SlotError::Flash(kind),
            BootError::BadMagic => SlotError::BadMagic,
        }
    }
}

fn flash_err<E: NorFlashError>(e: E) -> SlotError {
    SlotError::Flash(e.kind())
}

/// What the bootloader did at this reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootOutcome {
    /// Nothing to do: the confirmed image boots.
    Normal,
    /// The staged image was swapped in and boots on trial: [`confirm`] it or the next reset
    /// reverts.
    Swapped,
    /// The previous trial was not confirmed: the old image is back in ACTIVE.
    Reverted,
}

/// The write-size scratch word embassy-boot's updater keeps for the STATE magic. A [`Staging`]
/// borrows it for its whole life, so the caller owns it (no heap).
pub struct StateWord(AlignedBuffer<MAX_WORD>);

impl Default for StateWord {
    fn default() -> Self {
        Self::new()
    }
}

impl StateWord {
    /// A fresh scratch word.
    pub const fn new() -> Self {
        Self(AlignedBuffer([0; MAX_WORD]))
    }

    /// Exactly one word of `F`, as embassy-boot requires.
    fn word<F: NorFlash>(&mut self) -> Result<&mut [u8], SlotError> {
        // `Layout::check` bounds WRITE_SIZE by MAX_WORD, so this never fails on a DeviceFlash.
        self.0
            .0
            .get_mut(..F::WRITE_SIZE)
            .ok_or(SlotError::Misaligned)
    }
}

/// Writes a downloaded image into DFU, the NOR way: [`Staging::erase_page`] sets a page to 0xFF,
/// [`Staging::write`] programs bytes into erased ones. Pages may be erased and written in any
/// order; which page is erased, and that no word is programmed twice, is the caller's to track.
pub struct Staging<'f, F: NorFlash> {
    flash: &'f DeviceFlash<F>,
    dfu: Partition<'f, F>,
    slot_size: u32,
}

impl<'f, F: NorFlash> Staging<'f, F> {
    /// A staging writer over `flash`'s DFU partition.
    pub fn new(flash: &'f DeviceFlash<F>) -> Self {
        Self {
            flash,
            dfu: flash.dfu(),
            slot_size: flash.layout().slot_size(),
        }
    }

    /// The erase unit.
    pub fn page_size() -> u32 {
        u32::try_from(F::ERASE_SIZE).unwrap_or(u32::MAX)
    }

    /// Erases page `page` of the slot. Refused while an update is marked or on trial: DFU then
    /// holds the image a revert restores (embassy-boot's updater refuses the same).
    pub fn erase_page(&mut self, page: u32) -> Result<(), SlotError> {
        let size = Self::page_size();
        let from = page.checked_mul(size).ok_or(SlotError::OutsideSlot)?;
        let to = from.checked_add(size).ok_or(SlotError::OutsideSlot)?;
        if to > self.slot_size {
            return Err(SlotError::OutsideSlot);
        }
        if is_trial(self.flash)? {
            return Err(SlotError::TrialPending);
        }
        self.dfu.erase(from, to).map_err(flash_err)
    }

    /// Programs `bytes` at image offset `offset` (word-aligned) into erased flash. A length that
    /// is not a whole number of words is allowed for the image's last chunk only: its tail word
    /// is padded with 0xFF, the erased value, which programs nothing.
    pub fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SlotError> {
        check_in_slot(offset, bytes.len(), self.slot_size)?;
        if (offset as usize).checked_rem(F::WRITE_SIZE) != Some(0) {
            return Err(SlotError::Misaligned);
        }
        let partial = bytes.len().checked_rem(F::WRITE_SIZE).unwrap_or(0);
        let whole = bytes.len().saturating_sub(partial);
        let (body, tail) = bytes.split_at_checked(whole).ok_or(SlotError::Misaligned)?;
        if !body.is_empty() {
            self.dfu.write(offset, body).map_err(flash_err)?;
        }
        if !tail.is_empty() {
            let mut word = [ERASED; MAX_WORD];
            word.get_mut(..tail.len())
                .ok_or(SlotError::Misaligned)?
                .copy_from_slice(tail);
            let word = word.get(..F::WRITE_SIZE).ok_or(SlotError::Misaligned)?;
            let at = offset.saturating_add(whole as u32);
            // Stays inside DFU: the slot is a whole number of words, and DFU one page larger.
            self.dfu.write(at, word).map_err(flash_err)?;
        }
        Ok(())
    }

    /// Reads back from DFU (to hash the image, or check that a unit is blank).
    pub fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), SlotError> {
        check_in_slot(offset, buf.len(), self.slot_size)?;
        self.dfu.read(offset, buf).map_err(flash_err)
    }
}

fn check_in_slot(offset: u32, len: usize, slot_size: u32) -> Result<(), SlotError> {
    let end = u32::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len));
    if end.is_none_or(|end| end > slot_size) {
        Err(SlotError::OutsideSlot)
    } else {
        Ok(())
    }
}

fn with_state<F: NorFlash, R>(
    flash: &DeviceFlash<F>,
    f: impl FnOnce(&mut BlockingFirmwareState<'_, Partition<'_, F>>) -> Result<R, FirmwareUpdaterError>,
) -> Result<R, SlotError> {
    let mut word = StateWord::new();
    with_state_word(flash, &mut word, f)
}

fn with_state_word<F: NorFlash, R>(
    flash: &DeviceFlash<F>,
    word: &mut StateWord,
    f: impl FnOnce(&mut BlockingFirmwareState<'_, Partition<'_, F>>) -> Result<R, FirmwareUpdaterError>,
) -> Result<R, SlotError> {
    let mut state = BlockingFirmwareState::new(flash.state(), word.word::<F>()?);
    Ok(f(&mut state)?)
}

/// Marks the staged image for a trial boot at the next reset (embassy-boot `mark_updated`).
/// Refused while another update is marked or on trial.
pub fn mark_for_test_boot<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<(), SlotError> {
    mark_for_test_boot_with(flash, &mut StateWord::new())
}

/// [`mark_for_test_boot`] with the caller's scratch word (a board keeps one in a static).
pub fn mark_for_test_boot_with<F: NorFlash>(
    flash: &DeviceFlash<F>,
    word: &mut StateWord,
) -> Result<(), SlotError> {
    with_state_word(flash, word, |state| {
        if state.get_state()? == State::Swap {
            return Err(FirmwareUpdaterError::BadState);
        }
        state.mark_updated()
    })
}

/// Confirms the running image (embassy-boot `mark_booted`): no revert at the next reset.
pub fn confirm<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<(), SlotError> {
    with_state(flash, |state| state.mark_booted())
}

/// True while the running image is on trial or an update is marked (boot state Swap): what the
/// application checks after reset to know whether it must self-test and [`confirm`].
pub fn is_trial<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<bool, SlotError> {
    with_state(flash, |state| Ok(state.get_state()? == State::Swap))
}

/// Runs what the bootloader runs at reset (`prepare_boot`) on this flash.
pub fn boot<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<BootOutcome, SlotError> {
    let mut buf = AlignedBuffer([0; BOOT_CHUNK]);
    let interrupted = confirm_was_interrupted(flash)?;
    let mut loader = BootLoader::new(BootLoaderConfig {
        active: flash.active(),
        dfu: flash.dfu(),
        state: flash.state(),
    });
    let before = loader.read_state(&mut buf.0)?;
    loader.prepare_boot(&mut buf.0)?;
    let after = loader.read_state(&mut buf.0)?;
    Ok(match (before, after) {
        // See `confirm_was_interrupted`: prepare_boot "reverts" without copying a page.
        (State::Swap, _) if interrupted => BootOutcome::Normal,
        (State::Swap, State::Swap) => BootOutcome::Swapped,
        (State::Swap, State::Revert) => BootOutcome::Reverted,
        _ => BootOutcome::Normal,
    })
}

/// A [`confirm`] cut after it invalidated the swap progress but before it erased STATE leaves the
/// Swap magic with invalid progress. `prepare_boot` then runs a revert whose every page counts as
/// done (so ACTIVE keeps the confirmed image) and writes the Revert magic, which would be
/// misreported as [`BootOutcome::Reverted`]. A real revert that got as far as invalidating has
/// written all its progress words, so the first revert word tells the two apart.
///
/// Reads embassy-boot 0.7's STATE format: word 0 magic, word 1 progress validity, words
/// 2..2+2N swap progress, 2+2N..2+4N revert progress (N = ACTIVE pages).
fn confirm_was_interrupted<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<bool, SlotError> {
    let mut state = flash.state();
    let mut buf = [0; MAX_WORD];
    let word = buf.get_mut(..F::WRITE_SIZE).ok_or(SlotError::Misaligned)?;
    let at = |index: usize| {
        u32::try_from(index.saturating_mul(F::WRITE_SIZE)).map_err(|_| SlotError::OutsideSlot)
    };

    state.read(at(0)?, word).map_err(flash_err)?;
    if State::from(&*word) != State::Swap {
        return Ok(false);
    }
    state.read(at(1)?, word).map_err(flash_err)?;
    let progress_invalid = word.iter().any(|&b| b != ERASED);
    let pages = (flash.layout().slot_size() as usize)
        .checked_div(F::ERASE_SIZE)
        .unwrap_or(0);
    state
        .read(at(pages.saturating_mul(2).saturating_add(2))?, word)
        .map_err(flash_err)?;
    let revert_done = word.iter().all(|&b| b != ERASED);
    Ok(progress_invalid && !revert_done)
}

/// Reads the running image (ACTIVE) at `offset`: the host reads its header to learn the version
/// and the self-test outcome it was built with.
pub fn read_active<F: NorFlash>(
    flash: &DeviceFlash<F>,
    offset: u32,
    buf: &mut [u8],
) -> Result<(), SlotError> {
    check_in_slot(offset, buf.len(), flash.layout().slot_size())?;
    flash.active().read(offset, buf).map_err(flash_err)
}

/// Reads the staging slot (DFU) at `offset`, without an updater.
pub fn read_dfu<F: NorFlash>(
    flash: &DeviceFlash<F>,
    offset: u32,
    buf: &mut [u8],
) -> Result<(), SlotError> {
    check_in_slot(offset, buf.len(), flash.layout().slot_size())?;
    flash.dfu().read(offset, buf).map_err(flash_err)
}

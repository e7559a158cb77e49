//! The engine's [`Platform`] on a real NOR flash: the staging slot and the A/B handover of
//! embassy-boot (`storage::slots`), and the Object 5 record in sequential-storage
//! (`storage::persist`). The board, the host binary and the QEMU test all use it.

use embedded_storage::nor_flash::NorFlash;

use crate::platform::{FirmwareRecord, Platform};
use crate::storage::layout::DeviceFlash;
use crate::storage::persist::{self, PersistError};
use crate::storage::slots::{self, SlotError, Staging, StateWord};

/// A flash failure, from the slots or the persisted record.
#[derive(Debug)]
pub enum FlashPlatformError {
    Slot(SlotError),
    Persist(PersistError),
}

/// The platform for one boot: the staging writer lives as long as the boot, because embassy-boot's
/// updater erases a page the first time it touches it and must see the download go forward.
pub struct FlashPlatform<'f, F: NorFlash> {
    flash: &'f DeviceFlash<F>,
    staging: Staging<'f, F>,
}

impl<'f, F: NorFlash> FlashPlatform<'f, F> {
    pub fn new(flash: &'f DeviceFlash<F>, word: &'f mut StateWord) -> Result<Self, SlotError> {
        Ok(FlashPlatform {
            flash,
            staging: Staging::new(flash, word)?,
        })
    }

    /// The flash, for the driver (reading the running image, say).
    pub fn flash(&self) -> &'f DeviceFlash<F> {
        self.flash
    }
}

impl<F: NorFlash> Platform for FlashPlatform<'_, F> {
    type Error = FlashPlatformError;

    fn slot_size(&self) -> u32 {
        self.flash.layout().slot_size()
    }

    fn stage_write(&mut self, offset: u32, data: &[u8]) -> Result<(), Self::Error> {
        self.staging
            .write(offset, data)
            .map_err(FlashPlatformError::Slot)
    }

    fn stage_read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.staging
            .read(offset, buf)
            .map_err(FlashPlatformError::Slot)
    }

    fn resume_offset(&self, bytes_written: u32) -> u32 {
        slots::resume_offset::<F>(bytes_written)
    }

    fn mark_for_test_boot(&mut self) -> Result<(), Self::Error> {
        slots::mark_for_test_boot(self.flash).map_err(FlashPlatformError::Slot)
    }

    fn save(&mut self, record: &FirmwareRecord) -> Result<(), Self::Error> {
        persist::store(self.flash, record).map_err(FlashPlatformError::Persist)
    }
}

//! The engine's [`Platform`] on a real NOR flash: the staging slot (DFU, erased and programmed
//! directly) and the A/B handover of embassy-boot (`storage::slots`), and the Object 5 record in
//! sequential-storage (`storage::persist`). The board, the host binary and the QEMU test all use
//! it.

use embedded_storage::nor_flash::NorFlash;

use sha2::{Digest, Sha256};

use crate::image::{HEADER_LEN, ImageHeader};
use crate::platform::{ActiveImage, FirmwareRecord, Platform};
use crate::storage::layout::DeviceFlash;
use crate::storage::persist::{self, PersistError};
use crate::storage::slots::{self, SlotError, Staging, StateWord};

/// A flash failure, from the slots or the persisted record.
#[derive(Debug)]
pub enum FlashPlatformError {
    Slot(SlotError),
    Persist(PersistError),
}

/// The platform for one boot.
pub struct FlashPlatform<'f, F: NorFlash> {
    flash: &'f DeviceFlash<F>,
    staging: Staging<'f, F>,
    /// embassy-boot's STATE scratch word, for marking the trial boot.
    word: &'f mut StateWord,
}

impl<'f, F: NorFlash> FlashPlatform<'f, F> {
    /// The platform over `flash`; `word` is the scratch word embassy-boot needs to write STATE.
    pub fn new(flash: &'f DeviceFlash<F>, word: &'f mut StateWord) -> Result<Self, SlotError> {
        Ok(FlashPlatform {
            flash,
            staging: Staging::new(flash),
            word,
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

    fn page_size(&self) -> u32 {
        Staging::<F>::page_size()
    }

    fn stage_erase(&mut self, page: u32) -> Result<(), Self::Error> {
        self.staging
            .erase_page(page)
            .map_err(FlashPlatformError::Slot)
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

    fn mark_for_test_boot(&mut self) -> Result<(), Self::Error> {
        slots::mark_for_test_boot_with(self.flash, self.word).map_err(FlashPlatformError::Slot)
    }

    fn save(&mut self, record: &FirmwareRecord) -> Result<(), Self::Error> {
        persist::store(self.flash, record).map_err(FlashPlatformError::Persist)
    }

    /// Hashed from ACTIVE when a delta's manifest is checked (the image header gives its
    /// length): one read of the running image per delta release, no stored digest to keep true.
    fn active_image(&mut self) -> Option<ActiveImage> {
        let mut head = [0u8; HEADER_LEN];
        slots::read_active(self.flash, 0, &mut head).ok()?;
        let size = ImageHeader::parse(&head)?.len;
        if size > self.flash.layout().slot_size() {
            return None;
        }
        let mut hasher = Sha256::new();
        let mut buf = [0u8; 256];
        let mut at = 0u32;
        while at < size {
            let n = (size.saturating_sub(at) as usize).min(buf.len());
            let chunk = buf.get_mut(..n)?;
            slots::read_active(self.flash, at, chunk).ok()?;
            hasher.update(&*chunk);
            at = at.saturating_add(n as u32);
        }
        Some(ActiveImage {
            digest: hasher.finalize().into(),
            size,
        })
    }

    fn active_read(&mut self, offset: u32, buf: &mut [u8]) -> bool {
        slots::read_active(self.flash, offset, buf).is_ok()
    }
}

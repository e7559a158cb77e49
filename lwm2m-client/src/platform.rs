//! What the engine needs from the device it runs on: the staging slot, the A/B handover and the
//! persisted record of Object 5. The board implements it over its NOR flash with embassy-boot and
//! sequential-storage; the host binary over a file; tests over RAM.

use heapless::String;

use crate::engine::limits::MAX_PKG_LEN;
pub use crate::firmware::suit::ActiveImage;

/// Object 5 as it must survive a reboot or a power cut (one type for the engine and the store).
pub use crate::storage::record::{
    Download as DownloadRecord, FirmwareState as FirmwareRecord, Pending as PendingUpdate,
};

/// The device.
pub trait Platform {
    type Error: core::fmt::Debug;

    /// Size of the staging slot in bytes.
    fn slot_size(&self) -> u32;
    /// The staging slot's erase unit in bytes (a power of two, at least 1 KiB).
    fn page_size(&self) -> u32;
    /// Erases page `page` of the staging slot: every byte reads 0xFF after.
    fn stage_erase(&mut self, page: u32) -> Result<(), Self::Error>;
    /// Programs image bytes at `offset` (word-aligned; a download's are multiples of 16) of the
    /// staging slot into erased flash, without erasing: the engine erases each page once per download before its first
    /// write and never programs a word twice. A length that is not a whole number of flash words
    /// only ends the image (pad the last word with 0xFF).
    fn stage_write(&mut self, offset: u32, data: &[u8]) -> Result<(), Self::Error>;
    /// Reads staged bytes (to hash the complete image, or to find a unit blank on resume).
    fn stage_read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Marks the staged image for a trial boot (the next reset swaps it in).
    fn mark_for_test_boot(&mut self) -> Result<(), Self::Error>;
    /// Persists the Object 5 record.
    fn save(&mut self, record: &FirmwareRecord) -> Result<(), Self::Error>;
    /// The running image's SHA-256 digest and size, a delta release's precursor. The platform
    /// keeps them (stored with the image when it was installed, or hashed once at boot); the
    /// engine does not hash the active slot itself, which would cost a full read per manifest.
    /// `None` (the default): the device refuses delta releases with Result 6.
    fn active_image(&mut self) -> Option<ActiveImage> {
        None
    }
    /// Reads the running image at `offset` (a delta patch's old image); false if it cannot.
    fn active_read(&mut self, offset: u32, buf: &mut [u8]) -> bool {
        let _ = (offset, buf);
        false
    }
}

/// How the running image came up, as the driver found out before starting the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootOutcome {
    /// An ordinary start.
    Normal,
    /// A staged image was swapped in, passed its self-test and confirmed itself.
    Confirmed,
    /// A staged image did not confirm (failed self-test, watchdog, power cut) and the bootloader
    /// put the old one back.
    RolledBack,
}

/// What the engine starts from.
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub record: Option<FirmwareRecord>,
    pub outcome: BootOutcome,
    /// The version of the running image (/3/0/3).
    pub running_version: String<MAX_PKG_LEN>,
}

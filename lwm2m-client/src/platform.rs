//! What the engine needs from the device it runs on: the staging slot, the A/B handover and the
//! persisted record of Object 5. The board implements it over its NOR flash with embassy-boot and
//! sequential-storage; the host binary over a file; tests over RAM.

use heapless::String;

use crate::engine::limits::MAX_PKG_LEN;

/// Object 5 as it must survive a reboot or a power cut (one type for the engine and the store).
pub use crate::storage::record::{
    Download as DownloadRecord, FirmwareState as FirmwareRecord, Pending as PendingUpdate,
};

/// The device.
pub trait Platform {
    type Error: core::fmt::Debug;

    /// Size of the staging slot in bytes.
    fn slot_size(&self) -> u32;
    /// Writes image bytes at `offset` of the staging slot (erasing as needed).
    fn stage_write(&mut self, offset: u32, data: &[u8]) -> Result<(), Self::Error>;
    /// Reads back staged bytes (to restore the hash of a resumed download).
    fn stage_read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Where a download resumed after a reboot must start again: a staging writer may wipe the
    /// part of an erase page written before the reboot (embassy-boot erases a page the first time
    /// it touches it), so the safe point is the start of the page holding `bytes_written`.
    fn resume_offset(&self, bytes_written: u32) -> u32;
    /// Marks the staged image for a trial boot (the next reset swaps it in).
    fn mark_for_test_boot(&mut self) -> Result<(), Self::Error>;
    /// Persists the Object 5 record.
    fn save(&mut self, record: &FirmwareRecord) -> Result<(), Self::Error>;
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

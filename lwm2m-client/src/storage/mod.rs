//! Storage: the device's one NOR flash, carved into the A/B slots that embassy-boot swaps and a
//! settings area where sequential-storage keeps the persisted firmware-update state.
//!
//! - [`flash`]: [`RamFlash`](flash::RamFlash), a NOR flash in RAM with an injectable power cut
//!   (tests, QEMU); [`file_flash`] (feature `std`) is the same flash in a file (the host device).
//! - [`layout`]: where each partition lives ([`Layout`](layout::Layout)) and the shared handle the
//!   partitions are cut from ([`DeviceFlash`](layout::DeviceFlash)).
//! - [`slots`]: staging a download into DFU, marking it for a trial boot, confirming it, and the
//!   bootloader's reset-time swap or revert.
//! - [`persist`] + [`record`]: the persisted [`FirmwareState`](record::FirmwareState) record.
//!
//! Nothing here allocates or panics: every failure is a typed error (the crate's strict lint set
//! in `lib.rs` checks it).

#[cfg(feature = "std")]
pub mod file_flash;
pub mod flash;
pub mod layout;
pub mod persist;
pub mod record;
pub mod slots;

//! Support for otafleet's QEMU (mps2-an386, Cortex-M4F) test firmware: stack measurement by
//! painting, a semihosting exit, and the rig of the engine's update tests. On the host this crate
//! is empty.
#![no_std]

#[cfg(target_os = "none")]
pub mod engine_rig;
#[cfg(target_os = "none")]
pub mod stack;

//! Support for otafleet's QEMU (mps2-an386, Cortex-M4F) test firmware: stack measurement by
//! painting, and a semihosting exit. On the host this crate is empty.
#![no_std]

#[cfg(target_os = "none")]
pub mod stack;

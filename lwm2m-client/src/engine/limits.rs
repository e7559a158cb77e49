//! The engine's size limits.

/// Largest response the device sends (a read of Object 5 with a 255-character URI).
pub const MAX_RESPONSE: usize = 400;
/// Largest SUIT envelope (without integrated payload) the device accepts.
pub const MANIFEST_CAP: usize = 1024;
pub const OBSERVERS: usize = 4;
/// Persist download progress at least every this many bytes (one erase page).
pub const PERSIST_EVERY: u32 = 4096;

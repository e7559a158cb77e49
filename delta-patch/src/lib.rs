//! delta-patch: delta firmware updates in the format of detools' *sequential* patches
//! (<https://github.com/eerimoq/detools>), so that patches cross both ways with the Python
//! `detools` package.
//!
//! ```text
//! host (feature `std`):   old, new ──bsdiff──▶ chunks ──framing──▶ heatshrink ──▶ patch   (create.rs)
//! device (no_std):        patch blocks ──▶ Applier ──▶ new image, written in order      (apply.rs)
//!                                            ▲ reads the old image at random offsets
//! ```
//!
//! Wire format (detools `create.py` / `apply.py`): one header byte `p1 u3 type u4 compression`,
//! the new image's size as a [`varint`], then the (compressed) body: a data-format patch size
//! (always 0 here), then chunks of `diff size, diff bytes, extra size, extra bytes, adjustment`.
//! A diff byte is added to the old image's byte at the current old position; extra bytes are
//! copied; the adjustment moves the old position. The device needs no heap: the heatshrink window
//! (256 B at window size 2^8), a 64 B write buffer and a few words of state.
//!
//! A crate of its own rather than part of suit-manifest: the applier knows nothing of SUIT (the
//! manifest only says "this payload is a detools patch"), the device engine feeds it directly, and
//! the host side brings in `bsdiff`, which neither the verifier nor the device should compile.
#![cfg_attr(not(feature = "std"), no_std)]
// The device crates' one strict set (as lwm2m-core's): no unwrap, panic, out-of-bounds index or
// unchecked arithmetic outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod apply;
// Host side: tools, not the device path, so the strict set above does not apply.
#[cfg(feature = "std")]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::expect_used
)]
pub mod create;
pub mod error;
pub mod header;
pub mod heatshrink;
#[cfg(feature = "std")]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub mod heatshrink_encode;
pub mod varint;

pub use apply::{Applier, NewImage, OldImage};
#[cfg(feature = "std")]
pub use create::create_patch;
pub use error::{ApplyError, PatchError};
pub use header::Compression;

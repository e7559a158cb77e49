//! lwm2m-client: the device side of otafleet. A sans-IO LwM2M engine for a Cortex-M4 Thread board
//! (no_std, no heap) that registers with an LwM2M server, implements Object 5 (Firmware Update),
//! pulls a signed SUIT release block by block into its staging slot and hands over to an A/B boot.
//!
//! ```text
//! datagrams, time ──▶ Engine ──▶ datagrams, next deadline, events      (engine/, sans-IO)
//!                       │ Object 5 (firmware/), objects 0/1/3 (objects.rs)
//!                       ▼
//!                   Platform: staging slot, A/B handover, persisted record   (platform.rs)
//! ```
//! Drivers: `host` (feature `std`: tokio UDP, the `lwm2m-client` binary; `dtls` wraps its socket
//! for a `coaps://` server); the board's embassy-net driver lives in boards/.
#![cfg_attr(not(feature = "std"), no_std)]
// The device crates' one strict set (as lwm2m-core's): no unwrap, panic, out-of-bounds index or
// unchecked arithmetic outside tests. `clippy.toml` exempts the saturating `time` types.
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

#[cfg(feature = "std")]
pub mod dtls;
pub mod engine;
pub mod exchange;
pub mod firmware;
pub mod flash_platform;
#[cfg(feature = "std")]
pub mod host;
pub mod image;
mod ip_literal;
pub mod objects;
#[cfg(feature = "oscore")]
pub mod oscore;
pub mod platform;
pub mod power_on;
pub mod rto;
pub mod storage;
#[cfg(feature = "std")]
pub mod swarm;
pub mod time;
pub mod uri;

//! lwm2m-core: the protocol facts that the LwM2M server and the device share, in one `no_std`,
//! allocation-free crate that never panics on any input.
//!
//! Both ends read the same definitions, so a path, an Object 5 state, a block number or a TLV byte
//! means the same thing on the server and on the device:
//!
//! - [`path`]: LwM2M paths such as `/5/0/3`.
//! - [`object3`]: Device resource ids (model, firmware version).
//! - [`object5`]: Firmware Update resource ids, State and Update Result, and the legal transitions.
//! - [`block`]: RFC 7959 Block1/Block2 option values.
//! - [`content`]: content formats (TLV, SenML-CBOR, plain text, opaque, CoRE Link Format).
//! - [`registration`]: the Register and Update query parameters.
//! - [`coap`]: CoAP messages (RFC 7252) for the device, which cannot use coap-lite without a heap;
//!   the option numbers ([`coap::option`]) and transmission parameters ([`coap::params`]) for both.
//! - [`glob`]: the endpoint-name globs of campaign targets and the swarm.
//! - `oscore` (feature `oscore`): RFC 8613's key derivation, nonce, AAD, AES-CCM in place, option
//!   value and replay window, for the server and the device.
//!
//! Decoders borrow from their input (zero copy) and encoders write into caller-provided buffers;
//! every failure is a typed error.
#![no_std]
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
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod ascii;
pub mod block;
pub mod coap;
pub mod content;
pub mod glob;
pub mod object3;
pub mod object5;
#[cfg(feature = "oscore")]
pub mod oscore;
pub mod path;
pub mod registration;
mod slice_writer;

pub use path::{Path, PathError};
pub use slice_writer::SliceWriter;

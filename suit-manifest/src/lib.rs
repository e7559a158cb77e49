//! suit-manifest: SUIT firmware manifests (draft-ietf-suit-manifest-34 numbering) for otafleet.
//!
//! On the device (`no_std`, no allocation, no panics): take an envelope apart ([`Envelope`]),
//! check its COSE_Sign1 signature (ES256 or ESP256) and manifest digest against a [`TrustAnchor`]
//! ([`Envelope::authenticate`]), and only then decode the [`Manifest`] and run its command
//! sequences with the [`Interpreter`] against the device's [`Device`] implementation.
//!
//! On the host (feature `std`): build and sign envelopes deterministically ([`builder`]), read and
//! write PEM keys; feature `cli` adds the `suit` binary (keygen, create, verify, show).
//!
//! ```text
//! bytes ──Envelope::decode──▶ Envelope ──authenticate(anchors)──▶ Manifest ──Interpreter──▶ Device
//!                             (structure only)   (digest + signature)        (commands)
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(feature = "std")]
extern crate std;

mod cbor;
pub mod cose;
pub mod envelope;
pub mod error;
mod es256;
pub mod inspect;
pub mod interpreter;
pub mod keys;
pub mod manifest;
pub mod params;
pub mod text;

#[cfg(feature = "std")]
pub mod builder;
#[cfg(feature = "std")]
pub mod es256_cases;
#[cfg(feature = "std")]
pub mod keyfile;

pub use cose::{Algorithm, Sha256Digest, TrustAnchor};
pub use envelope::{Envelope, IntegratedPayload, PayloadHead};
pub use error::{Error, Feature, Part};
pub use inspect::{ACTIVE_COMPONENT_ID, ComponentInfo, describe, precursor};
pub use interpreter::{Component, Device, Interpreter, RunError};
pub use manifest::{ComponentId, Manifest, SequenceKind, SeverableStatus};
pub use params::{Parameters, PayloadFormat};
pub use text::TextMap;

/// Fixed limits, so that a hostile envelope cannot make the device use more time or stack than
/// these allow. Each limit exceeded gives its own [`Error`] variant.
pub mod limits {
    /// Largest envelope (integrated payloads not counted). The spec's largest example is 923 bytes.
    pub const MAX_ENVELOPE_LEN: usize = 4096;
    /// Deepest CBOR nesting accepted anywhere.
    pub const MAX_CBOR_DEPTH: usize = 16;
    /// Deepest nesting of command sequences (try-each and run-sequence inside each other).
    pub const MAX_SEQUENCE_DEPTH: usize = 4;
    /// Most components in one manifest.
    pub const MAX_COMPONENTS: usize = 4;
    /// Most bstr parts in one component identifier.
    pub const MAX_COMPONENT_ID_PARTS: usize = 4;
    /// Most commands in one command sequence.
    pub const MAX_COMMANDS: usize = 32;
    /// Most COSE authentication blocks.
    pub const MAX_SIGNATURES: usize = 4;
    /// Most integrated payloads in one envelope.
    pub const MAX_INTEGRATED_PAYLOADS: usize = 2;
}

/// Decodes and authenticates an envelope in one step: structure, manifest digest, signature,
/// then the manifest. The usual entry point.
pub fn verify<'a>(envelope: &'a [u8], anchors: &[TrustAnchor]) -> Result<Manifest<'a>, Error> {
    Envelope::decode(envelope)?.authenticate(anchors)
}

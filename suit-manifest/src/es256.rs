//! ECDSA P-256 verification of a SHA-256 prehash: the one primitive COSE ES256 / ESP256 needs.
//! Two backends behind one policy, chosen by target (build.rs sets `p256_asm`):
//!
//! - bare-metal Cortex-M4/M33: Emil Lenngren's assembly ([`cortex_m4`], about 5 KB of flash and
//!   under 2 KB of stack), the only `unsafe` code of the device crates;
//! - everywhere else (host, tests, server): the `p256` crate ([`rustcrypto`]).
//!
//! The policy both follow, so that a manifest gets the same verdict on the device as on the host
//! (the QEMU test `suit-verify` compares them on every SUIT vector):
//!
//! - key: SEC1 uncompressed `04‖x‖y` (65 bytes) or compressed `02/03‖x` (33 bytes); both
//!   coordinates below p and the point on the curve. Any other encoding (the identity `00`,
//!   compact `05`, hybrid `06/07`) is refused by [`check_encoding`] before either backend sees it.
//! - signature: raw `r‖s` (64 bytes), r and s in 1..n-1; a high S is accepted (no low-S rule, as
//!   the SUIT examples 1 and 5 need).
//! - prehash: the 32-byte SHA-256 of the Sig_structure, taken as the 256-bit integer e.

#[cfg(p256_asm)]
mod cortex_m4;
#[cfg(not(p256_asm))]
mod rustcrypto;

#[cfg(p256_asm)]
pub(crate) use cortex_m4::PublicKey;
#[cfg(not(p256_asm))]
pub(crate) use rustcrypto::PublicKey;

/// Whether `sec1` has one of the two encodings the policy accepts (the values are not checked).
pub(crate) fn check_encoding(sec1: &[u8]) -> bool {
    matches!(
        (sec1.first(), sec1.len()),
        (Some(0x04), 65) | (Some(0x02 | 0x03), 33)
    )
}

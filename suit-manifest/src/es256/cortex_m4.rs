//! The bare-metal backend: Emil Lenngren's P-256 for Cortex-M4 (MIT, `p256-cortex-m4/`, built
//! verify-only by build.rs), behind a safe interface.
//!
//! This module is the only place in the device crates (suit-manifest, lwm2m-core, lwm2m-client)
//! that may use `unsafe`: two calls into C. Why they are sound:
//!
//! - **What the C code touches.** `p256_octet_string_to_point(x, y, input, len)` reads `input[0]`,
//!   `input[1..33]` and, only when `len == 65`, `input[33..65]`; it writes 8 words to `x` and 8
//!   to `y`. `p256_verify(x, y, hash, hashlen, r, s)` reads 8 words from each of `x`, `y`, `r`,
//!   `s` and `hashlen` bytes from `hash`, and writes through none of its pointers. Neither keeps a
//!   pointer after it returns, uses global mutable state, allocates, or calls back into Rust;
//!   both work on their own stack (upstream: at most 2 KB) and constant tables only, so they are
//!   re-entrant.
//! - **Pointers and lengths.** Every pointer comes from a live Rust reference for the whole call:
//!   the byte inputs are slices whose length is the `len`/`hashlen` passed with them (checked to
//!   be 33 or 65 bytes for a point, 32 for the hash), and every 256-bit integer is a
//!   `[u32; 8]` (32 bytes, the 8 words the C code indexes). None is null.
//! - **Alignment.** The C code reads and writes `uint32_t` arrays with word loads/stores:
//!   `[u32; 8]` is 4-byte aligned. Byte inputs have no alignment requirement.
//! - **No aliasing.** The two outputs of `p256_octet_string_to_point` are two distinct locals,
//!   borrowed mutably and exclusively for the call, and no input overlaps them. `p256_verify`'s
//!   inputs are shared borrows that nothing writes during the call.
//! - **ABI.** Both are AAPCS functions taking pointers and integers and returning C `bool` (one
//!   byte, 0 or 1, the same as Rust's `bool`). The assembly uses only the caller-saved FPU
//!   registers s0–s15 and saves the core registers it must.
//! - **Validity.** Any bit pattern is a valid `[u32; 8]`, so what the C code writes is a valid
//!   value even when it returns `false` (and then it is not used).

#![allow(unsafe_code)] // the FFI calls below, argued in the module docs

unsafe extern "C" {
    fn p256_octet_string_to_point(
        x: *mut u32,
        y: *mut u32,
        input: *const u8,
        input_len_in_bytes: u32,
    ) -> bool;

    fn p256_verify(
        public_key_x: *const u32,
        public_key_y: *const u32,
        hash: *const u8,
        hashlen_in_bytes: u32,
        r: *const u32,
        s: *const u32,
    ) -> bool;
}

/// Length of a raw `r‖s` signature.
const SIGNATURE_LEN: usize = 64;

/// A 256-bit integer as the C code takes it: 8 little-endian words, least significant first.
type Words = [u32; 8];

/// A validated P-256 public key: affine x and y, each below p, the point on the curve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PublicKey {
    x: Words,
    y: Words,
}

impl PublicKey {
    /// Decodes and validates a SEC1 point (see the policy in the parent module).
    pub(crate) fn from_sec1(sec1: &[u8]) -> Option<Self> {
        if !super::check_encoding(sec1) {
            return None;
        }
        let len = u32::try_from(sec1.len()).ok()?;
        let mut x = Words::default();
        let mut y = Words::default();
        // SAFETY: see the module docs: `sec1` is 33 or 65 bytes (check_encoding) and `len` is its
        // length; `x` and `y` are distinct, exclusively borrowed, word-aligned 8-word arrays.
        let valid = unsafe {
            p256_octet_string_to_point(x.as_mut_ptr(), y.as_mut_ptr(), sec1.as_ptr(), len)
        };
        valid.then_some(PublicKey { x, y })
    }

    /// Whether `signature` (raw `r‖s`) is valid for `prehash` under this key. The C code refuses
    /// r or s outside 1..n-1 and checks the key again.
    pub(crate) fn verify(&self, prehash: &[u8; 32], signature: &[u8]) -> bool {
        let Some((r, s)) = signature
            .split_at_checked(SIGNATURE_LEN / 2)
            .filter(|_| signature.len() == SIGNATURE_LEN)
        else {
            return false;
        };
        let (r, s) = (words(r), words(s));
        // SAFETY: see the module docs: five live borrows, the four integers `[u32; 8]`, the hash
        // 32 bytes with its length passed along; the C code only reads them.
        unsafe {
            p256_verify(
                self.x.as_ptr(),
                self.y.as_ptr(),
                prehash.as_ptr(),
                32,
                r.as_ptr(),
                s.as_ptr(),
            )
        }
    }
}

/// A 32-byte big-endian integer (as SEC1 and COSE write them) as 8 little-endian words.
fn words(be: &[u8]) -> Words {
    let mut out = Words::default();
    for (word, chunk) in out.iter_mut().zip(be.rchunks_exact(4)) {
        if let Ok(bytes) = <[u8; 4]>::try_from(chunk) {
            *word = u32::from_be_bytes(bytes);
        }
    }
    out
}

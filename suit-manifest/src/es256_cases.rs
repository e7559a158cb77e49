//! Conformance cases for the ES256 verification policy (see [`TrustAnchor`]): keys in every SEC1
//! encoding, signatures with r or s at and past the ends of 1..n-1, a high S, a wrong prehash.
//! Made on the host (feature `std`) with a fixed key, so the same cases judge both P-256
//! backends: suit-manifest's tests run them on the host's, the QEMU firmware `suit-verify` on the
//! Cortex-M4 assembly.
#![allow(clippy::indexing_slicing, clippy::expect_used)] // host-side test data of fixed sizes

use std::string::String;
use std::vec::Vec;

use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use sha2::{Digest as _, Sha256};

use crate::TrustAnchor;

/// What the policy says about a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `TrustAnchor::from_sec1` refuses the key.
    BadKey,
    /// The key is accepted and the signature verifies.
    Valid,
    /// The key is accepted and the signature does not verify.
    Invalid,
}

impl Verdict {
    /// Judges one case with this build's backend.
    pub fn of(key: &[u8], prehash: &[u8; 32], signature: &[u8]) -> Verdict {
        match TrustAnchor::from_sec1(key) {
            Err(_) => Verdict::BadKey,
            Ok(anchor) if anchor.verify_prehash(prehash, signature) => Verdict::Valid,
            Ok(_) => Verdict::Invalid,
        }
    }
}

/// One case: a key (SEC1), a prehash, a raw `r‖s` signature and what the policy says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub key: Vec<u8>,
    pub prehash: [u8; 32],
    pub signature: Vec<u8>,
    pub expected: Verdict,
}

/// The group order n of P-256, big-endian.
const N: [u8; 32] = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
/// The field prime p of P-256, big-endian.
const P: [u8; 32] = hex32("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");

/// Every case, in a fixed order.
pub fn cases() -> Vec<Case> {
    let signing = SigningKey::from_slice(&[0x42; 32]).expect("a valid fixed scalar");
    let point = signing.verifying_key().to_sec1_point(false);
    let key = point.as_bytes().to_vec();
    let compressed = signing
        .verifying_key()
        .to_sec1_point(true)
        .as_bytes()
        .to_vec();
    let prehash: [u8; 32] = Sha256::digest(b"otafleet ES256 policy").into();
    let other_hash: [u8; 32] = Sha256::digest(b"another message").into();
    let sig: p256::ecdsa::Signature = signing.sign_prehash(&prehash).expect("sign");
    let sig = sig.to_bytes().to_vec();
    let (r, s) = sig.split_at(32);
    let join = |r: &[u8], s: &[u8]| [r, s].concat();
    let with_y_bit_flipped = {
        let mut k = key.clone();
        k[64] ^= 1;
        k
    };
    let with_x_at_p = join(&[&[4][..], &P].concat(), &key[33..]);
    let mut other_parity = compressed.clone();
    other_parity[0] ^= 1;
    let mut hybrid = key.clone();
    hybrid[0] = 6 | (key[64] & 1);
    let compact = [&[5][..], &key[1..33]].concat();

    use Verdict::*;
    let mut all = vec![
        ("valid signature", key.clone(), prehash, sig.clone(), Valid),
        (
            "high S (n - s) accepted",
            key.clone(),
            prehash,
            join(r, &sub(&N, s)),
            Valid,
        ),
        (
            "compressed key",
            compressed.clone(),
            prehash,
            sig.clone(),
            Valid,
        ),
        (
            "compressed key, other y",
            other_parity,
            prehash,
            sig.clone(),
            Invalid,
        ),
        (
            "other prehash",
            key.clone(),
            other_hash,
            sig.clone(),
            Invalid,
        ),
        ("r = 0", key.clone(), prehash, join(&[0; 32], s), Invalid),
        ("s = 0", key.clone(), prehash, join(r, &[0; 32]), Invalid),
        ("r = n", key.clone(), prehash, join(&N, s), Invalid),
        ("s = n", key.clone(), prehash, join(r, &N), Invalid),
        ("r + n", key.clone(), prehash, join(&add(r, &N), s), Invalid),
        (
            "s = 2^256 - 1",
            key.clone(),
            prehash,
            join(r, &[0xff; 32]),
            Invalid,
        ),
        (
            "s + 1",
            key.clone(),
            prehash,
            join(r, &add(s, &one())),
            Invalid,
        ),
        (
            "63-byte signature",
            key.clone(),
            prehash,
            sig[..63].to_vec(),
            Invalid,
        ),
        (
            "65-byte signature",
            key.clone(),
            prehash,
            join(&sig, &[0]),
            Invalid,
        ),
        (
            "key off the curve",
            with_y_bit_flipped,
            prehash,
            sig.clone(),
            BadKey,
        ),
        ("key x = p", with_x_at_p, prehash, sig.clone(), BadKey),
        (
            "hybrid encoding 06/07",
            hybrid,
            prehash,
            sig.clone(),
            BadKey,
        ),
        ("compact encoding 05", compact, prehash, sig.clone(), BadKey),
        ("identity 00", vec![0], prehash, sig.clone(), BadKey),
        (
            "64-byte key without tag",
            key[1..].to_vec(),
            prehash,
            sig.clone(),
            BadKey,
        ),
        (
            "uncompressed tag, 33 bytes",
            [&[4][..], &key[1..33]].concat(),
            prehash,
            sig.clone(),
            BadKey,
        ),
    ];
    // A compressed x with no point on the curve: the first small x whose x^3 - 3x + b is not a
    // square (the host's backend decides, the device's must agree).
    if let Some(x) = (1u8..=64).find(|&x| {
        let mut c = vec![2];
        c.extend_from_slice(&[0; 31]);
        c.push(x);
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&c).is_err()
    }) {
        let mut c = vec![2];
        c.extend_from_slice(&[0; 31]);
        c.push(x);
        all.push((
            "compressed x not on the curve",
            c,
            prehash,
            sig.clone(),
            BadKey,
        ));
    }
    all.into_iter()
        .map(|(name, key, prehash, signature, expected)| Case {
            name: name.into(),
            key,
            prehash,
            signature,
            expected,
        })
        .collect()
}

fn one() -> [u8; 32] {
    let mut v = [0; 32];
    v[31] = 1;
    v
}

/// a - b mod 2^256, big-endian.
fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256) as u8;
    }
    out
}

/// a + b mod 2^256, big-endian.
fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0; 32];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let t = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = t as u8;
        carry = t >> 8;
    }
    out
}

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

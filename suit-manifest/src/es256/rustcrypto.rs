//! The host backend: the `p256` crate (RustCrypto), verifying a prehash.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};

/// A validated P-256 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PublicKey(pub(crate) VerifyingKey);

impl PublicKey {
    /// Decodes and validates a SEC1 point (see the policy in the parent module).
    pub(crate) fn from_sec1(sec1: &[u8]) -> Option<Self> {
        if !super::check_encoding(sec1) {
            return None;
        }
        VerifyingKey::from_sec1_bytes(sec1).ok().map(PublicKey)
    }

    /// Whether `signature` (raw `r‖s`) is valid for `prehash` under this key.
    pub(crate) fn verify(&self, prehash: &[u8; 32], signature: &[u8]) -> bool {
        // from_slice refuses a length other than 64 and r or s outside 1..n-1.
        Signature::from_slice(signature)
            .is_ok_and(|sig| self.0.verify_prehash(prehash, &sig).is_ok())
    }
}

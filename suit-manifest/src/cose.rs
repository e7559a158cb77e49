//! The authentication wrapper: a SUIT_Digest of the manifest and COSE_Sign1 blocks (ES256 / ESP256)
//! with detached payloads, verified with sha2 and the P-256 backend of [`crate::es256`]. The
//! Sig_structure is hashed piece by piece, so no buffer is needed for it.

use sha2::{Digest as _, Sha256};

use crate::cbor::{KeySet, Reader, bstr_header};
use crate::error::{Error, Feature, Part};
use crate::es256::PublicKey;
use crate::keys;
use crate::limits::MAX_SIGNATURES;

/// A public key the device trusts to sign manifests (P-256). It lives outside the updatable image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchor {
    key: PublicKey,
}

impl TrustAnchor {
    /// From an uncompressed (65-byte `04||x||y`) or compressed (33-byte `02/03||x`) SEC1 point
    /// on the curve; anything else is [`Error::BadKey`].
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, Error> {
        PublicKey::from_sec1(bytes)
            .map(|key| TrustAnchor { key })
            .ok_or(Error::BadKey)
    }

    /// Whether `signature` (raw `r||s`) signs `prehash` (a SHA-256) with this key.
    pub fn verify_prehash(&self, prehash: &[u8; 32], signature: &[u8]) -> bool {
        self.key.verify(prehash, signature)
    }
}

/// The `p256` crate's key type, on the targets that verify with it (not bare-metal ARM).
#[cfg(not(p256_asm))]
impl TrustAnchor {
    /// From a p256 verifying key.
    pub fn from_key(key: p256::ecdsa::VerifyingKey) -> Self {
        TrustAnchor {
            key: PublicKey(key),
        }
    }

    /// The key.
    pub fn key(&self) -> &p256::ecdsa::VerifyingKey {
        &self.key.0
    }
}

/// A SUIT_Digest with the only algorithm supported, SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Decodes `[-16, h'<32 bytes>']`.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
        if r.array()? != 2 {
            return Err(Error::WrongType(Part::Digest));
        }
        let alg = r.i64()?;
        if alg != keys::cose::ALG_SHA256 {
            return Err(Error::Unsupported(Feature::DigestAlgorithm));
        }
        let bytes: [u8; 32] = r
            .bytes()?
            .try_into()
            .map_err(|_| Error::WrongType(Part::Digest))?;
        Ok(Sha256Digest(bytes))
    }

    /// Decodes a SUIT_Digest from its own encoding, refusing trailing bytes.
    pub(crate) fn decode_exact(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, Part::Digest);
        let d = Self::decode(&mut r)?;
        r.finish()?;
        Ok(d)
    }

    /// Whether `data` hashes to this digest.
    pub fn matches(&self, data: &[u8]) -> bool {
        let h: [u8; 32] = Sha256::digest(data).into();
        constant_time_eq(&h, &self.0)
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Which signature algorithms a COSE_Sign1 may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// ES256 (-7), as in the spec's examples.
    Es256,
    /// ESP256 (-9), the fully specified id of the SUIT MTI profile.
    Esp256,
}

impl Algorithm {
    /// The COSE algorithm id.
    pub fn cose_id(self) -> i64 {
        match self {
            Algorithm::Es256 => keys::cose::ALG_ES256,
            Algorithm::Esp256 => keys::cose::ALG_ESP256,
        }
    }
}

/// Checks the manifest digest and that at least one COSE_Sign1 verifies with a trusted key.
pub(crate) fn authenticate(
    auth: &[u8],
    manifest_bstr: &[u8],
    anchors: &[TrustAnchor],
) -> Result<(), Error> {
    let mut r = Reader::new(auth, Part::AuthenticationWrapper);
    let n = r.array()?;
    let digest_encoded = r.bytes().map_err(|e| match e {
        Error::Truncated => Error::Missing(Part::Digest),
        e => e,
    })?;
    let digest = Sha256Digest::decode_exact(digest_encoded)?;
    let signatures = n.checked_sub(1).ok_or(Error::Missing(Part::Digest))?;
    if signatures == 0 {
        return Err(Error::Unsigned);
    }
    if signatures > MAX_SIGNATURES as u64 {
        return Err(Error::TooManySignatures);
    }
    if !digest.matches(manifest_bstr) {
        return Err(Error::ManifestDigestMismatch);
    }
    let mut verdict = Err(Error::UnsupportedAlgorithm);
    for _ in 0..signatures {
        let block = r.bytes()?;
        match verify_sign1(block, digest_encoded, anchors) {
            Ok(()) => verdict = Ok(()),
            Err(Error::BadSignature) if verdict.is_err() => verdict = Err(Error::BadSignature),
            Err(Error::UnsupportedAlgorithm) => {}
            Err(Error::BadSignature) => {}
            // A malformed block is an attack or a bug: refuse the envelope outright.
            Err(e) => return Err(e),
        }
    }
    r.finish()?;
    verdict
}

/// Verifies one COSE_Sign1 (tag 18) whose detached payload is the encoded SUIT_Digest. Not
/// inlined, and neither is the hash: the P-256 check, the deepest call of the verifier, then runs
/// right below this small frame, not below the caller's readers and the hasher's state.
#[inline(never)]
fn verify_sign1(block: &[u8], payload: &[u8], anchors: &[TrustAnchor]) -> Result<(), Error> {
    let mut r = Reader::new(block, Part::CoseSign1);
    match r.tag()? {
        keys::TAG_COSE_SIGN1 => {}
        keys::TAG_COSE_SIGN | keys::TAG_COSE_MAC0 | keys::TAG_COSE_MAC => {
            return Err(Error::Unsupported(Feature::MultiSignerOrMac));
        }
        _ => return Err(Error::WrongTag(Part::CoseSign1)),
    }
    if r.array()? != 4 {
        return Err(Error::WrongType(Part::CoseSign1));
    }
    let protected = r.bytes()?;
    let alg = protected_algorithm(protected)?;
    // The unprotected header may carry a key id; nothing in it is trusted.
    let mut unprotected = r.clone();
    unprotected.map()?;
    r.skip()?;
    if r.datatype()? != crate::cbor::Type::Null {
        return Err(Error::AttachedPayload);
    }
    r.null()?;
    let sig = r.bytes()?;
    r.finish()?;
    let alg = alg.ok_or(Error::UnsupportedAlgorithm)?;
    let _ = alg; // ES256 and ESP256 are the same computation; only the signed header bytes differ.
    let prehash = sig_structure_hash(protected, payload);
    if anchors.iter().any(|a| a.verify_prehash(&prehash, sig)) {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

/// The algorithm in a protected header `{1: alg, ...}`; `None` for an algorithm we do not support.
fn protected_algorithm(protected: &[u8]) -> Result<Option<Algorithm>, Error> {
    let mut r = Reader::new(protected, Part::ProtectedHeader);
    let n = r.map()?;
    let mut seen = KeySet::new(Part::ProtectedHeader);
    let mut alg = None;
    for _ in 0..n {
        let label = r.i64()?;
        seen.insert(label)?;
        if label == keys::cose::HEADER_ALG {
            alg = Some(match r.i64()? {
                keys::cose::ALG_ES256 => Some(Algorithm::Es256),
                keys::cose::ALG_ESP256 => Some(Algorithm::Esp256),
                _ => None,
            });
        } else {
            r.skip()?;
        }
    }
    r.finish()?;
    alg.ok_or(Error::Missing(Part::ProtectedHeader))
}

/// SHA-256 of `["Signature1", protected, h'', payload]` (RFC 9052 §4.4), fed piece by piece.
#[inline(never)]
pub(crate) fn sig_structure_hash(protected: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut hdr = [0u8; 9];
    h.update([0x84]);
    h.update([0x6a]);
    h.update(b"Signature1");
    h.update(bstr_header(protected.len(), &mut hdr));
    h.update(protected);
    h.update([0x40]);
    h.update(bstr_header(payload.len(), &mut hdr));
    h.update(payload);
    h.finalize().into()
}

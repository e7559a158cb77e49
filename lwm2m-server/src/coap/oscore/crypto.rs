//! The server's allocating front to lwm2m-core's OSCORE primitives (`lwm2m_core::oscore`, shared
//! with the device): the AAD and AES-CCM-16-64-128 over `Vec`s. Derivation, nonce, option value
//! and replay window are core's, re-exported from [`super`].

use lwm2m_core::oscore::crypto::{self as core_crypto, KEY_LEN, MAX_AAD_LEN};
pub use lwm2m_core::oscore::crypto::{Keys, MAX_ID_LEN, MAX_PIV_LEN, NONCE_LEN, TAG_LEN, nonce};

/// The AAD of a message bound to the request (`request_kid`, `request_piv`), RFC 8613 §5.4.
pub fn aad(request_kid: &[u8], request_piv: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; MAX_AAD_LEN];
    // The kid and Partial IV are at most 7 and 5 bytes (checked where they come in), which fit.
    core_crypto::aad(&mut buf, request_kid, request_piv)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Encrypts `plaintext`; the 8-byte tag is appended. None only for a message too long for CCM.
pub fn seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    out.extend_from_slice(plaintext);
    let tag = core_crypto::seal_in_place(key, nonce, aad, &mut out).ok()?;
    out.extend_from_slice(&tag);
    Some(out)
}

/// Decrypts and verifies `ciphertext` (tag appended); None if it is not authentic.
pub fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    let mut buf = ciphertext.to_vec();
    let len = core_crypto::open_with_tag(key, nonce, aad, &mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

#[cfg(test)]
pub(super) mod tests {
    pub fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub const SECRET: &str = "0102030405060708090a0b0c0d0e0f10";
    pub const SALT: &str = "9e7ca92223786340";
}

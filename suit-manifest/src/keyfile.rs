//! Key files (feature `std`): PKCS#8 PEM private keys and SPKI PEM public keys, as `suit keygen`
//! writes them and OpenSSL reads them. A public key may also be given as the hex of its SEC1 point.

use std::string::String;

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};

/// A key file that could not be read or written; the text says which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// A new random P-256 signing key from the operating system's RNG.
pub fn generate() -> Result<SigningKey, KeyError> {
    use p256::elliptic_curve::Generate;
    SigningKey::try_generate()
        .map_err(|e| KeyError(format!("the system random number generator failed ({e})")))
}

/// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) P-256 key.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| KeyError(format!("not a PKCS#8 PEM P-256 private key ({e})")))
}

/// Parses an SPKI PEM (`-----BEGIN PUBLIC KEY-----`) P-256 key, or the hex of a SEC1 point.
pub fn verifying_key_from_text(text: &str) -> Result<VerifyingKey, KeyError> {
    if text.contains("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text)
            .map_err(|e| KeyError(format!("not an SPKI PEM P-256 public key ({e})")));
    }
    let hex = text.trim();
    let bytes: Result<std::vec::Vec<u8>, _> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect();
    let bytes =
        bytes.map_err(|_| KeyError("not a PEM public key nor the hex of a SEC1 point".into()))?;
    VerifyingKey::from_sec1_bytes(&bytes)
        .map_err(|_| KeyError("not a valid P-256 SEC1 point".into()))
}

/// The PKCS#8 PEM of a private key.
pub fn signing_key_to_pem(key: &SigningKey) -> Result<String, KeyError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|z| z.as_str().into())
        .map_err(|e| KeyError(format!("cannot encode the private key ({e})")))
}

/// The SPKI PEM of a public key.
pub fn verifying_key_to_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError(format!("cannot encode the public key ({e})")))
}

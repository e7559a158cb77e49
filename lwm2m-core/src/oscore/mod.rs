//! OSCORE (RFC 8613) primitives that both ends share, without allocation (feature `oscore`):
//!
//! * [`crypto`]: key derivation (HKDF-SHA-256 over the `info` CBOR array), the AEAD nonce, the
//!   additional authenticated data, AES-CCM-16-64-128 in place with a detached 8-byte tag;
//! * [`option`]: the OSCORE option's value and Partial IVs;
//! * [`replay`]: the 32-wide replay window (§7.4) and the sender sequence number persisted
//!   ahead in steps (Appendix B.1.1).
//!
//! The server frames whole coap-lite messages with these (lwm2m-server `coap::oscore`); the device
//! frames its own datagrams in place (lwm2m-client `oscore`). Checked against RFC 8613 Appendix C.

pub mod crypto;
pub mod option;
pub mod replay;

use core::fmt;

pub use crypto::{Keys, MAX_ID_LEN, MAX_PIV_LEN, NONCE_LEN, TAG_LEN};
pub use option::{OptionError, OscoreOption, Piv};
pub use replay::{Exhausted, MAX_SEQ, ReplayWindow, SenderSeq, WINDOW};

/// The OSCORE option number (RFC 8613 §2).
pub const OPTION: u16 = 9;
/// The Echo option (RFC 9175): elective, Class E in OSCORE.
pub const ECHO: u16 = 252;

/// Why a primitive failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// A Sender or Recipient ID longer than [`MAX_ID_LEN`] (`recipient`: which one).
    IdTooLong {
        /// The Recipient ID (else the Sender ID).
        recipient: bool,
        /// Its length.
        len: usize,
    },
    /// An ID Context longer than [`crypto::MAX_ID_CONTEXT_LEN`].
    IdContextTooLong,
    /// The tag does not verify (wrong key, changed bytes), or the ciphertext is shorter than it.
    DecryptionFailed,
    /// The message is too long for AES-CCM or the caller's buffer.
    TooLong,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::IdTooLong { recipient, len } => write!(
                f,
                "an OSCORE {} has at most {MAX_ID_LEN} bytes with AES-CCM-16-64-128, not {len}",
                if *recipient {
                    "Recipient ID"
                } else {
                    "Sender ID"
                }
            ),
            CryptoError::IdContextTooLong => f.write_str("the OSCORE ID Context is too long"),
            CryptoError::DecryptionFailed => f.write_str("Decryption failed"),
            CryptoError::TooLong => f.write_str("the message is too long to protect"),
        }
    }
}

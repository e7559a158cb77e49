//! OSCORE (RFC 8613): object security for CoAP, LwM2M 1.1's OSCORE security mode. A request
//! carrying the OSCORE option is verified and decrypted before the LwM2M layer sees it, and its
//! response is encrypted, end to end whatever proxies or border routers sit between.
//!
//! * `lwm2m_core::oscore` (shared with the device, no_std): key derivation (HKDF-SHA-256),
//!   nonce, AAD, AES-CCM-16-64-128 in place, the option value, the replay window (§7.4) and the
//!   sender sequence number persisted ahead in steps (Appendix B.1.1); re-exported here as
//!   [`option`] and [`replay`].
//! * [`crypto`]: the allocating front to core's AEAD for coap-lite's `Vec` payloads.
//! * [`message`]: a [`Context`] protecting whole coap-lite messages (inner and outer options).
//! * [`table`]: the server's contexts by kid, with the replay state and the Echo (RFC 9175)
//!   exchange that re-establishes freshness after a restart (Appendix B.1.2).
//!
//! Written on RustCrypto (`aes`, `ccm`, `hkdf`, the versions dimpl already pulls in) rather than
//! the `liboscore` crate: that crate speaks the `coap-message` traits, not the coap-lite packets
//! the server uses, pins `aes` 0.8 / `ccm` 0.5 / `hkdf` 0.12 beside the workspace's 0.9 / 0.6 /
//! 0.13, and builds libOSCORE's C with bindgen; within this time the framing was the
//! smaller piece. It is checked against the RFC's Appendix C vectors and against aiocoap.

pub mod crypto;
pub mod message;
pub mod table;

pub use lwm2m_core::oscore::{option, replay};

use coap_lite::{CoapOption, Packet, ResponseType};

pub use message::{Context, IdTooLong, RequestRef};
pub use option::OscoreOption;
pub use table::{ClientTicket, Incoming, OscoreContexts, SeqStore, Ticket};

/// The Echo option (RFC 9175): elective, Class E in OSCORE.
pub use lwm2m_core::oscore::ECHO;

/// Why a message is not accepted, with the response RFC 8613 §8.2 prescribes (sent without
/// OSCORE protection, since no context can be trusted for it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OscoreError {
    /// The option or the COSE object cannot be decoded: 4.02.
    #[error("{0}")]
    BadOption(&'static str),
    /// No context has that kid: 4.01.
    #[error("Security context not found")]
    NoContext,
    /// The Partial IV was seen before or is below the window: 4.01.
    #[error("Replay detected")]
    Replay,
    /// The tag does not verify (wrong key, changed bytes): 4.00.
    #[error("Decryption failed")]
    DecryptionFailed,
    /// Decrypted, but what is inside is not a CoAP message of the expected kind: 4.00.
    #[error("the decrypted message is malformed")]
    MalformedInner,
    /// Our own side failed (the sequence number could not be persisted): 5.00.
    #[error("{0}")]
    Internal(String),
    /// A device answered our protected request without OSCORE: its code and diagnostic.
    #[error("the device answered {0} without OSCORE: {1:?}")]
    Unprotected(String, String),
}

impl OscoreError {
    pub fn code(&self) -> ResponseType {
        match self {
            OscoreError::BadOption(_) => ResponseType::BadOption,
            OscoreError::NoContext | OscoreError::Replay => ResponseType::Unauthorized,
            OscoreError::DecryptionFailed | OscoreError::MalformedInner => ResponseType::BadRequest,
            OscoreError::Internal(_) | OscoreError::Unprotected(..) => {
                ResponseType::InternalServerError
            }
        }
    }

    /// The unprotected error response, with the diagnostic text as payload.
    pub fn response(&self) -> Packet {
        let mut p = crate::coap::new_response(self.code());
        p.payload = self.to_string().into_bytes();
        // Outer Max-Age 0: nobody should cache it (RFC 8613 §8.2).
        crate::coap::block::set_uint_option(&mut p, CoapOption::MaxAge, 0);
        p
    }
}

/// Whether `packet` carries the OSCORE option.
pub fn is_protected(packet: &Packet) -> bool {
    packet.get_first_option(CoapOption::Oscore).is_some()
}

/// The identity a request protected with the context of recipient ID `kid` speaks for, as the
/// LwM2M layer sees it (`oscore:` and the kid in hex).
pub fn identity_of(kid: &[u8]) -> String {
    let mut s = String::from(IDENTITY_PREFIX);
    for b in kid {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// What [`identity_of`] starts with; no DTLS PSK identity may.
pub const IDENTITY_PREFIX: &str = "oscore:";

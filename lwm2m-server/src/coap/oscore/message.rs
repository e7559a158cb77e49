//! One security context's protection of whole CoAP messages (RFC 8613 §4, §5, §8): which options
//! are encrypted (Class E, inner) and which stay outside (Class U), the plaintext layout
//! `code || options || 0xFF || payload`, and the outer message (POST, 2.04 Changed) that carries
//! the ciphertext. Both roles: the server unprotects requests and protects responses; the client
//! role is here for tests and the host client.

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};

use super::OscoreError;
use super::crypto::{self, Keys, MAX_ID_LEN};
use super::option::{OscoreOption, piv_of, seq_of};
use lwm2m_core::oscore::CryptoError;

/// The option value of `opt` (its fields are bounded: a kid of at most 7 bytes, a Partial IV of
/// at most 5, a kid context of at most 255).
fn encode_option(opt: &OscoreOption<'_>) -> Result<Vec<u8>, OscoreError> {
    let mut buf = [0u8; 1 + 5 + 1 + 255 + 7];
    let n = opt
        .encode(&mut buf)
        .map_err(|e| OscoreError::Internal(format!("cannot encode the OSCORE option: {e}")))?;
    Ok(buf[..n].to_vec())
}

fn sealed(
    key: &[u8; 16],
    nonce: &[u8; crypto::NONCE_LEN],
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, OscoreError> {
    crypto::seal(key, nonce, aad, plain)
        .ok_or_else(|| OscoreError::Internal("the message is too long for AES-CCM".into()))
}

/// Options that stay outside the encryption (RFC 8613 §4.1.3): Uri-Host, Uri-Port, Proxy-Uri,
/// Proxy-Scheme, and the OSCORE option itself. Observe (6) goes both inside and outside.
const CLASS_U: [u16; 5] = [3, 7, 9, 35, 39];
const OBSERVE: u16 = 6;

/// A security context: the two IDs and the derived keys. The replay window and the sender's
/// sequence number live with whoever owns the context (they change; this does not).
#[derive(Clone, Debug)]
pub struct Context {
    pub sender_id: Vec<u8>,
    pub recipient_id: Vec<u8>,
    pub id_context: Option<Vec<u8>>,
    keys: Keys,
}

/// What a response is bound to (RFC 8613 §5.4): the request's kid and Partial IV, and its
/// nonce, which a response without a Partial IV of its own reuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRef {
    pub kid: Vec<u8>,
    pub piv: Vec<u8>,
    pub seq: u64,
}

/// A bad Sender or Recipient ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an OSCORE {which} has at most {MAX_ID_LEN} bytes with AES-CCM-16-64-128, not {len}")]
pub struct IdTooLong {
    pub which: &'static str,
    pub len: usize,
}

impl Context {
    pub fn new(
        master_secret: &[u8],
        master_salt: &[u8],
        sender_id: &[u8],
        recipient_id: &[u8],
    ) -> Result<Context, IdTooLong> {
        // Without an ID Context only an ID can be refused (longer than MAX_ID_LEN).
        let keys = Keys::derive(master_secret, master_salt, None, sender_id, recipient_id)
            .map_err(|e| match e {
                CryptoError::IdTooLong { recipient, len } => IdTooLong {
                    which: if recipient {
                        "Recipient ID"
                    } else {
                        "Sender ID"
                    },
                    len,
                },
                _ => IdTooLong {
                    which: "ID Context",
                    len: 0,
                },
            })?;
        Ok(Context {
            keys,
            sender_id: sender_id.to_vec(),
            recipient_id: recipient_id.to_vec(),
            id_context: None,
        })
    }

    // ---- server role ----

    /// Decrypts a request whose OSCORE option is `opt` (already matched to this context by its
    /// kid). The replay check is the caller's: it must accept `RequestRef::seq` only after this
    /// succeeded.
    pub fn open_request(
        &self,
        outer: &Packet,
        opt: &OscoreOption<'_>,
    ) -> Result<(Packet, RequestRef), OscoreError> {
        let piv = opt
            .piv
            .map(<[u8]>::to_vec)
            .ok_or(OscoreError::BadOption("a request without a Partial IV"))?;
        let request = RequestRef {
            kid: self.recipient_id.clone(),
            seq: seq_of(&piv),
            piv,
        };
        let nonce = crypto::nonce(&self.keys.common_iv, &request.kid, &request.piv);
        let aad = crypto::aad(&request.kid, &request.piv);
        let plain = crypto::open(&self.keys.recipient_key, &nonce, &aad, &outer.payload)
            .ok_or(OscoreError::DecryptionFailed)?;
        let inner = inner_message(outer, &plain).ok_or(OscoreError::MalformedInner)?;
        if !matches!(inner.header.code, MessageClass::Request(_)) {
            return Err(OscoreError::MalformedInner);
        }
        Ok((inner, request))
    }

    /// Protects `response` to `request`: with the request's nonce, or with a Partial IV of our
    /// own (`own_seq`, from the sender sequence number).
    pub fn seal_response(
        &self,
        request: &RequestRef,
        response: &Packet,
        own_seq: Option<u64>,
    ) -> Result<Packet, OscoreError> {
        let plain = plaintext(response)?;
        let aad = crypto::aad(&request.kid, &request.piv);
        let (nonce, opt) = match own_seq {
            Some(seq) => {
                let piv = piv_of(seq);
                let nonce = crypto::nonce(&self.keys.common_iv, &self.sender_id, piv.as_bytes());
                let opt = OscoreOption {
                    piv: Some(piv.as_bytes()),
                    ..OscoreOption::default()
                };
                (nonce, encode_option(&opt)?)
            }
            None => (
                crypto::nonce(&self.keys.common_iv, &request.kid, &request.piv),
                Vec::new(),
            ),
        };
        let mut outer = crate::coap::new_response(ResponseType::Changed);
        outer.add_option(CoapOption::Oscore, opt);
        outer.payload = sealed(&self.keys.sender_key, &nonce, &aad, &plain)?;
        Ok(outer)
    }

    // ---- client role ----

    /// Protects `request` with sequence number `seq` (outer code POST).
    pub fn seal_request(
        &self,
        request: &Packet,
        seq: u64,
    ) -> Result<(Packet, RequestRef), OscoreError> {
        let plain = plaintext(request)?;
        let r = RequestRef {
            kid: self.sender_id.clone(),
            piv: piv_of(seq).as_bytes().to_vec(),
            seq,
        };
        let nonce = crypto::nonce(&self.keys.common_iv, &r.kid, &r.piv);
        let aad = crypto::aad(&r.kid, &r.piv);
        let mut outer = Packet::new();
        outer.header = request.header.clone();
        outer.header.code = MessageClass::Request(RequestType::Post);
        outer.set_token(request.get_token().to_vec());
        for (&n, values) in request.options() {
            if (CLASS_U.contains(&n) && n != 9) || n == OBSERVE {
                for v in values {
                    outer.add_option(CoapOption::from(n), v.clone());
                }
            }
        }
        let opt = OscoreOption {
            piv: Some(&r.piv),
            kid_context: self.id_context.as_deref(),
            kid: Some(&self.sender_id),
        };
        outer.add_option(CoapOption::Oscore, encode_option(&opt)?);
        outer.payload = sealed(&self.keys.sender_key, &nonce, &aad, &plain)?;
        Ok((outer, r))
    }

    /// Verifies and decrypts the response to `request`.
    pub fn open_response(
        &self,
        request: &RequestRef,
        outer: &Packet,
    ) -> Result<Packet, OscoreError> {
        let value = outer
            .get_first_option(CoapOption::Oscore)
            .ok_or(OscoreError::BadOption("the response has no OSCORE option"))?;
        let opt = OscoreOption::decode(value)
            .map_err(|_| OscoreError::BadOption("a malformed OSCORE option"))?;
        let nonce = match opt.piv {
            Some(piv) => crypto::nonce(&self.keys.common_iv, &self.recipient_id, piv),
            None => crypto::nonce(&self.keys.common_iv, &request.kid, &request.piv),
        };
        let aad = crypto::aad(&request.kid, &request.piv);
        let plain = crypto::open(&self.keys.recipient_key, &nonce, &aad, &outer.payload)
            .ok_or(OscoreError::DecryptionFailed)?;
        inner_message(outer, &plain).ok_or(OscoreError::MalformedInner)
    }
}

/// `code || Class E options || 0xFF || payload` of `message`.
fn plaintext(message: &Packet) -> Result<Vec<u8>, OscoreError> {
    let mut inner = Packet::new();
    for (&n, values) in message.options() {
        if !CLASS_U.contains(&n) {
            inner.set_option(CoapOption::from(n), values.clone());
        }
    }
    inner.payload = message.payload.clone();
    // With no token the options start right after the 4-byte header.
    let bytes = inner
        .to_bytes_unlimited()
        .map_err(|_| OscoreError::Internal("cannot encode the inner message".into()))?;
    let mut plain = Vec::with_capacity(bytes.len() - 3);
    plain.push(u8::from(message.header.code));
    plain.extend_from_slice(bytes.get(4..).unwrap_or_default());
    Ok(plain)
}

/// The message inside: the decrypted code, options and payload, under the outer message's
/// type, id and token, with the outer Class U options (Uri-Host, Uri-Port, Proxy-*) back.
fn inner_message(outer: &Packet, plain: &[u8]) -> Option<Packet> {
    let (&code, rest) = plain.split_first()?;
    let mut datagram = Vec::with_capacity(plain.len() + 3);
    datagram.extend_from_slice(&[0x40, code, 0, 0]);
    datagram.extend_from_slice(rest);
    let mut inner = Packet::from_bytes(&datagram).ok()?;
    if inner.get_first_option(CoapOption::Oscore).is_some() {
        return None; // OSCORE inside OSCORE
    }
    for (&n, values) in outer.options() {
        if CLASS_U.contains(&n) && n != 9 {
            inner.set_option(CoapOption::from(n), values.clone());
        }
    }
    inner.header.set_type(outer.header.get_type());
    inner.header.message_id = outer.header.message_id;
    inner.set_token(outer.get_token().to_vec());
    Some(inner)
}

#[cfg(test)]
mod tests {
    use super::super::crypto::tests::{SALT, SECRET, hex};
    use super::*;

    fn client() -> Context {
        Context::new(&hex(SECRET), &hex(SALT), &[], &[1]).unwrap()
    }
    fn server() -> Context {
        Context::new(&hex(SECRET), &hex(SALT), &[1], &[]).unwrap()
    }

    /// RFC 8613 Appendix C.4, C.7 and C.8, whole messages.
    #[test]
    fn whole_messages_match_rfc8613_c4_c7_c8() {
        let request =
            Packet::from_bytes(&hex("44015d1f00003974396c6f63616c686f737483747631")).unwrap();
        let (outer, r) = client().seal_request(&request, 20).unwrap();
        assert_eq!(
            outer.to_bytes().unwrap(),
            hex("44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e")
        );
        let opt =
            OscoreOption::decode(outer.get_first_option(CoapOption::Oscore).unwrap()).unwrap();
        let (inner, seen) = server().open_request(&outer, &opt).unwrap();
        assert_eq!(seen, r);
        assert_eq!(inner.to_bytes().unwrap(), request.to_bytes().unwrap());

        let response =
            Packet::from_bytes(&hex("64455d1f00003974ff48656c6c6f20576f726c6421")).unwrap();
        for (own, expected) in [
            (
                None,
                "64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106",
            ),
            (
                Some(0),
                "64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e",
            ),
        ] {
            let mut sealed = server().seal_response(&r, &response, own).unwrap();
            sealed.header = response.header.clone();
            sealed.header.code = MessageClass::Response(ResponseType::Changed);
            sealed.set_token(response.get_token().to_vec());
            assert_eq!(sealed.to_bytes().unwrap(), hex(expected));
            let opened = client().open_response(&r, &sealed).unwrap();
            assert_eq!(opened.payload, b"Hello World!");
            assert_eq!(
                opened.header.code,
                MessageClass::Response(ResponseType::Content)
            );
        }
    }

    #[test]
    fn a_wrong_key_or_a_changed_byte_fails_decryption() {
        let request =
            Packet::from_bytes(&hex("44015d1f00003974396c6f63616c686f737483747631")).unwrap();
        let (mut outer, _) = client().seal_request(&request, 7).unwrap();
        let value = outer.get_first_option(CoapOption::Oscore).unwrap().clone();
        let opt = OscoreOption::decode(&value).unwrap();
        let other = Context::new(&[9; 16], &hex(SALT), &[1], &[]).unwrap();
        assert_eq!(
            other.open_request(&outer, &opt).unwrap_err(),
            OscoreError::DecryptionFailed
        );
        outer.payload[2] ^= 0x40;
        assert_eq!(
            server().open_request(&outer, &opt).unwrap_err(),
            OscoreError::DecryptionFailed
        );
        assert!(Context::new(&[1; 16], &[], &[0; 8], &[]).is_err());
    }
}

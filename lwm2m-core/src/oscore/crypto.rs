//! The cryptographic core of OSCORE with its default algorithms (RFC 8613 §3.2, §5.2, §5.4):
//! key derivation with HKDF-SHA-256, the AEAD nonce, the additional authenticated data
//! (COSE `Enc_structure`), and AES-CCM-16-64-128 (COSE algorithm 10) in place, its 8-byte tag
//! detached. No allocation: the CBOR structures are written into fixed arrays.

use core::fmt;

use aes::Aes128;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U8, U13};
use hkdf::Hkdf;
use sha2::Sha256;

use super::CryptoError;

type AesCcm16_64_128 = ccm::Ccm<Aes128, U8, U13>;

/// COSE algorithm number of AES-CCM-16-64-128.
pub const ALG_AES_CCM_16_64_128: u8 = 10;
/// AES-128 key length.
pub const KEY_LEN: usize = 16;
/// AES-CCM-16-64-128 nonce length.
pub const NONCE_LEN: usize = 13;
/// AES-CCM-16-64-128 tag length.
pub const TAG_LEN: usize = 8;
/// Longest Sender or Recipient ID with this algorithm (nonce length − 6, RFC 8613 §3.3).
pub const MAX_ID_LEN: usize = 7;
/// Longest Partial IV (RFC 8613 §6.1: 5 bytes, so sequence numbers below 2^40).
pub const MAX_PIV_LEN: usize = 5;
/// Longest ID Context this implementation derives keys for.
pub const MAX_ID_CONTEXT_LEN: usize = 32;
/// Longest AAD ([`aad`]): a 7-byte kid and a 5-byte Partial IV.
pub const MAX_AAD_LEN: usize = 40;

const _: () = assert!(MAX_ID_LEN == NONCE_LEN - 6);

/// What a security context derives from its Master Secret (RFC 8613 §3.2.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    /// Protects what we send.
    pub sender_key: [u8; KEY_LEN],
    /// Opens what we receive.
    pub recipient_key: [u8; KEY_LEN],
    /// XORed into every nonce.
    pub common_iv: [u8; NONCE_LEN],
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(<secret>)")
    }
}

impl Keys {
    /// Derives the Sender Key, Recipient Key and Common IV. An empty `salt` is the default
    /// Master Salt.
    pub fn derive(
        secret: &[u8],
        salt: &[u8],
        id_context: Option<&[u8]>,
        sender_id: &[u8],
        recipient_id: &[u8],
    ) -> Result<Keys, CryptoError> {
        for (recipient, id) in [(false, sender_id), (true, recipient_id)] {
            if id.len() > MAX_ID_LEN {
                return Err(CryptoError::IdTooLong {
                    recipient,
                    len: id.len(),
                });
            }
        }
        if id_context.is_some_and(|c| c.len() > MAX_ID_CONTEXT_LEN) {
            return Err(CryptoError::IdContextTooLong);
        }
        let hk = Hkdf::<Sha256>::new(Some(salt), secret);
        let mut keys = Keys {
            sender_key: [0; KEY_LEN],
            recipient_key: [0; KEY_LEN],
            common_iv: [0; NONCE_LEN],
        };
        let mut buf = [0u8; INFO_CAP];
        let i = info(&mut buf, sender_id, id_context, "Key", KEY_LEN)?;
        hk.expand(i, &mut keys.sender_key)
            .map_err(|_| CryptoError::TooLong)?;
        let i = info(&mut buf, recipient_id, id_context, "Key", KEY_LEN)?;
        hk.expand(i, &mut keys.recipient_key)
            .map_err(|_| CryptoError::TooLong)?;
        let i = info(&mut buf, &[], id_context, "IV", NONCE_LEN)?;
        hk.expand(i, &mut keys.common_iv)
            .map_err(|_| CryptoError::TooLong)?;
        Ok(keys)
    }
}

const INFO_CAP: usize = 16 + MAX_ID_LEN + MAX_ID_CONTEXT_LEN;

/// A CBOR writer into a fixed buffer; it remembers an overflow instead of panicking.
struct Cbor<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Cbor<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Cbor {
            buf,
            len: 0,
            overflow: false,
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let end = self.len.checked_add(bytes.len());
        match end.and_then(|end| self.buf.get_mut(self.len..end).map(|d| (d, end))) {
            Some((dst, end)) => {
                dst.copy_from_slice(bytes);
                self.len = end;
            }
            None => self.overflow = true,
        }
    }

    /// A head (major type, argument) in the shortest form.
    fn head(&mut self, major: u8, n: usize) {
        let m = major.wrapping_shl(5);
        match (u8::try_from(n), u16::try_from(n)) {
            (Ok(small), _) if small <= 23 => self.bytes(&[m | small]),
            (Ok(byte), _) => self.bytes(&[m | 24, byte]),
            (_, Ok(short)) => {
                let [a, b] = short.to_be_bytes();
                self.bytes(&[m | 25, a, b]);
            }
            _ => self.overflow = true,
        }
    }

    fn bstr(&mut self, bytes: &[u8]) {
        self.head(2, bytes.len());
        self.bytes(bytes);
    }

    fn finish(self) -> Result<&'a [u8], CryptoError> {
        if self.overflow {
            return Err(CryptoError::TooLong);
        }
        self.buf.get(..self.len).ok_or(CryptoError::TooLong)
    }
}

/// `info = [id, id_context, alg_aead, type, L]` (RFC 8613 §3.2.1).
fn info<'a>(
    buf: &'a mut [u8],
    id: &[u8],
    id_context: Option<&[u8]>,
    kind: &str,
    len: usize,
) -> Result<&'a [u8], CryptoError> {
    let mut w = Cbor::new(buf);
    w.head(4, 5);
    w.bstr(id);
    match id_context {
        Some(c) => w.bstr(c),
        None => w.bytes(&[0xf6]), // null
    }
    w.head(0, ALG_AES_CCM_16_64_128.into());
    w.head(3, kind.len());
    w.bytes(kind.as_bytes());
    w.head(0, len);
    w.finish()
}

/// The AEAD nonce (RFC 8613 §5.2): the ID of whoever made the Partial IV and the Partial IV,
/// padded, XORed with the Common IV. Longer IDs or Partial IVs are cut to their last 7 and 5
/// bytes (callers refuse them before).
pub fn nonce(common_iv: &[u8; NONCE_LEN], id_piv: &[u8], piv: &[u8]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    let id = id_piv
        .get(id_piv.len().saturating_sub(MAX_ID_LEN)..)
        .unwrap_or_default();
    let piv = piv
        .get(piv.len().saturating_sub(MAX_PIV_LEN)..)
        .unwrap_or_default();
    // n = [len(id)] || 0-padded id (7 bytes) || 0-padded piv (5 bytes)
    let (first, rest) = n.split_at_mut(1);
    let (id_field, piv_field) = rest.split_at_mut(MAX_ID_LEN);
    if let Some(b) = first.first_mut() {
        *b = id.len() as u8; // at most 7
    }
    let id_at = MAX_ID_LEN.saturating_sub(id.len());
    if let Some(dst) = id_field.get_mut(id_at..) {
        dst.copy_from_slice(id);
    }
    let piv_at = MAX_PIV_LEN.saturating_sub(piv.len());
    if let Some(dst) = piv_field.get_mut(piv_at..) {
        dst.copy_from_slice(piv);
    }
    for (b, iv) in n.iter_mut().zip(common_iv) {
        *b ^= iv;
    }
    n
}

/// The AAD, written into `buf` (at least [`MAX_AAD_LEN`]):
/// `Enc_structure = ["Encrypt0", h'', external_aad]` with
/// `external_aad = bstr .cbor [1, [alg], request_kid, request_piv, h'']` (RFC 8613 §5.4; no
/// Class I options).
pub fn aad<'a>(
    buf: &'a mut [u8],
    request_kid: &[u8],
    request_piv: &[u8],
) -> Result<&'a [u8], CryptoError> {
    let mut ext = [0u8; MAX_AAD_LEN];
    let mut e = Cbor::new(&mut ext);
    e.head(4, 5);
    e.head(0, 1);
    e.head(4, 1);
    e.head(0, ALG_AES_CCM_16_64_128.into());
    e.bstr(request_kid);
    e.bstr(request_piv);
    e.bstr(&[]);
    let external = e.finish()?;
    let mut w = Cbor::new(buf);
    w.head(4, 3);
    w.head(3, 8);
    w.bytes(b"Encrypt0");
    w.bstr(&[]);
    w.bstr(external);
    w.finish()
}

/// Encrypts `buf` in place; returns the tag.
pub fn seal_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], CryptoError> {
    let cipher = AesCcm16_64_128::new(&(*key).into());
    let tag = cipher
        .encrypt_inout_detached(&(*nonce).into(), aad, buf.into())
        .map_err(|_| CryptoError::TooLong)?;
    Ok(tag.into())
}

/// Decrypts `buf` in place and verifies `tag`; on failure the content of `buf` is unspecified.
pub fn open_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), CryptoError> {
    let cipher = AesCcm16_64_128::new(&(*key).into());
    cipher
        .decrypt_inout_detached(&(*nonce).into(), aad, buf.into(), &(*tag).into())
        .map_err(|_| CryptoError::DecryptionFailed)
}

/// Decrypts `ciphertext || tag` in place: the plaintext is the first `len - 8` bytes after.
pub fn open_with_tag(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<usize, CryptoError> {
    let at = buf
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(CryptoError::DecryptionFailed)?;
    let (body, tag) = buf.split_at_mut(at);
    let tag: [u8; TAG_LEN] = (&*tag)
        .try_into()
        .map_err(|_| CryptoError::DecryptionFailed)?;
    open_in_place(key, nonce, aad, body, &tag)?;
    Ok(at)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    pub fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub const SECRET: &str = "0102030405060708090a0b0c0d0e0f10";
    pub const SALT: &str = "9e7ca92223786340";

    fn seal(key: &[u8; 16], n: &[u8; 13], a: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut buf = plain.to_vec();
        let tag = seal_in_place(key, n, a, &mut buf).unwrap();
        buf.extend_from_slice(&tag);
        buf
    }

    /// RFC 8613 Appendix C.1.1 and C.1.2.
    #[test]
    fn key_derivation_matches_rfc8613_c1() {
        let mut b = [0u8; INFO_CAP];
        assert_eq!(
            info(&mut b, &[], None, "Key", 16).unwrap(),
            hex("8540f60a634b657910")
        );
        assert_eq!(
            info(&mut b, &[1], None, "Key", 16).unwrap(),
            hex("854101f60a634b657910")
        );
        assert_eq!(
            info(&mut b, &[], None, "IV", 13).unwrap(),
            hex("8540f60a6249560d")
        );
        let client = Keys::derive(&hex(SECRET), &hex(SALT), None, &[], &[1]).unwrap();
        assert_eq!(
            client.sender_key.to_vec(),
            hex("f0910ed7295e6ad4b54fc793154302ff")
        );
        assert_eq!(
            client.recipient_key.to_vec(),
            hex("ffb14e093c94c9cac9471648b4f98710")
        );
        assert_eq!(client.common_iv.to_vec(), hex("4622d4dd6d944168eefb54987c"));
        let server = Keys::derive(&hex(SECRET), &hex(SALT), None, &[1], &[]).unwrap();
        assert_eq!(server.sender_key, client.recipient_key);
        assert_eq!(server.recipient_key, client.sender_key);
        assert_eq!(
            nonce(&client.common_iv, &[], &[0]).to_vec(),
            hex("4622d4dd6d944168eefb54987c")
        );
        assert_eq!(
            nonce(&client.common_iv, &[1], &[0]).to_vec(),
            hex("4722d4dd6d944169eefb54987c")
        );
        assert_eq!(
            Keys::derive(&[1; 16], &[], None, &[0; 8], &[]),
            Err(CryptoError::IdTooLong {
                recipient: false,
                len: 8
            })
        );
    }

    /// RFC 8613 Appendix C.4 (request, client sequence number 20) and C.7 (its response).
    #[test]
    fn aead_matches_rfc8613_c4_and_c7() {
        let client = Keys::derive(&hex(SECRET), &hex(SALT), None, &[], &[1]).unwrap();
        let n = nonce(&client.common_iv, &[], &[0x14]);
        assert_eq!(n.to_vec(), hex("4622d4dd6d944168eefb549868"));
        let mut ab = [0u8; MAX_AAD_LEN];
        let a = aad(&mut ab, &[], &[0x14]).unwrap().to_vec();
        assert_eq!(a, hex("8368456e63727970743040488501810a40411440"));
        let c = seal(&client.sender_key, &n, &a, &hex("01b3747631"));
        assert_eq!(c, hex("612f1092f1776f1c1668b3825e"));
        let mut opened = c.clone();
        let len = open_with_tag(&client.sender_key, &n, &a, &mut opened).unwrap();
        assert_eq!(&opened[..len], hex("01b3747631"));
        let r = seal(
            &client.recipient_key,
            &n,
            &a,
            &hex("45ff48656c6c6f20576f726c6421"),
        );
        assert_eq!(r, hex("dbaad1e9a7e7b2a813d3c31524378303cdafae119106"));
        let mut bad = c.clone();
        bad[0] ^= 1;
        assert_eq!(
            open_with_tag(&client.sender_key, &n, &a, &mut bad),
            Err(CryptoError::DecryptionFailed)
        );
        let mut short = c[..7].to_vec();
        assert_eq!(
            open_with_tag(&client.sender_key, &n, &a, &mut short),
            Err(CryptoError::DecryptionFailed)
        );
        // The longest kid and Partial IV fit the AAD buffer.
        assert!(aad(&mut ab, &[7; 7], &[5; 5]).is_ok());
    }
}

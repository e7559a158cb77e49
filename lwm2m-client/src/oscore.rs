//! OSCORE (RFC 8613) on the device, sans-IO and without allocation (feature `oscore`): a filter
//! between the engine and the network, as the DTLS socket is on the host. It protects every
//! request the engine sends to its LwM2M server (Register, Update, De-register, block GETs) and
//! every answer to the server's requests, and unprotects what the server sends, in the caller's
//! buffers. Once configured, the device serves nothing that is not protected by its server's
//! context: an unprotected request, or one from another peer, is answered 4.01 here and never
//! reaches the engine (so it cannot change its state); a failed verification gets RFC 8613
//! §8.2's unprotected error.
//!
//! Its state (keys, sequence number, replay window, the requests in flight) lives outside
//! [`Engine`](crate::engine::Engine), which stays within its RAM budget.
//!
//! Sequence numbers across reboots (Appendix B.1): the sender's is reserved in the persistent
//! store [`SEQ_STEP`] ahead before a number is used ([`SeqStore`]), so a reboot skips at most
//! that many and never reuses a nonce; the receiver's window is not stored: after a boot the
//! first authentic request from the server is answered with a protected 4.01 carrying an Echo
//! option (RFC 9175, Appendix B.1.2), and the server's repeat with that value starts the window.
//!
//! Framing in place: the device's messages carry no Class U option (Uri-Host, Uri-Port,
//! Proxy-*), so the plaintext is the code followed by the message's own option and payload
//! bytes, unchanged. Observe is not offered over OSCORE (notifications need Partial IVs of
//! their own; the server does not observe an OSCORE device): a message with Observe is dropped.

use core::net::SocketAddr;

use lwm2m_core::coap::{Code, Message, MessageType, option};
use lwm2m_core::oscore::crypto::{self, MAX_AAD_LEN, NONCE_LEN, TAG_LEN};
use lwm2m_core::oscore::option::{self as opt, OscoreOption, Piv};
use lwm2m_core::oscore::{CryptoError, ECHO, Keys, MAX_ID_LEN, OPTION, ReplayWindow, SenderSeq};

/// How far ahead the sender sequence number is reserved in the store (K of Appendix B.1.1):
/// one store per this many protected messages, up to this many numbers skipped at a reboot.
pub const SEQ_STEP: u64 = 64;
/// Requests of ours whose answers are awaited (the engine's exchange slots).
const OUT_REQUESTS: usize = crate::engine::limits::EXCHANGE_SLOTS;
/// Requests of the server's that the engine may still answer (or answer again).
const IN_REQUESTS: usize = 4;
/// Longest OSCORE option (header byte, length byte, value): flags, Partial IV, kid.
const OPTION_OVERHEAD: usize = 2 + opt::MAX_LEN_NO_CONTEXT;
/// What protection adds to a message at most: the option, the payload marker, the code moved
/// inside, the tag.
pub const OVERHEAD: usize = OPTION_OVERHEAD + 2 + TAG_LEN;

/// Where the sender sequence number's reservation is kept.
pub trait SeqStore {
    /// Makes `reserved` durable before any number below it is used; false if it failed (then
    /// nothing is sent).
    fn reserve(&mut self, reserved: u64) -> bool;
}

/// A Sender or Recipient ID (at most 7 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id {
    bytes: [u8; MAX_ID_LEN],
    len: u8,
}

impl Id {
    /// None if longer than 7 bytes.
    pub fn new(id: &[u8]) -> Option<Id> {
        let mut bytes = [0; MAX_ID_LEN];
        bytes.get_mut(..id.len())?.copy_from_slice(id);
        Some(Id {
            bytes,
            len: u8::try_from(id.len()).ok()?,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// Why a context cannot be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A Sender or Recipient ID longer than 7 bytes.
    IdTooLong,
    /// The Sender and Recipient IDs are equal (their nonces would collide).
    SameIds,
    /// No Master Secret.
    NoSecret,
    /// A Master Secret over 32 bytes or a Master Salt over 16, more than a device keeps.
    TooLong,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::IdTooLong => "an OSCORE Sender or Recipient ID has at most 7 bytes",
            ConfigError::SameIds => "the OSCORE Sender and Recipient IDs must differ",
            ConfigError::NoSecret => "the OSCORE Master Secret is empty",
            ConfigError::TooLong => {
                "a device keeps an OSCORE Master Secret of at most 32 bytes and a Salt of at most 16"
            }
        })
    }
}

/// Longest Master Secret a device keeps.
pub const MAX_SECRET_LEN: usize = 32;
/// Longest Master Salt a device keeps.
pub const MAX_SALT_LEN: usize = 16;

/// A context as provisioned into the device's settings (at the factory, beside the trust anchor
/// and outside the updatable image): IDs, Master Secret and Salt. Stored by
/// `storage::persist::store_oscore_context`; never readable over LwM2M.
#[derive(Clone, PartialEq, Eq)]
pub struct Provisioned {
    sender_id: Id,
    recipient_id: Id,
    secret: [u8; MAX_SECRET_LEN],
    secret_len: u8,
    salt: [u8; MAX_SALT_LEN],
    salt_len: u8,
}

impl core::fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Provisioned")
            .field("sender_id", &self.sender_id)
            .field("recipient_id", &self.recipient_id)
            .finish_non_exhaustive()
    }
}

impl Provisioned {
    /// Longest encoding: four length bytes and the fields at their longest.
    pub const MAX_ENCODED_LEN: usize = 4 + 2 * MAX_ID_LEN + MAX_SECRET_LEN + MAX_SALT_LEN;

    pub fn new(
        sender_id: &[u8],
        recipient_id: &[u8],
        secret: &[u8],
        salt: &[u8],
    ) -> Result<Provisioned, ConfigError> {
        let s = Id::new(sender_id).ok_or(ConfigError::IdTooLong)?;
        let r = Id::new(recipient_id).ok_or(ConfigError::IdTooLong)?;
        if s == r {
            return Err(ConfigError::SameIds);
        }
        if secret.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        if secret.len() > MAX_SECRET_LEN || salt.len() > MAX_SALT_LEN {
            return Err(ConfigError::TooLong);
        }
        let mut p = Provisioned {
            sender_id: s,
            recipient_id: r,
            secret: [0; MAX_SECRET_LEN],
            secret_len: secret.len() as u8,
            salt: [0; MAX_SALT_LEN],
            salt_len: salt.len() as u8,
        };
        p.secret
            .get_mut(..secret.len())
            .ok_or(ConfigError::TooLong)?
            .copy_from_slice(secret);
        p.salt
            .get_mut(..salt.len())
            .ok_or(ConfigError::TooLong)?
            .copy_from_slice(salt);
        Ok(p)
    }

    fn secret(&self) -> &[u8] {
        self.secret
            .get(..usize::from(self.secret_len))
            .unwrap_or_default()
    }

    fn salt(&self) -> &[u8] {
        self.salt
            .get(..usize::from(self.salt_len))
            .unwrap_or_default()
    }

    /// `len || sender id || len || recipient id || len || secret || len || salt`.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let mut at = 0usize;
        for field in [
            self.sender_id.as_bytes(),
            self.recipient_id.as_bytes(),
            self.secret(),
            self.salt(),
        ] {
            *out.get_mut(at)? = u8::try_from(field.len()).ok()?;
            let start = at.checked_add(1)?;
            let end = start.checked_add(field.len())?;
            out.get_mut(start..end)?.copy_from_slice(field);
            at = end;
        }
        Some(at)
    }

    pub fn decode(mut bytes: &[u8]) -> Option<Provisioned> {
        let mut fields: [&[u8]; 4] = [&[]; 4];
        for f in fields.iter_mut() {
            let (&len, rest) = bytes.split_first()?;
            let (field, rest) = rest.split_at_checked(usize::from(len))?;
            *f = field;
            bytes = rest;
        }
        let [sid, rid, secret, salt] = fields;
        Provisioned::new(sid, rid, secret, salt).ok()
    }

    /// The context state of one boot (see [`Oscore::new`]).
    pub fn context(
        &self,
        server: SocketAddr,
        reserved: u64,
        seed: u64,
    ) -> Result<Oscore, ConfigError> {
        Oscore::new(
            server,
            self.secret(),
            self.salt(),
            self.sender_id.as_bytes(),
            self.recipient_id.as_bytes(),
            reserved,
            seed,
        )
    }
}

/// What [`Oscore::unprotect`] made of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Give the datagram to the engine as it came (empty ACKs and Resets, another peer's
    /// responses).
    Pass,
    /// Give the first `n` bytes of the output buffer to the engine: the unprotected message.
    Inner(usize),
    /// Send the first `n` bytes of the output buffer back to the sender, and nothing to the
    /// engine: a refusal, or the Echo challenge.
    Reply(usize),
    /// Nothing to do (a response that does not verify, or one we cannot open).
    Drop,
}

/// Why the device last dropped or refused something of its server's (for the driver's log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server answered our protected request without OSCORE: its code (4.01 "Security
    /// context not found", 4.00 "Decryption failed", ...).
    Unprotected(Code),
    /// A response from the server did not verify.
    DecryptionFailed,
    /// A request from the server that was refused with this code.
    Request(Code),
}

#[derive(Clone, Copy)]
struct OutReq {
    message_id: u16,
    token: [u8; 8],
    tkl: u8,
    seq: u64,
}

#[derive(Clone, Copy)]
struct InReq {
    message_id: u16,
    token: [u8; 8],
    tkl: u8,
    seq: u64,
}

/// The device's OSCORE context with its server and the state that goes with it.
pub struct Oscore {
    server: SocketAddr,
    sender_id: Id,
    recipient_id: Id,
    keys: Keys,
    seq: SenderSeq,
    /// None after a boot, until the server answered an Echo challenge.
    window: Option<ReplayWindow>,
    echo: Option<[u8; 8]>,
    rng: u64,
    out: [Option<OutReq>; OUT_REQUESTS],
    next_out: usize,
    inq: [Option<InReq>; IN_REQUESTS],
    next_in: usize,
    refusal: Option<Refusal>,
}

fn token_of(t: &[u8]) -> ([u8; 8], u8) {
    let mut token = [0u8; 8];
    let n = t.len().min(8);
    if let (Some(dst), Some(src)) = (token.get_mut(..n), t.get(..n)) {
        dst.copy_from_slice(src);
    }
    (token, n as u8)
}

impl Oscore {
    /// The context with `server` after a boot: `reserved` is what the [`SeqStore`] holds (0 for
    /// a new context); `seed` varies the Echo values (a hardware RNG on the board).
    pub fn new(
        server: SocketAddr,
        master_secret: &[u8],
        master_salt: &[u8],
        sender_id: &[u8],
        recipient_id: &[u8],
        reserved: u64,
        seed: u64,
    ) -> Result<Oscore, ConfigError> {
        if master_secret.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        let s = Id::new(sender_id).ok_or(ConfigError::IdTooLong)?;
        let r = Id::new(recipient_id).ok_or(ConfigError::IdTooLong)?;
        if s == r {
            return Err(ConfigError::SameIds);
        }
        let keys = Keys::derive(master_secret, master_salt, None, sender_id, recipient_id)
            .map_err(|_| ConfigError::IdTooLong)?;
        Ok(Oscore {
            server,
            sender_id: s,
            recipient_id: r,
            keys,
            seq: SenderSeq::resume(reserved),
            window: None,
            echo: None,
            rng: seed | 1,
            out: [None; OUT_REQUESTS],
            next_out: 0,
            inq: [None; IN_REQUESTS],
            next_in: 0,
            refusal: None,
        })
    }

    /// The server this context is with.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The sender reservation in force (every number below it may have been used).
    pub fn reserved(&self) -> u64 {
        self.seq.reserved()
    }

    /// What the device last refused or dropped of its server's, and forgets it.
    pub fn take_refusal(&mut self) -> Option<Refusal> {
        self.refusal.take()
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: Echo values need only be unpredictable to an off-path sender.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn next_seq(&mut self, store: &mut dyn SeqStore) -> Option<u64> {
        match self.seq.next(
            SEQ_STEP,
            |r| if store.reserve(r) { Ok(()) } else { Err(()) },
        ) {
            Ok(Ok(seq)) => Some(seq),
            _ => None,
        }
    }

    // ---- out ----

    /// Protects the datagram in `buf[..len]` that the engine sends to `peer`, in place; returns
    /// the new length, or None if it must not be sent (no room, a message we cannot protect, the
    /// sequence number could not be reserved). Datagrams to other peers, empty ACKs and Resets
    /// pass unchanged.
    pub fn protect(
        &mut self,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
        store: &mut dyn SeqStore,
    ) -> Option<usize> {
        if peer != self.server {
            return Some(len);
        }
        let (code, mid, token, tkl, body_at) = {
            let msg = Message::decode(buf.get(..len)?).ok()?;
            if msg.code.is_empty() {
                return Some(len);
            }
            // No Class U option and no Observe (see the module doc).
            if msg.options().any(|(n, _)| {
                matches!(
                    n,
                    option::URI_HOST
                        | option::URI_PORT
                        | option::OBSERVE
                        | OPTION
                        | option::PROXY_URI
                        | option::PROXY_SCHEME
                )
            }) {
                return None;
            }
            let (token, tkl) = token_of(msg.token());
            let body_at = coap::HEADER_LEN.checked_add(msg.token().len())?;
            (msg.code, msg.message_id, token, tkl, body_at)
        };
        let mut value = [0u8; opt::MAX_LEN_NO_CONTEXT];
        let (outer_code, nonce, aad_kid, aad_piv, vlen);
        if code.is_request() {
            let known = self
                .out
                .iter()
                .flatten()
                .find(|r| r.message_id == mid && r.token == token && r.tkl == tkl)
                .map(|r| r.seq);
            let seq = match known {
                // A retransmission: the same number, so the same bytes.
                Some(seq) => seq,
                None => {
                    let seq = self.next_seq(store)?;
                    if let Some(slot) = self.out.get_mut(self.next_out) {
                        *slot = Some(OutReq {
                            message_id: mid,
                            token,
                            tkl,
                            seq,
                        });
                    }
                    self.next_out = self.next_out.saturating_add(1) % OUT_REQUESTS;
                    seq
                }
            };
            let piv = Piv::of(seq);
            vlen = OscoreOption {
                piv: Some(piv.as_bytes()),
                kid_context: None,
                kid: Some(self.sender_id.as_bytes()),
            }
            .encode(&mut value)
            .ok()?;
            nonce = crypto::nonce(
                &self.keys.common_iv,
                self.sender_id.as_bytes(),
                piv.as_bytes(),
            );
            aad_kid = self.sender_id;
            aad_piv = piv;
            outer_code = Code::POST;
        } else {
            // An answer to a request of the server's: bound to it, with its nonce.
            let req = self
                .inq
                .iter()
                .flatten()
                .find(|r| r.token == token && r.tkl == tkl)?;
            let piv = Piv::of(req.seq);
            vlen = 0;
            nonce = crypto::nonce(
                &self.keys.common_iv,
                self.recipient_id.as_bytes(),
                piv.as_bytes(),
            );
            aad_kid = self.recipient_id;
            aad_piv = piv;
            outer_code = Code::CHANGED;
        }
        let mut aad_buf = [0u8; MAX_AAD_LEN];
        let aad = crypto::aad(&mut aad_buf, aad_kid.as_bytes(), aad_piv.as_bytes()).ok()?;
        let value = value.get(..vlen)?;
        seal_into(
            buf,
            len,
            body_at,
            code,
            outer_code,
            value,
            &self.keys.sender_key,
            &nonce,
            aad,
        )
    }

    // ---- in ----

    /// Looks at a datagram from `from`: passes it, unprotects it into `out` (at least as long as
    /// `data`, and at least 64 bytes), or writes a reply into `out`.
    pub fn unprotect(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        out: &mut [u8],
        store: &mut dyn SeqStore,
    ) -> Incoming {
        let Ok(msg) = Message::decode(data) else {
            // The engine rejects it (a Reset for a CON that does not decode).
            return Incoming::Pass;
        };
        if msg.code.is_empty() {
            return Incoming::Pass;
        }
        let protected = msg.option(OPTION);
        if from != self.server || protected.is_none() {
            if msg.code.is_request() {
                // Nobody but the server, under OSCORE, may ask the device anything.
                self.refusal = Some(Refusal::Request(Code::UNAUTHORIZED));
                return self.plain_error(&msg, Code::UNAUTHORIZED, b"OSCORE required", out);
            }
            if from == self.server {
                // The server could not verify our request: 4.01, 4.00, 4.02 (§8.2).
                self.refusal = Some(Refusal::Unprotected(msg.code));
                return Incoming::Drop;
            }
            return Incoming::Pass;
        }
        let Some(Ok(option)) = protected.map(OscoreOption::decode) else {
            return if msg.code.is_request() {
                self.plain_error(&msg, Code::BAD_OPTION, b"Bad OSCORE option", out)
            } else {
                Incoming::Drop
            };
        };
        if msg.code.is_request() {
            self.request(&msg, &option, out, store)
        } else {
            self.response(&msg, &option, out)
        }
    }

    fn request(
        &mut self,
        msg: &Message<'_>,
        option: &OscoreOption<'_>,
        out: &mut [u8],
        store: &mut dyn SeqStore,
    ) -> Incoming {
        let (Some(kid), Some(piv)) = (option.kid, option.piv) else {
            return self.plain_error(msg, Code::BAD_OPTION, b"Bad OSCORE option", out);
        };
        if kid != self.recipient_id.as_bytes() || option.kid_context.is_some() {
            self.refusal = Some(Refusal::Request(Code::UNAUTHORIZED));
            return self.plain_error(msg, Code::UNAUTHORIZED, b"Security context not found", out);
        }
        let seq = opt::seq_of(piv);
        let (token, tkl) = token_of(msg.token());
        let duplicate = self
            .inq
            .iter()
            .flatten()
            .any(|r| r.message_id == msg.message_id && r.seq == seq && r.token == token);
        if !duplicate && self.window.as_ref().is_some_and(|w| !w.is_fresh(seq)) {
            self.refusal = Some(Refusal::Request(Code::UNAUTHORIZED));
            return self.plain_error(msg, Code::UNAUTHORIZED, b"Replay detected", out);
        }
        let rid = self.recipient_id;
        let Some(n) = self.open(msg, rid.as_bytes(), piv, rid.as_bytes(), piv, out) else {
            self.refusal = Some(Refusal::Request(Code::BAD_REQUEST));
            return self.plain_error(msg, Code::BAD_REQUEST, b"Decryption failed", out);
        };
        let echo_ok = {
            let Some(inner) = out.get(..n).and_then(|b| Message::decode(b).ok()) else {
                return self.plain_error(msg, Code::BAD_REQUEST, b"Decryption failed", out);
            };
            if !inner.code.is_request() || inner.option(OPTION).is_some() {
                return self.plain_error(msg, Code::BAD_REQUEST, b"Decryption failed", out);
            }
            match (inner.option(ECHO), self.echo) {
                (Some(v), Some(e)) => v == e.as_slice(),
                _ => false,
            }
        };
        if !duplicate {
            match &mut self.window {
                Some(w) => w.accept(seq),
                None if echo_ok => {
                    self.window = Some(ReplayWindow::starting_at(seq));
                    self.echo = None;
                }
                None => return self.challenge(msg, piv, out, store),
            }
        }
        if let Some(slot) = self.inq.get_mut(self.next_in) {
            *slot = Some(InReq {
                message_id: msg.message_id,
                token,
                tkl,
                seq,
            });
        }
        self.next_in = self.next_in.saturating_add(1) % IN_REQUESTS;
        Incoming::Inner(n)
    }

    fn response(
        &mut self,
        msg: &Message<'_>,
        option: &OscoreOption<'_>,
        out: &mut [u8],
    ) -> Incoming {
        let (token, tkl) = token_of(msg.token());
        let Some(req) = self
            .out
            .iter()
            .flatten()
            .find(|r| r.token == token && r.tkl == tkl)
            .copied()
        else {
            return Incoming::Drop;
        };
        let req_piv = Piv::of(req.seq);
        let sid = self.sender_id;
        let rid = self.recipient_id;
        let opened = match option.piv {
            Some(own) => self.open(
                msg,
                rid.as_bytes(),
                own,
                sid.as_bytes(),
                req_piv.as_bytes(),
                out,
            ),
            None => self.open(
                msg,
                sid.as_bytes(),
                req_piv.as_bytes(),
                sid.as_bytes(),
                req_piv.as_bytes(),
                out,
            ),
        };
        match opened {
            Some(n)
                if out
                    .get(..n)
                    .and_then(|b| Message::decode(b).ok())
                    .is_some_and(|m| m.code.is_response()) =>
            {
                Incoming::Inner(n)
            }
            _ => {
                self.refusal = Some(Refusal::DecryptionFailed);
                Incoming::Drop
            }
        }
    }

    /// Decrypts `msg`'s payload into `out` as the inner message under `msg`'s header and token;
    /// its length.
    fn open(
        &self,
        msg: &Message<'_>,
        nonce_id: &[u8],
        nonce_piv: &[u8],
        aad_kid: &[u8],
        aad_piv: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let nonce = crypto::nonce(&self.keys.common_iv, nonce_id, nonce_piv);
        let mut aad_buf = [0u8; MAX_AAD_LEN];
        let aad = crypto::aad(&mut aad_buf, aad_kid, aad_piv).ok()?;
        // The plaintext's code lands where the header's code goes... one byte before the
        // options: header and token, less one.
        let hb = coap::HEADER_LEN.checked_add(msg.token().len())?;
        let at = hb.checked_sub(1)?;
        let end = at.checked_add(msg.payload.len())?;
        let body = out.get_mut(at..end)?;
        body.copy_from_slice(msg.payload);
        let plain = crypto::open_with_tag(&self.keys.recipient_key, &nonce, aad, body).ok()?;
        let code = *out.get(at)?;
        let [hi, lo] = msg.message_id.to_be_bytes();
        let first = 0x40 | msg.ty.bits().wrapping_shl(4) | msg.token().len() as u8;
        let head = out.get_mut(..hb)?;
        let (h, t) = head.split_at_mut(coap::HEADER_LEN);
        h.copy_from_slice(&[first, code, hi, lo]);
        t.copy_from_slice(msg.token());
        at.checked_add(plain)
    }

    /// The protected 4.01 with an Echo option and a Partial IV of our own (Appendix B.1.2).
    fn challenge(
        &mut self,
        msg: &Message<'_>,
        req_piv: &[u8],
        out: &mut [u8],
        store: &mut dyn SeqStore,
    ) -> Incoming {
        let value = self.random().to_be_bytes();
        self.echo = Some(value);
        let Some(seq) = self.next_seq(store) else {
            return self.plain_error(msg, Code::INTERNAL_SERVER_ERROR, b"", out);
        };
        let ty = reply_type(msg.ty);
        let Ok(mut w) =
            coap::MessageWriter::new(out, ty, Code::UNAUTHORIZED, msg.message_id, msg.token())
        else {
            return Incoming::Drop;
        };
        if w.option(ECHO, &value).is_err() {
            return Incoming::Drop;
        }
        let Ok(len) = w.payload(&[]) else {
            return Incoming::Drop;
        };
        let piv = Piv::of(seq);
        let mut opt_value = [0u8; opt::MAX_LEN_NO_CONTEXT];
        let Ok(vlen) = (OscoreOption {
            piv: Some(piv.as_bytes()),
            kid_context: None,
            kid: None,
        })
        .encode(&mut opt_value) else {
            return Incoming::Drop;
        };
        let nonce = crypto::nonce(
            &self.keys.common_iv,
            self.sender_id.as_bytes(),
            piv.as_bytes(),
        );
        let mut aad_buf = [0u8; MAX_AAD_LEN];
        let rid = self.recipient_id;
        let Ok(aad) = crypto::aad(&mut aad_buf, rid.as_bytes(), req_piv) else {
            return Incoming::Drop;
        };
        let body_at = coap::HEADER_LEN.saturating_add(msg.token().len());
        match opt_value.get(..vlen) {
            Some(v) => seal_into(
                out,
                len,
                body_at,
                Code::UNAUTHORIZED,
                Code::CHANGED,
                v,
                &self.keys.sender_key,
                &nonce,
                aad,
            )
            .map_or(Incoming::Drop, Incoming::Reply),
            None => Incoming::Drop,
        }
    }

    /// An unprotected error answer (RFC 8613 §8.2) with Max-Age 0 and a diagnostic.
    fn plain_error(&self, msg: &Message<'_>, code: Code, text: &[u8], out: &mut [u8]) -> Incoming {
        let ty = reply_type(msg.ty);
        let Ok(mut w) = coap::MessageWriter::new(out, ty, code, msg.message_id, msg.token()) else {
            return Incoming::Drop;
        };
        if w.uint_option(option::MAX_AGE, 0).is_err() {
            return Incoming::Drop;
        }
        w.payload(text).map_or(Incoming::Drop, Incoming::Reply)
    }
}

use lwm2m_core::coap;

/// A piggybacked ACK answers a CON; a NON gets a NON.
fn reply_type(ty: MessageType) -> MessageType {
    match ty {
        MessageType::Confirmable => MessageType::Acknowledgement,
        _ => MessageType::NonConfirmable,
    }
}

/// Turns `buf[..len]`, a message whose options and payload start at `body_at`, into its
/// protected form in place: outer code `outer_code`, the OSCORE option `value`, the payload
/// marker, then `code || options || payload` encrypted, then the tag.
#[allow(clippy::too_many_arguments)]
fn seal_into(
    buf: &mut [u8],
    len: usize,
    body_at: usize,
    code: Code,
    outer_code: Code,
    value: &[u8],
    key: &[u8; 16],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
) -> Option<usize> {
    let rest = len.checked_sub(body_at)?;
    // Option 9 (delta 9 from 0): its length in the nibble up to 12, else 13 and one byte.
    let vlen = value.len();
    let (head, head_len) = match u8::try_from(vlen) {
        Ok(n @ 0..=12) => ([0x90 | n, 0], 1),
        Ok(n) => ([0x90 | 13, n.checked_sub(13)?], 2),
        Err(_) => return None,
    };
    let opt_head = head.get(..head_len)?;
    let opt_len = opt_head.len().checked_add(vlen)?;
    let plain_at = body_at.checked_add(opt_len)?.checked_add(1)?;
    let plain_len = rest.checked_add(1)?;
    let tag_at = plain_at.checked_add(plain_len)?;
    let total = tag_at.checked_add(TAG_LEN)?;
    if total > buf.len() {
        return None;
    }
    // Options and payload move right, behind the code byte.
    buf.copy_within(body_at..len, plain_at.checked_add(1)?);
    *buf.get_mut(plain_at)? = code.0;
    let head_end = body_at.checked_add(opt_head.len())?;
    buf.get_mut(body_at..head_end)?.copy_from_slice(opt_head);
    let value_end = head_end.checked_add(vlen)?;
    buf.get_mut(head_end..value_end)?.copy_from_slice(value);
    *buf.get_mut(value_end)? = coap::PAYLOAD_MARKER;
    *buf.get_mut(1)? = outer_code.0;
    let tag = crypto::seal_in_place(key, nonce, aad, buf.get_mut(plain_at..tag_at)?)
        .map_err(|_: CryptoError| ())
        .ok()?;
    buf.get_mut(tag_at..total)?.copy_from_slice(&tag);
    Some(total)
}

/// The reservation kept in the device flash's settings map (`storage::persist`), beside the
/// Object 5 record.
pub struct FlashSeqStore<'f, F: embedded_storage::nor_flash::NorFlash>(
    pub &'f crate::storage::layout::DeviceFlash<F>,
);

impl<F: embedded_storage::nor_flash::NorFlash> SeqStore for FlashSeqStore<'_, F> {
    fn reserve(&mut self, reserved: u64) -> bool {
        crate::storage::persist::store_oscore_seq(self.0, reserved).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{CoapOption, MessageClass, Packet, ResponseType};
    use lwm2m_core::coap::MessageWriter;
    use lwm2m_server::coap::oscore::{Context, OscoreOption as ServerOption};

    struct Disk(Vec<u64>);
    impl SeqStore for Disk {
        fn reserve(&mut self, reserved: u64) -> bool {
            self.0.push(reserved);
            true
        }
    }

    const SECRET: [u8; 16] = [7; 16];

    fn server_addr() -> SocketAddr {
        "[fd00::1]:5683".parse().unwrap()
    }

    /// The device's block GET, as the engine writes it.
    fn block_get(buf: &mut [u8]) -> usize {
        let mut w = MessageWriter::new(
            buf,
            MessageType::Confirmable,
            Code::GET,
            0x1234,
            &[1, 2, 3, 4],
        )
        .unwrap();
        w.path("/fw/0123456789abcdef/image").unwrap();
        w.uint_option(option::BLOCK2, 0x02).unwrap();
        w.payload(&[]).unwrap()
    }

    #[test]
    fn a_block_get_and_its_answer_interoperate_with_the_server_and_cost_14_and_11_bytes() {
        let mut dev = Oscore::new(server_addr(), &SECRET, &[], &[0xc1], &[0x5e], 0, 1).unwrap();
        let server = Context::new(&SECRET, &[], &[0x5e], &[0xc1]).unwrap();
        let mut disk = Disk(Vec::new());
        let mut buf = [0u8; 256];
        let plain_len = block_get(&mut buf);
        let plain = Packet::from_bytes(&buf[..plain_len]).unwrap();
        let n = dev
            .protect(server_addr(), &mut buf, plain_len, &mut disk)
            .unwrap();
        assert_eq!(
            n - plain_len,
            14,
            "flags, Partial IV, kid, marker, code, tag"
        );
        assert_eq!(disk.0, [SEQ_STEP]);
        let outer = Packet::from_bytes(&buf[..n]).unwrap();
        let value = outer.get_first_option(CoapOption::Oscore).unwrap().clone();
        let opt = ServerOption::decode(&value).unwrap();
        let (inner, r) = server.open_request(&outer, &opt).unwrap();
        assert_eq!(inner.to_bytes().unwrap(), plain.to_bytes().unwrap());
        // A retransmission: the same bytes (the same sequence number).
        let mut again = [0u8; 256];
        let len = block_get(&mut again);
        let m = dev
            .protect(server_addr(), &mut again, len, &mut disk)
            .unwrap();
        assert_eq!(again[..m], buf[..n]);

        let mut content = Packet::new();
        content.header.code = MessageClass::Response(ResponseType::Content);
        content.add_option(CoapOption::Block2, vec![0x0a]);
        content.payload = vec![0xab; 64];
        let mut sealed = server.seal_response(&r, &content, None).unwrap();
        sealed
            .header
            .set_type(coap_lite::MessageType::Acknowledgement);
        sealed.header.message_id = 0x1234;
        sealed.set_token(vec![1, 2, 3, 4]);
        let mut plain_answer = content.clone();
        plain_answer.header = sealed.header.clone();
        plain_answer.header.code = content.header.code;
        plain_answer.set_token(vec![1, 2, 3, 4]);
        let wire = sealed.to_bytes().unwrap();
        let plain_wire = plain_answer.to_bytes().unwrap();
        assert_eq!(
            wire.len() - plain_wire.len(),
            11,
            "empty option, code, the payload marker inside and outside, tag"
        );
        let mut out = [0u8; 512];
        let got = dev.unprotect(server_addr(), &wire, &mut out, &mut disk);
        let Incoming::Inner(k) = got else {
            panic!("{got:?}")
        };
        assert_eq!(out[..k], plain_wire[..]);
        // A changed byte: dropped, and said why.
        let mut bad = wire.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            dev.unprotect(server_addr(), &bad, &mut out, &mut disk),
            Incoming::Drop
        );
        assert_eq!(dev.take_refusal(), Some(Refusal::DecryptionFailed));
    }

    #[test]
    fn the_context_and_the_reservation_live_in_the_settings_map_beside_the_record() {
        use crate::storage::flash::HeapFlash;
        use crate::storage::layout::{DeviceFlash, Layout};
        use crate::storage::persist;
        let l = Layout::NRF52840;
        let flash = DeviceFlash::new(HeapFlash::new(l.end() as usize), l).unwrap();
        assert_eq!(persist::load_oscore_context(&flash).unwrap(), None);
        assert_eq!(persist::load_oscore_seq(&flash).unwrap(), None);
        let record = crate::platform::FirmwareRecord::default();
        persist::store(&flash, &record).unwrap();
        let p = Provisioned::new(&[0xc1], &[0x5e], &SECRET, &[]).unwrap();
        persist::store_oscore_context(&flash, &p).unwrap();
        let mut store = FlashSeqStore(&flash);
        let mut ctx = persist::load_oscore_context(&flash)
            .unwrap()
            .unwrap()
            .context(server_addr(), 0, 1)
            .unwrap();
        let mut buf = [0u8; 256];
        let len = block_get(&mut buf);
        ctx.protect(server_addr(), &mut buf, len, &mut store)
            .unwrap();
        assert_eq!(persist::load_oscore_seq(&flash).unwrap(), Some(SEQ_STEP));
        assert_eq!(persist::load(&flash).unwrap(), Some(record));
        assert_eq!(persist::load_oscore_context(&flash).unwrap(), Some(p));
    }

    #[test]
    fn a_provisioned_context_round_trips_and_bad_ones_are_refused() {
        let p = Provisioned::new(&[0xc1], &[], &SECRET, &[9; 8]).unwrap();
        let mut b = [0u8; Provisioned::MAX_ENCODED_LEN];
        let n = p.encode(&mut b).unwrap();
        assert_eq!(Provisioned::decode(&b[..n]), Some(p));
        assert_eq!(Provisioned::decode(&b[..n - 1]), None);
        assert_eq!(
            Provisioned::new(&[1; 8], &[], &SECRET, &[]),
            Err(ConfigError::IdTooLong)
        );
        assert_eq!(
            Provisioned::new(&[1], &[1], &SECRET, &[]),
            Err(ConfigError::SameIds)
        );
        assert_eq!(
            Provisioned::new(&[1], &[2], &[], &[]),
            Err(ConfigError::NoSecret)
        );
        assert_eq!(
            Provisioned::new(&[1], &[2], &[0; 33], &[]),
            Err(ConfigError::TooLong)
        );
    }
}

//! The server's OSCORE contexts, by the kid clients send (our Recipient ID), each with its
//! replay window, its sender sequence number and a pending Echo challenge.
//!
//! After a start the replay windows are gone (they are not written per request). Per RFC 8613
//! Appendix B.1.2 the first authentic request on each context is then not served but answered
//! 4.01 with an Echo option, protected with a Partial IV of our own; the client repeats the
//! request with that Echo value, and its sequence number starts the new window. A context
//! provisioned while the server runs starts with an empty window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use coap_lite::{CoapOption, Packet, ResponseType};

use super::message::{Context, RequestRef};
use super::option::OscoreOption;
use super::replay::{ReplayWindow, SenderSeq};
use super::{ECHO, OscoreError, identity_of};

/// Where the sender sequence number's reservation is kept (the store's `oscore_contexts`).
pub trait SeqStore: Send + Sync + std::panic::RefUnwindSafe {
    /// Makes `reserved` durable for `endpoint`'s context before any number below it is used.
    fn reserve_seq(&self, endpoint: &str, reserved: u64) -> Result<(), String>;
}

/// How far ahead the sender sequence number is reserved on disk (K of Appendix B.1.1). The
/// server uses its own numbers only for Echo challenges, so a small step wastes little.
pub const SEQ_STEP: u64 = 16;

struct Entry {
    endpoint: String,
    ctx: Context,
    seq: SenderSeq,
    /// None after a start, until an Echo exchange (Appendix B.1.2).
    window: Option<ReplayWindow>,
    echo: Option<[u8; 8]>,
}

/// A request that passed OSCORE: what its response must be bound to.
#[derive(Clone, Debug)]
pub struct Ticket {
    kid: Vec<u8>,
    request: RequestRef,
    /// Who the request speaks for ([`identity_of`] the kid).
    pub identity: String,
}

/// A request of ours to a device, protected: what its response is opened with.
#[derive(Clone, Debug)]
pub struct ClientTicket {
    kid: Vec<u8>,
    request: RequestRef,
}

/// The outcome of a protected request.
pub enum Incoming {
    /// Verified and fresh: serve `inner`, protect the answer with the ticket.
    Request { inner: Packet, ticket: Ticket },
    /// Authentic, but its freshness is unknown after a restart: send this protected 4.01 with
    /// an Echo option instead of serving it.
    Challenge(Packet),
}

/// The contexts by recipient ID, and each endpoint's recipient ID: what every request asks
/// (`has_endpoint`, `protect_request`) is a lookup, not a scan of the fleet.
#[derive(Default)]
struct Table {
    by_kid: HashMap<Vec<u8>, Entry>,
    kid_of: HashMap<String, Vec<u8>>,
}

impl Table {
    fn remove(&mut self, endpoint: &str) {
        if let Some(kid) = self.kid_of.remove(endpoint) {
            self.by_kid.remove(&kid);
        }
    }

    fn entry_of(&mut self, endpoint: &str) -> Option<(&Vec<u8>, &mut Entry)> {
        let kid = self.kid_of.get(endpoint)?;
        let e = self.by_kid.get_mut(kid)?;
        Some((kid, e))
    }
}

pub struct OscoreContexts {
    table: Mutex<Table>,
    store: Arc<dyn SeqStore>,
}

impl OscoreContexts {
    pub fn new(store: Arc<dyn SeqStore>) -> Self {
        OscoreContexts {
            table: Mutex::default(),
            store,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) `endpoint`'s context. `reserved` is the stored sender reservation;
    /// `fresh`: a context never used before (its window starts empty instead of needing Echo).
    pub fn insert(&self, endpoint: &str, ctx: Context, reserved: u64, fresh: bool) {
        let mut t = self.lock();
        t.remove(endpoint);
        let kid = ctx.recipient_id.clone();
        // A recipient ID given to another endpoint before is that endpoint's no more.
        if let Some(was) = t.by_kid.get(&kid).map(|e| e.endpoint.clone()) {
            t.kid_of.remove(&was);
        }
        t.kid_of.insert(endpoint.into(), kid.clone());
        t.by_kid.insert(
            kid,
            Entry {
                endpoint: endpoint.into(),
                ctx,
                seq: SenderSeq::resume(reserved),
                window: fresh.then(ReplayWindow::new),
                echo: None,
            },
        );
    }

    pub fn remove(&self, endpoint: &str) {
        self.lock().remove(endpoint);
    }

    /// The endpoint whose context has recipient ID `kid`.
    pub fn owner(&self, kid: &[u8]) -> Option<String> {
        self.lock().by_kid.get(kid).map(|e| e.endpoint.clone())
    }

    /// The endpoint whose context a request with [`identity_of`] `identity` used.
    pub fn identity_owner(&self, identity: &str) -> Option<String> {
        let kid = kid_of_identity(identity)?;
        self.owner(&kid)
    }

    /// Whether `endpoint` has a context (asked for each request: a lookup).
    pub fn has_endpoint(&self, endpoint: &str) -> bool {
        self.lock().kid_of.contains_key(endpoint)
    }

    /// The next sender sequence number of `e`, reserved on disk first.
    fn next_seq(store: &dyn SeqStore, e: &mut Entry) -> Result<u64, OscoreError> {
        let endpoint = e.endpoint.clone();
        match e.seq.next(SEQ_STEP, |r| store.reserve_seq(&endpoint, r)) {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(exhausted)) => Err(OscoreError::Internal(exhausted.to_string())),
            Err(why) => Err(OscoreError::Internal(format!(
                "cannot persist the OSCORE sequence number: {why}"
            ))),
        }
    }

    /// Verifies and decrypts a request carrying the OSCORE option (RFC 8613 §8.2).
    pub fn unprotect(&self, outer: &Packet) -> Result<Incoming, OscoreError> {
        let value = outer
            .get_first_option(CoapOption::Oscore)
            .ok_or(OscoreError::BadOption("no OSCORE option"))?;
        let opt = OscoreOption::decode(value)
            .map_err(|_| OscoreError::BadOption("the OSCORE option is malformed"))?;
        let kid = opt
            .kid
            .ok_or(OscoreError::BadOption("a request without a kid"))?;
        if opt.piv.is_none() {
            return Err(OscoreError::BadOption("a request without a Partial IV"));
        }
        let mut t = self.lock();
        let e = t.by_kid.get_mut(kid).ok_or(OscoreError::NoContext)?;
        if opt.kid_context != e.ctx.id_context.as_deref() {
            return Err(OscoreError::NoContext);
        }
        let seq = opt.piv.map(super::option::seq_of).unwrap_or(0);
        if e.window.as_ref().is_some_and(|w| !w.is_fresh(seq)) {
            return Err(OscoreError::Replay);
        }
        let (mut inner, request) = e.ctx.open_request(outer, &opt)?;
        let ticket = Ticket {
            kid: kid.to_vec(),
            identity: identity_of(kid),
            request,
        };
        match &mut e.window {
            Some(w) => w.accept(seq),
            None => {
                let echoed = inner.get_first_option(CoapOption::Unknown(ECHO));
                if e.echo
                    .is_some_and(|v| echoed.is_some_and(|x| x[..] == v[..]))
                {
                    e.window = Some(ReplayWindow::starting_at(seq));
                    e.echo = None;
                    inner.clear_option(CoapOption::Unknown(ECHO));
                } else {
                    let value: [u8; 8] = rand::random();
                    e.echo = Some(value);
                    let mut challenge = crate::coap::new_response(ResponseType::Unauthorized);
                    challenge.add_option(CoapOption::Unknown(ECHO), value.to_vec());
                    let own = Self::next_seq(self.store.as_ref(), e)?;
                    let sealed = e
                        .ctx
                        .seal_response(&ticket.request, &challenge, Some(own))?;
                    return Ok(Incoming::Challenge(sealed));
                }
            }
        }
        Ok(Incoming::Request { inner, ticket })
    }

    /// Protects a request of ours to `endpoint` with the next sender sequence number (reserved
    /// on disk first).
    pub fn protect_request(
        &self,
        endpoint: &str,
        request: &Packet,
    ) -> Result<(Packet, ClientTicket), OscoreError> {
        let mut t = self.lock();
        let (kid, e) = t.entry_of(endpoint).ok_or(OscoreError::NoContext)?;
        let seq = Self::next_seq(self.store.as_ref(), e)?;
        let (outer, request) = e.ctx.seal_request(request, seq)?;
        Ok((
            outer,
            ClientTicket {
                kid: kid.clone(),
                request,
            },
        ))
    }

    /// Verifies and decrypts a device's response to our request of `ticket`.
    pub fn unprotect_response(
        &self,
        ticket: &ClientTicket,
        outer: &Packet,
    ) -> Result<Packet, OscoreError> {
        if !super::is_protected(outer) {
            // The device could not or would not verify our request (RFC 8613 §8.2's errors).
            return Err(OscoreError::Unprotected(
                crate::dm::code_text(u8::from(outer.header.code)),
                String::from_utf8_lossy(&outer.payload).into_owned(),
            ));
        }
        let t = self.lock();
        let e = t.by_kid.get(&ticket.kid).ok_or(OscoreError::NoContext)?;
        e.ctx.open_response(&ticket.request, outer)
    }

    /// Protects the response to the request of `ticket` (with the request's nonce).
    pub fn protect(&self, ticket: &Ticket, response: &Packet) -> Result<Packet, OscoreError> {
        let t = self.lock();
        let e = t
            .by_kid
            .get(&ticket.kid)
            .ok_or_else(|| OscoreError::Internal("the OSCORE context was removed".into()))?;
        e.ctx.seal_response(&ticket.request, response, None)
    }
}

/// The kid an [`identity_of`] was made from (`oscore:` and lower-case hex); None for any other
/// string, so a lookup by it finds only what `identity_of` names.
fn kid_of_identity(identity: &str) -> Option<Vec<u8>> {
    let hex = identity.strip_prefix(super::IDENTITY_PREFIX)?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::crypto::tests::hex;
    use super::*;
    use coap_lite::{MessageClass, RequestType};

    #[derive(Default)]
    struct Disk(Mutex<Vec<(String, u64)>>);
    impl SeqStore for Disk {
        fn reserve_seq(&self, endpoint: &str, reserved: u64) -> Result<(), String> {
            self.0.lock().unwrap().push((endpoint.into(), reserved));
            Ok(())
        }
    }

    fn pair() -> (Context, Context) {
        let secret = hex("0102030405060708090a0b0c0d0e0f10");
        (
            Context::new(&secret, &[], &[0xc1], &[0x5e]).unwrap(),
            Context::new(&secret, &[], &[0x5e], &[0xc1]).unwrap(),
        )
    }

    fn get(path: &str) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Get);
        p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
        p
    }

    #[test]
    fn replays_are_refused_and_a_restart_asks_for_an_echo() {
        let (client, server) = pair();
        let disk = Arc::new(Disk::default());
        let t = OscoreContexts::new(disk.clone());
        t.insert("dev", server.clone(), 0, true);
        let (outer, r) = client.seal_request(&get("x"), 1).unwrap();
        let Incoming::Request { inner, ticket } = t.unprotect(&outer).unwrap() else {
            panic!("a new context serves at once");
        };
        assert_eq!(ticket.identity, "oscore:c1");
        assert_eq!(inner.get_first_option(CoapOption::UriPath).unwrap(), b"x");
        let sealed = t
            .protect(&ticket, &crate::coap::new_response(ResponseType::Content))
            .unwrap();
        assert_eq!(
            client.open_response(&r, &sealed).unwrap().header.code,
            MessageClass::Response(ResponseType::Content)
        );
        assert_eq!(t.unprotect(&outer).err(), Some(OscoreError::Replay));

        // A restart: same context, window lost, reservation 0 on disk.
        let t = OscoreContexts::new(disk.clone());
        t.insert("dev", server, 0, false);
        let (outer, r) = client.seal_request(&get("x"), 2).unwrap();
        let Incoming::Challenge(c) = t.unprotect(&outer).unwrap() else {
            panic!("no Echo after a restart");
        };
        assert_eq!(
            disk.0.lock().unwrap().as_slice(),
            &[("dev".into(), SEQ_STEP)]
        );
        let c = client.open_response(&r, &c).unwrap();
        assert_eq!(
            c.header.code,
            MessageClass::Response(ResponseType::Unauthorized)
        );
        let echo = c
            .get_first_option(CoapOption::Unknown(ECHO))
            .unwrap()
            .clone();
        // Without the Echo, or with a wrong one: another challenge.
        let (outer, _) = client.seal_request(&get("x"), 3).unwrap();
        assert!(matches!(t.unprotect(&outer), Ok(Incoming::Challenge(_))));
        let mut with_echo = get("x");
        with_echo.add_option(CoapOption::Unknown(ECHO), echo);
        let (outer, _) = client.seal_request(&with_echo, 4).unwrap();
        assert!(
            matches!(t.unprotect(&outer), Ok(Incoming::Challenge(_))),
            "stale echo"
        );
        // The latest challenge's value is the one.
        let (outer, r) = client.seal_request(&get("x"), 5).unwrap();
        let Ok(Incoming::Challenge(c)) = t.unprotect(&outer) else {
            panic!()
        };
        let echo = client
            .open_response(&r, &c)
            .unwrap()
            .get_first_option(CoapOption::Unknown(ECHO))
            .unwrap()
            .clone();
        let mut with_echo = get("x");
        with_echo.add_option(CoapOption::Unknown(ECHO), echo);
        let (outer, _) = client.seal_request(&with_echo, 6).unwrap();
        let Ok(Incoming::Request { inner, .. }) = t.unprotect(&outer) else {
            panic!()
        };
        assert!(inner.get_first_option(CoapOption::Unknown(ECHO)).is_none());
        assert_eq!(t.unprotect(&outer).err(), Some(OscoreError::Replay));
        let (outer, _) = client.seal_request(&get("x"), 5).unwrap();
        assert_eq!(
            t.unprotect(&outer).err(),
            Some(OscoreError::Replay),
            "below the new window"
        );
    }

    #[test]
    fn contexts_are_found_by_endpoint_kid_and_identity_and_replaced_whole() {
        let (_, server) = pair();
        let t = OscoreContexts::new(Arc::new(Disk::default()));
        assert!(!t.has_endpoint("dev"));
        t.insert("dev", server.clone(), 0, true);
        assert!(t.has_endpoint("dev"));
        assert_eq!(t.owner(&[0xc1]).as_deref(), Some("dev"));
        assert_eq!(t.identity_owner("oscore:c1").as_deref(), Some("dev"));
        for other in [
            "oscore:C1",
            "oscore:c",
            "oscore:",
            "c1",
            "psk:c1",
            "oscore:c100",
        ] {
            assert_eq!(t.identity_owner(other), None, "{other}");
        }
        assert!(t.protect_request("dev", &get("x")).is_ok());
        assert!(t.protect_request("nobody", &get("x")).is_err());
        // A new context for dev replaces the old one, kid and all.
        let secret = hex("0102030405060708090a0b0c0d0e0f10");
        let second = Context::new(&secret, &[], &[0x5e], &[0x77]).unwrap();
        t.insert("dev", second, 0, true);
        assert_eq!(t.owner(&[0xc1]), None);
        assert_eq!(t.owner(&[0x77]).as_deref(), Some("dev"));
        // Another endpoint given dev's recipient ID takes it: dev has no context any more.
        let third = Context::new(&secret, &[], &[0x5e], &[0x77]).unwrap();
        t.insert("dev2", third, 0, true);
        assert!(!t.has_endpoint("dev"));
        assert!(t.has_endpoint("dev2"));
        t.remove("dev2");
        assert!(!t.has_endpoint("dev2"));
        assert_eq!(t.owner(&[0x77]), None);
        t.remove("dev2");
    }

    #[test]
    fn unknown_kids_and_malformed_options_get_the_rfc_errors() {
        let (client, server) = pair();
        let t = OscoreContexts::new(Arc::new(Disk::default()));
        t.insert("dev", server, 0, true);
        let stranger = Context::new(&[1; 16], &[], &[0x77], &[0x5e]).unwrap();
        let (outer, _) = stranger.seal_request(&get("x"), 1).unwrap();
        assert_eq!(t.unprotect(&outer).err(), Some(OscoreError::NoContext));
        let (mut outer, _) = client.seal_request(&get("x"), 1).unwrap();
        outer.clear_option(CoapOption::Oscore);
        outer.add_option(CoapOption::Oscore, vec![0xe9, 1]);
        assert_eq!(
            t.unprotect(&outer).err().map(|e| e.code()),
            Some(ResponseType::BadOption)
        );
        assert_eq!(OscoreError::Replay.response().payload, b"Replay detected");
    }
}

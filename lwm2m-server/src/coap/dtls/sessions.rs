//! Sans-IO table of DTLS 1.2 PSK sessions, one per peer address, in three tiers:
//!
//! * **half-open**: a ClientHello arrived and was answered with a HelloVerifyRequest; the peer has
//!   not yet shown that it receives at its address. A spoofed flood lands here only, so this tier
//!   is capped ([`DtlsConfig::max_half_open`], the oldest entry makes room), its timers are never
//!   driven (no HelloVerifyRequest is sent twice: no amplification) and it lives
//!   [`DtlsConfig::cookie_wait`] at most.
//! * **handshaking**: the ClientHello came back with a valid cookie (the server answered with a
//!   ServerHello, not another HelloVerifyRequest). Capped at [`DtlsConfig::max_handshakes`]; one
//!   more is dropped and its client retries.
//! * **established**: the Finished messages matched, so the peer holds the PSK of the identity it
//!   named. Capped at [`DtlsConfig::max_sessions`] (the least recently heard one is dropped; its
//!   device simply handshakes again) and dropped after [`DtlsConfig::idle_timeout`] of silence.
//!
//! A new ClientHello from an address with a session goes to the pending tiers and replaces the
//! session only once its own handshake completes (RFC 6347 §4.2.8), so a forged ClientHello cannot
//! end a device's session. Datagrams from an address without a session that are not a
//! ClientHello are dropped without keeping anything.
//!
//! Like the CoAP [`Endpoint`](crate::coap::Endpoint): no sockets and no clock. Feed
//! [`Sessions::handle_datagram`] and [`Sessions::handle_timeout`], drain
//! [`Sessions::poll_transmit`] and [`Sessions::poll_received`], sleep until
//! [`Sessions::poll_timeout`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dimpl::crypto::Dtls12CipherSuite;
use dimpl::{Config, Dtls, Output, PskResolver};

/// How often idle sessions and stale half-open ones are looked for when nothing else is due.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// DTLS record content type `handshake` and the handshake types we look at (RFC 5246 §7.4).
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const HELLO_VERIFY_REQUEST: u8 = 3;
/// A DTLS record header: type, version, epoch, sequence number, length (RFC 6347 §4.1).
const RECORD_HEADER: usize = 13;

/// Where the server finds the key of a PSK identity.
pub trait PskLookup: Send + Sync + UnwindSafe + RefUnwindSafe {
    /// The key of `identity`, or None if no device has it.
    fn psk(&self, identity: &str) -> Option<Vec<u8>>;
}

/// Bounds and timers of the DTLS layer.
#[derive(Debug, Clone)]
pub struct DtlsConfig {
    /// Half-open sessions (ClientHello seen, cookie not yet returned) kept at once.
    pub max_half_open: usize,
    /// Cookie-verified handshakes in progress at once.
    pub max_handshakes: usize,
    /// Established sessions kept at once.
    pub max_sessions: usize,
    /// How long a half-open session waits for its ClientHello with the cookie.
    pub cookie_wait: Duration,
    /// How long a cookie-verified handshake may take in all.
    pub handshake_timeout: Duration,
    /// An established session not heard from for this long is dropped.
    pub idle_timeout: Duration,
    /// Largest DTLS datagram sent (handshake flights are fragmented to fit).
    pub mtu: usize,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            max_half_open: 256,
            max_handshakes: 64,
            max_sessions: 10_000,
            cookie_wait: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            // A device that registered with the longest lifetime the server allows still
            // talks to it within a day.
            idle_timeout: Duration::from_secs(25 * 3600),
            mtu: 1152,
        }
    }
}

/// The number of sessions in each tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtlsStats {
    pub half_open: usize,
    pub handshaking: usize,
    pub established: usize,
}

/// Why application data could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no DTLS session with this peer")]
    NoSession,
    #[error("the DTLS session failed and was dropped")]
    Failed,
}

/// The resolver of the one server configuration. dimpl asks it for a key inside
/// `handle_packet`, which this table calls for one session at a time, so the identity it found
/// belongs to the session being fed: [`Sessions::feed`] takes it from here. After `Connected` it
/// is the identity whose key the peer proved it holds.
struct Capture {
    keys: Arc<dyn PskLookup>,
    found: Mutex<Option<Arc<str>>>,
}

impl Capture {
    fn take(&self) -> Option<Arc<str>> {
        self.found.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl PskResolver for Capture {
    fn resolve(&self, identity: &[u8]) -> Option<Vec<u8>> {
        let identity = std::str::from_utf8(identity).ok()?;
        let key = self.keys.psk(identity)?;
        *self.found.lock().unwrap_or_else(|p| p.into_inner()) = Some(identity.into());
        Some(key)
    }
}

struct Session {
    dtls: Dtls,
    /// The identity whose key the handshake uses, once the peer named a known one.
    identity: Option<Arc<str>>,
    /// When it was created (half-open) or last heard from (established).
    since: Instant,
    /// dimpl's next timer (handshaking sessions only).
    deadline: Option<Instant>,
}

struct Established {
    session: Session,
    identity: Arc<str>,
}

/// What one session produced when drained.
#[derive(Default)]
struct Drained {
    packets: Vec<Vec<u8>>,
    data: Vec<Vec<u8>>,
    connected: bool,
    closed: bool,
    deadline: Option<Instant>,
}

/// The session table. See the module doc.
pub struct Sessions {
    config: DtlsConfig,
    /// dimpl's configuration, built once: building one checks the crypto provider (signature
    /// self-tests), far too costly to do per ClientHello.
    dtls_config: Arc<Config>,
    capture: Arc<Capture>,
    half_open: HashMap<SocketAddr, Session>,
    handshaking: HashMap<SocketAddr, Session>,
    established: HashMap<SocketAddr, Established>,
    transmit: VecDeque<(SocketAddr, Vec<u8>)>,
    received: VecDeque<(SocketAddr, Vec<u8>)>,
    next_sweep: Option<Instant>,
    buf: Vec<u8>,
}

/// Whether `d` starts with an epoch-0 handshake record carrying a ClientHello.
pub(crate) fn is_client_hello(d: &[u8]) -> bool {
    first_handshake_type(d) == Some(CLIENT_HELLO) && d.get(3..5) == Some(&[0, 0])
}

/// The handshake type of the first record of `d`, if it is a handshake record.
fn first_handshake_type(d: &[u8]) -> Option<u8> {
    if *d.first()? != CONTENT_HANDSHAKE {
        return None;
    }
    d.get(RECORD_HEADER).copied()
}

impl Sessions {
    pub fn new(config: DtlsConfig, keys: Arc<dyn PskLookup>) -> Self {
        let capture = Arc::new(Capture {
            keys,
            found: Mutex::new(None),
        });
        let dtls_config = Config::builder()
            .mtu(config.mtu)
            .handshake_timeout(config.handshake_timeout)
            .dtls12_cipher_suites(&[Dtls12CipherSuite::PSK_AES128_CCM_8])
            .with_psk_server(None, capture.clone())
            .build()
            // The settings above are constants dimpl accepts; a failure is a bug in this file.
            .expect("valid DTLS server configuration");
        Sessions {
            config,
            dtls_config: Arc::new(dtls_config),
            capture,
            half_open: HashMap::new(),
            handshaking: HashMap::new(),
            established: HashMap::new(),
            transmit: VecDeque::new(),
            received: VecDeque::new(),
            next_sweep: None,
            buf: vec![0; 2048],
        }
    }

    pub fn stats(&self) -> DtlsStats {
        DtlsStats {
            half_open: self.half_open.len(),
            handshaking: self.handshaking.len(),
            established: self.established.len(),
        }
    }

    /// The PSK identity `peer` authenticated with, if it has a session.
    pub fn identity(&self, peer: SocketAddr) -> Option<Arc<str>> {
        self.established.get(&peer).map(|e| e.identity.clone())
    }

    /// A datagram from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        self.next_sweep.get_or_insert(now + SWEEP_EVERY);
        if is_client_hello(datagram) && !self.handshaking.contains_key(&peer) {
            self.client_hello(now, peer, datagram);
        } else if let Some(mut s) = self.handshaking.remove(&peer) {
            let d = self.feed(&mut s, now, datagram);
            self.after_handshake_step(now, peer, s, d);
        } else if let Some(mut e) = self.established.remove(&peer) {
            let d = self.feed(&mut e.session, now, datagram);
            e.session.since = now;
            self.queue(peer, &d);
            if !d.closed {
                self.established.insert(peer, e);
            }
        }
        // Anything else from an address without a session: dropped, nothing kept.
    }

    /// A ClientHello: answered by the peer's half-open session, created if needed.
    fn client_hello(&mut self, now: Instant, peer: SocketAddr, datagram: &[u8]) {
        let mut s = match self.half_open.remove(&peer) {
            Some(s) => s,
            None => {
                if self.half_open.len() >= self.config.max_half_open.max(1) {
                    self.evict_oldest_half_open();
                }
                self.new_session(now)
            }
        };
        let d = self.feed(&mut s, now, datagram);
        if d.closed {
            return;
        }
        let verified = d
            .packets
            .first()
            .and_then(|p| first_handshake_type(p))
            .is_some_and(|t| t != HELLO_VERIFY_REQUEST);
        if !verified {
            // A HelloVerifyRequest (or nothing): sent once, never again by timer.
            self.queue(peer, &d);
            self.half_open.insert(peer, s);
        } else if self.handshaking.len() < self.config.max_handshakes.max(1) {
            self.after_handshake_step(now, peer, s, d);
        } else {
            tracing::debug!(%peer, "DTLS handshake dropped: {} in progress", self.handshaking.len());
        }
    }

    /// Keeps a cookie-verified handshake going, or moves it to the established tier.
    fn after_handshake_step(&mut self, now: Instant, peer: SocketAddr, mut s: Session, d: Drained) {
        self.queue(peer, &d);
        if d.closed {
            return;
        }
        if !d.connected {
            s.deadline = d.deadline;
            self.handshaking.insert(peer, s);
            return;
        }
        let Some(identity) = s.identity.clone() else {
            return;
        };
        if !self.established.contains_key(&peer)
            && self.established.len() >= self.config.max_sessions.max(1)
        {
            self.evict_least_recent_session();
        }
        tracing::debug!(%peer, %identity, "DTLS session established");
        s.since = now;
        s.deadline = None;
        self.established.insert(
            peer,
            Established {
                session: s,
                identity,
            },
        );
    }

    fn new_session(&self, now: Instant) -> Session {
        Session {
            dtls: Dtls::new_12_psk(self.dtls_config.clone(), now),
            identity: None,
            since: now,
            deadline: None,
        }
    }

    /// Runs one datagram through a session and collects what it produced.
    fn feed(&mut self, s: &mut Session, now: Instant, datagram: &[u8]) -> Drained {
        self.capture.take();
        let fed = s
            .dtls
            .handle_timeout(now)
            .and_then(|()| s.dtls.handle_packet(datagram));
        if let Some(identity) = self.capture.take() {
            s.identity = Some(identity);
        }
        let mut d = self.drain(s);
        if let Err(e) = fed {
            tracing::debug!("DTLS session failed: {e}");
            d.closed = true;
        }
        d
    }

    fn drain(&mut self, s: &mut Session) -> Drained {
        let mut d = Drained::default();
        loop {
            match s.dtls.poll_output(&mut self.buf) {
                Output::Packet(p) => d.packets.push(p.to_vec()),
                Output::BufferTooSmall { needed } => self.buf.resize(needed, 0),
                Output::Timeout(at) => {
                    d.deadline = Some(at);
                    break;
                }
                Output::Connected => d.connected = true,
                Output::ApplicationData(data) => d.data.push(data.to_vec()),
                Output::CloseNotify => d.closed = true,
                _ => {}
            }
        }
        d
    }

    fn queue(&mut self, peer: SocketAddr, d: &Drained) {
        self.transmit
            .extend(d.packets.iter().map(|p| (peer, p.clone())));
        self.received
            .extend(d.data.iter().map(|p| (peer, p.clone())));
    }

    fn evict_oldest_half_open(&mut self) {
        let oldest = self
            .half_open
            .iter()
            .min_by_key(|(_, s)| s.since)
            .map(|(a, _)| *a);
        if let Some(a) = oldest {
            self.half_open.remove(&a);
        }
    }

    fn evict_least_recent_session(&mut self) {
        let oldest = self
            .established
            .iter()
            .min_by_key(|(_, e)| e.session.since)
            .map(|(a, _)| *a);
        if let Some(a) = oldest {
            tracing::debug!(peer = %a, "DTLS session dropped to make room");
            self.established.remove(&a);
        }
    }

    /// Encrypts `data` for `peer`'s session.
    pub fn send(&mut self, now: Instant, peer: SocketAddr, data: &[u8]) -> Result<(), SendError> {
        let mut e = self.established.remove(&peer).ok_or(SendError::NoSession)?;
        let sent = e
            .session
            .dtls
            .handle_timeout(now)
            .and_then(|()| e.session.dtls.send_application_data(data));
        let d = self.drain(&mut e.session);
        self.queue(peer, &d);
        match sent {
            Ok(_) if !d.closed => {
                self.established.insert(peer, e);
                Ok(())
            }
            _ => Err(SendError::Failed),
        }
    }

    /// Drives handshake retransmissions and drops what has waited too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<SocketAddr> = self
            .handshaking
            .iter()
            .filter(|(_, s)| s.deadline.is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for peer in due {
            let Some(mut s) = self.handshaking.remove(&peer) else {
                continue;
            };
            let timed = s.dtls.handle_timeout(now);
            let mut d = self.drain(&mut s);
            if let Err(e) = timed {
                tracing::debug!(%peer, "DTLS handshake gave up: {e}");
                d.closed = true;
            }
            self.after_handshake_step(now, peer, s, d);
        }
        if self.next_sweep.is_some_and(|t| t <= now) {
            let (cookie_wait, idle) = (self.config.cookie_wait, self.config.idle_timeout);
            self.half_open
                .retain(|_, s| now.duration_since(s.since) < cookie_wait);
            self.established
                .retain(|_, e| now.duration_since(e.session.since) < idle);
            let empty = self.half_open.is_empty()
                && self.handshaking.is_empty()
                && self.established.is_empty();
            self.next_sweep = (!empty).then_some(now + SWEEP_EVERY);
        }
    }

    /// When [`Sessions::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.handshaking
            .values()
            .filter_map(|s| s.deadline)
            .chain(self.next_sweep)
            .min()
    }

    /// A datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmit.pop_front()
    }

    /// Decrypted application data from an established session.
    pub fn poll_received(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.received.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Keys;
    impl PskLookup for Keys {
        fn psk(&self, identity: &str) -> Option<Vec<u8>> {
            (identity == "dev-1").then(|| b"0123456789abcdef".to_vec())
        }
    }

    struct Fixed(Vec<u8>);
    impl PskResolver for Fixed {
        fn resolve(&self, _identity: &[u8]) -> Option<Vec<u8>> {
            Some(self.0.clone())
        }
    }

    fn client(identity: &str, key: &[u8], now: Instant) -> Dtls {
        let config = Config::builder()
            .dtls12_cipher_suites(&[Dtls12CipherSuite::PSK_AES128_CCM_8])
            .with_psk_client(identity.as_bytes().to_vec(), Arc::new(Fixed(key.to_vec())))
            .build()
            .unwrap();
        let mut c = Dtls::new_12_psk(Arc::new(config), now);
        c.set_active(true);
        c
    }

    fn client_out(c: &mut Dtls) -> (Vec<Vec<u8>>, bool, Vec<Vec<u8>>) {
        c.handle_timeout(Instant::now()).unwrap();
        let mut buf = vec![0u8; 2048];
        let (mut packets, mut connected, mut data) = (Vec::new(), false, Vec::new());
        loop {
            match c.poll_output(&mut buf) {
                Output::Packet(p) => packets.push(p.to_vec()),
                Output::Timeout(_) => break,
                Output::Connected => connected = true,
                Output::ApplicationData(d) => data.push(d.to_vec()),
                _ => {}
            }
        }
        (packets, connected, data)
    }

    /// Runs a handshake to the end (or until nothing moves); returns whether the client connected.
    fn handshake(s: &mut Sessions, c: &mut Dtls, peer: SocketAddr, now: Instant) -> bool {
        let mut connected = false;
        for _ in 0..10 {
            let (packets, up, _) = client_out(c);
            connected |= up;
            for p in &packets {
                s.handle_datagram(now, peer, p);
            }
            let mut moved = !packets.is_empty();
            while let Some((to, p)) = s.poll_transmit() {
                if to == peer {
                    c.handle_packet(&p).unwrap();
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        connected
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A table with dev-1's client connected from port 1000.
    fn connected(now: Instant) -> (Sessions, Dtls) {
        let mut s = Sessions::new(DtlsConfig::default(), Arc::new(Keys));
        let mut c = client("dev-1", b"0123456789abcdef", now);
        assert!(handshake(&mut s, &mut c, addr(1000), now));
        (s, c)
    }

    /// The table has dev-1's session and nothing else.
    fn only_one_session(s: &Sessions) {
        let one = DtlsStats {
            half_open: 0,
            handshaking: 0,
            established: 1,
        };
        assert_eq!(s.stats(), one);
    }

    #[test]
    fn a_client_with_the_key_gets_a_session_with_its_identity_and_data_flows() {
        let now = Instant::now();
        let (mut s, mut c) = connected(now);
        assert_eq!(s.identity(addr(1000)).as_deref(), Some("dev-1"));
        only_one_session(&s);
        c.send_application_data(b"hello").unwrap();
        for p in client_out(&mut c).0 {
            s.handle_datagram(now, addr(1000), &p);
        }
        assert_eq!(s.poll_received(), Some((addr(1000), b"hello".to_vec())));
        // The same bytes from another address are not that session's.
        s.send(now, addr(1000), b"back").unwrap();
        let (_, record) = s.poll_transmit().unwrap();
        c.handle_packet(&record).unwrap();
        assert_eq!(client_out(&mut c).2, vec![b"back".to_vec()]);
        s.handle_datagram(now, addr(1001), &record);
        assert_eq!(s.poll_received(), None);
        assert_eq!(s.send(now, addr(1001), b"x"), Err(SendError::NoSession));
    }

    #[test]
    fn a_wrong_key_or_an_unknown_identity_gets_no_session() {
        let now = Instant::now();
        let mut s = Sessions::new(DtlsConfig::default(), Arc::new(Keys));
        let mut wrong = client("dev-1", b"not the right key", now);
        assert!(!handshake(&mut s, &mut wrong, addr(1000), now));
        let mut stranger = client("dev-9", b"0123456789abcdef", now);
        assert!(!handshake(&mut s, &mut stranger, addr(1001), now));
        assert_eq!(s.stats().established, 0);
        assert_eq!(s.identity(addr(1000)), None);
    }

    #[test]
    fn a_client_hello_flood_stays_within_the_half_open_cap_and_a_real_client_still_connects() {
        let now = Instant::now();
        let config = DtlsConfig {
            max_half_open: 16,
            ..DtlsConfig::default()
        };
        let mut s = Sessions::new(config, Arc::new(Keys));
        let mut flooder = client("dev-1", b"0123456789abcdef", now);
        let hello = client_out(&mut flooder).0.remove(0);
        assert!(is_client_hello(&hello));
        for port in 2000..2500 {
            s.handle_datagram(now, addr(port), &hello);
            assert!(s.stats().half_open <= 16);
        }
        // Each spoofed source got one HelloVerifyRequest, no more (no timer resends them).
        assert_eq!(std::iter::from_fn(|| s.poll_transmit()).count(), 500);
        s.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(s.poll_transmit(), None);
        let mut c = client("dev-1", b"0123456789abcdef", now);
        assert!(handshake(&mut s, &mut c, addr(1000), now));
        // Half-open sessions go after the cookie wait.
        s.handle_timeout(now + Duration::from_secs(11));
        only_one_session(&s);
    }

    #[test]
    fn a_forged_client_hello_does_not_end_an_established_session() {
        let now = Instant::now();
        let (mut s, mut c) = connected(now);
        let mut forger = client("dev-1", b"guess", now);
        let hello = client_out(&mut forger).0.remove(0);
        s.handle_datagram(now, addr(1000), &hello);
        assert_eq!(s.identity(addr(1000)).as_deref(), Some("dev-1"));
        c.send_application_data(b"still here").unwrap();
        for p in client_out(&mut c).0 {
            s.handle_datagram(now, addr(1000), &p);
        }
        while s.poll_transmit().is_some() {}
        assert_eq!(
            s.poll_received(),
            Some((addr(1000), b"still here".to_vec()))
        );
    }
}

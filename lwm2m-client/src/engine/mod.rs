//! The sans-IO LwM2M client engine: it takes datagrams and time, and gives datagrams, its next
//! deadline and events. It registers (optionally in queue mode) and keeps the registration alive,
//! serves Objects 0, 1, 3 and 5, and carries out firmware updates: the manifest first, checked
//! against the trust anchor before one image byte is fetched, then the image block by block into
//! the staging slot, persisted so that a reboot resumes the download, and Update hands the image
//! to the A/B boot. No allocation; every buffer is fixed.
//!
//! One struct, [`Engine`], in rooms (the smoltcp way: each file adds an `impl` block):
//! - this file: the struct, [`Event`], start-up, the sans-IO surface and the routing of answers;
//! - `config`: [`Config`] and its defaults; [`limits`]: every size limit of the client;
//! - `registration`: Register and Update; `serve`: requests from the server and observations;
//! - `pull`: the manifest and image download; `push`: a package written to /5/0/0;
//! - `update`: Update, Cancel and a failed download.

mod config;
pub mod limits;
mod pull;
mod push;
mod registration;
mod scratch;
mod serve;
mod update;

use core::net::SocketAddr;

use heapless::{Deque, String};
use lwm2m_core::coap::{self, Code, Message, MessageType};
use lwm2m_core::object5::{self as fw, Refusal, State, UpdateResult};
use sha2::{Digest, Sha256};

use crate::exchange::{Answer, Exchanges, Failure, Purpose, Timed};
use crate::firmware::blocks::BlockMap;
use crate::firmware::download::Download;
use crate::firmware::object::{Changed, FirmwareObject};
use crate::firmware::suit;
use crate::platform::{BootInfo, BootOutcome, FirmwareRecord, Platform};
use crate::time::{Duration, Instant, earliest};

pub use config::Config;
use limits::{
    EVENTS, MANIFEST_MAP_WORDS, MAX_LOCATION_LEN, MAX_PKG_LEN, MAX_REQUEST, OBSERVERS, OUTBOX,
};
pub use limits::{MANIFEST_CAP, MAX_RESPONSE};
use push::Push;
use serve::Observer;

/// What the driver should know or do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Registered (or registered again) at this location.
    Registered,
    /// Object 5 changed.
    Firmware { state: State, result: UpdateResult },
    /// Image bytes staged so far.
    Progress { bytes: u32, total: u32 },
    /// Update was executed and the staged image is marked for a trial boot: send what is
    /// queued, then reset.
    Reboot,
    /// The platform failed (flash); the engine reported it as an Object 5 result where it could.
    PlatformError,
}

/// A datagram waiting to be sent.
#[derive(Clone, Copy)]
enum Outgoing {
    /// An empty ACK or a Reset (4 bytes).
    Empty(SocketAddr, [u8; 4]),
    /// The response in `cache`.
    Cached,
}

/// A response kept for duplicate requests (RFC 7252 §4.5).
struct Cached {
    peer: SocketAddr,
    message_id: u16,
    len: usize,
    bytes: [u8; MAX_RESPONSE],
}

impl Cached {
    /// Whether `msg` from `from` is the request this answers: a retransmission repeats the
    /// message ID and the token. The same ID with another token is a new request (server nodes
    /// that share one address count their IDs apart, and a restarted server starts afresh).
    fn answers(&self, from: SocketAddr, msg: &Message<'_>) -> bool {
        let token_len = self.bytes.first().map_or(0, |b| usize::from(b & 0x0f));
        self.peer == from
            && self.message_id == msg.message_id
            && self.bytes.get(4..).and_then(|t| t.get(..token_len)) == Some(msg.token())
    }
}

/// The device's LwM2M client, sans-IO: it never touches a socket or a clock. Time comes in as an
/// [`Instant`] argument, datagrams go in and out as byte slices, and the flash is the
/// [`Platform`].
///
/// Its methods, by group (the quinn-proto way):
/// - A. Start and state: [`Engine::new`] after every boot; [`Engine::state`],
///   [`Engine::result`], [`Engine::is_registered`], [`Engine::is_awake`],
///   [`Engine::platform`].
/// - B. Input: [`Engine::handle_datagram`] for each datagram received, [`Engine::handle_timeout`]
///   when the deadline from `poll_timeout` has come (calling it early is harmless).
/// - C. Output: [`Engine::poll_transmit`] (datagrams to send), [`Engine::poll_event`] (what the
///   driver must know or do), [`Engine::poll_timeout`] (when to call `handle_timeout` next).
///
/// The order a driver calls them in, in a loop:
/// 1. `handle_timeout(now)` once after `new`, so that the first Register goes out at once (the
///    first `poll_timeout` is `now` anyway);
/// 2. drain `poll_transmit` (sending each datagram) and `poll_event`, in either order, after
///    *every* `handle_*` call: the outbox and the event queue are small ([`limits::OUTBOX`],
///    [`limits::EVENTS`]) and drop their oldest entry when full. On [`Event::Reboot`], send
///    what `poll_transmit` still has, then reset the device;
/// 3. wait for a datagram or the `poll_timeout` deadline (`None`: no deadline), whichever comes
///    first, and feed it to `handle_datagram` or `handle_timeout`; then back to 2.
///
/// In queue mode a driver may turn its radio off while `is_awake` is false: datagrams given to
/// `handle_datagram` then are dropped, as a sleeping radio would.
pub struct Engine<P: Platform> {
    cfg: Config,
    platform: P,
    exchanges: Exchanges,
    fw: FirmwareObject,
    record: FirmwareRecord,
    running_version: String<MAX_PKG_LEN>,
    // registration
    location: Option<String<MAX_LOCATION_LEN>>,
    next_update: Option<Instant>,
    register_at: Option<Instant>,
    register_backoff: Duration,
    lifetime_s: u32,
    awake_until: Instant,
    // firmware
    download: Option<Download>,
    release: Option<suit::Release>,
    /// The manifest buffer, or a delta's applier once its manifest is accepted.
    manifest: scratch::Scratch,
    manifest_len: usize,
    /// Which bytes of the manifest download are in the buffer (the image's map is in `record`).
    manifest_map: BlockMap<MANIFEST_MAP_WORDS>,
    hasher: Sha256,
    /// Image bytes in the slot when the record was last stored.
    persisted_bytes: u32,
    push: Option<Push>,
    /// A deferred update is installed then.
    deferred_until: Option<Instant>,
    observers: [Option<Observer>; OBSERVERS],
    // output
    /// Datagrams to send: empty ACKs and Resets in place, responses from `cache` (so a response
    /// is held once). The driver calls `poll_transmit` after every `handle_datagram`.
    outbox: Deque<Outgoing, OUTBOX>,
    cache: Option<Cached>,
    events: Deque<Event, EVENTS>,
}

impl<P: Platform> Engine<P> {
    /// Starts the engine after a boot: tells the truth about an update that was executed before
    /// the reboot (Result 1 if the new image confirmed itself, 8 if it was rolled back), resumes
    /// an interrupted download, and registers.
    pub fn new(cfg: Config, platform: P, boot: BootInfo, now: Instant) -> Self {
        let record = boot.record.unwrap_or_default();
        let (state, result) = (record.state, record.result);
        let mut e = Engine {
            exchanges: Exchanges::new(cfg.seed, cfg.rto),
            lifetime_s: cfg.lifetime_s,
            cfg,
            platform,
            fw: FirmwareObject::new(state, result),
            record,
            running_version: boot.running_version,
            location: None,
            next_update: None,
            register_at: Some(now),
            register_backoff: registration::FIRST_BACKOFF,
            awake_until: now,
            download: None,
            release: None,
            manifest: scratch::Scratch::new(),
            manifest_len: 0,
            manifest_map: BlockMap::new(),
            hasher: Sha256::new(),
            persisted_bytes: 0,
            push: None,
            deferred_until: None,
            observers: [const { None }; OBSERVERS],
            outbox: Deque::new(),
            cache: None,
            events: Deque::new(),
        };
        e.fw.pkg_version = e.record.pkg_version.clone();
        e.after_boot(now, boot.outcome);
        e
    }

    fn after_boot(&mut self, now: Instant, outcome: BootOutcome) {
        if let Some(pending) = self.record.pending.take() {
            // Update was executed before this boot: the image that runs now says how it went.
            let confirmed = outcome == BootOutcome::Confirmed;
            self.fw = FirmwareObject::new(
                State::Idle,
                if confirmed {
                    UpdateResult::Success
                } else {
                    UpdateResult::UpdateFailed
                },
            );
            if confirmed {
                self.record.accepted_sequence = self.record.accepted_sequence.max(pending.sequence);
                self.fw.pkg_version = pending.version.clone();
            }
            self.record.staged = None;
            self.record.download = None;
            self.fw.last_state_change = now;
            self.save();
            return;
        }
        match self.fw.state {
            State::Downloading => match self.record.download.as_ref() {
                // Start again with the manifest; the image resumes with the units in the slot if
                // the manifest is the same one.
                Some(d) => {
                    let (uri, restarts) = (d.uri.clone(), d.restarts);
                    let _ = self.fw.package_uri.push_str(&uri);
                    self.start_manifest(now, &uri, restarts)
                }
                None => {
                    self.fw.download_failed(now, UpdateResult::ConnectionLost);
                    self.save();
                }
            },
            State::Updating => {
                // Power was cut between Update and the reset: the bootloader still swaps.
                self.fw.state = State::Downloaded;
            }
            _ => {}
        }
    }

    /// The platform (flash) the engine runs on.
    pub fn platform(&mut self) -> &mut P {
        &mut self.platform
    }

    pub fn state(&self) -> State {
        self.fw.state
    }

    pub fn result(&self) -> UpdateResult {
        self.fw.result
    }

    pub fn is_registered(&self) -> bool {
        self.location.is_some()
    }

    /// Whether the radio is on (queue mode sleeps between exchanges).
    pub fn is_awake(&self, now: Instant) -> bool {
        !self.cfg.queue_mode || now < self.awake_until || self.has_work()
    }

    fn has_work(&self) -> bool {
        self.download.is_some()
            || !self.outbox.is_empty()
            || self.exchanges.poll_timeout().is_some()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn event(&mut self, e: Event) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    fn save(&mut self) {
        self.record.state = self.fw.state;
        self.record.result = self.fw.result;
        self.record.pkg_version = self.fw.pkg_version.clone();
        if self.platform.save(&self.record).is_err() {
            self.event(Event::PlatformError);
        }
    }

    /// Object 5 changed: persist, tell the driver, owe notifications.
    fn fw_changed(&mut self, changed: Changed) {
        if !changed.any() {
            return;
        }
        self.save();
        self.event(Event::Firmware {
            state: self.fw.state,
            result: self.fw.result,
        });
        for o in self.observers.iter_mut().flatten() {
            if (o.resource == fw::STATE && changed.state)
                || (o.resource == fw::UPDATE_RESULT && changed.result)
            {
                o.dirty = true;
            }
        }
    }

    // ---- I/O ----

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if !self.is_awake(now) {
            // The radio is off: a sleeping device does not hear anything.
            return;
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(_) => {
                if let Some(id) = Message::rejectable_con_id(data) {
                    self.send_empty(from, id, MessageType::Reset);
                }
                return;
            }
        };
        if msg.code.is_request() {
            self.on_request(now, from, &msg);
            return;
        }
        let mut reset = None;
        let answer = self.exchanges.on_message(now, from, &msg, &mut reset);
        if let Some((p, f, seq)) = reset {
            self.on_failure(now, p, f, seq);
        }
        if msg.ty == MessageType::Confirmable {
            // A separate response (or a notification we do not hold): ACK it, or reject it.
            let kind = if answer.is_some() {
                MessageType::Acknowledgement
            } else {
                MessageType::Reset
            };
            self.send_empty(from, msg.message_id, kind);
        }
        if let Some(a) = answer {
            self.on_response(now, &a, &msg);
        }
        self.drive(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timed) = self.exchanges.handle_timeout(now) {
            match timed {
                Timed::Failed(purpose, failure, seq) => self.on_failure(now, purpose, failure, seq),
                Timed::FirstRetransmission(Purpose::Block(req)) => self.on_block_lost(now, req),
                Timed::FirstRetransmission(_) => {}
            }
        }
        self.drive(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let sent = match self.outbox.pop_front() {
            Some(Outgoing::Empty(peer, bytes)) => {
                out.get_mut(..4)?.copy_from_slice(&bytes);
                Some((peer, 4))
            }
            Some(Outgoing::Cached) => {
                let c = self.cache.as_ref()?;
                out.get_mut(..c.len)?.copy_from_slice(c.bytes.get(..c.len)?);
                Some((c.peer, c.len))
            }
            None => {
                let download = &self.download;
                self.exchanges.poll_transmit(out, |req, buf, mid, token| {
                    download.as_ref()?.write_request(req, buf, mid, token)
                })
            }
        };
        if sent.is_some() {
            self.awake_until = now + self.cfg.awake_window;
        }
        sent
    }

    /// When the engine next needs [`Engine::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.exchanges.poll_timeout();
        t = earliest(t, self.register_at);
        t = earliest(t, self.next_update);
        t = earliest(t, self.deferred_until);
        if let Some(d) = &self.download {
            t = earliest(t, d.retry_at);
        }
        t
    }

    fn send_empty(&mut self, peer: SocketAddr, message_id: u16, ty: MessageType) {
        let mut buf = [0u8; 4];
        let n = match ty {
            MessageType::Reset => coap::reset(&mut buf, message_id),
            _ => coap::empty_ack(&mut buf, message_id),
        };
        if n == Ok(4) {
            self.queue(Outgoing::Empty(peer, buf));
        }
    }

    fn queue(&mut self, item: Outgoing) {
        if self.outbox.is_full() {
            self.outbox.pop_front();
        }
        let _ = self.outbox.push_back(item);
    }

    // ---- outgoing requests ----

    /// Starts what is due: registration, its update, block requests, notifications.
    fn drive(&mut self, now: Instant) {
        if self.register_at.is_some_and(|t| now >= t) && !self.exchanges.busy(Purpose::Register) {
            self.register_at = None;
            self.send_register(now);
        }
        if self.next_update.is_some_and(|t| now >= t) && !self.exchanges.busy(Purpose::Update) {
            self.next_update = None;
            self.send_update(now);
        }
        if self.deferred_until.is_some_and(|t| now >= t) {
            self.deferred_until = None;
            // The defer period is over: install without asking again.
            let _ = self.start_update(now);
        }
        self.request_blocks(now);
        self.send_notifications(now);
    }

    // ---- responses to our requests ----

    fn on_response(&mut self, now: Instant, answer: &Answer, msg: &Message<'_>) {
        match answer.purpose {
            Purpose::Register => self.on_register_response(now, msg),
            Purpose::Update => self.on_update_response(now, msg),
            Purpose::Block(req) => self.on_block(now, answer, req, msg),
            Purpose::Notify(_) => {}
        }
    }

    fn on_failure(&mut self, now: Instant, purpose: Purpose, _f: Failure, seq: u32) {
        match purpose {
            Purpose::Register => self.retry_register(now),
            // No answer to the Update: the registration may be gone; register again.
            Purpose::Update => self.register_again(now),
            Purpose::Block(_) => self.on_block_failure(now, seq),
            Purpose::Notify(i) => {
                // An observer that does not acknowledge is gone (RFC 7641 §4.5).
                if let Some(o) = self.observers.get_mut(usize::from(i)) {
                    *o = None;
                }
            }
        }
    }
}

fn refusal_code(r: Refusal) -> Code {
    Code(r.coap_code())
}

impl<P: Platform> Engine<P> {
    /// Bytes of RAM the engine takes (for the footprint report).
    pub const fn size() -> usize {
        core::mem::size_of::<Self>()
    }

    #[doc(hidden)]
    pub fn max_request() -> usize {
        MAX_REQUEST
    }
}

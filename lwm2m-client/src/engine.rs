//! The sans-IO LwM2M client engine: it takes datagrams and time, and gives datagrams, its next
//! deadline and events. It registers (optionally in queue mode) and keeps the registration alive,
//! serves Objects 0, 1, 3 and 5, and carries out firmware updates: the manifest first, checked
//! against the trust anchor before one image byte is fetched, then the image block by block into
//! the staging slot, persisted so that a reboot resumes the download, and Update hands the image
//! to the A/B boot. No allocation; every buffer is fixed.

use core::net::SocketAddr;

use heapless::{Deque, String, Vec};
use lwm2m_core::Path;
use lwm2m_core::block::BlockValue;
use lwm2m_core::coap::{self, Code, Message, MessageType, MessageWriter, option};
use lwm2m_core::content::Value;
use lwm2m_core::object5::{Event as FwEvent, Refusal, State, UpdateResult};
use sha2::{Digest, Sha256};
use suit_manifest::TrustAnchor;

use crate::exchange::{Exchanges, Failure, MAX_REQUEST, Purpose};
use crate::firmware::download::{Download, RetryPolicy, Step, Target};
use crate::firmware::object::{Changed, FirmwareObject};
use crate::firmware::suit::{self, Identity};
use crate::firmware::window::{self, REORDER_CAP, Reorder};
use crate::objects::{ObjectModel, Resource, encode_discover, encode_read, format};
use crate::platform::{
    BootInfo, BootOutcome, DownloadRecord, FirmwareRecord, PendingUpdate, Platform,
};
use crate::rto::RtoConfig;
use crate::time::{Duration, Instant, earliest};
use crate::uri::{CoapUri, UriString};

/// Largest response the device sends (a read of Object 5 with a 255-character URI).
pub const MAX_RESPONSE: usize = 400;
/// Largest SUIT envelope (without integrated payload) the device accepts.
pub const MANIFEST_CAP: usize = 1024;
const OBSERVERS: usize = 4;
/// Persist download progress at least every this many bytes (one erase page).
const PERSIST_EVERY: u32 = 4096;
/// How the device is set up.
#[derive(Clone, Debug)]
pub struct Config {
    pub endpoint: String<64>,
    /// The LwM2M server.
    pub server: SocketAddr,
    pub lifetime_s: u32,
    pub queue_mode: bool,
    /// How long the radio stays on after the device last sent something (queue mode).
    pub awake_window: Duration,
    /// Block size for downloads: 16..=1024, a power of two (64 fits one 802.15.4 frame).
    pub block_size: u16,
    /// Block requests in flight at once (1: one after the other).
    pub window: u8,
    pub identity: Identity,
    pub trust: TrustAnchor,
    pub manufacturer: String<32>,
    pub model: String<32>,
    pub serial: String<32>,
    pub rto: RtoConfig,
    pub retry: RetryPolicy,
    /// The device's user postpones updates (Update Result 11) for as long as Object 5 lets them:
    /// not for a Critical update (Severity 0), and at most Maximum Defer Period (/5/0/13) seconds,
    /// after which the update is installed without asking (LwM2M 1.1 Object 5).
    pub defer_updates: bool,
    /// Seed for message ids, tokens and jitter. It must differ at every boot (a hardware RNG on
    /// the board): a server deduplicates requests by message id for EXCHANGE_LIFETIME (247 s), so a
    /// rebooted device that repeated its ids would be answered with stale responses.
    pub seed: u32,
}

impl Config {
    /// A device set-up with the defaults every deployment starts from: a 300 s lifetime, not in
    /// queue mode, awake for MAX_TRANSMIT_WAIT (RFC 7252, 93 s) after it last sent, 64-byte
    /// blocks (one 802.15.4 frame) one at a time, CoCoA retransmission timers, the default retry
    /// policy, updates not deferred, manufacturer "otafleet" and an empty model and serial.
    ///
    /// `seed` is 0 here: set it from a hardware RNG at every boot (see [`Config::seed`]).
    pub fn new(
        endpoint: String<64>,
        server: SocketAddr,
        identity: Identity,
        trust: TrustAnchor,
    ) -> Self {
        Config {
            endpoint,
            server,
            lifetime_s: 300,
            queue_mode: false,
            awake_window: Duration::from_core(coap::params::MAX_TRANSMIT_WAIT),
            block_size: 64,
            window: 1,
            identity,
            trust,
            manufacturer: String::try_from("otafleet").unwrap_or_default(),
            model: String::new(),
            serial: String::new(),
            rto: RtoConfig::default(),
            retry: RetryPolicy::default(),
            defer_updates: false,
            seed: 0,
        }
    }
}

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

struct Observer {
    peer: SocketAddr,
    token: Vec<u8, 8>,
    resource: u16,
    sequence: u32,
    /// The value changed and a notification is owed.
    dirty: bool,
}

/// A push (Block1 writes to /5/0/0) in progress.
struct Push {
    /// Bytes of the package received so far.
    received: u32,
    /// Where the integrated image starts in the package, once the envelope head is decoded.
    payload_start: Option<u32>,
    payload_len: u32,
    digest: [u8; 32],
    sequence: u64,
    version: String<32>,
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

/// The engine.
pub struct Engine<P: Platform> {
    cfg: Config,
    platform: P,
    exchanges: Exchanges,
    fw: FirmwareObject,
    record: FirmwareRecord,
    running_version: String<32>,
    // registration
    location: Option<String<32>>,
    next_update: Option<Instant>,
    register_at: Option<Instant>,
    register_backoff: Duration,
    lifetime_s: u32,
    awake_until: Instant,
    // firmware
    download: Option<Download>,
    release: Option<suit::Release>,
    manifest: [u8; MANIFEST_CAP],
    manifest_len: usize,
    hasher: Sha256,
    last_persisted: u32,
    push: Option<Push>,
    /// A deferred update is installed then.
    deferred_until: Option<Instant>,
    reorder: Reorder,
    observers: [Option<Observer>; OBSERVERS],
    // output
    /// Datagrams to send: empty ACKs and Resets in place, responses from `cache` (so a response
    /// is held once). The driver calls `poll_transmit` after every `handle_datagram`.
    outbox: Deque<Outgoing, 4>,
    cache: Option<Cached>,
    events: Deque<Event, 8>,
}

fn block_szx(size: u16) -> u8 {
    lwm2m_core::block::szx_for_size(usize::from(size)).unwrap_or(2)
}

impl<P: Platform> Engine<P> {
    /// Starts the engine after a boot: tells the truth about an update that was executed before
    /// the reboot (Result 1 if the new image confirmed itself, 8 if it was rolled back), resumes
    /// an interrupted download, and registers.
    pub fn new(cfg: Config, platform: P, boot: BootInfo, now: Instant) -> Self {
        let record = boot.record.clone().unwrap_or_default();
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
            register_backoff: Duration::from_secs(2),
            awake_until: now,
            download: None,
            release: None,
            manifest: [0; MANIFEST_CAP],
            manifest_len: 0,
            hasher: Sha256::new(),
            last_persisted: 0,
            push: None,
            deferred_until: None,
            reorder: Reorder::new(),
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
            State::Downloading => match self.record.download.clone() {
                // Start again with the manifest; the image resumes where it was if the manifest
                // is the same one.
                Some(d) => {
                    let _ = self.fw.package_uri.push_str(&d.uri);
                    self.start_manifest(now, &d.uri)
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
            if (o.resource == 3 && changed.state) || (o.resource == 5 && changed.result) {
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
        let purpose = self.exchanges.on_message(now, from, &msg, &mut reset);
        if let Some((p, f)) = reset {
            self.on_failure(now, p, f);
        }
        if msg.ty == MessageType::Confirmable {
            // A separate response (or a notification we do not hold): ACK it, or reject it.
            let kind = if purpose.is_some() {
                MessageType::Acknowledgement
            } else {
                MessageType::Reset
            };
            self.send_empty(from, msg.message_id, kind);
        }
        if let Some(p) = purpose {
            self.on_response(now, p, &msg);
        }
        self.drive(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((purpose, failure)) = self.exchanges.handle_timeout(now) {
            self.on_failure(now, purpose, failure);
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
            None => self.exchanges.poll_transmit(out),
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

    fn send_register(&mut self, now: Instant) {
        let (endpoint, lifetime, queue) = (
            self.cfg.endpoint.clone(),
            self.lifetime_s,
            self.cfg.queue_mode,
        );
        let started = self.exchanges.start(
            now,
            self.cfg.server,
            Purpose::Register,
            |buf, mid, token| {
                let mut w =
                    MessageWriter::new(buf, MessageType::Confirmable, Code::POST, mid, token)
                        .ok()?;
                w.option(option::URI_PATH, b"rd").ok()?;
                w.uint_option(option::CONTENT_FORMAT, u32::from(format::LINK))
                    .ok()?;
                let mut q: String<80> = String::new();
                use core::fmt::Write;
                write!(q, "ep={endpoint}").ok()?;
                w.option(option::URI_QUERY, q.as_bytes()).ok()?;
                q.clear();
                write!(q, "lt={lifetime}").ok()?;
                w.option(option::URI_QUERY, q.as_bytes()).ok()?;
                w.option(option::URI_QUERY, b"lwm2m=1.1").ok()?;
                w.option(option::URI_QUERY, b"b=U").ok()?;
                if queue {
                    w.option(option::URI_QUERY, b"Q").ok()?;
                }
                w.payload(b"</1/0>,</3/0>,</5/0>").ok()
            },
        );
        if started.is_err() {
            self.register_at = Some(now + Duration::from_secs(1));
        }
    }

    fn send_update(&mut self, now: Instant) {
        let Some(location) = self.location.clone() else {
            self.register_at = Some(now);
            return;
        };
        let started =
            self.exchanges
                .start(now, self.cfg.server, Purpose::Update, |buf, mid, token| {
                    let mut w =
                        MessageWriter::new(buf, MessageType::Confirmable, Code::POST, mid, token)
                            .ok()?;
                    w.path(&location).ok()?;
                    Some(w.finish())
                });
        if started.is_err() {
            self.next_update = Some(now + Duration::from_secs(1));
        }
    }

    /// When the next Update is due: well before the lifetime ends, leaving room for retransmissions.
    fn update_due(&self, now: Instant) -> Instant {
        let lifetime = Duration::from_secs(u64::from(self.lifetime_s));
        let margin = Duration::from_secs(u64::from(self.lifetime_s / 4).clamp(1, 93));
        now + Duration(
            lifetime
                .as_millis()
                .saturating_sub(margin.as_millis())
                .max(1000),
        )
    }

    /// Sends block requests up to the window: one at a time for the manifest, and up to
    /// `window` for the image (bounded by what the reorder buffer can hold).
    fn request_blocks(&mut self, now: Instant) {
        let total = self.release.as_ref().map(|r| r.size);
        let Some(d) = self.download.as_mut() else {
            return;
        };
        let limit = match d.target {
            Target::Manifest => 1,
            Target::Image => window::window_limit(self.cfg.window, 1usize << (d.szx + 4)),
        };
        window::fill(d, &mut self.exchanges, &self.reorder, limit, total, now);
    }

    fn send_notifications(&mut self, now: Instant) {
        for i in 0..OBSERVERS {
            let Some(Some(o)) = self.observers.get(i) else {
                continue;
            };
            if !o.dirty
                || self.exchanges.busy(Purpose::Notify(i as u8))
                || !self.exchanges.has_free_slot()
            {
                continue;
            }
            let (peer, token, resource, seq) = (
                o.peer,
                o.token.clone(),
                o.resource,
                o.sequence.wrapping_add(1),
            );
            let value = if resource == 3 {
                self.fw.state as i64
            } else {
                self.fw.result as i64
            };
            let started =
                self.exchanges
                    .start(now, peer, Purpose::Notify(i as u8), |buf, mid, tok| {
                        let _ = tok; // notifications carry the observation's token, not a new one
                        let mut w = MessageWriter::new(
                            buf,
                            MessageType::Confirmable,
                            Code::CONTENT,
                            mid,
                            &token,
                        )
                        .ok()?;
                        w.uint_option(option::OBSERVE, seq & 0x00ff_ffff).ok()?;
                        w.uint_option(option::CONTENT_FORMAT, 0).ok()?;
                        let mut text: String<12> = String::new();
                        use core::fmt::Write;
                        write!(text, "{value}").ok()?;
                        w.payload(text.as_bytes()).ok()
                    });
            if started.is_ok() {
                if let Some(Some(o)) = self.observers.get_mut(i) {
                    o.dirty = false;
                    o.sequence = seq;
                }
            }
        }
    }

    // ---- responses to our requests ----

    fn on_response(&mut self, now: Instant, purpose: Purpose, msg: &Message<'_>) {
        match purpose {
            Purpose::Register => {
                if msg.code == Code::CREATED {
                    let mut loc: String<32> = String::new();
                    for seg in msg.option_values(option::LOCATION_PATH) {
                        let _ = loc.push('/');
                        let _ = loc.push_str(core::str::from_utf8(seg).unwrap_or(""));
                    }
                    self.location = Some(loc);
                    self.register_backoff = Duration::from_secs(2);
                    self.next_update = Some(self.update_due(now));
                    self.event(Event::Registered);
                } else {
                    self.retry_register(now);
                }
            }
            Purpose::Update => {
                if msg.code == Code::CHANGED {
                    self.next_update = Some(self.update_due(now));
                } else {
                    // The server forgot us (4.04) or refuses the update: register again.
                    self.location = None;
                    self.register_at = Some(now);
                }
            }
            Purpose::Block(num) => {
                // Other exchanges for the same block (see `window::fill`) are not needed now.
                self.exchanges.cancel(Purpose::Block(num));
                self.on_block(now, msg)
            }
            Purpose::Notify(_) => {}
        }
    }

    fn retry_register(&mut self, now: Instant) {
        self.location = None;
        self.register_at = Some(now + self.register_backoff);
        self.register_backoff = Duration((self.register_backoff.as_millis() * 2).min(60_000));
    }

    fn on_failure(&mut self, now: Instant, purpose: Purpose, _f: Failure) {
        match purpose {
            Purpose::Register => self.retry_register(now),
            Purpose::Update => {
                // No answer to the Update: the registration may be gone; register again.
                self.location = None;
                self.register_at = Some(now);
            }
            Purpose::Block(num) => {
                // Only the gaps are asked for again: what arrived early stays. A block still
                // tried in another exchange has not failed yet.
                let policy = self.cfg.retry;
                if self.exchanges.busy(Purpose::Block(num)) {
                    return;
                }
                if let Some(d) = self.download.as_mut() {
                    if let Some(result) = d.on_failure(now, num, &policy) {
                        self.fail_download(now, result);
                    }
                }
            }
            Purpose::Notify(i) => {
                // An observer that does not acknowledge is gone (RFC 7641 §4.5).
                if let Some(o) = self.observers.get_mut(usize::from(i)) {
                    *o = None;
                }
            }
        }
    }

    // ---- downloads ----

    fn start_manifest(&mut self, now: Instant, uri: &str) {
        self.manifest_len = 0;
        match Download::new(Target::Manifest, uri, block_szx(self.cfg.block_size), 0) {
            Ok(d) => {
                self.download = Some(d);
                self.request_blocks(now);
            }
            Err(result) => self.fail_download(now, result),
        }
    }

    fn on_block(&mut self, now: Instant, msg: &Message<'_>) {
        let Some(d) = self.download.as_mut() else {
            return;
        };
        match d.on_response(msg) {
            Step::Ignore => {}
            Step::Failed(result) => self.fail_download(now, result),
            Step::Restart => {
                // Another representation now: start this stage over.
                self.exchanges.cancel_blocks();
                self.reorder.clear();
                let target = self.download.as_ref().map(|d| d.target);
                if target == Some(Target::Manifest) {
                    self.manifest_len = 0;
                } else {
                    self.hasher = Sha256::new();
                    self.last_persisted = 0;
                    self.persist_progress(0);
                }
            }
            Step::Ahead {
                offset,
                bytes,
                last,
            } => {
                if let Some(d) = self.download.as_mut() {
                    self.reorder.keep(d, offset, bytes, last);
                }
            }
            Step::Data {
                offset,
                bytes,
                last,
            } => {
                let mut done = last;
                self.consume(now, offset, bytes, last);
                // Blocks that arrived early and whose turn it is now.
                let mut buf = [0u8; REORDER_CAP];
                while !done {
                    let Some(d) = self.download.as_mut() else {
                        break;
                    };
                    let Some((at, len, last)) = self.reorder.take_next(d, &mut buf) else {
                        break;
                    };
                    self.consume(now, at, buf.get(..len).unwrap_or(&[]), last);
                    done = last;
                }
            }
        }
    }

    /// Takes bytes of the download in order: into the manifest buffer or the staging slot.
    fn consume(&mut self, now: Instant, offset: u32, bytes: &[u8], last: bool) {
        let Some(target) = self.download.as_ref().map(|d| d.target) else {
            return;
        };
        match target {
            Target::Manifest => {
                // The server said how big the envelope is (Size2): fail at once if it cannot fit.
                if self
                    .download
                    .as_ref()
                    .and_then(|d| d.total)
                    .is_some_and(|t| t as usize > MANIFEST_CAP)
                {
                    return self.fail_download(now, UpdateResult::OutOfRam);
                }
                let end = self.manifest_len.saturating_add(bytes.len());
                let Some(dst) = self.manifest.get_mut(self.manifest_len..end) else {
                    return self.fail_download(now, UpdateResult::OutOfRam);
                };
                dst.copy_from_slice(bytes);
                self.manifest_len = end;
                if last {
                    self.manifest_complete(now);
                }
            }
            Target::Image => {
                let total = self.release.as_ref().map_or(0, |r| r.size);
                if offset.saturating_add(bytes.len() as u32) > total {
                    return self.fail_download(now, UpdateResult::IntegrityFailure);
                }
                if self.platform.stage_write(offset, bytes).is_err() {
                    self.event(Event::PlatformError);
                    return self.fail_download(now, UpdateResult::NotEnoughFlash);
                }
                self.hasher.update(bytes);
                let written = offset.saturating_add(bytes.len() as u32);
                self.event(Event::Progress {
                    bytes: written,
                    total,
                });
                if written / PERSIST_EVERY != self.last_persisted / PERSIST_EVERY {
                    self.last_persisted = written;
                    self.persist_progress(written);
                }
                if last {
                    self.image_complete(now, written);
                }
            }
        }
    }

    fn persist_progress(&mut self, written: u32) {
        if let (Some(rec), Some(d)) = (self.record.download.as_mut(), self.download.as_ref()) {
            rec.bytes_written = written;
            rec.etag = d.etag.clone();
            rec.block_size = 1u16 << (d.szx + 4);
            self.save();
        }
    }

    fn manifest_complete(&mut self, now: Instant) {
        let Some(d) = self.download.take() else {
            return;
        };
        let envelope = self.manifest.get(..self.manifest_len).unwrap_or(&[]);
        let digest: [u8; 32] = Sha256::digest(envelope).into();
        let checked = suit::check_manifest(
            envelope,
            &d.uri,
            core::slice::from_ref(&self.cfg.trust),
            &self.cfg.identity,
            self.record.accepted_sequence,
            self.platform.slot_size(),
        );
        let release = match checked {
            Ok(r) => r,
            Err(result) => return self.fail_download(now, result),
        };
        // Resume the image if this is the manifest whose image was being fetched.
        let mut offset = 0;
        let mut etag = Vec::new();
        if let Some(rec) = &self.record.download {
            if rec.manifest_digest == digest && rec.bytes_written > 0 {
                offset = self
                    .platform
                    .resume_offset(rec.bytes_written)
                    .min(rec.bytes_written);
                etag = rec.etag.clone();
            }
        }
        self.hasher = Sha256::new();
        if offset > 0 && !self.rehash(offset) {
            offset = 0;
            etag.clear();
            self.hasher = Sha256::new();
        }
        self.last_persisted = offset;
        let mut image = match Download::new(
            Target::Image,
            &release.image_uri,
            block_szx(self.cfg.block_size),
            offset,
        ) {
            Ok(i) => i,
            Err(result) => return self.fail_download(now, result),
        };
        image.etag = etag.clone();
        self.fw.pkg_version = release.version.clone();
        self.record.download = Some(DownloadRecord {
            uri: d.uri.clone(),
            manifest_digest: digest,
            etag,
            bytes_written: offset,
            block_size: 1u16 << (image.szx + 4),
            total: release.size,
        });
        self.release = Some(release);
        self.reorder.clear();
        self.download = Some(image);
        self.save();
        self.request_blocks(now);
    }

    /// Feeds the first `upto` staged bytes to the hash again (a resumed download).
    fn rehash(&mut self, upto: u32) -> bool {
        let mut buf = [0u8; 256];
        let mut at = 0u32;
        while at < upto {
            let n = (upto - at).min(buf.len() as u32) as usize;
            let Some(chunk) = buf.get_mut(..n) else {
                return false;
            };
            if self.platform.stage_read(at, chunk).is_err() {
                return false;
            }
            self.hasher.update(&*chunk);
            at = at.saturating_add(n as u32);
        }
        true
    }

    fn image_complete(&mut self, now: Instant, written: u32) {
        self.download = None;
        let digest: [u8; 32] = core::mem::replace(&mut self.hasher, Sha256::new())
            .finalize()
            .into();
        let Some(release) = self.release.clone() else {
            return;
        };
        if written != release.size || digest != release.digest {
            return self.fail_download(now, UpdateResult::IntegrityFailure);
        }
        let envelope = self.manifest.get(..self.manifest_len).unwrap_or(&[]);
        if let Err(result) = suit::confirm_staged(
            envelope,
            core::slice::from_ref(&self.cfg.trust),
            &self.cfg.identity,
            digest,
        ) {
            return self.fail_download(now, result);
        }
        self.record.download = None;
        self.record.staged = Some(PendingUpdate {
            sequence: release.sequence,
            version: release.version.clone(),
        });
        let changed = self
            .fw
            .apply(now, FwEvent::DownloadComplete)
            .unwrap_or(Changed {
                state: false,
                result: false,
            });
        self.fw_changed(changed);
    }

    fn fail_download(&mut self, now: Instant, result: UpdateResult) {
        // PkgVersion names the package; a refused one is gone, so report the running firmware.
        self.fw.pkg_version = self.running_version.clone();
        self.download = None;
        self.reorder.clear();
        self.release = None;
        self.push = None;
        self.exchanges.cancel_blocks();
        self.record.download = None;
        self.record.staged = None;
        let changed = self.fw.download_failed(now, result);
        self.fw_changed(changed);
        self.save();
    }

    // ---- requests from the server ----

    fn on_request(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        if let Some(c) = &self.cache {
            if c.peer == from && c.message_id == msg.message_id {
                // A retransmitted request: the same answer again, without doing it twice.
                self.queue(Outgoing::Cached);
                return;
            }
        }
        let mut out = [0u8; MAX_RESPONSE];
        let ty = if msg.ty == MessageType::Confirmable {
            MessageType::Acknowledgement
        } else {
            MessageType::NonConfirmable
        };
        let n = self
            .answer(now, from, msg, ty, &mut out)
            .unwrap_or_else(|code| {
                MessageWriter::new(&mut out, ty, code, msg.message_id, msg.token())
                    .map(|w| w.finish())
                    .unwrap_or(0)
            });
        let bytes = out.get(..n).unwrap_or(&[]);
        let mut cached = Cached {
            peer: from,
            message_id: msg.message_id,
            len: n,
            bytes: [0; MAX_RESPONSE],
        };
        if let Some(dst) = cached.bytes.get_mut(..n) {
            dst.copy_from_slice(bytes);
        }
        self.cache = Some(cached);
        self.queue(Outgoing::Cached);
        self.drive(now);
    }

    /// Handles a request and writes the response into `out`; Err is a bare response code.
    fn answer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &Message<'_>,
        ty: MessageType,
        out: &mut [u8],
    ) -> Result<usize, Code> {
        const KNOWN: &[u16] = &[
            option::URI_HOST,
            option::ETAG,
            option::OBSERVE,
            option::URI_PORT,
            option::URI_PATH,
            option::CONTENT_FORMAT,
            option::URI_QUERY,
            option::ACCEPT,
            option::BLOCK2,
            option::BLOCK1,
            option::SIZE2,
            option::SIZE1,
        ];
        if msg.unknown_critical_option(KNOWN).is_some() {
            return Err(Code::BAD_OPTION);
        }
        let path = Path::from_segments(msg.path()).map_err(|_| Code::NOT_FOUND)?;
        let accept = msg
            .uint_option(option::ACCEPT)
            .map_err(|_| Code::BAD_OPTION)?
            .map(|a| a as u16);
        let cf = msg
            .uint_option(option::CONTENT_FORMAT)
            .map_err(|_| Code::BAD_OPTION)?
            .map(|c| c as u16);
        let id = msg.message_id;
        let token = msg.token();
        let simple = |out: &mut [u8], code: Code| -> Result<usize, Code> {
            MessageWriter::new(out, ty, code, id, token)
                .map(|w| w.finish())
                .map_err(|_| Code::INTERNAL_SERVER_ERROR)
        };
        match msg.code {
            Code::GET if accept == Some(format::LINK) => {
                let object = path.object_id().ok_or(Code::NOT_FOUND)?;
                if self.resources(object).is_empty() {
                    return Err(Code::NOT_FOUND);
                }
                let mut body = [0u8; 256];
                let n = encode_discover(self, object, &mut body)?;
                let mut w = MessageWriter::new(out, ty, Code::CONTENT, id, token)
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                w.uint_option(option::CONTENT_FORMAT, u32::from(format::LINK))
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                w.payload(body.get(..n).unwrap_or(&[]))
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)
            }
            Code::GET => {
                let observe = msg
                    .uint_option(option::OBSERVE)
                    .map_err(|_| Code::BAD_OPTION)?;
                let mut sequence = None;
                if let (Some(0), Some(5), Some(0), Some(res @ (3 | 5))) = (
                    observe,
                    path.object_id(),
                    path.instance_id(),
                    path.resource_id(),
                ) {
                    sequence = self.add_observer(from, token, res);
                } else if observe == Some(1) {
                    self.remove_observer(from, token);
                }
                let mut body = [0u8; 300];
                let (fmt, n) = encode_read(self, &path, accept, &mut body)?;
                let mut w = MessageWriter::new(out, ty, Code::CONTENT, id, token)
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                if let Some(s) = sequence {
                    w.uint_option(option::OBSERVE, s)
                        .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                }
                w.uint_option(option::CONTENT_FORMAT, u32::from(fmt))
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                w.payload(body.get(..n).unwrap_or(&[]))
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)
            }
            Code::PUT | Code::POST => {
                let ids = (path.object_id(), path.instance_id(), path.resource_id());
                match (msg.code, ids) {
                    // Write-Attributes: accepted (notifications are sent on every change).
                    (Code::PUT, _) if msg.payload.is_empty() && msg.queries().next().is_some() => {
                        simple(out, Code::CHANGED)
                    }
                    (_, (Some(5), Some(0), Some(1))) => {
                        let code = self.write_package_uri(now, msg.payload, cf)?;
                        simple(out, code)
                    }
                    (_, (Some(5), Some(0), Some(0))) => self.write_package(now, msg, ty, out),
                    (Code::POST, (Some(5), Some(0), Some(2))) => {
                        let code = self.execute_update(now)?;
                        simple(out, code)
                    }
                    (Code::POST, (Some(5), Some(0), Some(10))) => {
                        let code = self.cancel(now)?;
                        simple(out, code)
                    }
                    (Code::POST, (Some(3), Some(0), Some(4))) => {
                        self.event(Event::Reboot);
                        simple(out, Code::CHANGED)
                    }
                    (Code::POST, (Some(1), Some(0), Some(8))) => {
                        self.next_update = Some(now);
                        simple(out, Code::CHANGED)
                    }
                    (Code::PUT, (Some(5), Some(0), Some(res @ (11 | 13)))) => {
                        let text =
                            core::str::from_utf8(msg.payload).map_err(|_| Code::BAD_REQUEST)?;
                        let v: u32 = text.parse().map_err(|_| Code::BAD_REQUEST)?;
                        if res == 11 {
                            self.fw.severity = u8::try_from(v)
                                .ok()
                                .filter(|s| *s <= 2)
                                .ok_or(Code::BAD_REQUEST)?;
                        } else {
                            self.fw.max_defer_period = v;
                        }
                        simple(out, Code::CHANGED)
                    }
                    (Code::PUT, (Some(1), Some(0), Some(1))) => {
                        let text =
                            core::str::from_utf8(msg.payload).map_err(|_| Code::BAD_REQUEST)?;
                        let lt: u32 = text.parse().map_err(|_| Code::BAD_REQUEST)?;
                        if lt == 0 {
                            return Err(Code::BAD_REQUEST);
                        }
                        self.lifetime_s = lt;
                        self.next_update = Some(now);
                        simple(out, Code::CHANGED)
                    }
                    (_, (Some(0 | 1 | 3 | 5), _, _)) => Err(Code::METHOD_NOT_ALLOWED),
                    _ => Err(Code::NOT_FOUND),
                }
            }
            Code::DELETE => Err(Code::METHOD_NOT_ALLOWED),
            _ => Err(Code::METHOD_NOT_ALLOWED),
        }
    }

    fn add_observer(&mut self, peer: SocketAddr, token: &[u8], resource: u16) -> Option<u32> {
        let tok = Vec::from_slice(token).ok()?;
        // Re-registration of the same observation replaces it (RFC 7641 §4.1).
        let slot = self
            .observers
            .iter()
            .position(|o| {
                o.as_ref()
                    .is_some_and(|o| o.peer == peer && o.resource == resource)
            })
            .or_else(|| self.observers.iter().position(Option::is_none))?;
        let o = self.observers.get_mut(slot)?;
        *o = Some(Observer {
            peer,
            token: tok,
            resource,
            sequence: 1,
            dirty: false,
        });
        Some(1)
    }

    fn remove_observer(&mut self, peer: SocketAddr, token: &[u8]) {
        for o in self.observers.iter_mut() {
            if o.as_ref()
                .is_some_and(|x| x.peer == peer && x.token.as_slice() == token)
            {
                *o = None;
            }
        }
    }

    /// Write to Package URI (/5/0/1): an empty one resets, another starts a download.
    fn write_package_uri(
        &mut self,
        now: Instant,
        payload: &[u8],
        cf: Option<u16>,
    ) -> Result<Code, Code> {
        let uri = match cf.unwrap_or(format::TEXT) {
            format::TEXT => core::str::from_utf8(payload).map_err(|_| Code::BAD_REQUEST)?,
            format::TLV => {
                let tlv = lwm2m_core::content::tlv::TlvReader::new(payload)
                    .next()
                    .ok_or(Code::BAD_REQUEST)?
                    .map_err(|_| Code::BAD_REQUEST)?;
                lwm2m_core::content::tlv::decode_string(tlv.value).map_err(|_| Code::BAD_REQUEST)?
            }
            format::SENML_CBOR => {
                let mut r = lwm2m_core::content::senml_cbor::SenmlReader::new(payload)
                    .map_err(|_| Code::BAD_REQUEST)?;
                match r.next() {
                    Some(Ok(rec)) => match rec.value {
                        Some(Value::String(s)) => s,
                        _ => return Err(Code::BAD_REQUEST),
                    },
                    _ => return Err(Code::BAD_REQUEST),
                }
            }
            _ => return Err(Code::UNSUPPORTED_CONTENT_FORMAT),
        };
        if uri.is_empty() {
            let changed = self
                .fw
                .apply(now, FwEvent::PackageUriReset)
                .map_err(refusal_code)?;
            self.download = None;
            self.release = None;
            self.push = None;
            self.exchanges.cancel_blocks();
            self.record.download = None;
            self.record.staged = None;
            self.fw.package_uri.clear();
            self.fw_changed(changed);
            self.save();
            return Ok(Code::CHANGED);
        }
        let changed = self
            .fw
            .apply(now, FwEvent::PackageUriWritten)
            .map_err(refusal_code)?;
        self.fw.package_uri.clear();
        let _ = self
            .fw
            .package_uri
            .push_str(uri.get(..uri.len().min(crate::uri::MAX_URI)).unwrap_or(""));
        let mut owned = UriString::new();
        let _ = owned.push_str(&self.fw.package_uri);
        self.record.download = Some(DownloadRecord {
            uri: owned.clone(),
            etag: Vec::new(),
            bytes_written: 0,
            block_size: self.cfg.block_size,
            total: 0,
            manifest_digest: [0; 32],
        });
        self.fw_changed(changed);
        match CoapUri::parse(uri) {
            Ok(_) => self.start_manifest(now, &owned),
            Err(result) => self.fail_download(now, result),
        }
        Ok(Code::CHANGED)
    }

    /// Write to Package (/5/0/0): a package pushed with Block1, streamed to the staging slot.
    /// The package is a SUIT envelope with the image integrated; the envelope is verified
    /// before the first image byte is written.
    fn write_package(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        ty: MessageType,
        out: &mut [u8],
    ) -> Result<usize, Code> {
        let block = match msg.option(option::BLOCK1) {
            Some(raw) => Some(BlockValue::decode(raw).map_err(|_| Code::BAD_OPTION)?),
            None => None,
        };
        let (num, more, offset) = match block {
            Some(b) => (
                b.num(),
                b.more(),
                u32::try_from(b.offset()).map_err(|_| Code::REQUEST_ENTITY_TOO_LARGE)?,
            ),
            None => (0, false, 0),
        };
        if num == 0 && !more && lwm2m_core::object5::is_package_reset(msg.payload) {
            let changed = self
                .fw
                .apply(now, FwEvent::PackageReset)
                .map_err(refusal_code)?;
            self.push = None;
            self.download = None;
            self.record.download = None;
            self.record.staged = None;
            self.fw_changed(changed);
            return MessageWriter::new(out, ty, Code::CHANGED, msg.message_id, msg.token())
                .map(|w| w.finish())
                .map_err(|_| Code::INTERNAL_SERVER_ERROR);
        }
        if let Ok(Some(size1)) = msg.uint_option(option::SIZE1) {
            if size1
                > self
                    .platform
                    .slot_size()
                    .saturating_add(MANIFEST_CAP as u32)
            {
                return self.too_large(msg, ty, out);
            }
        }
        if num == 0 {
            let changed = self
                .fw
                .apply(now, FwEvent::PackageWriteStarted)
                .map_err(refusal_code)?;
            self.download = None;
            self.manifest_len = 0;
            self.hasher = Sha256::new();
            self.push = Some(Push {
                received: 0,
                payload_start: None,
                payload_len: 0,
                digest: [0; 32],
                sequence: 0,
                version: String::new(),
            });
            self.fw_changed(changed);
        }
        let Some(push) = self.push.as_mut() else {
            return Err(Code::REQUEST_ENTITY_INCOMPLETE);
        };
        if offset != push.received {
            return Err(Code::REQUEST_ENTITY_INCOMPLETE);
        }
        push.received = push.received.saturating_add(msg.payload.len() as u32);
        let result = self.push_bytes(offset, msg.payload, !more);
        if let Err(r) = result {
            self.fail_download(now, r);
            let code = if r == UpdateResult::NotEnoughFlash {
                Code::REQUEST_ENTITY_TOO_LARGE
            } else {
                Code::CHANGED
            };
            if code == Code::REQUEST_ENTITY_TOO_LARGE {
                return self.too_large(msg, ty, out);
            }
            return MessageWriter::new(out, ty, code, msg.message_id, msg.token())
                .map(|w| w.finish())
                .map_err(|_| Code::INTERNAL_SERVER_ERROR);
        }
        if !more {
            self.push_complete(now);
        }
        let code = if more { Code::CONTINUE } else { Code::CHANGED };
        let mut w = MessageWriter::new(out, ty, code, msg.message_id, msg.token())
            .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
        if let Some(raw) = msg.option(option::BLOCK1) {
            w.option(option::BLOCK1, raw)
                .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
        }
        Ok(w.finish())
    }

    fn too_large(
        &mut self,
        msg: &Message<'_>,
        ty: MessageType,
        out: &mut [u8],
    ) -> Result<usize, Code> {
        let mut w = MessageWriter::new(
            out,
            ty,
            Code::REQUEST_ENTITY_TOO_LARGE,
            msg.message_id,
            msg.token(),
        )
        .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
        w.uint_option(option::SIZE1, self.platform.slot_size())
            .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
        Ok(w.finish())
    }

    /// Takes the next bytes of a pushed package: the envelope head into the manifest buffer until
    /// it decodes and verifies, then the image into the staging slot.
    fn push_bytes(
        &mut self,
        offset: u32,
        mut bytes: &[u8],
        last: bool,
    ) -> Result<(), UpdateResult> {
        let mut at = offset;
        let start = match self.push.as_ref().and_then(|p| p.payload_start) {
            Some(s) => s,
            None => {
                // Still in the envelope head: buffer it.
                let take = bytes
                    .len()
                    .min(MANIFEST_CAP.saturating_sub(self.manifest_len));
                let (head, rest) = bytes.split_at(take);
                if let Some(dst) = self
                    .manifest
                    .get_mut(self.manifest_len..self.manifest_len + take)
                {
                    dst.copy_from_slice(head);
                }
                self.manifest_len += take;
                let buffered = self.manifest.get(..self.manifest_len).unwrap_or(&[]);
                let (head_offset, head_len) = match suit_manifest::Envelope::decode_head(buffered) {
                    Ok((_, Some(h))) => (h.offset, h.len),
                    Ok((_, None)) => return Err(UpdateResult::UnsupportedPackage),
                    Err(suit_manifest::Error::Truncated)
                        if self.manifest_len < MANIFEST_CAP && !last =>
                    {
                        return Ok(());
                    }
                    Err(suit_manifest::Error::Truncated) if !last => {
                        return Err(UpdateResult::OutOfRam);
                    }
                    Err(_) => return Err(UpdateResult::IntegrityFailure),
                };
                // Verify before writing a single image byte.
                let release = self.check_integrated(head_offset)?;
                if u64::from(release.size) != head_len {
                    return Err(UpdateResult::IntegrityFailure);
                }
                if let Some(p) = self.push.as_mut() {
                    p.payload_start = Some(head_offset as u32);
                    p.payload_len = release.size;
                    p.digest = release.digest;
                    p.sequence = release.sequence;
                    p.version = release.version;
                }
                // The image bytes already buffered after the head go to the slot now.
                let already = self
                    .manifest
                    .get(head_offset..self.manifest_len)
                    .unwrap_or(&[]);
                let mut tmp = [0u8; MANIFEST_CAP];
                let n = already.len();
                if let Some(dst) = tmp.get_mut(..n) {
                    dst.copy_from_slice(already);
                }
                self.manifest_len = head_offset;
                self.stage(0, tmp.get(..n).unwrap_or(&[]))?;
                at = offset.saturating_add(take as u32);
                bytes = rest;
                head_offset as u32
            }
        };
        let image_offset = at.saturating_sub(start);
        self.stage(image_offset, bytes)
    }

    fn stage(&mut self, image_offset: u32, bytes: &[u8]) -> Result<(), UpdateResult> {
        if bytes.is_empty() {
            return Ok(());
        }
        let limit = self.push.as_ref().map_or(0, |p| p.payload_len);
        if image_offset.saturating_add(bytes.len() as u32) > limit {
            return Err(UpdateResult::IntegrityFailure);
        }
        self.platform
            .stage_write(image_offset, bytes)
            .map_err(|_| UpdateResult::NotEnoughFlash)?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// The envelope head of a pushed package verified like a pulled manifest.
    fn check_integrated(&mut self, head_len: usize) -> Result<suit::Release, UpdateResult> {
        let envelope = self.manifest.get(..head_len).unwrap_or(&[]);
        let (env, _) = suit_manifest::Envelope::decode_head(envelope)
            .map_err(|_| UpdateResult::IntegrityFailure)?;
        let manifest = env
            .authenticate(core::slice::from_ref(&self.cfg.trust))
            .map_err(|_| UpdateResult::IntegrityFailure)?;
        if manifest.sequence_number() <= self.record.accepted_sequence {
            return Err(UpdateResult::UnsupportedPackage);
        }
        let info =
            suit_manifest::describe(&manifest).map_err(|_| UpdateResult::UnsupportedPackage)?;
        let c = info
            .first()
            .copied()
            .flatten()
            .ok_or(UpdateResult::UnsupportedPackage)?;
        if c.vendor_id != Some(&self.cfg.identity.vendor_id[..])
            || c.class_id != Some(&self.cfg.identity.class_id[..])
        {
            return Err(UpdateResult::UnsupportedPackage);
        }
        if !c.uri.is_some_and(|u| u.starts_with('#')) {
            return Err(UpdateResult::UnsupportedPackage);
        }
        let size = c.image_size.ok_or(UpdateResult::UnsupportedPackage)?;
        if size > u64::from(self.platform.slot_size()) {
            return Err(UpdateResult::NotEnoughFlash);
        }
        let mut version = String::new();
        let _ = version.push_str(
            c.version
                .unwrap_or("")
                .get(..c.version.unwrap_or("").len().min(32))
                .unwrap_or(""),
        );
        Ok(suit::Release {
            sequence: manifest.sequence_number(),
            image_uri: UriString::new(),
            digest: c
                .image_digest
                .map(|d| d.0)
                .ok_or(UpdateResult::UnsupportedPackage)?,
            size: size as u32,
            version,
        })
    }

    fn push_complete(&mut self, now: Instant) {
        let Some(p) = self.push.take() else { return };
        let digest: [u8; 32] = core::mem::replace(&mut self.hasher, Sha256::new())
            .finalize()
            .into();
        let complete = p.payload_start.is_some()
            && p.received.saturating_sub(p.payload_start.unwrap_or(0)) == p.payload_len;
        if !complete || digest != p.digest {
            return self.fail_download(now, UpdateResult::IntegrityFailure);
        }
        self.fw.pkg_version = p.version.clone();
        self.record.staged = Some(PendingUpdate {
            sequence: p.sequence,
            version: p.version,
        });
        let changed = self
            .fw
            .apply(now, FwEvent::DownloadComplete)
            .unwrap_or(Changed {
                state: false,
                result: false,
            });
        self.fw_changed(changed);
    }

    /// Execute Update (/5/0/2): mark the staged image for a trial boot and ask for a reboot.
    fn execute_update(&mut self, now: Instant) -> Result<Code, Code> {
        if self.fw.state != State::Downloaded {
            return Err(refusal_code(Refusal::NotDownloaded));
        }
        let may_defer =
            self.cfg.defer_updates && self.fw.severity != 0 && self.fw.max_defer_period > 0;
        if may_defer && self.deferred_until.is_none() {
            let changed = self
                .fw
                .apply(now, FwEvent::UpdateDeferred)
                .map_err(refusal_code)?;
            self.deferred_until =
                Some(now + Duration::from_secs(u64::from(self.fw.max_defer_period)));
            self.fw_changed(changed);
            return Ok(Code::CHANGED);
        }
        self.deferred_until = None;
        self.start_update(now)
    }

    /// Marks the staged image for a trial boot and asks for a reboot.
    fn start_update(&mut self, now: Instant) -> Result<Code, Code> {
        let changed = self
            .fw
            .apply(now, FwEvent::UpdateExecuted)
            .map_err(refusal_code)?;
        // The record must name the handed-over image before the bootloader can act on it.
        self.record.pending = self.record.staged.clone();
        self.record.state = self.fw.state;
        self.record.result = self.fw.result;
        self.record.pkg_version = self.fw.pkg_version.clone();
        let saved = self.platform.save(&self.record).is_ok();
        if !saved || self.platform.mark_for_test_boot().is_err() {
            self.record.pending = None;
            self.event(Event::PlatformError);
            let undo = self
                .fw
                .apply(now, FwEvent::UpdateFailed { package_kept: true });
            if let Ok(c) = undo {
                self.fw_changed(c);
            }
            return Ok(Code::CHANGED);
        }
        self.fw_changed(changed);
        self.event(Event::Reboot);
        Ok(Code::CHANGED)
    }

    /// Cancel (/5/0/10): refused with 4.05 once Updating.
    fn cancel(&mut self, now: Instant) -> Result<Code, Code> {
        let changed = self.fw.apply(now, FwEvent::Cancel).map_err(refusal_code)?;
        self.download = None;
        self.release = None;
        self.push = None;
        self.exchanges.cancel_blocks();
        self.record.download = None;
        self.record.staged = None;
        self.fw_changed(changed);
        Ok(Code::CHANGED)
    }
}

fn refusal_code(r: Refusal) -> Code {
    Code(r.coap_code())
}

impl<P: Platform> ObjectModel for Engine<P> {
    fn resources(&self, object: u16) -> &'static [u16] {
        match object {
            0 => &[0, 1, 2, 10],
            1 => &[0, 1, 6, 7],
            3 => &[0, 1, 2, 3, 11, 16],
            5 => &[1, 3, 5, 6, 7, 8, 9, 11, 12, 13],
            _ => &[],
        }
    }

    fn read(&self, object: u16, resource: u16) -> Option<Resource<'_>> {
        const PROTOCOLS: &[(u16, Value<'static>)] = &[(0, Value::Integer(0))];
        const NO_ERROR: &[(u16, Value<'static>)] = &[(0, Value::Integer(0))];
        Some(Resource::Single(match (object, resource) {
            (0, 0) => Value::String(""),
            (0, 1) => Value::Boolean(false),
            (0, 2) => Value::Integer(3), // NoSec
            (0, 10) | (1, 0) => Value::Integer(1),
            (1, 1) => Value::Integer(i64::from(self.lifetime_s)),
            (1, 6) => Value::Boolean(false),
            (1, 7) => Value::String(if self.cfg.queue_mode { "UQ" } else { "U" }),
            (3, 0) => Value::String(&self.cfg.manufacturer),
            (3, 1) => Value::String(&self.cfg.model),
            (3, 2) => Value::String(&self.cfg.serial),
            (3, 3) => Value::String(&self.running_version),
            (3, 11) => return Some(Resource::Multiple(NO_ERROR)),
            (3, 16) => Value::String("U"),
            (5, 1) => Value::String(&self.fw.package_uri),
            (5, 3) => Value::Integer(self.fw.state as i64),
            (5, 5) => Value::Integer(self.fw.result as i64),
            (5, 6) => Value::String(if self.fw.pkg_version.is_empty() {
                ""
            } else {
                "otafleet"
            }),
            (5, 7) => Value::String(&self.fw.pkg_version),
            (5, 8) => return Some(Resource::Multiple(PROTOCOLS)),
            (5, 9) => Value::Integer(2), // pull and push
            (5, 11) => Value::Integer(i64::from(self.fw.severity)),
            (5, 12) => Value::Integer((self.fw.last_state_change.0 / 1000) as i64),
            (5, 13) => Value::Integer(i64::from(self.fw.max_defer_period)),
            _ => return None,
        }))
    }
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

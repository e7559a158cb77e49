//! The LwM2M registration interface (TS Core 1.1 §6.2): Register, Update, De-register, lifetime
//! expiry, and queue mode's notion of a client being awake. The registry lives in memory, indexed
//! by endpoint name, registration id and address, and writes through to the store so that a
//! restarted server still knows every client whose lifetime has not run out.
//!
//! Hardening that holds without DTLS or OSCORE: registration ids are random (a CSPRNG), so one
//! cannot be guessed from another; endpoint names are printable UTF-8; lifetimes are capped; each
//! source address may register only so fast; and an endpoint that turns up at a new address while
//! one of its update jobs is in flight leaves a line in that job's audit trail.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwm2m_core::coap::{Code, params};
use lwm2m_core::content::link::LinkParser;
use lwm2m_core::registration::{RegisterParams, UpdateParams};
use rand::Rng;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::events::{EventBus, ServerEvent};
use crate::rate::SourceRate;
use crate::store::{RegistrationRecord, Store};

/// Characters of a registration id: 12 of [0-9A-Za-z] are 71 random bits, and `/rd/<id>` stays
/// short (it is in every Update's path).
const REG_ID_LEN: usize = 12;

/// Limits on what clients may ask of the registry.
#[derive(Clone, Debug)]
pub struct RegistryLimits {
    /// Registrations held at once; beyond it Register answers 5.03.
    pub max_registrations: usize,
    /// Longest endpoint name accepted.
    pub max_endpoint_len: usize,
    /// Largest registration payload (the object list) accepted.
    pub max_objects_len: usize,
    /// Extra time after the lifetime before a silent client is removed (delays and retransmissions).
    pub expiry_grace: Duration,
    /// How long a queue-mode client stays reachable after it last spoke (LwM2M: MAX_TRANSMIT_WAIT).
    pub awake_window: Duration,
    /// Longest lifetime accepted, in seconds: a registration the client never renews is gone
    /// after at most this long (plus the grace).
    pub max_lifetime_s: u32,
    /// Registers accepted per second from one source address (0: no limit); beyond it 4.29.
    pub register_rate: u32,
    /// Registers one source address may send at once before the rate applies.
    pub register_burst: u32,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            max_registrations: 200_000,
            max_endpoint_len: 128,
            max_objects_len: 2048,
            expiry_grace: Duration::from_secs(30),
            awake_window: params::MAX_TRANSMIT_WAIT,
            max_lifetime_s: 86_400,
            register_rate: 50,
            register_burst: 250,
        }
    }
}

/// Why a registration request was refused, with the CoAP response code it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegError {
    #[error("bad registration parameters: {0}")]
    BadRequest(String),
    #[error("no such registration")]
    NotFound,
    #[error("the server holds the maximum number of registrations")]
    Full,
    /// This source registered too often; it may try again after the wait.
    #[error("too many registrations from this address: try again in {} s", .0.as_secs().max(1))]
    TooMany(Duration),
}

impl RegError {
    /// The CoAP response code, (class << 5) | detail.
    pub fn coap_code(&self) -> u8 {
        match self {
            RegError::BadRequest(_) => Code::BAD_REQUEST.0,
            RegError::NotFound => Code::NOT_FOUND.0,
            RegError::Full => Code::SERVICE_UNAVAILABLE.0,
            RegError::TooMany(_) => Code::TOO_MANY_REQUESTS.0,
        }
    }
}

/// Why an endpoint name is refused, if it is: empty, too long, or holding a character that is
/// not printable (controls such as ESC, NUL, CR, LF, and the invisible format characters that
/// reorder or hide text on a terminal).
fn endpoint_name_problem(name: &str, max_len: usize) -> Option<String> {
    if name.is_empty() || name.len() > max_len {
        return Some(format!("endpoint name must be 1..{max_len} bytes"));
    }
    let bad = name.chars().find(|&c| !is_printable(c))?;
    Some(format!(
        "endpoint name holds the unprintable character U+{:04X}",
        u32::from(bad)
    ))
}

/// Whether `c` shows as itself on a terminal: not a control character and not one of the
/// invisible format characters (zero-width, bidirectional overrides, line separators, BOM).
pub fn is_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'))
}

/// A registered client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Registration {
    pub reg_id: String,
    pub endpoint: String,
    pub address: SocketAddr,
    pub lifetime_s: u32,
    pub lwm2m_version: String,
    pub binding: String,
    pub queue_mode: bool,
    pub sms: Option<String>,
    /// The object list as registered (CoRE link format).
    pub objects: String,
    pub registered_at_ms: i64,
    pub updated_at_ms: i64,
    /// The node (`serve --node-id`) that heard the device last and drives it; None in rows
    /// written before schema 9.
    pub owner_node: Option<String>,
}

impl Registration {
    fn record(&self) -> RegistrationRecord {
        RegistrationRecord {
            reg_id: self.reg_id.clone(),
            endpoint: self.endpoint.clone(),
            address: self.address.to_string(),
            lifetime_s: self.lifetime_s,
            lwm2m_version: self.lwm2m_version.clone(),
            binding: self.binding.clone(),
            queue_mode: self.queue_mode,
            sms: self.sms.clone(),
            objects: self.objects.clone(),
            registered_at_ms: self.registered_at_ms,
            updated_at_ms: self.updated_at_ms,
            owner_node: self.owner_node.clone(),
        }
    }

    /// A stored registration, if its address and endpoint name are still valid.
    fn from_record(r: RegistrationRecord, limits: &RegistryLimits) -> Option<Self> {
        let address = r.address.parse::<SocketAddr>().ok()?;
        if endpoint_name_problem(&r.endpoint, limits.max_endpoint_len).is_some() {
            return None;
        }
        Some(Registration {
            reg_id: r.reg_id,
            endpoint: r.endpoint,
            address,
            lifetime_s: r.lifetime_s.min(limits.max_lifetime_s),
            lwm2m_version: r.lwm2m_version,
            binding: r.binding,
            queue_mode: r.queue_mode,
            sms: r.sms,
            objects: r.objects,
            registered_at_ms: r.registered_at_ms,
            updated_at_ms: r.updated_at_ms,
            owner_node: r.owner_node,
        })
    }

    /// Whether the client registered Object 5 (`</5/0>` or `</5>`).
    pub fn has_object(&self, object: u16) -> bool {
        LinkParser::new(&self.objects)
            .flatten()
            .any(|l| l.path().is_ok_and(|p| p.object_id() == Some(object)))
    }
}

struct Entry {
    reg: Registration,
    /// When the lifetime (plus grace) runs out, in tokio time.
    expires: Instant,
    /// Last time the client spoke, for queue mode.
    last_seen: Instant,
}

/// The maps every datagram looks up: keyed by address and endpoint name.
type FastMap<K, V> = foldhash::HashMap<K, V>;

#[derive(Default)]
struct State {
    by_endpoint: FastMap<String, Entry>,
    by_reg_id: FastMap<String, String>,
    /// Shared with the fast path, which reads it for every block: cloned without allocating.
    by_address: FastMap<SocketAddr, Arc<str>>,
    wakers: FastMap<String, Arc<Notify>>,
}

impl State {
    /// Forgets that `endpoint` is at `address`, unless another endpoint is there now.
    fn unlink_address(&mut self, address: SocketAddr, endpoint: &str) {
        if self
            .by_address
            .get(&address)
            .is_some_and(|e| **e == *endpoint)
        {
            self.by_address.remove(&address);
        }
    }
}

/// A node's name when `serve --node-id` gives none: host name, process id and 4 random hex
/// digits, so that two processes on one host, or one restarted, never share a name.
pub fn generated_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::rng().random::<u16>()
    )
}

/// How long a source address that no stored registration matched is not looked up again: a
/// device that never registered must not cost a query per datagram.
const TAKEOVER_MISS_TTL: Duration = Duration::from_secs(2);

/// How far back before its last sweep a node reads owner changes (ms). `owner_since_ms` is the
/// wall clock of the node that wrote it and the sweep compares it with its own, so the window
/// must cover the clocks' skew (NTP keeps it to milliseconds, a step correction can make it
/// seconds) and the time between a writer reading its clock and its commit becoming visible (a
/// round trip, longer while PostgreSQL is slow). 30 s covers both with room; what it costs is
/// re-reading the rows whose owner changed in the last 35 s at each 5 s sweep, the takeovers of
/// those seconds, not the fleet.
pub const OWNER_CHANGE_MARGIN_MS: i64 = 30_000;

/// The registry.
pub struct Registry {
    state: Mutex<State>,
    /// This node's name, written as `owner_node` with each registration it hears.
    node_id: String,
    /// Whether other nodes share the store (PostgreSQL): then a registration this node does
    /// not hold may be in the database, written by another node, and this node loads only
    /// its own at start.
    shared: bool,
    /// Addresses recently looked up in the store for a takeover and not found there.
    misses: Mutex<HashMap<SocketAddr, Instant>>,
    /// Where the next [`Registry::release_moved`] starts reading owner changes (wall-clock ms).
    moved_since_ms: Mutex<i64>,
    /// Endpoints whose registration write failed, written again by the next sweep.
    unwritten: Mutex<HashSet<String>>,
    /// Asks for a [`Registry::release_moved`] sweep before the next period: another node said it
    /// took over a device of this node's ([`ServerEvent::Moved`]).
    sweep_wanted: Notify,
    /// The devices named by those events and when each was heard: the sweep checks them by
    /// name too, as a row the taking node deleted at once (a de-register) is no owner change.
    moved_away: Mutex<Vec<(String, Instant)>>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    events: EventBus,
    limits: RegistryLimits,
    /// Registers per source address.
    rate: Mutex<SourceRate>,
}

impl Registry {
    /// A registry holding what the store remembers, with the lifetime each registration has left
    /// by the wall clock: one that ran out while the server was down is deleted, not revived.
    pub fn load(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        events: EventBus,
        limits: RegistryLimits,
    ) -> crate::store::Result<Self> {
        Self::load_as(store, clock, events, limits, generated_node_id())
    }

    /// [`Registry::load`] for the node named `node_id`. On a shared store (PostgreSQL) only the
    /// registrations this node owned are loaded: the others are other nodes' devices, taken
    /// over one by one when they speak to this node ([`Registry::take_over_id`]).
    pub fn load_as(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        events: EventBus,
        limits: RegistryLimits,
        node_id: String,
    ) -> crate::store::Result<Self> {
        let shared = store.backend() == "postgres";
        let now = Instant::now();
        let now_ms = clock.now_ms();
        let mut state = State::default();
        let mut gone = Vec::new();
        for r in store.registrations()? {
            if shared && r.owner_node.as_deref() != Some(node_id.as_str()) {
                continue;
            }
            let reg_id = r.reg_id.clone();
            match Self::entry(r, &limits, now, now_ms) {
                Some(entry) => Self::insert(&mut state, entry),
                None => gone.push(reg_id),
            }
        }
        for reg_id in &gone {
            store.delete_registration(reg_id)?;
        }
        if !gone.is_empty() {
            tracing::info!(
                "{} stored registrations expired while the server was down",
                gone.len()
            );
        }
        let rate = SourceRate::new(limits.register_rate, limits.register_burst);
        Ok(Registry {
            state: Mutex::new(state),
            node_id,
            shared,
            misses: Mutex::default(),
            moved_since_ms: Mutex::new(now_ms - OWNER_CHANGE_MARGIN_MS),
            sweep_wanted: Notify::new(),
            moved_away: Mutex::default(),
            unwritten: Mutex::default(),
            store,
            clock,
            events,
            limits,
            rate: Mutex::new(rate),
        })
    }

    /// The in-memory entry of a stored registration, with the lifetime it has left by the wall
    /// clock; None if that ran out or the row is not valid any more.
    fn entry(
        r: RegistrationRecord,
        limits: &RegistryLimits,
        now: Instant,
        now_ms: i64,
    ) -> Option<Entry> {
        let reg = Registration::from_record(r, limits)?;
        let whole = Duration::from_secs(u64::from(reg.lifetime_s)) + limits.expiry_grace;
        let since_ms = u64::try_from(now_ms.saturating_sub(reg.updated_at_ms)).unwrap_or(0);
        let left = whole.saturating_sub(Duration::from_millis(since_ms));
        if left.is_zero() {
            return None;
        }
        Some(Entry {
            reg,
            expires: now + left,
            last_seen: now,
        })
    }

    fn insert(st: &mut State, entry: Entry) {
        let reg = &entry.reg;
        st.by_reg_id
            .insert(reg.reg_id.clone(), reg.endpoint.clone());
        st.by_address
            .insert(reg.address, reg.endpoint.as_str().into());
        st.by_endpoint.insert(reg.endpoint.clone(), entry);
    }

    /// This node's name.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether other nodes may share the store (see the field).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The store the registry writes to (shared by the nodes on PostgreSQL).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The wall clock the registry stamps its rows with (ms since the Unix epoch).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// On a shared store, takes over the registration `reg_id` that another node wrote (the
    /// kernel's SO_REUSEPORT hash or a load balancer moved the device here, typically after
    /// that node died): loads it into memory and writes this node as its owner, so that the
    /// device's Update gets 2.04 instead of 4.04 and a forced re-registration. Its endpoint
    /// when taken over now; None when already held, unknown, expired, or the store is not shared.
    pub fn take_over_id(&self, reg_id: &str) -> Option<String> {
        if !self.shared || self.lock().by_reg_id.contains_key(reg_id) {
            return None;
        }
        let record = match self.store.registration_by_id(reg_id) {
            Ok(r) => r?,
            Err(e) => {
                tracing::error!("cannot look up registration {reg_id} to take it over: {e}");
                return None;
            }
        };
        self.adopt(record)
    }

    /// Like [`Registry::take_over_id`] for a datagram from `peer` (a block request, a
    /// notification, a response): the registration last heard from that address. Addresses
    /// not found are not looked up again for a while.
    pub fn take_over_address(&self, peer: SocketAddr) -> Option<String> {
        if !self.shared || self.lock().by_address.contains_key(&peer) {
            return None;
        }
        let now = Instant::now();
        {
            let mut misses = self.misses.lock().unwrap_or_else(|p| p.into_inner());
            if misses.get(&peer).is_some_and(|t| *t > now) {
                return None;
            }
            misses.insert(peer, now + TAKEOVER_MISS_TTL);
        }
        let record = match self.store.registration_at(&peer.to_string()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot look up the registration at {peer} to take it over: {e}");
                None
            }
        };
        let ep = self.adopt(record?)?;
        self.misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer);
        Some(ep)
    }

    /// Holds a registration read from the store as this node's own, and records that.
    fn adopt(&self, record: RegistrationRecord) -> Option<String> {
        let was = record.owner_node.clone();
        let mut entry = Self::entry(record, &self.limits, Instant::now(), self.clock.now_ms())?;
        entry.reg.owner_node = Some(self.node_id.clone());
        let reg = entry.reg.clone();
        {
            let mut st = self.lock();
            if st.by_endpoint.contains_key(&reg.endpoint) {
                return None;
            }
            if st.by_endpoint.len() >= self.limits.max_registrations {
                tracing::warn!(
                    "cannot take over {}: this node holds --max-registrations already",
                    reg.endpoint
                );
                return None;
            }
            Self::insert(&mut st, entry);
            Self::wake(&st, &reg.endpoint);
        }
        self.persist(&reg);
        tracing::info!(
            "took over {} at {} from node {}",
            reg.endpoint,
            reg.address,
            was.as_deref().unwrap_or("(none)")
        );
        Some(reg.endpoint)
    }

    /// Every registration of the fleet: this node's in memory, or on a shared store every
    /// node's from the database (each with its owner), so any node's API shows the whole fleet.
    pub fn fleet(&self) -> Vec<Registration> {
        if !self.shared {
            return self.all();
        }
        match self.store.registrations() {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|r| Registration::from_record(r, &self.limits))
                .collect(),
            Err(e) => {
                tracing::error!("cannot read the fleet's registrations, showing this node's: {e}");
                self.all()
            }
        }
    }

    /// The registration of `endpoint`: held here, or on a shared store held by another node.
    pub fn lookup(&self, endpoint: &str) -> Option<Registration> {
        if let Some(r) = self.get(endpoint) {
            return Some(r);
        }
        if !self.shared {
            return None;
        }
        match self.store.registration_of(endpoint) {
            Ok(r) => r.and_then(|r| Registration::from_record(r, &self.limits)),
            Err(e) => {
                tracing::error!("cannot look up {endpoint}: {e}");
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A registration id: random from a CSPRNG (`rand::rng()`: ChaCha seeded by the OS), so
    /// that knowing some ids tells nothing of others; unique among those held.
    fn new_reg_id(st: &State) -> String {
        let mut rng = rand::rng();
        loop {
            let id: String = (0..REG_ID_LEN)
                .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
                .collect();
            if !st.by_reg_id.contains_key(&id) {
                return id;
            }
        }
    }

    /// The lifetime asked for, if the server accepts it.
    fn check_lifetime(&self, lifetime: Option<u32>) -> Result<(), RegError> {
        match lifetime {
            Some(0) => Err(RegError::BadRequest("lifetime 0".into())),
            Some(lt) if lt > self.limits.max_lifetime_s => Err(RegError::BadRequest(format!(
                "lifetime {lt} s is longer than this server's maximum, {} s",
                self.limits.max_lifetime_s
            ))),
            _ => Ok(()),
        }
    }

    /// Records in the audit trail of `endpoint`'s update jobs in flight that it now speaks from
    /// `peer` instead of `was`: whoever answers there gets the job's requests from now on.
    fn audit_move(&self, endpoint: &str, event: &str, was: SocketAddr, peer: SocketAddr) {
        let detail = format!("from {peer} (was {was})");
        if let Err(e) =
            self.store
                .audit_jobs_in_flight(endpoint, self.clock.now_ms(), event, &detail)
        {
            tracing::error!("cannot record that {endpoint} moved to {peer}: {e}");
        }
    }

    /// Register (POST /rd?ep=..&lt=..): returns the new registration. A client that registers again
    /// replaces its old registration.
    pub fn register(
        &self,
        peer: SocketAddr,
        query: &[String],
        payload: &[u8],
    ) -> Result<Registration, RegError> {
        self.rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(peer.ip(), Instant::now())
            .map_err(RegError::TooMany)?;
        let params =
            RegisterParams::parse(query.iter()).map_err(|e| RegError::BadRequest(e.to_string()))?;
        if let Some(why) = endpoint_name_problem(params.endpoint, self.limits.max_endpoint_len) {
            return Err(RegError::BadRequest(why));
        }
        self.check_lifetime(params.lifetime)?;
        let objects = self.objects(payload)?;
        let lifetime_s = params.lifetime_or_default().min(self.limits.max_lifetime_s);
        let now_ms = self.clock.now_ms();
        let mut reg = Registration {
            reg_id: String::new(),
            endpoint: params.endpoint.to_string(),
            address: peer,
            lifetime_s,
            lwm2m_version: params
                .version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "1.0".into()),
            binding: params
                .binding
                .map(|b| b.to_string())
                .unwrap_or_else(|| "U".into()),
            queue_mode: params.queue_mode(),
            sms: params.sms.map(Into::into),
            objects,
            registered_at_ms: now_ms,
            updated_at_ms: now_ms,
            owner_node: Some(self.node_id.clone()),
        };
        let moved_from = {
            let mut st = self.lock();
            let replacing = st.by_endpoint.contains_key(&reg.endpoint);
            if !replacing && st.by_endpoint.len() >= self.limits.max_registrations {
                return Err(RegError::Full);
            }
            reg.reg_id = Self::new_reg_id(&st);
            let old = st.by_endpoint.remove(&reg.endpoint);
            if let Some(old) = &old {
                st.by_reg_id.remove(&old.reg.reg_id);
                st.unlink_address(old.reg.address, &reg.endpoint);
            }
            let now = Instant::now();
            st.by_reg_id
                .insert(reg.reg_id.clone(), reg.endpoint.clone());
            st.by_address.insert(peer, reg.endpoint.as_str().into());
            st.by_endpoint.insert(
                reg.endpoint.clone(),
                Entry {
                    reg: reg.clone(),
                    expires: self.expiry(now, lifetime_s),
                    last_seen: now,
                },
            );
            Self::wake(&st, &reg.endpoint);
            old.map(|o| o.reg.address).filter(|a| *a != peer)
        };
        self.persist(&reg);
        if let Some(was) = moved_from {
            self.audit_move(&reg.endpoint, "re-registered", was, peer);
        }
        self.events.publish(ServerEvent::Registered {
            endpoint: reg.endpoint.clone(),
            reg_id: reg.reg_id.clone(),
            address: peer.to_string(),
        });
        Ok(reg)
    }

    /// Update (POST /rd/{id}): refreshes the lifetime, and the address, binding and objects when
    /// they changed. An unknown id gives 4.04 and the client registers again.
    pub fn update(
        &self,
        peer: SocketAddr,
        reg_id: &str,
        query: &[String],
        payload: &[u8],
    ) -> Result<Registration, RegError> {
        let params =
            UpdateParams::parse(query.iter()).map_err(|e| RegError::BadRequest(e.to_string()))?;
        self.check_lifetime(params.lifetime)?;
        let objects = if payload.is_empty() {
            None
        } else {
            Some(self.objects(payload)?)
        };
        let now_ms = self.clock.now_ms();
        let (reg, old_address) = {
            let mut st = self.lock();
            let ep = st
                .by_reg_id
                .get(reg_id)
                .cloned()
                .ok_or(RegError::NotFound)?;
            let now = Instant::now();
            let old_address;
            let reg = {
                let entry = st.by_endpoint.get_mut(&ep).ok_or(RegError::NotFound)?;
                old_address = entry.reg.address;
                let r = &mut entry.reg;
                r.address = peer;
                if let Some(lt) = params.lifetime {
                    r.lifetime_s = lt;
                }
                if let Some(b) = params.binding {
                    r.binding = b.to_string();
                    r.queue_mode = params.queue_mode();
                } else if params.queue {
                    r.queue_mode = true;
                }
                if let Some(sms) = params.sms {
                    r.sms = Some(sms.into());
                }
                if let Some(o) = objects {
                    r.objects = o;
                }
                r.updated_at_ms = now_ms;
                r.owner_node = Some(self.node_id.clone());
                entry.last_seen = now;
                entry.expires = now
                    + Duration::from_secs(u64::from(entry.reg.lifetime_s))
                    + self.limits.expiry_grace;
                entry.reg.clone()
            };
            if old_address != peer {
                st.unlink_address(old_address, &ep);
                st.by_address.insert(peer, ep.as_str().into());
            }
            Self::wake(&st, &ep);
            (reg, old_address)
        };
        self.persist(&reg);
        if old_address != peer {
            self.audit_move(&reg.endpoint, "address-changed", old_address, peer);
        }
        self.events.publish(ServerEvent::Updated {
            endpoint: reg.endpoint.clone(),
            address: peer.to_string(),
        });
        Ok(reg)
    }

    /// [`Registry::update`], and on a shared store also for a registration this node let go of
    /// since the request was admitted: its release sweep may run between the two (it read that
    /// another node took the device over, for instance after a datagram from the device's old
    /// address reached that node), and the device would get 4.04 and register again. Takes the
    /// registration back from the store instead. True when it was taken over (its job steps
    /// resume here).
    pub fn update_or_take_over(
        &self,
        peer: SocketAddr,
        reg_id: &str,
        query: &[String],
        payload: &[u8],
    ) -> Result<(Registration, bool), RegError> {
        match self.update(peer, reg_id, query, payload) {
            Err(RegError::NotFound) if self.take_over_id(reg_id).is_some() => self
                .update(peer, reg_id, query, payload)
                .map(|reg| (reg, true)),
            r => r.map(|reg| (reg, false)),
        }
    }

    /// De-register (DELETE /rd/{id}). On a shared store a registration this node let go of
    /// since the request was admitted is taken back first (see
    /// [`Registry::update_or_take_over`]), so that its row goes too.
    pub fn deregister(&self, reg_id: &str) -> Result<Registration, RegError> {
        match self.deregister_held(reg_id) {
            Err(RegError::NotFound) if self.take_over_id(reg_id).is_some() => {
                self.deregister_held(reg_id)
            }
            r => r,
        }
    }

    fn deregister_held(&self, reg_id: &str) -> Result<Registration, RegError> {
        let reg = {
            let mut st = self.lock();
            let ep = st.by_reg_id.remove(reg_id).ok_or(RegError::NotFound)?;
            let entry = st.by_endpoint.remove(&ep).ok_or(RegError::NotFound)?;
            st.unlink_address(entry.reg.address, &ep);
            entry.reg
        };
        if let Err(e) = self.delete(reg_id) {
            tracing::error!("cannot delete registration {reg_id}: {e}");
        }
        self.events.publish(ServerEvent::Deregistered {
            endpoint: reg.endpoint.clone(),
        });
        Ok(reg)
    }

    /// Removes the registrations whose lifetime (plus grace) has run out; returns their endpoints.
    /// Also forgets the sources whose registration rate is back to normal.
    pub fn expire(&self) -> Vec<String> {
        let now = Instant::now();
        self.rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prune(now);
        let expired: Vec<Registration> = {
            let mut st = self.lock();
            let gone: Vec<String> = st
                .by_endpoint
                .iter()
                .filter(|(_, e)| e.expires <= now)
                .map(|(ep, _)| ep.clone())
                .collect();
            gone.into_iter()
                .filter_map(|ep| {
                    let entry = st.by_endpoint.remove(&ep)?;
                    st.by_reg_id.remove(&entry.reg.reg_id);
                    st.unlink_address(entry.reg.address, &ep);
                    Some(entry.reg)
                })
                .collect()
        };
        self.misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, until| *until > now);
        let mut gone: Vec<String> = Vec::new();
        for reg in &expired {
            match self.delete(&reg.reg_id) {
                // Another node took the device over and keeps its row fresh: not expired.
                Ok(false) if self.shared => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("cannot delete expired registration {}: {e}", reg.reg_id)
                }
            }
            gone.push(reg.endpoint.clone());
        }
        if self.shared {
            // The rows of devices nobody holds (their node died and they never spoke to
            // another): every node sweeps, and one DELETE takes each row once.
            let grace_ms = i64::try_from(self.limits.expiry_grace.as_millis()).unwrap_or(0);
            match self
                .store
                .delete_expired_registrations(self.clock.now_ms(), grace_ms)
            {
                Ok(eps) => {
                    for ep in eps {
                        if !gone.contains(&ep) {
                            gone.push(ep);
                        }
                    }
                }
                Err(e) => tracing::error!("cannot sweep expired registrations: {e}"),
            }
        }
        for ep in &gone {
            self.events.publish(ServerEvent::Expired {
                endpoint: ep.clone(),
            });
        }
        gone
    }

    /// On a shared store, forgets the registrations this node holds whose row another node now
    /// owns (the device's datagrams land there now): their endpoints, whose job steps this node
    /// must stop running. Writes again the registrations whose write failed (the database was
    /// down). Reads only the rows whose owner changed since the last sweep that worked, less
    /// [`OWNER_CHANGE_MARGIN`]; an entry heard since the query began is left alone (its row
    /// may be in flight).
    pub fn release_moved(&self) -> Vec<String> {
        if !self.shared {
            return Vec::new();
        }
        let began = Instant::now();
        let began_ms = self.clock.now_ms();
        let since_ms = *self
            .moved_since_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let rows: HashMap<String, (String, Option<String>)> =
            match self.store.owners_changed_since(since_ms) {
                Ok(rows) => rows
                    .into_iter()
                    .map(|(ep, id, owner)| (ep, (id, owner)))
                    .collect(),
                Err(e) => {
                    // The window stays where it was: the next sweep reads this one's rows too.
                    tracing::error!("cannot read which registrations changed owner: {e}");
                    return Vec::new();
                }
            };
        *self
            .moved_since_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = began_ms - OWNER_CHANGE_MARGIN_MS;
        let unwritten: Vec<String> = self
            .unwritten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        let gone = self.moved_away_and_gone(&rows);
        let mut st = self.lock();
        let mut moved = Vec::new();
        for (ep, heard) in gone {
            if st.by_endpoint.get(&ep).is_some_and(|e| e.last_seen < heard) {
                moved.push(ep);
            }
        }
        for (ep, (_, owner)) in &rows {
            let Some(e) = st.by_endpoint.get(ep) else {
                continue;
            };
            if e.last_seen < began && owner.as_deref().is_some_and(|o| o != self.node_id) {
                moved.push(ep.clone());
            }
        }
        for ep in &moved {
            if let Some(entry) = st.by_endpoint.remove(ep) {
                st.by_reg_id.remove(&entry.reg.reg_id);
                st.unlink_address(entry.reg.address, ep);
            }
        }
        let stale: Vec<Registration> = unwritten
            .iter()
            .filter_map(|ep| st.by_endpoint.get(ep).map(|e| e.reg.clone()))
            .collect();
        drop(st);
        if !stale.is_empty() {
            tracing::info!(
                "writing again {} registrations the database lacked",
                stale.len()
            );
        }
        for reg in &stale {
            self.persist(reg);
        }
        moved
    }

    /// The devices another node said it took from this node that the owner-change query did not
    /// return and whose row is gone or has another owner, each with when the event was heard.
    /// One look-up per named device; a failed one is kept for the next sweep.
    fn moved_away_and_gone(
        &self,
        changed: &HashMap<String, (String, Option<String>)>,
    ) -> Vec<(String, Instant)> {
        let named: Vec<(String, Instant)> =
            std::mem::take(&mut *self.moved_away.lock().unwrap_or_else(|p| p.into_inner()));
        let mut gone = Vec::new();
        for (ep, heard) in named {
            if changed.contains_key(&ep) {
                continue;
            }
            match self.store.registration_of(&ep) {
                Ok(None) => gone.push((ep, heard)),
                Ok(Some(row)) if row.owner_node.as_deref() != Some(self.node_id.as_str()) => {
                    gone.push((ep, heard))
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::error!("cannot look up the registration of {ep}: {e}");
                    self.moved_away
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((ep, heard));
                }
            }
        }
        gone
    }

    /// Deletes a stored registration; on a shared store only while this node owns it.
    fn delete(&self, reg_id: &str) -> crate::store::Result<bool> {
        if self.shared {
            self.store.delete_registration_owned(reg_id, &self.node_id)
        } else {
            self.store.delete_registration(reg_id)
        }
    }

    /// Another node said it took `endpoint` over from this node: the next
    /// [`Registry::release_moved`] sweep runs now (see [`Registry::sweep_wanted`]) and lets the
    /// device go unless it spoke to this node since, even when its row is already gone.
    pub fn moved_away(&self, endpoint: String) {
        self.moved_away
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((endpoint, Instant::now()));
        self.sweep_wanted.notify_one();
    }

    /// Completes when a sweep was asked for since the last one began waiting.
    pub async fn sweep_wanted(&self) {
        self.sweep_wanted.notified().await;
    }

    /// Notes that a datagram came from `peer`: a queue-mode client is awake now. The endpoint
    /// this node holds at `peer`, if any (one lookup for the fast path's two questions).
    pub fn seen(&self, peer: SocketAddr) -> Option<Arc<str>> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let ep = st.by_address.get(&peer)?;
        if let Some(entry) = st.by_endpoint.get_mut(&**ep) {
            entry.last_seen = Instant::now();
        }
        if let Some(n) = st.wakers.get(&**ep) {
            n.notify_waiters();
        }
        Some(ep.clone())
    }

    fn wake(st: &State, endpoint: &str) {
        if let Some(n) = st.wakers.get(endpoint) {
            n.notify_waiters();
        }
    }

    /// Whether a request to `endpoint` can go out now: always for a client not in queue mode,
    /// and for a queue-mode client while it is in its awake window.
    pub fn is_reachable(&self, endpoint: &str) -> bool {
        let st = self.lock();
        st.by_endpoint.get(endpoint).is_some_and(|e| {
            !e.reg.queue_mode || e.last_seen + self.limits.awake_window > Instant::now()
        })
    }

    /// [`Registry::is_reachable`] for a registration this node may not hold: one held by
    /// another node is taken as reachable unless in queue mode (only its owner knows whether
    /// it is awake; the owner's job step waits for it anyway).
    pub fn is_reachable_anywhere(&self, reg: &Registration) -> bool {
        if self.lock().by_endpoint.contains_key(&reg.endpoint) {
            return self.is_reachable(&reg.endpoint);
        }
        self.shared && !reg.queue_mode
    }

    /// A handle that is notified whenever `endpoint` speaks (registers, updates or sends anything).
    pub fn waker(&self, endpoint: &str) -> Arc<Notify> {
        self.lock()
            .wakers
            .entry(endpoint.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    pub fn get(&self, endpoint: &str) -> Option<Registration> {
        self.lock().by_endpoint.get(endpoint).map(|e| e.reg.clone())
    }

    /// The endpoint registered under `reg_id`.
    pub fn endpoint_of(&self, reg_id: &str) -> Option<String> {
        self.lock().by_reg_id.get(reg_id).cloned()
    }

    /// The endpoint name registered at `peer` (cheaper than [`Registry::by_address`]: no copy
    /// of the registration).
    pub fn endpoint_by_address(&self, peer: SocketAddr) -> Option<String> {
        self.lock().by_address.get(&peer).map(|ep| ep.to_string())
    }

    pub fn by_address(&self, peer: SocketAddr) -> Option<Registration> {
        let st = self.lock();
        st.by_address
            .get(&peer)
            .and_then(|ep| st.by_endpoint.get(&**ep))
            .map(|e| e.reg.clone())
    }

    /// The endpoint registered at `peer`, else the only one registered from its IP address (a
    /// client may fetch firmware from another port than it registered from).
    pub fn endpoint_at(&self, peer: SocketAddr) -> Option<String> {
        let st = self.lock();
        if let Some(ep) = st.by_address.get(&peer) {
            return Some(ep.to_string());
        }
        let mut same_ip = st.by_address.iter().filter(|(a, _)| a.ip() == peer.ip());
        match (same_ip.next(), same_ip.next()) {
            (Some((_, ep)), None) => Some(ep.to_string()),
            _ => None,
        }
    }

    pub fn all(&self) -> Vec<Registration> {
        let mut v: Vec<Registration> = self
            .lock()
            .by_endpoint
            .values()
            .map(|e| e.reg.clone())
            .collect();
        v.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        v
    }

    pub fn len(&self) -> usize {
        self.lock().by_endpoint.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expiry(&self, now: Instant, lifetime_s: u32) -> Instant {
        now + Duration::from_secs(u64::from(lifetime_s)) + self.limits.expiry_grace
    }

    /// Validates the registration payload (CoRE link format) and keeps it as text.
    fn objects(&self, payload: &[u8]) -> Result<String, RegError> {
        if payload.len() > self.limits.max_objects_len {
            return Err(RegError::BadRequest(format!(
                "object list larger than {} bytes",
                self.limits.max_objects_len
            )));
        }
        let text = std::str::from_utf8(payload)
            .map_err(|_| RegError::BadRequest("object list is not UTF-8".into()))?;
        for link in LinkParser::new(text) {
            link.map_err(|e| RegError::BadRequest(format!("object list: {e}")))?;
        }
        Ok(text.to_string())
    }

    /// Writes a registration; on a shared store one whose write failed is written again at the
    /// next [`Registry::release_moved`], and when the row had another owner (a takeover, or a
    /// Register through this node of a device another node holds) a `moved` event tells it.
    fn persist(&self, reg: &Registration) {
        match self
            .store
            .put_registration(&reg.record(), self.clock.now_ms())
        {
            // Another node held the device (it registered, updated or spoke here since): that
            // node releases it when it hears this, not at its next sweep only.
            Ok(Some(from_node)) if self.shared => self.events.publish(ServerEvent::Moved {
                endpoint: reg.endpoint.clone(),
                from_node,
                to_node: self.node_id.clone(),
            }),
            Ok(_) => {}
            Err(e) => {
                tracing::error!("cannot store registration of {}: {e}", reg.endpoint);
                if self.shared {
                    self.unwritten
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(reg.endpoint.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn registry() -> (Arc<Store>, Registry) {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let r = Registry::load(
            store.clone(),
            Arc::new(SystemClock),
            EventBus::default(),
            RegistryLimits::default(),
        )
        .unwrap();
        (store, r)
    }

    fn q(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn register_update_deregister() {
        let (store, r) = registry();
        let reg = r
            .register(
                addr(1),
                &q(&["ep=dev-1", "lt=60", "lwm2m=1.1", "b=U"]),
                b"</1/0>,</3/0>,</5/0>",
            )
            .unwrap();
        assert_eq!(reg.lifetime_s, 60);
        assert_eq!(reg.lwm2m_version, "1.1");
        assert!(reg.has_object(5));
        assert!(!reg.has_object(4));
        assert_eq!(store.registrations().unwrap().len(), 1);
        // The client moved: found again by its registration id, now at the new address.
        let up = r
            .update(addr(2), &reg.reg_id, &q(&["lt=120"]), b"")
            .unwrap();
        assert_eq!(up.address, addr(2));
        assert_eq!(up.lifetime_s, 120);
        assert_eq!(r.by_address(addr(2)).unwrap().endpoint, "dev-1");
        assert!(r.by_address(addr(1)).is_none());
        assert_eq!(store.registrations().unwrap()[0].address, "127.0.0.1:2");
        assert_eq!(
            r.update(addr(2), "nope", &q(&[]), b"").unwrap_err(),
            RegError::NotFound
        );
        r.deregister(&reg.reg_id).unwrap();
        assert!(r.get("dev-1").is_none());
        assert!(store.registrations().unwrap().is_empty());
        assert_eq!(r.deregister(&reg.reg_id).unwrap_err().coap_code(), 0x84);
    }

    #[tokio::test]
    async fn bad_parameters_are_4_00() {
        let (_s, r) = registry();
        for query in [
            &["lt=60"][..],
            &["ep=x", "lt=abc"],
            &["ep=x", "lt=0"],
            &["ep=x", "b=Z"],
            &["ep="],
        ] {
            let e = r.register(addr(1), &q(query), b"</1/0>").unwrap_err();
            assert_eq!(e.coap_code(), 0x80, "{query:?}: {e}");
        }
        assert_eq!(
            r.register(addr(1), &q(&["ep=x"]), b"<1/0")
                .unwrap_err()
                .coap_code(),
            0x80
        );
        assert_eq!(
            r.register(addr(1), &q(&["ep=x"]), &[0xff, 0xfe])
                .unwrap_err()
                .coap_code(),
            0x80
        );
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn the_registration_limit_answers_5_03_but_lets_known_clients_re_register() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let limits = RegistryLimits {
            max_registrations: 2,
            ..Default::default()
        };
        let r = Registry::load(store, Arc::new(SystemClock), EventBus::default(), limits).unwrap();
        r.register(addr(1), &q(&["ep=a"]), b"").unwrap();
        r.register(addr(2), &q(&["ep=b"]), b"").unwrap();
        assert_eq!(
            r.register(addr(3), &q(&["ep=c"]), b"").unwrap_err(),
            RegError::Full
        );
        assert_eq!(RegError::Full.coap_code(), 0xa3);
        r.register(addr(4), &q(&["ep=a"]), b"").unwrap();
        assert_eq!(r.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn lifetime_expiry_removes_silent_clients() {
        let (store, r) = registry();
        r.register(addr(1), &q(&["ep=short", "lt=10"]), b"")
            .unwrap();
        let long = r
            .register(addr(2), &q(&["ep=long", "lt=100"]), b"")
            .unwrap();
        tokio::time::advance(Duration::from_secs(39)).await;
        assert!(r.expire().is_empty(), "lifetime + 30 s grace not over yet");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(r.expire(), vec!["short".to_string()]);
        // An update renews the lifetime.
        tokio::time::advance(Duration::from_secs(100)).await;
        r.update(addr(2), &long.reg_id, &q(&[]), b"").unwrap();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(r.expire().is_empty());
        assert_eq!(store.registrations().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_mode_clients_are_reachable_only_while_awake() {
        let (_s, r) = registry();
        r.register(addr(1), &q(&["ep=sleepy", "lwm2m=1.1", "Q"]), b"")
            .unwrap();
        r.register(addr(2), &q(&["ep=old-style", "b=UQ"]), b"")
            .unwrap();
        r.register(addr(3), &q(&["ep=awake"]), b"").unwrap();
        assert!(r.get("sleepy").unwrap().queue_mode && r.get("old-style").unwrap().queue_mode);
        assert!(r.is_reachable("sleepy"));
        tokio::time::advance(Duration::from_secs(94)).await;
        assert!(!r.is_reachable("sleepy"));
        assert!(r.is_reachable("awake"));
        let waker = r.waker("sleepy");
        let woke = waker.notified();
        r.seen(addr(1));
        woke.await;
        assert!(r.is_reachable("sleepy"));
    }

    /// A wall clock the test sets.
    struct At(std::sync::atomic::AtomicI64);

    impl Clock for At {
        fn now_ms(&self) -> i64 {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expired_registrations_do_not_come_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(At(1_000_000_000.into()));
        let load = |clock: Arc<At>| {
            let store = Arc::new(Store::open(dir.path()).unwrap());
            let r = Registry::load(
                store.clone(),
                clock,
                EventBus::default(),
                RegistryLimits::default(),
            )
            .unwrap();
            (store, r)
        };
        let (store, r) = load(clock.clone());
        r.register(addr(1), &q(&["ep=short", "lt=60"]), b"")
            .unwrap();
        r.register(addr(2), &q(&["ep=long", "lt=3600"]), b"")
            .unwrap();
        drop(r);
        drop(store);
        // Down for 10 minutes: `short` (60 s + 30 s grace) ran out, `long` has 50 min + grace left.
        clock.0.store(
            1_000_000_000 + 600_000,
            std::sync::atomic::Ordering::Relaxed,
        );
        let (store, r) = load(clock.clone());
        assert!(r.get("short").is_none());
        assert!(r.get("long").is_some());
        assert_eq!(
            store.registrations().unwrap().len(),
            1,
            "deleted from the store too"
        );
        // `long` keeps the time it had left, not a whole new lifetime.
        tokio::time::advance(Duration::from_secs(3000 + 29)).await;
        assert!(r.expire().is_empty());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(r.expire(), vec!["long".to_string()]);
    }

    #[tokio::test]
    async fn registration_ids_are_random_and_lifetimes_capped() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let limits = RegistryLimits {
            max_lifetime_s: 100,
            ..Default::default()
        };
        let r = Registry::load(store, Arc::new(SystemClock), EventBus::default(), limits).unwrap();
        let a = r.register(addr(1), &q(&["ep=a", "lt=100"]), b"").unwrap();
        let b = r.register(addr(1), &q(&["ep=b"]), b"").unwrap();
        assert_eq!(b.lifetime_s, 100, "the default lifetime is capped too");
        assert_ne!(a.reg_id, b.reg_id);
        assert_eq!(a.reg_id.len(), REG_ID_LEN);
        let e = r
            .register(addr(1), &q(&["ep=c", "lt=101"]), b"")
            .unwrap_err();
        assert_eq!(e.coap_code(), 0x80, "{e}");
        let e = r
            .update(addr(1), &a.reg_id, &q(&["lt=101"]), b"")
            .unwrap_err();
        assert_eq!(e.coap_code(), 0x80, "{e}");
        // Printable names in any script; nothing that drives a terminal.
        r.register(addr(1), &q(&["ep=dév-雪"]), b"").unwrap();
        for bad in ["ep=a\u{1b}b", "ep=a\nb", "ep=a\u{202e}b", "ep=\u{feff}x"] {
            let e = r.register(addr(1), &q(&[bad]), b"").unwrap_err();
            assert_eq!(e.coap_code(), 0x80, "{bad:?}");
        }
    }

    /// Two nodes on one PostgreSQL database: what one registers the other lists and takes over
    /// at the device's Update (or any datagram from its address), and the first then lets go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_takes_over_a_device_another_node_registered() {
        let Some(pg) = crate::store::pg_cluster::PgCluster::start() else {
            return;
        };
        let url = pg.new_database();
        let node = |name: &str| {
            let store = Arc::new(Store::open_postgres(&url).unwrap());
            Registry::load_as(
                store,
                Arc::new(SystemClock),
                EventBus::default(),
                RegistryLimits::default(),
                name.into(),
            )
            .unwrap()
        };
        let (a, b) = (node("a"), node("b"));
        assert!(a.is_shared() && b.is_shared());
        let reg = a
            .register(addr(1), &q(&["ep=dev", "lt=60"]), b"</5/0>")
            .unwrap();
        let other = a.register(addr(2), &q(&["ep=other"]), b"").unwrap();
        assert_eq!(reg.owner_node.as_deref(), Some("a"));
        // b does not hold them, but lists them and finds them, with their owner.
        assert!(b.get("dev").is_none());
        let fleet = b.fleet();
        assert_eq!(fleet.len(), 2);
        assert!(fleet.iter().all(|r| r.owner_node.as_deref() == Some("a")));
        assert_eq!(b.lookup("dev").unwrap().reg_id, reg.reg_id);
        assert!(b.is_reachable_anywhere(&b.lookup("dev").unwrap()));
        // a's sweep before any takeover: nothing moved (and its window moves on).
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(a.release_moved().is_empty());
        // The device's Update reaches b: b takes it over instead of answering 4.04.
        assert_eq!(b.take_over_id(&reg.reg_id).as_deref(), Some("dev"));
        assert_eq!(b.take_over_id(&reg.reg_id), None, "held already");
        let up = b.update(addr(1), &reg.reg_id, &q(&[]), b"").unwrap();
        assert_eq!(up.owner_node.as_deref(), Some("b"));
        // Any datagram from the other device's address: taken over too; an unknown address is not.
        assert_eq!(b.take_over_address(addr(2)).as_deref(), Some("other"));
        assert_eq!(b.take_over_address(addr(3)), None);
        assert_eq!(b.get("other").unwrap().reg_id, other.reg_id);
        // a lets both go at its next sweep, and may no longer delete their rows.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut moved = a.release_moved();
        moved.sort();
        assert_eq!(moved, ["dev", "other"]);
        assert!(a.release_moved().is_empty(), "released once");
        assert!(a.get("dev").is_none());
        assert_eq!(b.fleet().len(), 2);
        assert!(
            b.fleet()
                .iter()
                .all(|r| r.owner_node.as_deref() == Some("b"))
        );
        // An Update a admitted before its sweep let the device go (the device's datagrams
        // reach a again): a takes the registration back rather than answering 4.04.
        assert!(matches!(
            a.update(addr(1), &reg.reg_id, &q(&[]), b""),
            Err(RegError::NotFound)
        ));
        let (back, taken_over) = a
            .update_or_take_over(addr(1), &reg.reg_id, &q(&["lt=70"]), b"")
            .unwrap();
        assert!(taken_over);
        assert_eq!(
            (back.owner_node.as_deref(), back.lifetime_s),
            (Some("a"), 70)
        );
        let (_, again) = a
            .update_or_take_over(addr(1), &reg.reg_id, &q(&[]), b"")
            .unwrap();
        assert!(!again, "held now");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(b.release_moved(), ["dev"]);
        // The same for a de-register: b takes it back and deletes the row.
        b.deregister(&reg.reg_id).unwrap();
        assert_eq!(a.fleet().len(), 1);
        assert!(matches!(b.deregister(&reg.reg_id), Err(RegError::NotFound)));
        // a still holds the device: its row is gone, so no owner change shows it. b's moved
        // event names it (the relay calls `moved_away`), and a lets it go by name.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(a.release_moved().is_empty());
        assert!(a.get("dev").is_some());
        a.moved_away("dev".into());
        a.moved_away("other".into()); // b still holds its row: already let go, nothing to do
        assert_eq!(a.release_moved(), ["dev"]);
        assert!(a.get("dev").is_none());
        assert!(a.moved_away.lock().unwrap().is_empty(), "checked once");
    }

    #[tokio::test]
    async fn a_restarted_registry_remembers_clients() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let r = Registry::load(
            store.clone(),
            Arc::new(SystemClock),
            EventBus::default(),
            RegistryLimits::default(),
        )
        .unwrap();
        let reg = r.register(addr(7), &q(&["ep=dev"]), b"</5/0>").unwrap();
        drop(r);
        drop(store);
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let r = Registry::load(
            store,
            Arc::new(SystemClock),
            EventBus::default(),
            RegistryLimits::default(),
        )
        .unwrap();
        assert_eq!(r.get("dev").unwrap(), reg);
        r.update(addr(8), &reg.reg_id, &q(&[]), b"").unwrap();
    }
}

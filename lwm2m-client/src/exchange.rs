//! The device's outgoing CoAP requests (RFC 7252 §4): a few fixed slots, each holding one
//! confirmable request until its response arrives, retransmitted with exponential back-off from
//! an RTO that adapts to the path (`rto`, the CoCoA way). Responses are matched by peer and token;
//! an empty ACK stops retransmission and the slot waits for the separate response.

use core::net::SocketAddr;

use lwm2m_core::coap::params::{EXCHANGE_LIFETIME, MAX_RETRANSMIT};
use lwm2m_core::coap::{Code, Message, MessageType};

use crate::engine::limits::{EXCHANGE_SLOTS, MAX_REQUEST, RTO_PEERS, TOKEN_LEN};
use crate::rto::{Rto, RtoConfig};
use crate::time::{Duration, Instant, earliest};

/// How long to wait for a separate response after an empty ACK (RFC 7252 EXCHANGE_LIFETIME).
const SEPARATE_RESPONSE_WAIT: Duration = Duration::from_core(EXCHANGE_LIFETIME);

/// What a request is for, so the engine knows what to do with its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Register,
    Update,
    /// A block request of a download: the block number.
    Block(u32),
    /// A notification of the observation in this observer slot.
    Notify(u8),
}

/// How an exchange ended without a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// MAX_RETRANSMIT retransmissions went unanswered.
    Timeout,
    /// The peer answered with a Reset.
    Reset,
}

#[derive(Clone, Copy)]
struct Slot {
    purpose: Purpose,
    peer: SocketAddr,
    message_id: u16,
    token: [u8; TOKEN_LEN],
    len: usize,
    buf: [u8; MAX_REQUEST],
    first_sent: Instant,
    next_send: Instant,
    timeout: Duration,
    retransmits: u8,
    /// Bytes waiting to go out (first transmission or a retransmission).
    due: bool,
    /// An empty ACK came: wait for the separate response until then.
    acked_until: Option<Instant>,
}

/// The outgoing requests and the RTO per peer.
pub struct Exchanges {
    slots: [Option<Slot>; EXCHANGE_SLOTS],
    /// RTO estimators for the two peers a device talks to (LwM2M server, firmware host).
    rto: [(Option<SocketAddr>, Rto); RTO_PEERS],
    rto_config: RtoConfig,
    next_message_id: u16,
    next_token: u32,
    rng: u32,
}

/// Why a request could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// All slots are busy.
    Busy,
    /// The request did not fit [`MAX_REQUEST`].
    TooLarge,
}

impl Exchanges {
    /// `seed` varies message ids, tokens and jitter between boots (any value from the driver).
    pub fn new(seed: u32, rto: RtoConfig) -> Self {
        // Spread every bit of the seed over the message id, token and jitter streams, so seeds
        // that differ in any bit start at different message ids.
        let mixed = {
            let mut x = seed ^ 0x9e37_79b9;
            x ^= x >> 16;
            x = x.wrapping_mul(0x7feb_352d);
            x ^= x >> 15;
            x = x.wrapping_mul(0x846c_a68b);
            x ^ (x >> 16)
        };
        Exchanges {
            slots: [None; EXCHANGE_SLOTS],
            rto: [(None, Rto::new(rto)); RTO_PEERS],
            rto_config: rto,
            next_message_id: mixed as u16,
            next_token: mixed.rotate_left(7),
            rng: mixed | 1,
        }
    }

    fn random(&mut self) -> u32 {
        // xorshift32: jitter only, not security.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.rng
    }

    fn rto_of(&mut self, peer: SocketAddr) -> &mut Rto {
        let config = self.rto_config;
        let [first, second] = &mut self.rto;
        if first.0 == Some(peer) {
            return &mut first.1;
        }
        if second.0 != Some(peer) {
            // A new peer takes the first free estimator, else the second one.
            let slot = if first.0.is_none() {
                &mut *first
            } else {
                &mut *second
            };
            *slot = (Some(peer), Rto::new(config));
            return &mut slot.1;
        }
        &mut second.1
    }

    /// The message id the next request will use (for callers that must build it first).
    fn take_message_id(&mut self) -> u16 {
        self.next_message_id = self.next_message_id.wrapping_add(1);
        self.next_message_id
    }

    /// Whether a request for `purpose` is in flight.
    pub fn busy(&self, purpose: Purpose) -> bool {
        self.slots.iter().flatten().any(|s| s.purpose == purpose)
    }

    /// How many block requests are in flight.
    pub fn blocks_in_flight(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| matches!(s.purpose, Purpose::Block(_)))
            .count()
    }

    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(Option::is_none)
    }

    /// Starts a confirmable request: `build` writes it into the buffer with the given message id
    /// and token and returns its length.
    pub fn start(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        purpose: Purpose,
        build: impl FnOnce(&mut [u8], u16, &[u8]) -> Option<usize>,
    ) -> Result<(), StartError> {
        let free = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(StartError::Busy)?;
        let message_id = self.take_message_id();
        self.next_token = self.next_token.wrapping_add(0x9e37_79b9);
        let token = self.next_token.to_be_bytes();
        let mut buf = [0u8; MAX_REQUEST];
        let len = build(&mut buf, message_id, &token).ok_or(StartError::TooLarge)?;
        // The first timeout: random in [RTO, 1.5 RTO] (RFC 7252 ACK_RANDOM_FACTOR).
        let base = self.rto_of(peer).current().as_millis();
        let jitter = u64::from(self.random() % 1000).saturating_mul(base / 2) / 1000;
        let timeout = Duration(base.saturating_add(jitter));
        let slot = Slot {
            purpose,
            peer,
            message_id,
            token,
            len,
            buf,
            first_sent: now,
            next_send: now + timeout,
            timeout,
            retransmits: 0,
            due: true,
            acked_until: None,
        };
        if let Some(s) = self.slots.get_mut(free) {
            *s = Some(slot);
        }
        Ok(())
    }

    /// How many requests for `purpose` are in flight, and the most retransmissions among them.
    pub fn attempts(&self, purpose: Purpose) -> (usize, u8) {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.purpose == purpose)
            .fold((0, 0), |(n, r), s| {
                (n.saturating_add(1), r.max(s.retransmits))
            })
    }

    /// Drops the requests for `purpose`, if any (their answers will be ignored).
    pub fn cancel(&mut self, purpose: Purpose) {
        for s in self.slots.iter_mut() {
            if s.is_some_and(|x| x.purpose == purpose) {
                *s = None;
            }
        }
    }

    /// Drops every block request (a download that stops).
    pub fn cancel_blocks(&mut self) {
        for s in self.slots.iter_mut() {
            if s.is_some_and(|x| matches!(x.purpose, Purpose::Block(_))) {
                *s = None;
            }
        }
    }

    /// Matches an incoming message against the requests in flight. Returns the purpose when `msg`
    /// is the response (the slot is freed), nothing for an empty ACK or an unrelated message.
    /// A Reset to a request ends it as [`Failure::Reset`], reported through `reset`.
    pub fn on_message(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        msg: &Message<'_>,
        reset: &mut Option<(Purpose, Failure)>,
    ) -> Option<Purpose> {
        let by_mid = |s: &Slot| s.peer == peer && s.message_id == msg.message_id;
        match (msg.ty, msg.code) {
            (MessageType::Acknowledgement, Code::EMPTY) => {
                let i = self
                    .slots
                    .iter()
                    .position(|s| s.is_some_and(|s| by_mid(&s)))?;
                let slot = self.slots.get_mut(i)?;
                let purpose = slot.as_ref()?.purpose;
                if matches!(purpose, Purpose::Notify(_)) {
                    // A notification is a response: its empty ACK ends the exchange.
                    *slot = None;
                    return Some(purpose);
                }
                // A request: the response comes separately.
                if let Some(s) = slot.as_mut() {
                    s.acked_until = Some(now + SEPARATE_RESPONSE_WAIT);
                    s.due = false;
                }
                None
            }
            (MessageType::Reset, _) => {
                let i = self
                    .slots
                    .iter()
                    .position(|s| s.is_some_and(|s| by_mid(&s)))?;
                let purpose = self.slots.get(i).copied().flatten()?.purpose;
                if let Some(s) = self.slots.get_mut(i) {
                    *s = None;
                }
                *reset = Some((purpose, Failure::Reset));
                None
            }
            (_, code) if code.is_response() => {
                let i = self.slots.iter().position(|s| {
                    s.is_some_and(|s| s.peer == peer && s.token.as_slice() == msg.token())
                })?;
                let slot = self.slots.get(i).copied().flatten()?;
                if let Some(s) = self.slots.get_mut(i) {
                    *s = None;
                }
                // Only an answer to the original transmission timed exactly (Karn): CoCoA still
                // counts retransmitted exchanges, measured from the first transmission.
                let rtt = now - slot.first_sent;
                self.rto_of(peer).answered(rtt, u32::from(slot.retransmits));
                Some(slot.purpose)
            }
            _ => None,
        }
    }

    /// The next datagram due, copied into `out`.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let slot = self.slots.iter_mut().flatten().find(|s| s.due)?;
        let bytes = slot.buf.get(..slot.len)?;
        let dst = out.get_mut(..bytes.len())?;
        dst.copy_from_slice(bytes);
        slot.due = false;
        Some((slot.peer, slot.len))
    }

    /// Advances retransmission timers; returns a request that gave up.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<(Purpose, Failure)> {
        let mut failed = None;
        let mut failed_peer = None;
        for s in self.slots.iter_mut() {
            let Some(slot) = s else { continue };
            if let Some(until) = slot.acked_until {
                if now >= until {
                    failed = Some((slot.purpose, Failure::Timeout));
                    *s = None;
                    break;
                }
                continue;
            }
            if now < slot.next_send {
                continue;
            }
            if slot.retransmits >= MAX_RETRANSMIT {
                // One failure per call: the caller calls again until none is left.
                failed = Some((slot.purpose, Failure::Timeout));
                failed_peer = Some(slot.peer);
                *s = None;
                break;
            }
            slot.retransmits = slot.retransmits.saturating_add(1);
            slot.timeout = Duration(slot.timeout.as_millis().saturating_mul(2));
            slot.next_send = now + slot.timeout;
            slot.due = true;
        }
        if let Some(peer) = failed_peer {
            self.rto_of(peer).failed();
        }
        failed
    }

    /// When [`Exchanges::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots.iter().flatten().fold(None, |acc, s| {
            earliest(acc, Some(s.acked_until.unwrap_or(s.next_send)))
        })
    }

    /// Whether a datagram is waiting for [`Exchanges::poll_transmit`].
    pub fn has_due(&self) -> bool {
        self.slots.iter().flatten().any(|s| s.due)
    }

    /// The current RTO towards `peer` (for reports).
    pub fn rto(&mut self, peer: SocketAddr) -> Duration {
        self.rto_of(peer).current()
    }
}

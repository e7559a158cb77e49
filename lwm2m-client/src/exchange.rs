//! The device's outgoing CoAP requests (RFC 7252 §4): a few fixed slots, each holding one
//! confirmable request until its response arrives, retransmitted with exponential back-off from
//! an RTO that adapts to the path (`rto`, the CoCoA way). Responses are matched by peer and token;
//! an empty ACK stops retransmission and the slot waits for the separate response.
//!
//! Block requests keep no bytes: a slot holds (NUM, SZX, message id, token) and the request is
//! encoded again, byte for byte the same, whenever it is due ([`Exchanges::poll_transmit`]'s
//! `encode`). Only the other requests (Register, Update, notifications) hold their bytes, in a few
//! buffers: that is what lets a download keep many requests in flight in little RAM.

use core::net::SocketAddr;
use core::ops::Range;

use lwm2m_core::coap::params::{EXCHANGE_LIFETIME, MAX_RETRANSMIT};
use lwm2m_core::coap::{Code, Message, MessageType};

use crate::engine::limits::{
    BLOCK_SLOTS, EXCHANGE_SLOTS, MAX_REQUEST, REQUEST_BUFFERS, RTO_PEERS, TOKEN_LEN,
};
use crate::rto::{Rto, RtoConfig};
use crate::time::{Duration, Instant, earliest};

/// How long to wait for a separate response after an empty ACK (RFC 7252 EXCHANGE_LIFETIME).
const SEPARATE_RESPONSE_WAIT: Duration = Duration::from_core(EXCHANGE_LIFETIME);

/// One Block2 request: block NUM of size 2^(SZX+4) (RFC 7959).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockReq {
    pub num: u32,
    pub szx: u8,
}

impl BlockReq {
    /// The block of size 2^(`szx`+4) that starts at `offset` (a multiple of that size).
    pub fn at(offset: u32, szx: u8) -> Self {
        BlockReq {
            num: offset >> (u32::from(szx) + 4),
            szx,
        }
    }

    /// Bytes per block.
    pub fn size(&self) -> u32 {
        16 << self.szx
    }

    pub fn offset(&self) -> u32 {
        self.num.saturating_mul(self.size())
    }

    /// The bytes it asks for.
    pub fn range(&self) -> Range<u32> {
        self.offset()..self.offset().saturating_add(self.size())
    }
}

/// What a request is for, so the engine knows what to do with its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Register,
    Update,
    /// A block request of a download.
    Block(BlockReq),
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

/// A response matched to its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub purpose: Purpose,
    /// From the first transmission to the answer.
    pub rtt: Duration,
    /// Retransmissions before the answer came (0: answered at the first try).
    pub retransmits: u8,
    /// When the request was first sent.
    pub sent: Instant,
    /// Its start order (see [`Exchanges::next_seq`]).
    pub seq: u32,
    /// Its loss was reported before the answer came (a later request overtook it).
    pub lost: bool,
}

/// What a timer did ([`Exchanges::handle_timeout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timed {
    /// The request went out again for the first time: its first copy, or the answer, was lost.
    FirstRetransmission(Purpose),
    /// The request gave up; its start order.
    Failed(Purpose, Failure, u32),
}

#[derive(Clone, Copy)]
struct Slot {
    purpose: Purpose,
    /// Index of the peer (and its RTO estimator) in `Exchanges::peers`.
    peer: u8,
    message_id: u16,
    token: [u8; TOKEN_LEN],
    /// The request buffer holding the bytes; `None` for a block request (encoded when due).
    buf: Option<u8>,
    len: u16,
    first_sent: Instant,
    next_send: Instant,
    timeout: Duration,
    retransmits: u8,
    /// Bytes waiting to go out (first transmission or a retransmission).
    due: bool,
    /// An empty ACK came: no more retransmissions, and `next_send` is when waiting for the
    /// separate response ends (one field for both deadlines keeps each of the 20 slots small).
    acked: bool,
    /// Order in which block requests started.
    seq: u32,
    /// Answers to block requests started from this number on overtake it: its own `seq`, then
    /// the next number at each retransmission (copies sent before it may still come first).
    since: u32,
    /// Answers to block requests started after its last transmission (it was probably lost).
    overtaken: u8,
    /// Its loss was reported (a first retransmission, or the downloader asked again).
    lost: bool,
}

/// A block request in flight, as the downloader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub req: BlockReq,
    /// Answers to block requests started after its last transmission.
    pub overtaken: u8,
    /// It was retransmitted at least once.
    pub retransmitted: bool,
    /// Its loss was reported already.
    pub lost: bool,
}

/// The outgoing requests and the RTO per peer.
pub struct Exchanges {
    slots: [Option<Slot>; EXCHANGE_SLOTS],
    bufs: [[u8; MAX_REQUEST]; REQUEST_BUFFERS],
    /// The peers a device talks to (LwM2M server, firmware host) and their RTO estimators.
    peers: [(Option<SocketAddr>, Rto); RTO_PEERS],
    rto_config: RtoConfig,
    next_message_id: u16,
    next_token: u32,
    next_seq: u32,
    rng: u32,
}

/// Why a request could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// All slots (or request buffers, or peer estimators) are busy.
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
            bufs: [[0; MAX_REQUEST]; REQUEST_BUFFERS],
            peers: [(None, Rto::new(rto)); RTO_PEERS],
            rto_config: rto,
            next_message_id: mixed as u16,
            next_token: mixed.rotate_left(7),
            next_seq: 0,
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

    /// The estimator index for `peer`: its own, or one that no request in flight uses (a new peer
    /// starts from the configured RTO).
    fn peer_index(&mut self, peer: SocketAddr) -> Option<u8> {
        if let Some(i) = self.peers.iter().position(|p| p.0 == Some(peer)) {
            return u8::try_from(i).ok();
        }
        let in_use = |i: usize| {
            self.slots
                .iter()
                .flatten()
                .any(|s| usize::from(s.peer) == i)
        };
        let free = (0..RTO_PEERS)
            .find(|&i| self.peers.get(i).is_some_and(|p| p.0.is_none()))
            .or_else(|| (0..RTO_PEERS).find(|&i| !in_use(i)))?;
        let config = self.rto_config;
        *self.peers.get_mut(free)? = (Some(peer), Rto::new(config));
        u8::try_from(free).ok()
    }

    fn peer_of(&self, slot: &Slot) -> Option<SocketAddr> {
        self.peers.get(usize::from(slot.peer)).and_then(|p| p.0)
    }

    /// Whether a request for `purpose` is in flight.
    pub fn busy(&self, purpose: Purpose) -> bool {
        self.slots.iter().flatten().any(|s| s.purpose == purpose)
    }

    /// How many block requests are in flight.
    pub fn blocks_in_flight(&self) -> usize {
        self.blocks().count()
    }

    /// The block requests in flight.
    pub fn blocks(&self) -> impl Iterator<Item = InFlight> + '_ {
        self.slots.iter().flatten().filter_map(|s| match s.purpose {
            Purpose::Block(req) => Some(InFlight {
                req,
                overtaken: s.overtaken,
                retransmitted: s.retransmits > 0,
                lost: s.lost,
            }),
            _ => None,
        })
    }

    /// Whether another block request may start: a slot is free, and the ones kept for other
    /// requests stay free.
    pub fn has_block_slot(&self) -> bool {
        self.blocks_in_flight() < BLOCK_SLOTS && self.slots.iter().any(Option::is_none)
    }

    /// Whether a request other than a block request may start: a slot and a buffer are free.
    pub fn has_free_slot(&self) -> bool {
        self.free_buffer().is_some() && self.slots.iter().any(Option::is_none)
    }

    fn free_buffer(&self) -> Option<usize> {
        (0..REQUEST_BUFFERS).find(|&b| {
            !self
                .slots
                .iter()
                .flatten()
                .any(|s| s.buf.is_some_and(|x| usize::from(x) == b))
        })
    }

    fn free_slot(&self) -> Result<usize, StartError> {
        self.slots
            .iter()
            .position(Option::is_none)
            .ok_or(StartError::Busy)
    }

    fn take_ids(&mut self) -> (u16, [u8; TOKEN_LEN]) {
        self.next_message_id = self.next_message_id.wrapping_add(1);
        self.next_token = self.next_token.wrapping_add(0x9e37_79b9);
        (self.next_message_id, self.next_token.to_be_bytes())
    }

    /// The first timeout towards peer `i`: random in [RTO, 1.5 RTO] (RFC 7252 ACK_RANDOM_FACTOR),
    /// the RTO at least `floor`.
    fn first_timeout(&mut self, i: u8, floor: Duration) -> Duration {
        let base = self
            .peers
            .get(usize::from(i))
            .map_or(self.rto_config.initial, |p| p.1.current())
            .as_millis()
            .max(floor.as_millis())
            .min(self.rto_config.max.as_millis());
        let jitter = u64::from(self.random() % 1000).saturating_mul(base / 2) / 1000;
        Duration(base.saturating_add(jitter))
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        at: usize,
        now: Instant,
        purpose: Purpose,
        peer: u8,
        ids: (u16, [u8; TOKEN_LEN]),
        buf: Option<u8>,
        len: u16,
        floor: Duration,
    ) {
        let timeout = self.first_timeout(peer, floor);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        if let Some(s) = self.slots.get_mut(at) {
            *s = Some(Slot {
                purpose,
                peer,
                message_id: ids.0,
                token: ids.1,
                buf,
                len,
                first_sent: now,
                next_send: now + timeout,
                timeout,
                retransmits: 0,
                due: true,
                acked: false,
                seq,
                since: seq,
                overtaken: 0,
                lost: false,
            });
        }
    }

    /// Starts a confirmable request other than a block request: `build` writes it into a
    /// request buffer with the given message id and token and returns its length.
    pub fn start(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        purpose: Purpose,
        build: impl FnOnce(&mut [u8], u16, &[u8]) -> Option<usize>,
    ) -> Result<(), StartError> {
        let at = self.free_slot()?;
        let buf = self.free_buffer().ok_or(StartError::Busy)?;
        let index = self.peer_index(peer).ok_or(StartError::Busy)?;
        let ids = self.take_ids();
        let bytes = self.bufs.get_mut(buf).ok_or(StartError::Busy)?;
        let len = build(bytes, ids.0, &ids.1).ok_or(StartError::TooLarge)?;
        let len = u16::try_from(len).map_err(|_| StartError::TooLarge)?;
        self.put(
            at,
            now,
            purpose,
            index,
            ids,
            u8::try_from(buf).ok(),
            len,
            Duration(0),
        );
        Ok(())
    }

    /// Starts a block request, its first timeout at least `floor` (see
    /// [`Pace::timeout_floor`](crate::firmware::pace::Pace::timeout_floor)); its bytes are encoded
    /// when it is due.
    pub fn start_block(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        req: BlockReq,
        floor: Duration,
    ) -> Result<(), StartError> {
        if !self.has_block_slot() {
            return Err(StartError::Busy);
        }
        let at = self.free_slot()?;
        let index = self.peer_index(peer).ok_or(StartError::Busy)?;
        let ids = self.take_ids();
        self.put(at, now, Purpose::Block(req), index, ids, None, 0, floor);
        Ok(())
    }

    /// The start order the next request will get (see [`Answer::seq`]).
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Reports the block request for `req` as lost (the downloader asked for it again); false
    /// if it was reported already or is not in flight.
    pub fn flag_lost(&mut self, req: BlockReq) -> bool {
        let mut flagged = false;
        for s in self.slots.iter_mut().flatten() {
            if s.purpose == Purpose::Block(req) && !s.lost {
                s.lost = true;
                flagged = true;
            }
        }
        flagged
    }

    /// Drops the requests for `purpose`, if any (their answers will be ignored).
    pub fn cancel(&mut self, purpose: Purpose) {
        self.cancel_where(|p| p == purpose);
    }

    /// Drops every block request (a download that stops).
    pub fn cancel_blocks(&mut self) {
        self.cancel_where(|p| matches!(p, Purpose::Block(_)));
    }

    /// Drops the block requests for which `done` says their answer is no longer needed.
    pub fn cancel_blocks_where(&mut self, mut done: impl FnMut(BlockReq) -> bool) {
        self.cancel_where(|p| matches!(p, Purpose::Block(req) if done(req)));
    }

    fn cancel_where(&mut self, mut f: impl FnMut(Purpose) -> bool) {
        for s in self.slots.iter_mut() {
            if s.is_some_and(|x| f(x.purpose)) {
                *s = None;
            }
        }
    }

    /// Matches an incoming message against the requests in flight. Returns the answer when `msg`
    /// is the response (the slot is freed), nothing for an empty ACK or an unrelated message.
    /// A Reset to a request ends it as [`Failure::Reset`], reported through `reset`.
    pub fn on_message(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        msg: &Message<'_>,
        reset: &mut Option<(Purpose, Failure, u32)>,
    ) -> Option<Answer> {
        let index = self.peers.iter().position(|p| p.0 == Some(peer))?;
        let index = u8::try_from(index).ok()?;
        let by_mid = |s: &Slot| s.peer == index && s.message_id == msg.message_id;
        match (msg.ty, msg.code) {
            (MessageType::Acknowledgement, Code::EMPTY) => {
                let i = self
                    .slots
                    .iter()
                    .position(|s| s.is_some_and(|s| by_mid(&s)))?;
                let slot = self.slots.get_mut(i)?;
                let s = slot.as_mut()?;
                if matches!(s.purpose, Purpose::Notify(_)) {
                    // A notification is a response: its empty ACK ends the exchange.
                    let answer = Answer {
                        purpose: s.purpose,
                        rtt: now - s.first_sent,
                        retransmits: s.retransmits,
                        sent: s.first_sent,
                        seq: s.seq,
                        lost: s.lost,
                    };
                    *slot = None;
                    return Some(answer);
                }
                // A request: the response comes separately.
                s.acked = true;
                s.next_send = now + SEPARATE_RESPONSE_WAIT;
                s.due = false;
                None
            }
            (MessageType::Reset, _) => {
                let i = self
                    .slots
                    .iter()
                    .position(|s| s.is_some_and(|s| by_mid(&s)))?;
                let slot = self.slots.get_mut(i)?;
                let s = slot.take()?;
                *reset = Some((s.purpose, Failure::Reset, s.seq));
                None
            }
            (_, code) if code.is_response() => {
                let i = self.slots.iter().position(|s| {
                    s.is_some_and(|s| s.peer == index && s.token.as_slice() == msg.token())
                })?;
                let slot = self.slots.get_mut(i)?.take()?;
                if let Purpose::Block(answered) = slot.purpose {
                    // Block requests last sent before this one started, for blocks no larger,
                    // are overtaken (a smaller block may come first by its size alone).
                    for s in self.slots.iter_mut().flatten() {
                        if matches!(s.purpose, Purpose::Block(r) if r.szx <= answered.szx)
                            && s.since.wrapping_sub(slot.seq) > u32::MAX / 2
                        {
                            s.overtaken = s.overtaken.saturating_add(1);
                        }
                    }
                }
                // Only an answer to the original transmission timed exactly (Karn): CoCoA still
                // counts retransmitted exchanges, measured from the first transmission.
                let rtt = now - slot.first_sent;
                if let Some(p) = self.peers.get_mut(usize::from(index)) {
                    p.1.answered(rtt, u32::from(slot.retransmits));
                }
                Some(Answer {
                    purpose: slot.purpose,
                    rtt,
                    retransmits: slot.retransmits,
                    sent: slot.first_sent,
                    seq: slot.seq,
                    lost: slot.lost,
                })
            }
            _ => None,
        }
    }

    /// The next datagram due, copied into `out`. A block request is encoded by
    /// `encode(req, out, message id, token)`; one it cannot encode any more (its download is
    /// gone) is dropped.
    pub fn poll_transmit(
        &mut self,
        out: &mut [u8],
        mut encode: impl FnMut(BlockReq, &mut [u8], u16, &[u8]) -> Option<usize>,
    ) -> Option<(SocketAddr, usize)> {
        loop {
            let i = self.slots.iter().position(|s| s.is_some_and(|s| s.due))?;
            let slot = (*self.slots.get(i)?)?;
            let peer = self.peer_of(&slot);
            let len = match (slot.purpose, slot.buf) {
                (Purpose::Block(req), _) => encode(req, out, slot.message_id, &slot.token),
                (_, Some(b)) => {
                    let bytes = self
                        .bufs
                        .get(usize::from(b))?
                        .get(..usize::from(slot.len))?;
                    let dst = out.get_mut(..bytes.len())?;
                    dst.copy_from_slice(bytes);
                    Some(bytes.len())
                }
                (_, None) => None,
            };
            let s = self.slots.get_mut(i)?;
            match (len, peer) {
                (Some(len), Some(peer)) => {
                    if let Some(s) = s.as_mut() {
                        s.due = false;
                    }
                    return Some((peer, len));
                }
                _ => *s = None,
            }
        }
    }

    /// Advances retransmission timers: what happened, one event per call (call again until
    /// `None`).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Timed> {
        let mut event = None;
        let mut failed_peer = None;
        let next_seq = self.next_seq;
        for s in self.slots.iter_mut() {
            let Some(slot) = s else { continue };
            if slot.acked {
                if now >= slot.next_send {
                    event = Some(Timed::Failed(slot.purpose, Failure::Timeout, slot.seq));
                    *s = None;
                    break;
                }
                continue;
            }
            if now < slot.next_send {
                continue;
            }
            if slot.retransmits >= MAX_RETRANSMIT {
                event = Some(Timed::Failed(slot.purpose, Failure::Timeout, slot.seq));
                failed_peer = Some(slot.peer);
                *s = None;
                break;
            }
            slot.retransmits = slot.retransmits.saturating_add(1);
            slot.timeout = Duration(slot.timeout.as_millis().saturating_mul(2));
            slot.next_send = now + slot.timeout;
            slot.due = true;
            // Overtaken again only by requests started after this copy.
            slot.since = next_seq;
            slot.overtaken = 0;
            if !slot.lost {
                slot.lost = true;
                event = Some(Timed::FirstRetransmission(slot.purpose));
                break;
            }
        }
        if let Some(p) = failed_peer.and_then(|i| self.peers.get_mut(usize::from(i))) {
            p.1.failed();
        }
        event
    }

    /// When [`Exchanges::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .fold(None, |acc, s| earliest(acc, Some(s.next_send)))
    }

    /// Whether a datagram is waiting for [`Exchanges::poll_transmit`].
    pub fn has_due(&self) -> bool {
        self.slots.iter().flatten().any(|s| s.due)
    }

    /// The current RTO towards `peer` (the configured start for a peer not seen yet).
    pub fn rto(&self, peer: SocketAddr) -> Duration {
        self.peers
            .iter()
            .find(|p| p.0 == Some(peer))
            .map_or(self.rto_config.initial, |p| p.1.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_ack_stops_retransmissions_and_waits_for_the_separate_response_until_its_deadline() {
        let peer: SocketAddr = "10.0.0.1:5683".parse().unwrap();
        let mut ex = Exchanges::new(7, RtoConfig::default());
        let req = BlockReq { num: 3, szx: 2 };
        ex.start_block(Instant(0), peer, req, Duration(0)).unwrap();
        let mut out = [0u8; 64];
        let mut mid = 0;
        let sent = ex.poll_transmit(&mut out, |_, buf, m, _| {
            mid = m;
            buf.get_mut(..4)?.copy_from_slice(&[0x40, 0x01, 0, 0]);
            Some(4)
        });
        assert_eq!(sent.map(|s| s.0), Some(peer));
        let first_timeout = ex.poll_timeout().unwrap();
        assert!(first_timeout.0 < SEPARATE_RESPONSE_WAIT.as_millis());
        let [hi, lo] = mid.to_be_bytes();
        let ack = [0x60, 0x00, hi, lo];
        let msg = Message::decode(&ack).unwrap();
        let mut reset = None;
        assert!(ex.on_message(Instant(10), peer, &msg, &mut reset).is_none());
        // No retransmission at the first timeout, nor later, until the wait ends.
        let until = Instant(10) + SEPARATE_RESPONSE_WAIT;
        assert_eq!(ex.poll_timeout(), Some(until));
        assert!(ex.handle_timeout(first_timeout).is_none());
        assert!(!ex.has_due());
        assert!(ex.handle_timeout(Instant(until.0 - 1)).is_none());
        assert!(matches!(
            ex.handle_timeout(until),
            Some(Timed::Failed(Purpose::Block(r), Failure::Timeout, _)) if r == req
        ));
        assert_eq!(ex.poll_timeout(), None);
    }
}

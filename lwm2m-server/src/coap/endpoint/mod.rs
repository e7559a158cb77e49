//! Sans-IO CoAP message layer (RFC 7252 §4) with RFC 7641 observer-side matching.
//!
//! No sockets and no clock: every call takes `now`, and the endpoint hands back datagrams
//! ([`Endpoint::poll_transmit`]), events ([`Endpoint::poll_event`]) and its next deadline
//! ([`Endpoint::poll_timeout`]). The same code runs under tokio, in virtual time in the
//! simulator, and in the unit tests below with a fake clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coap_lite::{MessageType, Packet, ResponseType};
use foldhash::{HashMap, HashMapExt};
use lwm2m_core::coap::{self, Code, Message, MessageWriter, params};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Datagram;
use super::dedup::{DedupCache, MsgKey, Token};
use super::observe::is_newer;
use super::wire::{self, Inspected};

#[cfg(test)]
mod tests;

/// How late dedup-cache expiry may run when nothing else is due.
const HOUSEKEEPING_SLACK: Duration = Duration::from_secs(1);

/// Transmission parameters and resource bounds. The defaults of the RFC 7252 §4.8 parameters
/// are lwm2m-core's [`params`], the table the device and the simulator use too.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// ACK_TIMEOUT (RFC 7252 §4.8), default [`params::ACK_TIMEOUT`].
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR, default [`params::ACK_RANDOM_FACTOR`].
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT, default [`params::MAX_RETRANSMIT`].
    pub max_retransmit: u32,
    /// EXCHANGE_LIFETIME, default [`params::EXCHANGE_LIFETIME`] (see
    /// [`EndpointConfig::derived_exchange_lifetime`] for other parameters).
    pub exchange_lifetime: Duration,
    /// How long a confirmable request waits for the application before we send an empty ACK and
    /// answer separately.
    pub piggyback_window: Duration,
    /// Outstanding confirmable requests per peer (NSTART); further ones wait in a per-peer FIFO.
    pub max_in_flight_per_peer: usize,
    /// Bound on the deduplication cache; the oldest entry is evicted when it is full.
    pub max_dedup_entries: usize,
    /// Largest datagram we send; a larger outgoing request fails with [`FailReason::TooLarge`].
    pub max_message_size: usize,
    /// A notification (a 2.xx response with Observe) on a token we do not know is handed to the
    /// application as [`Event::UnknownNotification`] instead of being answered with a Reset at
    /// once: on a shared store another node may have made the observation (see
    /// [`Endpoint::adopt_observation`], [`Endpoint::reject_notification`]). Default false.
    pub hand_over_unknown_notifications: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        let (num, den) = params::ACK_RANDOM_FACTOR;
        Self {
            ack_timeout: params::ACK_TIMEOUT,
            ack_random_factor: f64::from(num) / f64::from(den),
            max_retransmit: u32::from(params::MAX_RETRANSMIT),
            exchange_lifetime: params::EXCHANGE_LIFETIME,
            piggyback_window: Duration::from_millis(500),
            max_in_flight_per_peer: usize::from(params::NSTART),
            max_dedup_entries: 16_384,
            max_message_size: 1152,
            hand_over_unknown_notifications: false,
        }
    }
}

impl EndpointConfig {
    /// EXCHANGE_LIFETIME derived from the other parameters (RFC 7252 §4.8.2):
    /// MAX_TRANSMIT_SPAN + 2 * MAX_LATENCY + PROCESSING_DELAY (= ACK_TIMEOUT).
    pub fn derived_exchange_lifetime(&self) -> Duration {
        let span = self
            .ack_timeout
            .mul_f64(f64::from((1u32 << self.max_retransmit.min(31)) - 1) * self.ack_random_factor);
        span + 2 * params::MAX_LATENCY + self.ack_timeout
    }
}

/// Our own request, as returned by [`Endpoint::send_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

/// An incoming request awaiting [`Endpoint::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestHandle(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// MAX_RETRANSMIT exhausted, or no response within EXCHANGE_LIFETIME (NON, or after an empty ACK).
    Timeout,
    /// The peer rejected the request with a Reset.
    Reset,
    /// The encoded request is larger than `max_message_size`.
    TooLarge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new (deduplicated) request from a peer; answer it with [`Endpoint::respond`].
    Request {
        handle: RequestHandle,
        peer: SocketAddr,
        packet: Packet,
    },
    /// The first response to [`Endpoint::send_request`]. If the request carried Observe=0 and
    /// this 2.xx response carries Observe, the observation stays registered.
    Response {
        id: RequestId,
        packet: Packet,
    },
    /// A later response on an observation's token (RFC 7641). One without an Observe option
    /// ends the observation.
    Notification {
        id: RequestId,
        packet: Packet,
    },
    RequestFailed {
        id: RequestId,
        reason: FailReason,
    },
    /// A notification on a token we do not know (only with
    /// [`EndpointConfig::hand_over_unknown_notifications`]): nothing has been sent yet, and
    /// repeats of it are dropped until [`Endpoint::adopt_observation`] or
    /// [`Endpoint::reject_notification`] answers it.
    UnknownNotification {
        peer: SocketAddr,
        packet: Packet,
    },
}

/// A CoAP endpoint: client and server roles over one transport address.
pub struct Endpoint {
    config: EndpointConfig,
    rng: StdRng,
    next_mid: u16,
    next_id: u64,
    /// The latest `now` we were given: `cancel` has no clock but may start a queued request.
    last_now: Option<Instant>,
    requests: HashMap<RequestId, OutRequest>,
    tokens: HashMap<Vec<u8>, RequestId>,
    transmissions: HashMap<MsgKey, Transmission>,
    peers: HashMap<SocketAddr, PeerQueue>,
    incoming: HashMap<RequestHandle, Incoming>,
    dedup: DedupCache,
    /// Deadlines; entries are checked against current state when they fire (lazy deletion).
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Piggyback deadlines of confirmable requests, in arrival order: all are `now` plus the
    /// same window, so a FIFO keeps them sorted at O(1) a request (a heap cost a few percent
    /// of a block's CPU at line rate). Lazily deleted like the heap.
    piggyback: VecDeque<(Instant, RequestHandle)>,
    events: VecDeque<Event>,
    transmits: VecDeque<(SocketAddr, Datagram)>,
}

struct OutRequest {
    peer: SocketAddr,
    token: Vec<u8>,
    confirmable: bool,
    /// The request carried Observe=0 (registration).
    observe: bool,
    /// Counts against the peer's NSTART limit.
    in_flight: bool,
    state: ReqState,
}

enum ReqState {
    /// Waiting in the peer's FIFO; holds the packet to send.
    Queued(Packet),
    /// Sent as CON; retransmitted by its `Transmission` until ACKed.
    AwaitingAck,
    /// Empty ACK received (CON) or sent as NON: a response must come before the deadline.
    AwaitingResponse { deadline: Instant },
    /// An established observation: last sequence number and when it arrived.
    Observing { last: Option<(u32, Instant)> },
}

enum TxKind {
    Request(RequestId),
    /// A separate CON response of ours.
    Response,
}

struct Retransmit {
    next_at: Instant,
    timeout: Duration,
    count: u32,
}

struct Transmission {
    kind: TxKind,
    bytes: Datagram,
    /// None for NON messages: kept only so that a Reset can be matched.
    retransmit: Option<Retransmit>,
}

#[derive(Default)]
struct PeerQueue {
    in_flight: usize,
    waiting: VecDeque<RequestId>,
}

struct Incoming {
    peer: SocketAddr,
    mid: u16,
    token: Vec<u8>,
    confirmable: bool,
    /// An empty ACK went out: the response must be sent separately.
    acked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retransmit(SocketAddr, u16),
    ResponseDeadline(RequestId),
    /// Forget an incoming request the application never answered.
    IncomingExpiry(RequestHandle),
}

impl Endpoint {
    pub fn new(config: EndpointConfig, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let next_mid = rng.random();
        let dedup = DedupCache::new(config.max_dedup_entries, config.exchange_lifetime);
        Self {
            config,
            rng,
            next_mid,
            next_id: 0,
            last_now: None,
            requests: HashMap::new(),
            tokens: HashMap::new(),
            transmissions: HashMap::new(),
            peers: HashMap::new(),
            incoming: HashMap::new(),
            dedup,
            timers: BinaryHeap::new(),
            piggyback: VecDeque::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// True while `id` is an established observation.
    pub fn is_observing(&self, id: RequestId) -> bool {
        self.requests
            .get(&id)
            .is_some_and(|r| matches!(r.state, ReqState::Observing { .. }))
    }

    // ---- client role -------------------------------------------------------------------------

    /// Queues a request; the endpoint assigns message ID and token (whatever the packet held).
    pub fn send_request(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        mut request: Packet,
        confirmable: bool,
    ) -> RequestId {
        self.tick(now);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let token = self.fresh_token();
        request.set_token(token.clone());
        request.header.set_version(1);
        request.header.set_type(if confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        let fits = request
            .to_bytes_unlimited()
            .is_ok_and(|b| b.len() <= self.config.max_message_size);
        if !fits {
            self.events.push_back(Event::RequestFailed {
                id,
                reason: FailReason::TooLarge,
            });
            return id;
        }
        let observe = matches!(request.get_observe_value(), Some(Ok(0)));
        self.tokens.insert(token.clone(), id);
        self.requests.insert(
            id,
            OutRequest {
                peer,
                token,
                confirmable,
                observe,
                in_flight: false,
                state: ReqState::Queued(request),
            },
        );
        if confirmable {
            self.peers.entry(peer).or_default().waiting.push_back(id);
            self.pump(now, peer);
        } else {
            self.transmit_request(now, id);
        }
        id
    }

    /// Stops retransmitting / forgets an observation. Later messages with its token get a Reset.
    /// No event is emitted for a cancelled request.
    pub fn cancel(&mut self, id: RequestId) {
        let Some(now) = self.last_now else { return };
        if let Some(req) = self.requests.get(&id)
            && let Some(queue) = self.peers.get_mut(&req.peer)
        {
            queue.waiting.retain(|w| *w != id);
        }
        self.finish_request(now, id);
    }

    /// Takes on the observation of an [`Event::UnknownNotification`] (one another node made):
    /// acknowledges the notification if confirmable, delivers it as the observation's first
    /// [`Event::Notification`], and matches later ones with its token like our own.
    pub fn adopt_observation(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        packet: Packet,
    ) -> RequestId {
        self.tick(now);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let token = packet.get_token().to_vec();
        if let Some(old) = self.tokens.get(&token).copied() {
            self.finish_request(now, old);
        }
        self.answer_held(peer, &packet, MessageType::Acknowledgement);
        self.tokens.insert(token.clone(), id);
        self.requests.insert(
            id,
            OutRequest {
                peer,
                token,
                confirmable: true,
                observe: true,
                in_flight: false,
                state: ReqState::Observing { last: None },
            },
        );
        self.deliver_response(now, id, packet);
        id
    }

    /// Answers an [`Event::UnknownNotification`] nobody takes on with a Reset (RFC 7641 §3.6).
    pub fn reject_notification(&mut self, now: Instant, peer: SocketAddr, packet: &Packet) {
        self.tick(now);
        self.answer_held(peer, packet, MessageType::Reset);
    }

    /// Sends the empty ACK or RST of a held notification (a CON one's ACK only; a Reset for
    /// either) and keeps it for the repeats.
    fn answer_held(&mut self, peer: SocketAddr, packet: &Packet, kind: MessageType) {
        let mid = packet.header.message_id;
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        if kind == MessageType::Acknowledgement && !confirmable {
            return;
        }
        let reply = Datagram::from(wire::empty_message(kind, mid));
        self.transmits.push_back((peer, reply.clone()));
        if confirmable {
            self.dedup.set_reply(&(peer, mid), reply);
        }
    }

    /// Starts queued requests while the peer has room (NSTART).
    fn pump(&mut self, now: Instant, peer: SocketAddr) {
        loop {
            let Some(queue) = self.peers.get_mut(&peer) else {
                return;
            };
            if queue.in_flight >= self.config.max_in_flight_per_peer.max(1) {
                return;
            }
            let Some(id) = queue.waiting.pop_front() else {
                if queue.in_flight == 0 {
                    self.peers.remove(&peer);
                }
                return;
            };
            let Some(req) = self.requests.get_mut(&id) else {
                continue;
            };
            req.in_flight = true;
            queue.in_flight += 1;
            self.transmit_request(now, id);
        }
    }

    fn transmit_request(&mut self, now: Instant, id: RequestId) {
        let mid = self.fresh_mid();
        let timeout = self.initial_timeout();
        let lifetime = self.config.exchange_lifetime;
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        let ReqState::Queued(packet) = &mut req.state else {
            return;
        };
        packet.header.message_id = mid;
        let Ok(bytes) = packet.to_bytes_unlimited() else {
            return;
        };
        let bytes = Datagram::from(bytes);
        let key = (req.peer, mid);
        self.transmits.push_back((req.peer, bytes.clone()));
        if req.confirmable {
            req.state = ReqState::AwaitingAck;
            let next_at = now + timeout;
            self.transmissions.insert(
                key,
                Transmission {
                    kind: TxKind::Request(id),
                    bytes,
                    retransmit: Some(Retransmit {
                        next_at,
                        timeout,
                        count: 0,
                    }),
                },
            );
            self.timers
                .push(Reverse((next_at, Timer::Retransmit(key.0, key.1))));
        } else {
            let deadline = now + lifetime;
            req.state = ReqState::AwaitingResponse { deadline };
            self.transmissions.insert(
                key,
                Transmission {
                    kind: TxKind::Request(id),
                    bytes,
                    retransmit: None,
                },
            );
            self.timers
                .push(Reverse((deadline, Timer::ResponseDeadline(id))));
        }
    }

    /// Removes every trace of a request and lets the next queued one go.
    fn finish_request(&mut self, now: Instant, id: RequestId) {
        let Some(req) = self.requests.remove(&id) else {
            return;
        };
        self.tokens.remove(&req.token);
        self.transmissions
            .retain(|_, tx| !matches!(tx.kind, TxKind::Request(r) if r == id));
        if req.in_flight {
            self.release_slot(now, req.peer);
        }
    }

    fn release_slot(&mut self, now: Instant, peer: SocketAddr) {
        if let Some(queue) = self.peers.get_mut(&peer) {
            queue.in_flight = queue.in_flight.saturating_sub(1);
        }
        self.pump(now, peer);
    }

    fn fail(&mut self, now: Instant, id: RequestId, reason: FailReason) {
        if self.requests.contains_key(&id) {
            self.finish_request(now, id);
            self.events.push_back(Event::RequestFailed { id, reason });
        }
    }

    // ---- server role -------------------------------------------------------------------------

    /// Answers an incoming request: piggybacked in the ACK while still possible, else a separate
    /// CON response (NON for a NON request) with the request's token, retransmitted until ACKed.
    /// Type, message ID and token of `response` are set here. A handle answered twice, or older
    /// than EXCHANGE_LIFETIME, is ignored.
    pub fn respond(&mut self, now: Instant, handle: RequestHandle, response: Packet) {
        self.respond_with_body(now, handle, response, Bytes::new());
    }

    /// Like [`Endpoint::respond`], with the payload given apart from the packet (whose own
    /// payload must then be empty): a slice of a shared buffer, kept as it is in the datagram,
    /// the deduplication cache and retransmissions, never copied.
    pub fn respond_with_body(
        &mut self,
        now: Instant,
        handle: RequestHandle,
        mut response: Packet,
        body: Bytes,
    ) {
        self.tick(now);
        let Some(inc) = self.incoming.remove(&handle) else {
            tracing::debug!(?handle, "respond: unknown or already answered request");
            return;
        };
        response.set_token(inc.token);
        response.header.set_version(1);
        if inc.confirmable && !inc.acked {
            response.header.set_type(MessageType::Acknowledgement);
            response.header.message_id = inc.mid;
            let bytes = self.encode_response(&mut response, &body);
            self.dedup.set_reply(&(inc.peer, inc.mid), bytes.clone());
            self.transmits.push_back((inc.peer, bytes));
        } else if inc.confirmable {
            response.header.set_type(MessageType::Confirmable);
            response.header.message_id = self.fresh_mid();
            let bytes = self.encode_response(&mut response, &body);
            let timeout = self.initial_timeout();
            let key = (inc.peer, response.header.message_id);
            self.transmissions.insert(
                key,
                Transmission {
                    kind: TxKind::Response,
                    bytes: bytes.clone(),
                    retransmit: Some(Retransmit {
                        next_at: now + timeout,
                        timeout,
                        count: 0,
                    }),
                },
            );
            self.timers
                .push(Reverse((now + timeout, Timer::Retransmit(key.0, key.1))));
            self.transmits.push_back((inc.peer, bytes));
        } else {
            response.header.set_type(MessageType::NonConfirmable);
            response.header.message_id = self.fresh_mid();
            let bytes = self.encode_response(&mut response, &body);
            self.transmits.push_back((inc.peer, bytes));
        }
    }

    /// Answers a GET straight from its datagram when `answer` takes it: a 2.05 Content whose
    /// options (from Content-Format on: the writer holds header and token) `answer` writes and
    /// whose payload it returns, piggybacked on the ACK of a CON, a NON for a NON. Returns false,
    /// having sent nothing, when the datagram is not such a GET, when the deduplication cache
    /// knows it (a retransmission: [`Endpoint::handle_datagram`] repeats the first answer), or
    /// when `answer` declines; the caller then passes it to [`Endpoint::handle_datagram`].
    ///
    /// Of an exchange answered here only the deduplication entry is kept (with the answer, for a
    /// CON): no parsed packet, no request handle, no event; for the bulk of the traffic
    /// (firmware blocks) that is most of the CPU a block costs.
    pub fn answer_get_at_once(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        bytes: &[u8],
        answer: impl FnOnce(&Message<'_>, &mut MessageWriter<'_>) -> Option<Bytes>,
    ) -> bool {
        let Ok(request) = Message::decode(bytes) else {
            return false;
        };
        let ty = match request.ty {
            coap::MessageType::Confirmable => coap::MessageType::Acknowledgement,
            coap::MessageType::NonConfirmable => coap::MessageType::NonConfirmable,
            _ => return false,
        };
        let (mid, token) = (request.message_id, request.token());
        let token_key = Token::new(token);
        if request.code != Code::GET || self.dedup.get(&(peer, mid), token_key).is_some() {
            return false;
        }
        let non = ty == coap::MessageType::NonConfirmable;
        // Header, token (8), ETag (9), Content-Format (3), Block2 (4), Size2 (5) and the marker.
        let mut head = [0u8; 64];
        let Ok(mut writer) = MessageWriter::new(&mut head, ty, Code::CONTENT, mid, token) else {
            return false;
        };
        let Some(body) = answer(&request, &mut writer) else {
            return false;
        };
        let mut len = writer.finish();
        // A NON answer is a message of its own: a fresh id, taken only now that there is an
        // answer (RFC 7252 §3: the id sits in bytes 2-3 of the header).
        let mid = if non { self.fresh_mid() } else { mid };
        if let Some(id) = head.get_mut(2..4) {
            id.copy_from_slice(&mid.to_be_bytes());
        }
        let mut fits = true;
        if !body.is_empty() {
            // The payload marker (RFC 7252 §3).
            fits = head.get_mut(len).map(|marker| *marker = 0xff).is_some();
            len += 1;
        }
        let datagram = match head.get(..len) {
            Some(h) if fits && h.len() + body.len() <= self.config.max_message_size => Datagram {
                head: Bytes::copy_from_slice(h),
                body,
            },
            // As `encode_response` does: an answer too large to send is a bare 5.00.
            _ => {
                tracing::warn!("response too large to send; answering 5.00 instead");
                let mut bare = [0u8; coap::HEADER_LEN + coap::MAX_TOKEN_LEN];
                let code = Code::INTERNAL_SERVER_ERROR;
                let Ok(n) = MessageWriter::new(&mut bare, ty, code, mid, token).map(|w| w.finish())
                else {
                    return false;
                };
                Datagram::from(bare.get(..n).unwrap_or_default().to_vec())
            }
        };
        // Remembered as the full path does (RFC 7252 §4.5): a CON's retransmission gets these
        // bytes again from the cache, a NON's duplicate is ignored.
        let reply = (!non).then(|| datagram.clone());
        self.dedup
            .insert(now, (peer, request.message_id), token_key, reply);
        self.transmits.push_back((peer, datagram));
        true
    }

    /// Encodes a response; one over `max_message_size` is replaced by a bare 5.00.
    fn encode_response(&self, response: &mut Packet, body: &Bytes) -> Datagram {
        if !body.is_empty() && !response.payload.is_empty() {
            tracing::warn!("a response with two payloads; answering 5.00 instead");
        } else if let Ok(mut head) = response.to_bytes_unlimited() {
            if !body.is_empty() {
                head.push(0xff); // the payload marker (RFC 7252 §3)
            }
            if head.len() + body.len() <= self.config.max_message_size {
                return Datagram {
                    head: head.into(),
                    body: body.clone(),
                };
            }
        }
        {
            {
                tracing::warn!("response too large to send; answering 5.00 instead");
                let mut bare = Packet::new();
                bare.header = response.header.clone();
                bare.header.code =
                    coap_lite::MessageClass::Response(ResponseType::InternalServerError);
                bare.set_token(response.get_token().to_vec());
                bare.to_bytes_unlimited().unwrap_or_default().into()
            }
        }
    }

    // ---- input -------------------------------------------------------------------------------

    pub fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, bytes: &[u8]) {
        self.tick(now);
        let packet = match wire::inspect(bytes) {
            Inspected::Ignore => return,
            Inspected::Reject { mid } => {
                self.transmits
                    .push_back((peer, wire::empty_message(MessageType::Reset, mid).into()));
                return;
            }
            Inspected::Message(packet) => packet,
        };
        let code = wire::code(&packet);
        let mid = packet.header.message_id;
        match (packet.header.get_type(), code) {
            // Empty CON is a ping: answer with RST (§4.3). Empty NON is a format error.
            (MessageType::Confirmable, c) if c.is_empty() => {
                self.transmits
                    .push_back((peer, wire::empty_message(MessageType::Reset, mid).into()));
            }
            (MessageType::NonConfirmable, c) if c.is_empty() => {}
            (MessageType::Acknowledgement, c) if c.is_empty() => {
                self.on_empty_ack(now, (peer, mid))
            }
            (MessageType::Reset, c) if c.is_empty() => self.on_reset(now, (peer, mid)),
            // A Reset must be empty and an ACK cannot carry a request: ignore such messages.
            (MessageType::Reset, _) => {}
            (MessageType::Acknowledgement, c) if c.is_request() => {}
            (MessageType::Acknowledgement, _) => self.on_piggybacked(now, peer, packet),
            (_, c) if c.is_request() => self.on_request(now, peer, packet),
            (_, _) => self.on_separate_response(now, peer, packet),
        }
    }

    fn on_request(&mut self, now: Instant, peer: SocketAddr, packet: Packet) {
        let mid = packet.header.message_id;
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        let token = Token::new(packet.get_token());
        if let Some(reply) = self.dedup.get(&(peer, mid), token) {
            if confirmable && let Some(bytes) = reply {
                self.transmits.push_back((peer, bytes.clone()));
            }
            return;
        }
        self.dedup.insert(now, (peer, mid), token, None);
        let handle = RequestHandle(self.next_id);
        self.next_id += 1;
        self.incoming.insert(
            handle,
            Incoming {
                peer,
                mid,
                token: packet.get_token().to_vec(),
                confirmable,
                acked: false,
            },
        );
        // One timer per request: a confirmable request's expiry is set only when its piggyback
        // window passes unanswered, so the timers hold the requests of the last piggyback window
        // (not of the last EXCHANGE_LIFETIME: millions at line rate, with lazy deletion).
        if confirmable {
            self.piggyback
                .push_back((now + self.config.piggyback_window, handle));
        } else {
            self.timers.push(Reverse((
                now + self.config.exchange_lifetime,
                Timer::IncomingExpiry(handle),
            )));
        }
        self.events.push_back(Event::Request {
            handle,
            peer,
            packet,
        });
    }

    fn on_empty_ack(&mut self, now: Instant, key: MsgKey) {
        let Some(tx) = self.transmissions.get(&key) else {
            return;
        };
        if tx.retransmit.is_none() {
            return; // an ACK to a NON message means nothing
        }
        let kind = match tx.kind {
            TxKind::Request(id) => Some(id),
            TxKind::Response => None,
        };
        self.transmissions.remove(&key);
        if let Some(id) = kind
            && let Some(req) = self.requests.get_mut(&id)
        {
            let deadline = now + self.config.exchange_lifetime;
            req.state = ReqState::AwaitingResponse { deadline };
            self.timers
                .push(Reverse((deadline, Timer::ResponseDeadline(id))));
        }
    }

    fn on_reset(&mut self, now: Instant, key: MsgKey) {
        if let Some(tx) = self.transmissions.remove(&key)
            && let TxKind::Request(id) = tx.kind
        {
            self.fail(now, id, FailReason::Reset);
        }
    }

    fn on_piggybacked(&mut self, now: Instant, peer: SocketAddr, packet: Packet) {
        let key = (peer, packet.header.message_id);
        let Some(Transmission {
            kind: TxKind::Request(id),
            retransmit: Some(_),
            ..
        }) = self.transmissions.get(&key)
        else {
            return; // unknown ACK
        };
        let id = *id;
        let token_matches = self
            .requests
            .get(&id)
            .is_some_and(|r| r.token == packet.get_token());
        // A piggybacked response with an unknown critical option is rejected, which for an ACK
        // means ignoring it (§5.4.1, §4.2): the request keeps being retransmitted.
        if !token_matches || wire::unknown_critical_option(&packet).is_some() {
            return;
        }
        self.transmissions.remove(&key);
        self.deliver_response(now, id, packet);
    }

    fn on_separate_response(&mut self, now: Instant, peer: SocketAddr, packet: Packet) {
        let mid = packet.header.message_id;
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        let token = Token::new(packet.get_token());
        if let Some(reply) = self.dedup.get(&(peer, mid), token) {
            if confirmable && let Some(bytes) = reply {
                self.transmits.push_back((peer, bytes.clone()));
            }
            return;
        }
        let id = self
            .tokens
            .get(packet.get_token())
            .copied()
            .filter(|id| self.requests.get(id).is_some_and(|r| r.peer == peer));
        let live = id.filter(|id| {
            self.requests
                .get(id)
                .is_some_and(|r| !matches!(r.state, ReqState::Queued(_)))
        });
        let Some(id) = live else {
            if self.config.hand_over_unknown_notifications
                && id.is_none()
                && observe_seq(&packet).is_some()
                && wire::code(&packet).is_success()
            {
                // Seen, not answered yet: a repeat is dropped while the application decides.
                self.dedup.insert(now, (peer, mid), token, None);
                self.events
                    .push_back(Event::UnknownNotification { peer, packet });
                return;
            }
            // Unknown or cancelled token: reject, for NON notifications too (RFC 7641 §3.6).
            let rst: Datagram = wire::empty_message(MessageType::Reset, mid).into();
            self.transmits.push_back((peer, rst.clone()));
            self.dedup
                .insert(now, (peer, mid), token, confirmable.then_some(rst));
            return;
        };
        if wire::unknown_critical_option(&packet).is_some() {
            // §5.4.1: reject a CON response, silently ignore a NON one.
            let rst =
                confirmable.then(|| Datagram::from(wire::empty_message(MessageType::Reset, mid)));
            if let Some(rst) = &rst {
                self.transmits.push_back((peer, rst.clone()));
            }
            self.dedup.insert(now, (peer, mid), token, rst);
            return;
        }
        let ack = confirmable
            .then(|| Datagram::from(wire::empty_message(MessageType::Acknowledgement, mid)));
        if let Some(ack) = &ack {
            self.transmits.push_back((peer, ack.clone()));
        }
        self.dedup.insert(now, (peer, mid), token, ack);
        // A separate response before our request was ACKed implies the ACK (§5.2.2).
        self.transmissions
            .retain(|_, tx| !matches!(tx.kind, TxKind::Request(r) if r == id));
        self.deliver_response(now, id, packet);
    }

    /// Routes a matched response: the first one completes the request (or establishes the
    /// observation), later ones on an observation are notifications.
    fn deliver_response(&mut self, now: Instant, id: RequestId, packet: Packet) {
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        let seq = observe_seq(&packet);
        let success = wire::code(&packet).is_success();
        if let ReqState::Observing { last } = &mut req.state {
            match seq {
                Some(v2) if success => {
                    let fresh = last.is_none_or(|(v1, t1)| is_newer(v1, t1, v2, now));
                    if fresh {
                        *last = Some((v2, now));
                        self.events.push_back(Event::Notification { id, packet });
                    } else {
                        tracing::debug!(?id, v2, "dropping stale notification");
                    }
                }
                // Without Observe (or an error) the server ended the observation (RFC 7641 §3.2).
                _ => {
                    self.finish_request(now, id);
                    self.events.push_back(Event::Notification { id, packet });
                }
            }
            return;
        }
        if req.observe
            && success
            && let Some(v) = seq
        {
            req.state = ReqState::Observing {
                last: Some((v, now)),
            };
            if req.in_flight {
                req.in_flight = false;
                let peer = req.peer;
                self.release_slot(now, peer);
            }
        } else {
            self.finish_request(now, id);
        }
        self.events.push_back(Event::Response { id, packet });
    }

    // ---- time --------------------------------------------------------------------------------

    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        while let Some(&(at, handle)) = self.piggyback.front() {
            if at > now {
                break;
            }
            self.piggyback.pop_front();
            // Still unanswered: an empty ACK now, the response later as a separate one.
            if let Some(inc) = self.incoming.get_mut(&handle)
                && !inc.acked
            {
                inc.acked = true;
                let ack =
                    Datagram::from(wire::empty_message(MessageType::Acknowledgement, inc.mid));
                self.dedup.set_reply(&(inc.peer, inc.mid), ack.clone());
                self.transmits.push_back((inc.peer, ack));
                // Forgotten EXCHANGE_LIFETIME after it arrived, if never answered.
                let arrived = at.checked_sub(self.config.piggyback_window).unwrap_or(at);
                self.timers.push(Reverse((
                    arrived + self.config.exchange_lifetime,
                    Timer::IncomingExpiry(handle),
                )));
            }
        }
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Retransmit(peer, mid) => self.on_retransmit_timer(now, at, (peer, mid)),
                Timer::ResponseDeadline(id) => {
                    let due = self.requests.get(&id).is_some_and(
                        |r| matches!(r.state, ReqState::AwaitingResponse { deadline } if deadline == at),
                    );
                    if due {
                        self.fail(now, id, FailReason::Timeout);
                    }
                }
                Timer::IncomingExpiry(handle) => {
                    self.incoming.remove(&handle);
                }
            }
        }
    }

    fn on_retransmit_timer(&mut self, now: Instant, at: Instant, key: MsgKey) {
        let max = self.config.max_retransmit;
        let Some(tx) = self.transmissions.get_mut(&key) else {
            return;
        };
        let Some(r) = tx.retransmit.as_mut().filter(|r| r.next_at == at) else {
            return;
        };
        if r.count < max {
            r.count += 1;
            r.timeout *= 2;
            r.next_at = now + r.timeout;
            self.timers
                .push(Reverse((r.next_at, Timer::Retransmit(key.0, key.1))));
            self.transmits.push_back((key.0, tx.bytes.clone()));
            return;
        }
        let kind = self.transmissions.remove(&key).map(|tx| tx.kind);
        if let Some(TxKind::Request(id)) = kind {
            self.fail(now, id, FailReason::Timeout);
        }
    }

    /// The earliest instant at which [`Endpoint::handle_timeout`] has work to do. May be early
    /// (a deadline that was since cleared); calling `handle_timeout` then is harmless.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let heap = self.timers.peek().map(|Reverse((at, _))| *at);
        let piggyback = self.piggyback.front().map(|&(at, _)| at);
        let timer = match (heap, piggyback) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Dedup expiry is housekeeping: batch it, rather than waking once per entry.
        let housekeeping = self.dedup.next_expiry().map(|at| at + HOUSEKEEPING_SLACK);
        match (timer, housekeeping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- output ------------------------------------------------------------------------------

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next datagram to send, in one buffer.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits
            .pop_front()
            .map(|(peer, d)| (peer, d.to_vec()))
    }

    /// The next datagram to send, as head and payload (see [`Datagram`]): what a transport that
    /// can gather two buffers into one datagram sends without copying the payload.
    pub fn poll_transmit_datagram(&mut self) -> Option<(SocketAddr, Datagram)> {
        self.transmits.pop_front()
    }

    // ---- helpers -----------------------------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        self.last_now = Some(self.last_now.map_or(now, |t| t.max(now)));
        self.dedup.expire(now);
    }

    fn fresh_mid(&mut self) -> u16 {
        let mid = self.next_mid;
        self.next_mid = self.next_mid.wrapping_add(1);
        mid
    }

    /// 8 random bytes, unique among the live tokens (a few draws; a clash is astronomically rare).
    fn fresh_token(&mut self) -> Vec<u8> {
        let mut token = [0u8; 8];
        for _ in 0..16 {
            self.rng.fill(&mut token);
            if !self.tokens.contains_key(&token[..]) {
                break;
            }
        }
        token.to_vec()
    }

    /// Random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR] (§4.2).
    fn initial_timeout(&mut self) -> Duration {
        let spread = (self.config.ack_random_factor - 1.0).max(0.0);
        let r: f64 = self.rng.random_range(0.0..=1.0);
        self.config.ack_timeout.mul_f64(1.0 + spread * r)
    }

    #[cfg(test)]
    fn dedup_len(&self) -> usize {
        self.dedup.len()
    }
}

/// The Observe sequence number (24 bits), if present and well-formed.
fn observe_seq(packet: &Packet) -> Option<u32> {
    match packet.get_observe_value() {
        Some(Ok(v)) => Some(v & 0x00ff_ffff),
        _ => None,
    }
}

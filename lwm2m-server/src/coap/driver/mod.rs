//! tokio driver for the sans-IO [`Endpoint`]: one task owns the endpoint and selects over the
//! transport, a command channel and the endpoint's next deadline.
//!
//! Time comes from `tokio::time`, converted with `Instant::into_std()`, so a whole server can run
//! under tokio's paused clock (the simulator relies on this).

mod blockwise;
mod task;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use coap_lite::{Packet, ResponseType};
use lwm2m_core::coap::{Message, MessageWriter};
use tokio::sync::{mpsc, oneshot};

pub use blockwise::{BodySource, SeekableBody, fetch_block2_via};
pub use transport::{MAX_DATAGRAM, RECV_BATCH, RecvBatch, Transport, bind_udp, bind_udp_with};

use super::endpoint::{Endpoint, EndpointConfig, FailReason, RequestHandle, RequestId};
use super::wire::new_response;

/// Depth of the incoming-request channel used by [`CoapServer::spawn`]. A campaign keeps one block
/// request in flight per downloading device (a few with a window), so the queue must hold a burst
/// from hundreds of them: 64 answered 5.03 to the 100-client serving benchmark. 1024 requests cost
/// at most a few hundred KiB.
pub const DEFAULT_REQUEST_QUEUE: usize = 1024;
/// Max-Age (seconds) of the 5.03 sent when the incoming-request channel is full.
pub const BUSY_MAX_AGE_SECS: u32 = 5;
/// Notifications buffered per observation; more are dropped (the next one supersedes them).
const OBSERVATION_QUEUE: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no response from the peer")]
    Timeout,
    #[error("the peer rejected the request with a Reset")]
    Reset,
    #[error("the request is larger than the maximum message size")]
    TooLarge,
    #[error("the CoAP driver has stopped")]
    DriverGone,
    #[error("block-wise transfer failed: {0}")]
    Blockwise(&'static str),
    #[error("the representation is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("not a notification on an unknown token")]
    NotANotification,
    #[error("reading the body: {0}")]
    Io(#[from] std::io::Error),
}

impl From<FailReason> for RequestError {
    fn from(reason: FailReason) -> Self {
        match reason {
            FailReason::Timeout => Self::Timeout,
            FailReason::Reset => Self::Reset,
            FailReason::TooLarge => Self::TooLarge,
        }
    }
}

type Reply = oneshot::Sender<Result<(RequestId, Packet), RequestError>>;

/// Answers the GETs it takes on the driver's own task, straight from the datagram (see
/// [`Endpoint::answer_get_at_once`](crate::coap::endpoint::Endpoint::answer_get_at_once)): it
/// writes a 2.05 Content's options and returns its payload, or `None` to let the request take
/// the usual way to the application's channel. For what is synchronous, cheap and the bulk of
/// the traffic (firmware blocks): each request saved from the hop to the application's task and
/// back saves two cross-thread wake-ups, and from the packet parsing and exchange state of the
/// full path. It must not block: anything that may wait (a database round trip for a device it
/// does not know) is for the channel, and it must have no effect when it returns `None`.
pub type InlineHandler = Arc<
    dyn Fn(SocketAddr, Option<&Arc<str>>, &Message<'_>, &mut MessageWriter<'_>) -> Option<Bytes>
        + Send
        + Sync,
>;

enum Command {
    Request {
        peer: SocketAddr,
        packet: Packet,
        reply: Reply,
        notify: Option<mpsc::Sender<Packet>>,
    },
    Respond {
        handle: RequestHandle,
        packet: Packet,
        body: Bytes,
    },
    Cancel(RequestId),
    Adopt {
        peer: SocketAddr,
        packet: Packet,
        notify: mpsc::Sender<Packet>,
        reply: oneshot::Sender<RequestId>,
    },
    Reject {
        peer: SocketAddr,
        packet: Packet,
    },
    Inline(InlineHandler),
    Shutdown,
}

pub struct CoapServer;

impl CoapServer {
    /// Starts the driver task on the current tokio runtime. The server runs until every clone
    /// of the returned [`CoapHandle`] is dropped.
    pub fn spawn<T: Transport>(
        transport: T,
        config: EndpointConfig,
        seed: u64,
    ) -> (CoapHandle, mpsc::Receiver<IncomingRequest>) {
        Self::spawn_with_queue(transport, config, seed, DEFAULT_REQUEST_QUEUE)
    }

    /// Like [`CoapServer::spawn`] with a chosen depth of the incoming-request channel. When it
    /// is full, new requests are answered 5.03 with Max-Age [`BUSY_MAX_AGE_SECS`] instead of
    /// blocking the receive loop.
    pub fn spawn_with_queue<T: Transport>(
        transport: T,
        config: EndpointConfig,
        seed: u64,
        queue: usize,
    ) -> (CoapHandle, mpsc::Receiver<IncomingRequest>) {
        let local_addr = transport.local_addr().unwrap_or_else(|e| {
            tracing::warn!("transport has no local address: {e}");
            SocketAddr::from(([0, 0, 0, 0], 0))
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (req_tx, req_rx) = mpsc::channel(queue.max(1));
        let endpoint = Endpoint::new(config, seed);
        let task = tokio::spawn(task::run(
            transport,
            endpoint,
            cmd_rx,
            cmd_tx.clone(),
            req_tx,
        ));
        (
            CoapHandle {
                inner: Arc::new(Inner {
                    cmd_tx,
                    local_addr,
                    task: task.abort_handle(),
                }),
            },
            req_rx,
        )
    }
}

/// A request from a peer. Answer it with [`IncomingRequest::respond`]; dropping it without an
/// answer sends 5.00 (Internal Server Error), so the peer does not wait for nothing.
pub struct IncomingRequest {
    pub peer: SocketAddr,
    /// Who the peer proved to be on a secure transport (its DTLS PSK identity); None on plain
    /// CoAP.
    pub identity: Option<Arc<str>>,
    pub packet: Packet,
    responder: Option<Responder>,
    /// Set when `packet` is not a request but a notification on a token this node does not know
    /// (see [`IncomingRequest::is_unknown_notification`]).
    held: Option<mpsc::UnboundedSender<Command>>,
}

struct Responder {
    handle: RequestHandle,
    cmd_tx: mpsc::UnboundedSender<Command>,
}

impl IncomingRequest {
    /// Whether this is not a request but a notification (a 2.xx response with Observe) on a
    /// token this node does not know, which another node's observation may have set up (only
    /// with [`EndpointConfig::hand_over_unknown_notifications`]). Nothing has been sent to the
    /// peer yet: take the observation on with [`IncomingRequest::adopt`], or drop it (or call
    /// [`IncomingRequest::reject`]) to answer with a Reset.
    pub fn is_unknown_notification(&self) -> bool {
        self.held.is_some()
    }

    /// Takes on the observation of an unknown notification: acknowledges it and returns the
    /// observation, whose first notification is this one. An error if this is not an unknown
    /// notification or the driver has stopped.
    pub async fn adopt(mut self) -> Result<Observation, RequestError> {
        let cmd_tx = self.held.take().ok_or(RequestError::NotANotification)?;
        let (notify, rx) = mpsc::channel(OBSERVATION_QUEUE);
        let (reply, id) = oneshot::channel();
        cmd_tx
            .send(Command::Adopt {
                peer: self.peer,
                packet: std::mem::take(&mut self.packet),
                notify,
                reply,
            })
            .map_err(|_| RequestError::DriverGone)?;
        let id = id.await.map_err(|_| RequestError::DriverGone)?;
        Ok(Observation { id, rx, cmd_tx })
    }

    /// Answers an unknown notification with a Reset, which ends the observation on the device
    /// (RFC 7641 §3.6); what dropping it does too.
    pub fn reject(self) {}

    /// Sends the response (type, message ID and token are filled in by the endpoint).
    pub fn respond(self, response: Packet) {
        self.respond_with_body(response, Bytes::new());
    }

    /// Sends the response with `body` as its payload (the packet's own payload must be empty).
    /// The body is a shared buffer (e.g. a slice of a firmware image): it is sent, kept for
    /// duplicates and retransmitted without being copied.
    pub fn respond_with_body(mut self, response: Packet, body: Bytes) {
        if let Some(r) = self.responder.take() {
            let _ = r.cmd_tx.send(Command::Respond {
                handle: r.handle,
                packet: response,
                body,
            });
        }
    }
}

impl Drop for IncomingRequest {
    fn drop(&mut self) {
        if let Some(cmd_tx) = self.held.take() {
            let _ = cmd_tx.send(Command::Reject {
                peer: self.peer,
                packet: std::mem::take(&mut self.packet),
            });
        }
        if let Some(r) = self.responder.take() {
            let packet = new_response(ResponseType::InternalServerError);
            let _ = r.cmd_tx.send(Command::Respond {
                handle: r.handle,
                packet,
                body: Bytes::new(),
            });
        }
    }
}

/// Notifications of an established observation. Dropping it cancels the observation: the
/// next notification from the device is answered with a Reset (RFC 7641 §3.6).
pub struct Observation {
    id: RequestId,
    rx: mpsc::Receiver<Packet>,
    cmd_tx: mpsc::UnboundedSender<Command>,
}

impl Observation {
    /// The next fresh notification; None once the device ended the observation (a response
    /// without Observe, which is delivered first) or the driver stopped. If the device did not
    /// accept the registration (no Observe in its response), this returns None at once.
    pub async fn next(&mut self) -> Option<Packet> {
        self.rx.recv().await
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        let _ = self.cmd_tx.send(Command::Cancel(self.id));
    }
}

/// A cheap, cloneable handle to the driver.
#[derive(Clone)]
pub struct CoapHandle {
    inner: Arc<Inner>,
}

struct Inner {
    cmd_tx: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.cmd_tx.send(Command::Shutdown);
    }
}

impl CoapHandle {
    /// Sends a confirmable request and waits for its response (retransmissions, separate
    /// responses and the exchange lifetime are handled by the endpoint). Dropping the future
    /// does not stop retransmission; the late response is discarded.
    pub async fn request(&self, peer: SocketAddr, packet: Packet) -> Result<Packet, RequestError> {
        self.send(peer, packet, None).await.map(|(_, p)| p)
    }

    /// Sends a confirmable request that should carry Observe=0 and returns the first response
    /// plus the stream of later notifications.
    pub async fn observe(
        &self,
        peer: SocketAddr,
        packet: Packet,
    ) -> Result<(Packet, Observation), RequestError> {
        let (tx, rx) = mpsc::channel(OBSERVATION_QUEUE);
        let (id, response) = self.send(peer, packet, Some(tx)).await?;
        Ok((
            response,
            Observation {
                id,
                rx,
                cmd_tx: self.inner.cmd_tx.clone(),
            },
        ))
    }

    /// Lets `handler` answer the requests it takes on the driver's task (see [`InlineHandler`]).
    pub fn answer_inline(&self, handler: InlineHandler) {
        let _ = self.inner.cmd_tx.send(Command::Inline(handler));
    }

    /// Stops the driver at once, as a crash would: nothing more is sent or received.
    pub fn abort(&self) {
        self.inner.task.abort();
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    async fn send(
        &self,
        peer: SocketAddr,
        packet: Packet,
        notify: Option<mpsc::Sender<Packet>>,
    ) -> Result<(RequestId, Packet), RequestError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .cmd_tx
            .send(Command::Request {
                peer,
                packet,
                reply,
                notify,
            })
            .map_err(|_| RequestError::DriverGone)?;
        rx.await.map_err(|_| RequestError::DriverGone)?
    }
}

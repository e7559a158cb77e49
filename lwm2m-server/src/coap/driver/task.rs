//! The task that owns the endpoint.

use std::collections::HashMap;

use coap_lite::{CoapOption, Packet, ResponseType};
use lwm2m_core::coap::{Message, MessageWriter};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc::{
    self,
    error::{TryRecvError, TrySendError},
};

use super::transport::{RECV_BATCH, RecvBatch};
use super::{
    BUSY_MAX_AGE_SECS, Command, IncomingRequest, InlineHandler, Reply, Responder, Transport,
};
use crate::coap::Datagram;
use crate::coap::block::set_uint_option;
use crate::coap::endpoint::{Endpoint, Event, RequestId};
use crate::coap::wire::new_response;

struct Pending {
    reply: Reply,
    notify: Option<mpsc::Sender<Packet>>,
}

struct State {
    endpoint: Endpoint,
    pending: HashMap<RequestId, Pending>,
    observations: HashMap<RequestId, mpsc::Sender<Packet>>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    req_tx: mpsc::Sender<IncomingRequest>,
    inline: Option<InlineHandler>,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The endpoint's deadline rounded up to whole milliseconds (tokio's timer resolution), so the
/// driver's one timer is re-armed at most once a millisecond, not on every datagram.
fn timer_deadline(at: std::time::Instant, base: std::time::Instant) -> tokio::time::Instant {
    let ms = at
        .saturating_duration_since(base)
        .as_nanos()
        .div_ceil(1_000_000);
    let ms = u64::try_from(ms).unwrap_or(u64::MAX / 2);
    tokio::time::Instant::from_std(base) + Duration::from_millis(ms)
}

pub(super) async fn run<T: Transport>(
    transport: T,
    endpoint: Endpoint,
    mut cmd_rx: mpsc::UnboundedReceiver<Command>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    req_tx: mpsc::Sender<IncomingRequest>,
) {
    let mut state = State {
        endpoint,
        pending: HashMap::new(),
        observations: HashMap::new(),
        cmd_tx,
        req_tx,
        inline: None,
    };
    // Everything works in batches: the datagrams queued on the socket are taken at once, the
    // application's answers that are ready are applied at once, and what the endpoint has to
    // send then goes out together (one recvmmsg and one sendmmsg on UDP).
    let mut batch = RecvBatch::new(RECV_BATCH);
    let base = now();
    let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(base));
    tokio::pin!(timer);
    let mut armed: Option<tokio::time::Instant> = None;
    let mut out: Vec<(SocketAddr, Datagram)> = Vec::new();
    loop {
        let t = now();
        if state.endpoint.poll_timeout().is_some_and(|at| at <= t) {
            state.endpoint.handle_timeout(t);
        }
        // Answers that came in meanwhile join this round's sends.
        loop {
            match cmd_rx.try_recv() {
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return,
                Ok(command) => state.apply(command),
                Err(TryRecvError::Empty) => break,
            }
        }
        state.dispatch_events(&transport);
        out.extend(std::iter::from_fn(|| {
            state.endpoint.poll_transmit_datagram()
        }));
        if !out.is_empty() {
            transport.send_batch(&out).await;
            out.clear();
        }
        let deadline = state
            .endpoint
            .poll_timeout()
            .map(|at| timer_deadline(at, base));
        if let Some(at) = deadline
            && armed != Some(at)
        {
            timer.as_mut().reset(at);
            armed = Some(at);
        }
        tokio::select! {
            received = transport.recv_batch(&mut batch) => match received {
                Ok(()) => {
                    let t = now();
                    for (peer, bytes) in batch.iter() {
                        if let Some(answer) = &state.inline {
                            let inline = |request: &Message<'_>, response: &mut MessageWriter<'_>| {
                                let identity = transport.peer_identity(peer);
                                answer(peer, identity.as_ref(), request, response)
                            };
                            if state.endpoint.answer_get_at_once(t, peer, bytes, inline) {
                                continue;
                            }
                        }
                        state.endpoint.handle_datagram(t, peer, bytes);
                    }
                }
                // e.g. ICMP port unreachable reported on a later call: not fatal for a server.
                Err(e) => tracing::debug!("receive failed: {e}"),
            },
            command = cmd_rx.recv() => match command {
                None | Some(Command::Shutdown) => break,
                Some(command) => state.apply(command),
            },
            () = &mut timer, if deadline.is_some() => {
                armed = None;
                state.endpoint.handle_timeout(now());
            }
        }
    }
}

impl State {
    fn apply(&mut self, command: Command) {
        match command {
            Command::Request {
                peer,
                packet,
                reply,
                notify,
            } => {
                let id = self.endpoint.send_request(now(), peer, packet, true);
                self.pending.insert(id, Pending { reply, notify });
            }
            Command::Respond {
                handle,
                packet,
                body,
            } => self.endpoint.respond_with_body(now(), handle, packet, body),
            Command::Cancel(id) => {
                self.observations.remove(&id);
                self.endpoint.cancel(id);
            }
            Command::Adopt {
                peer,
                packet,
                notify,
                reply,
            } => {
                let id = self.endpoint.adopt_observation(now(), peer, packet);
                if reply.send(id).is_ok() {
                    self.observations.insert(id, notify);
                } else {
                    self.endpoint.cancel(id);
                }
            }
            Command::Reject { peer, packet } => {
                self.endpoint.reject_notification(now(), peer, &packet)
            }
            Command::Inline(handler) => self.inline = Some(handler),
            Command::Shutdown => {}
        }
    }

    fn dispatch_events<T: Transport>(&mut self, transport: &T) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::Request {
                    handle,
                    peer,
                    packet,
                } => {
                    let identity = transport.peer_identity(peer);
                    let responder = Responder {
                        handle,
                        cmd_tx: self.cmd_tx.clone(),
                    };
                    let request = IncomingRequest {
                        identity,
                        peer,
                        packet,
                        responder: Some(responder),
                        held: None,
                    };
                    if let Err(TrySendError::Full(mut r) | TrySendError::Closed(mut r)) =
                        self.req_tx.try_send(request)
                    {
                        r.responder = None; // answered here, not by its Drop
                        let mut busy = new_response(ResponseType::ServiceUnavailable);
                        set_uint_option(&mut busy, CoapOption::MaxAge, BUSY_MAX_AGE_SECS);
                        self.endpoint.respond(now(), handle, busy);
                    }
                }
                Event::Response { id, packet } => {
                    let Some(pending) = self.pending.remove(&id) else {
                        continue;
                    };
                    if let Some(notify) = pending.notify
                        && self.endpoint.is_observing(id)
                    {
                        self.observations.insert(id, notify);
                    }
                    // Nobody is waiting any more: do not keep an observation no one will read.
                    if pending.reply.send(Ok((id, packet))).is_err()
                        && self.observations.remove(&id).is_some()
                    {
                        self.endpoint.cancel(id);
                    }
                }
                Event::Notification { id, packet } => {
                    let ended = !self.endpoint.is_observing(id);
                    match self.observations.get(&id).map(|tx| tx.try_send(packet)) {
                        Some(Ok(())) => {}
                        Some(Err(TrySendError::Full(_))) => {
                            tracing::debug!(?id, "observer is slow; notification dropped");
                        }
                        Some(Err(TrySendError::Closed(_))) | None => {
                            self.observations.remove(&id);
                            self.endpoint.cancel(id);
                        }
                    }
                    if ended {
                        self.observations.remove(&id);
                    }
                }
                Event::UnknownNotification { peer, packet } => {
                    // To the application's task, which may look the token up in the database.
                    let held = IncomingRequest {
                        identity: transport.peer_identity(peer),
                        peer,
                        packet,
                        responder: None,
                        held: Some(self.cmd_tx.clone()),
                    };
                    if let Err(TrySendError::Full(r) | TrySendError::Closed(r)) =
                        self.req_tx.try_send(held)
                    {
                        drop(r); // its Drop queues the Reset
                    }
                }
                Event::RequestFailed { id, reason } => {
                    if let Some(pending) = self.pending.remove(&id) {
                        let _ = pending.reply.send(Err(reason.into()));
                    }
                }
            }
        }
    }
}

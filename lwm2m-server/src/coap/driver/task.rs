//! The task that owns the endpoint.

use std::collections::HashMap;

use coap_lite::{CoapOption, Packet, ResponseType};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::{BUSY_MAX_AGE_SECS, Command, IncomingRequest, Reply, Responder, Transport};
use crate::coap::block::set_uint_option;
use crate::coap::endpoint::{Endpoint, Event, RequestId};
use crate::coap::wire::new_response;

/// Large enough for any UDP datagram, so an oversized one is seen whole (and judged), not cut.
const RECV_BUFFER: usize = 65_536;

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
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
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
    };
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let t = now();
        if state.endpoint.poll_timeout().is_some_and(|at| at <= t) {
            state.endpoint.handle_timeout(t);
        }
        state.dispatch_events();
        while let Some((peer, bytes)) = state.endpoint.poll_transmit() {
            if let Err(e) = transport.send_to(&bytes, peer).await {
                tracing::debug!(%peer, "send failed: {e}");
            }
        }
        let deadline = state.endpoint.poll_timeout();
        tokio::select! {
            received = transport.recv_from(&mut buf) => match received {
                Ok((n, peer)) => state.endpoint.handle_datagram(now(), peer, &buf[..n]),
                // e.g. ICMP port unreachable reported on a later call: not fatal for a server.
                Err(e) => tracing::debug!("receive failed: {e}"),
            },
            command = cmd_rx.recv() => match command {
                None | Some(Command::Shutdown) => break,
                Some(command) => state.apply(command),
            },
            () = sleep_until(deadline) => state.endpoint.handle_timeout(now()),
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
            Command::Respond { handle, packet } => self.endpoint.respond(now(), handle, packet),
            Command::Cancel(id) => {
                self.observations.remove(&id);
                self.endpoint.cancel(id);
            }
            Command::Shutdown => {}
        }
    }

    fn dispatch_events(&mut self) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::Request {
                    handle,
                    peer,
                    packet,
                } => {
                    let responder = Responder {
                        handle,
                        cmd_tx: self.cmd_tx.clone(),
                    };
                    let request = IncomingRequest {
                        peer,
                        packet,
                        responder: Some(responder),
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
                Event::RequestFailed { id, reason } => {
                    if let Some(pending) = self.pending.remove(&id) {
                        let _ = pending.reply.send(Err(reason.into()));
                    }
                }
            }
        }
    }
}

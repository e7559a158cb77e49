//! The discrete-event loop that runs a mesh of OpenThread node processes in virtual time, with the
//! real lwm2m-server on the same clock.
//!
//! The clock is tokio's, paused (as in the rest of the simulator): the server's timers and the
//! mesh's events share it. tokio's timers tick in milliseconds while 802.15.4 needs microseconds,
//! so the mesh keeps its own microsecond clock and lets tokio catch up at each millisecond: within
//! one millisecond no server timer can fire, so the mesh's events there run back to back. A node
//! runs only when the loop services it (its batch of events, then `Go`, then its answers until
//! `Idle`): the loop's thread is blocked meanwhile, so no virtual time passes while a node
//! computes, however slow the host.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde::Serialize;
use sim_thread::status::Status;
use sim_thread::wire::{Datagram, FromNode, ToNode};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::medium::{Medium, MediumStats};
use super::node::NodeProc;
use crate::sim::net::{Inbox, RecentIds, requests_resource};

/// Something due on the mesh at a time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Frame `id` ends; `to` receives it unless the medium says otherwise.
    Frame { id: u64, to: usize, psdu: Vec<u8> },
    /// A datagram from the server reaches the border router.
    Downlink(Datagram),
}

/// The border router's uplink to the server: the server's CoAP transport on one side, the
/// border router's bridge on the other, a fixed delay between.
pub struct Backbone {
    server: SocketAddr,
    inbox: Inbox,
    down: Mutex<Vec<(Instant, Datagram)>>,
    wake: Notify,
    delay: Duration,
}

impl Backbone {
    pub fn new(server: SocketAddr, delay: Duration) -> Arc<Backbone> {
        Arc::new(Backbone {
            server,
            inbox: Inbox::default(),
            down: Mutex::default(),
            wake: Notify::new(),
            delay,
        })
    }
}

/// lwm2m-server's socket on the backbone.
pub struct BackboneTransport(pub Arc<Backbone>);

impl lwm2m_server::coap::Transport for BackboneTransport {
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        let (SocketAddr::V6(from), SocketAddr::V6(to)) = (self.0.server, peer) else {
            return Ok(()); // Thread is IPv6 only: nobody there.
        };
        let d = Datagram {
            from,
            to,
            payload: buf.to_vec(),
        };
        let at = Instant::now() + self.0.delay;
        self.0
            .down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((at, d));
        self.0.wake.notify_one();
        Ok(())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.inbox.recv(buf).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.0.server)
    }
}

/// CoAP-level traffic of one device, counted where it crosses the border router.
#[derive(Debug, Default)]
struct Coap {
    up: RecentIds,
    down: RecentIds,
    datagrams_up: u64,
    datagrams_down: u64,
    retransmissions: u64,
    image_requests: u64,
}

/// What one device's CoAP traffic was.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CoapStats {
    pub datagrams_up: u64,
    pub datagrams_down: u64,
    pub retransmissions: u64,
    pub image_requests: u64,
}

/// Requests to the running loop.
pub enum Command {
    /// Every node's status, in node order.
    Query(oneshot::Sender<Result<Vec<Status>>>),
    /// The medium's counters and each device address's CoAP counters.
    Stats(oneshot::Sender<(MediumStats, HashMap<Ipv6Addr, CoapStats>)>),
}

/// The mesh: node processes, the medium, what is due, the border router's index.
pub struct Mesh {
    nodes: Vec<NodeProc>,
    medium: Medium,
    due: BinaryHeap<Reverse<(u64, u64, Due)>>,
    seq: u64,
    border_router: usize,
    backbone: Arc<Backbone>,
    epoch: Instant,
    /// The mesh's clock, µs since `epoch`; never behind tokio's.
    now: u64,
    coap: HashMap<Ipv6Addr, Coap>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Mesh {
    /// `nodes[i]` sits at `medium`'s node `i`; the border router bridges to `backbone`.
    pub fn new(
        nodes: Vec<NodeProc>,
        medium: Medium,
        border_router: usize,
        backbone: Arc<Backbone>,
        epoch: Instant,
    ) -> Mesh {
        Mesh {
            nodes,
            medium,
            due: BinaryHeap::new(),
            seq: 0,
            border_router,
            backbone,
            epoch,
            now: 0,
            coap: HashMap::new(),
        }
    }

    fn push(&mut self, at: u64, due: Due) {
        self.seq += 1;
        self.due.push(Reverse((at, self.seq, due)));
    }

    fn next_event(&self) -> Option<u64> {
        let frame = self.due.peek().map(|Reverse((at, _, _))| *at);
        let alarm = self.nodes.iter().filter_map(|n| n.next).min();
        [frame, alarm].into_iter().flatten().min()
    }

    /// Runs until `commands` closes or a node fails.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) -> Result<()> {
        loop {
            // Let the server run whatever is ready at this instant first.
            tokio::task::yield_now().await;
            let downs: Vec<_> =
                std::mem::take(&mut *self.backbone.down.lock().unwrap_or_else(|e| e.into_inner()));
            for (at, d) in downs {
                let at = micros(at.saturating_duration_since(self.epoch)).max(self.now);
                self.push(at, Due::Downlink(d));
            }
            let tokio_now = micros(self.epoch.elapsed());
            self.now = self.now.max(tokio_now);
            let next = self.next_event();
            let this_ms_ends = (tokio_now / 1000 + 1) * 1000;
            match next {
                Some(t) if t < this_ms_ends => {
                    // Within tokio's current millisecond: no server timer can come between.
                    self.now = self.now.max(t);
                    self.step()?;
                    while let Ok(cmd) = commands.try_recv() {
                        self.command(cmd);
                    }
                }
                _ => {
                    let wake_ms = next.map_or(u64::MAX / 2, |t| t / 1000 * 1000);
                    let at = self.epoch + Duration::from_micros(wake_ms);
                    tokio::select! {
                        biased;
                        cmd = commands.recv() => match cmd {
                            Some(cmd) => self.command(cmd),
                            None => return Ok(()),
                        },
                        _ = self.backbone.wake.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Query(reply) => {
                let _ = reply.send(self.query());
            }
            Command::Stats(reply) => {
                let coap = self
                    .coap
                    .iter()
                    .map(|(a, c)| {
                        let s = CoapStats {
                            datagrams_up: c.datagrams_up,
                            datagrams_down: c.datagrams_down,
                            retransmissions: c.retransmissions,
                            image_requests: c.image_requests,
                        };
                        (*a, s)
                    })
                    .collect();
                let _ = reply.send((self.medium.stats, coap));
            }
        }
    }

    fn query(&mut self) -> Result<Vec<Status>> {
        let mut all = Vec::with_capacity(self.nodes.len());
        for node in &mut self.nodes {
            node.send(&ToNode::Query)?;
            match node.recv()? {
                FromNode::Status(json) => all.push(
                    serde_json::from_str(&json)
                        .map_err(|e| anyhow!("node {}: bad status: {e}", node.id))?,
                ),
                other => return Err(anyhow!("node {}: {other:?} instead of status", node.id)),
            }
        }
        Ok(all)
    }

    /// Everything due at `self.now`: frames end, datagrams arrive, nodes' timers fire.
    fn step(&mut self) -> Result<()> {
        let now = self.now;
        while let Some(Reverse((at, _, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, due))) = self.due.pop() else {
                break;
            };
            match due {
                Due::Frame { id, to, psdu } => {
                    if self.medium.received(id, to) {
                        if let Some(n) = self.nodes.get_mut(to) {
                            n.pending.push(ToNode::Frame(psdu));
                        }
                    }
                }
                Due::Downlink(d) => {
                    let c = self.coap.entry(*d.to.ip()).or_default();
                    c.datagrams_down += 1;
                    if c.down.is_retransmission(&d.payload) {
                        c.retransmissions += 1;
                    }
                    let br = self.border_router;
                    if let Some(n) = self.nodes.get_mut(br) {
                        n.pending.push(ToNode::Downlink(d));
                    }
                }
            }
        }
        for i in 0..self.nodes.len() {
            let due = self
                .nodes
                .get(i)
                .is_some_and(|n| !n.pending.is_empty() || n.next.is_some_and(|t| t <= now));
            if due {
                self.service(i)?;
            }
        }
        Ok(())
    }

    /// Runs node `i` at `self.now`: its batch, then its transmissions until it is idle.
    fn service(&mut self, i: usize) -> Result<()> {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(i) else {
            return Ok(());
        };
        node.send(&ToNode::Advance(now))?;
        for m in std::mem::take(&mut node.pending) {
            node.send(&m)?;
        }
        node.send(&ToNode::Go)?;
        loop {
            let msg = match self.nodes.get_mut(i) {
                Some(node) => node.recv()?,
                None => return Ok(()),
            };
            match msg {
                FromNode::Tx { cca, psdu } => {
                    let answer = match self.medium.transmit(i, now, psdu.len(), cca) {
                        None => ToNode::TxResult {
                            clear: false,
                            airtime_us: 0,
                        },
                        Some((id, airtime, hearers)) => {
                            self.medium.count_kind(&psdu);
                            for to in hearers {
                                self.push(
                                    now + airtime,
                                    Due::Frame {
                                        id,
                                        to,
                                        psdu: psdu.clone(),
                                    },
                                );
                            }
                            ToNode::TxResult {
                                clear: true,
                                airtime_us: u32::try_from(airtime).unwrap_or(u32::MAX),
                            }
                        }
                    };
                    if let Some(node) = self.nodes.get_mut(i) {
                        node.send(&answer)?;
                    }
                }
                FromNode::Uplink(d) => {
                    let c = self.coap.entry(*d.from.ip()).or_default();
                    c.datagrams_up += 1;
                    if c.up.is_retransmission(&d.payload) {
                        c.retransmissions += 1;
                    }
                    if requests_resource(&d.payload, b"image") {
                        c.image_requests += 1;
                    }
                    let at = self.epoch + Duration::from_micros(now) + self.backbone.delay;
                    self.backbone
                        .inbox
                        .push(at, SocketAddr::V6(d.from), &d.payload);
                }
                FromNode::Status(_) => {}
                FromNode::Idle { next } => {
                    if let Some(node) = self.nodes.get_mut(i) {
                        node.next = next;
                    }
                    return Ok(());
                }
            }
        }
    }
}

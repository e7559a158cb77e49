//! The simulated network in one process: the server's transport and every device's socket hand
//! their datagrams to [`SimNet`], which asks the link model when (and whether) each arrives and
//! queues it in the receiver's [`Inbox`] for that moment. Time is tokio's clock, paused by the
//! simulator, so a fleet's hours pass in seconds and nothing depends on the host's speed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::{self, Path, PathStats};

/// A datagram waiting for its arrival time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    at: Instant,
    /// Ties keep the order of sending.
    seq: u64,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// One receiver's queue of datagrams in flight to it, ordered by arrival.
#[derive(Debug, Default)]
pub struct Inbox {
    queue: Mutex<(BinaryHeap<Reverse<Queued>>, u64)>,
    arrived: Notify,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, (BinaryHeap<Reverse<Queued>>, u64)> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, at: Instant, from: SocketAddr, bytes: &[u8]) {
        let mut q = self.lock();
        let seq = q.1;
        q.1 += 1;
        q.0.push(Reverse(Queued {
            at,
            seq,
            from,
            bytes: bytes.to_vec(),
        }));
        drop(q);
        self.arrived.notify_one();
    }

    /// Drops everything in flight (the receiver lost power: its radio heard nothing).
    pub fn clear(&self) {
        self.lock().0.clear();
    }

    /// Waits for the next datagram to arrive. One receiver per inbox.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let next = {
                let mut q = self.lock();
                match q.0.peek() {
                    Some(Reverse(top)) if top.at <= Instant::now() => {
                        let Some(Reverse(d)) = q.0.pop() else {
                            continue;
                        };
                        let n = d.bytes.len().min(buf.len());
                        buf[..n].copy_from_slice(&d.bytes[..n]);
                        return Ok((n, d.from));
                    }
                    Some(Reverse(top)) => Some(top.at),
                    None => None,
                }
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = self.arrived.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.arrived.notified().await,
            }
        }
    }
}

/// What one device's traffic cost, both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub path: PathStats,
    /// Confirmable messages sent again with a message id already used (CoAP retransmissions),
    /// by the device and by the server to it.
    pub retransmissions_up: u64,
    pub retransmissions_down: u64,
    /// Requests the device sent for a resource named `image` (firmware image blocks).
    pub image_requests: u64,
}

/// True if `datagram` is a CoAP request whose last Uri-Path segment is `name`.
pub(crate) fn requests_resource(datagram: &[u8], name: &[u8]) -> bool {
    let (Some(&b0), Some(&code)) = (datagram.first(), datagram.get(1)) else {
        return false;
    };
    if code == 0 || code >> 5 != 0 {
        return false; // empty message or a response
    }
    let mut at = 4 + usize::from(b0 & 0x0f);
    let mut number = 0u32;
    let mut last: Option<&[u8]> = None;
    while let Some(&byte) = datagram.get(at) {
        if byte == 0xff {
            break;
        }
        at += 1;
        let mut ext = |nibble: u8| -> Option<u32> {
            match nibble {
                13 => {
                    let v = *datagram.get(at)?;
                    at += 1;
                    Some(u32::from(v) + 13)
                }
                14 => {
                    let v = u16::from_be_bytes([*datagram.get(at)?, *datagram.get(at + 1)?]);
                    at += 2;
                    Some(u32::from(v) + 269)
                }
                15 => None,
                n => Some(u32::from(n)),
            }
        };
        let (Some(delta), Some(len)) = (ext(byte >> 4), ext(byte & 0x0f)) else {
            return false;
        };
        number += delta;
        let Some(value) = datagram.get(at..at + len as usize) else {
            return false;
        };
        at += len as usize;
        if number == 11 {
            last = Some(value);
        }
    }
    last == Some(name)
}

/// The last confirmable message ids a sender used, to recognise retransmissions on the wire.
#[derive(Debug, Default)]
pub(crate) struct RecentIds {
    ids: [u16; 16],
    len: usize,
    next: usize,
}

impl RecentIds {
    /// True if `datagram` is a CON whose message id was seen recently.
    pub(crate) fn is_retransmission(&mut self, datagram: &[u8]) -> bool {
        let (Some(&b0), Some(&hi), Some(&lo)) =
            (datagram.first(), datagram.get(2), datagram.get(3))
        else {
            return false;
        };
        if (b0 >> 4) & 0x3 != 0 {
            return false;
        }
        let id = u16::from_be_bytes([hi, lo]);
        if self.ids[..self.len].contains(&id) {
            return true;
        }
        self.ids[self.next] = id;
        self.next = (self.next + 1) % self.ids.len();
        self.len = (self.len + 1).min(self.ids.len());
        false
    }
}

struct Attached {
    path: Path,
    inbox: Arc<Inbox>,
    up_ids: RecentIds,
    down_ids: RecentIds,
    retransmissions_up: u64,
    retransmissions_down: u64,
    image_requests: u64,
}

/// The network between one server and many devices.
pub struct SimNet {
    server: SocketAddr,
    server_inbox: Arc<Inbox>,
    devices: Mutex<HashMap<SocketAddr, Attached>>,
    epoch: Instant,
    /// False while the server process is down: what reaches it is lost.
    server_up: AtomicBool,
}

impl SimNet {
    /// A network whose server listens at `server`; its time starts now.
    pub fn new(server: SocketAddr) -> Arc<Self> {
        Arc::new(SimNet {
            server,
            server_inbox: Arc::default(),
            devices: Mutex::default(),
            epoch: Instant::now(),
            server_up: AtomicBool::new(true),
        })
    }

    fn devices(&self) -> MutexGuard<'_, HashMap<SocketAddr, Attached>> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Virtual time since the network started, as the model counts it.
    pub fn now(&self) -> model::Instant {
        model::Instant::from_start(self.elapsed())
    }

    /// Virtual time since the network started.
    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.epoch)
    }

    fn instant(&self, at: model::Instant) -> Instant {
        self.epoch + at.since_start()
    }

    /// Attaches a device at `addr` reached over `path`; returns its socket.
    pub fn attach(self: &Arc<Self>, addr: SocketAddr, path: Path) -> DeviceSocket {
        let inbox = Arc::new(Inbox::default());
        self.devices().insert(
            addr,
            Attached {
                path,
                inbox: inbox.clone(),
                up_ids: RecentIds::default(),
                down_ids: RecentIds::default(),
                retransmissions_up: 0,
                retransmissions_down: 0,
                image_requests: 0,
            },
        );
        DeviceSocket {
            net: self.clone(),
            addr,
            inbox,
        }
    }

    /// The server's side of the network.
    pub fn server_transport(self: &Arc<Self>) -> ServerTransport {
        ServerTransport { net: self.clone() }
    }

    /// Takes the server off the network (its process died: its socket and buffer are gone) or
    /// puts it back.
    pub fn set_server_up(&self, up: bool) {
        self.server_up.store(up, Ordering::SeqCst);
        if !up {
            self.server_inbox.clear();
        }
    }

    /// What a device's traffic has cost so far.
    pub fn traffic(&self, addr: SocketAddr) -> Option<Traffic> {
        self.devices().get(&addr).map(|d| Traffic {
            path: d.path.stats(),
            retransmissions_up: d.retransmissions_up,
            retransmissions_down: d.retransmissions_down,
            image_requests: d.image_requests,
        })
    }

    /// Nothing passes to or from the device in [now + from, now + from + len).
    pub fn outage(&self, addr: SocketAddr, from: Duration, len: Duration) {
        let start = model::Instant::from_start(self.elapsed() + from);
        let end = model::Instant::from_start(self.elapsed() + from + len);
        if let Some(d) = self.devices().get_mut(&addr) {
            d.path.outage(start, end);
        }
    }

    fn device_sends(&self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if to != self.server {
            return; // Devices talk only to the server.
        }
        let now = self.now();
        let mut devices = self.devices();
        let Some(d) = devices.get_mut(&from) else {
            return;
        };
        if d.up_ids.is_retransmission(bytes) {
            d.retransmissions_up += 1;
        }
        if requests_resource(bytes, b"image") {
            d.image_requests += 1;
        }
        let up = self.server_up.load(Ordering::SeqCst);
        for arrival in d.path.send_up(now, bytes.len()) {
            for _ in 0..arrival.copies * u32::from(up) {
                self.server_inbox
                    .push(self.instant(arrival.at), from, bytes);
            }
        }
    }

    fn server_sends(&self, to: SocketAddr, bytes: &[u8]) {
        let now = self.now();
        let mut devices = self.devices();
        let Some(d) = devices.get_mut(&to) else {
            return; // Nobody there: the datagram is lost, as on a real network.
        };
        if d.down_ids.is_retransmission(bytes) {
            d.retransmissions_down += 1;
        }
        for arrival in d.path.send_down(now, bytes.len()) {
            for _ in 0..arrival.copies {
                d.inbox.push(self.instant(arrival.at), self.server, bytes);
            }
        }
    }
}

/// A device's socket on the simulated network.
pub struct DeviceSocket {
    net: Arc<SimNet>,
    addr: SocketAddr,
    inbox: Arc<Inbox>,
}

impl DeviceSocket {
    /// The device's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forgets what was in flight to the device (it lost power).
    pub fn power_loss(&self) {
        self.inbox.clear();
    }
}

impl lwm2m_client::host::Socket for DeviceSocket {
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        self.net.device_sends(self.addr, peer, buf);
        Ok(())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inbox.recv(buf).await
    }
}

/// The server's socket on the simulated network: lwm2m-server's CoAP endpoint runs on it.
pub struct ServerTransport {
    net: Arc<SimNet>,
}

impl lwm2m_server::coap::Transport for ServerTransport {
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        self.net.server_sends(peer, buf);
        Ok(())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.net.server_inbox.recv(buf).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.net.server)
    }
}

#[cfg(test)]
mod tests {
    use super::requests_resource;

    #[test]
    fn recognises_a_request_for_an_image_block() {
        // CON GET, token 2 bytes, Uri-Path "fw" "0123456789abcdef" "image", Block2.
        let mut m = vec![0x42, 0x01, 0x12, 0x34, 0xaa, 0xbb];
        m.extend([0xb2, b'f', b'w']);
        m.push(0x0d);
        m.push(16 - 13);
        m.extend(b"0123456789abcdef");
        m.extend([0x05]);
        m.extend(b"image");
        m.extend([0xc1, 0x02]); // Block2 (23 = 11 + 12)
        assert!(requests_resource(&m, b"image"));
        assert!(!requests_resource(&m, b"manifest"));
        // The same as a response (2.05) is not a request.
        m[1] = 0x45;
        assert!(!requests_resource(&m, b"image"));
        // Truncated inside an option: not counted, no panic.
        assert!(!requests_resource(&m[..12], b"image"));
    }
}

//! The datagram transport the driver runs on: UDP here, an in-memory network in the simulator.
//!
//! UDP moves datagrams in batches: `recvmmsg` takes every datagram already queued (up to
//! [`RECV_BATCH`]) in one system call, and `sendmmsg` sends the driver's answers in one, each
//! gathered from its head and its payload (a slice of the shared firmware image) without a copy.
//! Both come from `nix` (safe wrappers; the workspace denies `unsafe_code`).

use std::future::Future;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::coap::Datagram;

/// Datagrams taken by one `recvmmsg`.
pub const RECV_BATCH: usize = 32;
/// Datagrams given to one `sendmmsg`.
const SEND_BATCH: usize = 64;
/// Large enough for any UDP datagram, so an oversized one is seen whole (and judged), not cut.
pub const MAX_DATAGRAM: usize = 65_536;

/// Buffers for a batch of received datagrams, reused from one receive to the next.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    got: Vec<(usize, SocketAddr)>,
    /// Whether the socket received on is IPv4, learnt at the first receive.
    ipv4: Option<bool>,
}

impl RecvBatch {
    /// Room for `slots` datagrams of up to [`MAX_DATAGRAM`] bytes (at least one).
    pub fn new(slots: usize) -> Self {
        RecvBatch {
            bufs: (0..slots.max(1)).map(|_| vec![0u8; MAX_DATAGRAM]).collect(),
            got: Vec::with_capacity(slots.max(1)),
            ipv4: None,
        }
    }

    /// The datagrams of the last receive, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.got
            .iter()
            .zip(&self.bufs)
            .filter(|((_, peer), _)| peer.port() != 0)
            .map(|(&(n, peer), buf)| (peer, &buf[..n.min(buf.len())]))
    }

    pub fn len(&self) -> usize {
        self.got.len()
    }

    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }
}

/// A datagram socket. `recv_from` and `recv_batch` must be cancel-safe (the driver polls them
/// inside `select!`): dropping the future before it completes must not lose a datagram.
pub trait Transport: Send + Sync + 'static {
    fn send_to(&self, buf: &[u8], peer: SocketAddr) -> impl Future<Output = io::Result<()>> + Send;
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// The identity `peer` authenticated with on a secure transport (DTLS: its PSK identity),
    /// looked up when its request is handed to the application. None on a plain one.
    fn peer_identity(&self, _peer: SocketAddr) -> Option<Arc<str>> {
        None
    }

    /// Waits for at least one datagram and fills `batch` with what is there. By default one
    /// [`Transport::recv_from`]; UDP takes every queued datagram in one system call.
    fn recv_batch(&self, batch: &mut RecvBatch) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            batch.got.clear();
            let buf = batch.bufs.first_mut().ok_or(io::ErrorKind::InvalidInput)?;
            let (n, peer) = self.recv_from(buf).await?;
            batch.got.push((n, peer));
            Ok(())
        }
    }

    /// Sends every datagram (a failure is logged and skipped, as a lost datagram). By default
    /// one [`Transport::send_to`] each; UDP sends them in batches.
    fn send_batch(&self, datagrams: &[(SocketAddr, Datagram)]) -> impl Future<Output = ()> + Send {
        async move {
            for (peer, d) in datagrams {
                if let Err(e) = self.send_to(&d.to_vec(), *peer).await {
                    tracing::debug!(%peer, "send failed: {e}");
                }
            }
        }
    }
}

impl Transport for UdpSocket {
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        UdpSocket::send_to(self, buf, peer).await.map(|_| ())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::recv_from(self, buf).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        UdpSocket::local_addr(self)
    }

    async fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<()> {
        loop {
            self.readable().await?;
            // try_io clears the readiness on WouldBlock, so the next readable() waits.
            match self.try_io(Interest::READABLE, || recv_many(self, batch)) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_batch(&self, datagrams: &[(SocketAddr, Datagram)]) {
        let mut rest = datagrams;
        while !rest.is_empty() {
            if let Err(e) = self.writable().await {
                tracing::debug!("socket not writable: {e}");
                return;
            }
            let chunk = &rest[..rest.len().min(SEND_BATCH)];
            match self.try_io(Interest::WRITABLE, || send_many(self, chunk)) {
                Ok(sent) => rest = &rest[sent.max(1)..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // The first datagram of the chunk failed (a bad address, ICMP reported on a
                // later call): skip it, as a lost datagram.
                Err(e) => {
                    tracing::debug!(peer = %rest[0].0, "send failed: {e}");
                    rest = &rest[1..];
                }
            }
        }
    }
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// The message headers `recvmmsg`/`sendmmsg` fill in, kept from call to call: allocated afresh
/// they cost a large malloc and free per batch (glibc then consolidates its free lists, a few
/// percent of the CPU per block). Per thread, because they hold raw pointers (not `Send`), and
/// the driver's future must be. Receiving headers are kept per address family: the kernel writes
/// the sender's address length into them, which is then the room the next call offers.
struct Scratch {
    recv_v4: MultiHeaders<SockaddrStorage>,
    recv_v6: MultiHeaders<SockaddrStorage>,
    send: MultiHeaders<SockaddrStorage>,
    addrs: Vec<Option<SockaddrStorage>>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut cell = cell.borrow_mut();
        let scratch = cell.get_or_insert_with(|| Scratch {
            recv_v4: MultiHeaders::preallocate(RECV_BATCH, None),
            recv_v6: MultiHeaders::preallocate(RECV_BATCH, None),
            send: MultiHeaders::preallocate(SEND_BATCH, None),
            addrs: Vec::with_capacity(SEND_BATCH),
        });
        f(scratch)
    })
}

/// One `recvmmsg` without waiting: the datagrams queued on the socket, at least one (else
/// WouldBlock).
fn recv_many(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<()> {
    let v4 = match batch.ipv4 {
        Some(v4) => v4,
        None => *batch.ipv4.insert(socket.local_addr()?.is_ipv4()),
    };
    with_scratch(|scratch| {
        let headers = match v4 {
            true => &mut scratch.recv_v4,
            false => &mut scratch.recv_v6,
        };
        recv_many_with(socket, batch, headers)
    })
}

fn recv_many_with(
    socket: &UdpSocket,
    batch: &mut RecvBatch,
    headers: &mut MultiHeaders<SockaddrStorage>,
) -> io::Result<()> {
    batch.got.clear();
    // At most as many slots as there are headers (the batch may have been made bigger).
    let slots = batch.bufs.len().min(RECV_BATCH);
    let mut iovs: Vec<[IoSliceMut; 1]> = batch
        .bufs
        .iter_mut()
        .take(slots)
        .map(|b| [IoSliceMut::new(b)])
        .collect();
    let results = recvmmsg(
        socket.as_raw_fd(),
        headers,
        iovs.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(io::Error::from)?;
    for msg in results {
        // A datagram from an address family we do not speak is dropped.
        if let Some(peer) = msg.address.as_ref().and_then(to_socket_addr) {
            batch.got.push((msg.bytes, peer));
        } else {
            // Keeps the slots in step with the buffers; skipped by `iter`.
            batch.got.push((0, SocketAddr::from(([0, 0, 0, 0], 0))));
        }
    }
    if batch.got.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(())
}

/// One `sendmmsg`; how many datagrams went out (at least one, else an error).
fn send_many(socket: &UdpSocket, chunk: &[(SocketAddr, Datagram)]) -> io::Result<usize> {
    with_scratch(|scratch| {
        let chunk = &chunk[..chunk.len().min(SEND_BATCH)];
        scratch.addrs.clear();
        scratch.addrs.extend(
            chunk
                .iter()
                .map(|(peer, _)| Some(SockaddrStorage::from(*peer))),
        );
        send_many_with(socket, chunk, &mut scratch.send, &scratch.addrs)
    })
}

fn send_many_with(
    socket: &UdpSocket,
    chunk: &[(SocketAddr, Datagram)],
    headers: &mut MultiHeaders<SockaddrStorage>,
    addrs: &[Option<SockaddrStorage>],
) -> io::Result<usize> {
    let iovs: Vec<[IoSlice; 2]> = chunk
        .iter()
        .map(|(_, d)| [IoSlice::new(&d.head), IoSlice::new(&d.body)])
        .collect();
    let no_cmsgs: [ControlMessage; 0] = [];
    let results = sendmmsg(
        socket.as_raw_fd(),
        headers,
        &iovs,
        addrs,
        no_cmsgs,
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(results.count())
}

/// Binds a UDP socket to an IPv4 or IPv6 address such as `127.0.0.1:5683` or `[::1]:5683`.
pub async fn bind_udp(addr: &str) -> io::Result<UdpSocket> {
    bind_udp_with(addr, false).await
}

/// Like [`bind_udp`]; with `reuse_port` the socket is bound with `SO_REUSEPORT`, so that other
/// sockets (other `lwm2m-server serve --reuse-port` processes) can bind the same address and the
/// kernel spreads the peers among them by a hash of their address. Without it, binding an
/// address already in use fails with `AddrInUse`.
pub async fn bind_udp_with(addr: &str, reuse_port: bool) -> io::Result<UdpSocket> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

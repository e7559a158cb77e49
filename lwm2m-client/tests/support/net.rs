//! Datagram transports for the test peers: real UDP on loopback (interop with libcoap and
//! aiocoap, in real time), or an in-memory network for tests that run on tokio's paused clock.
//!
//! Why not UDP under a paused clock: tokio advances a paused clock as soon as no task is ready,
//! and a datagram sent on loopback is not always in the receiver's queue yet (the kernel delivers
//! it from a softirq, later under load). Virtual time then jumps to the next timer with a
//! datagram in flight: retransmissions and test deadlines fire that never would on a real
//! network. In memory, a send wakes the receiving task at once, so the runtime is never idle
//! while a datagram is on its way and virtual time only passes when the whole system waits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

type Datagram = (Vec<u8>, SocketAddr);

/// An in-memory network: every socket gets its own address (192.0.2.n:5683).
#[derive(Default)]
pub struct MemNet {
    ports: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Datagram>>>,
    next: Mutex<u8>,
    /// Datagrams sent to an address nobody listens on.
    pub dropped: Mutex<usize>,
}

impl MemNet {
    pub fn new() -> Arc<MemNet> {
        Arc::new(MemNet::default())
    }

    pub fn bind(self: &Arc<Self>) -> MemSock {
        let n = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        let addr = SocketAddr::from(([192, 0, 2, n], 5683));
        let (tx, rx) = mpsc::unbounded_channel();
        self.ports.lock().unwrap().insert(addr, tx);
        MemSock {
            addr,
            net: self.clone(),
            rx: tokio::sync::Mutex::new(rx),
        }
    }
}

/// A socket on a [`MemNet`]; closed (its address unreachable) when dropped.
pub struct MemSock {
    pub addr: SocketAddr,
    net: Arc<MemNet>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Datagram>>,
}

impl Drop for MemSock {
    fn drop(&mut self) {
        self.net.ports.lock().unwrap().remove(&self.addr);
    }
}

impl MemSock {
    pub fn send_to(&self, bytes: &[u8], to: SocketAddr) {
        let tx = self.net.ports.lock().unwrap().get(&to).cloned();
        match tx {
            Some(tx) if tx.send((bytes.to_vec(), self.addr)).is_ok() => {}
            _ => *self.net.dropped.lock().unwrap() += 1,
        }
    }

    pub async fn recv_from(&self) -> Option<Datagram> {
        self.rx.lock().await.recv().await
    }
}

/// Where a test peer sends and receives.
#[derive(Clone)]
pub enum Transport {
    Udp(Arc<UdpSocket>),
    Mem(Arc<MemSock>),
}

/// How the peers of a test are connected.
#[derive(Clone)]
pub enum Link {
    Udp,
    Mem(Arc<MemNet>),
}

impl Link {
    pub async fn bind(&self) -> Transport {
        match self {
            Link::Udp => Transport::Udp(Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap())),
            Link::Mem(net) => Transport::Mem(Arc::new(net.bind())),
        }
    }
}

impl Transport {
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Transport::Udp(s) => s.local_addr().unwrap(),
            Transport::Mem(s) => s.addr,
        }
    }

    pub async fn send_to(&self, bytes: &[u8], to: SocketAddr) {
        match self {
            Transport::Udp(s) => {
                let _ = s.send_to(bytes, to).await;
            }
            Transport::Mem(s) => s.send_to(bytes, to),
        }
    }

    /// The next datagram; None when the socket is gone.
    pub async fn recv_from(&self) -> Option<Datagram> {
        match self {
            Transport::Udp(s) => {
                let mut buf = vec![0u8; 2048];
                let (n, from) = s.recv_from(&mut buf).await.ok()?;
                buf.truncate(n);
                Some((buf, from))
            }
            Transport::Mem(s) => s.recv_from().await,
        }
    }
}

//! The datagram transport the driver runs on: UDP here, an in-memory network in the simulator.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// A datagram socket. `recv_from` must be cancel-safe (the driver polls it inside `select!`):
/// dropping the future before it completes must not lose a datagram.
pub trait Transport: Send + Sync + 'static {
    fn send_to(&self, buf: &[u8], peer: SocketAddr) -> impl Future<Output = io::Result<()>> + Send;
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    fn local_addr(&self) -> io::Result<SocketAddr>;
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
}

/// Binds a UDP socket to an IPv4 or IPv6 address such as `127.0.0.1:5683` or `[::1]:5683`.
pub async fn bind_udp(addr: &str) -> io::Result<UdpSocket> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    UdpSocket::bind(addr).await
}

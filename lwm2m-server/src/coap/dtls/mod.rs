//! `coaps://`: DTLS 1.2 with pre-shared keys (RFC 6347, RFC 4279, suite
//! `TLS_PSK_WITH_AES_128_CCM_8` of RFC 6655, the one LwM2M makes mandatory), as a thin
//! [`Transport`] between a UDP socket and the CoAP endpoint. The endpoint sees plaintext CoAP
//! datagrams from peers that proved they hold a device's key, and
//! [`Transport::peer_identity`] tells which one.
//!
//! The handshake and record layer are [dimpl](https://docs.rs/dimpl) (sans-IO); [`sessions`]
//! keeps one per peer address and bounds what a handshake flood can make the server hold.

mod sessions;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::UdpSocket;

use sessions::Sessions;
pub use sessions::{DtlsConfig, DtlsStats, PskLookup, SendError};

use super::Transport;

/// The DTLS side of a UDP socket. Cloning the [`DtlsHandle`] lets the server see its sessions.
pub struct DtlsTransport {
    socket: UdpSocket,
    sessions: DtlsHandle,
}

/// A view of the session table, for the server (identities) and tests (sizes).
#[derive(Clone)]
pub struct DtlsHandle {
    inner: Arc<Mutex<Sessions>>,
}

impl DtlsHandle {
    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many sessions each tier holds now.
    pub fn stats(&self) -> DtlsStats {
        self.lock().stats()
    }

    /// The PSK identity `peer` authenticated with, while its session lasts.
    pub fn identity(&self, peer: SocketAddr) -> Option<Arc<str>> {
        self.lock().identity(peer)
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl DtlsTransport {
    /// DTLS on `socket`; keys are looked up in `keys` by the identity a client names.
    pub fn new(socket: UdpSocket, config: DtlsConfig, keys: Arc<dyn PskLookup>) -> Self {
        DtlsTransport {
            socket,
            sessions: DtlsHandle {
                inner: Arc::new(Mutex::new(Sessions::new(config, keys))),
            },
        }
    }

    pub fn handle(&self) -> DtlsHandle {
        self.sessions.clone()
    }

    /// Sends what the sessions queued. Without waiting: a datagram the socket cannot take now is
    /// dropped like any lost one (DTLS retransmits handshakes, CoAP retransmits requests), and
    /// nothing is lost if the caller's future is dropped.
    fn flush(&self, sessions: &mut Sessions) {
        while let Some((peer, bytes)) = sessions.poll_transmit() {
            if let Err(e) = self.socket.try_send_to(&bytes, peer) {
                tracing::debug!(%peer, "DTLS send failed: {e}");
            }
        }
    }
}

impl Transport for DtlsTransport {
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        let mut sessions = self.sessions.lock();
        let sent = sessions.send(now(), peer, buf);
        self.flush(&mut sessions);
        sent.map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e))
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        // Larger than any handshake flight or record our peers send (their MTU); a cut datagram
        // fails authentication and is dropped.
        let mut raw = vec![0u8; 4096];
        loop {
            let deadline = {
                let mut sessions = self.sessions.lock();
                sessions.handle_timeout(now());
                self.flush(&mut sessions);
                if let Some((peer, data)) = sessions.poll_received() {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    return Ok((n, peer));
                }
                sessions.poll_timeout()
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = self.socket.recv_from(&mut raw) => {
                    let (n, peer) = received?;
                    self.sessions.lock().handle_datagram(now(), peer, &raw[..n]);
                }
                () = sleep => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn peer_identity(&self, peer: SocketAddr) -> Option<Arc<str>> {
        self.sessions.identity(peer)
    }
}

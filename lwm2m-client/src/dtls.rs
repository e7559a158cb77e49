//! `coaps://` for the host binary (feature `std`): a [`Socket`] that wraps a UDP socket in one
//! DTLS 1.2 PSK session with the LwM2M server (RFC 6347; `TLS_PSK_WITH_AES_128_CCM_8`, the suite
//! LwM2M makes mandatory), so the engine above stays the same plain-CoAP engine as on the board.
//!
//! Once secured the device talks to its server only: datagrams from any other address are dropped
//! unread, anything the engine addresses elsewhere is refused, and only records that authenticate
//! under the session key reach the engine. The handshake is [dimpl](https://docs.rs/dimpl)'s
//! (sans-IO), driven here by tokio. A session that fails, or that the server stops answering
//! (a restarted server forgot it), is replaced by a fresh handshake on the next send.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dimpl::crypto::Dtls12CipherSuite;
use dimpl::{Config, Dtls, Output, PskResolver};
use tokio::net::UdpSocket;

use crate::host::Socket;

/// How long the server may stay silent while we send before the session counts as lost (a
/// confirmable request and its first retransmissions fit in it).
const SILENCE_LIMIT: Duration = Duration::from_secs(20);
/// Largest datagram received; a cut one fails authentication and is dropped.
const RECV_BUFFER: usize = 4096;

/// The device's DTLS credentials.
#[derive(Clone)]
pub struct Psk {
    pub identity: String,
    pub key: Vec<u8>,
}

/// The key is a secret: it never shows in logs or debug output.
impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psk")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

struct Key(Vec<u8>);

impl PskResolver for Key {
    fn resolve(&self, _identity: &[u8]) -> Option<Vec<u8>> {
        Some(self.0.clone())
    }
}

struct Session {
    dtls: Dtls,
    connected: bool,
    failed: bool,
    deadline: Option<std::time::Instant>,
    /// When we first sent since we last heard from the server.
    quiet_since: Option<std::time::Instant>,
    received: VecDeque<Vec<u8>>,
    outgoing: Vec<Vec<u8>>,
    buf: Vec<u8>,
}

/// A UDP socket that speaks DTLS with one server. See the module doc.
pub struct DtlsSocket {
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    config: Arc<Config>,
    session: Mutex<Session>,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why.to_string())
}

impl Session {
    fn new(config: &Arc<Config>) -> Session {
        let mut dtls = Dtls::new_12_psk(config.clone(), now());
        dtls.set_active(true);
        let mut s = Session {
            dtls,
            connected: false,
            failed: false,
            deadline: None,
            quiet_since: None,
            received: VecDeque::new(),
            outgoing: Vec::new(),
            buf: vec![0; 2048],
        };
        s.step(|d| d.handle_timeout(now()));
        s
    }

    /// Runs one input through dimpl and collects its output.
    fn step(&mut self, input: impl FnOnce(&mut Dtls) -> Result<(), dimpl::Error>) {
        // Every dimpl error is fatal to the session; the next send starts a new one.
        if input(&mut self.dtls).is_err() {
            self.failed = true;
        }
        loop {
            match self.dtls.poll_output(&mut self.buf) {
                Output::Packet(p) => self.outgoing.push(p.to_vec()),
                Output::BufferTooSmall { needed } => self.buf.resize(needed, 0),
                Output::Timeout(at) => {
                    self.deadline = Some(at);
                    break;
                }
                Output::Connected => self.connected = true,
                Output::ApplicationData(d) => self.received.push_back(d.to_vec()),
                Output::CloseNotify => self.failed = true,
                _ => {}
            }
        }
    }
}

impl DtlsSocket {
    /// Handshakes with `server` over `socket` with `psk`, waiting at most `timeout`.
    pub async fn connect(
        socket: Arc<UdpSocket>,
        server: SocketAddr,
        psk: &Psk,
        timeout: Duration,
    ) -> io::Result<DtlsSocket> {
        let config = Config::builder()
            .dtls12_cipher_suites(&[Dtls12CipherSuite::PSK_AES128_CCM_8])
            .with_psk_client(
                psk.identity.clone().into_bytes(),
                Arc::new(Key(psk.key.clone())),
            )
            .build()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let config = Arc::new(config);
        let s = DtlsSocket {
            session: Mutex::new(Session::new(&config)),
            socket,
            server,
            config,
        };
        let handshake = async {
            loop {
                s.flush();
                let done = {
                    let session = s.lock();
                    session.connected || session.failed
                };
                if done {
                    return;
                }
                s.wait_once().await;
            }
        };
        let finished = tokio::time::timeout(timeout, handshake).await.is_ok();
        let session = s.lock();
        if !finished || !session.connected {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "no DTLS session with {server}: wrong PSK identity or key, or no coaps:// there"
                ),
            ));
        }
        drop(session);
        Ok(s)
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends what dimpl produced, without waiting (a datagram the socket cannot take now is lost
    /// like any other, and retransmitted by DTLS or CoAP).
    fn flush(&self) {
        let outgoing = std::mem::take(&mut self.lock().outgoing);
        for p in outgoing {
            let _ = self.socket.try_send_to(&p, self.server);
        }
    }

    /// Waits for one datagram from the server or dimpl's next timer, and feeds it in.
    async fn wait_once(&self) {
        let deadline = self.lock().deadline;
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut raw = vec![0u8; RECV_BUFFER];
        tokio::select! {
            received = self.socket.recv_from(&mut raw) => {
                let Ok((n, from)) = received else { return };
                // Anyone else is not our server: not even read.
                if from != self.server {
                    return;
                }
                let mut session = self.lock();
                session.quiet_since = None;
                let datagram = raw.get(..n).unwrap_or_default();
                session.step(|d| d.handle_timeout(now()).and_then(|()| d.handle_packet(datagram)));
            }
            () = sleep => self.lock().step(|d| d.handle_timeout(now())),
        }
    }
}

impl Socket for DtlsSocket {
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        if peer != self.server {
            return Err(refused("a secured device sends to its server only"));
        }
        {
            let mut session = self.lock();
            let t = now();
            let silent = session
                .quiet_since
                .is_some_and(|since| t.saturating_duration_since(since) > SILENCE_LIMIT);
            if session.failed || silent {
                *session = Session::new(&self.config);
            }
            session.quiet_since.get_or_insert(t);
            // Before the handshake completes dimpl keeps the data and sends it after.
            session.step(|d| d.send_application_data(buf).map(|_| ()));
        }
        self.flush();
        Ok(())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let data = self.lock().received.pop_front();
            if let Some(data) = data {
                let n = data.len().min(buf.len());
                if let (Some(to), Some(from)) = (buf.get_mut(..n), data.get(..n)) {
                    to.copy_from_slice(from);
                }
                return Ok((n, self.server));
            }
            self.flush();
            self.wait_once().await;
        }
    }
}

//! The host driver (feature `std`): runs the sans-IO engine on a tokio UDP socket with tokio's
//! clock, so the same engine that runs on the board runs in the `lwm2m-client` binary, in tests
//! against the real server, and in the simulator under a paused (virtual) clock. [`fetch`] runs
//! the device's downloader alone (`lwm2m-client fetch`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use tokio::net::UdpSocket;

use lwm2m_core::object5::UpdateResult;

use crate::engine::{Engine, Event};
use crate::firmware::fetch::{Fetch, SinkError};
use crate::platform::Platform;
use crate::time::Instant;

/// The engine's clock: milliseconds since the driver started, from tokio's (pausable) clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        Instant(self.start.elapsed().as_millis() as u64)
    }

    fn at(&self, t: Instant) -> tokio::time::Instant {
        // Up to u64::MAX ms (half a billion years) past the start, which tokio's Instant holds.
        #[allow(clippy::arithmetic_side_effects)]
        let at = self.start + std::time::Duration::from_millis(t.0);
        at
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the device's datagrams go: a UDP socket, or the simulator's model of a mesh.
pub trait Socket {
    fn send_to(&self, buf: &[u8], peer: SocketAddr) -> impl Future<Output = io::Result<()>>;
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>>;
}

impl Socket for UdpSocket {
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        UdpSocket::send_to(self, buf, peer).await.map(|_| ())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::recv_from(self, buf).await
    }
}

/// Why [`run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The engine asked for a reboot (after Update); its last datagrams were sent.
    Reboot,
    /// The socket failed.
    Socket,
    /// `on_event` asked to stop (the simulator's power cut).
    Halted,
}

/// What woke a driver.
enum Input {
    /// `n` bytes from `from` in the receive buffer.
    Datagram(usize, SocketAddr),
    /// The sans-IO side's deadline passed.
    Timeout,
    SocketFailed,
}

/// Waits for a datagram (into `rx`) or for `deadline` (none: only a datagram).
async fn wait<S: Socket>(
    socket: &S,
    clock: &Clock,
    deadline: Option<Instant>,
    rx: &mut [u8],
) -> Input {
    let deadline = deadline.map(|t| clock.at(t));
    tokio::select! {
        received = socket.recv_from(rx) => match received {
            Ok((n, from)) => Input::Datagram(n, from),
            Err(_) => Input::SocketFailed,
        },
        _ = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending::<()>().await,
            }
        } => Input::Timeout,
    }
}

/// Sends everything the engine has queued.
async fn flush<P: Platform, S: Socket>(
    engine: &mut Engine<P>,
    socket: &S,
    clock: &Clock,
    buf: &mut [u8],
) -> bool {
    while let Some((peer, n)) = engine.poll_transmit(clock.now(), buf) {
        let Some(bytes) = buf.get(..n) else { continue };
        if socket.send_to(bytes, peer).await.is_err() {
            return false;
        }
    }
    true
}

/// Runs `engine` on `socket` until it asks for a reboot; `on_event` sees every event and may stop
/// the engine on the spot with `ControlFlow::Break` (nothing more is sent).
pub async fn run<P: Platform, S: Socket>(
    engine: &mut Engine<P>,
    socket: &S,
    clock: &Clock,
    mut on_event: impl FnMut(&Event) -> ControlFlow<()>,
) -> Exit {
    let mut tx = vec![0u8; 1500];
    let mut rx = vec![0u8; 2048];
    engine.handle_timeout(clock.now());
    loop {
        let mut reboot = false;
        while let Some(e) = engine.poll_event() {
            if on_event(&e).is_break() {
                return Exit::Halted;
            }
            reboot |= e == Event::Reboot;
        }
        if !flush(engine, socket, clock, &mut tx).await {
            return Exit::Socket;
        }
        if reboot {
            return Exit::Reboot;
        }
        match wait(socket, clock, engine.poll_timeout(), &mut rx).await {
            Input::Datagram(n, from) => {
                engine.handle_datagram(clock.now(), from, rx.get(..n).unwrap_or(&[]))
            }
            Input::Timeout => engine.handle_timeout(clock.now()),
            Input::SocketFailed => return Exit::Socket,
        }
    }
}

/// The peer address type the engine uses, re-exported for drivers.
pub type Peer = SocketAddr;

/// Runs a standalone [`Fetch`] on `socket` until it completes or gives up; every byte in order
/// goes to `sink(offset, bytes)`. Returns the size fetched, or the Object 5 result it failed with
/// (Socket errors count as a lost connection).
pub async fn fetch<S: Socket>(
    fetch: &mut Fetch,
    socket: &S,
    clock: &Clock,
    mut sink: impl FnMut(u32, &[u8]) -> Result<(), SinkError>,
) -> Result<u32, UpdateResult> {
    let mut tx = vec![0u8; 1500];
    let mut rx = vec![0u8; 2048];
    loop {
        while let Some((peer, n)) = fetch.poll_transmit(&mut tx) {
            let Some(bytes) = tx.get(..n) else { continue };
            if socket.send_to(bytes, peer).await.is_err() {
                return Err(UpdateResult::ConnectionLost);
            }
        }
        if let Some(outcome) = fetch.outcome() {
            return outcome;
        }
        match wait(socket, clock, fetch.poll_timeout(), &mut rx).await {
            Input::Datagram(n, from) => {
                let data = rx.get(..n).unwrap_or(&[]);
                fetch.handle_datagram(clock.now(), from, data, &mut sink)
            }
            Input::Timeout => fetch.handle_timeout(clock.now()),
            Input::SocketFailed => return Err(UpdateResult::ConnectionLost),
        }
    }
}

/// A [`Socket`] that protects the device's exchanges with its server with OSCORE: the no_std
/// [`Oscore`](crate::oscore::Oscore) filter on a host socket, as [`DtlsSocket`](crate::dtls)
/// secures one with DTLS. Requests from anyone but the server, or without OSCORE, are answered
/// 4.01 here and never reach the engine.
pub struct OscoreSocket<'s, S: Socket, St: crate::oscore::SeqStore> {
    inner: &'s S,
    state: std::cell::RefCell<(crate::oscore::Oscore, St)>,
    /// Refusals are logged to stderr under this name (the endpoint), if set.
    log: Option<String>,
}

impl<'s, S: Socket, St: crate::oscore::SeqStore> OscoreSocket<'s, S, St> {
    pub fn new(inner: &'s S, oscore: crate::oscore::Oscore, store: St) -> Self {
        OscoreSocket {
            inner,
            state: std::cell::RefCell::new((oscore, store)),
            log: None,
        }
    }

    /// Logs what the device refuses or drops of its server's to stderr, as `name: OSCORE: ...`.
    pub fn logging(mut self, name: &str) -> Self {
        self.log = Some(name.to_string());
        self
    }

    /// What the device last refused or dropped of its server's (see
    /// [`Oscore::take_refusal`](crate::oscore::Oscore::take_refusal)).
    pub fn take_refusal(&self) -> Option<crate::oscore::Refusal> {
        self.state.borrow_mut().0.take_refusal()
    }

    /// The sender reservation in force.
    pub fn reserved(&self) -> u64 {
        self.state.borrow().0.reserved()
    }
}

impl<S: Socket, St: crate::oscore::SeqStore> Socket for OscoreSocket<'_, S, St> {
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        let mut out = vec![0u8; buf.len().saturating_add(crate::oscore::OVERHEAD)];
        let n = {
            let mut st = self.state.borrow_mut();
            let (oscore, store) = &mut *st;
            if let Some(dst) = out.get_mut(..buf.len()) {
                dst.copy_from_slice(buf);
            }
            oscore.protect(peer, &mut out, buf.len(), store)
        };
        match n {
            Some(n) => self.inner.send_to(out.get(..n).unwrap_or(&[]), peer).await,
            // Never sent in plain text: as if lost (the engine retransmits or gives up).
            None => Ok(()),
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        use crate::oscore::Incoming;
        let mut rx = vec![0u8; buf.len().max(64)];
        let mut out = vec![0u8; buf.len().max(64)];
        loop {
            let (n, from) = self.inner.recv_from(&mut rx).await?;
            let data = rx.get(..n).unwrap_or(&[]);
            let action = {
                let mut st = self.state.borrow_mut();
                let (oscore, store) = &mut *st;
                let action = oscore.unprotect(from, data, &mut out, store);
                if let (Some(name), Some(r)) = (&self.log, oscore.take_refusal()) {
                    eprintln!("{name}: OSCORE: {}", describe_refusal(r, data));
                }
                action
            };
            let give = match action {
                Incoming::Pass => data,
                Incoming::Inner(m) => out.get(..m).unwrap_or(&[]),
                Incoming::Reply(m) => {
                    self.inner
                        .send_to(out.get(..m).unwrap_or(&[]), from)
                        .await?;
                    continue;
                }
                Incoming::Drop => continue,
            };
            let m = give.len().min(buf.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..m), give.get(..m)) {
                dst.copy_from_slice(src);
            }
            return Ok((m, from));
        }
    }
}

/// A refusal as a log line, with the server's diagnostic payload when it sent one.
fn describe_refusal(r: crate::oscore::Refusal, data: &[u8]) -> String {
    use crate::oscore::Refusal;
    let diagnostic = lwm2m_core::coap::Message::decode(data)
        .map(|m| String::from_utf8_lossy(m.payload).into_owned())
        .unwrap_or_default();
    match r {
        Refusal::Unprotected(code) => format!(
            "the server refused our protected request with {code} {diagnostic:?} (wrong keys or ids?)"
        ),
        Refusal::DecryptionFailed => "a response from the server did not verify".to_string(),
        Refusal::Request(code) => format!("refused a request with {code}"),
    }
}

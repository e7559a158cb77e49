//! A minimal scripted LwM2M server on a tokio UDP socket: it answers Register (2.01 with a
//! Location-Path) and registration Updates (2.04) by itself, acknowledges the device's
//! confirmable notifications (or resets them, for tokens the test names), and lets the test send
//! any request and read the exact response.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::coap::{self, Msg, opt};
use super::net::{Link, Transport};

/// A datagram from the device.
#[derive(Clone, Debug)]
pub struct Rx {
    pub from: SocketAddr,
    pub msg: Msg,
    pub raw: Vec<u8>,
    pub at: Instant,
}

#[derive(Default)]
pub struct Shared {
    /// Confirmable notifications with these tokens are answered with RST instead of ACK.
    pub rst_tokens: Mutex<HashSet<Vec<u8>>>,
    /// The notifications that were reset.
    pub reset: Mutex<Vec<Msg>>,
    /// Where each Register came from.
    pub registrations: Mutex<Vec<SocketAddr>>,
    pub updates: Mutex<usize>,
}

pub struct LwServer {
    sock: Transport,
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Rx>,
    /// Datagrams received but not consumed by a request (notifications, stray responses).
    pub backlog: Vec<Rx>,
    pub shared: Arc<Shared>,
    mid: u16,
    token: u32,
    task: JoinHandle<()>,
}

impl Drop for LwServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a request waits for its response (virtual time under a paused clock).
const RESPONSE_LIMIT: Duration = Duration::from_secs(20);

impl LwServer {
    pub async fn start(link: &Link) -> LwServer {
        let sock = link.bind().await;
        let addr = sock.local_addr();
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(sock.clone(), shared.clone(), tx));
        LwServer {
            sock,
            addr,
            rx,
            backlog: Vec::new(),
            shared,
            mid: 0x7000,
            token: 0xa000_0000,
            task,
        }
    }

    /// Waits until the device has registered `n` times in all; returns where the last Register
    /// came from.
    pub async fn registered(&self, n: usize, limit: Duration) -> SocketAddr {
        let deadline = Instant::now() + limit;
        loop {
            {
                let r = self.shared.registrations.lock().unwrap();
                if r.len() >= n {
                    return *r.last().unwrap();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the device did not register (#{n}) within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A fresh confirmable request.
    pub fn con(&mut self, code: u8, path: &str) -> Msg {
        self.mid = self.mid.wrapping_add(1);
        self.token = self.token.wrapping_add(1);
        Msg::new(coap::CON, code, self.mid, &self.token.to_be_bytes()).with_path(path)
    }

    pub async fn send_raw(&self, to: SocketAddr, bytes: &[u8]) {
        self.sock.send_to(bytes, to).await;
    }

    /// The next datagram from the device that `pred` accepts, looking at the backlog first;
    /// others go to the backlog.
    pub async fn recv_where(&mut self, limit: Duration, pred: impl Fn(&Rx) -> bool) -> Option<Rx> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Some(self.backlog.remove(i));
        }
        let deadline = Instant::now() + limit;
        loop {
            let rx = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()??;
            if pred(&rx) {
                return Some(rx);
            }
            self.backlog.push(rx);
        }
    }

    /// Sends `req` and returns the response (piggy-backed, or separate after an empty ACK), or
    /// a RST that rejects it. Panics if none comes.
    pub async fn request(&mut self, to: SocketAddr, req: &Msg) -> Msg {
        self.send_raw(to, &req.encode()).await;
        self.response_to(req, RESPONSE_LIMIT)
            .await
            .unwrap_or_else(|| panic!("no response to {req:?}"))
    }

    /// Waits for the response to `req` (already sent).
    pub async fn response_to(&mut self, req: &Msg, limit: Duration) -> Option<Msg> {
        let deadline = Instant::now() + limit;
        let mut acked = false;
        loop {
            let (mid, token) = (req.mid, req.token.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            let rx = self
                .recv_where(left, |rx| {
                    let m = &rx.msg;
                    (m.mid == mid && (m.ty == coap::ACK || m.ty == coap::RST))
                        || (acked && m.is_response() && m.ty != coap::ACK && m.token == token)
                })
                .await?;
            let m = rx.msg;
            if m.ty == coap::ACK && m.code == coap::EMPTY {
                // Separate response to follow (RFC 7252 §5.2.2).
                acked = true;
                continue;
            }
            return Some(m);
        }
    }

    pub async fn get(&mut self, to: SocketAddr, path: &str) -> Msg {
        let req = self.con(coap::GET, path);
        self.request(to, &req).await
    }

    /// GET of a single resource as text; asserts 2.05.
    pub async fn read(&mut self, to: SocketAddr, path: &str) -> String {
        let r = self.get(to, path).await;
        assert_eq!(coap::code_str(r.code), "2.05", "GET /{path}: {r:?}");
        r.text()
    }

    /// (State, Update Result) as the device reports them on the wire.
    pub async fn object5(&mut self, to: SocketAddr) -> (u8, u8) {
        let s = self.read(to, "5/0/3").await;
        let r = self.read(to, "5/0/5").await;
        (s.parse().unwrap(), r.parse().unwrap())
    }

    /// PUT of a text value; returns the response.
    pub async fn write_text(&mut self, to: SocketAddr, path: &str, text: &str) -> Msg {
        let req = self
            .con(coap::PUT, path)
            .with_uint(opt::CONTENT_FORMAT, 0)
            .with_payload(text.as_bytes());
        self.request(to, &req).await
    }

    /// POST (Execute) without payload.
    pub async fn execute(&mut self, to: SocketAddr, path: &str) -> Msg {
        let req = self.con(coap::POST, path);
        self.request(to, &req).await
    }

    /// Polls GET /5/0/3 every `every` until it reads `want`; false after `limit`.
    pub async fn poll_state(
        &mut self,
        to: SocketAddr,
        want: u8,
        every: Duration,
        limit: Duration,
    ) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.read(to, "5/0/3").await == want.to_string() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The next notification (a non-ACK response with an Observe option) with `token`.
    pub async fn notification(&mut self, token: &[u8], limit: Duration) -> Option<Rx> {
        let token = token.to_vec();
        self.recv_where(limit, |rx| {
            rx.msg.is_response()
                && rx.msg.ty != coap::ACK
                && rx.msg.token == token
                && rx.msg.opt(opt::OBSERVE).is_some()
        })
        .await
    }

    /// Every datagram received so far that nothing consumed (drains the channel into the backlog).
    pub fn pending(&mut self) -> &[Rx] {
        while let Ok(rx) = self.rx.try_recv() {
            self.backlog.push(rx);
        }
        &self.backlog
    }
}

async fn serve(sock: Transport, shared: Arc<Shared>, tx: mpsc::UnboundedSender<Rx>) {
    loop {
        let Some((raw, from)) = sock.recv_from().await else {
            return;
        };
        let Ok(msg) = Msg::decode(&raw) else {
            continue;
        };
        if msg.is_request() {
            let path = msg.path();
            let ty = if msg.ty == coap::CON {
                coap::ACK
            } else {
                coap::NON
            };
            let reply = if msg.code == coap::POST && path == "rd" {
                shared.registrations.lock().unwrap().push(from);
                Msg::new(ty, coap::CREATED, msg.mid, &msg.token)
                    .with_opt(opt::LOCATION_PATH, b"rd")
                    .with_opt(opt::LOCATION_PATH, b"dev0")
            } else if msg.code == coap::POST && path == "rd/dev0" {
                *shared.updates.lock().unwrap() += 1;
                Msg::new(ty, coap::CHANGED, msg.mid, &msg.token)
            } else {
                Msg::new(ty, coap::NOT_FOUND, msg.mid, &msg.token)
            };
            sock.send_to(&reply.encode(), from).await;
            continue;
        }
        if msg.ty == coap::CON {
            // A separate response or a notification: acknowledge it, or reject it on request.
            let reset = shared.rst_tokens.lock().unwrap().contains(&msg.token);
            let ty = if reset { coap::RST } else { coap::ACK };
            sock.send_to(&Msg::empty(ty, msg.mid).encode(), from).await;
            if reset {
                shared.reset.lock().unwrap().push(msg.clone());
            }
        }
        let _ = tx.send(Rx {
            from,
            msg,
            raw,
            at: Instant::now(),
        });
    }
}

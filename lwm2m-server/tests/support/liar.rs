//! An impostor: registers under an endpoint name (its own, or one a real device already has)
//! and says whatever makes an update job look done, without fetching a byte. A Package URI puts
//! it straight into Downloaded; Execute Update into Idle with Update Result 1 and the release's
//! version as PkgVersion and Firmware Version. It is what an attacker on the network can do to a
//! NoSec server, and the server must never count its word as an update.
//!
//! It answers reads in plain text and refuses Observe silently (no Observe option: the server
//! polls), like a minimal client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

/// What the impostor claims and what it was told.
#[derive(Debug, Default)]
pub struct Claims {
    state: i64,
    result: i64,
    /// The version it claims once "updated".
    version: String,
    /// Package URIs the server wrote.
    pub uris: Vec<String>,
    /// Its registration's location (`/rd/<id>`), once registered.
    pub location: Option<String>,
}

/// A running impostor; dropping it stops it.
pub struct Liar {
    claims: Arc<Mutex<Claims>>,
    pub addr: SocketAddr,
    task: AbortHandle,
}

impl Liar {
    /// Binds `ip` (e.g. `127.0.0.2`, another host as the server sees it), registers as
    /// `endpoint` with `server`, and claims `version` after any update.
    pub async fn start(ip: &str, endpoint: &str, server: SocketAddr, version: &str) -> Liar {
        let socket = UdpSocket::bind((ip, 0)).await.expect("bind the impostor");
        let addr = socket.local_addr().expect("bound");
        let claims = Arc::new(Mutex::new(Claims {
            version: version.into(),
            ..Claims::default()
        }));
        let task = tokio::spawn(run(socket, server, endpoint.to_owned(), claims.clone()));
        Liar {
            claims,
            addr,
            task: task.abort_handle(),
        }
    }

    pub fn claims(&self) -> MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(socket: UdpSocket, server: SocketAddr, endpoint: String, claims: Arc<Mutex<Claims>>) {
    let lock = || claims.lock().unwrap_or_else(PoisonError::into_inner);
    let mut register = Packet::new();
    register.header.set_type(MessageType::Confirmable);
    register.header.code = MessageClass::Request(RequestType::Post);
    register.header.message_id = 0x4c1a;
    register.set_token(vec![0x11, 0x22]);
    register.add_option(CoapOption::UriPath, b"rd".to_vec());
    for q in [format!("ep={endpoint}"), "lt=3600".into(), "b=U".into()] {
        register.add_option(CoapOption::UriQuery, q.into_bytes());
    }
    register.set_content_format(coap_lite::ContentFormat::ApplicationLinkFormat);
    register.payload = b"</1/0>,</3/0>,</5/0>".to_vec();
    let register = register.to_bytes().expect("encodes");
    let mut buf = [0u8; 2048];
    loop {
        if lock().location.is_none() {
            let _ = socket.send_to(&register, server).await;
        }
        let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await
        else {
            continue;
        };
        let Ok(p) = Packet::from_bytes(&buf[..n]) else {
            continue;
        };
        match p.header.code {
            MessageClass::Response(ResponseType::Created) => {
                lock().location = Some(format!("/{}", joined(&p, CoapOption::LocationPath)));
            }
            MessageClass::Request(method) => {
                let answer = answer(&mut lock(), method, &p);
                if let Ok(bytes) = answer.to_bytes() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
            _ => {}
        }
    }
}

/// A path option's segments joined with `/`: `5/0/3`.
fn joined(p: &Packet, option: CoapOption) -> String {
    p.get_option(option)
        .map(|l| {
            l.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}

/// The piggybacked answer to one request, and what it changes in the claims.
fn answer(c: &mut Claims, method: RequestType, p: &Packet) -> Packet {
    let path = joined(p, CoapOption::UriPath);
    let text = |v: String| (ResponseType::Content, v);
    let (code, body) = match (method, path.as_str()) {
        (RequestType::Get, "5/0/3") => text(c.state.to_string()),
        (RequestType::Get, "5/0/5") => text(c.result.to_string()),
        (RequestType::Get, "5/0/9") => text("0".into()),
        (RequestType::Get, "5/0/7" | "3/0/3") if c.result == 1 => text(c.version.clone()),
        (RequestType::Get, "5/0/7") => text(String::new()),
        (RequestType::Get, "3/0/3") => text("1.0.0".into()),
        (RequestType::Put | RequestType::Post, "5/0/1") => {
            let uri = String::from_utf8_lossy(&p.payload).into_owned();
            // "Downloaded" at once, whatever the URI: nothing is fetched.
            (c.state, c.result) = if uri.is_empty() { (0, 0) } else { (2, 0) };
            c.uris.push(uri);
            (ResponseType::Changed, String::new())
        }
        (RequestType::Post, "5/0/2") if c.state == 2 => {
            (c.state, c.result) = (0, 1);
            (ResponseType::Changed, String::new())
        }
        (RequestType::Post, "5/0/2") => (ResponseType::MethodNotAllowed, String::new()),
        _ => (ResponseType::NotFound, String::new()),
    };
    let mut r = Packet::new();
    r.header
        .set_type(if p.header.get_type() == MessageType::Confirmable {
            MessageType::Acknowledgement
        } else {
            MessageType::NonConfirmable
        });
    r.header.message_id = p.header.message_id;
    r.header.code = MessageClass::Response(code);
    r.set_token(p.get_token().to_vec());
    if code == ResponseType::Content {
        r.set_content_format(coap_lite::ContentFormat::TextPlain);
        r.payload = body.into_bytes();
    }
    r
}

//! A bare CoAP peer over real UDP: builds a request, sends it (retransmitting as a client does)
//! and waits for the answer. For the tests that speak the protocol by hand.

use std::net::SocketAddr;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use tokio::net::UdpSocket;

/// A bare CoAP peer: sends one datagram, waits for one.
pub struct Peer {
    pub socket: UdpSocket,
    server: SocketAddr,
    mid: u16,
}

impl Peer {
    pub async fn new(server: SocketAddr) -> Peer {
        Peer::bind("127.0.0.1", server).await
    }

    /// A peer on another loopback address (`127.0.0.2`): another host, as the server sees it.
    pub async fn bind(ip: &str, server: SocketAddr) -> Peer {
        Peer {
            socket: UdpSocket::bind((ip, 0)).await.unwrap(),
            server,
            mid: 100,
        }
    }

    pub fn request(&mut self, method: RequestType, path: &str, query: &[&str]) -> Packet {
        self.mid += 1;
        confirmable(method, path, query, self.mid, vec![0xa0, self.mid as u8])
    }

    /// Sends a request and waits for its response, retransmitting the same message a bounded
    /// number of times as a CoAP client does (a busy socket may drop a datagram).
    pub async fn exchange(&self, p: &Packet) -> Packet {
        let bytes = p.to_bytes().unwrap();
        for _ in 0..6 {
            self.send_raw(&bytes).await;
            let mut buf = [0u8; 2048];
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(500), self.socket.recv_from(&mut buf))
                    .await
            {
                return Packet::from_bytes(&buf[..n]).unwrap();
            }
        }
        panic!("no response after 6 transmissions");
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).await.unwrap();
    }

    pub async fn recv(&self) -> Option<Packet> {
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Packet::from_bytes(&buf[..n]).ok()
    }
}

/// A confirmable request: `path` split into Uri-Path options, each of `query` a Uri-Query.
pub fn confirmable(
    method: RequestType,
    path: &str,
    query: &[&str],
    message_id: u16,
    token: Vec<u8>,
) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = message_id;
    p.set_token(token);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p
}

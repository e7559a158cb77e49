//! The tokio driver over loopback UDP against scripted peers: observations, overload (5.03),
//! dropped requests (5.00), Block1 push with 4.13 and late negotiation, Block2 limits, IPv6.

use std::net::SocketAddr;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_core::block::BlockValue;
use lwm2m_server::coap::block::{block1, serve_block2, set_block1, set_uint_option};
use lwm2m_server::coap::driver::bind_udp;
use lwm2m_server::coap::{CoapHandle, CoapServer, EndpointConfig, RequestError, new_response};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

fn get(path: &str) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
    p
}

async fn server() -> (
    CoapHandle,
    tokio::sync::mpsc::Receiver<lwm2m_server::coap::IncomingRequest>,
) {
    CoapServer::spawn(
        bind_udp("127.0.0.1:0").await.unwrap(),
        EndpointConfig::default(),
        1,
    )
}

/// A scripted peer on its own socket.
struct Peer {
    socket: UdpSocket,
}

impl Peer {
    async fn new() -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    async fn recv(&self) -> (Packet, SocketAddr) {
        let mut buf = [0u8; 2048];
        let (n, from) = timeout(WAIT, self.socket.recv_from(&mut buf))
            .await
            .expect("peer got nothing")
            .unwrap();
        (Packet::from_bytes(&buf[..n]).unwrap(), from)
    }

    async fn send(&self, packet: &Packet, to: SocketAddr) {
        self.socket
            .send_to(&packet.to_bytes().unwrap(), to)
            .await
            .unwrap();
    }
}

fn message(ty: MessageType, code: ResponseType, mid: u16, token: &[u8]) -> Packet {
    let mut p = new_response(code);
    p.header.set_type(ty);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p
}

fn code(p: &Packet) -> MessageClass {
    p.header.code
}

#[tokio::test]
async fn observation_delivers_notifications_and_dropping_it_resets_the_next_one() {
    let (handle, _requests) = server().await;
    let device = Peer::new().await;
    let mut reg = get("obs");
    reg.set_observe_value(0);
    let h = handle.clone();
    let addr = device.addr();
    let observing = tokio::spawn(async move { h.observe(addr, reg).await });

    let (req, server_addr) = device.recv().await;
    assert_eq!(req.get_observe_value(), Some(Ok(0)));
    let token = req.get_token().to_vec();
    let mut ack = message(
        MessageType::Acknowledgement,
        ResponseType::Content,
        req.header.message_id,
        &token,
    );
    ack.set_observe_value(1);
    ack.payload = b"first".to_vec();
    device.send(&ack, server_addr).await;
    let (first, mut observation) = observing.await.unwrap().unwrap();
    assert_eq!(first.payload, b"first");

    let mut con = message(MessageType::Confirmable, ResponseType::Content, 100, &token);
    con.set_observe_value(2);
    con.payload = b"second".to_vec();
    device.send(&con, server_addr).await;
    let (reply, _) = device.recv().await;
    assert_eq!(
        (reply.header.get_type(), reply.header.message_id),
        (MessageType::Acknowledgement, 100)
    );
    assert_eq!(
        timeout(WAIT, observation.next())
            .await
            .unwrap()
            .unwrap()
            .payload,
        b"second"
    );

    drop(observation);
    tokio::time::sleep(Duration::from_millis(200)).await; // let the driver process the cancel
    con.header.message_id = 101;
    con.set_observe_value(3);
    device.send(&con, server_addr).await;
    let (reply, _) = device.recv().await;
    assert_eq!(
        (reply.header.get_type(), reply.header.message_id),
        (MessageType::Reset, 101)
    );
}

#[tokio::test]
async fn a_full_request_queue_answers_5_03_with_max_age_instead_of_blocking() {
    let (handle, _requests) = CoapServer::spawn_with_queue(
        bind_udp("127.0.0.1:0").await.unwrap(),
        EndpointConfig::default(),
        1,
        1,
    );
    let client = Peer::new().await;
    let mut first = get("a");
    first.header.message_id = 1;
    let mut second = get("b");
    second.header.message_id = 2;
    client.send(&first, handle.local_addr()).await; // fills the queue (nobody reads it)
    client.send(&second, handle.local_addr()).await;
    let (reply, _) = client.recv().await;
    assert_eq!(reply.header.message_id, 2, "the second is answered at once");
    assert_eq!(reply.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(
        code(&reply),
        MessageClass::Response(ResponseType::ServiceUnavailable)
    );
    assert_eq!(reply.get_first_option(CoapOption::MaxAge), Some(&vec![5]));
}

#[tokio::test]
async fn a_dropped_incoming_request_is_answered_5_00_and_respond_is_piggybacked() {
    let (handle, mut requests) = server().await;
    let client = Peer::new().await;
    let mut req = get("a");
    req.header.message_id = 7;
    req.set_token(vec![1, 2, 3]);
    client.send(&req, handle.local_addr()).await;
    let incoming = timeout(WAIT, requests.recv()).await.unwrap().unwrap();
    assert_eq!(incoming.peer, client.addr());
    drop(incoming);
    let (reply, _) = client.recv().await;
    assert_eq!(
        (reply.header.message_id, reply.get_token()),
        (7, &[1u8, 2, 3][..])
    );
    assert_eq!(
        code(&reply),
        MessageClass::Response(ResponseType::InternalServerError)
    );

    req.header.message_id = 8;
    client.send(&req, handle.local_addr()).await;
    let incoming = timeout(WAIT, requests.recv()).await.unwrap().unwrap();
    let mut resp = new_response(ResponseType::Content);
    resp.payload = b"hello".to_vec();
    incoming.respond(resp);
    let (reply, _) = client.recv().await;
    assert_eq!(
        (reply.header.get_type(), reply.header.message_id),
        (MessageType::Acknowledgement, 8)
    );
    assert_eq!(reply.payload, b"hello");
}

#[tokio::test]
async fn push_block1_restarts_smaller_on_4_13_and_follows_late_negotiation() {
    let (handle, _requests) = server().await;
    let device = Peer::new().await;
    let body = testkit::image(600, 1);
    let h = handle.clone();
    let addr = device.addr();
    let to_send = body.clone();
    let pushing = tokio::spawn(async move {
        let mut put = get("5/0/0");
        put.header.code = MessageClass::Request(RequestType::Put);
        let mut progress = Vec::new();
        let result = h
            .push_block1(addr, put, &to_send[..], 1024, |s, t| progress.push((s, t)))
            .await;
        (result, progress)
    });

    let mut seen = Vec::new();
    let mut received = Vec::new();
    for _ in 0..20 {
        let (req, from) = device.recv().await;
        let b = block1(&req).unwrap().unwrap();
        seen.push((b.num(), b.szx()));
        let mid = req.header.message_id;
        let token = req.get_token().to_vec();
        let reply = if b.szx() > 4 {
            // Too big for this device: 4.13 with the largest size it takes.
            assert_eq!(
                req.get_first_option(CoapOption::Size1),
                Some(&vec![0x02, 0x58]),
                "Size1 = 600"
            );
            let mut r = message(
                MessageType::Acknowledgement,
                ResponseType::RequestEntityTooLarge,
                mid,
                &token,
            );
            set_uint_option(&mut r, CoapOption::Size1, 256);
            r
        } else {
            assert_eq!(b.offset(), received.len() as u64);
            received.extend_from_slice(&req.payload);
            let code = if b.more() {
                ResponseType::Continue
            } else {
                ResponseType::Changed
            };
            let mut r = message(MessageType::Acknowledgement, code, mid, &token);
            // After the first 256-byte block, ask for 64-byte blocks (late negotiation).
            set_block1(
                &mut r,
                BlockValue::new(b.num(), b.more(), b.szx().min(2)).unwrap(),
            );
            r
        };
        device.send(&reply, from).await;
        if !b.more() && b.szx() <= 4 {
            break;
        }
    }
    let (result, progress) = timeout(WAIT, pushing).await.unwrap().unwrap();
    let last = result.unwrap();
    assert_eq!(code(&last), MessageClass::Response(ResponseType::Changed));
    assert_eq!(received, body);
    // 1024 refused; 256 at block 0; then 64-byte blocks from offset 256 = block 4 .. block 9.
    assert_eq!(
        seen,
        vec![
            (0, 6),
            (0, 4),
            (4, 2),
            (5, 2),
            (6, 2),
            (7, 2),
            (8, 2),
            (9, 2)
        ]
    );
    assert_eq!(progress.first(), Some(&(0, 600)), "restart reported");
    assert_eq!(progress.last(), Some(&(600, 600)));
}

#[tokio::test]
async fn push_block1_returns_an_error_response_from_the_device() {
    let (handle, _requests) = server().await;
    let device = Peer::new().await;
    let h = handle.clone();
    let addr = device.addr();
    let pushing = tokio::spawn(async move {
        let body = vec![0u8; 300];
        h.push_block1(addr, get("5/0/0"), &body[..], 64, |_, _| {})
            .await
    });
    let (req, from) = device.recv().await;
    let reply = message(
        MessageType::Acknowledgement,
        ResponseType::Forbidden,
        req.header.message_id,
        req.get_token(),
    );
    device.send(&reply, from).await;
    let last = timeout(WAIT, pushing).await.unwrap().unwrap().unwrap();
    assert_eq!(code(&last), MessageClass::Response(ResponseType::Forbidden));
}

/// Serves `len` bytes of `i % 256` at /big with Block2 (max block size 2^(max_szx+4)).
async fn big_resource_server(len: usize, max_szx: u8) -> CoapHandle {
    let (handle, mut requests) = server().await;
    tokio::spawn(async move {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        while let Some(req) = requests.recv().await {
            let resp = match serve_block2(&req.packet, len as u64, max_szx) {
                Ok(reply) => {
                    let mut r = new_response(ResponseType::Content);
                    reply.apply(&mut r);
                    r.add_option(CoapOption::ETag, vec![0xab]);
                    r.payload = data[reply.range.start as usize..reply.range.end as usize].to_vec();
                    r
                }
                Err(e) => new_response(e.response_code()),
            };
            req.respond(resp);
        }
    });
    handle
}

#[tokio::test]
async fn fetch_block2_reassembles_and_enforces_the_limit() {
    let server = big_resource_server(5000, 4).await;
    let (client, _r) = CoapServer::spawn(
        bind_udp("127.0.0.1:0").await.unwrap(),
        EndpointConfig::default(),
        2,
    );
    let (last, body) = timeout(
        WAIT,
        client.fetch_block2(server.local_addr(), get("big"), 10_000),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(body, (0..5000).map(|i| i as u8).collect::<Vec<_>>());
    assert_eq!(
        lwm2m_server::coap::block::block2(&last)
            .unwrap()
            .map(|b| (b.num(), b.more())),
        Some((19, false))
    );
    let err = timeout(
        WAIT,
        client.fetch_block2(server.local_addr(), get("big"), 4999),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(err, RequestError::BodyTooLarge { limit: 4999 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn ipv6_loopback_works_when_available() {
    let Ok(socket) = bind_udp("[::1]:0").await else {
        eprintln!("NOTICE: skipping: no IPv6 loopback here");
        return;
    };
    let (server, mut requests) = CoapServer::spawn(socket, EndpointConfig::default(), 3);
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            req.respond(new_response(ResponseType::Content));
        }
    });
    let (client, _r) = CoapServer::spawn(
        bind_udp("[::1]:0").await.unwrap(),
        EndpointConfig::default(),
        4,
    );
    assert!(server.local_addr().is_ipv6());
    let resp = timeout(WAIT, client.request(server.local_addr(), get("x")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code(&resp), MessageClass::Response(ResponseType::Content));
    assert!(bind_udp("not an address").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_datagrams_does_not_starve_a_good_request() {
    let (handle, mut requests) = server().await;
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            req.respond(new_response(ResponseType::Content));
        }
    });
    let target = handle.local_addr();
    let flooder = Peer::new().await;
    let flood = tokio::spawn(async move {
        for i in 0..20_000u16 {
            let [hi, lo] = i.to_be_bytes();
            // NON with TKL 9: malformed, dropped without a reply.
            let _ = flooder
                .socket
                .send_to(&[0x59, 0x01, hi, lo, 0xff], target)
                .await;
        }
    });
    let client = Peer::new().await;
    let mut req = get("a");
    req.header.message_id = 1;
    // Like any CoAP client, retransmit (a full socket buffer may drop a datagram), a bounded
    // number of times; the request must be answered while the flood goes on.
    let mut answered = None;
    for _ in 0..8 {
        client.send(&req, target).await;
        let mut buf = [0u8; 2048];
        if let Ok(Ok((n, _))) = timeout(
            Duration::from_millis(500),
            client.socket.recv_from(&mut buf),
        )
        .await
        {
            answered = Packet::from_bytes(&buf[..n]).ok();
            break;
        }
    }
    let reply = answered.expect("the request was answered during the flood");
    assert_eq!(code(&reply), MessageClass::Response(ResponseType::Content));
    flood.await.unwrap();
}

/// An in-memory datagram network, as the simulator will plug in through `Transport`.
mod memnet {
    use std::collections::HashMap;
    use std::io;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use lwm2m_server::coap::Transport;
    use tokio::sync::mpsc;

    type Datagram = (Vec<u8>, SocketAddr);

    #[derive(Clone, Default)]
    pub struct Net(Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Datagram>>>>);

    pub struct Port {
        addr: SocketAddr,
        net: Net,
        rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Datagram>>,
    }

    impl Net {
        pub fn port(&self, addr: SocketAddr) -> Port {
            let (tx, rx) = mpsc::unbounded_channel();
            self.0.lock().unwrap().insert(addr, tx);
            Port {
                addr,
                net: self.clone(),
                rx: tokio::sync::Mutex::new(rx),
            }
        }
    }

    impl Transport for Port {
        async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
            // Unknown destinations swallow the datagram, like a lossy network.
            if let Some(tx) = self.net.0.lock().unwrap().get(&peer) {
                let _ = tx.send((buf.to_vec(), self.addr));
            }
            Ok(())
        }

        async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
            let mut rx = self.rx.lock().await;
            let (bytes, from) = rx
                .recv()
                .await
                .ok_or_else(|| io::Error::other("network gone"))?;
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            Ok((n, from))
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(self.addr)
        }
    }
}

#[tokio::test(start_paused = true)]
async fn in_virtual_time_over_an_in_memory_transport_an_unanswered_request_times_out_after_31_initial_timeouts()
 {
    let net = memnet::Net::default();
    let a = SocketAddr::from(([10, 0, 0, 1], 5683));
    let b = SocketAddr::from(([10, 0, 0, 2], 5683));
    let (server, mut requests) = CoapServer::spawn(net.port(a), EndpointConfig::default(), 1);
    tokio::spawn(async move {
        while let Some(req) = requests.recv().await {
            req.respond(new_response(ResponseType::Content));
        }
    });
    let (client, _r) = CoapServer::spawn(net.port(b), EndpointConfig::default(), 2);
    let resp = client.request(server.local_addr(), get("x")).await.unwrap();
    assert_eq!(code(&resp), MessageClass::Response(ResponseType::Content));

    // Nobody listens at 10.0.0.3: MAX_RETRANSMIT exhausted after 31 * [2 s, 3 s] of virtual time.
    let started = tokio::time::Instant::now();
    let err = client
        .request(SocketAddr::from(([10, 0, 0, 3], 5683)), get("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, RequestError::Timeout), "{err:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(62)
            && elapsed <= Duration::from_secs(93) + Duration::from_millis(10),
        "{elapsed:?}"
    );
}

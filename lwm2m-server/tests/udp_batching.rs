//! The batched UDP path over real sockets on loopback: `recvmmsg` takes a burst of queued
//! datagrams in batches, `sendmmsg` sends head and payload gathered into one datagram each, and the
//! whole server answers a burst of block requests from many peers byte-exact, retransmissions
//! (duplicates answered from the dedup cache) included. Counts and contents only, no timing.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use lwm2m_server::coap::Datagram;
use lwm2m_server::coap::Transport;
use lwm2m_server::coap::driver::{RECV_BATCH, RecvBatch};
use testkit::{TestServer, image};
use tokio::net::UdpSocket;

async fn pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    (a, b)
}

#[tokio::test]
async fn a_burst_is_received_in_batches_in_order_and_byte_exact() {
    let (server, client) = pair().await;
    let to = server.local_addr().unwrap();
    let n = RECV_BATCH * 2 + 5;
    for i in 0..n {
        let d: Vec<u8> = (0..(i % 50 + 1)).map(|k| (i + k) as u8).collect();
        client.send_to(&d, to).await.unwrap();
    }
    let mut batch = RecvBatch::new(RECV_BATCH);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut batches = 0;
    while got.len() < n {
        tokio::time::timeout(Duration::from_secs(5), server.recv_batch(&mut batch))
            .await
            .expect("datagrams were sent")
            .unwrap();
        assert!(!batch.is_empty() && batch.len() <= RECV_BATCH);
        for (peer, bytes) in batch.iter() {
            assert_eq!(peer, client.local_addr().unwrap());
            got.push(bytes.to_vec());
        }
        batches += 1;
    }
    assert_eq!(got.len(), n);
    for (i, d) in got.iter().enumerate() {
        let want: Vec<u8> = (0..(i % 50 + 1)).map(|k| (i + k) as u8).collect();
        assert_eq!(d, &want, "datagram {i}");
    }
    // The whole burst was queued before the first receive: fewer receives than datagrams.
    assert!(batches < n, "{batches} receives for {n} datagrams");
}

#[tokio::test]
async fn send_batch_gathers_head_and_body_into_one_datagram_per_peer() {
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut peers = Vec::new();
    for _ in 0..5 {
        peers.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    let image = Bytes::from(image(4096, 3));
    // More datagrams than one sendmmsg takes, spread over the peers.
    let mut out: Vec<(SocketAddr, Datagram)> = Vec::new();
    for i in 0..150usize {
        let peer = peers[i % peers.len()].local_addr().unwrap();
        let at = (i * 17) % 3000;
        out.push((
            peer,
            Datagram {
                head: Bytes::from(vec![0x60, 0x45, (i >> 8) as u8, i as u8, 0xff]),
                body: image.slice(at..at + 1024),
            },
        ));
    }
    sender.send_batch(&out).await;
    let mut buf = vec![0u8; 2048];
    let mut seen = HashSet::new();
    for (p, sock) in peers.iter().enumerate() {
        for _ in 0..(150 / peers.len()) {
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
                .await
                .expect("every datagram arrives on loopback")
                .unwrap();
            assert_eq!(from, sender.local_addr().unwrap());
            let i = usize::from(buf[2]) << 8 | usize::from(buf[3]);
            assert_eq!(i % peers.len(), p, "datagram {i} went to the wrong peer");
            assert_eq!(&buf[..n], &out[i].1.to_vec()[..], "datagram {i}");
            assert!(seen.insert(i));
        }
    }
    assert_eq!(seen.len(), 150);
}

fn get(path: &[String], block: u32, mid: u16) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    for s in path {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    let v = (block << 4) | 6; // 1024-byte blocks
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    p.add_option(CoapOption::Block2, bytes[first..].to_vec());
    p.to_bytes().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_block_requests_from_many_peers_is_answered_byte_exact_duplicates_included() {
    let s = TestServer::start(|_| {}).await;
    let img = image(100 * 1024 + 300, 9);
    let (rel, _) = s.server.repo.add_plain(&img, "1.0.0", 0).unwrap();
    let path: Vec<String> = vec!["fw".into(), rel.id.clone(), "image".into()];
    let server = s.coap_addr();
    let blocks = img.len().div_ceil(1024) as u32;
    let mut clients = Vec::new();
    for _ in 0..80 {
        clients.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    // Every client asks for one block, all at once (more than one receive batch), then asks
    // again with the same message id: the duplicate is answered from the dedup cache.
    let mut first: HashMap<usize, Vec<u8>> = HashMap::new();
    for round in 0..2 {
        for (c, sock) in clients.iter().enumerate() {
            let block = (c as u32 * 7 + 3) % blocks;
            sock.send_to(&get(&path, block, 1000 + c as u16), server)
                .await
                .unwrap();
        }
        let mut answers: HashMap<usize, Vec<u8>> = HashMap::new();
        for (c, sock) in clients.iter().enumerate() {
            let mut buf = vec![0u8; 2048];
            let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("round {round}: client {c} got no answer"))
                .unwrap();
            let p = Packet::from_bytes(&buf[..n]).unwrap();
            assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
            assert_eq!(p.header.message_id, 1000 + c as u16);
            assert_eq!(p.get_token(), &(1000 + c as u16).to_be_bytes()[..]);
            assert_eq!(u8::from(p.header.code), 0x45, "client {c}: 2.05");
            let block = ((c as u32 * 7 + 3) % blocks) as usize;
            let want = &img[block * 1024..((block + 1) * 1024).min(img.len())];
            assert_eq!(p.payload, want, "round {round}: client {c}, block {block}");
            answers.insert(c, buf[..n].to_vec());
        }
        assert_eq!(answers.len(), clients.len());
        if round == 0 {
            first = answers;
        } else {
            assert_eq!(answers, first, "a duplicate gets the same bytes");
        }
    }
}

#[tokio::test]
async fn ipv4_and_ipv6_sockets_on_one_thread_each_see_their_senders_whole() {
    let Ok(v6) = UdpSocket::bind("[::1]:0").await else {
        return; // no IPv6 loopback here
    };
    let v4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let from4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let from6 = UdpSocket::bind("[::1]:0").await.unwrap();
    let mut b4 = RecvBatch::new(RECV_BATCH);
    let mut b6 = RecvBatch::new(RECV_BATCH);
    // Alternating, so the receive headers of one family are reused after the other's.
    for round in 0..3u8 {
        from4
            .send_to(&[4, round], v4.local_addr().unwrap())
            .await
            .unwrap();
        from6
            .send_to(&[6, round], v6.local_addr().unwrap())
            .await
            .unwrap();
        for (sock, batch, from, tag) in [(&v4, &mut b4, &from4, 4u8), (&v6, &mut b6, &from6, 6u8)] {
            tokio::time::timeout(Duration::from_secs(5), sock.recv_batch(batch))
                .await
                .unwrap()
                .unwrap();
            let got: Vec<(SocketAddr, Vec<u8>)> =
                batch.iter().map(|(p, b)| (p, b.to_vec())).collect();
            assert_eq!(got, vec![(from.local_addr().unwrap(), vec![tag, round])]);
        }
    }
}

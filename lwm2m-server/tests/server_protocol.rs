//! The server's CoAP and HTTP faces against raw requests over real sockets on loopback: the
//! registration interface, firmware serving with Block2, and every kind of bad input answered as
//! the RFCs say.

mod support;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use sha2::{Digest, Sha256};
use support::raw_peer::Peer;
use testkit::release::{self, component};
use testkit::{TOKEN, TestServer, http};
use tokio::net::UdpSocket;

async fn start() -> TestServer {
    TestServer::start(|c| c.block1.max_body = 512).await
}

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn block_value(num: u32, more: bool, szx: u8) -> Vec<u8> {
    let v = (num << 4) | (u32::from(more) << 3) | u32::from(szx);
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

async fn register(peer: &mut Peer, ep: &str) -> String {
    let mut p = peer.request(
        RequestType::Post,
        "/rd",
        &[&format!("ep={ep}"), "lt=60", "lwm2m=1.1", "b=U"],
    );
    p.add_option(CoapOption::ContentFormat, vec![40]);
    p.payload = b"</1/0>,</3/0>,</5/0>".to_vec();
    let r = peer.exchange(&p).await;
    assert_eq!(code(&r), ResponseType::Created);
    let loc: Vec<String> = r
        .get_option(CoapOption::LocationPath)
        .unwrap()
        .iter()
        .map(|s| String::from_utf8(s.clone()).unwrap())
        .collect();
    assert_eq!(loc[0], "rd");
    loc[1].clone()
}

#[tokio::test]
async fn register_update_from_a_new_address_and_deregister() {
    let h = start().await;
    let mut a = Peer::new(h.server.coap_addr()).await;
    let id = register(&mut a, "dev-1").await;
    assert_eq!(
        h.server.registry.get("dev-1").unwrap().address,
        a.socket.local_addr().unwrap()
    );
    // The client's address changed (NAT rebinding): its Update comes from another port.
    let mut b = Peer::new(h.server.coap_addr()).await;
    let up = b.request(RequestType::Post, &format!("/rd/{id}"), &["lt=90"]);
    assert_eq!(code(&b.exchange(&up).await), ResponseType::Changed);
    let reg = h.server.registry.get("dev-1").unwrap();
    assert_eq!(
        (reg.address, reg.lifetime_s),
        (b.socket.local_addr().unwrap(), 90)
    );
    // An Update with an unknown registration id: 4.04, so the client registers again.
    let stale = b.request(RequestType::Post, "/rd/nope", &[]);
    assert_eq!(code(&b.exchange(&stale).await), ResponseType::NotFound);
    let del = b.request(RequestType::Delete, &format!("/rd/{id}"), &[]);
    assert_eq!(code(&b.exchange(&del).await), ResponseType::Deleted);
    assert!(h.server.registry.get("dev-1").is_none());
    assert!(h.server.store.registrations().unwrap().is_empty());
}

#[tokio::test]
async fn bad_registrations_get_4_00_and_a_reason() {
    let h = start().await;
    let mut peer = Peer::new(h.server.coap_addr()).await;
    for query in [
        &["lt=60"][..],
        &["ep=x", "lt=abc"],
        &["ep=x", "b=Z"],
        &["ep=x", "lwm2m=one"],
    ] {
        let p = peer.request(RequestType::Post, "/rd", query);
        let r = peer.exchange(&p).await;
        assert_eq!(code(&r), ResponseType::BadRequest, "{query:?}");
        assert!(!r.payload.is_empty(), "a diagnostic payload says why");
    }
    let mut p = peer.request(RequestType::Post, "/rd", &["ep=x"]);
    p.payload = b"</1/0>,<broken".to_vec();
    assert_eq!(code(&peer.exchange(&p).await), ResponseType::BadRequest);
    let mut p = peer.request(RequestType::Post, "/rd", &["ep=x"]);
    p.add_option(CoapOption::ContentFormat, vec![50]);
    p.payload = b"{}".to_vec();
    assert_eq!(
        code(&peer.exchange(&p).await),
        ResponseType::UnsupportedContentFormat
    );
    assert!(h.server.registry.is_empty());
}

#[tokio::test]
async fn unknown_critical_options_proxying_and_methods_are_refused() {
    let h = start().await;
    let mut peer = Peer::new(h.server.coap_addr()).await;
    // An unknown critical (odd) option is refused; so is an OSCORE option (9) without a kid,
    // by the OSCORE layer (RFC 8613 §8.2).
    let mut p = peer.request(RequestType::Post, "/rd", &["ep=x"]);
    p.add_option(CoapOption::Unknown(2049), vec![]);
    assert_eq!(code(&peer.exchange(&p).await), ResponseType::BadOption);
    let mut p = peer.request(RequestType::Post, "/rd", &["ep=x"]);
    p.add_option(CoapOption::Unknown(9), vec![]);
    assert_eq!(code(&peer.exchange(&p).await), ResponseType::BadOption);
    assert!(h.server.registry.get("x").is_none());
    // An unknown elective (even) option is ignored.
    let mut p = peer.request(RequestType::Post, "/rd", &["ep=y"]);
    p.add_option(CoapOption::Unknown(2050), vec![1]);
    assert_eq!(code(&peer.exchange(&p).await), ResponseType::Created);
    let mut p = peer.request(RequestType::Get, "/fw/x/image", &[]);
    p.add_option(CoapOption::ProxyUri, b"coap://elsewhere/x".to_vec());
    assert_eq!(
        code(&peer.exchange(&p).await),
        ResponseType::ProxyingNotSupported
    );
    let p = peer.request(RequestType::Put, "/rd", &[]);
    assert_eq!(
        code(&peer.exchange(&p).await),
        ResponseType::MethodNotAllowed
    );
    let p = peer.request(RequestType::Get, "/nothing/here", &[]);
    assert_eq!(code(&peer.exchange(&p).await), ResponseType::NotFound);
}

#[tokio::test]
async fn block1_registrations_are_reassembled_and_bounded() {
    let h = start().await;
    let mut peer = Peer::new(h.server.coap_addr()).await;
    let objects = b"</1/0>,</3/0>,</5/0>,</6/0>,</7/0>,</8/0>";
    // Two 32-byte blocks (SZX 1).
    let mut first = peer.request(RequestType::Post, "/rd", &["ep=blocky", "lt=60"]);
    first.add_option(CoapOption::Block1, block_value(0, true, 1));
    first.payload = objects[..32].to_vec();
    let r = peer.exchange(&first).await;
    assert_eq!(code(&r), ResponseType::Continue);
    let mut last = peer.request(RequestType::Post, "/rd", &["ep=blocky", "lt=60"]);
    last.add_option(CoapOption::Block1, block_value(1, false, 1));
    last.payload = objects[32..].to_vec();
    assert_eq!(code(&peer.exchange(&last).await), ResponseType::Created);
    assert_eq!(
        h.server.registry.get("blocky").unwrap().objects.as_bytes(),
        objects
    );
    // Out of order: block 2 without block 1 → 4.08.
    let mut b0 = peer.request(RequestType::Post, "/rd", &["ep=gap"]);
    b0.add_option(CoapOption::Block1, block_value(0, true, 1));
    b0.payload = objects[..32].to_vec();
    assert_eq!(code(&peer.exchange(&b0).await), ResponseType::Continue);
    let mut b2 = peer.request(RequestType::Post, "/rd", &["ep=gap"]);
    b2.add_option(CoapOption::Block1, block_value(2, false, 1));
    b2.payload = objects[..10].to_vec();
    assert_eq!(
        code(&peer.exchange(&b2).await),
        ResponseType::RequestEntityIncomplete
    );
    // Larger than the configured 512-byte limit → 4.13 with Size1 = 512.
    let mut big = peer.request(RequestType::Post, "/rd", &["ep=big"]);
    big.add_option(CoapOption::Block1, block_value(0, true, 6));
    big.add_option(CoapOption::Size1, 4000u32.to_be_bytes()[2..].to_vec());
    big.payload = vec![b'x'; 1024];
    let r = peer.exchange(&big).await;
    assert_eq!(code(&r), ResponseType::RequestEntityTooLarge);
    let size1 = r.get_first_option(CoapOption::Size1).unwrap();
    assert_eq!(
        size1.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)),
        512
    );
    assert!(h.server.registry.get("gap").is_none() && h.server.registry.get("big").is_none());
}

fn signed_release(key: &p256::ecdsa::SigningKey, image: &[u8]) -> Vec<u8> {
    release::envelope_of(key, 9, component(image, "image", "2.0.0"))
}

#[tokio::test]
async fn firmware_is_served_block_by_block_with_etag_size2_and_late_negotiation() {
    let h = start().await;
    let image = testkit::image(10_000, 1);
    let env = signed_release(&h.key, &image);
    let (rel, _) = h.server.repo.add_suit(&env, &image, 0).unwrap();
    let mut peer = Peer::new(h.server.coap_addr()).await;
    let path = format!("/fw/{}/image", rel.id);
    let mut got = Vec::new();
    let mut num = 0u32;
    let mut szx = 4u8; // start with 256-byte blocks...
    let mut etag = None;
    loop {
        let mut p = peer.request(RequestType::Get, &path, &[]);
        p.add_option(CoapOption::Block2, block_value(num, false, szx));
        let r = peer.exchange(&p).await;
        assert_eq!(code(&r), ResponseType::Content);
        let e = r.get_first_option(CoapOption::ETag).unwrap().clone();
        assert_eq!(*etag.get_or_insert(e.clone()), e, "the ETag is stable");
        if num == 0 {
            let size2 = r.get_first_option(CoapOption::Size2).unwrap();
            assert_eq!(
                size2.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)),
                10_000
            );
        }
        got.extend_from_slice(&r.payload);
        let b = r.get_first_option(CoapOption::Block2).unwrap();
        let v = b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x));
        if v & 0x8 == 0 {
            break;
        }
        num += 1;
        // ...then switch to 64-byte blocks after the first block (late negotiation): 256 = 4 * 64.
        if num == 1 {
            szx = 2;
            num = 4;
        }
    }
    assert_eq!(Sha256::digest(&got), Sha256::digest(&image));
    // Progress is recorded without any message from the device.
    let fetched = h
        .server
        .downloads
        .progress(peer.socket.local_addr().unwrap(), &rel.id)
        .unwrap();
    assert_eq!(fetched.bytes_done, 10_000);
    // The manifest is served too.
    let p = peer.request(RequestType::Get, &format!("/fw/{}/manifest", rel.id), &[]);
    let r = peer.exchange(&p).await;
    assert_eq!(r.payload, env);
    // A block past the end: 4.02. An unknown release: 4.04.
    let mut p = peer.request(RequestType::Get, &path, &[]);
    p.add_option(CoapOption::Block2, block_value(1000, false, 6));
    assert_eq!(code(&peer.exchange(&p).await), ResponseType::BadOption);
    let p = peer.request(RequestType::Get, "/fw/0000000000000000/image", &[]);
    assert_eq!(code(&peer.exchange(&p).await), ResponseType::NotFound);
}

/// Sends `request` from `socket` to `server` and returns the answer's bytes as they came.
async fn raw_exchange(
    socket: &UdpSocket,
    server: std::net::SocketAddr,
    request: &Packet,
) -> Vec<u8> {
    let bytes = request.to_bytes().unwrap();
    for _ in 0..6 {
        socket.send_to(&bytes, server).await.unwrap();
        let mut buf = [0u8; 2048];
        let wait = std::time::Duration::from_millis(500);
        if let Ok(Ok((n, _))) = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            return buf[..n].to_vec();
        }
    }
    panic!("no answer after 6 transmissions");
}

#[tokio::test]
async fn firmware_blocks_answered_inline_are_byte_for_byte_the_full_paths() {
    // Two servers with the same release: one answers blocks on the driver's fast path, the
    // other sends every request the full way. Each request goes to both with the same message id
    // and token, so the answers must be the same bytes (a NON's answer has its own message id).
    let fast = start().await;
    let full = TestServer::start(|c| {
        c.inline_answers = false;
        c.trust.push(suit_manifest::TrustAnchor::from_key(
            *fast.key.verifying_key(),
        ));
    })
    .await;
    let image = testkit::image(10_000, 3);
    let env = signed_release(&fast.key, &image);
    let (rel, _) = fast.server.repo.add_suit(&env, &image, 0).unwrap();
    let (same, _) = full.server.repo.add_suit(&env, &image, 0).unwrap();
    assert_eq!(rel.id, same.id);
    // A release is opened at its first use (a job starting, or a GET on the full path); the
    // fast path serves only open ones.
    assert!(fast.server.repo.files(&rel.id).is_some());
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let image_path = format!("/fw/{}/image", rel.id);
    let manifest_path = format!("/fw/{}/manifest", rel.id);
    let size2 = |p: &mut Packet| p.add_option(CoapOption::Size2, vec![]);
    let elective = |p: &mut Packet| p.add_option(CoapOption::Unknown(2050), b"x".to_vec());
    // Path, Block2 (NUM, SZX) and what else the request carries.
    type Case<'a> = (&'a str, Option<(u32, u8)>, Option<fn(&mut Packet)>);
    let cases: Vec<Case> = vec![
        (&image_path, Some((0, 6)), None),
        (&image_path, Some((3, 6)), None),
        (&image_path, Some((5, 4)), Some(size2)),
        (&image_path, Some((9, 6)), None), // the last block: the full path on both
        (&image_path, None, None),         // no Block2: block 0 of the largest size
        (&image_path, Some((2, 5)), Some(elective)),
        (&image_path, Some((1000, 6)), None), // past the end: 4.02
        (&manifest_path, Some((0, 4)), None),
        (&manifest_path, Some((1, 4)), Some(size2)),
        ("/fw/0000000000000000/image", Some((0, 6)), None), // 4.04
    ];
    for (i, (path, block, tweak)) in cases.into_iter().enumerate() {
        for non in [false, true] {
            let mid = 4000 + i as u16 * 2 + u16::from(non);
            let mut p =
                support::raw_peer::confirmable(RequestType::Get, path, &[], mid, vec![7, i as u8]);
            if non {
                p.header.set_type(MessageType::NonConfirmable);
            }
            if let Some((num, szx)) = block {
                p.add_option(CoapOption::Block2, block_value(num, false, szx));
            }
            if let Some(tweak) = tweak {
                tweak(&mut p);
            }
            let mut a = raw_exchange(&socket, fast.server.coap_addr(), &p).await;
            let mut b = raw_exchange(&socket, full.server.coap_addr(), &p).await;
            if non {
                // Each server numbers its own NON messages.
                a[2..4].fill(0);
                b[2..4].fill(0);
            }
            assert_eq!(a, b, "case {i} ({path}, {block:?}, NON {non})");
        }
    }
    // The fast path answered the manifest's blocks and the image's blocks whose range ends
    // before the image does (6 cases, CON and NON), the other server none.
    assert_eq!(fast.server.blocks_answered_inline(), 12);
    assert_eq!(full.server.blocks_answered_inline(), 0);
}

#[tokio::test]
async fn a_release_not_opened_yet_is_opened_by_the_full_path_then_served_fast() {
    // The driver's fast path never reads the database or the disk: the first block of a release
    // nothing has used yet goes the full way, which opens it; the next block is answered inline.
    let h = start().await;
    let image = testkit::image(4_000, 5);
    let env = signed_release(&h.key, &image);
    let (rel, _) = h.server.repo.add_suit(&env, &image, 0).unwrap();
    assert!(h.server.repo.files_if_open(&rel.id).is_none());
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let path = format!("/fw/{}/image", rel.id);
    for (num, inline_after) in [(0u32, 0u64), (1, 1)] {
        let mut p =
            support::raw_peer::confirmable(RequestType::Get, &path, &[], 900 + num as u16, vec![9]);
        p.add_option(CoapOption::Block2, block_value(num, false, 6));
        let answer =
            Packet::from_bytes(&raw_exchange(&socket, h.server.coap_addr(), &p).await).unwrap();
        assert_eq!(
            answer.header.code,
            MessageClass::Response(ResponseType::Content)
        );
        let start = num as usize * 1024;
        assert_eq!(answer.payload, image[start..start + 1024]);
        assert_eq!(
            h.server.blocks_answered_inline(),
            inline_after,
            "after block {num}"
        );
    }
}

#[tokio::test]
async fn malformed_datagrams_get_a_reset_or_nothing() {
    let h = start().await;
    let peer = Peer::new(h.server.coap_addr()).await;
    // A CON (0x40) with MID 0x1234 and an option delta of 15 (reserved): RST with the same MID.
    peer.send_raw(&[0x40, 0x01, 0x12, 0x34, 0xf0]).await;
    let rst = peer.recv().await.unwrap();
    assert_eq!(
        (rst.header.get_type(), rst.header.message_id),
        (MessageType::Reset, 0x1234)
    );
    // A NON with garbage, a 2-byte datagram and CoAP version 2: silence.
    peer.send_raw(&[0x50, 0x01, 0x00, 0x01, 0xf0]).await;
    peer.send_raw(&[0x40, 0x01]).await;
    peer.send_raw(&[0x80, 0x01, 0x00, 0x02]).await;
    assert!(peer.recv().await.is_none());
}

#[tokio::test]
async fn a_flood_of_malformed_datagrams_does_not_stop_other_clients() {
    let h = start().await;
    let server = h.server.coap_addr();
    let flood = tokio::spawn(async move {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..20_000u32 {
            let _ = s
                .send_to(&[0x50, 0xff, (i >> 8) as u8, i as u8, 0xff], server)
                .await;
        }
    });
    let mut peer = Peer::new(server).await;
    let id = register(&mut peer, "calm").await;
    flood.await.unwrap();
    assert!(!id.is_empty());
    assert!(h.server.registry.get("calm").is_some());
}

#[tokio::test]
async fn the_admin_api_requires_the_token() {
    let h = start().await;
    let url = format!("{}/api/clients", h.http);
    let none = http::request("GET", &url, None, None).await.status;
    let wrong = http::request("GET", &url, Some("nope"), None).await.status;
    let right = http::request("GET", &url, Some(TOKEN), None).await.status;
    let status = (none, wrong, right);
    assert_eq!(status, (401, 401, 200));
}

#[tokio::test]
async fn releases_are_refused_with_the_reason_over_the_api() {
    let h = start().await;
    let client = lwm2m_server::cli::AdminClient::new(&h.http, Some(TOKEN.into()));
    let image = vec![5u8; 3000];
    let stranger = release::key();
    let bad = signed_release(&stranger, &image);
    let good = signed_release(&h.key, &image);
    let (result_bad, result_good, result_plain) = tokio::task::spawn_blocking(move || {
        (
            client.post_form("/releases", &[("envelope", &bad), ("image", &image)]),
            client.post_form("/releases", &[("envelope", &good), ("image", &image)]),
            client.post_form(
                "/releases",
                &[("image", b"plain image"), ("version", b"0.9")],
            ),
        )
    })
    .await
    .unwrap();
    let err = result_bad.unwrap_err().to_string();
    assert!(err.contains("does not verify"), "{err}");
    let ok = result_good.unwrap();
    assert_eq!(ok["id"].as_str().unwrap().len(), 16);
    assert_eq!(ok["release"]["version"], "2.0.0");
    assert_eq!(result_plain.unwrap()["release"]["kind"], "plain");
    assert_eq!(h.server.store.releases().unwrap().len(), 2);
}

//! OSCORE (RFC 8613) against attackers, over real UDP on loopback: a device with an OSCORE
//! context registers, updates and fetches firmware blocks through the server's OSCORE layer
//! (the client side is the server crate's own `coap::oscore::Context`, checked against the RFC's
//! vectors, and aiocoap's independent implementation in the interop test). Each test shows an
//! attack refused: plain CoAP for an OSCORE endpoint, another endpoint's context, a replayed
//! request, a wrong key, an unknown kid, and a restart that would reuse the server's nonces.

#[allow(unused_imports)]
#[path = "support/peers/mod.rs"]
mod peers;

#[allow(dead_code)]
#[path = "support/raw_peer.rs"]
mod raw_peer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_server::clock::SystemClock;
use lwm2m_server::coap::oscore::{Context, OscoreOption, RequestRef};
use lwm2m_server::server::{Server, ServerConfig};
use sha2::{Digest, Sha256};
use testkit::TestServer;
use tokio::net::UdpSocket;

const SECRET_A: &str = "0102030405060708090a0b0c0d0e0f10";
const SALT_A: &str = "9e7ca92223786340";
const SECRET_B: &str = "1112131415161718191a1b1c1d1e1f20";
/// The Echo option (RFC 9175).
const ECHO: u16 = 252;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A server with two OSCORE endpoints, provisioned through `POST /api/devices`: osc-a (the
/// server's Sender ID 5e, Recipient ID c1) and osc-b (5e / c2).
async fn server() -> TestServer {
    let s = TestServer::start(|_| {}).await;
    for (ep, rid, secret, salt) in [
        ("osc-a", "c1", SECRET_A, Some(SALT_A)),
        ("osc-b", "c2", SECRET_B, None),
    ] {
        let mut body = serde_json::json!({
            "endpoint": ep, "oscore_sender_id": "5e", "oscore_recipient_id": rid,
            "oscore_master_secret": secret,
        });
        if let Some(salt) = salt {
            body["oscore_master_salt"] = salt.into();
        }
        let (status, answer) = s.api("POST", "/devices", Some(body)).await;
        assert_eq!(status, 201, "provisioning {ep}: {answer}");
    }
    s
}

/// osc-a's side of its context (IDs swapped).
fn device_a() -> Context {
    Context::new(&hex(SECRET_A), &hex(SALT_A), &[0xc1], &[0x5e]).unwrap()
}

fn device_b() -> Context {
    Context::new(&hex(SECRET_B), &[], &[0xc2], &[0x5e]).unwrap()
}

async fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

fn next_mid() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0x2000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn request(method: RequestType, path: &str, query: &[&str]) -> Packet {
    raw_peer::confirmable(method, path, query, next_mid(), vec![0x05, 0xc0])
}

fn register(ep: &str) -> Packet {
    let mut p = request(RequestType::Post, "/rd", &[&format!("ep={ep}"), "lt=300"]);
    p.payload = b"</1/0>,</3/0>,</5/0>,</21/0>".to_vec();
    p
}

/// Sends the datagram and waits (bounded, with retransmissions) for the answer's bytes.
async fn exchange_raw(socket: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    for _ in 0..4 {
        socket.send_to(bytes, to).await.unwrap();
        let mut buf = [0u8; 2048];
        let got =
            tokio::time::timeout(Duration::from_millis(700), socket.recv_from(&mut buf)).await;
        if let Ok(Ok((n, _))) = got {
            return buf[..n].to_vec();
        }
    }
    panic!("no answer from {to}");
}

async fn exchange(socket: &UdpSocket, to: SocketAddr, p: &Packet) -> Packet {
    Packet::from_bytes(&exchange_raw(socket, to, &p.to_bytes().unwrap()).await).unwrap()
}

/// Protects `inner` with `ctx` at sequence number `seq`, sends it, and opens the answer. The
/// second value is the outer answer (its code and OSCORE option).
async fn oscore(
    socket: &UdpSocket,
    to: SocketAddr,
    ctx: &Context,
    seq: u64,
    inner: &Packet,
) -> (Packet, Packet) {
    let (outer, r) = ctx.seal_request(inner, seq).unwrap();
    let answer = exchange(socket, to, &outer).await;
    let opened = ctx
        .open_response(&r, &answer)
        .unwrap_or_else(|e| panic!("cannot open the answer {answer:?}: {e}"));
    (opened, answer)
}

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn text(p: &Packet) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

fn location(p: &Packet) -> String {
    let parts: Vec<String> = p
        .get_option(CoapOption::LocationPath)
        .map(|l| {
            l.iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default();
    parts.join("/")
}

/// The Partial IV of an answer the server protected with its own sequence number.
fn server_seq(outer: &Packet) -> u64 {
    let opt = OscoreOption::decode(outer.get_first_option(CoapOption::Oscore).unwrap()).unwrap();
    let piv = opt.piv.expect("the server's own Partial IV");
    piv.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

#[tokio::test]
async fn an_oscore_endpoint_registers_with_its_own_context_only_and_never_in_plain_text() {
    let s = server().await;
    let to = s.coap_addr();
    let sock = udp().await;
    let (created, outer) = oscore(&sock, to, &device_a(), 1, &register("osc-a")).await;
    assert_eq!(code(&created), ResponseType::Created, "{}", text(&created));
    // Outside, only 2.04 and the OSCORE option: the real code and Location are inside.
    assert_eq!(code(&outer), ResponseType::Changed);
    assert!(outer.get_option(CoapOption::LocationPath).is_none());
    s.registered("osc-a").await;
    let path = location(&created);

    // osc-a's context cannot register osc-b, nor an endpoint without credentials.
    for (seq, other) in [(2, "osc-b"), (3, "nosec-1")] {
        let (refused, _) = oscore(&sock, to, &device_a(), seq, &register(other)).await;
        assert_eq!(code(&refused), ResponseType::Forbidden, "{other}");
        assert!(
            text(&refused).contains("is not endpoint"),
            "{}",
            text(&refused)
        );
        assert!(s.server.registry.get(other).is_none());
    }
    // Its own Update goes through; osc-b's context cannot update or delete it.
    let (changed, _) = oscore(
        &sock,
        to,
        &device_a(),
        4,
        &request(RequestType::Post, &path, &["lt=600"]),
    )
    .await;
    assert_eq!(code(&changed), ResponseType::Changed);
    let b = udp().await;
    let (forged, _) = oscore(
        &b,
        to,
        &device_b(),
        1,
        &request(RequestType::Delete, &path, &[]),
    )
    .await;
    assert_eq!(code(&forged), ResponseType::Forbidden);
    assert_eq!(s.server.registry.get("osc-a").unwrap().lifetime_s, 600);

    // Plain CoAP: no Register, Update or De-register for osc-a, and no firmware from its
    // registered address.
    let plain = udp().await;
    let refused = exchange(&plain, to, &register("osc-a")).await;
    assert_eq!(code(&refused), ResponseType::Forbidden);
    assert!(
        text(&refused).contains("must register with OSCORE"),
        "{}",
        text(&refused)
    );
    for p in [
        request(RequestType::Post, &path, &["lt=60"]),
        request(RequestType::Delete, &path, &[]),
    ] {
        assert_eq!(
            code(&exchange(&plain, to, &p).await),
            ResponseType::Forbidden
        );
    }
    assert_eq!(s.server.registry.get("osc-a").unwrap().lifetime_s, 600);
    let id = s.add_release(&testkit::release::image(500, 1), 1, "1.0");
    let fetch = request(RequestType::Get, &format!("/fw/{id}/image"), &[]);
    let refused = exchange(&sock, to, &fetch).await;
    assert_eq!(
        code(&refused),
        ResponseType::Unauthorized,
        "{}",
        text(&refused)
    );
    // De-register over OSCORE.
    let (deleted, _) = oscore(
        &sock,
        to,
        &device_a(),
        5,
        &request(RequestType::Delete, &path, &[]),
    )
    .await;
    assert_eq!(code(&deleted), ResponseType::Deleted);
    assert!(s.server.registry.get("osc-a").is_none());
}

#[tokio::test]
async fn a_replayed_request_a_wrong_key_and_an_unknown_kid_are_refused() {
    let s = server().await;
    let to = s.coap_addr();
    let sock = udp().await;
    let (outer, _) = device_a().seal_request(&register("osc-a"), 7).unwrap();
    let created = exchange(&sock, to, &outer).await;
    assert_eq!(code(&created), ResponseType::Changed);
    let first = s.server.registry.get("osc-a").unwrap().reg_id;
    // The same protected request again, under a new message ID (so that it is not merely a
    // CoAP retransmission, which gets the cached answer): 4.01 "Replay detected", unprotected.
    let mut replay = outer.clone();
    replay.header.message_id = next_mid();
    let refused = exchange(&sock, to, &replay).await;
    assert_eq!(code(&refused), ResponseType::Unauthorized);
    assert_eq!(text(&refused), "Replay detected");
    assert!(refused.get_option(CoapOption::Oscore).is_none());
    assert_eq!(
        s.server.registry.get("osc-a").unwrap().reg_id,
        first,
        "not registered again"
    );
    // An older number within the window is still fresh; the same number once more is not.
    let (ok, _) = oscore(&sock, to, &device_a(), 5, &register("osc-a")).await;
    assert_eq!(code(&ok), ResponseType::Created);
    let (outer5, _) = device_a().seal_request(&register("osc-a"), 5).unwrap();
    assert_eq!(text(&exchange(&sock, to, &outer5).await), "Replay detected");

    // osc-a's kid with a wrong secret: 4.00 "Decryption failed" (RFC 8613 §8.2).
    let wrong = Context::new(&hex(SECRET_B), &hex(SALT_A), &[0xc1], &[0x5e]).unwrap();
    let (outer, _) = wrong.seal_request(&register("osc-a"), 100).unwrap();
    let refused = exchange(&sock, to, &outer).await;
    assert_eq!(code(&refused), ResponseType::BadRequest);
    assert_eq!(text(&refused), "Decryption failed");
    // A changed ciphertext byte: the same.
    let (mut outer, _) = device_a().seal_request(&register("osc-a"), 101).unwrap();
    outer.payload[0] ^= 1;
    assert_eq!(
        text(&exchange(&sock, to, &outer).await),
        "Decryption failed"
    );
    // ...and neither used up a sequence number: 100 and 101 are still fresh for the real key.
    let (ok, _) = oscore(&sock, to, &device_a(), 100, &register("osc-a")).await;
    assert_eq!(code(&ok), ResponseType::Created);
    // A kid the server has no context for: 4.01 "Security context not found".
    let stranger = Context::new(&hex(SECRET_A), &[], &[0x77], &[0x5e]).unwrap();
    let (outer, _) = stranger.seal_request(&register("osc-a"), 1).unwrap();
    let refused = exchange(&sock, to, &outer).await;
    assert_eq!(code(&refused), ResponseType::Unauthorized);
    assert_eq!(text(&refused), "Security context not found");
    // A malformed OSCORE option: 4.02.
    let (mut outer, _) = device_a().seal_request(&register("osc-a"), 102).unwrap();
    outer.clear_option(CoapOption::Oscore);
    outer.add_option(CoapOption::Oscore, vec![0x0f, 1]);
    assert_eq!(
        code(&exchange(&sock, to, &outer).await),
        ResponseType::BadOption
    );
}

/// Fetches `/fw/{id}/image` in 64-byte blocks, over OSCORE when `ctx` is given. Returns the
/// image and the datagram sizes of the request and the response of block 1.
async fn fetch_64(
    sock: &UdpSocket,
    to: SocketAddr,
    id: &str,
    ctx: Option<(&Context, u64)>,
) -> (Vec<u8>, (usize, usize)) {
    let mut image = Vec::new();
    let mut sizes = (0, 0);
    for num in 0u32.. {
        let mut p = request(RequestType::Get, &format!("/fw/{id}/image"), &[]);
        // Block2: NUM, M=0, SZX=2 (64 bytes).
        let v = (num << 4) | 2;
        let bytes = v.to_be_bytes();
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(3);
        p.add_option(CoapOption::Block2, bytes[first..].to_vec());
        let (answer, wire) = match ctx {
            Some((c, seq0)) => {
                let (outer, r): (Packet, RequestRef) =
                    c.seal_request(&p, seq0 + u64::from(num)).unwrap();
                let req_bytes = outer.to_bytes().unwrap();
                let raw = exchange_raw(sock, to, &req_bytes).await;
                let answer = c
                    .open_response(&r, &Packet::from_bytes(&raw).unwrap())
                    .unwrap();
                (answer, (req_bytes.len(), raw.len()))
            }
            None => {
                let req_bytes = p.to_bytes().unwrap();
                let raw = exchange_raw(sock, to, &req_bytes).await;
                (
                    Packet::from_bytes(&raw).unwrap(),
                    (req_bytes.len(), raw.len()),
                )
            }
        };
        assert_eq!(
            code(&answer),
            ResponseType::Content,
            "block {num}: {}",
            text(&answer)
        );
        if num == 1 {
            sizes = wire;
        }
        image.extend_from_slice(&answer.payload);
        let block2 = answer
            .get_first_option(CoapOption::Block2)
            .expect("Block2 inside");
        if block2.last().is_some_and(|b| b & 0x08 == 0) {
            break;
        }
    }
    (image, sizes)
}

#[tokio::test]
async fn firmware_blocks_are_served_over_oscore_byte_exact_and_cost_what_the_readme_says() {
    let s = server().await;
    let to = s.coap_addr();
    let image = testkit::release::image(3000, 7);
    let id = s.add_release(&image, 1, "1.0");
    let sock = udp().await;
    let (created, _) = oscore(&sock, to, &device_a(), 1, &register("osc-a")).await;
    assert_eq!(code(&created), ResponseType::Created);
    let (got, secured) = fetch_64(&sock, to, &id, Some((&device_a(), 10))).await;
    assert_eq!(Sha256::digest(&got), Sha256::digest(&image));
    // The same blocks in plain text, from a device without credentials.
    let plain = udp().await;
    let (got, clear) = fetch_64(&plain, to, &id, None).await;
    assert_eq!(got, image);
    println!(
        "64-byte block GET: {} B plain, {} B OSCORE; its response: {} B plain, {} B OSCORE",
        clear.0, secured.0, clear.1, secured.1
    );
    // OSCORE adds the option (kid 1 byte, Partial IV 1 byte here), the 8-byte tag and moves
    // the code and the inner options into the ciphertext: well under DTLS's 29 bytes.
    assert!(
        secured.0 > clear.0 && secured.0 - clear.0 <= 16,
        "{secured:?} vs {clear:?}"
    );
    assert!(
        secured.1 > clear.1 && secured.1 - clear.1 <= 16,
        "{secured:?} vs {clear:?}"
    );
}

/// Starts a server again on `s`'s data dir (after [`TestServer::shutdown`]), on a new port.
async fn restart(s: &TestServer) -> Arc<Server> {
    s.shutdown();
    let socket = udp().await;
    let addr = socket.local_addr().unwrap();
    let config = ServerConfig::new(s.data_dir(), format!("coap://{addr}"));
    Server::start(socket, config, Arc::new(SystemClock))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_restart_asks_for_an_echo_and_never_reuses_a_sequence_number() {
    let s = server().await;
    let sock = udp().await;
    let (created, outer) = oscore(&sock, s.coap_addr(), &device_a(), 1, &register("osc-a")).await;
    assert_eq!(
        code(&created),
        ResponseType::Created,
        "a new context is served at once"
    );
    assert!(
        OscoreOption::decode(outer.get_first_option(CoapOption::Oscore).unwrap())
            .unwrap()
            .piv
            .is_none()
    );
    let (old, _) = device_a().seal_request(&register("osc-a"), 2).unwrap();

    let mut seen = Vec::new();
    let mut server = restart(&s).await;
    for round in 0..2 {
        let to = server.coap_addr();
        // The replay window is gone: a request captured before the restart is not served...
        let (opened_old, outer_old) = {
            let mut p = old.clone();
            p.header.message_id = next_mid();
            let answer = exchange(&sock, to, &p).await;
            let r = RequestRef {
                kid: vec![0xc1],
                piv: vec![2],
                seq: 2,
            };
            (device_a().open_response(&r, &answer).unwrap(), answer)
        };
        assert_eq!(
            code(&opened_old),
            ResponseType::Unauthorized,
            "round {round}"
        );
        seen.push(server_seq(&outer_old));
        // ...and neither is a new one until it carries the Echo value of the latest challenge.
        let seq = 1000 * (round + 1);
        let (challenge, outer) = oscore(&sock, to, &device_a(), seq, &register("osc-a")).await;
        assert_eq!(code(&challenge), ResponseType::Unauthorized);
        seen.push(server_seq(&outer));
        let echo = challenge
            .get_first_option(CoapOption::Unknown(ECHO))
            .expect("Echo")
            .clone();
        let mut again = register("osc-a");
        again.add_option(CoapOption::Unknown(ECHO), echo);
        let (created, _) = oscore(&sock, to, &device_a(), seq + 1, &again).await;
        assert_eq!(
            code(&created),
            ResponseType::Created,
            "round {round}: {}",
            text(&created)
        );
        // The window now starts there: the Echo request itself cannot be replayed.
        let (mut replayed, _) = device_a().seal_request(&again, seq + 1).unwrap();
        replayed.header.message_id = next_mid();
        assert_eq!(
            text(&exchange(&sock, to, &replayed).await),
            "Replay detected"
        );
        server.kill();
        if round == 0 {
            server = restart(&s).await;
        }
    }
    // Every Partial IV of the server's own is new, across both restarts.
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        seen.len(),
        "a sequence number came twice: {seen:?}"
    );
    assert!(seen[2] > seen[1], "{seen:?}");
    let stored = s.server.store.oscore_contexts().unwrap();
    let reserved = stored
        .iter()
        .find(|r| r.endpoint == "osc-a")
        .unwrap()
        .seq_reserved;
    assert!(
        seen.iter().all(|&n| n < reserved),
        "{seen:?} used beyond the reservation {reserved}"
    );
}

/// aiocoap, with an OSCORE security context in a directory (settings.json), fetches a release
/// image over OSCORE, block by block, byte-exact.
#[tokio::test]
async fn aiocoap_fetches_a_release_over_oscore_byte_exact() {
    let Some(python) = peers::venv_python() else {
        return;
    };
    let s = server().await;
    let image = testkit::release::image(5000, 3);
    let id = s.add_release(&image, 1, "1.0");
    let dir = s.scratch().join("osc-a-context");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("settings.json"),
        serde_json::json!({
            "sender-id_hex": "c1", "recipient-id_hex": "5e",
            "secret_hex": SECRET_A, "salt_hex": SALT_A,
        })
        .to_string(),
    )
    .unwrap();
    let fetch = |at: SocketAddr, name: &str| {
        let uri = format!("coap://{at}/fw/{id}/image");
        let out = s.scratch().join(name);
        let mut cmd = std::process::Command::new(&python);
        cmd.arg("-c")
            .arg(
                "import asyncio,sys,aiocoap\n\
                 async def main():\n\
                 \x20   ctx = await aiocoap.Context.create_client_context()\n\
                 \x20   ctx.client_credentials.load_from_dict({sys.argv[3]: {'oscore': {'basedir': sys.argv[2]}}})\n\
                 \x20   m = aiocoap.Message(code=aiocoap.GET, uri=sys.argv[1])\n\
                 \x20   m.opt.block2 = aiocoap.optiontypes.BlockOption.BlockwiseTuple(0, False, 2)\n\
                 \x20   r = await asyncio.wait_for(ctx.request(m).response, 60)\n\
                 \x20   open(sys.argv[4], 'wb').write(r.payload)\n\
                 \x20   print(r.code, len(r.payload))\n\
                 asyncio.run(main())",
            )
            .arg(&uri)
            .arg(&dir)
            .arg(format!("coap://{at}/*"))
            .arg(&out);
        async move {
            let o = peers::run(cmd).await;
            let got = std::fs::read(&out).unwrap_or_default();
            let log = format!(
                "aiocoap got {} bytes: {}{}",
                got.len(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            (got, log)
        }
    };
    let (got, log) = fetch(s.coap_addr(), "image.bin").await;
    assert_eq!(Sha256::digest(&got), Sha256::digest(&image), "{log}");
    // It went through OSCORE: aiocoap used (and persisted ahead) a sequence number per block.
    let sequence = std::fs::read_to_string(dir.join("sequence.json")).unwrap_or_default();
    let sequence: serde_json::Value = serde_json::from_str(&sequence).unwrap_or_default();
    let blocks = image.len().div_ceil(64) as u64;
    assert!(
        sequence["next-to-send"]
            .as_u64()
            .is_some_and(|n| n >= blocks),
        "aiocoap's sequence: {sequence}"
    );
    // After a restart of the server its replay window is gone: aiocoap's first request gets the
    // Echo challenge (protected with the server's own sequence number, so the reservation is
    // no longer 0), repeats it with the Echo, and the download completes byte-exact.
    let restarted = restart(&s).await;
    let (got, log) = fetch(restarted.coap_addr(), "again.bin").await;
    restarted.kill();
    assert_eq!(Sha256::digest(&got), Sha256::digest(&image), "{log}");
    let reserved = s
        .server
        .store
        .oscore_contexts()
        .unwrap()
        .into_iter()
        .find(|r| r.endpoint == "osc-a")
        .unwrap()
        .seq_reserved;
    assert!(reserved > 0, "no Echo challenge was sent");
}

/// `lwm2m-server device add osc-c --oscore-sender-id 01 --oscore-recipient-id RID
/// --oscore-master-secret SECRET` against `s`.
async fn add(s: &TestServer, rid: &str, secret: &str) -> (bool, String, String) {
    let bin = env!("CARGO_BIN_EXE_lwm2m-server");
    let args = [
        "device",
        "add",
        "osc-c",
        "--oscore-sender-id",
        "01",
        "--oscore-recipient-id",
        rid,
        "--oscore-master-secret",
        secret,
    ];
    s.cli(bin, &args).await
}

#[tokio::test]
async fn the_command_line_provisions_a_context_and_never_prints_its_secret() {
    let s = server().await;
    let bin = env!("CARGO_BIN_EXE_lwm2m-server");
    let secret = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
    // A plain registration osc-c holds ends when it gets a context.
    let plain = udp().await;
    let created = exchange(&plain, s.coap_addr(), &register("osc-c")).await;
    assert_eq!(code(&created), ResponseType::Created);
    let (ok, out, err) = add(&s, "c3", secret).await;
    assert!(ok, "{err}");
    assert!(out.contains("OSCORE context set"), "{out}");
    assert!(s.server.registry.get("osc-c").is_none());
    let (ok, out, _) = s.cli(bin, &["device", "list"]).await;
    assert!(
        ok && out.contains("01/c3") && out.contains("osc-a"),
        "{out}"
    );
    let (ok, json, _) = s.cli(bin, &["--json", "device", "list"]).await;
    assert!(ok, "{json}");
    let (_, api) = s.api("GET", "/devices", None).await;
    for text in [out.as_str(), json.as_str(), &api.to_string()] {
        for leak in [secret, SECRET_A, SECRET_B, SALT_A, "master"] {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
    }
    // Refused with a reason: another endpoint's Recipient ID, bad hex, a short secret, a long
    // ID, and half a context.
    let (ok, _, err) = add(&s, "c1", secret).await;
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = add(&s, "c3", "xyz").await;
    assert!(!ok && err.contains("hex"), "{err}");
    let (ok, _, err) = add(&s, "c3", "0011").await;
    assert!(!ok && err.contains("16 to 64 bytes"), "{err}");
    let (ok, _, err) = add(&s, "0011223344556677", secret).await;
    assert!(!ok && err.contains("at most 7"), "{err}");
    let (ok, _, err) = s
        .cli(bin, &["device", "add", "osc-c", "--oscore-sender-id", "01"])
        .await;
    assert!(!ok && err.contains("--oscore-recipient-id"), "{err}");
    // The context works, and plain text does not any more.
    let ctx = Context::new(&hex(secret), &[], &[0xc3], &[0x01]).unwrap();
    let (created, _) = oscore(&plain, s.coap_addr(), &ctx, 0, &register("osc-c")).await;
    assert_eq!(code(&created), ResponseType::Created, "{}", text(&created));
    let refused = exchange(&udp().await, s.coap_addr(), &register("osc-c")).await;
    assert_eq!(code(&refused), ResponseType::Forbidden);
    // The REST API: half a context, or a good PSK with a bad context, is 400 and stores nothing.
    let body = serde_json::json!({ "endpoint": "osc-d", "oscore_sender_id": "01" });
    let (status, answer) = s.api("POST", "/devices", Some(body)).await;
    assert_eq!(status, 400, "{answer}");
    let body = serde_json::json!({
        "endpoint": "osc-d", "psk_identity": "id-d", "psk_key": SECRET_A,
        "oscore_sender_id": "01", "oscore_recipient_id": "01", "oscore_master_secret": secret,
    });
    let (status, answer) = s.api("POST", "/devices", Some(body)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("must differ"), "{answer}");
    assert!(!s.server.credentials.is_secured("osc-d"));
    // Removing it reopens plain registration.
    let (ok, _, err) = s.cli(bin, &["device", "remove", "osc-c"]).await;
    assert!(ok, "{err}");
    let again = exchange(&udp().await, s.coap_addr(), &register("osc-c")).await;
    assert_eq!(code(&again), ResponseType::Created);
}

/// What the OSCORE device below was asked: the server's sequence number, the method and path
/// inside, whether the outside showed any of it.
#[derive(Debug, Clone)]
#[allow(dead_code)] // `method` is read through Debug in the assertions' messages
struct Asked {
    seq: u64,
    method: MessageClass,
    path: String,
    outer_leaks: bool,
}

/// A device answering the server's requests over OSCORE on `sock`: /3/0/0 as 100 bytes of text
/// in 64-byte blocks, 2.04 to any PUT or POST.
fn oscore_device(sock: Arc<UdpSocket>, ctx: Context) -> Arc<std::sync::Mutex<Vec<Asked>>> {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = asked.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(outer) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            let Some(value) = outer.get_first_option(CoapOption::Oscore) else {
                continue;
            };
            let opt = OscoreOption::decode(value).unwrap();
            let (inner, r) = ctx
                .open_request(&outer, &opt)
                .expect("the server's request opens");
            let path: Vec<String> = inner
                .get_option(CoapOption::UriPath)
                .map(|l| {
                    l.iter()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let path = path.join("/");
            log.lock().unwrap().push(Asked {
                seq: r.seq,
                method: inner.header.code,
                path: path.clone(),
                outer_leaks: outer.get_option(CoapOption::UriPath).is_some()
                    || outer.header.code != MessageClass::Request(RequestType::Post),
            });
            let mut answer = Packet::new();
            match (inner.header.code, path.as_str()) {
                (MessageClass::Request(RequestType::Get), "3/0/0") => {
                    let value = [b'm'; 100];
                    let num = inner
                        .get_first_option(CoapOption::Block2)
                        .map(|b| b.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x)) >> 4)
                        .unwrap_or(0) as usize;
                    let end = (num * 64 + 64).min(value.len());
                    answer.header.code = MessageClass::Response(ResponseType::Content);
                    answer.set_content_format(coap_lite::ContentFormat::TextPlain);
                    let more = u32::from(end < value.len());
                    let b = ((num as u32) << 4) | (more << 3) | 2;
                    let bytes = b.to_be_bytes();
                    let first = bytes.iter().position(|&x| x != 0).unwrap_or(3);
                    answer.add_option(CoapOption::Block2, bytes[first..].to_vec());
                    answer.payload = value[num * 64..end].to_vec();
                }
                (MessageClass::Request(RequestType::Put | RequestType::Post), _) => {
                    answer.header.code = MessageClass::Response(ResponseType::Changed);
                }
                _ => answer.header.code = MessageClass::Response(ResponseType::NotFound),
            }
            let mut sealed = ctx.seal_response(&r, &answer, None).unwrap();
            sealed.header.set_type(MessageType::Acknowledgement);
            sealed.header.message_id = outer.header.message_id;
            sealed.set_token(outer.get_token().to_vec());
            let _ = sock.send_to(&sealed.to_bytes().unwrap(), from).await;
        }
    });
    asked
}

#[tokio::test]
async fn the_server_reads_writes_and_executes_on_an_oscore_device_over_oscore() {
    let s = server().await;
    let to = s.coap_addr();
    let sock = Arc::new(udp().await);
    let (created, _) = oscore(&sock, to, &device_a(), 1, &register("osc-a")).await;
    assert_eq!(code(&created), ResponseType::Created);
    let asked = oscore_device(sock.clone(), device_a());
    let dm = &s.server.dm;
    let path = |p: &str| lwm2m_core::Path::parse(p).unwrap();

    let read = dm
        .read("osc-a", &path("/3/0/0"), None)
        .await
        .expect("read over OSCORE");
    assert_eq!(read.code, "2.05");
    let json = serde_json::to_string(&read.values).unwrap();
    assert!(json.contains(&"m".repeat(100)), "{json}");
    let uri = serde_json::json!(format!("coap://{to}/fw/r1/image"));
    let wrote = dm
        .write("osc-a", &path("/5/0/1"), &uri, true)
        .await
        .expect("write");
    assert_eq!(wrote.code, "2.04");
    let executed = dm
        .execute("osc-a", &path("/5/0/2"), None)
        .await
        .expect("execute");
    assert_eq!(executed.code, "2.04");
    // Observe is not done over OSCORE yet: refused, never sent in plain text.
    let observed = s.server.dm.observe("osc-a", &path("/5/0/3")).await;
    assert!(
        matches!(observed, Err(lwm2m_server::dm::DmError::OscoreOnly(_))),
        "{observed:?}"
    );

    let asked = asked.lock().unwrap().clone();
    let paths: Vec<&str> = asked.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["3/0/0", "3/0/0", "5/0/1", "5/0/2"], "{asked:?}");
    assert!(asked.iter().all(|a| !a.outer_leaks), "{asked:?}");
    assert!(asked.windows(2).all(|w| w[0].seq < w[1].seq), "{asked:?}");
    let reserved = s
        .server
        .store
        .oscore_contexts()
        .unwrap()
        .into_iter()
        .find(|r| r.endpoint == "osc-a")
        .unwrap()
        .seq_reserved;
    assert!(
        asked.iter().all(|a| a.seq < reserved),
        "{asked:?} beyond {reserved}"
    );
}

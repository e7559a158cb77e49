//! `coaps://` against attackers, over real UDP on loopback: the server's DTLS 1.2 PSK endpoint
//! with the host client's DTLS socket (`lwm2m_client::dtls`) as the honest device, and raw dimpl
//! ClientHellos as the flood. Each test shows an attack refused: a wrong key, an unknown identity,
//! another endpoint's identity, plain CoAP for a secured endpoint (Register, Update, De-register),
//! plain CoAP at all under `--security required`, and a handshake flood, which stays within its
//! bound while a real device still gets in. Provisioning never prints a key back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use lwm2m_client::dtls::{DtlsSocket, Psk};
use lwm2m_client::host::Socket;
use lwm2m_server::security::SecurityMode;
use testkit::TestServer;
use tokio::net::UdpSocket;

const KEY_A: [u8; 16] = *b"key-of-device-a!";
const KEY_B: [u8; 16] = *b"key-of-device-b!";

async fn server() -> TestServer {
    let s = TestServer::start_secure(|c| c.dtls.max_half_open = 32).await;
    s.add_device("dev-a", "id-a", &KEY_A).await;
    s.add_device("dev-b", "id-b", &KEY_B).await;
    s
}

async fn udp() -> Arc<UdpSocket> {
    Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap())
}

async fn dtls(s: &TestServer, identity: &str, key: &[u8]) -> std::io::Result<DtlsSocket> {
    let psk = Psk {
        identity: identity.into(),
        key: key.to_vec(),
    };
    DtlsSocket::connect(udp().await, s.coaps_addr(), &psk, Duration::from_secs(5)).await
}

fn request(method: RequestType, path: &str, query: &[&str]) -> Packet {
    support::raw_peer::confirmable(method, path, query, rand_mid(), vec![0x5e, 0xc0])
}

fn rand_mid() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0x4000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn register(ep: &str) -> Packet {
    let mut p = request(RequestType::Post, "/rd", &[&format!("ep={ep}"), "lt=300"]);
    p.payload = b"</1/0>,</3/0>,</5/0>".to_vec();
    p
}

/// Sends `p` to `to` and waits (bounded, with retransmissions) for the response.
async fn exchange<S: Socket>(socket: &S, to: SocketAddr, p: &Packet) -> Option<Packet> {
    let bytes = p.to_bytes().unwrap();
    for _ in 0..4 {
        socket.send_to(&bytes, to).await.ok()?;
        let mut buf = [0u8; 2048];
        let got =
            tokio::time::timeout(Duration::from_millis(700), socket.recv_from(&mut buf)).await;
        if let Ok(Ok((n, _))) = got {
            return Packet::from_bytes(&buf[..n]).ok();
        }
    }
    None
}

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
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

#[tokio::test]
async fn an_endpoint_registers_over_dtls_only_with_its_own_identity() {
    let s = server().await;
    let a = dtls(&s, "id-a", &KEY_A).await.expect("dev-a's handshake");
    let to = s.coaps_addr();
    let created = exchange(&a, to, &register("dev-a")).await.unwrap();
    assert_eq!(code(&created), ResponseType::Created);
    let reg = s.server.registry.get("dev-a").expect("registered");
    assert_eq!(
        s.server
            .coaps
            .as_ref()
            .unwrap()
            .1
            .identity(reg.address)
            .as_deref(),
        Some("id-a")
    );
    // dev-a's key cannot register dev-b, nor an endpoint that has no credentials.
    for other in ["dev-b", "nosec-1"] {
        let refused = exchange(&a, to, &register(other)).await.unwrap();
        assert_eq!(code(&refused), ResponseType::Forbidden, "{other}");
        assert!(String::from_utf8_lossy(&refused.payload).contains("is not endpoint"));
        assert!(s.server.registry.get(other).is_none());
    }
    // Its own Update goes through; dev-b's session cannot update or delete dev-a.
    let path = location(&created);
    let update = request(RequestType::Post, &path, &["lt=600"]);
    assert_eq!(
        code(&exchange(&a, to, &update).await.unwrap()),
        ResponseType::Changed
    );
    let b = dtls(&s, "id-b", &KEY_B).await.expect("dev-b's handshake");
    let forged = request(RequestType::Delete, &path, &[]);
    assert_eq!(
        code(&exchange(&b, to, &forged).await.unwrap()),
        ResponseType::Forbidden
    );
    assert_eq!(s.server.registry.get("dev-a").unwrap().lifetime_s, 600);
}

#[tokio::test]
async fn a_wrong_key_or_an_unknown_identity_gets_no_session() {
    let s = server().await;
    let wrong = dtls(&s, "id-a", b"not-the-key-of-a").await;
    assert!(wrong.is_err(), "a wrong key must not connect");
    let unknown = dtls(&s, "id-nobody", &KEY_A).await;
    assert!(unknown.is_err(), "an unknown identity must not connect");
    let stats = s.server.coaps.as_ref().unwrap().1.stats();
    assert_eq!(stats.established, 0);
    assert!(s.server.registry.is_empty());
}

#[tokio::test]
async fn plain_coap_never_registers_updates_or_deletes_a_secured_endpoint() {
    let s = server().await;
    let plain = udp().await;
    let to = s.coap_addr();
    let refused = exchange(plain.as_ref(), to, &register("dev-a"))
        .await
        .unwrap();
    assert_eq!(code(&refused), ResponseType::Forbidden);
    assert!(String::from_utf8_lossy(&refused.payload).contains("coaps://"));
    assert!(s.server.registry.get("dev-a").is_none());

    // Registered over DTLS, its registration id is no key to it over plain CoAP.
    let a = dtls(&s, "id-a", &KEY_A).await.unwrap();
    let created = exchange(&a, s.coaps_addr(), &register("dev-a"))
        .await
        .unwrap();
    let path = location(&created);
    let moved = request(RequestType::Post, &path, &["lt=60"]);
    assert_eq!(
        code(&exchange(plain.as_ref(), to, &moved).await.unwrap()),
        ResponseType::Forbidden
    );
    let gone = request(RequestType::Delete, &path, &[]);
    assert_eq!(
        code(&exchange(plain.as_ref(), to, &gone).await.unwrap()),
        ResponseType::Forbidden
    );
    let reg = s.server.registry.get("dev-a").expect("still registered");
    assert_eq!(reg.lifetime_s, 300);
    assert_ne!(reg.address, plain.local_addr().unwrap());

    // A device without credentials still registers in plain text (optional mode).
    let nosec = exchange(plain.as_ref(), to, &register("nosec-1"))
        .await
        .unwrap();
    assert_eq!(code(&nosec), ResponseType::Created);
}

#[tokio::test]
async fn required_mode_refuses_every_plain_registration_and_download() {
    let s = TestServer::start_secure(|c| c.security = SecurityMode::Required).await;
    let plain = udp().await;
    let refused = exchange(plain.as_ref(), s.coap_addr(), &register("nosec-1"))
        .await
        .unwrap();
    assert_eq!(code(&refused), ResponseType::Forbidden);
    assert!(s.server.registry.is_empty());
    let id = s.add_release(&testkit::image(1000, 1), 1, "2.0.0");
    let get = request(RequestType::Get, &format!("/fw/{id}/image"), &[]);
    let answer = exchange(plain.as_ref(), s.coap_addr(), &get).await.unwrap();
    assert_eq!(code(&answer), ResponseType::Unauthorized);
    assert!(answer.payload.len() < 100, "no image bytes in plain text");
}

/// A DTLS 1.2 PSK ClientHello from a fresh client (a new random each time).
fn client_hello() -> Vec<u8> {
    use dimpl::crypto::Dtls12CipherSuite;
    use dimpl::{Config, Dtls, Output, PskResolver};
    struct Any;
    impl PskResolver for Any {
        fn resolve(&self, _: &[u8]) -> Option<Vec<u8>> {
            Some(vec![0; 16])
        }
    }
    let config = Config::builder()
        .dtls12_cipher_suites(&[Dtls12CipherSuite::PSK_AES128_CCM_8])
        .with_psk_client(b"flood".to_vec(), Arc::new(Any))
        .build()
        .unwrap();
    let now = std::time::Instant::now();
    let mut c = Dtls::new_12_psk(Arc::new(config), now);
    c.set_active(true);
    c.handle_timeout(now).unwrap();
    let mut buf = vec![0u8; 2048];
    loop {
        match c.poll_output(&mut buf) {
            Output::Packet(p) => return p.to_vec(),
            Output::Timeout(_) => panic!("no ClientHello"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_handshake_flood_stays_within_its_bound_and_a_real_device_still_gets_in() {
    let s = server().await;
    let sessions = s.server.coaps.as_ref().unwrap().1.clone();
    let to = s.coaps_addr();
    let hello = client_hello();
    // 1000 ClientHellos from 200 ports, as fast as the sockets go.
    let mut flooders = Vec::new();
    for _ in 0..200 {
        flooders.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    let mut most = 0;
    for round in 0..5 {
        for f in &flooders {
            f.send_to(&hello, to).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50 * (round + 1))).await;
        most = most.max(sessions.stats().half_open);
    }
    let stats = sessions.stats();
    assert!(
        most <= 32,
        "half-open sessions grew to {most}, beyond the cap of 32"
    );
    assert!(most > 0, "the flood never reached the server");
    assert_eq!((stats.handshaking, stats.established), (0, 0));
    // Each answer is a HelloVerifyRequest no bigger than the ClientHello (no amplification).
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), flooders[0].recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf[13], 3, "a HelloVerifyRequest");
    assert!(n <= hello.len(), "{n} bytes answered {} bytes", hello.len());

    let a = dtls(&s, "id-a", &KEY_A)
        .await
        .expect("a real device connects after the flood");
    let created = exchange(&a, to, &register("dev-a")).await.unwrap();
    assert_eq!(code(&created), ResponseType::Created);
    assert_eq!(sessions.stats().established, 1);
}

/// `lwm2m-server device add EP --psk-identity ID --psk-key KEY` against `s`.
async fn device_add(s: &TestServer, ep: &str, id: &str, key: &str) -> (bool, String, String) {
    let bin = env!("CARGO_BIN_EXE_lwm2m-server");
    s.cli(
        bin,
        &["device", "add", ep, "--psk-identity", id, "--psk-key", key],
    )
    .await
}

#[tokio::test]
async fn provisioning_never_prints_a_key_back_and_removal_reopens_plain_registration() {
    let s = server().await;
    let bin = env!("CARGO_BIN_EXE_lwm2m-server");
    let hex = "00112233445566778899aabbccddeeff";
    let (ok, out, err) = device_add(&s, "dev-c", "id-c", hex).await;
    assert!(ok, "{err}");
    assert!(out.contains("coaps://"), "{out}");
    let (ok, out, _) = s.cli(bin, &["device", "list"]).await;
    assert!(ok && out.contains("id-c") && out.contains("dev-a"), "{out}");
    let (ok, json, _) = s.cli(bin, &["--json", "device", "list"]).await;
    assert!(ok, "{json}");
    let (status, api) = s.api("GET", "/devices", None).await;
    assert_eq!(status, 200);
    for text in [out.as_str(), json.as_str(), &api.to_string()] {
        assert!(
            !text.contains(hex) && !text.contains("key-of-device"),
            "a key leaked: {text}"
        );
        assert!(!text.contains("psk_key"), "{text}");
    }
    // Another endpoint's identity, and bad keys, are refused with a reason.
    let (ok, _, err) = device_add(&s, "dev-d", "id-a", hex).await;
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = device_add(&s, "dev-d", "id-d", "abc").await;
    assert!(!ok && err.contains("hex"), "{err}");
    let (ok, _, err) = device_add(&s, "dev-d", "id-d", "0011").await;
    assert!(!ok && err.contains("16 to 64 bytes"), "{err}");

    // Provisioning ends a plain registration the endpoint held.
    let plain = udp().await;
    let created = exchange(plain.as_ref(), s.coap_addr(), &register("dev-e"))
        .await
        .unwrap();
    assert_eq!(code(&created), ResponseType::Created);
    s.add_device("dev-e", "id-e", &KEY_B).await;
    assert!(s.server.registry.get("dev-e").is_none());
    // ...and removing the credentials lets it register in plain text again.
    let (ok, _, err) = s.cli(bin, &["device", "remove", "dev-e"]).await;
    assert!(ok, "{err}");
    let again = exchange(plain.as_ref(), s.coap_addr(), &register("dev-e"))
        .await
        .unwrap();
    assert_eq!(code(&again), ResponseType::Created);
    let (ok, _, err) = s.cli(bin, &["device", "remove", "dev-e"]).await;
    assert!(!ok && err.contains("no credentials"), "{err}");
}

mod support;

/// libcoap's DTLS clients (OpenSSL and GnuTLS builds) with `-u IDENTITY -k KEY` (the key as
/// text in libcoap 4.3) register as their endpoint and fetch a release byte-exact over coaps://;
/// with a wrong key they get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_fetches_a_release_over_coaps_byte_exact_and_a_wrong_key_gets_nothing() {
    use sha2::{Digest, Sha256};
    use support::peers::{libcoap, run};
    let s = server().await;
    let key = "libcoap-psk-0001";
    s.add_device("libcoap-dev", "id-libcoap", key.as_bytes())
        .await;
    let img = testkit::image(20_000, 3);
    let (rel, _) = s.server.repo.add_plain(&img, "3.1.4", 0).unwrap();
    let base = format!("coaps://{}", s.coaps_addr());
    for tool in ["coap-client-openssl", "coap-client-gnutls"] {
        let Some(client) = libcoap(tool) else {
            continue;
        };
        let fetch = |key: &str, out: &std::path::Path| {
            let wait = if key.len() == 16 && key.starts_with("libcoap") {
                "20"
            } else {
                "3"
            };
            let mut cmd = std::process::Command::new(&client);
            cmd.args([
                "-u",
                "id-libcoap",
                "-k",
                key,
                "-m",
                "get",
                "-b",
                "64",
                "-B",
                wait,
            ])
            .arg("-o")
            .arg(out)
            .arg(format!("{base}/fw/{}/image", rel.id));
            cmd
        };
        let out = s.scratch().join(format!("{tool}.img"));
        let o = run(fetch(key, &out)).await;
        // libcoap's client exits 0 even on failure: judge by the bytes.
        let got = std::fs::read(&out).unwrap_or_default();
        assert_eq!(
            Sha256::digest(&got),
            Sha256::digest(&img),
            "{tool}: {} bytes; {}",
            got.len(),
            String::from_utf8_lossy(&o.stderr)
        );
        let wrong = s.scratch().join(format!("{tool}-wrong.img"));
        run(fetch("not-the-right-k", &wrong)).await;
        assert!(
            std::fs::read(&wrong).unwrap_or_default().is_empty(),
            "{tool}"
        );

        let mut cmd = std::process::Command::new(&client);
        cmd.args(["-u", "id-libcoap", "-k", key, "-m", "post", "-t", "40"])
            .args(["-e", "</1/0>,</3/0>,</5/0>", "-B", "10"])
            .arg(format!("{base}/rd?ep=libcoap-dev&lt=120"));
        let o = run(cmd).await;
        let reg = s.server.registry.get("libcoap-dev");
        assert!(
            reg.is_some(),
            "{tool}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let id = reg.unwrap().reg_id;
        s.server.registry.deregister(&id).unwrap();
    }
}

/// Forwards datagrams between one client and `upstream`, recording each one's size by direction
/// (true: towards the server).
async fn relay(upstream: SocketAddr) -> (SocketAddr, Arc<std::sync::Mutex<Vec<(bool, usize)>>>) {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = front.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
        let mut client = None;
        loop {
            tokio::select! {
                Ok((n, from)) = front.recv_from(&mut a) => {
                    client = Some(from);
                    log.lock().unwrap().push((true, n));
                    let _ = back.send_to(&a[..n], upstream).await;
                }
                Ok((n, _)) = back.recv_from(&mut b) => {
                    log.lock().unwrap().push((false, n));
                    if let Some(c) = client {
                        let _ = front.send_to(&b[..n], c).await;
                    }
                }
            }
        }
    });
    (at, seen)
}

/// What a 64-byte block costs on the wire, plain and over DTLS: the same GET of block 2 of an
/// image (Block2 option, 64-byte payload), measured at a relay. DTLS with CCM_8 adds 29 bytes to
/// each datagram: a 13-byte record header, an 8-byte explicit nonce and an 8-byte tag.
#[tokio::test]
async fn dtls_adds_29_bytes_to_each_block_datagram() {
    let s = server().await;
    let img = testkit::image(1000, 4);
    let (rel, _) = s.server.repo.add_plain(&img, "1.0.0", 0).unwrap();
    let mut get = request(RequestType::Get, &format!("/fw/{}/image", rel.id), &[]);
    get.add_option(CoapOption::Block2, vec![0x22]); // block 2, szx 2 (64 bytes)

    let (plain_at, plain_seen) = relay(s.coap_addr()).await;
    let plain = udp().await;
    let answer = exchange(plain.as_ref(), plain_at, &get).await.unwrap();
    assert_eq!(answer.payload, img[128..192]);

    let (dtls_at, dtls_seen) = relay(s.coaps_addr()).await;
    let psk = Psk {
        identity: "id-a".into(),
        key: KEY_A.to_vec(),
    };
    let a = DtlsSocket::connect(udp().await, dtls_at, &psk, Duration::from_secs(5))
        .await
        .unwrap();
    let handshake = dtls_seen.lock().unwrap().len();
    let answer = exchange(&a, dtls_at, &get).await.unwrap();
    assert_eq!(answer.payload, img[128..192]);

    let plain_sizes = plain_seen.lock().unwrap().clone();
    let dtls_sizes = dtls_seen.lock().unwrap()[handshake..].to_vec();
    let handshake_bytes: usize = dtls_seen.lock().unwrap()[..handshake]
        .iter()
        .map(|d| d.1)
        .sum();
    eprintln!(
        "64-byte block: plain request {} B, response {} B; DTLS request {} B, response {} B; \
         handshake {handshake} datagrams, {handshake_bytes} B",
        plain_sizes[0].1, plain_sizes[1].1, dtls_sizes[0].1, dtls_sizes[1].1
    );
    assert_eq!(plain_sizes.len(), 2);
    assert_eq!(dtls_sizes.len(), 2);
    for (p, d) in plain_sizes.iter().zip(&dtls_sizes) {
        assert_eq!(p.0, d.0);
        // Token and message id are the same length both ways, so only DTLS differs.
        assert_eq!(d.1, p.1 + 29, "plain {p:?}, DTLS {d:?}");
    }
}

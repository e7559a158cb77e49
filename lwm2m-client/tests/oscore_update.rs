//! The host client over OSCORE (RFC 8613), end to end on loopback: the `lwm2m-client` binary with
//! `--oscore-sender-id/--oscore-recipient-id/--oscore-master-secret` registers with the real
//! server on its plain port, takes an update job (block GETs protected), reboots into the new
//! image (a new context state at every boot: the server's requests go through the device's Echo
//! round), and its active slot then holds exactly the release's bytes. A stranger's plain request
//! is answered 4.01 and changes nothing; a restart on the same flash file continues the sequence
//! numbers above the persisted reservation; a wrong key never registers and says why; a replayed
//! protected request from the server is refused with "Replay detected".
#![cfg(feature = "std")]

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_client::storage::file_flash::FileFlash;
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use lwm2m_client::storage::persist;
use lwm2m_server::coap::oscore::{Context, OscoreOption};
use sha2::{Digest, Sha256};
use suit_manifest::builder::{ComponentSpec, uuid_for};
use support::peers::KillOnDrop;
use testkit::TestServer;
use testkit::release::{envelope_of, firmware};
use tokio::net::UdpSocket;

const SECRET: &str = "0102030405060708090a0b0c0d0e0f10";
const SALT: &str = "9e7ca92223786340";
const EP: &str = "osc-dev";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The client, with the device's Sender ID c1 and Recipient ID 5e (the server's are swapped).
fn client(
    scratch: &std::path::Path,
    trust: &p256::ecdsa::VerifyingKey,
    server: SocketAddr,
    flash: &std::path::Path,
    secret: &str,
    log: &std::path::Path,
) -> Command {
    let pem = scratch.join("key.pub.pem");
    std::fs::write(
        &pem,
        suit_manifest::keyfile::verifying_key_to_pem(trust).unwrap(),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_lwm2m-client"));
    c.args(["--endpoint", EP, "--flash"])
        .arg(flash)
        .args(["--server", &format!("coap://{server}")])
        .args(["--oscore-sender-id", "c1", "--oscore-recipient-id", "5e"])
        .args([
            "--oscore-master-secret",
            secret,
            "--oscore-master-salt",
            SALT,
        ])
        .arg("--trust")
        .arg(pem)
        .args(["--vendor-id", "acme.example", "--class-id", "sensor-rev-b"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null());
    c
}

async fn provision(s: &TestServer) {
    let body = serde_json::json!({
        "endpoint": EP, "oscore_sender_id": "5e", "oscore_recipient_id": "c1",
        "oscore_master_secret": SECRET, "oscore_master_salt": SALT,
    });
    let (status, answer) = s.api("POST", "/devices", Some(body)).await;
    assert_eq!(status, 201, "provisioning: {answer}");
}

/// The sender reservation persisted in the flash file (the client must not be running).
fn reservation(flash: &std::path::Path) -> u64 {
    let l = Layout::NRF52840;
    let file: FileFlash = FileFlash::open_or_create(flash, l.end() as usize).unwrap();
    let device = DeviceFlash::new(file, l).unwrap();
    persist::load_oscore_seq(&device).unwrap().unwrap_or(0)
}

fn get(path: &str, mid: u16) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(vec![0x7a, (mid & 0xff) as u8]);
    for seg in path.trim_start_matches('/').split('/') {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p
}

async fn ask(sock: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Packet {
    for _ in 0..4 {
        sock.send_to(bytes, to).await.unwrap();
        let mut buf = [0u8; 2048];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(1500), sock.recv_from(&mut buf)).await
        {
            return Packet::from_bytes(&buf[..n]).unwrap();
        }
    }
    panic!("no answer from {to}");
}

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        c => panic!("not a response: {c:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_client_updates_over_oscore_and_refuses_plain_requests() {
    let s = TestServer::start(|c| c.jobs.update_timeout = Duration::from_secs(30)).await;
    provision(&s).await;
    let (flash, log) = (s.scratch().join("dev.img"), s.scratch().join("dev.log"));
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut c = KillOnDrop {
        child: client(s.scratch(), &s.trust(), s.coap_addr(), &flash, SECRET, &log)
            .spawn()
            .unwrap(),
        log: log.clone(),
    };
    s.registered(EP).await;
    let reg = s.server.registry.get(EP).unwrap();
    assert!(reg.objects.contains("</21/0>"), "{}", reg.objects);

    // A stranger's plain write of the Package URI: 4.01, and the device's state is unchanged.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut put = get("/5/0/1", 0x4242);
    put.header.code = MessageClass::Request(RequestType::Put);
    put.add_option(CoapOption::ContentFormat, vec![0]);
    put.payload = b"coap://192.0.2.1/evil".to_vec();
    let answer = ask(&stranger, reg.address, &put.to_bytes().unwrap()).await;
    assert_eq!(code(&answer), ResponseType::Unauthorized);
    assert_eq!(answer.payload, b"OSCORE required");
    assert!(answer.get_first_option(CoapOption::Oscore).is_none());
    let path = lwm2m_core::Path::parse("/5/0/1").unwrap();
    let uri = s
        .server
        .dm
        .read(EP, &path, None)
        .await
        .expect("read over OSCORE");
    let uri = serde_json::to_value(&uri.values).unwrap();
    assert!(!uri.to_string().contains("evil"), "{uri}");
    // Object 21 is listed but never readable, even by the server over OSCORE: 4.04.
    let secret = lwm2m_core::Path::parse("/21/0").unwrap();
    let read = s.server.dm.read(EP, &secret, None).await;
    assert!(
        matches!(
            read,
            Err(lwm2m_server::dm::DmError::Device { code: 0x84, .. })
        ),
        "{read:?}"
    );

    // The update, over OSCORE from the write of /5/0/1 to the last block.
    let vendor = uuid_for("acme.example", None);
    let image = firmware("2.0.0", 6000);
    let mut comp =
        ComponentSpec::for_image(&image, vendor, uuid_for("sensor-rev-b", Some(&vendor)));
    comp.uri = Some("image".into());
    comp.version = Some("2.0.0".into());
    let rel = s.add_envelope(&envelope_of(&s.key, 2, comp), &image);
    let job = s.server.jobs.start(&rel, &[EP.to_string()]).unwrap();
    let view = s.finished(job).await;
    let d = &view.devices[0];
    assert_eq!(d.status, "succeeded", "{d:?}\nclient log:\n{}", read_log());
    assert_eq!(d.pkg_version.as_deref(), Some("2.0.0"));
    let text = read_log();
    assert!(text.contains("osc-dev: 2.0.0 confirmed"), "{text}");
    assert_eq!(text.matches("OSCORE with").count(), 2, "{text}");
    let bytes = std::fs::read(&flash).unwrap();
    let active = Layout::NRF52840.active().start as usize;
    let slot = &bytes[active..active + image.len()];
    assert_eq!(Sha256::digest(slot), Sha256::digest(&image));

    // A restart on the same flash file: the sequence numbers continue above the reservation,
    // and the server (whose replay window holds the old numbers) accepts the client again.
    drop(c);
    let before = reservation(&flash);
    assert!(before > 0, "no reservation persisted");
    let registered_before = read_log().matches("osc-dev: registered").count();
    c = KillOnDrop {
        child: client(s.scratch(), &s.trust(), s.coap_addr(), &flash, SECRET, &log)
            .spawn()
            .unwrap(),
        log: log.clone(),
    };
    testkit::wait::until(
        "the client to register again",
        Duration::from_secs(15),
        async || {
            (read_log().matches("osc-dev: registered").count() > registered_before).then_some(())
        },
    )
    .await;
    let text = read_log();
    assert!(
        text.contains(&format!("sequence numbers from {before}")),
        "{text}"
    );
    // Over OSCORE again after the restart (the device's Echo round included).
    let model = lwm2m_core::Path::parse("/3/0/1").unwrap();
    let read = s
        .server
        .dm
        .read(EP, &model, None)
        .await
        .expect("read after restart");
    assert_eq!(read.code, "2.05");
    drop(c);
    let after = reservation(&flash);
    assert!(
        after > before,
        "the reservation did not grow: {before} -> {after}"
    );
    assert!(
        !read_log().contains("refused our protected request"),
        "{}",
        read_log()
    );
}

#[tokio::test]
async fn a_wrong_key_never_registers_and_says_why() {
    let s = TestServer::start(|_| {}).await;
    provision(&s).await;
    let (flash, log) = (s.scratch().join("dev.img"), s.scratch().join("dev.log"));
    let wrong = "ff02030405060708090a0b0c0d0e0f10";
    let _c = KillOnDrop {
        child: client(s.scratch(), &s.trust(), s.coap_addr(), &flash, wrong, &log)
            .spawn()
            .unwrap(),
        log: log.clone(),
    };
    testkit::wait::until(
        "the refusal in the log",
        Duration::from_secs(15),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains(
                "the server refused our protected request with 4.00 \"Decryption failed\"",
            )
            .then_some(())
        },
    )
    .await;
    assert!(s.server.registry.get(EP).is_none());
}

/// A raw OSCORE "server" (the server's side of the context, on a bare socket): the client
/// registers with it; then its protected GET goes through the device's Echo round, and the same
/// protected bytes sent again (under a new message id) are refused with "Replay detected".
#[tokio::test]
async fn a_replayed_request_from_the_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = sock.local_addr().unwrap();
    let key = testkit::release::key();
    let (flash, log) = (dir.path().join("dev.img"), dir.path().join("dev.log"));
    let _c = KillOnDrop {
        child: client(dir.path(), key.verifying_key(), at, &flash, SECRET, &log)
            .spawn()
            .unwrap(),
        log: log.clone(),
    };
    let server = Context::new(&hex(SECRET), &hex(SALT), &[0x5e], &[0xc1]).unwrap();
    // The protected Register.
    let mut buf = [0u8; 2048];
    let (n, device) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
        .await
        .expect("a Register")
        .unwrap();
    let outer = Packet::from_bytes(&buf[..n]).unwrap();
    assert_eq!(outer.header.code, MessageClass::Request(RequestType::Post));
    let value = outer.get_first_option(CoapOption::Oscore).unwrap().clone();
    let opt = OscoreOption::decode(&value).unwrap();
    assert_eq!(opt.kid, Some(&[0xc1][..]));
    let (inner, r) = server.open_request(&outer, &opt).expect("it opens");
    assert_eq!(inner.payload, b"</1/0>,</3/0>,</5/0>,</21/0>");
    let mut created = Packet::new();
    created.header.code = MessageClass::Response(ResponseType::Created);
    created.add_option(CoapOption::LocationPath, b"rd".to_vec());
    created.add_option(CoapOption::LocationPath, b"r1".to_vec());
    let mut sealed = server.seal_response(&r, &created, None).unwrap();
    sealed.header.set_type(MessageType::Acknowledgement);
    sealed.header.message_id = outer.header.message_id;
    sealed.set_token(outer.get_token().to_vec());
    sock.send_to(&sealed.to_bytes().unwrap(), device)
        .await
        .unwrap();

    // A fresh boot: the first request gets a protected 4.01 with an Echo.
    let (first, r1) = server.seal_request(&get("/3/0/1", 0x100), 1).unwrap();
    let answer = ask(&sock, device, &first.to_bytes().unwrap()).await;
    assert!(answer.get_first_option(CoapOption::Oscore).is_some());
    let opened = server.open_response(&r1, &answer).unwrap();
    assert_eq!(code(&opened), ResponseType::Unauthorized);
    let echo = opened
        .get_first_option(CoapOption::Unknown(252))
        .expect("an Echo option")
        .clone();
    let mut again = get("/3/0/1", 0x101);
    again.add_option(CoapOption::Unknown(252), echo);
    let (second, r2) = server.seal_request(&again, 2).unwrap();
    let answer = ask(&sock, device, &second.to_bytes().unwrap()).await;
    let opened = server.open_response(&r2, &answer).unwrap();
    assert_eq!(code(&opened), ResponseType::Content);
    assert_eq!(opened.payload, b"simulated-device");

    // The same protected request under a new message id: a replay.
    let mut replay = second.clone();
    replay.header.message_id = 0x102;
    let answer = ask(&sock, device, &replay.to_bytes().unwrap()).await;
    assert_eq!(code(&answer), ResponseType::Unauthorized);
    assert_eq!(answer.payload, b"Replay detected");
    assert!(answer.get_first_option(CoapOption::Oscore).is_none());
    // A plain request from the server's own address: refused too.
    let answer = ask(&sock, device, &get("/3/0/1", 0x103).to_bytes().unwrap()).await;
    assert_eq!(code(&answer), ResponseType::Unauthorized);
    assert_eq!(answer.payload, b"OSCORE required");
}

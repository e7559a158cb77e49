//! The host client over `coaps://`, end to end on loopback: the `lwm2m-client` binary with
//! `--psk-identity/--psk-key` registers with the real server's DTLS endpoint, ignores a stranger's
//! plain CoAP request, takes an update job whose Package URI is `coaps://`, reboots into the new
//! image (a new handshake at every boot), and its active slot then holds exactly the release's
//! bytes. With a wrong key it stops with an error that says why.
#![cfg(feature = "std")]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lwm2m_client::storage::layout::Layout;
use sha2::{Digest, Sha256};
use suit_manifest::builder::{ComponentSpec, uuid_for};
use testkit::TestServer;
use testkit::release::{envelope_of, firmware};

const KEY: &str = "000102030405060708090a0b0c0d0e0f";

/// Kills the client when the test ends, passed or not.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client(s: &TestServer, flash: &std::path::Path, key: &str, log: &std::path::Path) -> Command {
    let pem = s.scratch().join("key.pub.pem");
    std::fs::write(
        &pem,
        suit_manifest::keyfile::verifying_key_to_pem(&s.trust()).unwrap(),
    )
    .unwrap();
    let log = std::fs::File::create(log).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_lwm2m-client"));
    c.args(["--endpoint", "dtls-dev", "--flash"])
        .arg(flash)
        .args(["--server", &format!("coaps://{}", s.coaps_addr())])
        .args(["--psk-identity", "id-dtls", "--psk-key", key, "--trust"])
        .arg(pem)
        .args(["--vendor-id", "acme.example", "--class-id", "sensor-rev-b"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_client_updates_over_dtls_and_ignores_strangers() {
    let s = TestServer::start_secure(|c| c.jobs.update_timeout = Duration::from_secs(20)).await;
    let key: Vec<u8> = (0..16).collect();
    s.add_device("dtls-dev", "id-dtls", &key).await;
    let (flash, log) = (s.scratch().join("dev.img"), s.scratch().join("dev.log"));
    let _client = Client(client(&s, &flash, KEY, &log).spawn().unwrap());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    s.registered("dtls-dev").await;
    let reg = s.server.registry.get("dtls-dev").unwrap();
    let sessions = &s.server.coaps.as_ref().unwrap().1;
    assert_eq!(sessions.identity(reg.address).as_deref(), Some("id-dtls"));

    // A stranger's plain CoAP GET /3/0/0 to the device's port gets no answer.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let get = [0x40, 0x01, 0x12, 0x34, 0xb1, b'3', 0x01, b'0', 0x01, b'0'];
    stranger.send_to(&get, reg.address).await.unwrap();
    let mut buf = [0u8; 512];
    let answer =
        tokio::time::timeout(Duration::from_millis(1500), stranger.recv_from(&mut buf)).await;
    assert!(answer.is_err(), "a secured device answered a stranger");

    let vendor = uuid_for("acme.example", None);
    let image = firmware("2.0.0", 6000);
    let mut comp =
        ComponentSpec::for_image(&image, vendor, uuid_for("sensor-rev-b", Some(&vendor)));
    comp.uri = Some("image".into());
    comp.version = Some("2.0.0".into());
    let rel = s.add_envelope(&envelope_of(&s.key, 2, comp), &image);
    let job = s
        .server
        .jobs
        .start(&rel, &["dtls-dev".to_string()])
        .unwrap();
    let view = s.finished(job).await;
    let d = &view.devices[0];
    assert_eq!(d.status, "succeeded", "{d:?}\nclient log:\n{}", read_log());
    assert_eq!(d.pkg_version.as_deref(), Some("2.0.0"));
    // The device says it fetches over CoAPs (/5/0/8 = 1), the only way it accepts.
    let path = lwm2m_core::Path::parse("/5/0/8").unwrap();
    let protocols = s.server.dm.read("dtls-dev", &path, None).await.unwrap();
    assert_eq!(
        serde_json::to_value(&protocols.values).unwrap()[0]["value"],
        1
    );

    // Two boots, two handshakes; the new image is in the active slot, byte for byte.
    let text = read_log();
    assert!(text.contains("dtls-dev: 2.0.0 confirmed"), "{text}");
    assert_eq!(text.matches("DTLS session with").count(), 2, "{text}");
    let bytes = std::fs::read(&flash).unwrap();
    let active = Layout::NRF52840.active().start as usize;
    let slot = &bytes[active..active + image.len()];
    assert_eq!(Sha256::digest(slot), Sha256::digest(&image));
}

#[tokio::test]
async fn a_wrong_key_stops_the_client_with_a_reason() {
    let s = TestServer::start_secure(|_| {}).await;
    s.add_device("dtls-dev", "id-dtls", &[7; 16]).await;
    let (flash, log) = (s.scratch().join("dev.img"), s.scratch().join("dev.log"));
    let mut c = client(&s, &flash, KEY, &log);
    let status = tokio::task::spawn_blocking(move || c.status())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("wrong PSK identity or key"), "{text}");
    assert!(s.server.registry.is_empty());
}

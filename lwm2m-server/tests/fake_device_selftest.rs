//! Checks of the scripted test device (tests/support/fake_device.rs) against a minimal in-test
//! server, so that a failing server test points at the server, not at its test double.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_core::block::{BlockValue, encode_uint_option};
use lwm2m_core::content;
use lwm2m_core::object5::{State, UpdateResult};
use suit_manifest::builder::{self, ComponentSpec, ManifestSpec};
use suit_manifest::{Algorithm, TrustAnchor, keyfile};
use support::fake_device::{
    Behaviour, DeviceConfig, FakeDevice, Transfer, TransferKind, resolve_reference,
};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

const WAIT: Duration = Duration::from_secs(5);

/// Just enough of an LwM2M server: answers Register (location /rd/x1) and Update, serves files with
/// Block2, acknowledges notifications and keeps their payloads, and sends requests to the device.
struct TestServer {
    socket: Arc<UdpSocket>,
    state: Arc<Mutex<ServerState>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ServerState {
    files: HashMap<String, Vec<u8>>,
    /// Where the last Register or Update came from.
    device: Option<SocketAddr>,
    registrations: u32,
    waiting: HashMap<Vec<u8>, oneshot::Sender<Packet>>,
    /// (token, payload) of every notification.
    notifications: Vec<(Vec<u8>, String)>,
    next_mid: u16,
}

impl TestServer {
    async fn start(files: &[(&str, &[u8])]) -> TestServer {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let state = Arc::new(Mutex::new(ServerState {
            files: files
                .iter()
                .map(|(path, body)| (path.to_string(), body.to_vec()))
                .collect(),
            ..ServerState::default()
        }));
        let task = tokio::spawn(serve(Arc::clone(&socket), Arc::clone(&state)));
        TestServer {
            socket,
            state,
            task,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn uri(&self, path: &str) -> String {
        format!("coap://{}/{path}", self.addr())
    }

    /// The device's address, once it has registered.
    async fn device(&self) -> SocketAddr {
        poll("a registration", || self.state.lock().unwrap().device).await
    }

    /// Sends a CON request to the device and returns its response.
    async fn send(&self, request: Packet) -> Packet {
        self.try_send(request, WAIT)
            .await
            .expect("the device answers")
    }

    /// Sends a CON request once; `None` when no response comes within `wait`.
    async fn try_send(&self, mut request: Packet, wait: Duration) -> Option<Packet> {
        let device = self.device().await;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.state.lock().unwrap();
            st.next_mid += 1;
            request.header.message_id = st.next_mid;
            request.set_token(st.next_mid.to_be_bytes().to_vec());
            st.waiting.insert(request.get_token().to_vec(), tx);
        }
        request.header.set_type(MessageType::Confirmable);
        let bytes = request.to_bytes().unwrap();
        self.socket.send_to(&bytes, device).await.unwrap();
        timeout(wait, rx).await.ok().map(Result::unwrap)
    }

    async fn code(&self, request: Packet) -> ResponseType {
        response_code(&self.send(request).await)
    }

    async fn read(&self, path: &str) -> String {
        let response = self.send(request(RequestType::Get, path)).await;
        assert_eq!(
            response_code(&response),
            ResponseType::Content,
            "GET {path}"
        );
        String::from_utf8(response.payload).unwrap()
    }

    /// Observes `path`; returns the token its notifications carry.
    async fn observe(&self, path: &str) -> Vec<u8> {
        let mut get = request(RequestType::Get, path);
        get.add_option(CoapOption::Observe, Vec::new());
        let response = self.send(get).await;
        assert!(response.get_first_option(CoapOption::Observe).is_some());
        response.get_token().to_vec()
    }

    async fn write_uri(&self, uri: &str) -> ResponseType {
        let mut put = request(RequestType::Put, "/5/0/1");
        put.payload = uri.as_bytes().to_vec();
        self.code(put).await
    }

    async fn execute(&self, path: &str) -> ResponseType {
        self.code(request(RequestType::Post, path)).await
    }

    /// The payloads notified for `token` so far, once the last of them is `last`.
    async fn notifications_until(&self, token: &[u8], last: &str) -> Vec<String> {
        poll(&format!("a notification {last}"), || {
            let st = self.state.lock().unwrap();
            let payloads: Vec<String> = st
                .notifications
                .iter()
                .filter(|(t, _)| t == token)
                .map(|(_, payload)| payload.clone())
                .collect();
            (payloads.last().map(String::as_str) == Some(last)).then_some(payloads)
        })
        .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: Arc<UdpSocket>, state: Arc<Mutex<ServerState>>) {
    let mut buf = [0u8; 2048];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await.unwrap();
        let packet = Packet::from_bytes(&buf[..len]).unwrap();
        let reply = match packet.header.code {
            MessageClass::Request(method) => Some(answer(&state, &packet, method, from)),
            MessageClass::Response(_) => {
                let mut st = state.lock().unwrap();
                if let Some(waiting) = st.waiting.remove(packet.get_token()) {
                    let _ = waiting.send(packet);
                    None
                } else {
                    let payload = String::from_utf8_lossy(&packet.payload).into_owned();
                    st.notifications
                        .push((packet.get_token().to_vec(), payload));
                    let con = packet.header.get_type() == MessageType::Confirmable;
                    con.then(|| empty_ack(packet.header.message_id))
                }
            }
            _ => None,
        };
        if let Some(bytes) = reply {
            socket.send_to(&bytes, from).await.unwrap();
        }
    }
}

/// Register, Update, and files with Block2 (the block the device asks for, sliced).
fn answer(
    state: &Mutex<ServerState>,
    request: &Packet,
    method: RequestType,
    from: SocketAddr,
) -> Vec<u8> {
    let mut st = state.lock().unwrap();
    let mut response = Packet::new();
    response.header.set_type(MessageType::Acknowledgement);
    response.header.message_id = request.header.message_id;
    response.set_token(request.get_token().to_vec());
    let path = path_of(request);
    let code = match (method, path.as_str()) {
        (RequestType::Post, "rd") => {
            assert_eq!(request.payload, b"</1/0>,</3/0>,</5/0>");
            st.device = Some(from);
            st.registrations += 1;
            response.add_option(CoapOption::LocationPath, b"rd".to_vec());
            response.add_option(CoapOption::LocationPath, b"x1".to_vec());
            ResponseType::Created
        }
        (RequestType::Post, "rd/x1") => {
            st.device = Some(from);
            ResponseType::Changed
        }
        (RequestType::Get, file) => match st.files.get(file) {
            Some(body) => {
                let asked = request.get_first_option(CoapOption::Block2);
                let block = BlockValue::decode(asked.unwrap()).unwrap();
                let start = (block.offset() as usize).min(body.len());
                let end = (start + block.size()).min(body.len());
                let more = end < body.len();
                let sent = BlockValue::new(block.num(), more, block.szx()).unwrap();
                let (value, len) = sent.encode();
                response.add_option(CoapOption::Block2, value[..len].to_vec());
                response.payload = body[start..end].to_vec();
                ResponseType::Content
            }
            None => ResponseType::NotFound,
        },
        _ => ResponseType::MethodNotAllowed,
    };
    response.header.code = MessageClass::Response(code);
    response.to_bytes().unwrap()
}

fn request(method: RequestType, path: &str) -> Packet {
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Request(method);
    for segment in path.trim_start_matches('/').split('/') {
        packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    packet
}

fn path_of(packet: &Packet) -> String {
    let segments = packet.get_option(CoapOption::UriPath).into_iter().flatten();
    let segments: Vec<String> = segments
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    segments.join("/")
}

fn response_code(packet: &Packet) -> ResponseType {
    match packet.header.code {
        MessageClass::Response(code) => code,
        other => panic!("not a response: {other}"),
    }
}

fn empty_ack(mid: u16) -> Vec<u8> {
    let mut ack = Packet::new();
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = mid;
    ack.to_bytes().unwrap()
}

fn uint(value: u32) -> Vec<u8> {
    let (bytes, len) = encode_uint_option(value);
    bytes[..len].to_vec()
}

/// Polls `check` until it gives a value; panics after [`WAIT`].
async fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

fn test_image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A signed envelope for `image` at `uri`, with version text and sequence number.
fn envelope(
    key: &p256::ecdsa::SigningKey,
    image: &[u8],
    uri: &str,
    version: &str,
    sequence: u64,
) -> Vec<u8> {
    let mut component = ComponentSpec::for_image(image, [1; 16], [2; 16]);
    component.uri = Some(uri.to_owned());
    component.version = Some(version.to_owned());
    builder::signed_envelope(
        &ManifestSpec::new(sequence, component),
        key,
        Algorithm::Es256,
    )
    .unwrap()
}

fn suit_config(endpoint: &str, server: SocketAddr, key: &p256::ecdsa::SigningKey) -> DeviceConfig {
    DeviceConfig {
        trust: Some(TrustAnchor::from_key(*key.verifying_key())),
        vendor_id: [1; 16],
        class_id: [2; 16],
        sequence: 4,
        ..DeviceConfig::new(endpoint, server)
    }
}

#[tokio::test]
async fn pull_update_of_a_plain_image() {
    let image = test_image(1000);
    let server = TestServer::start(&[("fw/image", &image)]).await;
    let device = FakeDevice::start(DeviceConfig::new("selftest-pull", server.addr())).await;
    assert_eq!(server.device().await, device.addr().unwrap());
    assert_eq!(device.location().as_deref(), Some("/rd/x1"));

    assert_eq!(server.read("/5/0/3").await, "0");
    assert_eq!(server.read("/5/0/9").await, "2");
    let state = server.observe("/5/0/3").await;
    let result = server.observe("/5/0/5").await;

    let uri = server.uri("fw/image");
    assert_eq!(server.write_uri(&uri).await, ResponseType::Changed);
    assert_eq!(server.notifications_until(&state, "2").await, ["1", "2"]);
    let transfer = Transfer {
        kind: TransferKind::Image,
        uri,
        block_requests: 16, // 1000 bytes in blocks of 64
        bytes: 1000,
    };
    assert_eq!(device.transfers(), [transfer]);

    assert_eq!(server.execute("/5/0/2").await, ResponseType::Changed);
    let states = server.notifications_until(&state, "0").await;
    assert_eq!(states, ["1", "2", "3", "0"]);
    assert_eq!(server.notifications_until(&result, "1").await, ["1"]);
    assert_eq!(device.installed_version(), "2.0.0");
    assert_eq!(device.pkg_version(), "2.0.0");
    assert_eq!(device.counters().registrations, 1);
}

#[tokio::test]
async fn bad_uris_end_with_invalid_uri_and_unsupported_protocol() {
    let server = TestServer::start(&[]).await;
    let device = FakeDevice::start(DeviceConfig::new("selftest-bad-uri", server.addr())).await;

    assert_eq!(server.write_uri("not a uri").await, ResponseType::Changed);
    device
        .wait_for("Result 7", |d| d.result() == UpdateResult::InvalidUri)
        .await;
    assert_eq!(device.state(), State::Idle);

    let ftp = "ftp://127.0.0.1/fw/image";
    assert_eq!(server.write_uri(ftp).await, ResponseType::Changed);
    device
        .wait_for("Result 9", |d| {
            d.result() == UpdateResult::UnsupportedProtocol
        })
        .await;
    assert_eq!(device.state(), State::Idle);
    assert!(device.transfers().is_empty());
}

#[tokio::test]
async fn a_silent_image_host_is_connection_lost() {
    let server = TestServer::start(&[]).await;
    let config = DeviceConfig {
        ack_timeout: Duration::from_millis(50),
        ..DeviceConfig::new("selftest-lost", server.addr())
    };
    let device = FakeDevice::start(config).await;
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let uri = format!("coap://{}/fw/image", silent.local_addr().unwrap());
    assert_eq!(server.write_uri(&uri).await, ResponseType::Changed);
    device
        .wait_for("Result 4", |d| d.result() == UpdateResult::ConnectionLost)
        .await;
    let mut buf = [0u8; 128];
    let mut received = 0;
    while silent.try_recv(&mut buf).is_ok() {
        received += 1;
    }
    assert_eq!(received, 5, "the first transmission and 4 retransmissions");
    assert_eq!(device.transfers()[0].block_requests, 1);
}

#[tokio::test]
async fn cancel_while_downloading() {
    let server = TestServer::start(&[]).await;
    let config = DeviceConfig {
        behaviour: Behaviour::IgnoreDownload,
        ..DeviceConfig::new("selftest-cancel", server.addr())
    };
    let device = FakeDevice::start(config).await;

    let uri = server.uri("fw/image");
    assert_eq!(server.write_uri(&uri).await, ResponseType::Changed);
    assert_eq!(device.state(), State::Downloading);
    assert_eq!(server.write_uri(&uri).await, ResponseType::BadRequest);

    assert_eq!(server.execute("/5/0/10").await, ResponseType::Changed);
    assert_eq!(device.state(), State::Idle);
    assert_eq!(device.result(), UpdateResult::Cancelled);
    assert_eq!(
        server.execute("/5/0/10").await,
        ResponseType::MethodNotAllowed
    );
}

#[tokio::test]
async fn refusals() {
    let server = TestServer::start(&[]).await;
    let device = FakeDevice::start(DeviceConfig::new("selftest-refusals", server.addr())).await;

    assert_eq!(
        server.execute("/5/0/2").await,
        ResponseType::MethodNotAllowed
    );
    let mut text = request(RequestType::Get, "/5/0/8");
    text.add_option(CoapOption::Accept, uint(content::TEXT_PLAIN.into()));
    assert_eq!(server.code(text).await, ResponseType::NotAcceptable);
    let mut tlv = request(RequestType::Get, "/5/0/8");
    tlv.add_option(CoapOption::Accept, uint(content::LWM2M_TLV.into()));
    // Multiple resource 8 holding resource instance 0 = 0.
    assert_eq!(server.send(tlv).await.payload, [0x83, 8, 0x41, 0, 0]);
    assert_eq!(
        server.code(request(RequestType::Put, "/5/0/3")).await,
        ResponseType::MethodNotAllowed
    );
    assert_eq!(
        server.code(request(RequestType::Get, "/4/0/0")).await,
        ResponseType::NotFound
    );
    let codes: Vec<_> = device.requests().iter().map(|r| r.code).collect();
    assert_eq!(codes.len(), 5);
    assert!(codes.iter().all(Option::is_some));
}

#[tokio::test]
async fn suit_pull_resolves_the_image_uri_and_installs() {
    let key = keyfile::generate().unwrap();
    let image = test_image(300);
    let manifest = envelope(&key, &image, "image", "2.1.0", 5);
    let server = TestServer::start(&[("fw/ab/manifest", &manifest), ("fw/ab/image", &image)]).await;
    let device = FakeDevice::start(suit_config("selftest-suit", server.addr(), &key)).await;
    server.device().await;

    assert_eq!(
        server.write_uri(&server.uri("fw/ab/manifest")).await,
        ResponseType::Changed
    );
    device
        .wait_for("Downloaded", |d| d.state() == State::Downloaded)
        .await;
    let transfers = device.transfers();
    assert_eq!(transfers[1].uri, server.uri("fw/ab/image"));
    let blocks: Vec<_> = transfers
        .iter()
        .map(|t| (t.kind, t.block_requests))
        .collect();
    let manifest_blocks = manifest.len().div_ceil(64) as u32;
    assert_eq!(
        blocks,
        [
            (TransferKind::Manifest, manifest_blocks),
            (TransferKind::Image, 5)
        ]
    );

    assert_eq!(server.execute("/5/0/2").await, ResponseType::Changed);
    device
        .wait_for("Result 1", |d| d.result() == UpdateResult::Success)
        .await;
    assert_eq!(device.installed_version(), "2.1.0");
    assert_eq!(device.sequence(), 5);
    assert_eq!(server.read("/3/0/3").await, "2.1.0");
}

#[tokio::test]
async fn rejected_manifests_fetch_no_image_block() {
    let key = keyfile::generate().unwrap();
    let stranger = keyfile::generate().unwrap();
    let image = test_image(300);
    let forged = envelope(&stranger, &image, "image", "2.1.0", 5);
    let rollback = envelope(&key, &image, "image", "0.9.0", 4);
    let server = TestServer::start(&[
        ("fw/a/manifest", &forged),
        ("fw/b/manifest", &rollback),
        ("fw/a/image", &image),
        ("fw/b/image", &image),
    ])
    .await;
    let device = FakeDevice::start(suit_config("selftest-reject", server.addr(), &key)).await;
    server.device().await;

    assert_eq!(
        server.write_uri(&server.uri("fw/a/manifest")).await,
        ResponseType::Changed
    );
    device
        .wait_for("Result 5", |d| d.result() == UpdateResult::IntegrityFailure)
        .await;
    assert_eq!(
        server.write_uri(&server.uri("fw/b/manifest")).await,
        ResponseType::Changed
    );
    device
        .wait_for("Result 6", |d| {
            d.result() == UpdateResult::UnsupportedPackage
        })
        .await;
    let counters = device.counters();
    assert!(counters.manifest_block_requests > 0);
    assert_eq!(counters.image_block_requests, 0);
    assert_eq!(device.sequence(), 4);
}

#[tokio::test]
async fn reboot_on_update_registers_again_from_a_new_port() {
    let image = test_image(200);
    let server = TestServer::start(&[("fw/image", &image)]).await;
    let config = DeviceConfig {
        behaviour: Behaviour::RebootOnUpdate,
        ..DeviceConfig::new("selftest-reboot", server.addr())
    };
    let device = FakeDevice::start(config).await;
    let before = server.device().await;
    let state = server.observe("/5/0/3").await;

    assert_eq!(
        server.write_uri(&server.uri("fw/image")).await,
        ResponseType::Changed
    );
    server.notifications_until(&state, "2").await;
    assert_eq!(server.execute("/5/0/2").await, ResponseType::Changed);
    device
        .wait_for("a second registration", |d| d.counters().registrations == 2)
        .await;

    let after = device.addr().unwrap();
    assert_ne!(after, before);
    assert_eq!(server.device().await, after);
    assert_eq!(server.state.lock().unwrap().registrations, 2);
    assert_eq!(server.read("/5/0/3").await, "0");
    assert_eq!(server.read("/5/0/5").await, "1");
    // The observation did not survive the reboot.
    assert_eq!(
        server.notifications_until(&state, "3").await,
        ["1", "2", "3"]
    );
}

#[tokio::test]
async fn push_with_block1_then_reset() {
    let server = TestServer::start(&[]).await;
    let device = FakeDevice::start(DeviceConfig::new("selftest-push", server.addr())).await;
    let image = test_image(150);

    let mut codes = Vec::new();
    for (num, chunk) in image.chunks(64).enumerate() {
        let more = (num + 1) * 64 < image.len();
        let mut put = request(RequestType::Put, "/5/0/0");
        put.add_option(
            CoapOption::ContentFormat,
            uint(content::OCTET_STREAM.into()),
        );
        let (block, len) = BlockValue::new(num as u32, more, 2).unwrap().encode();
        put.add_option(CoapOption::Block1, block[..len].to_vec());
        put.payload = chunk.to_vec();
        codes.push(server.code(put).await);
    }
    use ResponseType::{Changed, Continue};
    assert_eq!(codes, [Continue, Continue, Changed]);
    assert_eq!(device.state(), State::Downloaded);

    let mut reset = request(RequestType::Put, "/5/0/0");
    reset.payload = vec![0];
    assert_eq!(server.code(reset).await, Changed);
    assert_eq!(device.state(), State::Idle);
    assert_eq!(device.result(), UpdateResult::Initial);
}

#[tokio::test]
async fn queue_mode_sleeps_and_an_address_change_keeps_the_registration() {
    let server = TestServer::start(&[]).await;
    let config = DeviceConfig {
        queue_mode: true,
        awake_window: Duration::from_millis(300),
        ..DeviceConfig::new("selftest-queue", server.addr())
    };
    let device = FakeDevice::start(config).await;
    let first = server.device().await;
    assert_eq!(server.read("/5/0/3").await, "0");

    sleep(Duration::from_millis(400)).await;
    let asleep = server.try_send(
        request(RequestType::Get, "/5/0/3"),
        Duration::from_millis(200),
    );
    assert!(asleep.await.is_none());
    assert_eq!(device.requests().last().unwrap().code, None);

    let second = device.restart_on_new_port().await;
    assert_ne!(second, first);
    assert!(device.send_update_now().await);
    assert_eq!(server.device().await, second);
    assert_eq!(server.read("/5/0/3").await, "0");
    let counters = device.counters();
    assert_eq!((counters.registrations, counters.updates), (1, 1));
}

#[tokio::test]
async fn failed_install_and_corrupt_download() {
    let key = keyfile::generate().unwrap();
    let image = test_image(100);
    let manifest = envelope(&key, &image, "image", "2.1.0", 5);
    let files: &[(&str, &[u8])] = &[("fw/manifest", &manifest), ("fw/image", &image)];
    let server = TestServer::start(files).await;
    let uri = server.uri("fw/manifest");

    let fails = DeviceConfig {
        behaviour: Behaviour::FailUpdate,
        ..suit_config("selftest-fail", server.addr(), &key)
    };
    let device = FakeDevice::start(fails).await;
    assert_eq!(server.write_uri(&uri).await, ResponseType::Changed);
    device
        .wait_for("Downloaded", |d| d.state() == State::Downloaded)
        .await;
    assert_eq!(server.execute("/5/0/2").await, ResponseType::Changed);
    device
        .wait_for("Result 8", |d| d.result() == UpdateResult::UpdateFailed)
        .await;
    assert_eq!(
        (device.state(), device.installed_version().as_str()),
        (State::Idle, "1.0.0")
    );
    drop(device);

    let corrupts = DeviceConfig {
        behaviour: Behaviour::CorruptDownload,
        ..suit_config("selftest-corrupt", server.addr(), &key)
    };
    let device = FakeDevice::start(corrupts).await;
    device
        .wait_for("a registration", |d| d.location().is_some())
        .await;
    assert_eq!(server.write_uri(&uri).await, ResponseType::Changed);
    device
        .wait_for("Result 5", |d| d.result() == UpdateResult::IntegrityFailure)
        .await;
    assert_eq!(device.counters().image_block_requests, 2);
}

#[test]
fn resolve_reference_follows_rfc3986() {
    let manifest = "coap://h:1/fw/ab/manifest";
    assert_eq!(
        resolve_reference(manifest, "image"),
        "coap://h:1/fw/ab/image"
    );
    assert_eq!(
        resolve_reference(manifest, "../cd/image"),
        "coap://h:1/fw/cd/image"
    );
    assert_eq!(resolve_reference(manifest, "/image"), "coap://h:1/image");
    assert_eq!(resolve_reference(manifest, "//m:2/x"), "coap://m:2/x");
    assert_eq!(resolve_reference(manifest, "coap://m/y"), "coap://m/y");
    // RFC 3986 §5.4.1, fragments dropped.
    let base = "http://a/b/c/d;p?q";
    for (reference, target) in [
        ("g", "http://a/b/c/g"),
        ("./g/", "http://a/b/c/g/"),
        ("?y", "http://a/b/c/d;p?y"),
        ("g?y#s", "http://a/b/c/g?y"),
        ("", "http://a/b/c/d;p?q"),
        (".", "http://a/b/c/"),
        ("..", "http://a/b/"),
        ("../..", "http://a/"),
        ("../../../g", "http://a/g"),
        ("/./g", "http://a/g"),
        ("g/../h", "http://a/b/c/h"),
        ("g;x=1/../y", "http://a/b/c/y"),
    ] {
        assert_eq!(resolve_reference(base, reference), target, "{reference}");
    }
}

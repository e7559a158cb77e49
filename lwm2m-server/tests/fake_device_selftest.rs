//! Checks of the scripted push-only device (tests/support/fake_device.rs) against a minimal
//! in-test server, so that a failing server test points at the server, not at its test double.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_core::block::{BlockValue, encode_uint_option};
use lwm2m_core::content;
use lwm2m_core::object5::{State, UpdateResult};
use suit_manifest::TrustAnchor;
use support::fake_device::{DeviceConfig, FakeDevice};
use testkit::release::{self, image};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// Just enough of an LwM2M server: answers Register (location /rd/x1) and sends requests to the
/// device.
struct MiniServer {
    socket: Arc<UdpSocket>,
    state: Arc<Mutex<ServerState>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ServerState {
    /// Where the last Register came from.
    device: Option<SocketAddr>,
    waiting: std::collections::HashMap<Vec<u8>, oneshot::Sender<Packet>>,
    next_mid: u16,
}

impl MiniServer {
    async fn start() -> MiniServer {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let state = Arc::new(Mutex::new(ServerState::default()));
        let task = tokio::spawn(serve(Arc::clone(&socket), Arc::clone(&state)));
        MiniServer {
            socket,
            state,
            task,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// The device's address, once it has registered.
    async fn device(&self) -> SocketAddr {
        testkit::wait::until("a registration", WAIT, async || {
            self.state.lock().unwrap().device
        })
        .await
    }

    /// Sends a CON request to the device and returns its response.
    async fn send(&self, mut request: Packet) -> Packet {
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
        timeout(WAIT, rx)
            .await
            .expect("the device answers")
            .unwrap()
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

    async fn execute(&self, path: &str) -> ResponseType {
        self.code(request(RequestType::Post, path)).await
    }

    /// Pushes `package` to /5/0/0 in 64-byte Block1 blocks; the code of each block.
    async fn push(&self, package: &[u8]) -> Vec<ResponseType> {
        let mut codes = Vec::new();
        for (num, chunk) in package.chunks(64).enumerate() {
            let more = (num + 1) * 64 < package.len();
            let mut put = request(RequestType::Put, "/5/0/0");
            put.add_option(
                CoapOption::ContentFormat,
                uint(content::OCTET_STREAM.into()),
            );
            let (block, len) = BlockValue::new(num as u32, more, 2).unwrap().encode();
            put.add_option(CoapOption::Block1, block[..len].to_vec());
            put.payload = chunk.to_vec();
            codes.push(self.code(put).await);
        }
        codes
    }
}

impl Drop for MiniServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: Arc<UdpSocket>, state: Arc<Mutex<ServerState>>) {
    let mut buf = [0u8; 2048];
    loop {
        let (len, from) = socket.recv_from(&mut buf).await.unwrap();
        let packet = Packet::from_bytes(&buf[..len]).unwrap();
        match packet.header.code {
            MessageClass::Request(method) => {
                let reply = answer(&state, &packet, method, from);
                socket.send_to(&reply, from).await.unwrap();
            }
            MessageClass::Response(_) => {
                let mut st = state.lock().unwrap();
                if let Some(waiting) = st.waiting.remove(packet.get_token()) {
                    let _ = waiting.send(packet);
                }
            }
            _ => {}
        }
    }
}

/// Register (and nothing else).
fn answer(
    state: &Mutex<ServerState>,
    request: &Packet,
    method: RequestType,
    from: SocketAddr,
) -> Vec<u8> {
    let mut response = Packet::new();
    response.header.set_type(MessageType::Acknowledgement);
    response.header.message_id = request.header.message_id;
    response.set_token(request.get_token().to_vec());
    let code = match (method, path_of(request).as_str()) {
        (RequestType::Post, "/rd") => {
            assert_eq!(request.payload, b"</1/0>,</3/0>,</5/0>");
            state.lock().unwrap().device = Some(from);
            response.add_option(CoapOption::LocationPath, b"rd".to_vec());
            response.add_option(CoapOption::LocationPath, b"x1".to_vec());
            ResponseType::Created
        }
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
    format!("/{}", segments.join("/"))
}

fn response_code(packet: &Packet) -> ResponseType {
    match packet.header.code {
        MessageClass::Response(code) => code,
        other => panic!("not a response: {other}"),
    }
}

fn uint(value: u32) -> Vec<u8> {
    let (bytes, len) = encode_uint_option(value);
    bytes[..len].to_vec()
}

/// A SUIT device trusting `key`, with stored sequence number 4.
fn suit_config(endpoint: &str, server: SocketAddr, key: &p256::ecdsa::SigningKey) -> DeviceConfig {
    DeviceConfig {
        trust: Some(TrustAnchor::from_key(*key.verifying_key())),
        sequence: 4,
        ..DeviceConfig::new(endpoint, server)
    }
}

#[tokio::test]
async fn it_registers_and_offers_push_only() {
    let server = MiniServer::start().await;
    let device = FakeDevice::start(DeviceConfig::new("selftest-reg", server.addr())).await;
    assert_eq!(server.device().await, device.addr());
    device
        .wait_for("a registration", |d| d.registrations() == 1)
        .await;
    assert_eq!(server.read("/5/0/3").await, "0");
    assert_eq!(server.read("/5/0/9").await, "1");
    assert_eq!(server.read("/3/0/3").await, "1.0.0");
    let mut put = request(RequestType::Put, "/5/0/1");
    put.payload = b"coap://127.0.0.1/fw/image".to_vec();
    assert_eq!(server.code(put).await, ResponseType::MethodNotAllowed);
    assert_eq!(device.state(), State::Idle);
}

#[tokio::test]
async fn refusals() {
    let server = MiniServer::start().await;
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
    assert_eq!(device.requests().len(), 5);
}

#[tokio::test]
async fn push_with_block1_then_reset() {
    let server = MiniServer::start().await;
    let device = FakeDevice::start(DeviceConfig::new("selftest-push", server.addr())).await;

    use ResponseType::{Changed, Continue};
    assert_eq!(
        server.push(&image(150, 1)).await,
        [Continue, Continue, Changed]
    );
    assert_eq!(device.state(), State::Downloaded);

    let mut reset = request(RequestType::Put, "/5/0/0");
    reset.payload = vec![0];
    assert_eq!(server.code(reset).await, Changed);
    assert_eq!(device.state(), State::Idle);
    assert_eq!(device.result(), UpdateResult::Initial);
}

#[tokio::test]
async fn a_pushed_plain_image_installs_on_execute_and_cancel_drops_a_package() {
    let server = MiniServer::start().await;
    let device = FakeDevice::start(DeviceConfig::new("selftest-plain", server.addr())).await;
    server.push(&image(1000, 2)).await;
    assert_eq!(server.execute("/5/0/2").await, ResponseType::Changed);
    assert_eq!(device.state(), State::Updating);
    device
        .wait_for("Result 1", |d| d.result() == UpdateResult::Success)
        .await;
    assert_eq!(
        (device.installed_version(), device.pkg_version()),
        ("2.0.0".into(), "2.0.0".into())
    );

    server.push(&image(1000, 3)).await;
    assert_eq!(device.state(), State::Downloaded);
    assert_eq!(server.execute("/5/0/10").await, ResponseType::Changed);
    assert_eq!(
        (device.state(), device.result()),
        (State::Idle, UpdateResult::Cancelled)
    );
    assert_eq!(
        server.execute("/5/0/10").await,
        ResponseType::MethodNotAllowed
    );
}

#[tokio::test]
async fn a_pushed_suit_envelope_is_verified_and_installs() {
    let key = release::key();
    let server = MiniServer::start().await;
    let device = FakeDevice::start(suit_config("selftest-suit", server.addr(), &key)).await;
    let img = image(300, 4);
    let package = release::integrated(&key, &img, 5, "2.1.0");
    assert_eq!(
        server.push(&package).await.last(),
        Some(&ResponseType::Changed)
    );
    assert_eq!(device.state(), State::Downloaded);
    assert_eq!(server.execute("/5/0/2").await, ResponseType::Changed);
    device
        .wait_for("Result 1", |d| d.result() == UpdateResult::Success)
        .await;
    assert_eq!(device.installed_version(), "2.1.0");
    assert_eq!(device.sequence(), 5);
    assert_eq!(server.read("/3/0/3").await, "2.1.0");
}

#[tokio::test]
async fn pushed_packages_it_must_refuse_end_idle_with_the_result() {
    let key = release::key();
    let stranger = release::key();
    let img = image(300, 5);
    let server = MiniServer::start().await;
    let device = FakeDevice::start(suit_config("selftest-reject", server.addr(), &key)).await;
    for (what, package, want) in [
        (
            "another key",
            release::integrated(&stranger, &img, 5, "2.1.0"),
            UpdateResult::IntegrityFailure,
        ),
        (
            "an older sequence number",
            release::integrated(&key, &img, 4, "0.9.0"),
            UpdateResult::UnsupportedPackage,
        ),
        (
            "not integrated",
            release::envelope(&key, &img, 5, "image"),
            UpdateResult::UnsupportedPackage,
        ),
        (
            "a plain image",
            img.clone(),
            UpdateResult::UnsupportedPackage,
        ),
    ] {
        server.push(&package).await;
        assert_eq!(
            (device.state(), device.result()),
            (State::Idle, want),
            "{what}"
        );
    }
    assert_eq!(device.sequence(), 4);
}

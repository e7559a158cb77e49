//! The device of the tests that need one against the real server: the real engine
//! (`lwm2m_client::engine`) on the real flash stack (embassy-boot slots and the persisted record,
//! in RAM), powered on through `lwm2m_client::power_on` (bootloader, trial self-test, confirm or
//! roll back) and driven by the crate's host driver over UDP on loopback. It reboots after every
//! Update, as the `lwm2m-client` binary does, so an update really changes the running image, and
//! an image whose self-test fails really rolls back (Update Result 8).
//!
//! ```text
//! Device::start(spec) ──▶ a thread of its own (the flash stack is not Sync) with a tokio runtime:
//!   factory image ─▶ loop { power_on ─▶ Engine::new ─▶ host::run over a Tap ─▶ Exit::Reboot }
//! Tap: the engine's socket. It records what went over the air (the server's requests and the
//!      device's answers, the device's own requests) and may lose datagrams on purpose (Faults).
//! Device (the test's handle): what the engine reported (State, Result, running version, sequence
//!      number, staged bytes) and what the Tap saw; dropping it powers the device off.
//! ```
//!
//! The faults are the network's, never the device's: the real engine decides everything itself.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use heapless::String as HString;
use lwm2m_client::engine::{Config, Engine, Event};
use lwm2m_client::firmware::suit::Identity;
use lwm2m_client::flash_platform::FlashPlatform;
use lwm2m_client::host::{self, Clock, Exit};
use lwm2m_client::platform::FirmwareRecord;
use lwm2m_client::power_on::{PowerOn, install_factory, power_on};
use lwm2m_client::storage::flash::HeapFlash;
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use lwm2m_client::storage::{persist, slots};
use lwm2m_core::object5::{State, UpdateResult};
use p256::ecdsa::VerifyingKey;
use suit_manifest::TrustAnchor;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::release::{self, CLASS, VENDOR};

/// 64 KiB slots: room for every test image, and a swap that still moves several pages.
const LAYOUT: Layout = match Layout::new(0, 64 * 1024, 16 * 1024) {
    Ok(layout) => layout,
    Err(_) => panic!("test device layout"),
};
/// Size of the factory image.
const FACTORY_LEN: usize = 4096;
/// How long the device is off between Update and the next power-on.
const REBOOT_TIME: Duration = Duration::from_millis(100);
/// How long [`Device::wait_for`] waits.
const WAIT_LIMIT: Duration = Duration::from_secs(15);

/// The engine's configuration for a test device: `endpoint` at `server`, built for
/// [`VENDOR`]/[`CLASS`], trusting `trust`; model `test`, serial `0001`, otherwise the defaults of
/// [`Config::new`].
pub fn config(endpoint: &str, server: SocketAddr, trust: &VerifyingKey) -> Config {
    let identity = Identity {
        vendor_id: VENDOR,
        class_id: CLASS,
    };
    let endpoint = HString::try_from(endpoint).expect("the endpoint name fits 64 bytes");
    let mut cfg = Config::new(endpoint, server, identity, TrustAnchor::from_key(*trust));
    cfg.model = HString::try_from("test").expect("fits");
    cfg.serial = HString::try_from("0001").expect("fits");
    cfg.seed = 0x5eed_0001;
    cfg
}

/// Datagrams the network loses on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The device's requests for `/fw/...` never arrive: the download starts (State
    /// Downloading) and does not get anywhere until the engine's retries run out.
    pub silent_firmware_host: bool,
    /// The device's answer to the first Execute Update (/5/0/2) is lost; the device reboots into
    /// the new image at once, so the server's retransmission meets the updated device.
    pub lose_first_update_answer: bool,
}

/// How a device is built and what it starts with.
#[derive(Clone, Debug)]
pub struct Spec {
    pub config: Config,
    /// The version of the factory image in its active slot.
    pub factory_version: String,
    /// The Object 5 record persisted before the first power-on (say, a stored sequence number or
    /// the Result 1 of an earlier update); `None`: a new device.
    pub record: Option<FirmwareRecord>,
    /// Come back from another UDP port after each reboot (as behind a NAT).
    pub new_port_on_reboot: bool,
    pub faults: Faults,
}

impl Spec {
    /// A new device with factory image 1.0.0, on one port for life, on a perfect network.
    pub fn new(config: Config) -> Spec {
        Spec {
            config,
            factory_version: "1.0.0".into(),
            record: None,
            new_port_on_reboot: false,
            faults: Faults::default(),
        }
    }

    /// Queue mode: the radio is on only for `awake` after the device last sent something; it
    /// registers with lifetime `lifetime_s`, and so sends an Update well before that runs out
    /// (every second for a lifetime of 2 s).
    pub fn in_queue_mode(mut self, awake: Duration, lifetime_s: u32) -> Spec {
        self.config.queue_mode = true;
        self.config.awake_window =
            lwm2m_client::time::Duration::from_millis(awake.as_millis() as u64);
        self.config.lifetime_s = lifetime_s;
        self
    }

    /// Queue mode for a server set up with [`crate::server::sleepy_devices`]: awake 300 ms after
    /// it last sent, an Update every second.
    pub fn sleepy(self) -> Spec {
        self.in_queue_mode(Duration::from_millis(300), 2)
    }

    /// A record with the stored anti-rollback sequence number `sequence`, State Idle and
    /// `result`.
    pub fn with_record(mut self, sequence: u64, result: UpdateResult) -> Spec {
        self.record = Some(FirmwareRecord {
            accepted_sequence: sequence,
            result,
            ..FirmwareRecord::default()
        });
        self
    }
}

/// One request datagram from the network and the device's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub method: RequestType,
    /// The Uri-Path, e.g. `/5/0/3`.
    pub path: String,
    /// `None`: not answered (asleep, or off).
    pub code: Option<ResponseType>,
    /// It arrived while the device was off (rebooting): lost, no engine saw it.
    pub while_off: bool,
    /// A copy with the same message id from the same peer arrived before: a CoAP
    /// retransmission.
    pub retransmission: bool,
    peer: SocketAddr,
    message_id: u16,
}

/// What a download fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    /// A SUIT envelope (`.../manifest`).
    Manifest,
    /// The firmware image (`.../image`).
    Image,
}

/// The device's block-wise GETs of one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub kind: TransferKind,
    /// `coap://host:port/path` as requested.
    pub uri: String,
    /// Block requests, one per message (retransmissions not counted).
    pub block_requests: u32,
}

/// Running totals of what went over the air.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Registers answered 2.01.
    pub registrations: u32,
    /// Updates answered 2.04.
    pub updates: u32,
    pub manifest_block_requests: u32,
    pub image_block_requests: u32,
}

/// One of the device's own requests.
#[derive(Clone, Debug)]
struct Sent {
    to: SocketAddr,
    message_id: u16,
    token: Vec<u8>,
    method: RequestType,
    path: String,
}

/// Everything the device thread shares with the handle.
#[derive(Default)]
struct View {
    endpoint: String,
    addr: Option<SocketAddr>,
    boots: u32,
    running_version: String,
    state: Option<State>,
    result: Option<UpdateResult>,
    sequence: u64,
    staged_bytes: u32,
    /// Why the device stopped for good (a flash failure at power-on).
    bricked: Option<String>,
    requests: Vec<RequestRecord>,
    sent: Vec<Sent>,
    counters: Counters,
    update_answer_lost: bool,
}

impl View {
    /// A datagram from the network (`off`: lost to a device that is off). Requests are
    /// recorded; responses to the device's own requests are counted.
    fn received(&mut self, from: SocketAddr, bytes: &[u8], off: bool) {
        let Ok(packet) = Packet::from_bytes(bytes) else {
            return;
        };
        let message_id = packet.header.message_id;
        match packet.header.code {
            MessageClass::Request(method) => {
                let retransmission = self
                    .requests
                    .iter()
                    .any(|r| r.peer == from && r.message_id == message_id);
                self.requests.push(RequestRecord {
                    method,
                    path: uri_path(&packet),
                    code: None,
                    while_off: off,
                    retransmission,
                    peer: from,
                    message_id,
                });
            }
            MessageClass::Response(code) if !off => {
                let Some(sent) = self
                    .sent
                    .iter()
                    .rev()
                    .find(|s| s.to == from && s.token == packet.get_token())
                else {
                    return;
                };
                match (sent.method, code) {
                    (RequestType::Post, ResponseType::Created) if sent.path == "/rd" => {
                        self.counters.registrations += 1;
                    }
                    (RequestType::Post, ResponseType::Changed) if sent.path.starts_with("/rd/") => {
                        self.counters.updates += 1;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// A datagram the device sends; false if the network loses it.
    fn sending(&mut self, to: SocketAddr, bytes: &[u8], faults: Faults) -> bool {
        let Ok(packet) = Packet::from_bytes(bytes) else {
            return true;
        };
        let message_id = packet.header.message_id;
        match packet.header.code {
            MessageClass::Request(method) => {
                let path = uri_path(&packet);
                // A retransmission repeats the message ID and the token; a new boot may reuse
                // an ID of the last one with a new token.
                let repeated = self.sent.iter().any(|s| {
                    s.to == to && s.message_id == message_id && s.token == packet.get_token()
                });
                let firmware = path.starts_with("/fw/");
                if !repeated {
                    if firmware && method == RequestType::Get {
                        if path.ends_with("/manifest") {
                            self.counters.manifest_block_requests += 1;
                        } else if path.ends_with("/image") {
                            self.counters.image_block_requests += 1;
                        }
                    }
                    self.sent.push(Sent {
                        to,
                        message_id,
                        token: packet.get_token().to_vec(),
                        method,
                        path,
                    });
                }
                !(faults.silent_firmware_host && firmware)
            }
            MessageClass::Response(code)
                if packet.header.get_type() == MessageType::Acknowledgement =>
            {
                let Some(request) = self
                    .requests
                    .iter_mut()
                    .rev()
                    .find(|r| r.peer == to && r.message_id == message_id && !r.while_off)
                else {
                    return true;
                };
                request.code.get_or_insert(code);
                let lose = faults.lose_first_update_answer
                    && !self.update_answer_lost
                    && request.method == RequestType::Post
                    && request.path == "/5/0/2"
                    && code == ResponseType::Changed;
                self.update_answer_lost |= lose;
                !lose
            }
            _ => true,
        }
    }

    fn transfers(&self) -> Vec<Transfer> {
        let mut out: Vec<Transfer> = Vec::new();
        for s in &self.sent {
            let kind = if !s.path.starts_with("/fw/") || s.method != RequestType::Get {
                continue;
            } else if s.path.ends_with("/manifest") {
                TransferKind::Manifest
            } else {
                TransferKind::Image
            };
            let uri = format!("coap://{}{}", s.to, s.path);
            match out.iter_mut().find(|t| t.uri == uri) {
                Some(t) => t.block_requests += 1,
                None => out.push(Transfer {
                    kind,
                    uri,
                    block_requests: 1,
                }),
            }
        }
        out
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recent = self.requests.len().saturating_sub(10);
        f.debug_struct("Device")
            .field("endpoint", &self.endpoint)
            .field("addr", &self.addr)
            .field("boots", &self.boots)
            .field("running_version", &self.running_version)
            .field("state", &self.state)
            .field("result", &self.result)
            .field("sequence", &self.sequence)
            .field("staged_bytes", &self.staged_bytes)
            .field("bricked", &self.bricked)
            .field("counters", &self.counters)
            .field("last_requests", &&self.requests[recent..])
            .finish()
    }
}

type Shared = Arc<Mutex<View>>;

fn lock(view: &Mutex<View>) -> MutexGuard<'_, View> {
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The engine's socket: a UDP socket, seen and filtered by the test.
struct Tap<'a> {
    socket: &'a UdpSocket,
    view: &'a Mutex<View>,
    faults: Faults,
}

impl host::Socket for Tap<'_> {
    async fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        if lock(self.view).sending(peer, buf, self.faults) {
            self.socket.send_to(buf, peer).await?;
        }
        Ok(())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.recv_from(buf).await?;
        lock(self.view).received(from, buf.get(..n).unwrap_or(&[]), false);
        Ok((n, from))
    }
}

/// A running device; dropping it powers it off.
pub struct Device {
    view: Shared,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Device {
    /// Builds the device (factory image, record), binds its socket on 127.0.0.1 and powers it
    /// on; it registers by itself.
    pub async fn start(spec: Spec) -> Device {
        let view: Shared = Arc::new(Mutex::new(View {
            endpoint: spec.config.endpoint.to_string(),
            ..View::default()
        }));
        let (stop, stopped) = oneshot::channel();
        let (ready, bound) = oneshot::channel();
        let shared = Arc::clone(&view);
        let thread = std::thread::Builder::new()
            .name(format!("device {}", spec.config.endpoint))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the device");
                runtime.block_on(async move {
                    tokio::select! {
                        biased;
                        _ = stopped => {}
                        _ = run(spec, &shared, ready) => {}
                    }
                });
            })
            .expect("a thread for the device");
        bound.await.expect("the device came up");
        Device {
            view,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn view(&self) -> MutexGuard<'_, View> {
        lock(&self.view)
    }

    /// Firmware Version (/3/0/3): the version of the image it runs since its last power-on.
    pub fn installed_version(&self) -> String {
        self.view().running_version.clone()
    }

    /// State (/5/0/3) as the engine last reported it.
    pub fn state(&self) -> State {
        self.view().state.unwrap_or(State::Idle)
    }

    /// Update Result (/5/0/5) as the engine last reported it.
    pub fn result(&self) -> UpdateResult {
        self.view().result.unwrap_or(UpdateResult::Initial)
    }

    /// The persisted anti-rollback sequence number.
    pub fn sequence(&self) -> u64 {
        self.view().sequence
    }

    /// Image bytes staged by the current download.
    pub fn staged_bytes(&self) -> u32 {
        self.view().staged_bytes
    }

    /// Power-ons so far (1 after the start).
    pub fn boots(&self) -> u32 {
        self.view().boots
    }

    /// Its socket's address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.view().addr
    }

    /// Every request from the network, in order, with the device's answer.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.view().requests.clone()
    }

    /// Every download, in order of the first block request.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.view().transfers()
    }

    pub fn counters(&self) -> Counters {
        self.view().counters
    }

    /// Waits until `done` holds; panics after 15 s naming `what` and showing the device.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Device) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {self:?}"
            );
            tokio::time::sleep(crate::wait::POLL).await;
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().fmt(f)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A seed per device and boot: the server deduplicates by message id, so a rebooted device must
/// not repeat the ids of its previous boot.
fn boot_seed(endpoint: &str, boot: u32) -> u32 {
    static DEVICES: AtomicU32 = AtomicU32::new(0);
    let salt = endpoint.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    salt ^ DEVICES.fetch_add(0x7f4a_7c15, Ordering::Relaxed) ^ boot.wrapping_mul(0x9e37_79b9)
}

/// The device's life: factory set-up, then power-on after power-on until it is dropped.
async fn run(spec: Spec, view: &Mutex<View>, ready: oneshot::Sender<()>) {
    let flash = DeviceFlash::new(HeapFlash::new(LAYOUT.end() as usize), LAYOUT)
        .expect("the layout fits the flash");
    install_factory(
        &flash,
        &release::firmware(&spec.factory_version, FACTORY_LEN),
    )
    .expect("the factory image is written");
    if let Some(record) = &spec.record {
        persist::store(&flash, record).expect("the record is stored");
    }
    let mut socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    lock(view).addr = socket.local_addr().ok();
    let _ = ready.send(());
    let endpoint = spec.config.endpoint.to_string();
    let mut boot = 0u32;
    loop {
        boot = boot.wrapping_add(1);
        let info = match power_on(&flash) {
            Ok(PowerOn::Run(info)) => info,
            // The trial image failed its self-test: the next power-on reverts it.
            Ok(PowerOn::SelfTestFailed(_)) => continue,
            Err(e) => {
                lock(view).bricked = Some(format!("power-on: {e:?}"));
                return;
            }
        };
        let mut word = slots::StateWord::new();
        let platform = match FlashPlatform::new(&flash, &mut word) {
            Ok(p) => p,
            Err(e) => {
                lock(view).bricked = Some(format!("staging: {e:?}"));
                return;
            }
        };
        let running_version = info.running_version.to_string();
        let mut cfg = spec.config.clone();
        cfg.seed = boot_seed(&endpoint, boot);
        let clock = Clock::new();
        let mut engine = Engine::new(cfg, platform, info, clock.now());
        let stored = || {
            persist::load(&flash)
                .ok()
                .flatten()
                .map_or(0, |r| r.accepted_sequence)
        };
        {
            let mut v = lock(view);
            v.boots = boot;
            v.running_version = running_version;
            v.state = Some(engine.state());
            v.result = Some(engine.result());
            v.sequence = stored();
            v.staged_bytes = 0;
        }
        // The radio comes up with the engine: what arrived while the device was off (the
        // reboot, the bootloader's swap, the self-test) is lost.
        let mut scratch = [0u8; 2048];
        while let Ok((n, from)) = socket.try_recv_from(&mut scratch) {
            lock(view).received(from, scratch.get(..n).unwrap_or(&[]), true);
        }
        let tap = Tap {
            socket: &socket,
            view,
            faults: spec.faults,
        };
        let exit = host::run(&mut engine, &tap, &clock, |e| {
            let mut v = lock(view);
            match e {
                Event::Firmware { state, result } => {
                    v.state = Some(*state);
                    v.result = Some(*result);
                    v.sequence = stored();
                }
                Event::Progress { bytes, .. } => v.staged_bytes = *bytes,
                Event::Registered | Event::Reboot | Event::PlatformError => {}
            }
            std::ops::ControlFlow::Continue(())
        })
        .await;
        drop((engine, tap));
        if exit != Exit::Reboot {
            lock(view).bricked = Some(format!("the driver stopped: {exit:?}"));
            return;
        }
        tokio::time::sleep(REBOOT_TIME).await;
        if spec.new_port_on_reboot {
            // Bound before the old socket closes, so the port differs.
            let fresh = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            socket = fresh;
            lock(view).addr = socket.local_addr().ok();
        }
    }
}

fn uri_path(packet: &Packet) -> String {
    let segments = packet.get_option(CoapOption::UriPath).into_iter().flatten();
    let segments: Vec<_> = segments.map(|s| String::from_utf8_lossy(s)).collect();
    format!("/{}", segments.join("/"))
}

//! A scripted LwM2M 1.1 device for the server's integration tests, until the real `lwm2m-client`
//! runs on a host. It speaks CoAP over a real UDP socket on 127.0.0.1 and implements Object 5
//! (Firmware Update) as LwM2M 1.1 and DESIGN.md describe it, with failures on demand
//! ([`Behaviour`]).
//!
//! ```text
//! FakeDevice::start(config)
//!   ├─ registration task: Register, then Update every `update_interval` (Register again on 4.04)
//!   ├─ receiver task:     the server's requests, responses to the device's own requests, ACK/RST
//!   ├─ download task:     after a Package URI write (manifest, checks, image, all with Block2)
//!   └─ install task:      after Execute Update (may "reboot" onto a new port)
//! DeviceHandle (Clone): reads the state and the records; stop, restart_on_new_port, send_update_now
//! ```
//!
//! State changes go through `lwm2m_core::object5::transition`, so the device refuses exactly what
//! the shared state machine refuses, with the CoAP code it assigns.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::pin::Pin;
use std::slice;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_core::Path;
use lwm2m_core::block::{BlockValue, decode_uint_option, encode_uint_option, szx_for_size};
use lwm2m_core::content::senml_cbor::{encode_multiple_resource, encode_single};
use lwm2m_core::content::tlv::TlvWriter;
use lwm2m_core::content::{self, Value, text};
use lwm2m_core::object5::{
    self, DeliveryMethod, Event, Refusal, Scheme, State, UpdateResult, transition,
    validate_package_uri,
};
use lwm2m_core::registration::{Binding, RegisterParams, Version};
use suit_manifest::{Sha256Digest, TrustAnchor};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::{sleep, timeout};

/// Retransmissions of a CON request after the first transmission (RFC 7252 MAX_RETRANSMIT).
const MAX_RETRANSMIT: u32 = 4;
/// How long to wait for a separate response after the server's empty ACK.
const SEPARATE_RESPONSE_WAIT: Duration = Duration::from_secs(5);
/// How long installing takes (Normal, StayUpOnUpdate, FailUpdate).
const INSTALL_TIME: Duration = Duration::from_millis(200);
/// How long the device is off while it reboots (RebootOnUpdate).
const REBOOT_TIME: Duration = Duration::from_millis(300);
/// Requests remembered for answering retransmissions without running them twice.
const DEDUP_CAPACITY: usize = 32;
/// The objects the device registers.
const OBJECT_LINKS: &str = "</1/0>,</3/0>,</5/0>";
/// PkgName (/5/0/6).
const PKG_NAME: &str = "otafleet-fake";
/// How long [`DeviceHandle::wait_for`] waits, and how often it looks.
const WAIT_LIMIT: Duration = Duration::from_secs(15);
const WAIT_POLL: Duration = Duration::from_millis(20);

/// How the device is set up. [`DeviceConfig::new`] gives the defaults; change fields with struct
/// update syntax.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Endpoint client name (`ep`).
    pub endpoint: String,
    /// Where it registers (and sends Updates).
    pub server: SocketAddr,
    /// Registration lifetime (`lt`) in seconds.
    pub lifetime_s: u32,
    /// Register with `Q`, and answer only while awake: within `awake_window` after the device last
    /// sent a datagram. Datagrams that arrive while it sleeps are dropped.
    pub queue_mode: bool,
    /// See `queue_mode`.
    pub awake_window: Duration,
    /// Period of the Update (and of the Register retry while it has no registration).
    pub update_interval: Duration,
    /// Delivery Method (/5/0/9): 0 pull, 1 push, 2 both. Writes for a method it lacks get 4.05.
    pub delivery: u8,
    /// Protocol Support (/5/0/8) instances. The device can only download `coap://` (0): any other
    /// scheme ends with Unsupported Protocol (9), announced or not.
    pub protocols: Vec<u8>,
    /// The key SUIT manifests must be signed with. `None`: a device that does not speak SUIT and
    /// takes the Package URI (or the pushed package) as the plain image.
    pub trust: Option<TrustAnchor>,
    /// The vendor-id a manifest must name.
    pub vendor_id: [u8; 16],
    /// The class-id a manifest must name.
    pub class_id: [u8; 16],
    /// Firmware Version (/3/0/3) at start.
    pub installed_version: String,
    /// The version a plain (non-SUIT) image installs as.
    pub plain_version: String,
    /// Stored anti-rollback sequence number: a manifest must carry a higher one.
    pub sequence: u64,
    /// Block2 size it asks for when downloading (a power of two, 16..=1024).
    pub block_size: usize,
    /// Staging slot size: a larger image or pushed package gives Not enough flash (2); a push
    /// beyond it is answered 4.13 with Size1.
    pub max_package_size: usize,
    /// Update Result (/5/0/5) at start (e.g. 1, left over from an earlier update).
    pub initial_result: u8,
    /// Retransmission timeout of its own CON requests (RFC 7252 ACK_TIMEOUT, without the doubling
    /// and randomisation): a server that never answers is given up after 5 × `ack_timeout`.
    pub ack_timeout: Duration,
    /// Failure injection.
    pub behaviour: Behaviour,
}

impl DeviceConfig {
    /// A plain-image device that registers with `server` as `endpoint`: lifetime 60 s, no queue
    /// mode, pull and push over CoAP, version 1.0.0 (a plain image installs as 2.0.0), 64-byte
    /// blocks, a 64 KiB slot, ACK timeout 2 s, an Update every 30 s.
    pub fn new(endpoint: &str, server: SocketAddr) -> DeviceConfig {
        DeviceConfig {
            endpoint: endpoint.to_owned(),
            server,
            lifetime_s: 60,
            queue_mode: false,
            awake_window: Duration::from_secs(2),
            update_interval: Duration::from_secs(30),
            delivery: DeliveryMethod::Both.code(),
            protocols: vec![object5::ProtocolSupport::Coap.code()],
            trust: None,
            vendor_id: [0; 16],
            class_id: [0; 16],
            installed_version: "1.0.0".to_owned(),
            plain_version: "2.0.0".to_owned(),
            sequence: 0,
            block_size: 64,
            max_package_size: 64 * 1024,
            initial_result: 0,
            ack_timeout: Duration::from_secs(2),
            behaviour: Behaviour::Normal,
        }
    }
}

/// Failure injection: how the device deviates from a healthy update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Downloads, verifies and installs (like `StayUpOnUpdate`).
    #[default]
    Normal,
    /// Installing fails: State Idle, Result 8 (the package is gone), version unchanged.
    FailUpdate,
    /// Flips a byte of the image it stores, so the integrity check fails: Result 5. (A plain
    /// image has no digest; the device then reports 5 as if its own check caught it.)
    CorruptDownload,
    /// After Execute: closes its socket, is off for ~300 ms, comes back on a new port and
    /// registers again; the server can only learn State 0, Result 1 from then on. Observations
    /// are lost. The new state is set at boot, just before the Register (as a real device reads
    /// its persisted result), so a test that watches the handle should wait for
    /// `counters().registrations` to go up.
    RebootOnUpdate,
    /// After Execute: State 3 for ~200 ms, then State 0, Result 1, without re-registering.
    StayUpOnUpdate,
    /// Accepts the Package URI and goes Downloading, but never requests a block.
    IgnoreDownload,
    /// Installs like `StayUpOnUpdate`, but the 2.04 to the first Execute Update is lost and the
    /// device forgets it answered (as one that rebooted at once would): the server's
    /// retransmission meets the updated device and gets 4.05.
    LoseUpdateAnswer,
}

/// One request the device received and what it answered (`None`: dropped while asleep).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub method: RequestType,
    /// The Uri-Path, e.g. `/5/0/3`.
    pub path: String,
    pub code: Option<ResponseType>,
}

/// What a download fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    /// A SUIT envelope.
    Manifest,
    /// The firmware image (or, for a plain device, the package).
    Image,
}

/// One block-wise download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub kind: TransferKind,
    pub uri: String,
    /// Block requests sent, one per block (retransmissions not counted).
    pub block_requests: u32,
    /// Bytes received so far.
    pub bytes: usize,
}

/// Running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Registers answered 2.01.
    pub registrations: u32,
    /// Updates answered 2.04.
    pub updates: u32,
    pub manifest_block_requests: u32,
    pub image_block_requests: u32,
}

/// A running device; dropping it stops it. Derefs to its [`DeviceHandle`].
pub struct FakeDevice {
    handle: DeviceHandle,
}

impl FakeDevice {
    /// Binds a socket on 127.0.0.1 and starts registering in the background.
    pub async fn start(config: DeviceConfig) -> FakeDevice {
        assert!(
            szx_for_size(config.block_size).is_ok(),
            "block_size must be a power of two in 16..=1024"
        );
        let shared = Arc::new(Shared::new(config));
        shared.power_on().await;
        shared.spawn(Arc::clone(&shared).run());
        FakeDevice {
            handle: DeviceHandle { shared },
        }
    }

    /// A handle that outlives this borrow (it does not keep the device running).
    pub fn handle(&self) -> DeviceHandle {
        self.handle.clone()
    }
}

impl Deref for FakeDevice {
    type Target = DeviceHandle;
    fn deref(&self) -> &DeviceHandle {
        &self.handle
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.handle.stop();
    }
}

/// A view of the device and its controls.
#[derive(Clone)]
pub struct DeviceHandle {
    shared: Arc<Shared>,
}

impl DeviceHandle {
    /// State (/5/0/3).
    pub fn state(&self) -> State {
        self.shared.lock().fw.state
    }

    /// Update Result (/5/0/5).
    pub fn result(&self) -> UpdateResult {
        self.shared.lock().fw.result
    }

    /// PkgVersion (/5/0/7).
    pub fn pkg_version(&self) -> String {
        self.shared.lock().fw.pkg_version.clone()
    }

    /// Firmware Version (/3/0/3).
    pub fn installed_version(&self) -> String {
        self.shared.lock().fw.installed_version.clone()
    }

    /// The stored anti-rollback sequence number.
    pub fn sequence(&self) -> u64 {
        self.shared.lock().fw.sequence
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Every download, in order.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.shared.lock().transfers.clone()
    }

    pub fn counters(&self) -> Counters {
        self.shared.lock().counters
    }

    /// The socket's address; `None` while it is off (rebooting or stopped).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.shared.addr()
    }

    /// The registration's location (`/rd/x1`), once registered.
    pub fn location(&self) -> Option<String> {
        let st = self.shared.lock();
        st.location
            .as_ref()
            .map(|segments| format!("/{}", segments.join("/")))
    }

    /// Powers the device off: no more datagrams in or out, no deregistration.
    pub fn stop(&self) {
        let mut st = self.shared.lock();
        st.stopped = true;
        for task in st.tasks.drain(..) {
            task.abort();
        }
        st.radio.socket = None;
    }

    /// Moves to a new port without re-registering (a NAT rebinding): the next Update comes from
    /// the new address. Returns it.
    pub async fn restart_on_new_port(&self) -> SocketAddr {
        self.shared.power_on().await
    }

    /// Sends an Update now (or Registers, as the periodic timer would); true when the server took
    /// it.
    pub async fn send_update_now(&self) -> bool {
        self.shared.update_or_register().await
    }

    /// Waits until `done` holds; panics after 15 s naming `what` and showing the device.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&DeviceHandle) -> bool) {
        let deadline = Instant::now() + WAIT_LIMIT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {self:?}"
            );
            sleep(WAIT_POLL).await;
        }
    }
}

impl fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        let recent = st.requests.len().saturating_sub(10);
        f.debug_struct("FakeDevice")
            .field("endpoint", &self.shared.config.endpoint)
            .field(
                "addr",
                &st.radio.socket.as_ref().and_then(|s| s.local_addr().ok()),
            )
            .field("location", &st.location)
            .field("state", &st.fw.state)
            .field("result", &st.fw.result)
            .field("installed_version", &st.fw.installed_version)
            .field("pkg_version", &st.fw.pkg_version)
            .field("sequence", &st.fw.sequence)
            .field("counters", &st.counters)
            .field("last_requests", &&st.requests[recent..])
            .finish()
    }
}

/// Everything the tasks and handles share.
struct Shared {
    config: DeviceConfig,
    state: Mutex<DeviceState>,
    /// Held for a whole Register or Update exchange, and across a reboot.
    registration: tokio::sync::Mutex<()>,
}

struct DeviceState {
    radio: Radio,
    fw: Firmware,
    /// Location-Path segments of the registration.
    location: Option<Vec<String>>,
    observers: Vec<Observer>,
    requests: Vec<RequestRecord>,
    transfers: Vec<Transfer>,
    counters: Counters,
    tasks: Vec<AbortHandle>,
    stopped: bool,
}

/// The socket and the CoAP message layer.
struct Radio {
    socket: Option<Arc<UdpSocket>>,
    receiver: Option<AbortHandle>,
    last_sent: Instant,
    next_mid: u16,
    next_token: u32,
    observe_seq: u32,
    /// Own requests waiting for an answer, by token: (message id, where the answer goes).
    requests: HashMap<Vec<u8>, (u16, mpsc::UnboundedSender<Answer>)>,
    /// CON notifications not yet acknowledged, by message id: the observation (peer, token).
    notifications: HashMap<u16, (SocketAddr, Vec<u8>)>,
    /// Recent answers, by (peer, message id) of the request.
    answered: VecDeque<((SocketAddr, u16), Vec<u8>)>,
    /// LoseUpdateAnswer: the first Execute Update's answer is already lost.
    update_answer_lost: bool,
}

impl Radio {
    fn next_mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    fn next_token(&mut self) -> Vec<u8> {
        self.next_token = self.next_token.wrapping_add(1);
        self.next_token.to_be_bytes().to_vec()
    }

    /// Observe option values are 24 bits.
    fn next_observe(&mut self) -> u32 {
        self.observe_seq = (self.observe_seq + 1) & 0xFF_FFFF;
        self.observe_seq
    }
}

/// Object 5 and the installed firmware.
struct Firmware {
    state: State,
    result: UpdateResult,
    uri: String,
    pkg_version: String,
    installed_version: String,
    sequence: u64,
    /// Bumped whenever a download starts or is abandoned, so a stale download task stops.
    download_id: u64,
    /// The Block1 push being received.
    push: Option<Vec<u8>>,
    /// A verified package waiting for Execute Update.
    staged: Option<Package>,
}

impl Firmware {
    /// Drops whatever is downloading, being pushed or staged.
    fn forget_package(&mut self) {
        self.download_id += 1;
        self.push = None;
        self.staged = None;
    }

    fn install_staged(&mut self) {
        if let Some(package) = self.staged.take() {
            self.installed_version.clone_from(&package.version);
            self.pkg_version = package.version;
            if let Some(sequence) = package.sequence {
                self.sequence = sequence;
            }
        }
    }
}

/// A verified package.
struct Package {
    version: String,
    /// The manifest's sequence number; `None` for a plain image.
    sequence: Option<u64>,
}

#[derive(Clone)]
struct Observer {
    peer: SocketAddr,
    token: Vec<u8>,
    /// /5/0/3 or /5/0/5.
    resource: u16,
    accept: Option<u16>,
}

/// What comes back for one of the device's own CON requests.
enum Answer {
    /// An empty ACK: the response will come separately.
    Ack,
    Reset,
    Response(Packet),
}

/// A datagram to send.
struct Datagram {
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// How the device handled a request: the response, and what the request set off.
struct Handled {
    code: ResponseType,
    options: Vec<(CoapOption, Vec<u8>)>,
    content: Option<(u16, Vec<u8>)>,
    /// Notifications, sent after the response.
    notify: Vec<Datagram>,
    then: Then,
}

/// Work that starts once the response is out.
enum Then {
    Nothing,
    Download { id: u64, uri: String },
    Install,
}

impl Handled {
    fn code(code: ResponseType) -> Handled {
        Handled {
            code,
            options: Vec::new(),
            content: None,
            notify: Vec::new(),
            then: Then::Nothing,
        }
    }

    fn refused(refusal: Refusal) -> Handled {
        match MessageClass::from(refusal.coap_code()) {
            MessageClass::Response(code) => Handled::code(code),
            _ => Handled::code(ResponseType::InternalServerError),
        }
    }

    fn changed(notify: Vec<Datagram>) -> Handled {
        Handled {
            notify,
            ..Handled::code(ResponseType::Changed)
        }
    }

    fn option(mut self, option: CoapOption, value: Vec<u8>) -> Handled {
        self.options.push((option, value));
        self
    }
}

impl Shared {
    fn new(config: DeviceConfig) -> Shared {
        let result =
            UpdateResult::try_from(config.initial_result).expect("initial_result is 0..=11");
        let fw = Firmware {
            state: State::Idle,
            result,
            uri: String::new(),
            pkg_version: String::new(),
            installed_version: config.installed_version.clone(),
            sequence: config.sequence,
            download_id: 0,
            push: None,
            staged: None,
        };
        let radio = Radio {
            socket: None,
            receiver: None,
            last_sent: Instant::now(),
            next_mid: 0,
            next_token: 0,
            observe_seq: 0,
            requests: HashMap::new(),
            notifications: HashMap::new(),
            answered: VecDeque::new(),
            update_answer_lost: false,
        };
        Shared {
            config,
            state: Mutex::new(DeviceState {
                radio,
                fw,
                location: None,
                observers: Vec::new(),
                requests: Vec::new(),
                transfers: Vec::new(),
                counters: Counters::default(),
                tasks: Vec::new(),
                stopped: false,
            }),
            registration: tokio::sync::Mutex::new(()),
        }
    }

    /// The state, even after a panic elsewhere (`stop` runs in `Drop`).
    fn lock(&self) -> MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns a task that [`DeviceHandle::stop`] aborts.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
        let handle = tokio::spawn(task).abort_handle();
        let mut st = self.lock();
        if st.stopped {
            handle.abort();
        } else {
            st.tasks.retain(|t| !t.is_finished());
            st.tasks.push(handle.clone());
        }
        handle
    }

    // ---- Power and socket ----

    fn addr(&self) -> Option<SocketAddr> {
        let st = self.lock();
        st.radio.socket.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Binds a socket on a port it has not used just before and starts receiving on it; the old
    /// socket, if any, closes.
    async fn power_on(self: &Arc<Self>) -> SocketAddr {
        let socket = Arc::new(bind_new_port(self.addr()).await);
        let addr = socket.local_addr().expect("bound socket has an address");
        let receiver = self.spawn(Arc::clone(self).receive(Arc::clone(&socket)));
        let mut st = self.lock();
        if let Some(old) = st.radio.receiver.replace(receiver) {
            old.abort();
        }
        st.radio.socket = Some(socket);
        addr
    }

    /// Closes the socket and forgets everything a reboot loses: exchanges and observations.
    fn power_off(&self) {
        let mut st = self.lock();
        if let Some(receiver) = st.radio.receiver.take() {
            receiver.abort();
        }
        st.radio.socket = None;
        st.radio.requests.clear();
        st.radio.notifications.clear();
        st.radio.answered.clear();
        st.observers.clear();
    }

    /// In queue mode: true when the awake window since the last datagram it sent has passed.
    fn asleep(&self) -> bool {
        self.config.queue_mode && self.lock().radio.last_sent.elapsed() > self.config.awake_window
    }

    /// Sends one datagram. A failed send is a lost datagram, as on a radio.
    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        let socket = {
            let mut st = self.lock();
            st.radio.last_sent = Instant::now();
            st.radio.socket.clone()
        };
        if let Some(socket) = socket {
            let _ = socket.send_to(bytes, to).await;
        }
    }

    async fn send_all(&self, datagrams: Vec<Datagram>) {
        for d in datagrams {
            self.send(&d.bytes, d.to).await;
        }
    }

    // ---- Own requests ----

    /// Sends `packet` as a CON request and waits for its response (piggybacked or separate),
    /// retransmitting every `ack_timeout` up to [`MAX_RETRANSMIT`] times. `None`: no response, or
    /// an RST.
    async fn request(&self, to: SocketAddr, mut packet: Packet) -> Option<Packet> {
        let (answers_tx, mut answers) = mpsc::unbounded_channel();
        let token = {
            let mut st = self.lock();
            let mid = st.radio.next_mid();
            let token = st.radio.next_token();
            st.radio.requests.insert(token.clone(), (mid, answers_tx));
            packet.header.message_id = mid;
            token
        };
        packet.header.set_type(MessageType::Confirmable);
        packet.set_token(token.clone());
        let bytes = packet.to_bytes().expect("request fits a datagram");
        let answer = self.transmit(&bytes, to, &mut answers).await;
        self.lock().radio.requests.remove(&token);
        match answer {
            Some(Answer::Response(response)) => Some(response),
            _ => None,
        }
    }

    async fn transmit(
        &self,
        bytes: &[u8],
        to: SocketAddr,
        answers: &mut mpsc::UnboundedReceiver<Answer>,
    ) -> Option<Answer> {
        for _ in 0..=MAX_RETRANSMIT {
            self.send(bytes, to).await;
            match timeout(self.config.ack_timeout, answers.recv()).await {
                Err(_elapsed) => continue,
                Ok(Some(Answer::Ack)) => {
                    let separate = async {
                        loop {
                            match answers.recv().await {
                                Some(Answer::Ack) => continue,
                                other => return other,
                            }
                        }
                    };
                    return timeout(SEPARATE_RESPONSE_WAIT, separate)
                        .await
                        .ok()
                        .flatten();
                }
                Ok(answer) => return answer,
            }
        }
        None
    }

    // ---- Registration ----

    /// The registration task: Register, then an Update every `update_interval`.
    async fn run(self: Arc<Self>) {
        loop {
            self.update_or_register().await;
            sleep(self.config.update_interval).await;
        }
    }

    /// Sends an Update; Registers instead when it has no registration, or when the Update is not
    /// answered 2.04 (4.04: the server forgot it). True when the server took either.
    async fn update_or_register(&self) -> bool {
        let _exchange = self.registration.lock().await;
        let location = self.lock().location.clone();
        if let Some(location) = location {
            let mut update = Packet::new();
            update.header.code = MessageClass::Request(RequestType::Post);
            for segment in location {
                update.add_option(CoapOption::UriPath, segment.into_bytes());
            }
            let answer = self.request(self.config.server, update).await;
            if answer
                .is_some_and(|r| r.header.code == MessageClass::Response(ResponseType::Changed))
            {
                self.lock().counters.updates += 1;
                return true;
            }
        }
        self.register().await
    }

    /// POST /rd?ep=..&lt=..&lwm2m=1.1&b=U(&Q) with the object links; the caller holds
    /// `registration`. A new registration starts without observations.
    async fn register(&self) -> bool {
        let params = RegisterParams {
            endpoint: &self.config.endpoint,
            lifetime: Some(self.config.lifetime_s),
            version: Some(Version::V1_1),
            binding: Some(Binding::U),
            sms: None,
            queue: self.config.queue_mode,
        };
        let mut register = Packet::new();
        register.header.code = MessageClass::Request(RequestType::Post);
        register.add_option(CoapOption::UriPath, b"rd".to_vec());
        for param in params.options() {
            register.add_option(CoapOption::UriQuery, param.to_string().into_bytes());
        }
        set_uint_option(
            &mut register,
            CoapOption::ContentFormat,
            content::LINK_FORMAT.into(),
        );
        register.payload = OBJECT_LINKS.as_bytes().to_vec();
        let Some(response) = self.request(self.config.server, register).await else {
            return false;
        };
        if response.header.code != MessageClass::Response(ResponseType::Created) {
            return false;
        }
        let location = response
            .get_option(CoapOption::LocationPath)
            .into_iter()
            .flatten()
            .map(|segment| String::from_utf8_lossy(segment).into_owned())
            .collect();
        let mut st = self.lock();
        st.location = Some(location);
        st.counters.registrations += 1;
        st.observers.clear();
        true
    }

    // ---- Receiving ----

    /// The receiver task of one socket.
    async fn receive(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(packet) = Packet::from_bytes(&buf[..len]) else {
                continue;
            };
            if self.asleep() {
                if let MessageClass::Request(method) = packet.header.code {
                    let path = uri_path(&packet);
                    self.lock().requests.push(RequestRecord {
                        method,
                        path,
                        code: None,
                    });
                }
                continue;
            }
            match packet.header.code {
                MessageClass::Request(method) => self.on_request(from, packet, method).await,
                MessageClass::Response(_) => self.on_response(from, packet).await,
                MessageClass::Empty => self.on_empty(from, &packet).await,
                MessageClass::Reserved(_) => {}
            }
        }
    }

    async fn on_request(self: &Arc<Self>, from: SocketAddr, request: Packet, method: RequestType) {
        let key = (from, request.header.message_id);
        let repeated = {
            let st = self.lock();
            let answered = st.radio.answered.iter().find(|(k, _)| *k == key);
            answered.map(|(_, bytes)| bytes.clone())
        };
        if let Some(bytes) = repeated {
            // A retransmission: the same answer again, without running the request twice.
            self.send(&bytes, from).await;
            return;
        }
        let handled = self.handle(from, &request, method);
        let bytes = self.response_bytes(&request, &handled);
        let lose_answer = {
            let mut st = self.lock();
            st.requests.push(RequestRecord {
                method,
                path: uri_path(&request),
                code: Some(handled.code),
            });
            let lose = self.config.behaviour == Behaviour::LoseUpdateAnswer
                && matches!(handled.then, Then::Install)
                && !st.radio.update_answer_lost;
            if lose {
                st.radio.update_answer_lost = true;
            } else {
                if st.radio.answered.len() == DEDUP_CAPACITY {
                    st.radio.answered.pop_front();
                }
                st.radio.answered.push_back((key, bytes.clone()));
            }
            lose
        };
        if !lose_answer {
            self.send(&bytes, from).await;
        }
        self.send_all(handled.notify).await;
        match handled.then {
            Then::Nothing => {}
            Then::Download { id, uri } => {
                self.spawn(Arc::clone(self).download(id, uri));
            }
            Then::Install => {
                self.spawn(Arc::clone(self).install());
            }
        }
    }

    /// A response to one of its own requests; a separate (CON) response is acknowledged.
    async fn on_response(&self, from: SocketAddr, response: Packet) {
        let waiting = {
            let st = self.lock();
            let entry = st.radio.requests.get(response.get_token());
            entry.map(|(_, answers)| answers.clone())
        };
        if response.header.get_type() == MessageType::Confirmable {
            let kind = match waiting {
                Some(_) => MessageType::Acknowledgement,
                None => MessageType::Reset,
            };
            self.send(&empty(kind, response.header.message_id), from)
                .await;
        }
        if let Some(answers) = waiting {
            let _ = answers.send(Answer::Response(response));
        }
    }

    /// ACK or RST to its requests and notifications (an RST cancels the observation), and CoAP
    /// ping.
    async fn on_empty(&self, from: SocketAddr, packet: &Packet) {
        let mid = packet.header.message_id;
        let reset = match packet.header.get_type() {
            MessageType::Acknowledgement => false,
            MessageType::Reset => true,
            MessageType::Confirmable => {
                self.send(&empty(MessageType::Reset, mid), from).await;
                return;
            }
            MessageType::NonConfirmable => return,
        };
        let mut st = self.lock();
        if let Some((peer, token)) = st.radio.notifications.remove(&mid) {
            if reset {
                st.observers.retain(|o| o.peer != peer || o.token != token);
            }
        } else if let Some((_, answers)) = st.radio.requests.values().find(|(m, _)| *m == mid) {
            let _ = answers.send(if reset { Answer::Reset } else { Answer::Ack });
        }
    }

    fn response_bytes(&self, request: &Packet, handled: &Handled) -> Vec<u8> {
        let mut response = Packet::new();
        if request.header.get_type() == MessageType::Confirmable {
            response.header.set_type(MessageType::Acknowledgement);
            response.header.message_id = request.header.message_id;
        } else {
            response.header.set_type(MessageType::NonConfirmable);
            response.header.message_id = self.lock().radio.next_mid();
        }
        response.header.code = MessageClass::Response(handled.code);
        response.set_token(request.get_token().to_vec());
        for (option, value) in &handled.options {
            response.add_option(*option, value.clone());
        }
        if let Some((format, payload)) = &handled.content {
            set_uint_option(&mut response, CoapOption::ContentFormat, (*format).into());
            response.payload.clone_from(payload);
        }
        response.to_bytes().expect("response fits a datagram")
    }

    // ---- The server's requests ----

    fn handle(&self, from: SocketAddr, request: &Packet, method: RequestType) -> Handled {
        let segments = request
            .get_option(CoapOption::UriPath)
            .into_iter()
            .flatten();
        let Ok(path) = Path::from_segments(segments) else {
            return Handled::code(ResponseType::NotFound);
        };
        match (method, path.ids()) {
            (RequestType::Get, _) => self.read(from, request, &path),
            (RequestType::Put, [5, 0, 1]) => self.write_package_uri(request),
            (RequestType::Put | RequestType::Post, [5, 0, 0]) => self.write_package(request),
            (RequestType::Post, [5, 0, 2]) => self.execute_update(),
            (RequestType::Post, [5, 0, 10]) => self.cancel(),
            (_, ids) => Handled::code(missing_or_not_allowed(ids)),
        }
    }

    /// Read, and Observe on /5/0/3 and /5/0/5.
    fn read(&self, from: SocketAddr, request: &Packet, path: &Path) -> Handled {
        let accept = uint_option(request, CoapOption::Accept).and_then(|a| u16::try_from(a).ok());
        let mut st = self.lock();
        let (format, payload) = match self.encode(&st.fw, path, accept) {
            Ok(content) => content,
            Err(code) => return Handled::code(code),
        };
        let mut handled = Handled {
            content: Some((format, payload)),
            ..Handled::code(ResponseType::Content)
        };
        let observable = matches!(path.ids(), [5, 0, object5::STATE | object5::UPDATE_RESULT]);
        let resource = path.resource_id().unwrap_or_default();
        match uint_option(request, CoapOption::Observe) {
            Some(0) if observable => {
                // Same peer and resource: the new request replaces the old (RFC 7641 §4.1).
                st.observers
                    .retain(|o| o.peer != from || o.resource != resource);
                st.observers.push(Observer {
                    peer: from,
                    token: request.get_token().to_vec(),
                    resource,
                    accept,
                });
                let seq = st.radio.next_observe();
                handled = handled.option(CoapOption::Observe, uint_bytes(seq));
            }
            Some(1) => st
                .observers
                .retain(|o| o.peer != from || o.resource != resource),
            _ => {}
        }
        handled
    }

    /// PUT /5/0/1: `""` resets; a URI starts a pull download once the 2.04 is out.
    fn write_package_uri(&self, request: &Packet) -> Handled {
        if !matches!(
            uint_option(request, CoapOption::ContentFormat),
            None | Some(0)
        ) {
            return Handled::code(ResponseType::UnsupportedContentFormat);
        }
        let Ok(uri) = text::parse_string(&request.payload) else {
            return Handled::code(ResponseType::BadRequest);
        };
        if uri.is_empty() {
            return self.reset(Event::PackageUriReset);
        }
        if !self.delivers(DeliveryMethod::Pull) {
            return Handled::code(ResponseType::MethodNotAllowed);
        }
        let mut st = self.lock();
        let mut id = 0;
        let changed = self.change(&mut st, Event::PackageUriWritten, |fw| {
            fw.forget_package();
            fw.uri = uri.to_owned();
            id = fw.download_id;
        });
        match changed {
            Ok(notify) => Handled {
                then: match self.config.behaviour {
                    Behaviour::IgnoreDownload => Then::Nothing,
                    _ => Then::Download {
                        id,
                        uri: uri.to_owned(),
                    },
                },
                ..Handled::changed(notify)
            },
            Err(refusal) => Handled::refused(refusal),
        }
    }

    /// PUT/POST /5/0/0, with or without Block1: `'\0'` resets; otherwise the package arrives block
    /// by block and is verified after the last one.
    fn write_package(&self, request: &Packet) -> Handled {
        if !matches!(
            uint_option(request, CoapOption::ContentFormat),
            Some(42) | None
        ) {
            return Handled::code(ResponseType::UnsupportedContentFormat);
        }
        let block = match request.get_first_option(CoapOption::Block1) {
            None => None,
            Some(value) => match BlockValue::decode(value) {
                Ok(block) => Some(block),
                Err(_) => return Handled::code(ResponseType::BadOption),
            },
        };
        let offset = block.map_or(0, |b| b.offset());
        let more = block.is_some_and(|b| b.more());
        if offset == 0 && !more && object5::is_package_reset(&request.payload) {
            return self.reset(Event::PackageReset);
        }
        if !self.delivers(DeliveryMethod::Push) {
            return Handled::code(ResponseType::MethodNotAllowed);
        }
        let max = self.config.max_package_size;
        let declared = uint_option(request, CoapOption::Size1).unwrap_or(0) as usize;
        let end = offset as usize + request.payload.len();
        let mut st = self.lock();
        if declared > max || end > max {
            // A push under way ends with Not enough flash; the server learns the limit from Size1.
            let notify = match st.fw.push {
                Some(_) => self
                    .change(
                        &mut st,
                        Event::DownloadFailed(UpdateResult::NotEnoughFlash),
                        Firmware::forget_package,
                    )
                    .expect("a push is under way only while Downloading"),
                None => Vec::new(),
            };
            return Handled {
                notify,
                ..Handled::code(ResponseType::RequestEntityTooLarge)
                    .option(CoapOption::Size1, uint_bytes(max as u32))
            };
        }
        let mut notify = Vec::new();
        if offset == 0 {
            let started = self.change(&mut st, Event::PackageWriteStarted, |fw| {
                fw.forget_package();
                fw.push = Some(Vec::new());
            });
            match started {
                Ok(n) => notify = n,
                Err(refusal) => return Handled::refused(refusal),
            }
        }
        let Some(package) = st.fw.push.as_mut().filter(|p| p.len() as u64 == offset) else {
            return Handled::code(ResponseType::RequestEntityIncomplete);
        };
        package.extend_from_slice(&request.payload);
        let echo = |handled: Handled| match block {
            Some(b) => handled.option(CoapOption::Block1, block_bytes(b)),
            None => handled,
        };
        if more {
            return echo(Handled::code(ResponseType::Continue));
        }
        let package = st.fw.push.take().unwrap_or_default();
        let checked = self.check_pushed(package, st.fw.sequence);
        let event = match &checked {
            Ok(_) => Event::DownloadComplete,
            Err(result) => Event::DownloadFailed(*result),
        };
        let done = self.change(&mut st, event, |fw| fw.staged = checked.ok());
        notify.extend(done.expect("a push completes while Downloading"));
        echo(Handled::changed(notify))
    }

    /// POST /5/0/2: Updating, then the install task.
    fn execute_update(&self) -> Handled {
        let mut st = self.lock();
        match self.change(&mut st, Event::UpdateExecuted, |_| {}) {
            Ok(notify) => Handled {
                then: Then::Install,
                ..Handled::changed(notify)
            },
            Err(refusal) => Handled::refused(refusal),
        }
    }

    /// POST /5/0/10: Idle, Result 10, the package dropped.
    fn cancel(&self) -> Handled {
        let mut st = self.lock();
        match self.change(&mut st, Event::Cancel, Firmware::forget_package) {
            Ok(notify) => Handled::changed(notify),
            Err(refusal) => Handled::refused(refusal),
        }
    }

    /// An empty Package URI or a `'\0'` Package: Idle, Result 0.
    fn reset(&self, event: Event) -> Handled {
        let mut st = self.lock();
        let changed = self.change(&mut st, event, |fw| {
            fw.forget_package();
            fw.uri.clear();
        });
        match changed {
            Ok(notify) => Handled::changed(notify),
            Err(refusal) => Handled::refused(refusal),
        }
    }

    fn delivers(&self, method: DeliveryMethod) -> bool {
        let delivery = self.config.delivery;
        delivery == DeliveryMethod::Both.code() || delivery == method.code()
    }

    // ---- Object 5 state and notifications ----

    /// Runs `event` through the Object 5 state machine and `effect` on the firmware, under the
    /// caller's lock. Returns the notifications for what changed: Update Result before State, so
    /// an observer that sees the new State already has the Result.
    fn change(
        &self,
        st: &mut DeviceState,
        event: Event,
        effect: impl FnOnce(&mut Firmware),
    ) -> Result<Vec<Datagram>, Refusal> {
        let outcome = transition(st.fw.state, event)?;
        let (state_before, result_before) = (st.fw.state, st.fw.result);
        st.fw.state = outcome.state;
        st.fw.result = outcome.result_after(result_before);
        effect(&mut st.fw);
        let mut notify = Vec::new();
        if st.fw.result != result_before {
            notify.extend(self.notifications(st, object5::UPDATE_RESULT));
        }
        if st.fw.state != state_before {
            notify.extend(self.notifications(st, object5::STATE));
        }
        Ok(notify)
    }

    /// A device-side event (download or install progress), with its notifications sent.
    async fn apply(&self, event: Event, effect: impl FnOnce(&mut Firmware)) {
        let notify = {
            let mut st = self.lock();
            self.change(&mut st, event, effect)
                .expect("device-side events follow the state machine")
        };
        self.send_all(notify).await;
    }

    /// CON notifications of /5/0/`resource` to its observers.
    fn notifications(&self, st: &mut DeviceState, resource: u16) -> Vec<Datagram> {
        let path = Path::resource(object5::OBJECT_ID, 0, resource).expect("valid path");
        let observers: Vec<Observer> = st
            .observers
            .iter()
            .filter(|o| o.resource == resource)
            .cloned()
            .collect();
        let mut out = Vec::new();
        for observer in observers {
            let Ok((format, payload)) = self.encode(&st.fw, &path, observer.accept) else {
                continue;
            };
            let mid = st.radio.next_mid();
            let seq = st.radio.next_observe();
            let mut notification = Packet::new();
            notification.header.set_type(MessageType::Confirmable);
            notification.header.message_id = mid;
            notification.header.code = MessageClass::Response(ResponseType::Content);
            notification.set_token(observer.token.clone());
            notification.add_option(CoapOption::Observe, uint_bytes(seq));
            set_uint_option(&mut notification, CoapOption::ContentFormat, format.into());
            notification.payload = payload;
            st.radio
                .notifications
                .insert(mid, (observer.peer, observer.token));
            out.push(Datagram {
                to: observer.peer,
                bytes: notification
                    .to_bytes()
                    .expect("notification fits a datagram"),
            });
        }
        out
    }

    /// The value of a readable resource; `None` for anything else.
    fn resource<'a>(&'a self, fw: &'a Firmware, ids: &[u16]) -> Option<Resource<'a>> {
        let integer = |v: u8| Resource::Single(Value::Integer(v.into()));
        Some(match ids {
            [3, 0, 3] => Resource::Single(Value::String(&fw.installed_version)),
            [5, 0, object5::PACKAGE_URI] => Resource::Single(Value::String(&fw.uri)),
            [5, 0, object5::STATE] => integer(fw.state.code()),
            [5, 0, object5::UPDATE_RESULT] => integer(fw.result.code()),
            [5, 0, object5::PKG_NAME] => Resource::Single(Value::String(PKG_NAME)),
            [5, 0, object5::PKG_VERSION] => Resource::Single(Value::String(&fw.pkg_version)),
            [5, 0, object5::PROTOCOL_SUPPORT] => Resource::Multiple(
                (0u16..)
                    .zip(&self.config.protocols)
                    .map(|(i, p)| (i, Value::Integer((*p).into())))
                    .collect(),
            ),
            [5, 0, object5::DELIVERY_METHOD] => integer(self.config.delivery),
            _ => return None,
        })
    }

    /// A resource in the format `accept` asks for: plain text by default for a single resource,
    /// TLV for a multiple one; plain text cannot carry a multiple resource (4.06).
    fn encode(
        &self,
        fw: &Firmware,
        path: &Path,
        accept: Option<u16>,
    ) -> Result<(u16, Vec<u8>), ResponseType> {
        let resource = self
            .resource(fw, path.ids())
            .ok_or_else(|| missing_or_not_allowed(path.ids()))?;
        let id = path.resource_id().unwrap_or_default();
        let format = accept.unwrap_or(match resource {
            Resource::Single(_) => content::TEXT_PLAIN,
            Resource::Multiple(_) => content::LWM2M_TLV,
        });
        let mut buf = [0u8; 512];
        let len = match (format, &resource) {
            (content::TEXT_PLAIN, Resource::Single(value)) => {
                text::encode_value(&mut buf, value).ok()
            }
            (content::LWM2M_TLV, Resource::Single(value)) => TlvWriter::new(&mut buf)
                .resource_value(id, value)
                .map(|w| w.len())
                .ok(),
            (content::LWM2M_TLV, Resource::Multiple(values)) => TlvWriter::new(&mut buf)
                .multiple_resource(id, |w| {
                    for (i, value) in values {
                        w.resource_instance_value(*i, value)?;
                    }
                    Ok(())
                })
                .map(|w| w.len())
                .ok(),
            (content::SENML_CBOR, Resource::Single(value)) => {
                encode_single(&mut buf, path, value).ok()
            }
            (content::SENML_CBOR, Resource::Multiple(values)) => {
                encode_multiple_resource(&mut buf, path, values.iter().copied()).ok()
            }
            _ => return Err(ResponseType::NotAcceptable),
        };
        let len = len.ok_or(ResponseType::InternalServerError)?;
        Ok((format, buf[..len].to_vec()))
    }

    // ---- Pull ----

    /// The download task: fetch and check the package, then Downloaded or Idle with the Result —
    /// unless the download was cancelled, reset or replaced meanwhile.
    async fn download(self: Arc<Self>, id: u64, uri: String) {
        let outcome = self.fetch_package(id, &uri).await;
        let notify = {
            let mut st = self.lock();
            if st.fw.download_id != id {
                return;
            }
            let event = match &outcome {
                Ok(_) => Event::DownloadComplete,
                Err(result) => Event::DownloadFailed(*result),
            };
            let done = self.change(&mut st, event, |fw| fw.staged = outcome.ok());
            done.expect("a current download is Downloading")
        };
        self.send_all(notify).await;
    }

    /// Plain device: the URI is the image. SUIT device: the URI is the manifest; it is verified
    /// before a single image block is requested.
    async fn fetch_package(&self, id: u64, uri: &str) -> Result<Package, UpdateResult> {
        let target = CoapTarget::parse(uri, &self.config.protocols)?;
        let Some(anchor) = &self.config.trust else {
            self.fetch(id, &target, TransferKind::Image).await?;
            return self.plain_package();
        };
        let envelope = self.fetch(id, &target, TransferKind::Manifest).await?;
        let stored_sequence = self.lock().fw.sequence;
        let manifest = self.check_manifest(anchor, &envelope, stored_sequence)?;
        let image = match &manifest.integrated {
            Some(image) => image.clone(),
            None => {
                let image_uri = resolve_reference(uri, &manifest.uri);
                let target = CoapTarget::parse(&image_uri, &self.config.protocols)?;
                self.fetch(id, &target, TransferKind::Image).await?
            }
        };
        self.check_image(&manifest, image)?;
        Ok(manifest.package)
    }

    /// GETs `target` with Block2 of `block_size` (following a smaller size the server picks), and
    /// records the transfer. 4.04 is Invalid URI (7); no answer or another error, Connection lost
    /// (4); more than the slot holds, Not enough flash (2).
    async fn fetch(
        &self,
        id: u64,
        target: &CoapTarget,
        kind: TransferKind,
    ) -> Result<Vec<u8>, UpdateResult> {
        let record = {
            let mut st = self.lock();
            st.transfers.push(Transfer {
                kind,
                uri: target.uri.clone(),
                block_requests: 0,
                bytes: 0,
            });
            st.transfers.len() - 1
        };
        let lost = UpdateResult::ConnectionLost;
        let mut body = Vec::new();
        let mut block =
            BlockValue::from_offset(0, self.config.block_size, false).map_err(|_| lost)?;
        loop {
            {
                let mut st = self.lock();
                if st.fw.download_id != id {
                    // Abandoned; the caller discards the result.
                    return Err(UpdateResult::Cancelled);
                }
                st.transfers[record].block_requests += 1;
                match kind {
                    TransferKind::Manifest => st.counters.manifest_block_requests += 1,
                    TransferKind::Image => st.counters.image_block_requests += 1,
                }
            }
            let response = self
                .request(target.addr, target.get(block))
                .await
                .ok_or(lost)?;
            match response.header.code {
                MessageClass::Response(ResponseType::Content) => {}
                MessageClass::Response(ResponseType::NotFound) => {
                    return Err(UpdateResult::InvalidUri);
                }
                _ => return Err(lost),
            }
            let received = match response.get_first_option(CoapOption::Block2) {
                Some(value) => Some(BlockValue::decode(value).map_err(|_| lost)?),
                None => None,
            };
            let more = match received {
                None if body.is_empty() => false,
                None => return Err(lost),
                Some(b) if b.offset() == body.len() as u64 => b.more(),
                Some(_) => return Err(lost),
            };
            body.extend_from_slice(&response.payload);
            self.lock().transfers[record].bytes = body.len();
            if body.len() > self.config.max_package_size {
                return Err(UpdateResult::NotEnoughFlash);
            }
            if !more {
                return Ok(body);
            }
            if response.payload.is_empty() {
                return Err(lost);
            }
            let size = received.map_or(self.config.block_size, |b| b.size());
            block = BlockValue::from_offset(body.len() as u64, size, false).map_err(|_| lost)?;
        }
    }

    // ---- Package checks ----

    /// A complete pushed package: a plain image, or a SUIT envelope with the image integrated.
    fn check_pushed(
        &self,
        package: Vec<u8>,
        stored_sequence: u64,
    ) -> Result<Package, UpdateResult> {
        let Some(anchor) = &self.config.trust else {
            return self.plain_package();
        };
        let manifest = self.check_manifest(anchor, &package, stored_sequence)?;
        let image = manifest
            .integrated
            .clone()
            .ok_or(UpdateResult::UnsupportedPackage)?;
        self.check_image(&manifest, image)?;
        Ok(manifest.package)
    }

    /// A plain image carries no digest to check; CorruptDownload stands for the device's own
    /// check failing.
    fn plain_package(&self) -> Result<Package, UpdateResult> {
        match self.config.behaviour {
            Behaviour::CorruptDownload => Err(UpdateResult::IntegrityFailure),
            _ => Ok(Package {
                version: self.config.plain_version.clone(),
                sequence: None,
            }),
        }
    }

    /// Signature and manifest digest (5), vendor and class (6), a sequence number above the
    /// stored one (6), the image fits the slot (2). Anything else wrong is Unsupported package (6).
    fn check_manifest(
        &self,
        anchor: &TrustAnchor,
        envelope: &[u8],
        stored_sequence: u64,
    ) -> Result<CheckedManifest, UpdateResult> {
        use suit_manifest::Error as E;
        let unsupported = UpdateResult::UnsupportedPackage;
        let manifest =
            suit_manifest::verify(envelope, slice::from_ref(anchor)).map_err(|e| match e {
                E::BadSignature
                | E::Unsigned
                | E::BadKey
                | E::ManifestDigestMismatch
                | E::SeveredDigestMismatch(_) => UpdateResult::IntegrityFailure,
                _ => unsupported,
            })?;
        let components = suit_manifest::describe(&manifest).map_err(|_| unsupported)?;
        let info = components.into_iter().flatten().next().ok_or(unsupported)?;
        let compatible = info.vendor_id == Some(&self.config.vendor_id[..])
            && info.class_id == Some(&self.config.class_id[..]);
        let sequence = manifest.sequence_number();
        if !compatible || sequence <= stored_sequence {
            return Err(unsupported);
        }
        let (Some(digest), Some(uri)) = (info.image_digest, info.uri) else {
            return Err(unsupported);
        };
        if info
            .image_size
            .is_some_and(|size| size > self.config.max_package_size as u64)
        {
            return Err(UpdateResult::NotEnoughFlash);
        }
        Ok(CheckedManifest {
            uri: uri.to_owned(),
            integrated: manifest
                .envelope()
                .integrated_payload(uri)
                .map(<[u8]>::to_vec),
            digest,
            size: info.image_size,
            package: Package {
                version: info
                    .version
                    .map_or_else(|| sequence.to_string(), str::to_owned),
                sequence: Some(sequence),
            },
        })
    }

    /// Size and SHA-256 of the image as stored (CorruptDownload stores it with a byte flipped).
    fn check_image(
        &self,
        manifest: &CheckedManifest,
        mut image: Vec<u8>,
    ) -> Result<(), UpdateResult> {
        if self.config.behaviour == Behaviour::CorruptDownload {
            if let Some(byte) = image.first_mut() {
                *byte ^= 0xFF;
            }
        }
        let size_ok = manifest.size.is_none_or(|size| size == image.len() as u64);
        if size_ok && manifest.digest.matches(&image) {
            Ok(())
        } else {
            Err(UpdateResult::IntegrityFailure)
        }
    }

    // ---- Install ----

    /// The install task, started by Execute Update. Boxed as `Send` by hand: a reboot powers the
    /// device on, whose receiver starts install tasks, and auto traits cannot be inferred through
    /// that cycle.
    fn install(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            match self.config.behaviour {
                Behaviour::RebootOnUpdate => self.reboot_into_new_firmware().await,
                Behaviour::FailUpdate => {
                    sleep(INSTALL_TIME).await;
                    let failed = Event::UpdateFailed {
                        package_kept: false,
                    };
                    self.apply(failed, |fw| fw.staged = None).await;
                }
                _ => {
                    sleep(INSTALL_TIME).await;
                    self.apply(Event::UpdateSucceeded, Firmware::install_staged)
                        .await;
                }
            }
        })
    }

    /// Off for a moment, then up on a new port with the new firmware, registering again. The
    /// Result is already 1 when the Register goes out; observations did not survive.
    async fn reboot_into_new_firmware(self: Arc<Self>) {
        let _exchange = self.registration.lock().await;
        self.power_off();
        sleep(REBOOT_TIME).await;
        self.apply(Event::UpdateSucceeded, Firmware::install_staged)
            .await;
        self.power_on().await;
        self.register().await;
    }
}

/// A readable resource's value.
enum Resource<'a> {
    Single(Value<'a>),
    Multiple(Vec<(u16, Value<'a>)>),
}

/// What a verified manifest says about the image.
struct CheckedManifest {
    /// The image URI as the manifest writes it (possibly relative, or `#name`).
    uri: String,
    /// The image, when the envelope carries it under `uri`.
    integrated: Option<Vec<u8>>,
    digest: Sha256Digest,
    size: Option<u64>,
    package: Package,
}

/// Where a `coap://` URI points: the address, and the Uri-Path and Uri-Query options.
struct CoapTarget {
    uri: String,
    addr: SocketAddr,
    path: Vec<Vec<u8>>,
    query: Vec<Vec<u8>>,
}

impl CoapTarget {
    /// Checks a URI the device is to download; the error is the Update Result to report. Only
    /// `coap://` is implemented, and only IP literals and `localhost` resolve.
    fn parse(uri: &str, protocols: &[u8]) -> Result<CoapTarget, UpdateResult> {
        let scheme = validate_package_uri(uri)?;
        if scheme != Scheme::Coap || !protocols.contains(&scheme.protocol().code()) {
            return Err(UpdateResult::UnsupportedProtocol);
        }
        let parts = UriParts::split(uri);
        let (ip, port) = parts
            .authority
            .and_then(host_port)
            .ok_or(UpdateResult::InvalidUri)?;
        // RFC 7252 §6.4: an empty path or "/" gives no Uri-Path option.
        let path = match parts.path {
            "" | "/" => Vec::new(),
            p => p
                .trim_start_matches('/')
                .split('/')
                .map(percent_decode)
                .collect(),
        };
        let query = parts
            .query
            .map_or_else(Vec::new, |q| q.split('&').map(percent_decode).collect());
        Ok(CoapTarget {
            uri: uri.to_owned(),
            addr: SocketAddr::new(ip, port.unwrap_or(scheme.default_port())),
            path,
            query,
        })
    }

    fn get(&self, block: BlockValue) -> Packet {
        let mut get = Packet::new();
        get.header.code = MessageClass::Request(RequestType::Get);
        for segment in &self.path {
            get.add_option(CoapOption::UriPath, segment.clone());
        }
        for param in &self.query {
            get.add_option(CoapOption::UriQuery, param.clone());
        }
        get.add_option(CoapOption::Block2, block_bytes(block));
        get
    }
}

/// `host[:port]` of an authority, when the host is an IP literal or `localhost`.
fn host_port(authority: &str) -> Option<(IpAddr, Option<u16>)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']')?;
            (host, rest.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse().ok()?
    };
    let port = match port {
        None | Some("") => None,
        Some(port) => Some(port.parse().ok()?),
    };
    Some((ip, port))
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = text
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Resolves `reference` against the absolute URI `base` (RFC 3986 §5.2.2), dropping fragments:
/// `coap://h:1/fw/ab/manifest` + `image` is `coap://h:1/fw/ab/image`.
pub fn resolve_reference(base: &str, reference: &str) -> String {
    let b = UriParts::split(base);
    let r = UriParts::split(reference);
    let (scheme, authority, path, query) = if r.scheme.is_some() {
        (r.scheme, r.authority, remove_dot_segments(r.path), r.query)
    } else if r.authority.is_some() {
        (b.scheme, r.authority, remove_dot_segments(r.path), r.query)
    } else if r.path.is_empty() {
        (
            b.scheme,
            b.authority,
            b.path.to_owned(),
            r.query.or(b.query),
        )
    } else if r.path.starts_with('/') {
        (b.scheme, b.authority, remove_dot_segments(r.path), r.query)
    } else {
        let merged = if b.authority.is_some() && b.path.is_empty() {
            format!("/{}", r.path)
        } else {
            let directory = b.path.rfind('/').map_or("", |i| &b.path[..=i]);
            format!("{directory}{}", r.path)
        };
        (b.scheme, b.authority, remove_dot_segments(&merged), r.query)
    };
    let mut out = String::new();
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push(':');
    }
    if let Some(authority) = authority {
        out.push_str("//");
        out.push_str(authority);
    }
    out.push_str(&path);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The components of a URI reference (RFC 3986 Appendix B), fragment dropped.
struct UriParts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> UriParts<'a> {
    fn split(uri: &'a str) -> UriParts<'a> {
        let uri = uri.split_once('#').map_or(uri, |(before, _)| before);
        let (scheme, rest) = match uri.split_once(':') {
            Some((scheme, rest)) if !scheme.is_empty() && !scheme.contains(['/', '?']) => {
                (Some(scheme), rest)
            }
            _ => (None, uri),
        };
        let (authority, rest) = match rest.strip_prefix("//") {
            Some(after) => {
                let end = after.find(['/', '?']).unwrap_or(after.len());
                (Some(&after[..end]), &after[end..])
            }
            None => (None, rest),
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        UriParts {
            scheme,
            authority,
            path,
            query,
        }
    }
}

/// RFC 3986 §5.2.4 on whole segments, for the absolute (or empty) paths a base with an authority
/// gives.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::new();
    for (i, segment) in segments.into_iter().enumerate() {
        match segment {
            "." | ".." => {
                // Never pop the empty segment before the leading '/'.
                if segment == ".." && out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            _ => out.push(segment),
        }
    }
    out.join("/")
}

/// Binds 127.0.0.1 on an ephemeral port other than `previous`'s (a rebooted device must come
/// back from a new address).
async fn bind_new_port(previous: Option<SocketAddr>) -> UdpSocket {
    // A socket that got the old port stays bound while binding again, so the next try differs.
    let mut held = Vec::new();
    for _ in 0..8 {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1");
        if socket.local_addr().ok() != previous {
            return socket;
        }
        held.push(socket);
    }
    panic!("no new port on 127.0.0.1");
}

/// The response code for a request the dispatch does not serve: 4.05 on a resource that exists,
/// else 4.04.
fn missing_or_not_allowed(ids: &[u16]) -> ResponseType {
    if matches!(ids, [3, 0, 3] | [5, 0, 0..=3 | 5..=10]) {
        ResponseType::MethodNotAllowed
    } else {
        ResponseType::NotFound
    }
}

fn uri_path(packet: &Packet) -> String {
    let segments = packet.get_option(CoapOption::UriPath).into_iter().flatten();
    let segments: Vec<_> = segments.map(|s| String::from_utf8_lossy(s)).collect();
    format!("/{}", segments.join("/"))
}

fn uint_option(packet: &Packet, option: CoapOption) -> Option<u32> {
    packet
        .get_first_option(option)
        .and_then(|value| decode_uint_option(value).ok())
}

fn uint_bytes(value: u32) -> Vec<u8> {
    let (bytes, len) = encode_uint_option(value);
    bytes[..len].to_vec()
}

fn set_uint_option(packet: &mut Packet, option: CoapOption, value: u32) {
    packet.clear_option(option);
    packet.add_option(option, uint_bytes(value));
}

fn block_bytes(block: BlockValue) -> Vec<u8> {
    let (bytes, len) = block.encode();
    bytes[..len].to_vec()
}

/// An empty ACK or RST.
fn empty(kind: MessageType, mid: u16) -> Vec<u8> {
    let mut packet = Packet::new();
    packet.header.set_type(kind);
    packet.header.code = MessageClass::Empty;
    packet.header.message_id = mid;
    packet.to_bytes().expect("empty message")
}

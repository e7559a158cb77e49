//! A scripted LwM2M 1.1 device, kept for the two kinds of device the real engine (lwm2m-client,
//! which every other server test runs through testkit's `Device`) cannot be, and which the server
//! must still serve:
//!
//! - one that takes **push only** (Delivery Method /5/0/9 = 1). The engine offers pull and push
//!   (2), so the server pulls to it, and pushes only an integrated release; the server's
//!   push-only path (and its refusal to push a release that is not integrated) needs this device.
//! - one that takes a **plain image** (no SUIT manifest, `trust: None`). The engine takes SUIT
//!   envelopes only.
//!
//! It injects no failures: everything the server must survive (a failed install and rollback, a
//! refused manifest, a lost answer to Update, a reboot onto a new port, a sleeping device, a
//! download that never ends) is played by the real engine, with the network's faults where needed
//! (`testkit::device::Faults`).
//!
//! ```text
//! FakeDevice::start(config): binds 127.0.0.1, Registers (no Updates: tests are shorter than its lifetime)
//!   receiver task: the server's requests (deduplicated by message id) and the answer to Register
//!   install task:  after Execute Update, ~200 ms, then State Idle, Result 1, the new version
//! ```
//!
//! It answers reads of /3/0/3 and Object 5 in plain text, TLV or SenML-CBOR, takes the package on
//! /5/0/0 with or without Block1 (a SUIT envelope with the image integrated is verified against
//! `trust`: signature and digest 5, vendor, class and sequence number 6, size 2), refuses a Package
//! URI with 4.05, and does not offer Observe (the server polls). Object 5 changes go through
//! `lwm2m_core::object5::transition`, so it refuses what the shared state machine refuses, with the
//! CoAP code it assigns.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_core::Path;
use lwm2m_core::block::{BlockValue, decode_uint_option, encode_uint_option};
use lwm2m_core::content::senml_cbor::{encode_multiple_resource, encode_single};
use lwm2m_core::content::tlv::TlvWriter;
use lwm2m_core::content::{self, Value, text};
use lwm2m_core::object5::{self, DeliveryMethod, Event, Refusal, State, UpdateResult, transition};
use lwm2m_core::registration::{Binding, RegisterParams, Version};
use suit_manifest::TrustAnchor;
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

/// Register attempts (one a second) before giving up.
const REGISTER_ATTEMPTS: u32 = 5;
/// How long installing takes.
const INSTALL_TIME: Duration = Duration::from_millis(200);
/// Requests remembered for answering retransmissions without running them twice.
const DEDUP_CAPACITY: usize = 32;
/// PkgName (/5/0/6).
const PKG_NAME: &str = "otafleet-fake";
/// How long [`FakeDevice::wait_for`] waits.
const WAIT_LIMIT: Duration = Duration::from_secs(15);

/// How the device is set up. [`DeviceConfig::new`] gives the defaults; change fields with struct
/// update syntax.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Endpoint client name (`ep`).
    pub endpoint: String,
    /// Where it registers.
    pub server: SocketAddr,
    /// The key a pushed SUIT envelope must be signed with. `None`: a device that does not speak
    /// SUIT and takes the pushed package as the plain image.
    pub trust: Option<TrustAnchor>,
    /// The vendor-id a manifest must name.
    pub vendor_id: [u8; 16],
    /// The class-id a manifest must name.
    pub class_id: [u8; 16],
    /// Firmware Version (/3/0/3) at start.
    pub installed_version: String,
    /// The version a plain image installs as.
    pub plain_version: String,
    /// Stored anti-rollback sequence number: a manifest must carry a higher one.
    pub sequence: u64,
    /// Staging slot size: a larger push is answered 4.13 with Size1 and ends with Result 2.
    pub max_package_size: usize,
}

impl DeviceConfig {
    /// A push-only device for plain images that registers with `server` as `endpoint`: version
    /// 1.0.0 (a plain image installs as 2.0.0), a 64 KiB slot, built for testkit's vendor and
    /// class.
    pub fn new(endpoint: &str, server: SocketAddr) -> DeviceConfig {
        DeviceConfig {
            endpoint: endpoint.to_owned(),
            server,
            trust: None,
            vendor_id: testkit::VENDOR,
            class_id: testkit::CLASS,
            installed_version: "1.0.0".to_owned(),
            plain_version: "2.0.0".to_owned(),
            sequence: 0,
            max_package_size: 64 * 1024,
        }
    }
}

/// One request the device received and what it answered.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub method: RequestType,
    /// The Uri-Path, e.g. `/5/0/3`.
    pub path: String,
    pub code: ResponseType,
}

/// A running device; dropping it stops it.
pub struct FakeDevice {
    shared: Arc<Shared>,
}

impl FakeDevice {
    /// Binds a socket on 127.0.0.1 and starts registering in the background.
    pub async fn start(config: DeviceConfig) -> FakeDevice {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let shared = Arc::new(Shared {
            fw: Mutex::new(Firmware {
                state: State::Idle,
                result: UpdateResult::Initial,
                pkg_version: String::new(),
                installed_version: config.installed_version.clone(),
                sequence: config.sequence,
                push: None,
                staged: None,
                requests: Vec::new(),
                answered: VecDeque::new(),
                registrations: 0,
                tasks: Vec::new(),
            }),
            config,
            socket,
        });
        let receiver = tokio::spawn(Arc::clone(&shared).receive());
        let register = tokio::spawn(Arc::clone(&shared).register());
        shared
            .lock()
            .tasks
            .extend([receiver.abort_handle(), register.abort_handle()]);
        FakeDevice { shared }
    }
}

impl Deref for FakeDevice {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        for task in self.shared.lock().tasks.drain(..) {
            task.abort();
        }
    }
}

/// The device, as its tasks and the test see it.
pub struct Shared {
    config: DeviceConfig,
    socket: UdpSocket,
    fw: Mutex<Firmware>,
}

/// Object 5, the installed firmware and the records.
struct Firmware {
    state: State,
    result: UpdateResult,
    pkg_version: String,
    installed_version: String,
    sequence: u64,
    /// The Block1 push being received.
    push: Option<Vec<u8>>,
    /// A verified package waiting for Execute Update.
    staged: Option<Package>,
    requests: Vec<RequestRecord>,
    /// Recent answers, by (peer, message id) of the request.
    answered: VecDeque<((SocketAddr, u16), Vec<u8>)>,
    registrations: u32,
    tasks: Vec<AbortHandle>,
}

/// A verified package.
struct Package {
    version: String,
    /// The manifest's sequence number; `None` for a plain image.
    sequence: Option<u64>,
}

/// How the device answers a request, and whether Execute Update set off the install.
struct Handled {
    code: ResponseType,
    options: Vec<(CoapOption, Vec<u8>)>,
    content: Option<(u16, Vec<u8>)>,
    install: bool,
}

impl Handled {
    fn code(code: ResponseType) -> Handled {
        Handled {
            code,
            options: Vec::new(),
            content: None,
            install: false,
        }
    }

    fn refused(refusal: Refusal) -> Handled {
        match MessageClass::from(refusal.coap_code()) {
            MessageClass::Response(code) => Handled::code(code),
            _ => Handled::code(ResponseType::InternalServerError),
        }
    }

    fn option(mut self, option: CoapOption, value: Vec<u8>) -> Handled {
        self.options.push((option, value));
        self
    }
}

impl Shared {
    /// State (/5/0/3).
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Update Result (/5/0/5).
    pub fn result(&self) -> UpdateResult {
        self.lock().result
    }

    /// PkgVersion (/5/0/7).
    pub fn pkg_version(&self) -> String {
        self.lock().pkg_version.clone()
    }

    /// Firmware Version (/3/0/3).
    pub fn installed_version(&self) -> String {
        self.lock().installed_version.clone()
    }

    /// The stored anti-rollback sequence number.
    pub fn sequence(&self) -> u64 {
        self.lock().sequence
    }

    /// Registers answered 2.01.
    pub fn registrations(&self) -> u32 {
        self.lock().registrations
    }

    /// Every request received, in order (retransmissions once).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("bound socket")
    }

    /// Waits until `done` holds; panics after 15 s naming `what`.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Shared) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: State {:?}, Result {:?}, requests {:?}",
                self.state(),
                self.result(),
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The state, even after a panic elsewhere (`Drop` takes it).
    fn lock(&self) -> MutexGuard<'_, Firmware> {
        self.fw.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// POST /rd?ep=..&lt=60&lwm2m=1.1&b=U with the object links, once a second until answered.
    async fn register(self: Arc<Self>) {
        let params = RegisterParams {
            endpoint: &self.config.endpoint,
            lifetime: Some(60),
            version: Some(Version::V1_1),
            binding: Some(Binding::U),
            sms: None,
            queue: false,
        };
        let mut register = Packet::new();
        register.header.set_type(MessageType::Confirmable);
        register.header.code = MessageClass::Request(RequestType::Post);
        register.header.message_id = 1;
        register.set_token(b"reg".to_vec());
        register.add_option(CoapOption::UriPath, b"rd".to_vec());
        for param in params.options() {
            register.add_option(CoapOption::UriQuery, param.to_string().into_bytes());
        }
        register.add_option(
            CoapOption::ContentFormat,
            uint_bytes(content::LINK_FORMAT.into()),
        );
        register.payload = b"</1/0>,</3/0>,</5/0>".to_vec();
        let bytes = register.to_bytes().expect("Register fits a datagram");
        for _ in 0..REGISTER_ATTEMPTS {
            let _ = self.socket.send_to(&bytes, self.config.server).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.registrations() > 0 {
                return;
            }
        }
    }

    /// The receiver task.
    async fn receive(self: Arc<Self>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((len, from)) = self.socket.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(packet) = Packet::from_bytes(&buf[..len]) else {
                continue;
            };
            match packet.header.code {
                MessageClass::Request(method) => self.on_request(from, &packet, method).await,
                MessageClass::Response(ResponseType::Created) if packet.get_token() == b"reg" => {
                    self.lock().registrations += 1;
                }
                _ => {}
            }
        }
    }

    async fn on_request(self: &Arc<Self>, from: SocketAddr, request: &Packet, method: RequestType) {
        let key = (from, request.header.message_id);
        let repeated = self
            .lock()
            .answered
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, bytes)| bytes.clone());
        if let Some(bytes) = repeated {
            // A retransmission: the same answer again, without running the request twice.
            let _ = self.socket.send_to(&bytes, from).await;
            return;
        }
        let handled = self.handle(request, method);
        let bytes = response_bytes(request, &handled);
        {
            let mut fw = self.lock();
            fw.requests.push(RequestRecord {
                method,
                path: uri_path(request),
                code: handled.code,
            });
            if fw.answered.len() == DEDUP_CAPACITY {
                fw.answered.pop_front();
            }
            fw.answered.push_back((key, bytes.clone()));
        }
        let _ = self.socket.send_to(&bytes, from).await;
        if handled.install {
            let task = tokio::spawn(Arc::clone(self).install());
            self.lock().tasks.push(task.abort_handle());
        }
    }

    fn handle(&self, request: &Packet, method: RequestType) -> Handled {
        let segments = request
            .get_option(CoapOption::UriPath)
            .into_iter()
            .flatten();
        let Ok(path) = Path::from_segments(segments) else {
            return Handled::code(ResponseType::NotFound);
        };
        match (method, path.ids()) {
            (RequestType::Get, _) => self.read(request, &path),
            (RequestType::Put | RequestType::Post, [5, 0, 0]) => self.write_package(request),
            (RequestType::Post, [5, 0, 2]) => self.apply(Event::UpdateExecuted, |_| {}),
            (RequestType::Post, [5, 0, 10]) => self.apply(Event::Cancel, |fw| {
                fw.push = None;
                fw.staged = None;
            }),
            // A Package URI (/5/0/1) included: this device takes push only.
            (_, ids) => Handled::code(missing_or_not_allowed(ids)),
        }
    }

    /// Runs `event` through the Object 5 state machine and `effect` on the firmware.
    fn change(
        fw: &mut Firmware,
        event: Event,
        effect: impl FnOnce(&mut Firmware),
    ) -> Result<(), Refusal> {
        let outcome = transition(fw.state, event)?;
        fw.state = outcome.state;
        fw.result = outcome.result_after(fw.result);
        effect(fw);
        Ok(())
    }

    /// A request that is one Object 5 event: 2.04, or the refusal's code.
    fn apply(&self, event: Event, effect: impl FnOnce(&mut Firmware)) -> Handled {
        match Self::change(&mut self.lock(), event, effect) {
            Ok(()) => Handled {
                install: event == Event::UpdateExecuted,
                ..Handled::code(ResponseType::Changed)
            },
            Err(refusal) => Handled::refused(refusal),
        }
    }

    /// Read of a resource, in the format the request accepts.
    fn read(&self, request: &Packet, path: &Path) -> Handled {
        let accept = uint_option(request, CoapOption::Accept).and_then(|a| u16::try_from(a).ok());
        match self.encode(path, accept) {
            Ok(content) => Handled {
                content: Some(content),
                ..Handled::code(ResponseType::Content)
            },
            Err(code) => Handled::code(code),
        }
    }

    /// PUT/POST /5/0/0, with or without Block1: `'\0'` resets; otherwise the package arrives block
    /// by block and is checked after the last one.
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
            return self.apply(Event::PackageReset, |fw| {
                fw.push = None;
                fw.staged = None;
            });
        }
        let max = self.config.max_package_size;
        let declared = uint_option(request, CoapOption::Size1).unwrap_or(0) as usize;
        let end = offset as usize + request.payload.len();
        let mut fw = self.lock();
        if declared > max || end > max {
            // A push under way ends with Not enough flash; the server learns the limit from Size1.
            if fw.push.take().is_some() {
                let failed = Event::DownloadFailed(UpdateResult::NotEnoughFlash);
                Self::change(&mut fw, failed, |_| {})
                    .expect("a push is under way only while Downloading");
            }
            return Handled::code(ResponseType::RequestEntityTooLarge)
                .option(CoapOption::Size1, uint_bytes(max as u32));
        }
        if offset == 0 {
            let started = Self::change(&mut fw, Event::PackageWriteStarted, |fw| {
                fw.staged = None;
                fw.push = Some(Vec::new());
            });
            if let Err(refusal) = started {
                return Handled::refused(refusal);
            }
        }
        let Some(package) = fw.push.as_mut().filter(|p| p.len() as u64 == offset) else {
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
        let package = fw.push.take().unwrap_or_default();
        let checked = self.check(&package, fw.sequence);
        let event = match &checked {
            Ok(_) => Event::DownloadComplete,
            Err(result) => Event::DownloadFailed(*result),
        };
        Self::change(&mut fw, event, |fw| fw.staged = checked.ok())
            .expect("a push completes while Downloading");
        echo(Handled::code(ResponseType::Changed))
    }

    /// A complete pushed package: a plain image (no trust anchor), or a SUIT envelope with the
    /// image integrated. Signature and digests 5; vendor, class, an older sequence number, no
    /// integrated image 6; too large for the slot 2.
    fn check(&self, package: &[u8], stored_sequence: u64) -> Result<Package, UpdateResult> {
        use suit_manifest::Error as E;
        let Some(anchor) = &self.config.trust else {
            return Ok(Package {
                version: self.config.plain_version.clone(),
                sequence: None,
            });
        };
        let unsupported = UpdateResult::UnsupportedPackage;
        let manifest =
            suit_manifest::verify(package, std::slice::from_ref(anchor)).map_err(|e| match e {
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
        let image = manifest
            .envelope()
            .integrated_payload(uri)
            .ok_or(unsupported)?;
        let size_ok = info
            .image_size
            .is_none_or(|size| size == image.len() as u64);
        if !size_ok || !digest.matches(image) {
            return Err(UpdateResult::IntegrityFailure);
        }
        Ok(Package {
            version: info
                .version
                .map_or_else(|| sequence.to_string(), str::to_owned),
            sequence: Some(sequence),
        })
    }

    /// The install task, started by Execute Update: State Updating for a moment, then Idle,
    /// Result 1 and the new version.
    async fn install(self: Arc<Self>) {
        tokio::time::sleep(INSTALL_TIME).await;
        Self::change(&mut self.lock(), Event::UpdateSucceeded, |fw| {
            if let Some(package) = fw.staged.take() {
                fw.installed_version.clone_from(&package.version);
                fw.pkg_version = package.version;
                if let Some(sequence) = package.sequence {
                    fw.sequence = sequence;
                }
            }
        })
        .expect("Updating ends in success");
    }

    /// A resource in the format `accept` asks for: plain text by default for a single resource,
    /// TLV for a multiple one; plain text cannot carry a multiple resource (4.06).
    fn encode(&self, path: &Path, accept: Option<u16>) -> Result<(u16, Vec<u8>), ResponseType> {
        let fw = self.lock();
        let integer = |v: u8| Value::Integer(v.into());
        const PROTOCOLS: [(u16, Value<'static>); 1] = [(0, Value::Integer(0))];
        let single = match path.ids() {
            [3, 0, 3] => Value::String(&fw.installed_version),
            [5, 0, object5::PACKAGE_URI] => Value::String(""),
            [5, 0, object5::STATE] => integer(fw.state.code()),
            [5, 0, object5::UPDATE_RESULT] => integer(fw.result.code()),
            [5, 0, object5::PKG_NAME] => Value::String(PKG_NAME),
            [5, 0, object5::PKG_VERSION] => Value::String(&fw.pkg_version),
            [5, 0, object5::DELIVERY_METHOD] => integer(DeliveryMethod::Push.code()),
            [5, 0, object5::PROTOCOL_SUPPORT] => return multiple(path, &PROTOCOLS, accept),
            ids => return Err(missing_or_not_allowed(ids)),
        };
        let id = path.resource_id().unwrap_or_default();
        let format = accept.unwrap_or(content::TEXT_PLAIN);
        let mut buf = [0u8; 512];
        let len = match format {
            content::TEXT_PLAIN => text::encode_value(&mut buf, &single).ok(),
            content::LWM2M_TLV => TlvWriter::new(&mut buf)
                .resource_value(id, &single)
                .map(|w| w.len())
                .ok(),
            content::SENML_CBOR => encode_single(&mut buf, path, &single).ok(),
            _ => return Err(ResponseType::NotAcceptable),
        };
        let len = len.ok_or(ResponseType::InternalServerError)?;
        Ok((format, buf[..len].to_vec()))
    }
}

/// A multiple resource in TLV (the default) or SenML-CBOR; plain text cannot carry it (4.06).
fn multiple(
    path: &Path,
    values: &[(u16, Value<'_>)],
    accept: Option<u16>,
) -> Result<(u16, Vec<u8>), ResponseType> {
    let id = path.resource_id().unwrap_or_default();
    let format = accept.unwrap_or(content::LWM2M_TLV);
    let mut buf = [0u8; 512];
    let len = match format {
        content::LWM2M_TLV => TlvWriter::new(&mut buf)
            .multiple_resource(id, |w| {
                for (i, value) in values {
                    w.resource_instance_value(*i, value)?;
                }
                Ok(())
            })
            .map(|w| w.len())
            .ok(),
        content::SENML_CBOR => {
            encode_multiple_resource(&mut buf, path, values.iter().copied()).ok()
        }
        _ => return Err(ResponseType::NotAcceptable),
    };
    let len = len.ok_or(ResponseType::InternalServerError)?;
    Ok((format, buf[..len].to_vec()))
}

/// The piggybacked (or, for a NON request, NON) response.
fn response_bytes(request: &Packet, handled: &Handled) -> Vec<u8> {
    let mut response = Packet::new();
    let kind = match request.header.get_type() {
        MessageType::Confirmable => MessageType::Acknowledgement,
        _ => MessageType::NonConfirmable,
    };
    response.header.set_type(kind);
    response.header.message_id = request.header.message_id;
    response.header.code = MessageClass::Response(handled.code);
    response.set_token(request.get_token().to_vec());
    for (option, value) in &handled.options {
        response.add_option(*option, value.clone());
    }
    if let Some((format, payload)) = &handled.content {
        response.add_option(CoapOption::ContentFormat, uint_bytes((*format).into()));
        response.payload.clone_from(payload);
    }
    response.to_bytes().expect("response fits a datagram")
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

fn block_bytes(block: BlockValue) -> Vec<u8> {
    let (bytes, len) = block.encode();
    bytes[..len].to_vec()
}

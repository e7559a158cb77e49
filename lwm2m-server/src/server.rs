//! The assembled server: the CoAP endpoint and what answers on it (the registration interface at
//! `/rd` and the firmware repository at `/fw`), the device manager, the job engine and the store,
//! wired together. The CoAP side runs on any [`Transport`], so the simulator can plug in its own;
//! [`Server::start_secure`] adds a `coaps://` endpoint (DTLS PSK) beside the plain one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use lwm2m_core::block::BlockError;
use lwm2m_core::coap::{Code, Message, MessageWriter, option};
use lwm2m_core::content;
use suit_manifest::TrustAnchor;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::campaign::{CampaignConfig, CampaignManager};
use crate::clock::Clock;
use crate::coap::block::{
    Block1Receiver, Block1ReceiverConfig, Block1Step, Block2Error, Block2Reply, Block2Request,
    plan_block2,
};
use crate::coap::dtls::{DtlsConfig, DtlsHandle, DtlsTransport};
use crate::coap::oscore::{self, Incoming};
use crate::coap::{
    CoapHandle, CoapServer, EndpointConfig, IncomingRequest, KNOWN_OPTIONS, Transport,
    new_response, unknown_critical_option,
};
use crate::device_info::ReadDeviceInfo;
use crate::dm::{DeviceManager, DmConfig};
use crate::downloads::{BlockFetched, DownloadTracker};
use crate::events::{EventBus, ServerEvent};
use crate::jobs::{JobConfig, JobManager};
use crate::model::Models;
use crate::registry::{RegError, Registry, RegistryLimits};
use crate::repository::{ReleaseFiles, Repository};
use crate::security::{Credentials, SecurityMode};
use crate::store::Store;

/// Everything the server can be configured with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the database and the firmware files live (the files stay here with a
    /// PostgreSQL store: every node must see the same dir).
    pub data_dir: PathBuf,
    /// A PostgreSQL store (`postgres://USER@HOST:PORT/DB`) instead of SQLite in `data_dir`.
    pub store_url: Option<String>,
    /// Keys that SUIT releases must be signed with.
    pub trust: Vec<TrustAnchor>,
    /// The base of Package URIs written to devices (`coap://host:port`).
    pub public_uri: String,
    pub coap: EndpointConfig,
    pub registry: RegistryLimits,
    pub dm: DmConfig,
    pub jobs: JobConfig,
    pub campaigns: CampaignConfig,
    /// Block1 bodies the server accepts (registration payloads).
    pub block1: Block1ReceiverConfig,
    /// Largest Block2 size served, as SZX (6 = 1024 bytes).
    pub max_block_szx: u8,
    /// Smaller caps for clients in these prefixes (`serve --block-size-for`); a release may cap
    /// its own blocks too. The smallest cap that applies wins.
    pub block_size_for: Vec<crate::coap::block::cap::PrefixCap>,
    /// How often expired registrations are removed.
    pub expiry_sweep: Duration,
    /// Seed of the CoAP endpoint's randomness (tokens, message ids, jitter).
    pub seed: u64,
    /// Whether to read a device's model and firmware version when it registers (off by
    /// default here; `serve` turns it on unless told `--read-device-info off`).
    pub read_device_info: ReadDeviceInfo,
    /// Whether plain CoAP devices may register (see [`SecurityMode`]).
    pub security: SecurityMode,
    /// Bounds of the `coaps://` listener ([`Server::start_secure`]).
    pub dtls: DtlsConfig,
    /// This node's name (`serve --node-id`), written as the owner of the registrations it hears.
    pub node_id: String,
    /// Whether the CoAP driver answers plain firmware-block GETs itself, straight from the
    /// datagram (the fast path, on by default). Off, every request takes the full path: for
    /// tests that compare the two, and for debugging.
    pub inline_answers: bool,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, public_uri: String) -> Self {
        ServerConfig {
            data_dir,
            store_url: None,
            trust: Vec::new(),
            public_uri,
            coap: EndpointConfig::default(),
            registry: RegistryLimits::default(),
            dm: DmConfig::default(),
            jobs: JobConfig::default(),
            campaigns: CampaignConfig::default(),
            block1: Block1ReceiverConfig {
                max_body: 4096,
                ..Block1ReceiverConfig::default()
            },
            max_block_szx: 6,
            block_size_for: Vec::new(),
            expiry_sweep: Duration::from_secs(5),
            seed: rand::random(),
            read_device_info: ReadDeviceInfo::Off,
            security: SecurityMode::Optional,
            dtls: DtlsConfig::default(),
            node_id: crate::registry::generated_node_id(),
            inline_answers: true,
        }
    }
}

/// A running server.
pub struct Server {
    pub store: Arc<Store>,
    pub registry: Arc<Registry>,
    pub repo: Arc<Repository>,
    /// The object models: built in, and added by operators (kept in `<data>/models`).
    pub models: Arc<Models>,
    pub dm: Arc<DeviceManager>,
    pub jobs: Arc<JobManager>,
    pub campaigns: Arc<CampaignManager>,
    pub events: EventBus,
    pub downloads: Arc<DownloadTracker>,
    pub coap: CoapHandle,
    /// The `coaps://` endpoint and its DTLS sessions, when started with [`Server::start_secure`].
    pub coaps: Option<(CoapHandle, DtlsHandle)>,
    /// The devices' DTLS credentials.
    pub credentials: Arc<Credentials>,
    pub clock: Arc<dyn Clock>,
    pub config: ServerConfig,
    /// The routing and expiry tasks, for [`Server::kill`].
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// Firmware blocks answered on the CoAP driver's fast path ([`Server::blocks_answered_inline`]).
    answered_inline: std::sync::atomic::AtomicU64,
}

/// A failure to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use the data dir {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Server {
    /// Opens the store in the data dir, starts the CoAP endpoint on `transport`, resumes the
    /// jobs that were running, and serves until the returned server is dropped.
    pub async fn start<T: Transport>(
        transport: T,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Server>, StartError> {
        let store = open_store(&config)?;
        Self::start_with_store(transport, config, clock, store).await
    }

    /// Like [`Server::start`], with a `coaps://` endpoint (DTLS 1.2 PSK) on `dtls_socket` too.
    pub async fn start_secure<T: Transport>(
        transport: T,
        dtls_socket: tokio::net::UdpSocket,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Server>, StartError> {
        let store = open_store(&config)?;
        Self::start_parts(transport, Some(dtls_socket), config, clock, store).await
    }

    /// Like [`Server::start`] with a given store (the simulator uses one in memory).
    pub async fn start_with_store<T: Transport>(
        transport: T,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
        store: Arc<Store>,
    ) -> Result<Arc<Server>, StartError> {
        Self::start_parts(transport, None, config, clock, store).await
    }

    async fn start_parts<T: Transport>(
        transport: T,
        dtls_socket: Option<tokio::net::UdpSocket>,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
        store: Arc<Store>,
    ) -> Result<Arc<Server>, StartError> {
        let events = EventBus::default();
        let credentials = Arc::new(Credentials::load(store.clone(), config.security)?);
        let registry = Arc::new(Registry::load_as(
            store.clone(),
            clock.clone(),
            events.clone(),
            config.registry.clone(),
            config.node_id.clone(),
        )?);
        let repo = Arc::new(
            Repository::open(&config.data_dir, store.clone(), config.trust.clone())
                .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?,
        );
        // On a shared store a notification on a token this node does not know may belong to an
        // observation another node made of a device that moved here: the endpoint hands it to
        // the routing task (`DeviceManager::take_on_notification`) instead of a Reset.
        let mut coap_config = config.coap.clone();
        coap_config.hand_over_unknown_notifications |= registry.is_shared();
        let (coap, incoming) = CoapServer::spawn(transport, coap_config.clone(), config.seed);
        let (coaps, incoming_secure) = match dtls_socket {
            Some(socket) => {
                let dtls = DtlsTransport::new(socket, config.dtls.clone(), credentials.clone());
                let sessions = dtls.handle();
                let seed = config.seed.wrapping_add(1);
                let (handle, incoming) = CoapServer::spawn(dtls, coap_config, seed);
                (Some((handle, sessions)), Some(incoming))
            }
            None => (None, None),
        };
        let models = Arc::new(Models::open(config.data_dir.join("models")));
        let dm = Arc::new(DeviceManager::new(
            coap.clone(),
            coaps.as_ref().map(|(h, _)| h.clone()),
            credentials.clone(),
            registry.clone(),
            models.clone(),
            events.clone(),
            config.dm.clone(),
        ));
        let downloads = Arc::new(DownloadTracker::default());
        let jobs = JobManager::new(
            store.clone(),
            dm.clone(),
            registry.clone(),
            repo.clone(),
            downloads.clone(),
            events.clone(),
            clock.clone(),
            config.jobs.clone(),
            config.public_uri.clone(),
        );
        let campaigns = CampaignManager::new(
            store.clone(),
            jobs.clone(),
            registry.clone(),
            dm.clone(),
            events.clone(),
            clock.clone(),
            config.campaigns.clone(),
        );
        let server = Arc::new(Server {
            store,
            registry,
            repo,
            models,
            dm,
            jobs,
            campaigns,
            events,
            downloads,
            coap,
            coaps,
            credentials,
            clock,
            config,
            tasks: std::sync::Mutex::default(),
            answered_inline: std::sync::atomic::AtomicU64::new(0),
        });
        let inline = |coap: &CoapHandle| {
            let server = Arc::downgrade(&server);
            coap.answer_inline(Arc::new(move |peer, identity, request, response| {
                server
                    .upgrade()?
                    .answer_inline(peer, identity, request, response)
            }));
        };
        if server.config.inline_answers {
            inline(&server.coap);
            if let Some((coaps, _)) = &server.coaps {
                inline(coaps);
            }
        }
        let mut tasks = vec![
            tokio::spawn(route(Arc::downgrade(&server), incoming)).abort_handle(),
            tokio::spawn(sweep_expired(Arc::downgrade(&server))).abort_handle(),
        ];
        if let Some(incoming) = incoming_secure {
            tasks.push(tokio::spawn(route(Arc::downgrade(&server), incoming)).abort_handle());
        }
        if server.registry.is_shared() {
            tasks.push(tokio::spawn(pick_up_jobs(Arc::downgrade(&server))).abort_handle());
        }
        if let Some(url) = server.store.postgres_url() {
            // Before the first registration can arrive: the nodes see each other's events.
            let node = server.config.node_id.clone();
            tasks.push(crate::events::relay::spawn(url, node, &server.events).abort_handle());
            let heard = server.events.subscribe_remote();
            tasks
                .push(tokio::spawn(release_on_move(Arc::downgrade(&server), heard)).abort_handle());
        }
        if server.config.read_device_info == ReadDeviceInfo::OnRegister {
            // Subscribed before the first registration can arrive (routing has only just started).
            tasks.push(crate::device_info::spawn(&server).abort_handle());
        }
        server
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tasks);
        let resumed = server.jobs.resume_all()?;
        if resumed > 0 {
            tracing::info!("resumed {resumed} unfinished job devices");
        }
        // After the jobs: a campaign's devices in flight are those jobs.
        let resumed = server.campaigns.resume_all()?;
        if resumed > 0 {
            tracing::info!("resumed {resumed} unfinished campaigns");
        }
        Ok(server)
    }

    /// On a shared store, tells the other nodes every [`HEARTBEAT_EVERY`] that this node is
    /// alive and serves its admin API at `api_url`, so they can forward device-management
    /// requests for the devices it holds. Nothing on SQLite.
    pub fn advertise_api(self: &Arc<Self>, api_url: String) {
        if !self.registry.is_shared() {
            return;
        }
        let server = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                let Some(s) = server.upgrade() else { return };
                let now = s.clock.now_ms();
                if let Err(e) = s.store.node_heartbeat(&s.config.node_id, &api_url, now) {
                    tracing::error!("cannot record this node's heartbeat: {e}");
                }
                drop(s);
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task.abort_handle());
    }

    /// Stops everything at once, as `kill -9` would: the CoAP endpoint, request routing, expiry
    /// and every job task. What the store holds stays; a server started again on the same data
    /// dir carries on from there. For the simulator's restart scenarios.
    pub fn kill(&self) {
        self.campaigns.abort_all();
        self.jobs.abort_all();
        self.coap.abort();
        if let Some((coaps, _)) = &self.coaps {
            coaps.abort();
        }
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    /// How many requests the CoAP driver's fast path answered (firmware blocks, see
    /// [`ServerConfig::inline_answers`]).
    pub fn blocks_answered_inline(&self) -> u64 {
        self.answered_inline
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn coap_addr(&self) -> SocketAddr {
        self.coap.local_addr()
    }

    /// The `coaps://` address, when there is one.
    pub fn coaps_addr(&self) -> Option<SocketAddr> {
        self.coaps.as_ref().map(|(h, _)| h.local_addr())
    }
}

/// The store: PostgreSQL when configured, else SQLite in the data dir. The data dir is created
/// if missing either way (the firmware files live there).
fn open_store(config: &ServerConfig) -> Result<Arc<Store>, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
    Ok(Arc::new(match &config.store_url {
        Some(url) => Store::open_postgres(url)?,
        None => Store::open(&config.data_dir)?,
    }))
}

async fn sweep_expired(server: std::sync::Weak<Server>) {
    loop {
        let Some(s) = server.upgrade() else { return };
        let every = s.config.expiry_sweep;
        // One line per sweep, however many: a fleet that drops off must not flood the log.
        let expired = s.registry.expire();
        if !expired.is_empty() {
            tracing::info!("{} registrations expired", expired.len());
            tracing::debug!("expired: {}", expired.join(", "));
        }
        // Devices that moved to another node: their job steps run there now, not here too.
        let moved = s.registry.release_moved();
        for ep in &moved {
            s.jobs.stop_endpoint(ep);
        }
        if !moved.is_empty() {
            tracing::info!("{} devices moved to other nodes", moved.len());
            tracing::debug!("moved: {}", moved.join(", "));
        }
        let registry = s.registry.clone();
        drop(s);
        // A node that took over one of ours asks for the sweep early ([`release_on_move`]); at
        // most one every EARLY_SWEEP_GAP, so that a burst of moves costs a few sweeps, not one
        // each.
        let gap = EARLY_SWEEP_GAP.min(every);
        tokio::time::sleep(gap).await;
        tokio::select! {
            () = tokio::time::sleep(every - gap) => {}
            () = registry.sweep_wanted() => {}
        }
    }
}

/// The shortest time between two sweeps of [`sweep_expired`].
const EARLY_SWEEP_GAP: Duration = Duration::from_millis(200);

/// Asks for a sweep at once when another node says it took over a device of this node's
/// ([`ServerEvent::Moved`]), so that this node stops driving it (its job steps, its
/// observations) within a round trip instead of up to a sweep period later.
async fn release_on_move(
    server: std::sync::Weak<Server>,
    mut heard: tokio::sync::broadcast::Receiver<Arc<str>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let json = match heard.recv().await {
            Ok(json) => json,
            Err(RecvError::Lagged(_)) => continue, // the periodic sweep still finds them
            Err(RecvError::Closed) => return,
        };
        let Some(s) = server.upgrade() else { return };
        if let Some(endpoint) = moved_away_from(&json, s.registry.node_id()) {
            s.registry.moved_away(endpoint);
        }
    }
}

/// The device that `json`, another node's event, says that node took over from `node`.
fn moved_away_from(json: &str, node: &str) -> Option<String> {
    // Most relayed events are download progress: a substring test spares parsing them.
    if !json.contains(r#""type":"moved""#) {
        return None;
    }
    let v = serde_json::from_str::<serde_json::Value>(json).ok()?;
    if v["type"] != "moved" || v["from_node"] != node {
        return None;
    }
    v["endpoint"].as_str().map(str::to_owned)
}

/// How often a node on a shared store records that it is alive ([`Server::advertise_api`]).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// How often a node on a shared store looks for job devices it should run: those created on
/// another node for a device this node holds.
const PICK_UP_EVERY: Duration = Duration::from_secs(1);

/// On a shared store, starts the unfinished job devices of the devices this node holds that no
/// task runs yet (a job or campaign started through another node's API), and the campaigns no
/// node runs (their node died). A few queries a second.
async fn pick_up_jobs(server: std::sync::Weak<Server>) {
    loop {
        tokio::time::sleep(PICK_UP_EVERY).await;
        let Some(s) = server.upgrade() else { return };
        match s.jobs.resume_all() {
            Ok(0) => {}
            Ok(n) => tracing::info!("picked up {n} job devices"),
            Err(e) => tracing::error!("cannot look for job devices to run: {e}"),
        }
        if let Err(e) = s.jobs.sync_cancels() {
            tracing::error!("cannot look for jobs cancelled on other nodes: {e}");
        }
        s.campaigns.pick_up();
    }
}

/// Answers incoming CoAP requests.
async fn route(server: std::sync::Weak<Server>, mut incoming: mpsc::Receiver<IncomingRequest>) {
    let mut block1 = match server.upgrade() {
        Some(s) => Block1Receiver::new(s.config.block1.clone()),
        None => return,
    };
    while let Some(mut req) = incoming.recv().await {
        let Some(s) = server.upgrade() else { return };
        // A device another node held (that node died, the kernel moved the device here).
        if let Some(ep) = s.registry.take_over_address(req.peer) {
            s.jobs.resume_endpoint(&ep);
        }
        s.registry.seen(req.peer);
        if req.is_unknown_notification() {
            // Another node's observation of a device this node may hold now (a database lookup).
            s.dm.take_on_notification(req);
            continue;
        }
        if !oscore::is_protected(&req.packet) {
            let Answer { packet, body } = s.handle(&mut block1, &req);
            req.respond_with_body(packet, body);
            continue;
        }
        // OSCORE: unprotect before the LwM2M layer, protect its answer (RFC 8613 §8.2-8.3). The
        // answer is sealed whole, so a block's slice joins its payload here.
        let contexts = s.credentials.oscore();
        let response = match contexts.unprotect(&req.packet) {
            Ok(Incoming::Request { inner, ticket }) => {
                req.packet = inner;
                req.identity = Some(ticket.identity.as_str().into());
                let Answer { mut packet, body } = s.handle(&mut block1, &req);
                if !body.is_empty() {
                    packet.payload = body.to_vec();
                }
                contexts
                    .protect(&ticket, &packet)
                    .unwrap_or_else(|e| e.response())
            }
            Ok(Incoming::Challenge(challenge)) => challenge,
            Err(e) => {
                tracing::debug!(peer = %req.peer, "OSCORE request refused: {e}");
                e.response()
            }
        };
        req.respond(response);
    }
}

/// A response, with its payload apart when it is a slice of a shared buffer (a firmware block).
struct Answer {
    packet: Packet,
    body: Bytes,
}

impl From<Packet> for Answer {
    fn from(packet: Packet) -> Self {
        Answer {
            packet,
            body: Bytes::new(),
        }
    }
}

/// Whether a request with Block2 option value `block2` (None: the whole body) asks for a range
/// that reaches the end of a body of `total` bytes. A server-capped block is a smaller one at
/// the same offset, so a range that ends before the body does not reach it either.
fn block2_reaches(block2: Option<u32>, total: u64) -> bool {
    block2.is_none_or(|v| {
        let size = 16u64 << (v & 0x7).min(6);
        (u64::from(v >> 4) + 1) * size >= total
    })
}

fn response(code: ResponseType) -> Packet {
    new_response(code)
}

fn error(code: ResponseType, why: &str) -> Packet {
    let mut p = response(code);
    // A diagnostic payload (RFC 7252 §5.5.2) helps whoever reads the traffic.
    p.payload = why.as_bytes().to_vec();
    p
}

fn strings(p: &Packet, opt: CoapOption) -> Vec<String> {
    p.get_option(opt)
        .map(|l| {
            l.iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Server {
    fn handle(&self, block1: &mut Block1Receiver, req: &IncomingRequest) -> Answer {
        let p = &req.packet;
        // Any critical option the endpoint does not know is refused (RFC 7252 §5.4.1).
        if let Some(n) = unknown_critical_option(p) {
            return error(
                ResponseType::BadOption,
                &format!("unknown critical option {n}"),
            )
            .into();
        }
        if p.get_option(CoapOption::ProxyUri).is_some()
            || p.get_option(CoapOption::ProxyScheme).is_some()
        {
            return error(
                ResponseType::ProxyingNotSupported,
                "this server is not a proxy",
            )
            .into();
        }
        // Borrowed from the packet (valid UTF-8 is not copied): this runs for every block.
        let path: Vec<std::borrow::Cow<str>> = p
            .get_option(CoapOption::UriPath)
            .map(|l| l.iter().map(|v| String::from_utf8_lossy(v)).collect())
            .unwrap_or_default();
        let path: Vec<&str> = path.iter().map(|s| s.as_ref()).collect();
        let MessageClass::Request(method) = p.header.code else {
            return error(ResponseType::BadRequest, "not a request").into();
        };
        match (method, path.as_slice()) {
            (RequestType::Post, ["rd"]) | (RequestType::Post, ["rd", _]) => {
                let body = match block1.handle(Instant::now().into_std(), req.peer, p) {
                    Block1Step::Complete { body, block1 } => (body, block1),
                    Block1Step::Reply(r) => return r.into(),
                };
                let mut r = self.registration(req, &path, &body.0);
                if let Some(b) = body.1 {
                    crate::coap::block::set_block1(&mut r, b);
                }
                r.into()
            }
            (RequestType::Delete, ["rd", id]) => {
                if let Err(refused) = self.admit_update(req, id) {
                    return refused.into();
                }
                match self.registry.deregister(id) {
                    Ok(_) => response(ResponseType::Deleted),
                    Err(e) => error(ResponseType::NotFound, &e.to_string()),
                }
                .into()
            }
            (RequestType::Get, ["fw", id, what @ ("manifest" | "image")]) => {
                let endpoint = self.registry.endpoint_by_address(req.peer);
                let (peer, authenticated) = (req.peer, req.identity.is_some());
                self.firmware_get(peer, authenticated, endpoint.as_deref(), p, id, what)
            }
            (_, ["rd", ..]) | (_, ["fw", ..]) => {
                error(ResponseType::MethodNotAllowed, "method not allowed here").into()
            }
            _ => error(ResponseType::NotFound, "no such resource").into(),
        }
    }

    /// A firmware GET (`/fw/{id}/manifest|image`), from a peer that authenticated on a secure
    /// transport or not.
    /// `endpoint`: the device this node holds at `peer`, if any.
    fn firmware_get(
        &self,
        peer: SocketAddr,
        authenticated: bool,
        endpoint: Option<&str>,
        p: &Packet,
        id: &str,
        what: &str,
    ) -> Answer {
        if let Err(refused) = self.may_serve_firmware(authenticated, endpoint) {
            return refused.into();
        }
        self.firmware(peer, p, id, what)
    }

    /// Whether firmware may go to a peer that is `authenticated` (DTLS or OSCORE) or not, and
    /// holds `endpoint` (if known): not in plain text when the server requires security or the
    /// endpoint has credentials (it fetches over its channel, not from the address it
    /// registered from).
    fn may_serve_firmware(
        &self,
        authenticated: bool,
        endpoint: Option<&str>,
    ) -> Result<(), Packet> {
        if authenticated {
            return Ok(());
        }
        if self.credentials.mode() == SecurityMode::Required {
            return Err(error(
                ResponseType::Unauthorized,
                "this server requires coaps:// or OSCORE",
            ));
        }
        match endpoint {
            Some(ep) if self.credentials.is_secured(ep) => Err(error(
                ResponseType::Unauthorized,
                &format!("endpoint {ep} has credentials: fetch over coaps:// or OSCORE"),
            )),
            _ => Ok(()),
        }
    }

    /// The driver's inline answer (see [`crate::coap::driver::InlineHandler`]): a plain GET of a
    /// firmware block, from a peer this node may answer without waiting (not a device another
    /// node may hold, whose takeover reads the database), with the options [`Server::firmware`]
    /// gives the same request. Everything else, errors included, is declined and goes to
    /// [`route`]; a declined request has only been noted as seen, which `route` does again.
    fn answer_inline(
        &self,
        peer: SocketAddr,
        identity: Option<&Arc<str>>,
        request: &Message<'_>,
        response: &mut MessageWriter<'_>,
    ) -> Option<Bytes> {
        // Unknown critical options (OSCORE's among them: unprotected in `route`) and proxying
        // are for the full path.
        if request.unknown_critical_option(KNOWN_OPTIONS).is_some()
            || request.option(option::PROXY_URI).is_some()
            || request.option(option::PROXY_SCHEME).is_some()
        {
            return None;
        }
        let mut path = request.path();
        let (Some(fw), Some(id), Some(what), None) =
            (path.next(), path.next(), path.next(), path.next())
        else {
            return None;
        };
        let id = std::str::from_utf8(id).ok()?;
        let what = match what {
            b"manifest" => "manifest",
            b"image" => "image",
            _ => return None,
        };
        if fw != b"fw" {
            return None;
        }
        // A release not opened yet is opened on the full path (a database read), as an unknown
        // one gets its 4.04 there.
        let files = self.repo.files_if_open(id)?;
        // The block that may end the image is recorded in the database (`note_image_served`):
        // that write is for the routing task, not the driver's.
        let block2 = request.uint_option(option::BLOCK2).ok().flatten();
        if what == "image" && block2_reaches(block2, files.image_len()) {
            return None;
        }
        let endpoint = self.registry.seen(peer);
        if endpoint.is_none() && self.registry.is_shared() {
            return None;
        }
        self.may_serve_firmware(identity.is_some(), endpoint.as_deref())
            .ok()?;
        let block = Block2Request::of_message(request);
        let served = self.firmware_block(peer, &files, what, block).ok()?;
        response.option(option::ETAG, &served.etag).ok()?;
        response
            .uint_option(option::CONTENT_FORMAT, u32::from(content::OCTET_STREAM))
            .ok()?;
        served.reply.write(response).ok()?;
        self.record_block(peer, id, what, &served);
        self.answered_inline
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(served.body)
    }

    /// Whether the peer of `req` may update or de-register `reg_id`: the same rule as for
    /// registering its endpoint. An unknown id passes here and gets its 4.04 from the registry.
    fn admit_update(&self, req: &IncomingRequest, reg_id: &str) -> Result<(), Packet> {
        // An Update for a registration another node wrote: this node carries it on.
        if let Some(ep) = self.registry.take_over_id(reg_id) {
            self.jobs.resume_endpoint(&ep);
        }
        let Some(endpoint) = self.registry.endpoint_of(reg_id) else {
            return Ok(());
        };
        self.credentials
            .admit(&endpoint, req.identity.as_deref())
            .map_err(|refusal| {
                tracing::warn!(peer = %req.peer, "{refusal}");
                error(ResponseType::Forbidden, &refusal.to_string())
            })
    }

    fn registration(&self, req: &IncomingRequest, path: &[&str], body: &[u8]) -> Packet {
        let (peer, p) = (req.peer, &req.packet);
        if let Some(cf) = crate::coap::block::uint_option(p, CoapOption::ContentFormat) {
            if cf != u32::from(content::LINK_FORMAT) && !body.is_empty() {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    "the object list must be application/link-format",
                );
            }
        }
        // The endpoint name and every other parameter must be UTF-8, not patched up with U+FFFD.
        let raw_query = p.get_option(CoapOption::UriQuery);
        if raw_query.is_some_and(|q| q.iter().any(|v| std::str::from_utf8(v).is_err())) {
            return error(
                ResponseType::BadRequest,
                "a registration parameter is not UTF-8",
            );
        }
        let query = strings(p, CoapOption::UriQuery);
        let admitted = match path {
            [_] => {
                // Without `ep` the registry answers 4.00 below.
                let endpoint = query.iter().find_map(|q| q.strip_prefix("ep="));
                endpoint
                    .map_or(Ok(()), |ep| {
                        self.credentials.admit(ep, req.identity.as_deref())
                    })
                    .map_err(|refusal| {
                        tracing::warn!(%peer, "{refusal}");
                        error(ResponseType::Forbidden, &refusal.to_string())
                    })
            }
            [_, id] => self.admit_update(req, id),
            _ => Ok(()),
        };
        if let Err(refused) = admitted {
            return refused;
        }
        let result = match path {
            [_] => self.registry.register(peer, &query, body).map(|reg| {
                let mut r = response(ResponseType::Created);
                r.add_option(CoapOption::LocationPath, b"rd".to_vec());
                r.add_option(CoapOption::LocationPath, reg.reg_id.into_bytes());
                r
            }),
            [_, id] => self
                .registry
                .update_or_take_over(peer, id, &query, body)
                .map(|(reg, taken_over)| {
                    if taken_over {
                        self.jobs.resume_endpoint(&reg.endpoint);
                    }
                    response(ResponseType::Changed)
                }),
            _ => return error(ResponseType::NotFound, "no such resource"),
        };
        result.unwrap_or_else(|e| {
            let code = match Code(e.coap_code()) {
                Code::NOT_FOUND => ResponseType::NotFound,
                Code::SERVICE_UNAVAILABLE => ResponseType::ServiceUnavailable,
                Code::TOO_MANY_REQUESTS => ResponseType::TooManyRequests,
                _ => ResponseType::BadRequest,
            };
            let mut r = error(code, &e.to_string());
            if let RegError::TooMany(wait) = e {
                // RFC 8516: Max-Age says when to try again.
                let secs = u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX);
                crate::coap::block::set_uint_option(&mut r, CoapOption::MaxAge, secs);
            }
            r
        })
    }

    /// Keeps the evidence that `peer`'s endpoint got the last block of release `id`, so that an
    /// update job can count the device's Downloaded even after a restart of the server.
    fn note_image_served(&self, peer: SocketAddr, id: &str) {
        let Some(ep) = self.registry.endpoint_at(peer) else {
            return;
        };
        let ip = peer.ip().to_string();
        if let Err(e) = self
            .store
            .note_image_served(id, &ep, &ip, self.clock.now_ms())
        {
            tracing::error!("cannot record the image of {id} served to {ep}: {e}");
        }
    }

    /// Serves a release's manifest or image with Block2, statelessly: each block is read from the
    /// shared open file at its offset.
    fn firmware(&self, peer: SocketAddr, p: &Packet, id: &str, what: &str) -> Answer {
        let Some(files) = self.repo.files(id) else {
            return error(ResponseType::NotFound, "no such release").into();
        };
        let served = match self.firmware_block(peer, &files, what, Block2Request::of_packet(p)) {
            Ok(served) => served,
            Err(refused) => return refused.into(),
        };
        let mut r = response(ResponseType::Content);
        r.add_option(CoapOption::ETag, served.etag.to_vec());
        r.set_content_format(coap_lite::ContentFormat::ApplicationOctetStream);
        served.reply.apply(&mut r);
        self.record_block(peer, id, what, &served);
        Answer {
            packet: r,
            body: served.body,
        }
    }

    /// The block of a release's `what` ("manifest" or "image") that `request` asks for, or the
    /// error to answer (checked in this order: manifest, Block2).
    fn firmware_block(
        &self,
        peer: SocketAddr,
        files: &ReleaseFiles,
        what: &str,
        request: Result<Block2Request, BlockError>,
    ) -> Result<ServedBlock, Packet> {
        let (total, etag) = match what {
            "manifest" => match files.manifest() {
                Some(m) => (m.len() as u64, files.manifest_etag()),
                None => {
                    return Err(error(
                        ResponseType::NotFound,
                        "a plain release has no manifest",
                    ));
                }
            },
            _ => (files.image_len(), files.image_etag()),
        };
        // The smallest of the server's, the release's and the client's prefix's caps.
        let max_szx = [
            Some(self.config.max_block_szx),
            files.max_szx(),
            crate::coap::block::cap::szx_for(&self.config.block_size_for, peer.ip()),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.config.max_block_szx);
        let reply = request
            .map_err(Block2Error::from)
            .and_then(|request| plan_block2(request, total, max_szx))
            .map_err(|e| error(e.response_code(), &e.to_string()))?;
        let Ok(len) = usize::try_from(reply.range.end - reply.range.start) else {
            return Err(error(
                ResponseType::InternalServerError,
                "block out of range",
            ));
        };
        // A slice of the release's shared image or manifest: no copy, no allocation.
        let body = match what {
            "manifest" => files.manifest_slice(reply.range.start, len),
            _ => files.image_slice(reply.range.start, len),
        };
        let Some(body) = body else {
            return Err(error(
                ResponseType::InternalServerError,
                "cannot read the image",
            ));
        };
        Ok(ServedBlock {
            etag,
            reply,
            total,
            body,
        })
    }

    /// Records a block of an image served to `peer`: the transfer's progress (an event a few
    /// times a second per transfer), and the image served whole once its last block goes.
    fn record_block(&self, peer: SocketAddr, id: &str, what: &str, served: &ServedBlock) {
        if what != "image" {
            return;
        }
        let total = served.total;
        // Without Block2 the whole image went in this one answer: block 0 of its own size.
        let fetched = match served.reply.block2 {
            Some(b) => BlockFetched {
                block: b.num(),
                block_size: b.size() as u32,
                image_len: total,
            },
            None => BlockFetched {
                block: 0,
                block_size: u32::try_from(total).unwrap_or(u32::MAX).max(1),
                image_len: total,
            },
        };
        let recorded = self
            .downloads
            .record(peer, id, fetched, self.clock.now_ms());
        let end = u64::from(fetched.block + 1) * u64::from(fetched.block_size);
        if end >= total {
            self.note_image_served(peer, id);
        }
        // Coalesced (a few events a second per transfer), not one per block.
        if recorded.newsworthy {
            let progress = recorded.progress;
            self.events.publish(ServerEvent::Download {
                endpoint: self
                    .registry
                    .endpoint_by_address(peer)
                    .unwrap_or_else(|| peer.to_string()),
                release_id: id.to_string(),
                block: fetched.block,
                block_size: fetched.block_size,
                bytes_done: progress.bytes_done,
                bytes_total: progress.bytes_total,
                requests: progress.requests,
                started_at_ms: progress.started_at_ms,
                rate_bps: progress.rate_bps,
                eta_s: progress.eta_s,
            });
        }
    }
}

/// A block of a release ready to send, the same for the inline and the routed answer.
struct ServedBlock {
    etag: [u8; crate::repository::ETAG_LEN],
    reply: Block2Reply,
    /// The representation's whole length.
    total: u64,
    body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::{block2_reaches, moved_away_from};
    use crate::events::ServerEvent;

    #[test]
    fn only_a_move_away_from_this_node_asks_for_a_sweep() {
        let moved = |from: &str| ServerEvent::Moved {
            endpoint: "dev".into(),
            from_node: from.into(),
            to_node: "b".into(),
        };
        assert_eq!(
            moved_away_from(&moved("a").to_json(Some("b")), "a").as_deref(),
            Some("dev")
        );
        assert_eq!(moved_away_from(&moved("c").to_json(Some("b")), "a"), None);
        let other = ServerEvent::Expired {
            endpoint: "a".into(),
        };
        assert_eq!(moved_away_from(&other.to_json(Some("b")), "a"), None);
        assert_eq!(
            moved_away_from(r#"{"type":"moved","from_node""#, "a"),
            None,
            "malformed"
        );
    }

    #[test]
    fn only_a_block_whose_range_reaches_the_end_may_be_the_last() {
        // 1000 bytes in 64-byte blocks (SZX 2): blocks 0..=15, the 16th ends at 1024.
        assert!(!block2_reaches(Some(2), 1000), "block 0");
        assert!(!block2_reaches(Some((14 << 4) | 2), 1000), "ends at 960");
        assert!(block2_reaches(Some((15 << 4) | 2), 1000), "ends at 1024");
        assert!(block2_reaches(Some((40 << 4) | 2), 1000), "past the end");
        assert!(block2_reaches(None, 1000), "no Block2: the whole image");
        // 1024-byte blocks (SZX 6) and the reserved SZX 7 read as 1024.
        assert!(block2_reaches(Some(6), 1024));
        assert!(!block2_reaches(Some(7), 2048));
    }
}

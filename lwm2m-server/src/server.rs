//! The assembled server: the CoAP endpoint and what answers on it (the registration interface at
//! `/rd` and the firmware repository at `/fw`), the device manager, the job engine and the store,
//! wired together. The CoAP side runs on any [`Transport`], so the simulator can plug in its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use lwm2m_core::coap::Code;
use lwm2m_core::content;
use suit_manifest::TrustAnchor;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::campaign::{CampaignConfig, CampaignManager};
use crate::clock::Clock;
use crate::coap::block::{Block1Receiver, Block1ReceiverConfig, Block1Step, serve_block2};
use crate::coap::{
    CoapHandle, CoapServer, EndpointConfig, IncomingRequest, Transport, new_response,
    unknown_critical_option,
};
use crate::dm::{DeviceManager, DmConfig};
use crate::downloads::{BlockFetched, DownloadTracker};
use crate::events::{EventBus, ServerEvent};
use crate::jobs::{JobConfig, JobManager};
use crate::registry::{Registry, RegistryLimits};
use crate::repository::Repository;
use crate::store::Store;

/// Everything the server can be configured with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the database and the firmware files live.
    pub data_dir: PathBuf,
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
    /// How often expired registrations are removed.
    pub expiry_sweep: Duration,
    /// Seed of the CoAP endpoint's randomness (tokens, message ids, jitter).
    pub seed: u64,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, public_uri: String) -> Self {
        ServerConfig {
            data_dir,
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
            expiry_sweep: Duration::from_secs(5),
            seed: rand::random(),
        }
    }
}

/// A running server.
pub struct Server {
    pub store: Arc<Store>,
    pub registry: Arc<Registry>,
    pub repo: Arc<Repository>,
    pub dm: Arc<DeviceManager>,
    pub jobs: Arc<JobManager>,
    pub campaigns: Arc<CampaignManager>,
    pub events: EventBus,
    pub downloads: Arc<DownloadTracker>,
    pub coap: CoapHandle,
    pub clock: Arc<dyn Clock>,
    pub config: ServerConfig,
    /// The routing and expiry tasks, for [`Server::kill`].
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
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
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
        let store = Arc::new(Store::open(&config.data_dir)?);
        Self::start_with_store(transport, config, clock, store).await
    }

    /// Like [`Server::start`] with a given store (the simulator uses one in memory).
    pub async fn start_with_store<T: Transport>(
        transport: T,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
        store: Arc<Store>,
    ) -> Result<Arc<Server>, StartError> {
        let events = EventBus::default();
        let registry = Arc::new(Registry::load(
            store.clone(),
            clock.clone(),
            events.clone(),
            config.registry.clone(),
        )?);
        let repo = Arc::new(
            Repository::open(&config.data_dir, store.clone(), config.trust.clone())
                .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?,
        );
        let (coap, incoming) = CoapServer::spawn(transport, config.coap.clone(), config.seed);
        let dm = Arc::new(DeviceManager::new(
            coap.clone(),
            registry.clone(),
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
            dm,
            jobs,
            campaigns,
            events,
            downloads,
            coap,
            clock,
            config,
            tasks: std::sync::Mutex::default(),
        });
        let tasks = [
            tokio::spawn(route(Arc::downgrade(&server), incoming)).abort_handle(),
            tokio::spawn(sweep_expired(Arc::downgrade(&server))).abort_handle(),
        ];
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

    /// Stops everything at once, as `kill -9` would: the CoAP endpoint, request routing, expiry
    /// and every job task. What the store holds stays; a server started again on the same data
    /// dir carries on from there. For the simulator's restart scenarios.
    pub fn kill(&self) {
        self.campaigns.abort_all();
        self.jobs.abort_all();
        self.coap.abort();
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    pub fn coap_addr(&self) -> SocketAddr {
        self.coap.local_addr()
    }
}

async fn sweep_expired(server: std::sync::Weak<Server>) {
    loop {
        let Some(s) = server.upgrade() else { return };
        let every = s.config.expiry_sweep;
        for ep in s.registry.expire() {
            tracing::info!("registration of {ep} expired");
        }
        drop(s);
        tokio::time::sleep(every).await;
    }
}

/// Answers incoming CoAP requests.
async fn route(server: std::sync::Weak<Server>, mut incoming: mpsc::Receiver<IncomingRequest>) {
    let mut block1 = match server.upgrade() {
        Some(s) => Block1Receiver::new(s.config.block1.clone()),
        None => return,
    };
    while let Some(req) = incoming.recv().await {
        let Some(s) = server.upgrade() else { return };
        s.registry.seen(req.peer);
        let response = s.handle(&mut block1, &req);
        req.respond(response);
    }
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
    fn handle(&self, block1: &mut Block1Receiver, req: &IncomingRequest) -> Packet {
        let p = &req.packet;
        // Any critical option the endpoint does not know is refused (RFC 7252 §5.4.1).
        if let Some(n) = unknown_critical_option(p) {
            return error(
                ResponseType::BadOption,
                &format!("unknown critical option {n}"),
            );
        }
        if p.get_option(CoapOption::ProxyUri).is_some()
            || p.get_option(CoapOption::ProxyScheme).is_some()
        {
            return error(
                ResponseType::ProxyingNotSupported,
                "this server is not a proxy",
            );
        }
        let path = strings(p, CoapOption::UriPath);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let MessageClass::Request(method) = p.header.code else {
            return error(ResponseType::BadRequest, "not a request");
        };
        match (method, path.as_slice()) {
            (RequestType::Post, ["rd"]) | (RequestType::Post, ["rd", _]) => {
                let body = match block1.handle(Instant::now().into_std(), req.peer, p) {
                    Block1Step::Complete { body, block1 } => (body, block1),
                    Block1Step::Reply(r) => return r,
                };
                let mut r = self.registration(req.peer, p, &path, &body.0);
                if let Some(b) = body.1 {
                    crate::coap::block::set_block1(&mut r, b);
                }
                r
            }
            (RequestType::Delete, ["rd", id]) => match self.registry.deregister(id) {
                Ok(_) => response(ResponseType::Deleted),
                Err(e) => error(ResponseType::NotFound, &e.to_string()),
            },
            (RequestType::Get, ["fw", id, what @ ("manifest" | "image")]) => {
                self.firmware(req.peer, p, id, what)
            }
            (_, ["rd", ..]) | (_, ["fw", ..]) => {
                error(ResponseType::MethodNotAllowed, "method not allowed here")
            }
            _ => error(ResponseType::NotFound, "no such resource"),
        }
    }

    fn registration(&self, peer: SocketAddr, p: &Packet, path: &[&str], body: &[u8]) -> Packet {
        if let Some(cf) = crate::coap::block::uint_option(p, CoapOption::ContentFormat) {
            if cf != u32::from(content::LINK_FORMAT) && !body.is_empty() {
                return error(
                    ResponseType::UnsupportedContentFormat,
                    "the object list must be application/link-format",
                );
            }
        }
        let query = strings(p, CoapOption::UriQuery);
        let result = match path {
            [_] => self.registry.register(peer, &query, body).map(|reg| {
                let mut r = response(ResponseType::Created);
                r.add_option(CoapOption::LocationPath, b"rd".to_vec());
                r.add_option(CoapOption::LocationPath, reg.reg_id.into_bytes());
                r
            }),
            [_, id] => self
                .registry
                .update(peer, id, &query, body)
                .map(|_| response(ResponseType::Changed)),
            _ => return error(ResponseType::NotFound, "no such resource"),
        };
        result.unwrap_or_else(|e| {
            let code = match Code(e.coap_code()) {
                Code::NOT_FOUND => ResponseType::NotFound,
                Code::SERVICE_UNAVAILABLE => ResponseType::ServiceUnavailable,
                _ => ResponseType::BadRequest,
            };
            error(code, &e.to_string())
        })
    }

    /// Serves a release's manifest or image with Block2, statelessly: each block is read from the
    /// shared open file at its offset.
    fn firmware(&self, peer: SocketAddr, p: &Packet, id: &str, what: &str) -> Packet {
        let Some(files) = self.repo.files(id) else {
            return error(ResponseType::NotFound, "no such release");
        };
        let (total, etag) = match what {
            "manifest" => match files.manifest() {
                Some(m) => (m.len() as u64, files.manifest_etag()),
                None => return error(ResponseType::NotFound, "a plain release has no manifest"),
            },
            _ => (files.image_len(), files.image_etag()),
        };
        let reply = match serve_block2(p, total, self.config.max_block_szx) {
            Ok(r) => r,
            Err(e) => return error(e.response_code(), &e.to_string()),
        };
        let len = (reply.range.end - reply.range.start) as usize;
        let mut payload = vec![0u8; len];
        match what {
            "manifest" => {
                let m = files.manifest().unwrap_or_default();
                let (a, b) = (reply.range.start as usize, reply.range.end as usize);
                payload.copy_from_slice(m.get(a..b).unwrap_or_default());
            }
            _ => match files.read_image(reply.range.start, &mut payload) {
                Ok(n) if n == len => {}
                _ => return error(ResponseType::InternalServerError, "cannot read the image"),
            },
        }
        let mut r = response(ResponseType::Content);
        r.add_option(CoapOption::ETag, etag.to_vec());
        r.set_content_format(coap_lite::ContentFormat::ApplicationOctetStream);
        reply.apply(&mut r);
        if what == "image" {
            if let Some(b) = reply.block2 {
                self.downloads.record(
                    peer,
                    id,
                    BlockFetched {
                        block: b.num(),
                        block_size: b.size() as u32,
                        image_len: total,
                    },
                );
                self.events.publish(ServerEvent::Download {
                    endpoint: self
                        .registry
                        .by_address(peer)
                        .map(|r| r.endpoint)
                        .unwrap_or_else(|| peer.to_string()),
                    release_id: id.to_string(),
                    block: b.num(),
                    block_size: b.size() as u32,
                    bytes_total: total,
                });
            }
        }
        r.payload = payload;
        r
    }
}

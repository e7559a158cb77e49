//! Device management (LwM2M TS Core 1.1 §6.3, §6.4): Read, Write (replace and partial update),
//! Execute, Discover, Write-Attributes, Observe and Cancel, Create and Delete on any path of a
//! registered client. Requests to a queue-mode client wait, in a bounded per-client queue, until
//! the client next speaks. Every request has a timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use lwm2m_core::Path;
use lwm2m_core::block::encode_uint_option;
use lwm2m_core::coap::Code;
use serde::Serialize;

use crate::coap::driver::{IncomingRequest, Observation, fetch_block2_via};
use crate::coap::{CoapHandle, RequestError, block};
use crate::content::{self, ContentError, Item, WriteFormat};
use crate::events::{EventBus, ServerEvent};
use crate::model::Models;
use crate::registry::Registry;
use crate::security::Credentials;
use crate::store::{ObservationRecord, token_hex};

/// Timeouts and bounds of device management.
#[derive(Clone, Debug)]
pub struct DmConfig {
    /// How long one request may take once sent (CoAP retransmissions included).
    pub request_timeout: Duration,
    /// How long a request to a sleeping queue-mode client waits for it to wake.
    pub queue_wait: Duration,
    /// Requests that may wait for one sleeping client at once.
    pub max_queued_per_client: usize,
    /// Largest response body accepted from a device (Block2 reassembly).
    pub max_response_body: usize,
}

impl Default for DmConfig {
    fn default() -> Self {
        DmConfig {
            request_timeout: Duration::from_secs(120),
            queue_wait: Duration::from_secs(24 * 3600),
            max_queued_per_client: 16,
            max_response_body: 64 * 1024,
        }
    }
}

/// Why a device-management request did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("no registered client named {0:?}")]
    UnknownClient(String),
    /// Another node sharing the PostgreSQL store holds the device: requests are not routed
    /// between nodes yet.
    #[error(
        "{endpoint:?} is held by node {node:?}: send this request to that node's admin API (`clients` shows each device's node)"
    )]
    Elsewhere { endpoint: String, node: String },
    #[error("{0} requests already wait for this sleeping client")]
    QueueFull(usize),
    #[error("the queue-mode client did not wake up in time")]
    Asleep,
    #[error("the client did not answer in time")]
    Timeout,
    #[error("CoAP: {0}")]
    Coap(#[from] RequestError),
    #[error("the client answered {}", code_text(*.code))]
    Device { code: u8, payload: String },
    /// The device sent a payload that could not be decoded.
    #[error(transparent)]
    Content(ContentError),
    /// The request cannot be sent as asked: a value that does not fit its resource, or an
    /// operation the resource's model does not allow.
    #[error("{0}")]
    BadRequest(String),
    /// The device has DTLS credentials, so it is never sent plain CoAP, and the server has no
    /// `coaps://` listener to reach it.
    #[error("{0} has DTLS credentials but the server has no coaps:// listener")]
    NoSecureChannel(String),
    /// The device has only an OSCORE context, and the operation (Observe, a Block1 push) is
    /// not done over OSCORE yet; it is never sent plain CoAP instead.
    #[error("{0} is secured with OSCORE, and this server does not yet observe or push over OSCORE")]
    OscoreOnly(String),
    /// OSCORE failed on our request or the device's answer.
    #[error("OSCORE: {0}")]
    Oscore(#[from] crate::coap::oscore::OscoreError),
}

impl From<ContentError> for DmError {
    fn from(e: ContentError) -> Self {
        if e.is_request_error() {
            DmError::BadRequest(e.to_string())
        } else {
            DmError::Content(e)
        }
    }
}

/// `0x84` → `4.04`.
pub fn code_text(code: u8) -> String {
    Code(code).to_string()
}

/// What a client answered.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    /// The response code, e.g. `2.05`.
    pub code: String,
    /// Decoded values, for a Read or an Observe.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Item>,
    /// Link format, for a Discover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<String>,
    /// Location of a created instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// The device manager.
pub struct DeviceManager {
    coap: CoapHandle,
    /// The `coaps://` endpoint, for devices with credentials.
    coaps: Option<CoapHandle>,
    credentials: Arc<Credentials>,
    registry: Arc<Registry>,
    models: Arc<Models>,
    events: EventBus,
    config: DmConfig,
    waiting: Mutex<HashMap<String, usize>>,
    observations: Mutex<HashMap<(String, String), tokio::task::JoinHandle<()>>>,
    /// Observations another node made that this node took on.
    taken_on: AtomicU64,
}

fn request(method: RequestType, path: &Path) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(method);
    for id in path.ids() {
        p.add_option(CoapOption::UriPath, id.to_string().into_bytes());
    }
    p
}

/// A uint option value (Content-Format, Accept) in its shortest form.
fn uint_option(v: u32) -> Vec<u8> {
    let (bytes, len) = encode_uint_option(v);
    bytes[..len].to_vec()
}

fn content_format(p: &Packet) -> Option<u16> {
    block::uint_option(p, CoapOption::ContentFormat).map(|cf| cf as u16)
}

fn code(p: &Packet) -> u8 {
    u8::from(p.header.code)
}

fn ok_or_device_error(p: &Packet) -> Result<(), DmError> {
    if Code(code(p)).is_success() {
        Ok(())
    } else {
        Err(DmError::Device {
            code: code(p),
            payload: String::from_utf8_lossy(&p.payload).into_owned(),
        })
    }
}

impl DeviceManager {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        coap: CoapHandle,
        coaps: Option<CoapHandle>,
        credentials: Arc<Credentials>,
        registry: Arc<Registry>,
        models: Arc<Models>,
        events: EventBus,
        config: DmConfig,
    ) -> Self {
        DeviceManager {
            coap,
            coaps,
            credentials,
            registry,
            models,
            events,
            config,
            waiting: Mutex::new(HashMap::new()),
            observations: Mutex::new(HashMap::new()),
            taken_on: AtomicU64::new(0),
        }
    }

    /// Whether `endpoint` has DTLS credentials (and is reached only over `coaps://`).
    pub fn is_secured(&self, endpoint: &str) -> bool {
        self.credentials.is_secured(endpoint)
    }

    /// The CoAP endpoint that reaches `endpoint`: `coaps://` for a device with credentials,
    /// plain CoAP otherwise.
    pub fn coap_for(&self, endpoint: &str) -> Result<&CoapHandle, DmError> {
        if !self.is_secured(endpoint) {
            return Ok(&self.coap);
        }
        if !self.credentials.has_psk(endpoint) {
            return Err(DmError::OscoreOnly(endpoint.into()));
        }
        self.coaps
            .as_ref()
            .ok_or_else(|| DmError::NoSecureChannel(endpoint.into()))
    }

    pub fn config(&self) -> &DmConfig {
        &self.config
    }

    /// The object models reads and writes are typed by.
    pub fn models(&self) -> &Arc<Models> {
        &self.models
    }

    /// Refuses an operation the resource's model does not allow (`W` for a write, `E` for an
    /// execute); a resource without a model may be asked anything.
    fn check_operation(&self, path: &Path, letter: char) -> Result<(), DmError> {
        let (Some(object), Some(resource)) = (path.object_id(), path.resource_id()) else {
            return Ok(());
        };
        let Some(model) = self.models.resource(object, resource) else {
            return Ok(());
        };
        let ops = model.operations;
        let allowed = match letter {
            'W' => ops.write,
            _ => ops.execute,
        };
        if allowed {
            return Ok(());
        }
        let verb = if letter == 'W' { "written" } else { "executed" };
        let what = match ops.as_str() {
            "" => "none (bootstrap only)".to_string(),
            other => other.to_string(),
        };
        Err(DmError::BadRequest(format!(
            "{path} ({}) cannot be {verb}: its operations are {what}",
            model.name
        )))
    }

    /// Whether `endpoint` registered as LwM2M 1.1 or later (SenML-CBOR rather than TLV).
    fn speaks_senml(&self, endpoint: &str) -> bool {
        self.registry
            .get(endpoint)
            .is_some_and(|r| r.lwm2m_version.as_str() >= "1.1")
    }

    /// The address to reach `endpoint` at now, waiting for a sleeping queue-mode client to wake.
    async fn reach(&self, endpoint: &str) -> Result<SocketAddr, DmError> {
        if self.registry.get(endpoint).is_none() {
            return Err(match self.registry.lookup(endpoint) {
                Some(reg) => DmError::Elsewhere {
                    endpoint: endpoint.into(),
                    node: reg.owner_node.unwrap_or_default(),
                },
                None => DmError::UnknownClient(endpoint.into()),
            });
        }
        if !self.registry.is_reachable(endpoint) {
            let waker = self.registry.waker(endpoint);
            {
                let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                let n = w.entry(endpoint.to_string()).or_insert(0);
                if *n >= self.config.max_queued_per_client {
                    return Err(DmError::QueueFull(*n));
                }
                *n += 1;
            }
            let woke = tokio::time::timeout(self.config.queue_wait, async {
                while !self.registry.is_reachable(endpoint) {
                    let notified = waker.notified();
                    if self.registry.is_reachable(endpoint) {
                        break;
                    }
                    notified.await;
                }
            })
            .await;
            let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = w.get_mut(endpoint) {
                *n = n.saturating_sub(1);
            }
            woke.map_err(|_| DmError::Asleep)?;
        }
        // Read the address last: the client may have moved while we waited.
        self.registry
            .get(endpoint)
            .map(|r| r.address)
            .ok_or_else(|| DmError::UnknownClient(endpoint.into()))
    }

    /// Sends one request to `endpoint` and returns the response, whatever its code.
    pub async fn send(&self, endpoint: &str, packet: Packet) -> Result<Packet, DmError> {
        let peer = self.reach(endpoint).await?;
        let response = tokio::time::timeout(
            self.config.request_timeout,
            self.exchange(endpoint, peer, packet),
        )
        .await
        .map_err(|_| DmError::Timeout)??;
        self.registry.seen(peer);
        Ok(response)
    }

    /// Whether `endpoint` has DTLS credentials, so it is reached (and fetches) over
    /// `coaps://`; a device with only an OSCORE context uses `coap://` with OSCORE.
    pub fn uses_dtls(&self, endpoint: &str) -> bool {
        self.credentials.has_psk(endpoint)
    }

    /// Whether requests to `endpoint` go over OSCORE (it has a context and no PSK).
    fn over_oscore(&self, endpoint: &str) -> bool {
        self.credentials.has_oscore(endpoint) && !self.credentials.has_psk(endpoint)
    }

    /// One request and its response: over `coaps://`, plain CoAP, or OSCORE on the plain
    /// endpoint (the request protected with the server's next sequence number, the answer
    /// verified against it).
    async fn exchange(
        &self,
        endpoint: &str,
        peer: SocketAddr,
        packet: Packet,
    ) -> Result<Packet, DmError> {
        if !self.over_oscore(endpoint) {
            return Ok(self.coap_for(endpoint)?.request(peer, packet).await?);
        }
        let contexts = self.credentials.oscore();
        let (outer, ticket) = contexts.protect_request(endpoint, &packet)?;
        let answer = self.coap.request(peer, outer).await?;
        let inner = contexts.unprotect_response(&ticket, &answer)?;
        // A device that lost its replay window (a reboot) answers an authentic request with a
        // protected 4.01 and an Echo option (RFC 8613 Appendix B.1.2, RFC 9175): repeat the
        // request once, with a new sequence number and that Echo value.
        let echo = inner
            .get_first_option(CoapOption::Unknown(crate::coap::oscore::ECHO))
            .filter(|_| inner.header.code == MessageClass::Response(ResponseType::Unauthorized))
            .cloned();
        let Some(echo) = echo else {
            return Ok(inner);
        };
        let mut again = packet;
        again.clear_option(CoapOption::Unknown(crate::coap::oscore::ECHO));
        again.add_option(CoapOption::Unknown(crate::coap::oscore::ECHO), echo);
        let (outer, ticket) = contexts.protect_request(endpoint, &again)?;
        let answer = self.coap.request(peer, outer).await?;
        Ok(contexts.unprotect_response(&ticket, &answer)?)
    }

    /// Read (GET), following Block2 for large values; `accept` picks the content format.
    pub async fn read(
        &self,
        endpoint: &str,
        path: &Path,
        accept: Option<u16>,
    ) -> Result<Answer, DmError> {
        let mut p = request(RequestType::Get, path);
        if let Some(cf) = accept {
            p.add_option(CoapOption::Accept, uint_option(u32::from(cf)));
        }
        let peer = self.reach(endpoint).await?;
        let limit = self.config.max_response_body;
        let (response, body) = tokio::time::timeout(
            self.config.request_timeout,
            fetch_block2_via(|q| self.exchange(endpoint, peer, q), p, limit),
        )
        .await
        .map_err(|_| DmError::Timeout)??;
        self.registry.seen(peer);
        ok_or_device_error(&response)?;
        let values = content::decode(path, content_format(&response), &body, &self.models)?;
        Ok(Answer {
            code: code_text(code(&response)),
            values,
            links: None,
            location: None,
        })
    }

    /// Write: PUT replaces, POST updates partially. `value` is a JSON value for a resource (a
    /// list or `{instance id: value}` for a multiple-instance one) or an object of
    /// `{resource id: value}` for an instance; each value is encoded by its resource's type:
    /// plain text for one value, TLV or SenML-CBOR by the client's LwM2M version for several.
    pub async fn write(
        &self,
        endpoint: &str,
        path: &Path,
        value: &serde_json::Value,
        replace: bool,
    ) -> Result<Answer, DmError> {
        self.write_as(endpoint, path, value, replace, None).await
    }

    /// [`DeviceManager::write`] in content format `format` (`None`: the default).
    pub async fn write_as(
        &self,
        endpoint: &str,
        path: &Path,
        value: &serde_json::Value,
        replace: bool,
        format: Option<WriteFormat>,
    ) -> Result<Answer, DmError> {
        self.check_operation(path, 'W')?;
        let senml = self.speaks_senml(endpoint);
        let (cf, body) = match value {
            serde_json::Value::Object(map) if path.resource_id().is_none() => {
                for id in map.keys().filter_map(|k| k.parse::<u16>().ok()) {
                    if let Ok(rp) = path.child(id) {
                        self.check_operation(&rp, 'W')?;
                    }
                }
                content::encode_instance(path, map, &self.models, format, senml)?
            }
            v => content::encode_resource(path, v, &self.models, format, senml)?,
        };
        let method = if replace || path.resource_id().is_some() {
            RequestType::Put
        } else {
            RequestType::Post
        };
        let mut p = request(method, path);
        p.add_option(CoapOption::ContentFormat, uint_option(u32::from(cf)));
        p.payload = body;
        let response = self.send(endpoint, p).await?;
        ok_or_device_error(&response)?;
        Ok(Answer {
            code: code_text(code(&response)),
            values: vec![],
            links: None,
            location: None,
        })
    }

    /// Execute (POST), with optional arguments (`0='a',1`).
    pub async fn execute(
        &self,
        endpoint: &str,
        path: &Path,
        args: Option<&str>,
    ) -> Result<Answer, DmError> {
        self.check_operation(path, 'E')?;
        let mut p = request(RequestType::Post, path);
        if let Some(a) = args {
            p.add_option(
                CoapOption::ContentFormat,
                uint_option(u32::from(lwm2m_core::content::TEXT_PLAIN)),
            );
            p.payload = a.as_bytes().to_vec();
        }
        let response = self.send(endpoint, p).await?;
        ok_or_device_error(&response)?;
        Ok(Answer {
            code: code_text(code(&response)),
            values: vec![],
            links: None,
            location: None,
        })
    }

    /// Discover (GET with Accept: application/link-format).
    pub async fn discover(&self, endpoint: &str, path: &Path) -> Result<Answer, DmError> {
        let mut p = request(RequestType::Get, path);
        p.add_option(
            CoapOption::Accept,
            uint_option(u32::from(lwm2m_core::content::LINK_FORMAT)),
        );
        let response = self.send(endpoint, p).await?;
        ok_or_device_error(&response)?;
        let links =
            String::from_utf8(response.payload.clone()).map_err(|_| ContentError::Malformed {
                format: "link format",
                detail: "not UTF-8".into(),
            })?;
        Ok(Answer {
            code: code_text(code(&response)),
            values: vec![],
            links: Some(links),
            location: None,
        })
    }

    /// Write-Attributes (PUT with `pmin`, `pmax`, `gt`, `lt`, `st`... in the query).
    pub async fn write_attributes(
        &self,
        endpoint: &str,
        path: &Path,
        attributes: &[(String, Option<String>)],
    ) -> Result<Answer, DmError> {
        let mut p = request(RequestType::Put, path);
        for (k, v) in attributes {
            let q = match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            };
            p.add_option(CoapOption::UriQuery, q.into_bytes());
        }
        let response = self.send(endpoint, p).await?;
        ok_or_device_error(&response)?;
        Ok(Answer {
            code: code_text(code(&response)),
            values: vec![],
            links: None,
            location: None,
        })
    }

    /// Create (POST on an object) with `{resource id: value}`.
    pub async fn create(
        &self,
        endpoint: &str,
        path: &Path,
        values: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Answer, DmError> {
        let senml = self.speaks_senml(endpoint);
        let (cf, body) = content::encode_instance(path, values, &self.models, None, senml)?;
        let mut p = request(RequestType::Post, path);
        p.add_option(CoapOption::ContentFormat, uint_option(u32::from(cf)));
        p.payload = body;
        let response = self.send(endpoint, p).await?;
        ok_or_device_error(&response)?;
        let location = response.get_option(CoapOption::LocationPath).map(|segs| {
            segs.iter()
                .map(|s| format!("/{}", String::from_utf8_lossy(s)))
                .collect::<String>()
        });
        Ok(Answer {
            code: code_text(code(&response)),
            values: vec![],
            links: None,
            location,
        })
    }

    /// Delete.
    pub async fn delete(&self, endpoint: &str, path: &Path) -> Result<Answer, DmError> {
        let response = self
            .send(endpoint, request(RequestType::Delete, path))
            .await?;
        ok_or_device_error(&response)?;
        Ok(Answer {
            code: code_text(code(&response)),
            values: vec![],
            links: None,
            location: None,
        })
    }

    /// Observe: registers the observation and returns the current value; later notifications go
    /// to the event stream. Observing the same path again replaces the old observation.
    pub async fn observe(self: &Arc<Self>, endpoint: &str, path: &Path) -> Result<Answer, DmError> {
        let mut p = request(RequestType::Get, path);
        p.set_observe_value(0);
        let peer = self.reach(endpoint).await?;
        let (first, observation) = tokio::time::timeout(
            self.config.request_timeout,
            self.coap_for(endpoint)?.observe(peer, p),
        )
        .await
        .map_err(|_| DmError::Timeout)??;
        self.registry.seen(peer);
        ok_or_device_error(&first)?;
        let values = content::decode(path, content_format(&first), &first.payload, &self.models)?;
        let token = token_hex(first.get_token());
        if self.registry.is_shared() {
            // For the node the device may move to (it takes the notifications on).
            let record = ObservationRecord {
                token: token.clone(),
                endpoint: endpoint.to_string(),
                path: path.to_string(),
                node: self.registry.node_id().to_string(),
                created_at_ms: self.registry.now_ms(),
            };
            if let Err(e) = self.registry.store().put_observation(&record) {
                tracing::warn!("cannot record the observation of {path} of {endpoint}: {e}");
            }
        }
        self.watch_notifications(endpoint, path, peer, token, observation);
        Ok(Answer {
            code: code_text(code(&first)),
            values,
            links: None,
            location: None,
        })
    }

    /// Publishes the notifications of `observation` as events, until it ends or is replaced or
    /// cancelled (by `endpoint` and `path`).
    fn watch_notifications(
        &self,
        endpoint: &str,
        path: &Path,
        peer: SocketAddr,
        token: String,
        mut observation: Observation,
    ) {
        let (ep, path_text) = (endpoint.to_string(), path.to_string());
        let events = self.events.clone();
        let registry = self.registry.clone();
        let models = self.models.clone();
        let obs_path = *path;
        let task = tokio::spawn(async move {
            let mut ended = false;
            while let Some(n) = observation.next().await {
                registry.seen(peer);
                // Without Observe or with an error code the device ended the observation.
                ended = n.get_observe_value().is_none() || !Code(code(&n)).is_success();
                let value =
                    match content::decode(&obs_path, content_format(&n), &n.payload, &models) {
                        Ok(items) => serde_json::to_value(items).unwrap_or_default(),
                        Err(e) => serde_json::json!({ "error": e.to_string() }),
                    };
                events.publish(ServerEvent::Notification {
                    endpoint: ep.clone(),
                    path: path_text.clone(),
                    value,
                });
            }
            if ended
                && registry.is_shared()
                && let Err(e) = registry.store().delete_observation(&token)
            {
                tracing::warn!("cannot forget the ended observation of {path_text} of {ep}: {e}");
            }
        });
        let old = self
            .observations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((endpoint.to_string(), path.to_string()), task);
        if let Some(old) = old {
            old.abort();
        }
    }

    /// A notification on a token this node's CoAP endpoint does not know (see
    /// [`IncomingRequest::is_unknown_notification`]): if the store has the observation, made by
    /// another node, of a device this node holds now at the notification's address, takes it
    /// on (the notification and the later ones are handled as the node that made it would);
    /// otherwise answers with a Reset. Looks the token up in the database, so it runs on the
    /// routing task, never the CoAP driver's.
    pub fn take_on_notification(self: &Arc<Self>, req: IncomingRequest) {
        // Only a device this node holds gets a database lookup: datagrams with made-up tokens
        // from any other address cost a Reset, not a query each.
        let peer = req.peer;
        let Some(held) = self.registry.endpoint_by_address(peer) else {
            return req.reject();
        };
        let token = token_hex(req.packet.get_token());
        let record = match self.registry.store().observation(&token) {
            Ok(Some(record)) => record,
            Ok(None) => return req.reject(),
            Err(e) => {
                tracing::warn!("cannot look up the observation of token {token}: {e}");
                return req.reject();
            }
        };
        if held != record.endpoint {
            tracing::debug!(%peer, "a notification of {}'s observation from another device", record.endpoint);
            return req.reject();
        }
        // A device with credentials is observed over its secure channel only: a plain datagram
        // from its address is not its notification.
        if let Err(refusal) = self
            .credentials
            .admit(&record.endpoint, req.identity.as_deref())
        {
            tracing::warn!(%peer, "a notification of {}'s observation refused: {refusal}", record.endpoint);
            return req.reject();
        }
        let Ok(path) = Path::parse(&record.path) else {
            tracing::warn!(
                "the stored observation {token} has a bad path {:?}",
                record.path
            );
            return req.reject();
        };
        let dm = self.clone();
        tokio::spawn(async move {
            let observation = match req.adopt().await {
                Ok(o) => o,
                Err(e) => return tracing::debug!("cannot take the observation on: {e}"),
            };
            dm.taken_on.fetch_add(1, Ordering::Relaxed);
            let node = dm.registry.node_id();
            if let Err(e) = dm.registry.store().set_observation_node(&token, node) {
                tracing::warn!("cannot record that this node holds observation {token}: {e}");
            }
            tracing::info!(
                "took on the observation of {path} of {} from node {}",
                record.endpoint,
                record.node
            );
            dm.watch_notifications(&record.endpoint, &path, peer, token, observation);
        });
    }

    /// How many observations made by other nodes this node has taken on since it started.
    pub fn observations_taken_on(&self) -> u64 {
        self.taken_on.load(Ordering::Relaxed)
    }

    /// Cancel an observation: forget it locally (the next notification is answered with a Reset)
    /// and tell the client with a GET carrying Observe=1 (RFC 7641 §3.6).
    pub async fn cancel_observe(&self, endpoint: &str, path: &Path) -> Result<bool, DmError> {
        let task = self
            .observations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(endpoint.to_string(), path.to_string()));
        let Some(task) = task else { return Ok(false) };
        task.abort();
        if self.registry.is_shared()
            && let Err(e) = self
                .registry
                .store()
                .delete_observation_of(endpoint, &path.to_string())
        {
            tracing::warn!("cannot forget the observation of {path} of {endpoint}: {e}");
        }
        let mut p = request(RequestType::Get, path);
        p.set_observe_value(1);
        // The explicit deregistration is a courtesy; a client that does not answer is fine.
        let _ = self.send(endpoint, p).await;
        Ok(true)
    }

    /// Where `endpoint` can be reached now (waits for a sleeping client).
    pub async fn address(&self, endpoint: &str) -> Result<SocketAddr, DmError> {
        self.reach(endpoint).await
    }
}

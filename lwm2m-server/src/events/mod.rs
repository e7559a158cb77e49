//! The server's event stream: registrations, notifications, job and campaign progress, fanned out to the
//! REST API's server-sent events and to anything else that listens. Slow listeners lose the oldest
//! events rather than slowing the server down.
//!
//! Several nodes on one PostgreSQL database hear each other's events too ([`relay`]): they
//! reach the REST API's stream only ([`EventBus::subscribe_remote`]), never the job and
//! campaign machinery of this node, which acts on its own devices' events alone.
//!
//! - `wire`: the NOTIFY payload (a batch of events of one node) and its checks.
//! - `coalesce`: download progress, at most once a second per device and a budget per node.
//! - `relay`: the LISTEN/NOTIFY connection, with reconnection.

mod coalesce;
pub(crate) mod relay;
mod wire;

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::status::{CampaignDeviceStatus, CampaignState, JobDeviceStatus};

/// Something that happened, as the event stream reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerEvent {
    Registered {
        endpoint: String,
        reg_id: String,
        address: String,
    },
    Updated {
        endpoint: String,
        address: String,
    },
    Deregistered {
        endpoint: String,
    },
    Expired {
        endpoint: String,
    },
    /// A node took over a device another node held (on a shared store): its datagrams now reach
    /// `to_node`. `from_node` releases it at once when it hears this.
    Moved {
        endpoint: String,
        from_node: String,
        to_node: String,
    },
    Notification {
        endpoint: String,
        path: String,
        value: serde_json::Value,
    },
    /// A device of a job moved on. `state` and `result` are Object 5's numbers, with their
    /// names beside them; `detail` says it in words.
    Job {
        job_id: i64,
        endpoint: String,
        status: JobDeviceStatus,
        state: Option<i64>,
        state_name: Option<&'static str>,
        result: Option<i64>,
        result_name: Option<&'static str>,
        detail: Option<String>,
    },
    /// A block of a release's image was served: the transfer's progress from the server's own
    /// record of the distinct blocks served.
    Download {
        endpoint: String,
        release_id: String,
        block: u32,
        block_size: u32,
        bytes_done: u64,
        bytes_total: u64,
        /// Block requests answered, repeats included: with `started_at_ms`, it orders the
        /// reports of one transfer (a page polling beside the stream must not step back).
        requests: u64,
        /// When the server served this transfer's first block (ms since the epoch).
        started_at_ms: i64,
        /// Bytes per second over the last seconds (none at first).
        rate_bps: Option<f64>,
        /// Seconds left at that rate.
        eta_s: Option<f64>,
    },
    /// What a device reported of itself (read at registration, or by an operator's read).
    DeviceInfo {
        endpoint: String,
        model: Option<String>,
        firmware_version: Option<String>,
    },
    /// A campaign changed state (running, soaking, paused, halted, aborted, completed).
    CampaignState {
        campaign_id: i64,
        state: CampaignState,
        /// Why it halted or was aborted.
        reason: Option<String>,
        /// The wave in progress (0-based).
        wave: u32,
        /// The end of the soak, when soaking.
        soak_until_ms: Option<i64>,
    },
    /// A campaign started a wave.
    CampaignWave {
        campaign_id: i64,
        wave: u32,
        /// Cumulative share of the target set at the end of this wave.
        percent: u32,
        size: u64,
    },
    /// A device of a campaign started (`running`) or reached its outcome (succeeded, failed,
    /// unreachable, cancelled, skipped).
    CampaignDevice {
        campaign_id: i64,
        wave: u32,
        endpoint: String,
        status: CampaignDeviceStatus,
        job_id: Option<i64>,
        error: Option<String>,
    },
}

impl ServerEvent {
    /// The device the event is about, if any.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            ServerEvent::Registered { endpoint, .. }
            | ServerEvent::Updated { endpoint, .. }
            | ServerEvent::Deregistered { endpoint }
            | ServerEvent::Expired { endpoint }
            | ServerEvent::Moved { endpoint, .. }
            | ServerEvent::Notification { endpoint, .. }
            | ServerEvent::Job { endpoint, .. }
            | ServerEvent::Download { endpoint, .. }
            | ServerEvent::DeviceInfo { endpoint, .. }
            | ServerEvent::CampaignDevice { endpoint, .. } => Some(endpoint),
            ServerEvent::CampaignState { .. } | ServerEvent::CampaignWave { .. } => None,
        }
    }

    /// The event's JSON as the event stream sends it, with the node that saw it when the
    /// store is shared (`"node": "n1"`); without one, exactly as a single node always sent it.
    pub fn to_json(&self, node: Option<&str>) -> String {
        let Some(node) = node else {
            return serde_json::to_string(self).unwrap_or_default();
        };
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("node".into(), node.into());
        }
        v.to_string()
    }
}

/// The event bus: this node's events, and the other nodes' (their stream JSON, node named).
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<ServerEvent>,
    remote: broadcast::Sender<Arc<str>>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        EventBus {
            tx: broadcast::channel(capacity).0,
            remote: broadcast::channel(capacity).0,
        }
    }

    /// Publishes an event; nobody listening is fine.
    pub fn publish(&self, event: ServerEvent) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.tx.subscribe()
    }

    /// Publishes another node's event (its JSON, with `node`), for the event stream only.
    pub fn publish_remote(&self, json: Arc<str>) {
        let _ = self.remote.send(json);
    }

    /// The other nodes' events, as JSON with `node` (nothing on SQLite: one node).
    pub fn subscribe_remote(&self) -> broadcast::Receiver<Arc<str>> {
        self.remote.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(1024)
    }
}

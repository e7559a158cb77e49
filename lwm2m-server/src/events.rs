//! The server's event stream: registrations, notifications, job and campaign progress, fanned out to the
//! REST API's server-sent events and to anything else that listens. Slow listeners lose the oldest
//! events rather than slowing the server down.

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
    Notification {
        endpoint: String,
        path: String,
        value: serde_json::Value,
    },
    Job {
        job_id: i64,
        endpoint: String,
        status: JobDeviceStatus,
        state: Option<i64>,
        result: Option<i64>,
        detail: Option<String>,
    },
    Download {
        endpoint: String,
        release_id: String,
        block: u32,
        block_size: u32,
        bytes_total: u64,
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

/// The event bus.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<ServerEvent>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        EventBus {
            tx: broadcast::channel(capacity).0,
        }
    }

    /// Publishes an event; nobody listening is fine.
    pub fn publish(&self, event: ServerEvent) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(1024)
    }
}

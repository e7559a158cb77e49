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

//! The node's answer to the simulator's query: its place in the mesh, OpenThread's MAC counters,
//! and for an end device what its flash holds (version and SHA-256 of the running image, read as
//! a debugger would).

use lwm2m_client::power_on::running_image;
use openthread::{DeviceRole, OpenThread};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::device::DeviceState;

/// The node as the simulator sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    pub role: String,
    pub rloc16: u16,
    /// MAC frames sent (first attempts and retries), retries, and frames that got no ACK after
    /// every retry; CCA failures.
    pub mac_tx_total: u32,
    pub mac_tx_retry: u32,
    pub mac_tx_ack_requested: u32,
    pub mac_tx_acked: u32,
    pub mac_tx_err_cca: u32,
    pub mac_tx_max_retry_expiry: u32,
    pub mac_rx_total: u32,
    pub boots: u32,
    pub registered: bool,
    pub fw_state: u8,
    pub fw_result: u8,
    pub running_version: Option<String>,
    pub active_sha256: Option<String>,
}

fn role_name(role: DeviceRole) -> &'static str {
    match role {
        DeviceRole::Disabled => "disabled",
        DeviceRole::Detached => "detached",
        DeviceRole::Child => "child",
        DeviceRole::Router => "router",
        DeviceRole::Leader => "leader",
        DeviceRole::Other(_) => "other",
    }
}

/// The status as JSON.
pub fn json(ot: &OpenThread<'static>, dev: &DeviceState) -> String {
    let mac = ot.mac_counters();
    let mut s = Status {
        role: role_name(ot.device_role()).into(),
        rloc16: ot.rloc16(),
        mac_tx_total: mac.tx_total,
        mac_tx_retry: mac.tx_retry,
        mac_tx_ack_requested: mac.tx_ack_requested,
        mac_tx_acked: mac.tx_acked,
        mac_tx_err_cca: mac.tx_err_cca,
        mac_tx_max_retry_expiry: mac.tx_direct_max_retry_expiry + mac.tx_indirect_max_retry_expiry,
        mac_rx_total: mac.rx_total,
        boots: dev.boots,
        registered: dev.registered,
        fw_state: dev.fw_state,
        fw_result: dev.fw_result,
        ..Status::default()
    };
    if let Some(flash) = &dev.flash {
        s.running_version = running_image(&**flash)
            .ok()
            .flatten()
            .map(|h| h.version.as_str().to_string());
        let start = flash.layout().active().start as usize;
        let len = dev.check_len;
        s.active_sha256 = flash
            .with_flash(|f| f.as_bytes().get(start..start + len).map(|b| b.to_vec()))
            .flatten()
            .map(|b| hex(&Sha256::digest(&b)));
    }
    serde_json::to_string(&s).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! What one node process is: its role in the mesh, when it starts, its seed, and for an end
//! device the firmware it runs and trusts. The simulator writes it as JSON; the node reads it.

use serde::{Deserialize, Serialize};

/// A node's job in the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Forms the network (the leader) and bridges UDP between the mesh and the server.
    BorderRouter,
    /// A router: attaches, then asks to become a router at once (no 120 s selection jitter).
    Router,
    /// A minimal end device (rx-on-when-idle child) running the LwM2M engine.
    EndDevice,
    /// A sleepy end device: radio off between data polls every `poll_ms`.
    SleepyEndDevice { poll_ms: u32 },
}

impl Role {
    pub fn is_device(self) -> bool {
        matches!(self, Role::EndDevice | Role::SleepyEndDevice { .. })
    }
}

/// The firmware side of an end device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub endpoint: String,
    /// The factory image (1.0.0) the device is flashed with.
    pub factory_image: std::path::PathBuf,
    /// Staging and active slot size in bytes (whole 4 KiB pages).
    pub slot_size: u32,
    /// The release signing key's public half, SEC1 hex.
    pub trust_sec1_hex: String,
    pub vendor_id: [u8; 16],
    pub class_id: [u8; 16],
    pub block_size: u16,
    pub window: u8,
    pub lifetime_s: u32,
    /// Bytes of ACTIVE that [`crate::status`] hashes (the release's image size).
    pub check_len: usize,
}

/// One node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeSpec {
    pub id: u16,
    pub role: Role,
    /// When the node enables Thread, in virtual milliseconds (later rings start later, so that
    /// each finds a router to attach to instead of forming a partition of its own).
    pub start_ms: u64,
    pub seed: u64,
    /// The active operational dataset, TLVs.
    pub dataset: Vec<u8>,
    pub device: Option<DeviceSpec>,
}

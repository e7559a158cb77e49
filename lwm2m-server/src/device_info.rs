//! What a device says about itself, for the fleet view's model and firmware columns and for
//! campaign filters: its model (`/3/0/1`) and firmware version (`/3/0/3`), kept in the store's
//! `device_info` cache. They are learnt from any read that returns them, and (with
//! [`ReadDeviceInfo::OnRegister`], `serve`'s default) read once right after each registration,
//! while the device is surely awake. A sleepy mesh turns that off (`--read-device-info off`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::campaign::target::DeviceInfo;
use crate::content::Item;
use crate::events::ServerEvent;
use crate::paths::{DEVICE_FIRMWARE_VERSION, DEVICE_MODEL_NUMBER};
use crate::server::Server;

/// When the server reads a device's model and firmware version on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadDeviceInfo {
    /// Once per registration (a Register, not its Updates).
    OnRegister,
    /// Never: only reads an operator asks for fill the cache.
    #[default]
    Off,
}

impl std::str::FromStr for ReadDeviceInfo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on-register" => Ok(ReadDeviceInfo::OnRegister),
            "off" => Ok(ReadDeviceInfo::Off),
            other => Err(format!("{other:?}: give on-register or off")),
        }
    }
}

/// Caches the model and firmware version among `values` (what a read returned) and tells the
/// event stream, so the fleet view fills in.
pub fn remember(server: &Server, endpoint: &str, values: &[Item]) {
    let text = |path: lwm2m_core::Path| {
        let path = path.to_string();
        values
            .iter()
            .find(|i| i.path == path)
            .and_then(|i| i.value.as_str())
            .map(str::to_owned)
    };
    let info = DeviceInfo {
        model: text(DEVICE_MODEL_NUMBER),
        firmware_version: text(DEVICE_FIRMWARE_VERSION),
        read_at_ms: server.clock.now_ms(),
    };
    if info.model.is_none() && info.firmware_version.is_none() {
        return;
    }
    if let Err(e) = server.store.put_device_info(endpoint, &info) {
        tracing::warn!("{endpoint}: cannot cache the device info: {e}");
        return;
    }
    server.events.publish(ServerEvent::DeviceInfo {
        endpoint: endpoint.to_string(),
        model: info.model,
        firmware_version: info.firmware_version,
    });
}

/// Reads the model and firmware version of every device that registers, once per registration.
pub fn spawn(server: &Arc<Server>) -> tokio::task::JoinHandle<()> {
    let mut events = server.events.subscribe();
    let weak = Arc::downgrade(server);
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ServerEvent::Registered {
                    endpoint, reg_id, ..
                }) => {
                    let weak = weak.clone();
                    tokio::spawn(async move { read(weak, endpoint, reg_id).await });
                }
                // Missing a registration only means its columns stay empty until a read.
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    })
}

async fn read(server: Weak<Server>, endpoint: String, reg_id: String) {
    let Some(s) = server.upgrade() else { return };
    let same_registration = |s: &Server| {
        s.registry
            .get(&endpoint)
            .is_some_and(|r| r.reg_id == reg_id && r.has_object(lwm2m_core::object3::OBJECT_ID))
    };
    if !same_registration(&s) {
        return;
    }
    // A sleeping device is not waited for beyond its awake window plus one request.
    let limit = s.dm.config().request_timeout + Duration::from_secs(5);
    let mut values = Vec::new();
    for path in [DEVICE_MODEL_NUMBER, DEVICE_FIRMWARE_VERSION] {
        match tokio::time::timeout(limit, s.dm.read(&endpoint, &path, None)).await {
            Ok(Ok(answer)) => values.extend(answer.values),
            // A device without the resource answers 4.04: go on with the other one.
            Ok(Err(crate::dm::DmError::Device { .. })) => {}
            Ok(Err(e)) => {
                tracing::debug!("{endpoint}: no device info at registration: {e}");
                break;
            }
            Err(_) => break,
        }
        if !same_registration(&s) {
            return;
        }
    }
    remember(&s, &endpoint, &values);
}

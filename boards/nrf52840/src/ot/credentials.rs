//! Network credentials and OpenThread's settings, both in the SETTINGS partition (sequential-storage,
//! `lwm2m_client::storage::persist`), outside ACTIVE and DFU: an update never overwrites them.
//!
//! - The provisioning record (`board_key::THREAD_DATASET`): the active operational dataset as
//!   TLVs, written at the factory (`persist::store_blob`). It seeds OpenThread when OpenThread has
//!   no dataset of its own; afterwards OpenThread's stored one wins (a network may move channel
//!   or rotate its key through a pending dataset, and the device must follow it).
//! - OpenThread's own settings (`board_key::THREAD_SETTINGS`): network info with the frame
//!   counters, parent, dataset. Kept in RAM (`RamSettings`) for OpenThread's synchronous calls and
//!   written through to flash as one blob when they change, so a reboot re-attaches as the same
//!   child with counters that only go forward.

use lwm2m_client::storage::layout::DeviceFlash;
use lwm2m_client::storage::persist::{self, board_key};
use openthread::{OpenThread, Settings, SettingsError, SimpleRamSettings};
use static_cell::StaticCell;

use super::records::{decode, encode, hash, valid_dataset};
use super::{Flash, State};

/// Largest active operational dataset (OpenThread's `OT_OPERATIONAL_DATASET_MAX_LENGTH`).
const MAX_DATASET_LEN: usize = 254;
/// RAM for OpenThread's settings: an MTD stores a few hundred bytes (two datasets, network and
/// parent info, the SLAAC secret).
const SETTINGS_LEN: usize = 1024;

/// Puts the device on its network: nothing to do if OpenThread has a dataset of its own;
/// otherwise the provisioned one, or (feature `thread-joiner`) the Joiner's. The error is the
/// state to show.
pub async fn commission(
    ot: &OpenThread<'static>,
    device: &DeviceFlash<Flash>,
) -> Result<(), State> {
    if ot.is_commissioned() {
        return Ok(());
    }
    let mut tlvs = [0u8; MAX_DATASET_LEN];
    match persist::load_blob(device, board_key::THREAD_DATASET, &mut tlvs) {
        Ok(Some(n)) => {
            let dataset = tlvs.get(..n).unwrap_or(&[]);
            if !valid_dataset(dataset) {
                return Err(State::NoCredentials);
            }
            ot.set_active_dataset_tlv(dataset)
                .map_err(|_| State::Failed)
        }
        // Nothing provisioned, or a record that does not fit a dataset.
        Ok(None) | Err(_) => join(ot, device).await,
    }
}

/// Commissioning by Joiner: the PSKd from the provisioning record, retried until a
/// Commissioner admits the device; the dataset it hands over lands in OpenThread's settings.
#[cfg(feature = "thread-joiner")]
async fn join(ot: &OpenThread<'static>, device: &DeviceFlash<Flash>) -> Result<(), State> {
    let mut pskd = [0u8; 32];
    let n = match persist::load_blob(device, board_key::THREAD_PSKD, &mut pskd) {
        Ok(Some(n)) => n,
        _ => return Err(State::NoCredentials),
    };
    let Some(pskd) = pskd.get(..n).and_then(|p| core::str::from_utf8(p).ok()) else {
        return Err(State::NoCredentials);
    };
    super::set_state(State::Joining);
    ot.enable_ipv6(true).map_err(|_| State::Failed)?;
    loop {
        if ot.join(pskd, None).await.is_ok() {
            return Ok(());
        }
        // No Commissioner yet, or it refused: try again later.
        embassy_time::Timer::after_secs(30).await;
    }
}

#[cfg(not(feature = "thread-joiner"))]
async fn join(_ot: &OpenThread<'static>, _device: &DeviceFlash<Flash>) -> Result<(), State> {
    Err(State::NoCredentials)
}

/// OpenThread's settings: RAM for its synchronous calls, written through to SETTINGS.
pub struct FlashSettings {
    ram: SimpleRamSettings<'static>,
    device: &'static DeviceFlash<Flash>,
    /// A hash of the blob in flash: identical rewrites (OpenThread saves the same values often,
    /// e.g. the dataset at every start) do not wear the flash.
    stored: u32,
}

/// OpenThread's settings for `device`, loaded from flash (an unreadable blob starts empty: the
/// device then attaches afresh from the provisioned dataset).
pub fn settings(device: &'static DeviceFlash<Flash>) -> &'static mut FlashSettings {
    static RAM: StaticCell<[u8; SETTINGS_LEN]> = StaticCell::new();
    static SETTINGS: StaticCell<FlashSettings> = StaticCell::new();
    let mut ram = SimpleRamSettings::new(RAM.init([0; SETTINGS_LEN]));
    let mut blob = [0u8; SETTINGS_LEN];
    let mut stored = hash(&[]);
    if let Ok(Some(n)) = persist::load_blob(device, board_key::THREAD_SETTINGS, &mut blob) {
        let blob = blob.get(..n).unwrap_or(&[]);
        if decode(blob, |k, v| ram.add(k, v).ok()).is_some() {
            stored = hash(blob);
        } else {
            ram.clear();
        }
    }
    SETTINGS.init(FlashSettings {
        ram,
        device,
        stored,
    })
}

impl FlashSettings {
    /// Writes the settings through to flash if they changed. A failed write leaves them in RAM
    /// for this run (OpenThread goes on; the next change tries again).
    fn persist(&mut self) {
        let mut blob = [0u8; SETTINGS_LEN];
        let Some(n) = encode(self.ram.iter(), &mut blob) else {
            return;
        };
        let blob = blob.get(..n).unwrap_or(&[]);
        let h = hash(blob);
        if h != self.stored
            && persist::store_blob(self.device, board_key::THREAD_SETTINGS, blob).is_ok()
        {
            self.stored = h;
        }
    }
}

impl Settings for FlashSettings {
    fn init(&mut self, _sensitive_keys: &[u16]) {}

    fn get(
        &mut self,
        key: u16,
        index: usize,
        buf: &mut [u8],
    ) -> Result<Option<usize>, SettingsError> {
        self.ram.get(key, index, buf)
    }

    fn add(&mut self, key: u16, value: &[u8]) -> Result<(), SettingsError> {
        self.ram.add(key, value)?;
        self.persist();
        Ok(())
    }

    fn remove(&mut self, key: u16, index: Option<usize>) -> Result<bool, SettingsError> {
        let removed = self.ram.remove(key, index)?;
        if removed {
            self.persist();
        }
        Ok(removed)
    }

    fn set(&mut self, key: u16, value: &[u8]) -> Result<(), SettingsError> {
        self.ram.set(key, value)?;
        self.persist();
        Ok(())
    }

    fn clear(&mut self) -> Result<(), SettingsError> {
        self.ram.clear();
        self.persist();
        Ok(())
    }

    fn deinit(&mut self) {}
}

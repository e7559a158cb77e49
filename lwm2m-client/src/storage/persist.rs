//! Keeps the [`FirmwareState`] record in sequential-storage's map on the SETTINGS partition: one
//! key, rewritten as a whole on every store. sequential-storage appends the new item before the
//! old one stops counting and repairs a half-done operation on the next access, so a power cut
//! during [`store`] leaves either the old or the new record.
//!
//! sequential-storage is async; the blocking flash is wrapped in `BlockingAsync` and each call is
//! driven to completion with `embassy_futures::block_on` (its futures never wait).

use core::fmt;

use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_futures::block_on;
use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapStorage, SerializationError, Value};

use super::layout::{DeviceFlash, Partition};
use super::record::{DecodeError, FirmwareState, MAX_ENCODED_LEN};

/// The map key of the firmware-update record.
const FIRMWARE_STATE_KEY: u8 = 1;

/// sequential-storage's work buffer: key + value, rounded up to the largest flash word it allows.
const BUF_LEN: usize = (1 + MAX_ENCODED_LEN).next_multiple_of(32);

/// Word-aligned in RAM, which some flash drivers need for the source of a write.
#[repr(align(32))]
struct Buf([u8; BUF_LEN]);

/// A failed load or store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistError {
    /// The flash failed (a power cut shows up as `Other`).
    Flash(NorFlashErrorKind),
    /// The record, or the map's structure, is damaged beyond sequential-storage's repair. Treat it
    /// as no state; [`reset`] erases the area if a store keeps failing this way.
    Corrupt,
    /// The record was written by a format version this build does not know: treat as no state.
    UnknownVersion(u8),
    /// The settings area has no room left.
    Full,
    /// Any other sequential-storage error (a bug or a configuration mistake).
    Storage,
}

impl PersistError {
    /// True for the errors that mean "there is no usable state" rather than "the flash failed".
    pub const fn is_no_state(&self) -> bool {
        matches!(
            self,
            PersistError::Corrupt | PersistError::UnknownVersion(_)
        )
    }
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistError::Flash(kind) => write!(f, "settings flash: {kind}"),
            PersistError::Corrupt => f.write_str("persisted state corrupt"),
            PersistError::UnknownVersion(v) => write!(f, "persisted state has unknown version {v}"),
            PersistError::Full => f.write_str("settings area full"),
            PersistError::Storage => f.write_str("settings storage error"),
        }
    }
}

impl<E: NorFlashError> From<sequential_storage::Error<E>> for PersistError {
    fn from(e: sequential_storage::Error<E>) -> Self {
        match e {
            sequential_storage::Error::Storage { value, .. } => PersistError::Flash(value.kind()),
            sequential_storage::Error::Corrupted { .. } => PersistError::Corrupt,
            sequential_storage::Error::FullStorage => PersistError::Full,
            sequential_storage::Error::SerializationError(SerializationError::Custom(version)) => {
                u8::try_from(version).map_or(PersistError::Corrupt, PersistError::UnknownVersion)
            }
            sequential_storage::Error::SerializationError(_) => PersistError::Corrupt,
            _ => PersistError::Storage,
        }
    }
}

impl<'a> Value<'a> for FirmwareState {
    fn serialize_into(&self, buffer: &mut [u8]) -> Result<usize, SerializationError> {
        self.encode(buffer)
            .map_err(|_| SerializationError::BufferTooSmall)
    }

    fn deserialize_from(buffer: &'a [u8]) -> Result<(Self, usize), SerializationError> {
        match FirmwareState::decode(buffer) {
            Ok(state) => Ok((state, buffer.len())),
            // Carries the version through sequential-storage's error type.
            Err(DecodeError::UnknownVersion(v)) => Err(SerializationError::Custom(i32::from(v))),
            Err(DecodeError::Corrupt) => Err(SerializationError::InvalidFormat),
        }
    }
}

type Map<'f, F> =
    MapStorage<u8, BlockingAsync<Partition<'f, F>>, Cache<Uncached, Uncached, Uncached, u8>>;

/// A map over SETTINGS. Uncached: each call scans the (few) pages, which keeps no state between
/// calls and so cannot go stale across a power cut.
fn map<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<Map<'_, F>, PersistError> {
    let settings = flash.settings();
    let config = MapConfig::try_new(0..settings.size()).map_err(|_| PersistError::Storage)?;
    Ok(MapStorage::new(
        BlockingAsync::new(settings),
        config,
        Cache::new_uncached(),
    ))
}

/// The stored record, `Ok(None)` if none was ever stored. A damaged or unknown record is an error
/// for which [`PersistError::is_no_state`] is true.
pub fn load<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<Option<FirmwareState>, PersistError> {
    let mut map = map(flash)?;
    let mut buf = Buf([0; BUF_LEN]);
    Ok(block_on(map.fetch_item::<FirmwareState>(
        &mut buf.0,
        &FIRMWARE_STATE_KEY,
    ))?)
}

/// Replaces the stored record.
pub fn store<F: NorFlash>(
    flash: &DeviceFlash<F>,
    state: &FirmwareState,
) -> Result<(), PersistError> {
    let mut map = map(flash)?;
    let mut buf = Buf([0; BUF_LEN]);
    Ok(block_on(map.store_item(
        &mut buf.0,
        &FIRMWARE_STATE_KEY,
        state,
    ))?)
}

/// The map key of the OSCORE sender sequence number's reservation (RFC 8613 Appendix B.1.1):
/// a u64, every number below it may have been used.
const OSCORE_SEQ_KEY: u8 = 2;

/// The stored OSCORE sender reservation, `Ok(None)` if none was ever stored.
pub fn load_oscore_seq<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<Option<u64>, PersistError> {
    let mut map = map(flash)?;
    let mut buf = Buf([0; BUF_LEN]);
    Ok(block_on(
        map.fetch_item::<u64>(&mut buf.0, &OSCORE_SEQ_KEY),
    )?)
}

/// Stores the OSCORE sender reservation (before any number below it is used).
pub fn store_oscore_seq<F: NorFlash>(
    flash: &DeviceFlash<F>,
    reserved: u64,
) -> Result<(), PersistError> {
    let mut map = map(flash)?;
    let mut buf = Buf([0; BUF_LEN]);
    Ok(block_on(map.store_item(
        &mut buf.0,
        &OSCORE_SEQ_KEY,
        &reserved,
    ))?)
}

/// The map key of the device's OSCORE context (IDs, Master Secret and Salt), provisioned at the
/// factory beside the trust anchor: outside the updatable image.
#[cfg(feature = "oscore")]
const OSCORE_CONTEXT_KEY: u8 = 3;

/// The provisioned OSCORE context, `Ok(None)` if none (the device speaks plain CoAP).
#[cfg(feature = "oscore")]
pub fn load_oscore_context<F: NorFlash>(
    flash: &DeviceFlash<F>,
) -> Result<Option<crate::oscore::Provisioned>, PersistError> {
    let mut map = map(flash)?;
    let mut buf = Buf([0; BUF_LEN]);
    let blob = block_on(map.fetch_item::<&[u8]>(&mut buf.0, &OSCORE_CONTEXT_KEY))?;
    match blob {
        None => Ok(None),
        Some(b) => crate::oscore::Provisioned::decode(b)
            .map(Some)
            .ok_or(PersistError::Corrupt),
    }
}

/// Provisions the OSCORE context (the factory's step, or a test's).
#[cfg(feature = "oscore")]
pub fn store_oscore_context<F: NorFlash>(
    flash: &DeviceFlash<F>,
    context: &crate::oscore::Provisioned,
) -> Result<(), PersistError> {
    let mut bytes = [0u8; crate::oscore::Provisioned::MAX_ENCODED_LEN];
    let n = context.encode(&mut bytes).ok_or(PersistError::Storage)?;
    let blob = bytes.get(..n).ok_or(PersistError::Storage)?;
    let mut map = map(flash)?;
    let mut buf = Buf([0; BUF_LEN]);
    Ok(block_on(map.store_item(
        &mut buf.0,
        &OSCORE_CONTEXT_KEY,
        &blob,
    ))?)
}

/// The map keys of a board's own records (opaque bytes to this crate). The Thread board keeps its
/// network credentials here, provisioned at the factory like the OSCORE context: outside the
/// updatable image, so an update never loses them.
pub mod board_key {
    /// Thread's active operational dataset (TLVs, at most 254 bytes).
    pub const THREAD_DATASET: u8 = 4;
    /// OpenThread's own persistent settings (network info, parent, frame counters), one blob.
    pub const THREAD_SETTINGS: u8 = 5;
    /// The Joiner's pre-shared key (PSKd, 6..=32 characters) for commissioning.
    pub const THREAD_PSKD: u8 = 6;
}

/// Largest board record [`load_blob`] and [`store_blob`] take.
pub const MAX_BLOB_LEN: usize = 1024;

/// Work buffer for a board record: key + length + value, rounded up like [`Buf`].
const BLOB_BUF_LEN: usize = (1 + 2 + MAX_BLOB_LEN).next_multiple_of(32);

#[repr(align(32))]
struct BlobBuf([u8; BLOB_BUF_LEN]);

/// A board record (see [`board_key`]) copied into `out`: `Ok(Some(len))`, `Ok(None)` if none was
/// stored. A record longer than `out` is [`PersistError::Corrupt`].
pub fn load_blob<F: NorFlash>(
    flash: &DeviceFlash<F>,
    key: u8,
    out: &mut [u8],
) -> Result<Option<usize>, PersistError> {
    let mut map = map(flash)?;
    let mut buf = BlobBuf([0; BLOB_BUF_LEN]);
    let Some(blob) = block_on(map.fetch_item::<&[u8]>(&mut buf.0, &key))? else {
        return Ok(None);
    };
    let dst = out.get_mut(..blob.len()).ok_or(PersistError::Corrupt)?;
    dst.copy_from_slice(blob);
    Ok(Some(blob.len()))
}

/// Replaces a board record (the factory's step, or the board's own settings).
pub fn store_blob<F: NorFlash>(
    flash: &DeviceFlash<F>,
    key: u8,
    value: &[u8],
) -> Result<(), PersistError> {
    if value.len() > MAX_BLOB_LEN {
        return Err(PersistError::Storage);
    }
    let mut map = map(flash)?;
    let mut buf = BlobBuf([0; BLOB_BUF_LEN]);
    Ok(block_on(map.store_item(&mut buf.0, &key, &value))?)
}

/// Erases the settings area (recovery from [`PersistError::Corrupt`] on store).
pub fn reset<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<(), PersistError> {
    let mut map = map(flash)?;
    Ok(block_on(map.erase_all())?)
}

//! The persisted FirmwareState: encoding bounds and strictness, and load/store through
//! sequential-storage on the SETTINGS partition.

/// Only the storage part of tests/support: these tests need no network. Each uses part of it.
#[allow(dead_code)]
mod support {
    pub mod storage;
}

use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_futures::block_on;
use lwm2m_client::firmware::blocks::BlockMap;
use lwm2m_client::storage::layout::DeviceFlash;
use lwm2m_client::storage::persist::{self, PersistError};
use lwm2m_client::storage::record::{
    DecodeError, Download, FORMAT_VERSION, FirmwareState, MAX_ENCODED_LEN, MAX_ETAG_LEN, Pending,
};
use lwm2m_core::object5::{MAX_PACKAGE_URI_LEN, State, UpdateResult};
use sequential_storage::cache::Cache;
use sequential_storage::map::{MapConfig, MapStorage};
use support::storage::*;

fn largest() -> FirmwareState {
    let pkg: std::string::String = "é".repeat(16); // 32 bytes of multi-byte UTF-8
    FirmwareState {
        state: State::Updating,
        result: UpdateResult::Deferred,
        pkg_name: s(&pkg),
        pkg_version: s(&"v".repeat(32)),
        accepted_sequence: u64::MAX,
        staged: Some(Pending {
            sequence: u64::MAX - 1,
            version: s(&"s".repeat(32)),
        }),
        pending: Some(Pending {
            sequence: u64::MAX,
            version: s(&"p".repeat(32)),
        }),
        download: Some(Download {
            uri: s(&"u".repeat(MAX_PACKAGE_URI_LEN)),
            etag: heapless::Vec::from_slice(&[0xEE; MAX_ETAG_LEN]).unwrap(),
            total: MAX_IMAGE,
            manifest_digest: [0x5A; 32],
            restarts: u8::MAX,
            // The longest map: every unit but the first, so the whole map is tail.
            received: map(MAX_IMAGE, 1..8192),
        }),
    }
}

/// The largest image a map holds: 8192 units of 1 KiB.
const MAX_IMAGE: u32 = 8192 * 1024;

fn map(total: u32, units: std::ops::Range<u32>) -> BlockMap<256> {
    let mut m = BlockMap::new();
    m.reset(total).unwrap();
    for u in units {
        m.set(u);
    }
    m
}

fn encode(state: &FirmwareState) -> Vec<u8> {
    let mut buf = vec![0; MAX_ENCODED_LEN];
    let n = state.encode(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn the_largest_record_fits_the_bound_exactly_and_round_trips() {
    let big = largest();
    let bytes = encode(&big);
    assert_eq!(bytes.len(), MAX_ENCODED_LEN);
    assert_eq!(FirmwareState::decode(&bytes), Ok(big.clone()));
    let mut short = vec![0; MAX_ENCODED_LEN - 1];
    assert!(big.encode(&mut short).is_err());
}

#[test]
fn the_default_record_is_small_and_little_endian() {
    let rec = FirmwareState {
        accepted_sequence: 0x0102_0304_0506_0708,
        ..FirmwareState::default()
    };
    let bytes = encode(&rec);
    assert_eq!(
        bytes,
        [FORMAT_VERSION, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0],
        "version, state, result, two empty strings, u64 LE, three absent options"
    );
}

#[test]
fn every_truncation_and_any_trailing_byte_is_corrupt() {
    let bytes = encode(&largest());
    for n in 0..bytes.len() {
        assert_eq!(
            FirmwareState::decode(&bytes[..n]),
            Err(DecodeError::Corrupt),
            "prefix {n}"
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(FirmwareState::decode(&long), Err(DecodeError::Corrupt));
}

#[test]
fn out_of_range_fields_are_corrupt_and_a_new_version_is_unknown() {
    let good = encode(&downloading(&installed("1.0.0", 3), 4096, 14_001));
    assert!(FirmwareState::decode(&good).is_ok());
    let patch = |at: usize, v: u8| {
        let mut b = good.clone();
        b[at] = v;
        FirmwareState::decode(&b)
    };
    assert_eq!(patch(0, 3), Err(DecodeError::UnknownVersion(3)));
    assert_eq!(
        patch(0, 1),
        Err(DecodeError::UnknownVersion(1)),
        "version 1 had a byte offset, not the map: its download starts over"
    );
    assert_eq!(patch(1, 4), Err(DecodeError::Corrupt), "State 4");
    assert_eq!(patch(2, 12), Err(DecodeError::Corrupt), "Update Result 12");
    assert_eq!(
        patch(3, 200),
        Err(DecodeError::Corrupt),
        "string longer than its capacity"
    );
    assert_eq!(patch(4, 0xFF), Err(DecodeError::Corrupt), "invalid UTF-8");
    let name_end = 4 + "otafleet-demo".len();
    let version_end = name_end + 1 + "1.0.0".len();
    let staged_tag = version_end + 8;
    assert_eq!(
        patch(staged_tag, 2),
        Err(DecodeError::Corrupt),
        "option tag other than 0/1"
    );
    let etag_len = staged_tag + 3 + 1 + "coap://[2001:db8::1]:5683/fw/0123456789abcdef/image".len();
    assert_eq!(good[etag_len], 8);
    assert_eq!(
        patch(etag_len, 9),
        Err(DecodeError::Corrupt),
        "ETag longer than 8"
    );
}

/// The download's map as the record encodes it: (unit shift, done, tail) at the end.
fn map_fields(bytes: &[u8]) -> (usize, u8, u32, Vec<u8>) {
    // Searched from the end: tail_len (u16) and the tail are last, done (u32) and shift before.
    for tail_len in 0..bytes.len() - 7 {
        let at = bytes.len() - tail_len - 2;
        if u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize == tail_len {
            let done = u32::from_le_bytes(bytes[at - 4..at].try_into().unwrap());
            return (at - 5, bytes[at - 5], done, bytes[at + 2..].to_vec());
        }
    }
    panic!("no map");
}

#[test]
fn the_map_is_encoded_canonically_and_decoded_strictly() {
    let base = installed("1.0.0", 3);
    let with = |received: BlockMap<256>| {
        let mut r = downloading(&base, 0, 14_001);
        r.download.as_mut().unwrap().received = received;
        r
    };
    // 14 001 bytes in 16-byte units: 876 units. Units 0..100 and 103, 110 in.
    let mut m = map(14_001, 0..100);
    m.set(103);
    m.set(110);
    let rec = with(m);
    let bytes = encode(&rec);
    let (at, shift, done, tail) = map_fields(&bytes);
    assert_eq!((shift, done), (4, 100));
    assert_eq!(
        tail,
        [0b0000_1000, 0b0000_0100],
        "bits of units 100.. up to the last in"
    );
    assert_eq!(FirmwareState::decode(&bytes), Ok(rec.clone()));
    // A download that fetches in order keeps the record small whatever its progress.
    let in_order = encode(&with(map(14_001, 0..876)));
    assert_eq!(map_fields(&in_order).3.len(), 0);

    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        FirmwareState::decode(&b)
    };
    // Not the unit size 14 001 bytes give.
    assert_eq!(mutate(&|b| b[at] = 5), Err(DecodeError::Corrupt));
    // `done` not the first missing unit: the tail starts with a unit that is in.
    assert_eq!(mutate(&|b| b[at + 7] |= 1), Err(DecodeError::Corrupt));
    // A tail whose last byte is zero.
    assert_eq!(
        mutate(&|b| {
            let n = b.len();
            b[n - 1] = 0;
        }),
        Err(DecodeError::Corrupt)
    );
    // `done` past the last unit.
    assert_eq!(
        mutate(&|b| b[at + 1..at + 5].copy_from_slice(&877u32.to_le_bytes())),
        Err(DecodeError::Corrupt)
    );
    // A bit past the last unit (876 units: the tail of a complete-but-one map can name unit 876).
    let mut m = map(14_001, 0..875);
    m.set(875);
    let full = encode(&with(m));
    assert_eq!(map_fields(&full).2, 876);
    let mut m = map(14_001, 0..874);
    m.set(875);
    let mut near = encode(&with(m));
    let n = near.len();
    assert_eq!(near[n - 1], 0b10);
    near[n - 1] = 0b110;
    assert_eq!(FirmwareState::decode(&near), Err(DecodeError::Corrupt));
}

#[test]
fn load_store_overwrite_through_sequential_storage() {
    let dev = device(Flash::new());
    assert_eq!(persist::load(&dev), Ok(None));
    let a = installed("1.0.0", 1);
    persist::store(&dev, &a).unwrap();
    assert_eq!(persist::load(&dev), Ok(Some(a.clone())));
    let b = largest();
    persist::store(&dev, &b).unwrap();
    assert_eq!(persist::load(&dev), Ok(Some(b)));
    persist::store(&dev, &a).unwrap();
    assert_eq!(persist::load(&dev), Ok(Some(a)));
    // Only SETTINGS was touched.
    let flash = dev.into_inner();
    let settings = LAYOUT.settings();
    assert!(
        flash.as_bytes()[..settings.start as usize]
            .iter()
            .all(|&b| b == 0xFF),
        "slots and boot state untouched"
    );
}

#[test]
fn hundreds_of_stores_wrap_the_settings_pages_and_the_last_one_wins() {
    let dev = device(Flash::new());
    let base = installed("1.0.0", 1);
    for i in 0..300u32 {
        let rec = if i % 3 == 0 {
            largest()
        } else {
            downloading(&base, i * 256, 14_001)
        };
        persist::store(&dev, &rec).unwrap();
        assert_eq!(persist::load(&dev), Ok(Some(rec)), "store {i}");
    }
    // The records survive a "reboot" (a fresh DeviceFlash over the same flash).
    let dev = device(dev.into_inner());
    assert_eq!(
        persist::load(&dev),
        Ok(Some(downloading(&base, 299 * 256, 14_001)))
    );
}

/// The NOR flash of the tests, counting erases per page.
struct Counting {
    inner: Flash,
    erases: std::collections::BTreeMap<u32, u32>,
}

impl embedded_storage::nor_flash::ErrorType for Counting {
    type Error = lwm2m_client::storage::flash::FlashError;
}

impl embedded_storage::nor_flash::ReadNorFlash for Counting {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl embedded_storage::nor_flash::NorFlash for Counting {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        for page in (from..to).step_by(4096) {
            *self.erases.entry(page / 4096).or_default() += 1;
        }
        self.inner.erase(from, to)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.inner.write(offset, bytes)
    }
}

#[test]
fn a_488_kib_download_wears_the_settings_pages_little() {
    use embedded_storage::nor_flash::ReadNorFlash as _;
    let dev = DeviceFlash::new(
        Counting {
            inner: Flash::new(),
            erases: Default::default(),
        },
        LAYOUT,
    )
    .unwrap();
    let base = installed("1.0.0", 1);
    let total = 488 * 1024;
    let mut rec = downloading(&base, 0, total);
    rec.download.as_mut().unwrap().uri = s("coap://[fd00:1::1]:5683/fw/0123456789abcdef/manifest");
    // What the engine stores in one update: the URI written, the manifest checked, then progress
    // after every 4 KiB (blocks roughly in order: a window of 16 units in flight beyond the
    // units all in, with holes), the image complete, Downloaded, Updating.
    persist::store(&dev, &rec).unwrap();
    let mut stores = 1;
    for k in 1..=total / 4096 {
        let map = &mut rec.download.as_mut().unwrap().received;
        let done = k * 64;
        for u in 0..done.min(map.units()) {
            map.set(u);
        }
        for u in (done..(done + 16).min(map.units())).step_by(3) {
            map.set(u);
        }
        persist::store(&dev, &rec).unwrap();
        stores += 1;
    }
    for state in [State::Downloaded, State::Updating] {
        rec.state = state;
        rec.download = None;
        persist::store(&dev, &rec).unwrap();
        stores += 1;
    }
    let settings = LAYOUT.settings();
    let pages = (settings.start / 4096)..(settings.end / 4096);
    let erases: Vec<u32> = {
        let counts = dev.with_flash(|f| f.erases.clone()).unwrap();
        pages
            .map(|p| counts.get(&p).copied().unwrap_or(0))
            .collect()
    };
    let encoded = {
        let mut r = downloading(&base, 200 * 1024, total);
        r.download.as_mut().unwrap().uri =
            s("coap://[fd00:1::1]:5683/fw/0123456789abcdef/manifest");
        let mut buf = vec![0; MAX_ENCODED_LEN];
        r.encode(&mut buf).unwrap()
    };
    println!(
        "{stores} stores of a record of about {encoded} bytes: SETTINGS page erases {erases:?} \
         (of {} pages), flash capacity {}",
        erases.len(),
        dev.with_flash(|f| f.capacity()).unwrap()
    );
    // At 10 000 erase cycles a page, this leaves thousands of updates.
    assert!(erases.iter().all(|&e| e <= 2), "{erases:?}");
}

/// Writes raw bytes as the record's value, bypassing the encoder.
fn store_raw(dev: &Device, bytes: &[u8]) {
    let settings = dev.settings();
    let config = MapConfig::try_new(0..settings.size()).unwrap();
    let mut map =
        MapStorage::<u8, _, _>::new(BlockingAsync::new(settings), config, Cache::new_uncached());
    let mut buf = [0u8; 1024];
    block_on(map.store_item(&mut buf, &1u8, &bytes)).unwrap();
}

#[test]
fn a_corrupt_or_unknown_record_is_a_typed_no_state_error_and_can_be_replaced() {
    let dev = device(Flash::new());
    let mut newer = encode(&installed("1.0.0", 1));
    newer[0] = 7;
    store_raw(&dev, &newer);
    let err = persist::load(&dev).unwrap_err();
    assert_eq!(err, PersistError::UnknownVersion(7));
    assert!(err.is_no_state());

    store_raw(&dev, &[FORMAT_VERSION, 9, 9]);
    let err = persist::load(&dev).unwrap_err();
    assert_eq!(err, PersistError::Corrupt);
    assert!(err.is_no_state());
    assert!(
        !PersistError::Flash(embedded_storage::nor_flash::NorFlashErrorKind::Other).is_no_state()
    );

    let good = installed("1.0.0", 1);
    persist::store(&dev, &good).unwrap();
    assert_eq!(persist::load(&dev), Ok(Some(good)));
    persist::reset(&dev).unwrap();
    assert_eq!(persist::load(&dev), Ok(None));
}

#[test]
fn flash_errors_surface_as_flash_errors() {
    let mut dev = device(Flash::new());
    persist::store(&dev, &installed("1.0.0", 1)).unwrap();
    dev.flash_mut().cut_power_after(0);
    assert!(matches!(
        persist::store(&dev, &installed("2.0.0", 2)),
        Err(PersistError::Flash(_))
    ));
    assert!(matches!(persist::load(&dev), Err(PersistError::Flash(_))));
}

#[test]
fn board_records_sit_beside_the_firmware_record_and_survive_its_rewrites() {
    use persist::board_key::{THREAD_DATASET, THREAD_SETTINGS};
    let dev = device(Flash::new());
    let mut out = [0u8; persist::MAX_BLOB_LEN];
    assert_eq!(persist::load_blob(&dev, THREAD_DATASET, &mut out), Ok(None));
    let dataset: Vec<u8> = (0..120u8).collect();
    persist::store_blob(&dev, THREAD_DATASET, &dataset).unwrap();
    // OpenThread's settings blob rewritten many times, the firmware record too: the pages wrap,
    // the provisioned dataset stays.
    let base = installed("1.0.0", 1);
    for i in 0..100u32 {
        let blob = vec![i as u8; 300 + (i as usize % 7) * 100];
        persist::store_blob(&dev, THREAD_SETTINGS, &blob).unwrap();
        persist::store(&dev, &downloading(&base, i * 256, 14_001)).unwrap();
        let n = persist::load_blob(&dev, THREAD_SETTINGS, &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(&out[..n], &blob[..], "settings blob {i}");
    }
    let n = persist::load_blob(&dev, THREAD_DATASET, &mut out)
        .unwrap()
        .unwrap();
    assert_eq!(&out[..n], &dataset[..]);
    // Too small an output buffer, too large a record: errors, not panics.
    let mut small = [0u8; 16];
    assert_eq!(
        persist::load_blob(&dev, THREAD_DATASET, &mut small),
        Err(PersistError::Corrupt)
    );
    let huge = vec![0u8; persist::MAX_BLOB_LEN + 1];
    assert_eq!(
        persist::store_blob(&dev, THREAD_DATASET, &huge),
        Err(PersistError::Storage)
    );
}

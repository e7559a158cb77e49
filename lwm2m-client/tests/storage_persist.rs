//! The persisted FirmwareState: encoding bounds and strictness, and load/store through
//! sequential-storage on the SETTINGS partition.

/// Only the storage part of tests/support: these tests need no network. Each uses part of it.
#[allow(dead_code)]
mod support {
    pub mod storage;
}

use embassy_embedded_hal::adapter::BlockingAsync;
use embassy_futures::block_on;
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
            bytes_written: u32::MAX,
            block_size: u16::MAX,
            total: u32::MAX - 7,
            manifest_digest: [0x5A; 32],
        }),
    }
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
    assert_eq!(patch(0, 2), Err(DecodeError::UnknownVersion(2)));
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

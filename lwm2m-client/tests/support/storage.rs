//! Shared by the storage tests: a small device layout, test images and records.

use heapless::String;
use lwm2m_client::firmware::blocks::BlockMap;
use lwm2m_client::storage::flash::RamFlash;
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use lwm2m_client::storage::record::{Download, FirmwareState, Pending};
use lwm2m_client::storage::slots::{self, SlotError, Staging};
use lwm2m_core::object5::{State, UpdateResult};

/// Four pages per slot keeps every sweep small while the swap still moves several pages.
pub const SLOT: u32 = 16 * 1024;
pub const SETTINGS: u32 = 16 * 1024;
pub const LAYOUT: Layout = match Layout::new(0, SLOT, SETTINGS) {
    Ok(l) => l,
    Err(_) => panic!("test layout"),
};
/// STATE 4 KiB + ACTIVE 16 KiB + DFU 20 KiB + SETTINGS 16 KiB.
pub const FLASH_SIZE: usize = 56 * 1024;
pub type Flash = RamFlash<FLASH_SIZE>;
pub type Device = DeviceFlash<Flash>;

pub const PAGE: usize = 4096;
pub const HEADER: usize = 16;

pub fn device(flash: Flash) -> Device {
    DeviceFlash::new(flash, LAYOUT).expect("layout fits")
}

/// An image whose 16-byte header holds its version; the rest is testkit's seeded noise, so two
/// images never agree on a page and a mix of them matches neither.
pub fn image(version: &str, len: usize, seed: u32) -> Vec<u8> {
    let mut out = testkit::image(len, seed);
    out[..HEADER].fill(b' ');
    out[..version.len()].copy_from_slice(version.as_bytes());
    out
}

pub fn version_of(header: &[u8]) -> std::string::String {
    std::string::String::from_utf8_lossy(header)
        .trim_end()
        .to_owned()
}

/// Factory programming: the image straight into ACTIVE.
pub fn install(dev: &Device, image: &[u8]) {
    use embedded_storage::nor_flash::NorFlash;
    let mut active = dev.active();
    active.erase(0, SLOT).unwrap();
    let mut padded = image.to_vec();
    padded.resize(image.len().next_multiple_of(4), 0xFF);
    active.write(0, &padded).unwrap();
}

/// Whole-download staging in `block`-byte chunks in order, each page erased before its first
/// chunk (as a push does).
pub fn stage(dev: &Device, image: &[u8], block: usize) -> Result<(), SlotError> {
    let mut staging = Staging::new(dev);
    let mut erased = 0;
    for (i, chunk) in image.chunks(block).enumerate() {
        let end = i * block + chunk.len();
        while erased < end {
            staging.erase_page((erased / PAGE) as u32)?;
            erased += PAGE;
        }
        staging.write((i * block) as u32, chunk)?;
    }
    Ok(())
}

pub fn read_active(dev: &Device, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    slots::read_active(dev, 0, &mut buf).unwrap();
    buf
}

pub fn read_dfu(dev: &Device, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    slots::read_dfu(dev, 0, &mut buf).unwrap();
    buf
}

pub fn active_is(dev: &Device, image: &[u8]) -> bool {
    read_active(dev, image.len()) == image
}

pub fn s<const N: usize>(v: &str) -> String<N> {
    String::try_from(v).unwrap()
}

pub fn installed(version: &str, sequence: u64) -> FirmwareState {
    FirmwareState {
        state: State::Idle,
        result: UpdateResult::Success,
        pkg_name: s("otafleet-demo"),
        pkg_version: s(version),
        accepted_sequence: sequence,
        ..FirmwareState::default()
    }
}

/// A record of a download of `total` bytes whose first `done` bytes (whole units, or all) are in.
pub fn downloading(base: &FirmwareState, done: u32, total: u32) -> FirmwareState {
    let mut received = BlockMap::new();
    received.reset(total).unwrap();
    for u in 0..done.div_ceil(received.unit()) {
        received.set(u);
    }
    FirmwareState {
        state: State::Downloading,
        result: UpdateResult::Initial,
        download: Some(Download {
            uri: s("coap://[2001:db8::1]:5683/fw/0123456789abcdef/image"),
            etag: heapless::Vec::from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
            total,
            manifest_digest: [0xA5; 32],
            restarts: 0,
            received,
        }),
        ..base.clone()
    }
}

pub fn updating(base: &FirmwareState, version: &str, sequence: u64) -> FirmwareState {
    FirmwareState {
        state: State::Updating,
        result: UpdateResult::Initial,
        pending: Some(Pending {
            sequence,
            version: s(version),
        }),
        download: None,
        staged: None,
        ..base.clone()
    }
}

pub fn failed(base: &FirmwareState) -> FirmwareState {
    FirmwareState {
        state: State::Idle,
        result: UpdateResult::UpdateFailed,
        pending: None,
        download: None,
        ..base.clone()
    }
}

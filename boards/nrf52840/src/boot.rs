//! What the application does right after reset, before it trusts itself: find out how it came up
//! (an ordinary start, a trial boot of a freshly swapped image, or a revert), run the self-test, and
//! confirm a trial image (`slots::confirm`, embassy-boot's `mark_booted`). An image that fails its
//! self-test resets unconfirmed, so the bootloader puts the old one back; the old one then reports
//! Update Result 8.
//!
//! The image header (lwm2m_client::image, 64 bytes: magic, version, self-test flag, length) is
//! linked right after the vector table ([`HEADER_OFFSET`] into ACTIVE) and read back from flash,
//! so the version the device reports is the one of the image that really runs.

use heapless::String;
use lwm2m_client::image::{HEADER_LEN, ImageHeader, MAGIC};
use lwm2m_client::platform::{BootInfo, BootOutcome, FirmwareRecord};
use lwm2m_client::storage::layout::DeviceFlash;
use lwm2m_client::storage::{persist, slots};

use crate::app::Flash;
use crate::config;

/// Where the header sits in ACTIVE: after the nRF52840's 64-entry vector table (memory.x).
pub const HEADER_OFFSET: u32 = 0x100;

/// This image's header, as the release tool would write it. The length field stays 0 (unknown
/// when linking); the version comes from `OTAFLEET_VERSION`.
#[allow(unsafe_code)] // placing a static in a named section is an unsafe attribute
#[unsafe(link_section = ".otaf_header")]
#[used]
static IMAGE_HEADER: [u8; HEADER_LEN] = header(config::VERSION);

const fn header(version: &str) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let mut i = 0;
    while i < MAGIC.len() {
        h[i] = MAGIC[i];
        i += 1;
    }
    h[4] = 1; // header format version
    h[5] = 0; // flags: the self-test passes
    let v = version.as_bytes();
    let mut i = 0;
    while i < v.len() && i < 32 {
        h[12 + i] = v[i];
        i += 1;
    }
    h
}

/// Stops here for good (the watchdog resets the chip; on a trial boot the bootloader reverts).
pub fn halt(_why: &str) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

/// Resets the chip.
pub fn reset() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// The running image's header, read from ACTIVE.
fn running_header(device: &DeviceFlash<Flash>) -> Option<ImageHeader> {
    let mut buf = [0u8; HEADER_LEN];
    slots::read_active(device, HEADER_OFFSET, &mut buf).ok()?;
    ImageHeader::parse(&buf)
}

/// The image's own checks: its header is intact and says it passes, and the persisted record is
/// readable (a record this build cannot read counts as none).
fn self_test(header: Option<&ImageHeader>, record: &Result<Option<FirmwareRecord>, ()>) -> bool {
    header.is_some_and(|h| h.self_test_passes && h.version == config::VERSION) && record.is_ok()
}

/// Runs at every start: self-test, confirm a trial image, and tell the engine how the boot went.
pub fn start(device: &DeviceFlash<Flash>) -> BootInfo {
    let header = running_header(device);
    let record = match persist::load(device) {
        Ok(r) => Ok(r),
        Err(e) if e.is_no_state() => Ok(None),
        Err(_) => Err(()),
    };
    let on_trial = slots::is_trial(device).unwrap_or(false);
    let passes = self_test(header.as_ref(), &record);
    let pending = record
        .as_ref()
        .ok()
        .and_then(|r| r.as_ref())
        .and_then(|r| r.pending.as_ref());
    let outcome = if on_trial {
        if !passes || slots::confirm(device).is_err() {
            // Not confirmed: the next reset reverts to the previous image.
            reset();
        }
        BootOutcome::Confirmed
    } else {
        // A power cut can hide a trial's outcome: the running image tells the truth.
        match pending {
            Some(p) if p.version.as_str() == config::VERSION => BootOutcome::Confirmed,
            Some(_) => BootOutcome::RolledBack,
            None => BootOutcome::Normal,
        }
    };
    BootInfo {
        record: record.unwrap_or(None),
        outcome,
        running_version: String::try_from(config::VERSION).unwrap_or_default(),
    }
}

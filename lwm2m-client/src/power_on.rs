//! What a device does from reset until its engine starts: the bootloader (swap or revert), the
//! trial image's self-test and confirm, the persisted Object 5 record, and the truth about how
//! the running image came up. The host binary, the simulator and the tests all power on through
//! this one function, so they cannot disagree about a rollback.

use embedded_storage::nor_flash::NorFlash;

use crate::engine::limits::MAX_PKG_LEN;
use crate::image::{HEADER_LEN, ImageHeader};
use crate::platform::{BootInfo, BootOutcome};
use crate::storage::layout::DeviceFlash;
use crate::storage::persist::{self, PersistError};
use crate::storage::slots::{self, SlotError};

/// How a power-on ended. Not boxed: the device has no heap, and the value lives for one boot.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum PowerOn {
    /// Start the engine with this.
    Run(BootInfo),
    /// A trial image failed its self-test: reset at once, and the bootloader puts the old image
    /// back. Carries the version that failed.
    SelfTestFailed(heapless::String<MAX_PKG_LEN>),
}

/// Why a device could not come up.
#[derive(Debug)]
pub enum PowerOnError {
    /// The bootloader's swap or revert failed (a flash error).
    Bootloader(SlotError),
    /// ACTIVE holds no image header: an erased or damaged slot.
    NoImage,
    /// Confirming the trial image failed.
    Confirm(SlotError),
    /// The persisted record could not be read (the flash failed; a damaged record counts as none).
    Record(PersistError),
}

/// Runs the reset-time sequence on `flash`.
pub fn power_on<F: NorFlash>(flash: &DeviceFlash<F>) -> Result<PowerOn, PowerOnError> {
    let outcome = slots::boot(flash).map_err(PowerOnError::Bootloader)?;
    let header = running_image(flash)?.ok_or(PowerOnError::NoImage)?;
    let record = match persist::load(flash) {
        Ok(r) => r,
        Err(e) if e.is_no_state() => None,
        Err(e) => return Err(PowerOnError::Record(e)),
    };
    let outcome = match outcome {
        slots::BootOutcome::Swapped => {
            // A trial boot: the new image tests itself, and only a pass confirms it.
            if !header.self_test_passes {
                return Ok(PowerOn::SelfTestFailed(header.version));
            }
            slots::confirm(flash).map_err(PowerOnError::Confirm)?;
            BootOutcome::Confirmed
        }
        slots::BootOutcome::Reverted => BootOutcome::RolledBack,
        // A power cut can hide the outcome of a trial; the running image tells the truth.
        slots::BootOutcome::Normal => match record.as_ref().and_then(|r| r.pending.as_ref()) {
            Some(p) if p.version == header.version => BootOutcome::Confirmed,
            Some(_) => BootOutcome::RolledBack,
            None => BootOutcome::Normal,
        },
    };
    Ok(PowerOn::Run(BootInfo {
        record,
        outcome,
        running_version: header.version,
    }))
}

/// The header of the image in ACTIVE, `None` if there is none.
pub fn running_image<F: NorFlash>(
    flash: &DeviceFlash<F>,
) -> Result<Option<ImageHeader>, PowerOnError> {
    let mut buf = [0u8; HEADER_LEN];
    slots::read_active(flash, 0, &mut buf).map_err(PowerOnError::Bootloader)?;
    Ok(ImageHeader::parse(&buf))
}

/// Writes a factory image into ACTIVE of a new flash (feature `std`: it builds the image).
#[cfg(feature = "std")]
pub fn install_factory<F: NorFlash>(
    flash: &DeviceFlash<F>,
    image: &[u8],
) -> Result<(), embassy_embedded_hal::flash::partition::Error<F::Error>> {
    let page = F::ERASE_SIZE;
    let mut padded = image.to_vec();
    padded.resize(image.len().div_ceil(page).saturating_mul(page), 0xff);
    let len = u32::try_from(padded.len()).unwrap_or(u32::MAX);
    let mut active = flash.active();
    active.erase(0, len)?;
    active.write(0, &padded)
}

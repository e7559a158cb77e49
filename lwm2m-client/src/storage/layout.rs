//! Where each partition lives on the device's one flash ([`Layout`]), and the shared handle that
//! partitions are cut from ([`DeviceFlash`]).
//!
//! Order from `base`: STATE (embassy-boot's magic and swap progress), ACTIVE (the running image),
//! DFU (the staging slot: ACTIVE plus one page, which embassy-boot's swap needs as scratch), and
//! SETTINGS (sequential-storage; at least two pages).

use core::cell::RefCell;
use core::fmt;
use core::ops::Range;

use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_storage::nor_flash::NorFlash;

/// Page (erase unit) the layout is computed for: the nRF52840's.
pub const PAGE_SIZE: u32 = 4096;
/// Word (program unit) the layout is computed for: the nRF52840's.
pub const WORD_SIZE: u32 = 4;
/// The bootloader copies pages through a buffer of this size (a divisor of the page).
pub(crate) const BOOT_CHUNK: usize = 256;
/// Largest program unit supported (embassy-boot's own alignment bound).
pub(crate) const MAX_WORD: usize = 32;

/// A partition of the device flash.
pub type Partition<'f, F> = BlockingPartition<'f, NoopRawMutex, F>;

/// Why a layout does not fit a flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// A boundary or size is not a multiple of the flash's page, word or read unit.
    Misaligned,
    /// The slot is empty or SETTINGS is smaller than two pages (sequential-storage's minimum).
    TooSmall,
    /// An address does not fit in 32 bits.
    Overflow,
    /// DFU is not at least one page larger than ACTIVE.
    DfuTooSmall,
    /// STATE cannot hold embassy-boot's 2 + 4 × (ACTIVE pages) progress words.
    StateTooSmall,
    /// Two partitions overlap.
    Overlap,
    /// The layout ends beyond the flash.
    BeyondFlash,
    /// The flash geometry is unsupported (word above 32 bytes, or a page that the 256-byte boot
    /// copy buffer does not divide).
    Geometry,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutError::Misaligned => "partition not aligned to the flash geometry",
            LayoutError::TooSmall => "slot empty or settings smaller than two pages",
            LayoutError::Overflow => "layout exceeds the 32-bit address space",
            LayoutError::DfuTooSmall => "DFU must be one page larger than ACTIVE",
            LayoutError::StateTooSmall => "STATE too small for the swap progress",
            LayoutError::Overlap => "partitions overlap",
            LayoutError::BeyondFlash => "layout ends beyond the flash",
            LayoutError::Geometry => "unsupported flash geometry",
        })
    }
}

/// The partitions, as absolute flash address ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    state: Range<u32>,
    active: Range<u32>,
    dfu: Range<u32>,
    settings: Range<u32>,
}

/// `start..start + len`, or `Overflow`.
const fn after(start: u32, len: u32) -> Result<Range<u32>, LayoutError> {
    match start.checked_add(len) {
        Some(end) => Ok(start..end),
        None => Err(LayoutError::Overflow),
    }
}

const fn len(r: &Range<u32>) -> u32 {
    r.end.saturating_sub(r.start)
}

const fn max(a: u32, b: u32) -> u32 {
    if a > b { a } else { b }
}

const fn copy(r: &Range<u32>) -> Range<u32> {
    r.start..r.end
}

impl Layout {
    /// The nRF52840 (1 MiB) map. `0x00000..0x06000` is the bootloader's own code (not described
    /// here); STATE `0x06000..0x07000`, ACTIVE `0x07000..0x81000` (488 KiB),
    /// DFU `0x81000..0xFC000` (492 KiB), SETTINGS `0xFC000..0x100000` (16 KiB).
    #[allow(clippy::panic)] // evaluated at compile time
    pub const NRF52840: Layout = match Layout::new(0x6000, 488 * 1024, 16 * 1024) {
        Ok(layout) => layout,
        Err(_) => panic!("nRF52840 layout"),
    };

    /// Lays out STATE, ACTIVE (`slot_size` bytes), DFU (`slot_size` + one page) and SETTINGS
    /// (`settings_size` bytes) one after the other from `base`, for 4 KiB pages and 4-byte words.
    /// STATE gets as many pages as embassy-boot's progress words need.
    pub const fn new(base: u32, slot_size: u32, settings_size: u32) -> Result<Layout, LayoutError> {
        if base % PAGE_SIZE != 0 || slot_size % PAGE_SIZE != 0 || settings_size % PAGE_SIZE != 0 {
            return Err(LayoutError::Misaligned);
        }
        if slot_size == 0 || settings_size < PAGE_SIZE.saturating_mul(2) {
            return Err(LayoutError::TooSmall);
        }
        // 2 + 4N words (magic, progress validity, swap and revert progress), rounded to pages.
        let words = (slot_size / PAGE_SIZE).saturating_mul(4).saturating_add(2);
        let state_size = words
            .saturating_mul(WORD_SIZE)
            .div_ceil(PAGE_SIZE)
            .saturating_mul(PAGE_SIZE);
        if state_size == u32::MAX {
            return Err(LayoutError::Overflow);
        }
        let Some(dfu_size) = slot_size.checked_add(PAGE_SIZE) else {
            return Err(LayoutError::Overflow);
        };
        let state = match after(base, state_size) {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        let active = match after(state.end, slot_size) {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        let dfu = match after(active.end, dfu_size) {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        let settings = match after(dfu.end, settings_size) {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        Ok(Layout {
            state,
            active,
            dfu,
            settings,
        })
    }

    /// embassy-boot's STATE partition.
    pub const fn state(&self) -> Range<u32> {
        copy(&self.state)
    }

    /// The running image.
    pub const fn active(&self) -> Range<u32> {
        copy(&self.active)
    }

    /// The staging slot (one page larger than ACTIVE).
    pub const fn dfu(&self) -> Range<u32> {
        copy(&self.dfu)
    }

    /// The persisted settings (sequential-storage).
    pub const fn settings(&self) -> Range<u32> {
        copy(&self.settings)
    }

    /// The largest image: the size of ACTIVE.
    pub const fn slot_size(&self) -> u32 {
        len(&self.active)
    }

    /// The first address after the layout: the minimum flash size (from address 0).
    pub const fn end(&self) -> u32 {
        max(
            max(self.state.end, self.active.end),
            max(self.dfu.end, self.settings.end),
        )
    }

    fn ranges(&self) -> [&Range<u32>; 4] {
        [&self.state, &self.active, &self.dfu, &self.settings]
    }

    /// Checks everything embassy-boot, the partitions and sequential-storage would otherwise
    /// assert (panic) on, for a flash of type `F` with `capacity` bytes.
    pub fn check<F: NorFlash>(&self, capacity: usize) -> Result<(), LayoutError> {
        let units = [F::ERASE_SIZE, F::WRITE_SIZE, F::READ_SIZE];
        if F::WRITE_SIZE > MAX_WORD
            || units.contains(&0)
            || BOOT_CHUNK.checked_rem(F::WRITE_SIZE) != Some(0)
            || F::ERASE_SIZE % BOOT_CHUNK != 0
        {
            return Err(LayoutError::Geometry);
        }
        let aligned = |a: u32| {
            units
                .iter()
                .all(|&u| (a as usize).checked_rem(u) == Some(0))
        };
        if !self
            .ranges()
            .iter()
            .all(|r| aligned(r.start) && aligned(r.end))
        {
            return Err(LayoutError::Misaligned);
        }
        let page = u32::try_from(F::ERASE_SIZE).map_err(|_| LayoutError::Geometry)?;
        let word = u32::try_from(F::WRITE_SIZE).map_err(|_| LayoutError::Geometry)?;
        if self.slot_size() == 0 || len(&self.settings) < page.saturating_mul(2) {
            return Err(LayoutError::TooSmall);
        }
        if len(&self.dfu) < self.slot_size().saturating_add(page) {
            return Err(LayoutError::DfuTooSmall);
        }
        let words = self
            .slot_size()
            .checked_div(page)
            .unwrap_or(0)
            .saturating_mul(4)
            .saturating_add(2);
        if words.saturating_mul(word) > len(&self.state) {
            return Err(LayoutError::StateTooSmall);
        }
        let ranges = self.ranges();
        for (i, a) in ranges.iter().enumerate() {
            if ranges
                .iter()
                .skip(i.saturating_add(1))
                .any(|b| a.start < b.end && b.start < a.end)
            {
                return Err(LayoutError::Overlap);
            }
        }
        if self.end() as usize > capacity {
            return Err(LayoutError::BeyondFlash);
        }
        Ok(())
    }
}

/// The device's one flash behind the lock that its partitions share, with the checked layout.
/// Every operation on a partition goes through the same chip, so [`RamFlash`]'s power budget
/// counts them all.
///
/// [`RamFlash`]: super::flash::RamFlash
pub struct DeviceFlash<F: NorFlash> {
    flash: Mutex<NoopRawMutex, RefCell<F>>,
    layout: Layout,
}

impl<F: NorFlash> DeviceFlash<F> {
    /// Takes the flash after checking that `layout` fits it (see [`Layout::check`]).
    pub fn new(flash: F, layout: Layout) -> Result<Self, LayoutError> {
        layout.check::<F>(flash.capacity())?;
        Ok(Self {
            flash: Mutex::new(RefCell::new(flash)),
            layout,
        })
    }

    /// The checked layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The flash itself (no partition can be alive: they borrow `self`).
    pub fn flash_mut(&mut self) -> &mut F {
        self.flash.get_mut().get_mut()
    }

    /// Looks at the flash while partitions may be alive (between their operations), e.g. to read
    /// an operation counter; `None` if called from inside a flash operation.
    pub fn with_flash<R>(&self, f: impl FnOnce(&F) -> R) -> Option<R> {
        self.flash
            .lock(|cell| cell.try_borrow().ok().map(|flash| f(&flash)))
    }

    /// Mutable access while partitions may be alive (e.g. to arm a power cut in the middle of a
    /// sequence, or to sync a file); `None` if called from inside a flash operation.
    pub fn with_flash_mut<R>(&self, f: impl FnOnce(&mut F) -> R) -> Option<R> {
        self.flash
            .lock(|cell| cell.try_borrow_mut().ok().map(|mut flash| f(&mut flash)))
    }

    /// Gives the flash back.
    pub fn into_inner(self) -> F {
        self.flash.into_inner().into_inner()
    }

    fn partition(&self, range: Range<u32>) -> Partition<'_, F> {
        // Cannot panic: `check` proved every range aligned to all three units.
        BlockingPartition::new(&self.flash, range.start, len(&range))
    }

    /// embassy-boot's STATE partition.
    pub fn state(&self) -> Partition<'_, F> {
        self.partition(self.layout.state())
    }

    /// The running image.
    pub fn active(&self) -> Partition<'_, F> {
        self.partition(self.layout.active())
    }

    /// The staging slot.
    pub fn dfu(&self) -> Partition<'_, F> {
        self.partition(self.layout.dfu())
    }

    /// The settings area.
    pub fn settings(&self) -> Partition<'_, F> {
        self.partition(self.layout.settings())
    }
}

impl<F: NorFlash + fmt::Debug> fmt::Debug for DeviceFlash<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceFlash")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

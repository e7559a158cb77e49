//! A NOR flash in RAM ([`RamFlash`]) with the nRF52840's geometry by default, and the power model
//! it shares with the file-backed flash: a budget of program/erase operations after which the power
//! is cut in the middle of an operation.
//!
//! NOR rules modelled: erase sets a page to 0xFF; a write can only clear bits (the cell becomes
//! `old & new`, so writing a word twice is allowed, as on the nRF52840 and as
//! [`MultiwriteNorFlash`] promises); misaligned or out-of-range operations are refused before they
//! touch the array.
//!
//! Power model: every program call and every erased *page* is one operation ([`RamFlash::ops`]).
//! Reads are not counted (they change nothing), but fail while the power is off. When the budget
//! runs out, the operation that hits it is torn according to [`Tear`] and fails with
//! [`FlashError::PowerLoss`]; every later operation fails with [`FlashError::PoweredDown`] until
//! [`RamFlash::power_cycle`].

use core::fmt;
use core::ops::Range;

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
    check_erase, check_read, check_write,
};

/// nRF52840 flash page: the erase unit.
pub const NRF52840_ERASE_SIZE: usize = 4096;
/// nRF52840 flash word: the program unit.
pub const NRF52840_WRITE_SIZE: usize = 4;

/// A failed flash operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// Offset or length is not a multiple of the read/write/erase unit.
    NotAligned,
    /// The range leaves the flash.
    OutOfBounds,
    /// The power was cut during this operation: it is torn (see [`Tear`]).
    PowerLoss,
    /// The power is off since an earlier cut; nothing was done.
    PoweredDown,
}

impl From<NorFlashErrorKind> for FlashError {
    fn from(kind: NorFlashErrorKind) -> Self {
        match kind {
            NorFlashErrorKind::NotAligned => FlashError::NotAligned,
            // The `check_*` helpers only report alignment and bounds.
            _ => FlashError::OutOfBounds,
        }
    }
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::NotAligned => NorFlashErrorKind::NotAligned,
            FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            FlashError::PowerLoss | FlashError::PoweredDown => NorFlashErrorKind::Other,
        }
    }
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlashError::NotAligned => "flash operation not aligned",
            FlashError::OutOfBounds => "flash operation out of bounds",
            FlashError::PowerLoss => "power lost during flash operation",
            FlashError::PoweredDown => "flash is powered down",
        })
    }
}

/// What the operation that runs out of power leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tear {
    /// An erase wipes only the first half of the page; a write lands only its first half (which
    /// can split a word).
    #[default]
    Half,
    /// The power goes just before the operation starts: nothing changes.
    Nothing,
}

/// The operation counter and the armed power cut, shared by every partition of one flash because
/// they all go through the same chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerBudget {
    ops: u64,
    cut_at: Option<u64>,
    tear: Tear,
    powered: bool,
}

impl Default for PowerBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl PowerBudget {
    /// Powered, no cut armed, no operation counted.
    pub const fn new() -> Self {
        Self {
            ops: 0,
            cut_at: None,
            tear: Tear::Half,
            powered: true,
        }
    }

    /// Program/erase operations started so far (including a torn one).
    pub const fn ops(&self) -> u64 {
        self.ops
    }

    /// Let `ops` more operations complete; the one after them is torn as `tear` says.
    pub fn cut_after(&mut self, ops: u64, tear: Tear) {
        self.cut_at = Some(self.ops.saturating_add(ops));
        self.tear = tear;
    }

    /// Power back on, with no cut armed.
    pub fn power_cycle(&mut self) {
        self.powered = true;
        self.cut_at = None;
    }

    /// False between a cut and the next [`power_cycle`](Self::power_cycle).
    pub const fn is_powered(&self) -> bool {
        self.powered
    }

    /// Refuses any access while the power is off.
    pub fn ensure_powered(&self) -> Result<(), FlashError> {
        if self.powered {
            Ok(())
        } else {
            Err(FlashError::PoweredDown)
        }
    }

    /// Counts one operation that is about to run; `Some(tear)` if the power dies during it.
    pub fn begin_op(&mut self) -> Result<Option<Tear>, FlashError> {
        self.ensure_powered()?;
        let this = self.ops;
        self.ops = self.ops.saturating_add(1);
        if self.cut_at == Some(this) {
            self.powered = false;
            Ok(Some(self.tear))
        } else {
            Ok(None)
        }
    }
}

/// How many leading bytes of an operation of `len` bytes take effect.
const fn landed(len: usize, tear: Option<Tear>) -> usize {
    match tear {
        None => len,
        Some(Tear::Half) => len / 2,
        Some(Tear::Nothing) => 0,
    }
}

/// NOR program: bits can only go from 1 to 0.
pub(crate) fn program(cells: &mut [u8], data: &[u8], tear: Option<Tear>) {
    for (cell, byte) in cells
        .iter_mut()
        .zip(data.iter())
        .take(landed(data.len(), tear))
    {
        *cell &= *byte;
    }
}

/// NOR erase of one page.
pub(crate) fn erase_page(page: &mut [u8], tear: Option<Tear>) {
    let wiped = landed(page.len(), tear);
    for cell in page.iter_mut().take(wiped) {
        *cell = 0xFF;
    }
}

/// `offset..offset + len` as indices, without overflow.
pub(crate) fn span(offset: u32, len: usize) -> Result<Range<usize>, FlashError> {
    let start = usize::try_from(offset).map_err(|_| FlashError::OutOfBounds)?;
    let end = start.checked_add(len).ok_or(FlashError::OutOfBounds)?;
    Ok(start..end)
}

/// Reads `bytes.len()` bytes at `offset` of `mem` (bounds already checked by the caller).
fn read_range(mem: &[u8], offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
    let src = mem
        .get(span(offset, bytes.len())?)
        .ok_or(FlashError::OutOfBounds)?;
    bytes.copy_from_slice(src);
    Ok(())
}

/// Erases `from..to` of `mem` page by page, as the chip does: a cut leaves earlier pages erased
/// and later ones intact.
fn erase_range(
    mem: &mut [u8],
    power: &mut PowerBudget,
    from: u32,
    to: u32,
    page: usize,
) -> Result<(), FlashError> {
    let len = usize::try_from(to.saturating_sub(from)).map_err(|_| FlashError::OutOfBounds)?;
    let cells = mem
        .get_mut(span(from, len)?)
        .ok_or(FlashError::OutOfBounds)?;
    cells.chunks_mut(page.max(1)).try_for_each(|page| {
        let tear = power.begin_op()?;
        erase_page(page, tear);
        if tear.is_some() {
            Err(FlashError::PowerLoss)
        } else {
            Ok(())
        }
    })
}

/// Programs `bytes` at `offset` of `mem` as one operation.
fn write_range(
    mem: &mut [u8],
    power: &mut PowerBudget,
    offset: u32,
    bytes: &[u8],
) -> Result<(), FlashError> {
    let cells = mem
        .get_mut(span(offset, bytes.len())?)
        .ok_or(FlashError::OutOfBounds)?;
    let tear = power.begin_op()?;
    program(cells, bytes, tear);
    if tear.is_some() {
        Err(FlashError::PowerLoss)
    } else {
        Ok(())
    }
}

/// A NOR flash of `SIZE` bytes in RAM with `ERASE`-byte pages and `WRITE`-byte words (reads are
/// byte-granular).
#[derive(Clone)]
pub struct RamFlash<
    const SIZE: usize,
    const ERASE: usize = NRF52840_ERASE_SIZE,
    const WRITE: usize = NRF52840_WRITE_SIZE,
> {
    mem: [u8; SIZE],
    power: PowerBudget,
}

impl<const SIZE: usize, const ERASE: usize, const WRITE: usize> fmt::Debug
    for RamFlash<SIZE, ERASE, WRITE>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RamFlash")
            .field("size", &SIZE)
            .field("erase", &ERASE)
            .field("write", &WRITE)
            .field("power", &self.power)
            .finish()
    }
}

impl<const SIZE: usize, const ERASE: usize, const WRITE: usize> Default
    for RamFlash<SIZE, ERASE, WRITE>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const SIZE: usize, const ERASE: usize, const WRITE: usize> RamFlash<SIZE, ERASE, WRITE> {
    /// A fully erased flash (all 0xFF), powered, with no cut armed.
    pub const fn new() -> Self {
        // Geometry is checked at compile time, so the page loop below can never get a zero step.
        const {
            assert!(WRITE > 0 && ERASE > 0);
            assert!(ERASE % WRITE == 0 && SIZE % ERASE == 0);
            assert!(SIZE <= u32::MAX as usize);
        }
        Self {
            mem: [0xFF; SIZE],
            power: PowerBudget::new(),
        }
    }

    /// The raw contents, read without counting and even while powered down (a debugger's view).
    pub fn as_bytes(&self) -> &[u8] {
        &self.mem
    }

    /// Program/erase operations started so far.
    pub const fn ops(&self) -> u64 {
        self.power.ops()
    }

    /// Arm a power cut: `ops` more operations complete, the next one is torn as [`Tear::Half`].
    pub fn cut_power_after(&mut self, ops: u64) {
        self.power.cut_after(ops, Tear::Half);
    }

    /// Arm a power cut with the given [`Tear`].
    pub fn cut_power_after_with(&mut self, ops: u64, tear: Tear) {
        self.power.cut_after(ops, tear);
    }

    /// Power back on (disarms any pending cut).
    pub fn power_cycle(&mut self) {
        self.power.power_cycle();
    }

    /// False between a cut and the next [`power_cycle`](Self::power_cycle).
    pub const fn is_powered(&self) -> bool {
        self.power.is_powered()
    }
}

impl<const SIZE: usize, const ERASE: usize, const WRITE: usize> ErrorType
    for RamFlash<SIZE, ERASE, WRITE>
{
    type Error = FlashError;
}

impl<const SIZE: usize, const ERASE: usize, const WRITE: usize> ReadNorFlash
    for RamFlash<SIZE, ERASE, WRITE>
{
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.power.ensure_powered()?;
        check_read(self, offset, bytes.len())?;
        read_range(&self.mem, offset, bytes)
    }

    fn capacity(&self) -> usize {
        SIZE
    }
}

impl<const SIZE: usize, const ERASE: usize, const WRITE: usize> NorFlash
    for RamFlash<SIZE, ERASE, WRITE>
{
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        self.power.ensure_powered()?;
        check_erase(self, from, to)?;
        erase_range(&mut self.mem, &mut self.power, from, to, ERASE)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.power.ensure_powered()?;
        check_write(self, offset, bytes.len())?;
        write_range(&mut self.mem, &mut self.power, offset, bytes)
    }
}

impl<const SIZE: usize, const ERASE: usize, const WRITE: usize> MultiwriteNorFlash
    for RamFlash<SIZE, ERASE, WRITE>
{
}

/// The same flash with its size chosen at run time and its cells on the heap (feature `std`): the
/// simulator gives each of thousands of devices a slot sized for the image it is sent, which a
/// `RamFlash<SIZE>` on the stack could not hold. nRF52840 geometry.
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct HeapFlash {
    mem: std::vec::Vec<u8>,
    power: PowerBudget,
}

#[cfg(feature = "std")]
impl HeapFlash {
    /// An erased flash of `size` bytes, rounded up to whole pages.
    pub fn new(size: usize) -> Self {
        HeapFlash {
            mem: std::vec![0xFF; size.next_multiple_of(NRF52840_ERASE_SIZE)],
            power: PowerBudget::new(),
        }
    }

    /// The raw contents (a debugger's view).
    pub fn as_bytes(&self) -> &[u8] {
        &self.mem
    }

    /// The power model: arm a cut, power-cycle, count operations.
    pub fn power(&mut self) -> &mut PowerBudget {
        &mut self.power
    }

    /// Program/erase operations started so far.
    pub const fn ops(&self) -> u64 {
        self.power.ops()
    }

    /// False between a cut and the next power cycle.
    pub const fn is_powered(&self) -> bool {
        self.power.is_powered()
    }
}

#[cfg(feature = "std")]
impl ErrorType for HeapFlash {
    type Error = FlashError;
}

#[cfg(feature = "std")]
impl ReadNorFlash for HeapFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.power.ensure_powered()?;
        check_read(self, offset, bytes.len())?;
        read_range(&self.mem, offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

#[cfg(feature = "std")]
impl NorFlash for HeapFlash {
    const WRITE_SIZE: usize = NRF52840_WRITE_SIZE;
    const ERASE_SIZE: usize = NRF52840_ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        self.power.ensure_powered()?;
        check_erase(self, from, to)?;
        erase_range(
            &mut self.mem,
            &mut self.power,
            from,
            to,
            NRF52840_ERASE_SIZE,
        )
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.power.ensure_powered()?;
        check_write(self, offset, bytes.len())?;
        write_range(&mut self.mem, &mut self.power, offset, bytes)
    }
}

#[cfg(feature = "std")]
impl MultiwriteNorFlash for HeapFlash {}

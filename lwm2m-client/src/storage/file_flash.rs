//! The same NOR flash kept in a file (feature `std`): the host device stores its whole flash here
//! (both slots, the boot state and the settings), so a killed and restarted process finds it as a
//! rebooted board would. Same geometry, NOR rules and power model as [`RamFlash`].
//!
//! Each operation is one positioned write to the file and is not fsynced: that survives the
//! process being killed (the page cache keeps it), which is the crash the host simulates. Call
//! [`FileFlash::sync`] to also survive an OS crash.
//!
//! [`RamFlash`]: super::flash::RamFlash

extern crate std;

use core::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::vec;

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
    check_erase, check_read, check_write,
};

use super::flash::{
    FlashError, NRF52840_ERASE_SIZE, NRF52840_WRITE_SIZE, PowerBudget, Tear, erase_page, program,
    span,
};

/// A failed operation on a [`FileFlash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFlashError {
    /// The same errors as the RAM flash (alignment, bounds, power).
    Flash(FlashError),
    /// The backing file failed.
    Io(io::ErrorKind),
}

impl From<FlashError> for FileFlashError {
    fn from(e: FlashError) -> Self {
        FileFlashError::Flash(e)
    }
}

impl From<NorFlashErrorKind> for FileFlashError {
    fn from(kind: NorFlashErrorKind) -> Self {
        FileFlashError::Flash(kind.into())
    }
}

impl From<io::Error> for FileFlashError {
    fn from(e: io::Error) -> Self {
        FileFlashError::Io(e.kind())
    }
}

impl NorFlashError for FileFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FileFlashError::Flash(e) => e.kind(),
            FileFlashError::Io(_) => NorFlashErrorKind::Other,
        }
    }
}

impl fmt::Display for FileFlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileFlashError::Flash(e) => e.fmt(f),
            FileFlashError::Io(kind) => write!(f, "flash file: {kind}"),
        }
    }
}

/// A NOR flash backed by a file of `ERASE`-byte pages and `WRITE`-byte words.
#[derive(Debug)]
pub struct FileFlash<
    const ERASE: usize = NRF52840_ERASE_SIZE,
    const WRITE: usize = NRF52840_WRITE_SIZE,
> {
    file: File,
    capacity: usize,
    power: PowerBudget,
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl<const ERASE: usize, const WRITE: usize> FileFlash<ERASE, WRITE> {
    const GEOMETRY_OK: () = assert!(WRITE > 0 && ERASE > 0 && ERASE % WRITE == 0);

    fn check_size(size: usize) -> io::Result<()> {
        let () = Self::GEOMETRY_OK;
        if size == 0 || size.checked_rem(ERASE) != Some(0) || u32::try_from(size).is_err() {
            return Err(invalid(
                "flash size must be a non-zero multiple of the erase size below 4 GiB",
            ));
        }
        Ok(())
    }

    /// Creates (or truncates) `path` as a fully erased flash of `size` bytes.
    pub fn create(path: impl AsRef<Path>, size: usize) -> io::Result<Self> {
        Self::check_size(size)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let page = vec![0xFF; ERASE];
        for _ in 0..size.checked_div(ERASE).unwrap_or(0) {
            file.write_all(&page)?;
        }
        Ok(Self {
            file,
            capacity: size,
            power: PowerBudget::new(),
        })
    }

    /// Opens an existing flash file; its length is the capacity.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let size =
            usize::try_from(file.metadata()?.len()).map_err(|_| invalid("flash file too large"))?;
        Self::check_size(size)?;
        Ok(Self {
            file,
            capacity: size,
            power: PowerBudget::new(),
        })
    }

    /// Opens `path` if it exists (its size must be `size`), otherwise creates it erased.
    pub fn open_or_create(path: impl AsRef<Path>, size: usize) -> io::Result<Self> {
        let path = path.as_ref();
        if path.exists() {
            let flash = Self::open(path)?;
            if flash.capacity != size {
                return Err(invalid("flash file has a different size"));
            }
            Ok(flash)
        } else {
            Self::create(path, size)
        }
    }

    /// Flushes the file to the disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Program/erase operations started since this handle was opened.
    pub const fn ops(&self) -> u64 {
        self.power.ops()
    }

    /// Arm a power cut: `ops` more operations complete, the next one is torn as `tear` says.
    pub fn cut_power_after_with(&mut self, ops: u64, tear: Tear) {
        self.power.cut_after(ops, tear);
    }

    /// Power back on (disarms any pending cut).
    pub fn power_cycle(&mut self) {
        self.power.power_cycle();
    }

    fn read_at(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FileFlashError> {
        self.file.seek(SeekFrom::Start(u64::from(offset)))?;
        self.file.read_exact(buf)?;
        Ok(())
    }

    fn write_at(&mut self, offset: u32, buf: &[u8]) -> Result<(), FileFlashError> {
        self.file.seek(SeekFrom::Start(u64::from(offset)))?;
        self.file.write_all(buf)?;
        Ok(())
    }

    /// Read-modify-write of `len` bytes at `offset` with the NOR change `apply`, counted as one
    /// operation; a torn one still lands its part before failing.
    fn modify(
        &mut self,
        offset: u32,
        len: usize,
        apply: impl FnOnce(&mut [u8], Option<Tear>),
    ) -> Result<(), FileFlashError> {
        let mut cells = vec![0; len];
        self.read_at(offset, &mut cells)?;
        let tear = self.power.begin_op()?;
        apply(&mut cells, tear);
        self.write_at(offset, &cells)?;
        if tear.is_some() {
            Err(FlashError::PowerLoss.into())
        } else {
            Ok(())
        }
    }
}

impl<const ERASE: usize, const WRITE: usize> ErrorType for FileFlash<ERASE, WRITE> {
    type Error = FileFlashError;
}

impl<const ERASE: usize, const WRITE: usize> ReadNorFlash for FileFlash<ERASE, WRITE> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FileFlashError> {
        self.power.ensure_powered()?;
        check_read(self, offset, bytes.len())?;
        self.read_at(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<const ERASE: usize, const WRITE: usize> NorFlash for FileFlash<ERASE, WRITE> {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FileFlashError> {
        self.power.ensure_powered()?;
        check_erase(self, from, to)?;
        let pages = span(
            from,
            usize::try_from(to.saturating_sub(from)).map_err(|_| FlashError::OutOfBounds)?,
        )?;
        for page in pages.step_by(ERASE) {
            let page = u32::try_from(page).map_err(|_| FlashError::OutOfBounds)?;
            self.modify(page, ERASE, erase_page)?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FileFlashError> {
        self.power.ensure_powered()?;
        check_write(self, offset, bytes.len())?;
        self.modify(offset, bytes.len(), |cells, tear| {
            program(cells, bytes, tear)
        })
    }
}

impl<const ERASE: usize, const WRITE: usize> MultiwriteNorFlash for FileFlash<ERASE, WRITE> {}

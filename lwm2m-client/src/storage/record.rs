//! The persisted firmware-update state ([`FirmwareState`]) and its compact, versioned binary
//! encoding: a fixed upper bound ([`MAX_ENCODED_LEN`]), no heap, and a strict decoder.
//!
//! Format version 1, integers little-endian, strings as a `u8` length then UTF-8 bytes:
//! ```text
//! u8 version (=1) | u8 state | u8 result | str pkg_name | str pkg_version | u64 accepted_sequence
//! | u8 has_staged (0/1) [ u64 sequence | str version ]
//! | u8 has_pending (0/1) [ u64 sequence | str version ]
//! | u8 has_download (0/1) [ str uri | u8 etag_len, etag | u32 bytes_written | u16 block_size
//!                           | u32 total | [u8; 32] manifest_digest ]
//! ```
//! Anything else (unknown version, out-of-range enum or length, bad UTF-8, a tag other than 0/1,
//! trailing bytes) is refused: the caller treats such a record as no state.

use core::fmt;

use heapless::{String, Vec};
use lwm2m_core::object5::{MAX_PACKAGE_URI_LEN, State, UpdateResult};

/// Longest PkgName / PkgVersion.
pub const MAX_PKG_LEN: usize = 32;
/// Longest ETag (RFC 7252: 1 to 8 bytes).
pub const MAX_ETAG_LEN: usize = 8;
/// The encoding this build writes.
pub const FORMAT_VERSION: u8 = 1;

const STR_PKG: usize = 1 + MAX_PKG_LEN;
const PENDING_LEN: usize = 8 + STR_PKG;
const DOWNLOAD_LEN: usize = 1 + MAX_PACKAGE_URI_LEN + 1 + MAX_ETAG_LEN + 4 + 2 + 4 + 32;
/// Upper bound of an encoded record.
pub const MAX_ENCODED_LEN: usize = 3 + 2 * STR_PKG + 8 + 2 * (1 + PENDING_LEN) + 1 + DOWNLOAD_LEN;

/// What the device remembers across reboots about firmware updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareState {
    /// Object 5 State (/5/0/3).
    pub state: State,
    /// Object 5 Update Result (/5/0/5).
    pub result: UpdateResult,
    /// PkgName (/5/0/6) of the running firmware.
    pub pkg_name: String<MAX_PKG_LEN>,
    /// PkgVersion (/5/0/7) of the running firmware.
    pub pkg_version: String<MAX_PKG_LEN>,
    /// Anti-rollback: the highest manifest sequence number installed.
    pub accepted_sequence: u64,
    /// What the staging slot holds once a download completed and verified (State Downloaded), so
    /// that Update can still be executed after a reboot.
    pub staged: Option<Pending>,
    /// Set when an update was executed: what was staged, so that after the reset a confirmed
    /// boot records it (Result 1) and a revert reports Result 8.
    pub pending: Option<Pending>,
    /// An unfinished download, to resume after loss or reboot.
    pub download: Option<Download>,
}

impl Default for FirmwareState {
    fn default() -> Self {
        Self {
            state: State::Idle,
            result: UpdateResult::Initial,
            pkg_name: String::new(),
            pkg_version: String::new(),
            accepted_sequence: 0,
            staged: None,
            pending: None,
            download: None,
        }
    }
}

/// A staged image: verified in DFU, or handed to the bootloader and waiting to be confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its manifest sequence number.
    pub sequence: u64,
    /// Its version (the manifest's text).
    pub version: String<MAX_PKG_LEN>,
}

/// Progress of a pull download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The Package URI (the manifest's, for a SUIT device; a resumed download fetches the
    /// manifest again, checks it against `manifest_digest` and derives the image URI from it).
    pub uri: String<MAX_PACKAGE_URI_LEN>,
    /// The image's ETag: a different one restarts the download.
    pub etag: Vec<u8, MAX_ETAG_LEN>,
    /// Bytes staged so far (resume at `slots::resume_offset` of this).
    pub bytes_written: u32,
    /// Block2 size in use.
    pub block_size: u16,
    /// Image size from the manifest.
    pub total: u32,
    /// Digest of the verified manifest this download belongs to.
    pub manifest_digest: [u8; 32],
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Written by a format version this build does not know.
    UnknownVersion(u8),
    /// Truncated, out of range or otherwise malformed.
    Corrupt,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownVersion(v) => write!(f, "unknown state record version {v}"),
            DecodeError::Corrupt => f.write_str("corrupt state record"),
        }
    }
}

/// The output buffer is shorter than the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall;

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let end = self.pos.checked_add(bytes.len()).ok_or(BufferTooSmall)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(BufferTooSmall)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn u8(&mut self, v: u8) -> Result<(), BufferTooSmall> {
        self.put(&[v])
    }

    /// Length-prefixed; every field's capacity is at most 255, so the length fits a byte.
    fn bytes(&mut self, v: &[u8]) -> Result<(), BufferTooSmall> {
        self.u8(u8::try_from(v.len()).map_err(|_| BufferTooSmall)?)?;
        self.put(v)
    }

    fn flag<T>(&mut self, v: &Option<T>) -> Result<(), BufferTooSmall> {
        self.u8(u8::from(v.is_some()))
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self.rest.split_at_checked(n).ok_or(DecodeError::Corrupt)?;
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Corrupt)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let [v] = self.array()?;
        Ok(v)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    fn string<const N: usize>(&mut self) -> Result<String<N>, DecodeError> {
        let s = core::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Corrupt)?;
        String::try_from(s).map_err(|_| DecodeError::Corrupt)
    }

    fn image(&mut self) -> Result<Option<Pending>, DecodeError> {
        if !self.flag()? {
            return Ok(None);
        }
        Ok(Some(Pending {
            sequence: u64::from_le_bytes(self.array()?),
            version: self.string()?,
        }))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Corrupt),
        }
    }
}

impl FirmwareState {
    /// Encodes into `buf` (at least [`MAX_ENCODED_LEN`] bytes always suffices); returns the length.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let mut w = Writer { buf, pos: 0 };
        w.u8(FORMAT_VERSION)?;
        w.u8(self.state.code())?;
        w.u8(self.result.code())?;
        w.bytes(self.pkg_name.as_bytes())?;
        w.bytes(self.pkg_version.as_bytes())?;
        w.put(&self.accepted_sequence.to_le_bytes())?;
        for image in [&self.staged, &self.pending] {
            w.flag(image)?;
            if let Some(p) = image {
                w.put(&p.sequence.to_le_bytes())?;
                w.bytes(p.version.as_bytes())?;
            }
        }
        w.flag(&self.download)?;
        if let Some(d) = &self.download {
            w.bytes(d.uri.as_bytes())?;
            w.bytes(&d.etag)?;
            w.put(&d.bytes_written.to_le_bytes())?;
            w.put(&d.block_size.to_le_bytes())?;
            w.put(&d.total.to_le_bytes())?;
            w.put(&d.manifest_digest)?;
        }
        Ok(w.pos)
    }

    /// Decodes exactly one record (no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { rest: bytes };
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let state = State::try_from(r.u8()?).map_err(|_| DecodeError::Corrupt)?;
        let result = UpdateResult::try_from(r.u8()?).map_err(|_| DecodeError::Corrupt)?;
        let pkg_name = r.string()?;
        let pkg_version = r.string()?;
        let accepted_sequence = u64::from_le_bytes(r.array()?);
        let staged = r.image()?;
        let pending = r.image()?;
        let download = if r.flag()? {
            Some(Download {
                uri: r.string()?,
                etag: Vec::from_slice(r.bytes()?).map_err(|_| DecodeError::Corrupt)?,
                bytes_written: u32::from_le_bytes(r.array()?),
                block_size: u16::from_le_bytes(r.array()?),
                total: u32::from_le_bytes(r.array()?),
                manifest_digest: r.array()?,
            })
        } else {
            None
        };
        if !r.rest.is_empty() {
            return Err(DecodeError::Corrupt);
        }
        Ok(Self {
            state,
            result,
            pkg_name,
            pkg_version,
            accepted_sequence,
            staged,
            pending,
            download,
        })
    }
}

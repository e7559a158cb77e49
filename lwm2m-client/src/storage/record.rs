//! The persisted firmware-update state ([`FirmwareState`]) and its compact, versioned binary
//! encoding: a fixed upper bound ([`MAX_ENCODED_LEN`]), no heap, and a strict decoder.
//!
//! Format version 2, integers little-endian, strings as a `u8` length then UTF-8 bytes:
//! ```text
//! u8 version (=2) | u8 state | u8 result | str pkg_name | str pkg_version | u64 accepted_sequence
//! | u8 has_staged (0/1) [ u64 sequence | str version ]
//! | u8 has_pending (0/1) [ u64 sequence | str version ]
//! | u8 has_download (0/1) [ str uri | u8 etag_len, etag | u32 total | [u8; 32] manifest_digest
//!                           | u8 restarts | u8 unit_shift | u32 done | u16 tail_len, tail ]
//! ```
//! The download's map of received units: every unit below `done` is in, and `tail` holds the
//! bits of the units from `done` on (bit j of byte i: unit done + 8i + j), up to the last one in.
//! A download that fetches in order has a short tail, so the record stays small (a few hundred
//! bytes) however far it got. The encoder writes the one canonical form: `done` is the first
//! missing unit and the tail's last byte is not zero.
//!
//! Anything else (unknown version, out-of-range enum or length, bad UTF-8, a tag other than 0/1,
//! a unit size that is not the one the image's size gives, a bit past the image, a form that is
//! not canonical, trailing bytes) is refused: the caller treats such a record as no state.
//! Version 1 (a byte offset instead of the map) is refused too: its download starts over.

use core::fmt;

use heapless::{String, Vec};
use lwm2m_core::object5::{MAX_PACKAGE_URI_LEN, State, UpdateResult};

use crate::firmware::blocks::BlockMap;

/// Longest PkgName / PkgVersion.
pub const MAX_PKG_LEN: usize = 32;
/// Longest ETag (RFC 7252: 1 to 8 bytes).
pub const MAX_ETAG_LEN: usize = 8;
/// Words of a download's map of received units: 8192 units (see `engine::limits`).
pub const MAP_WORDS: usize = 256;
/// The encoding this build writes.
pub const FORMAT_VERSION: u8 = 2;

const STR_PKG: usize = 1 + MAX_PKG_LEN;
const PENDING_LEN: usize = 8 + STR_PKG;
const MAP_LEN: usize = 1 + 4 + 2 + MAP_WORDS * 4;
const DOWNLOAD_LEN: usize = 1 + MAX_PACKAGE_URI_LEN + 1 + MAX_ETAG_LEN + 4 + 32 + 1 + MAP_LEN;
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
    /// Image size from the manifest.
    pub total: u32,
    /// Digest of the verified manifest this download belongs to.
    pub manifest_digest: [u8; 32],
    /// Times a changed ETag started this update's download over.
    pub restarts: u8,
    /// The image's units in the staging slot. A unit is marked only after it was written, so
    /// the persisted map never claims bytes that are not in flash.
    pub received: BlockMap<MAP_WORDS>,
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

    /// The map in its canonical form: the units all in from the start, then the tail's bits.
    fn map(&mut self, map: &BlockMap<MAP_WORDS>) -> Result<(), BufferTooSmall> {
        let units = map.units();
        let done = map.first_missing_from(0).unwrap_or(units);
        // The last unit in, past `done`.
        let mut last = None;
        let mut u = done;
        while let Some(set) = map.first_set_from(u) {
            last = Some(set);
            u = set.saturating_add(1);
        }
        let tail_units = last.map_or(0, |l| l.saturating_add(1).saturating_sub(done));
        let tail_len = u16::try_from(tail_units.div_ceil(8)).map_err(|_| BufferTooSmall)?;
        self.u8(map.unit_shift())?;
        self.put(&done.to_le_bytes())?;
        self.put(&tail_len.to_le_bytes())?;
        for byte in 0..u32::from(tail_len) {
            let bits = (0..8u32).fold(0u8, |b, j| {
                let unit = done
                    .saturating_add(byte.saturating_mul(8))
                    .saturating_add(j);
                if map.has(unit) { b | (1 << j) } else { b }
            });
            self.u8(bits)?;
        }
        Ok(())
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

    /// A map of an image of `total` bytes, strictly in the canonical form [`Writer::map`] writes.
    fn map(&mut self, total: u32) -> Result<BlockMap<MAP_WORDS>, DecodeError> {
        let unit_shift = self.u8()?;
        let done = u32::from_le_bytes(self.array()?);
        let tail_len = u16::from_le_bytes(self.array()?);
        let tail = self.take(usize::from(tail_len))?;
        let units = total.div_ceil(1u32.checked_shl(u32::from(unit_shift)).unwrap_or(0).max(1));
        if done > units || u32::from(tail_len) > units.saturating_sub(done).div_ceil(8) {
            return Err(DecodeError::Corrupt);
        }
        // Canonical: `done` is missing (so a tail starts with a clear bit), the last byte is not 0.
        if tail.first().is_some_and(|b| b & 1 != 0) || tail.last() == Some(&0) {
            return Err(DecodeError::Corrupt);
        }
        let mut words = [0u32; MAP_WORDS];
        let mut set = |unit: u32| -> Result<(), DecodeError> {
            if unit >= units {
                return Err(DecodeError::Corrupt);
            }
            let word = words
                .get_mut((unit / 32) as usize)
                .ok_or(DecodeError::Corrupt)?;
            *word |= 1 << (unit % 32);
            Ok(())
        };
        for unit in 0..done {
            set(unit)?;
        }
        for (i, byte) in tail.iter().enumerate() {
            for j in 0..8u32 {
                if byte & (1 << j) != 0 {
                    set(done
                        .saturating_add((i as u32).saturating_mul(8))
                        .saturating_add(j))?;
                }
            }
        }
        BlockMap::from_parts(total, unit_shift, words).ok_or(DecodeError::Corrupt)
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
            w.put(&d.total.to_le_bytes())?;
            w.put(&d.manifest_digest)?;
            w.u8(d.restarts)?;
            w.map(&d.received)?;
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
            let uri = r.string()?;
            let etag = Vec::from_slice(r.bytes()?).map_err(|_| DecodeError::Corrupt)?;
            let total = u32::from_le_bytes(r.array()?);
            Some(Download {
                uri,
                etag,
                total,
                manifest_digest: r.array()?,
                restarts: r.u8()?,
                received: r.map(total)?,
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

//! The device's streaming applier. Patch bytes go in as they arrive (any split into blocks); the
//! old image is read at random offsets through [`OldImage`]; the new image comes out strictly in
//! order through [`NewImage`], in pieces of at most 64 bytes. No heap: the state is this struct
//! (about 400 bytes with the heatshrink window) plus 64 bytes of stack while a diff is added.
//!
//! The applier checks every size against the new image's declared size and every old read
//! against the old image, so a malformed patch ends in a [`PatchError`], never in a write past
//! the new image's end or a read outside the old one. After any error it refuses more input.

use crate::error::{ApplyError, PatchError};
use crate::header::{COMPRESSION_HEATSHRINK, HeatshrinkParams, parse_header};
use crate::heatshrink::Decoder;
use crate::varint::VarintReader;

/// The most bytes written (and, for a diff, read from the old image) in one call.
pub const CHUNK: usize = 64;

/// The image the patch applies to: random-access reads.
pub trait OldImage {
    type Error;
    /// Its size in bytes.
    fn size(&self) -> u32;
    /// Fills `buf` from `offset`; the applier asks only within [`OldImage::size`].
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error>;
}

/// Where the new image goes, front to back.
pub trait NewImage {
    type Error;
    /// Appends `bytes` (at most [`CHUNK`] at a time).
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

impl OldImage for &[u8] {
    type Error = core::convert::Infallible;
    fn size(&self) -> u32 {
        u32::try_from(self.len()).unwrap_or(u32::MAX)
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let from = self
            .get(start..)
            .and_then(|rest| rest.get(..buf.len()))
            .unwrap_or_default();
        buf.iter_mut().zip(from).for_each(|(b, f)| *b = *f);
        Ok(())
    }
}

#[cfg(feature = "std")]
impl NewImage for Vec<u8> {
    type Error = core::convert::Infallible;
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Applies one sequential patch. Feed it the patch in order, then call [`Applier::finish`].
#[derive(Clone, Debug)]
pub struct Applier {
    stage: Stage,
    /// The new image's size, once the header is read.
    varint: VarintReader,
    /// Set for a heatshrink body once its parameter byte is read.
    decoder: Option<Decoder>,
    heatshrink: bool,
    max_new: u32,
    body: Body,
}

/// Where in the patch's outer framing the next raw byte belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Header,
    NewSize,
    HeatshrinkParams,
    Body,
    /// An empty new image: nothing may follow its size.
    Empty,
    Failed,
}

/// Where in the (decompressed) body the next byte belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    DataFormat,
    DiffSize,
    Diff,
    ExtraSize,
    Extra,
    Adjustment,
    End,
}

/// The bsdiff chunk state machine over the decompressed body.
#[derive(Clone, Debug)]
struct Body {
    section: Section,
    varint: VarintReader,
    old_size: u32,
    new_size: u32,
    /// New-image bytes written so far.
    written: u32,
    /// The next old-image byte a diff adds to; may leave the image between diffs.
    old_pos: i64,
    /// Bytes left in the current diff or extra chunk, buffered ones included.
    remaining: u32,
    buf: [u8; CHUNK],
    buffered: usize,
}

impl Applier {
    /// An applier for a patch against an old image of `old_size` bytes, refusing a new image
    /// larger than `max_new` bytes (the staging slot, or the size the manifest declares).
    pub const fn new(old_size: u32, max_new: u32) -> Self {
        Self {
            stage: Stage::Header,
            varint: VarintReader::new(),
            decoder: None,
            heatshrink: false,
            max_new,
            body: Body {
                section: Section::DataFormat,
                varint: VarintReader::new(),
                old_size,
                new_size: 0,
                written: 0,
                old_pos: 0,
                remaining: 0,
                buf: [0; CHUNK],
                buffered: 0,
            },
        }
    }

    /// The new image's size, once the patch header has been read.
    pub fn new_size(&self) -> Option<u32> {
        match self.stage {
            Stage::Header | Stage::NewSize => None,
            _ => Some(self.body.new_size),
        }
    }

    /// New-image bytes written so far.
    pub const fn written(&self) -> u32 {
        self.body.written
    }

    /// Whether the patch has been read to its end (and the whole new image written).
    pub fn is_complete(&self) -> bool {
        self.stage == Stage::Empty
            || (self.stage == Stage::Body && self.body.section == Section::End)
    }

    /// Takes the next patch bytes, writing whatever new-image bytes they complete.
    pub fn feed<O: OldImage, N: NewImage>(
        &mut self,
        patch: &[u8],
        old: &mut O,
        new: &mut N,
    ) -> Result<(), ApplyError<O::Error, N::Error>> {
        for &byte in patch {
            if let Err(e) = self.push(byte, old, new) {
                self.stage = Stage::Failed;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Ends the patch: the size of the new image if it is complete, else why not.
    pub fn finish(&self) -> Result<u32, PatchError> {
        if self.is_complete() {
            Ok(self.body.new_size)
        } else if self.stage == Stage::Failed {
            Err(PatchError::Failed)
        } else {
            Err(PatchError::Truncated)
        }
    }

    fn push<O: OldImage, N: NewImage>(
        &mut self,
        byte: u8,
        old: &mut O,
        new: &mut N,
    ) -> Result<(), ApplyError<O::Error, N::Error>> {
        match self.stage {
            Stage::Header => {
                self.heatshrink = parse_header(byte)? == COMPRESSION_HEATSHRINK;
                self.stage = Stage::NewSize;
            }
            Stage::NewSize => {
                if let Some(size) = self.varint.push(byte)? {
                    let size = u64::try_from(size).map_err(|_| PatchError::NegativeSize)?;
                    self.body.new_size = u32::try_from(size)
                        .ok()
                        .filter(|s| *s <= self.max_new)
                        .ok_or(PatchError::NewTooLarge {
                            size,
                            max: self.max_new,
                        })?;
                    // detools writes nothing after the size of an empty image.
                    self.stage = if size == 0 {
                        Stage::Empty
                    } else if self.heatshrink {
                        Stage::HeatshrinkParams
                    } else {
                        Stage::Body
                    };
                }
            }
            Stage::HeatshrinkParams => {
                self.decoder = Some(Decoder::new(HeatshrinkParams::from_byte(byte)?));
                self.stage = Stage::Body;
            }
            Stage::Body => {
                let body = &mut self.body;
                match &mut self.decoder {
                    Some(decoder) => decoder.push(byte, &mut |b| body.take(b, old, new))?,
                    None => body.take(byte, old, new)?,
                }
            }
            Stage::Empty => return Err(PatchError::TrailingData.into()),
            Stage::Failed => return Err(PatchError::Failed.into()),
        }
        Ok(())
    }
}

impl Body {
    /// Takes one decompressed body byte.
    fn take<O: OldImage, N: NewImage>(
        &mut self,
        byte: u8,
        old: &mut O,
        new: &mut N,
    ) -> Result<(), ApplyError<O::Error, N::Error>> {
        match self.section {
            Section::DataFormat => {
                if let Some(size) = self.varint.push(byte)? {
                    if size != 0 {
                        return Err(PatchError::DataFormat.into());
                    }
                    self.section = Section::DiffSize;
                }
            }
            Section::DiffSize => self.chunk_start(byte, Section::Diff, Section::ExtraSize)?,
            Section::ExtraSize => self.chunk_start(byte, Section::Extra, Section::Adjustment)?,
            Section::Diff | Section::Extra => {
                let slot = self.buf.get_mut(self.buffered).ok_or(PatchError::Failed)?;
                *slot = byte;
                self.buffered = self.buffered.saturating_add(1);
                self.remaining = self.remaining.saturating_sub(1);
                if self.buffered == CHUNK || self.remaining == 0 {
                    self.flush(old, new)?;
                }
                if self.remaining == 0 {
                    self.section = if self.section == Section::Diff {
                        Section::ExtraSize
                    } else {
                        Section::Adjustment
                    };
                }
            }
            Section::Adjustment => {
                if let Some(adjustment) = self.varint.push(byte)? {
                    self.old_pos = self
                        .old_pos
                        .checked_add(adjustment)
                        .ok_or(PatchError::SizeOverflow)?;
                    self.section = if self.written == self.new_size {
                        Section::End
                    } else {
                        Section::DiffSize
                    };
                }
            }
            Section::End => return Err(PatchError::TrailingData.into()),
        }
        Ok(())
    }

    /// Reads a chunk's size; then the chunk, or `empty` when the size is 0.
    fn chunk_start(&mut self, byte: u8, chunk: Section, empty: Section) -> Result<(), PatchError> {
        if let Some(size) = self.varint.push(byte)? {
            self.remaining = self.chunk_size(size)?;
            self.section = if self.remaining > 0 { chunk } else { empty };
        }
        Ok(())
    }

    /// A chunk's size, if it is not negative and fits in what is left of the new image.
    fn chunk_size(&self, size: i64) -> Result<u32, PatchError> {
        let size = u64::try_from(size).map_err(|_| PatchError::NegativeSize)?;
        let left = self.new_size.saturating_sub(self.written);
        u32::try_from(size)
            .ok()
            .filter(|s| *s <= left)
            .ok_or(PatchError::ChunkTooLong)
    }

    /// Writes the buffered bytes: a diff adds the old image's bytes first.
    fn flush<O: OldImage, N: NewImage>(
        &mut self,
        old: &mut O,
        new: &mut N,
    ) -> Result<(), ApplyError<O::Error, N::Error>> {
        let n = self.buffered;
        let bytes = self.buf.get_mut(..n).ok_or(PatchError::Failed)?;
        if self.section == Section::Diff {
            let len = i64::try_from(n).map_err(|_| PatchError::Failed)?;
            let end = self
                .old_pos
                .checked_add(len)
                .ok_or(PatchError::OldOutOfRange)?;
            let start = u32::try_from(self.old_pos).map_err(|_| PatchError::OldOutOfRange)?;
            if end > i64::from(self.old_size) {
                return Err(PatchError::OldOutOfRange.into());
            }
            let mut from = [0u8; CHUNK];
            let from = from.get_mut(..n).ok_or(PatchError::Failed)?;
            old.read(start, from).map_err(ApplyError::ReadOld)?;
            for (b, f) in bytes.iter_mut().zip(from.iter()) {
                *b = b.wrapping_add(*f);
            }
            self.old_pos = end;
        }
        new.write(bytes).map_err(ApplyError::WriteNew)?;
        let n32 = u32::try_from(n).map_err(|_| PatchError::Failed)?;
        self.written = self.written.saturating_add(n32);
        self.buffered = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RAM budget: heatshrink window (256 B) + write buffer (64 B) + state, well under 1 KiB.
    #[test]
    fn the_applier_fits_its_ram_budget() {
        let size = core::mem::size_of::<Applier>();
        assert!(size <= 448, "Applier is {size} bytes");
    }
}

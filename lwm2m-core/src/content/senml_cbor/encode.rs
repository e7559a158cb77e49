//! SenML-CBOR encoding into a caller's buffer: definite-length array and maps, the base name on
//! the first record, integers in their shortest CBOR form, floats as `f32` when exact.

use super::{SenmlError, label};
use crate::content::Value;
use crate::{Path, PathError, SliceWriter};
use core::fmt::Write;

/// Longest path text: `/65534/65534/65534/65534/`.
const NAME_CAP: usize = 32;

/// Writes SenML records into a byte buffer.
///
/// The array header's size depends on the record count, so records are written behind a
/// reserved header (sized for the buffer, at most 5 bytes) and moved up by [`SenmlWriter::finish`].
#[derive(Debug)]
pub struct SenmlWriter<'a> {
    buf: &'a mut [u8],
    reserve: usize,
    pos: usize,
    count: u64,
    base: Option<Path>,
}

impl<'a> SenmlWriter<'a> {
    /// Records named relative to `base`: the first carries `bn` = `"<base>/"`, each then names
    /// its ids below the base (`"0"`, `"8/1"`).
    pub fn new(buf: &'a mut [u8], base: &Path) -> SenmlWriter<'a> {
        SenmlWriter::start(buf, Some(*base))
    }

    /// Records named by full paths (`"/3/0/0"`) and no base name, as in Read-Composite requests.
    pub fn absolute(buf: &'a mut [u8]) -> SenmlWriter<'a> {
        SenmlWriter::start(buf, None)
    }

    fn start(buf: &'a mut [u8], base: Option<Path>) -> SenmlWriter<'a> {
        let reserve = head_len(buf.len() as u64);
        SenmlWriter {
            buf,
            reserve,
            pos: 0,
            count: 0,
            base,
        }
    }

    /// Adds a record for `name` (ids below the base, or a full path without one) with `value`,
    /// or with no value to only name the path.
    pub fn record(
        &mut self,
        name: &[u16],
        value: Option<&Value<'_>>,
    ) -> Result<&mut Self, SenmlError> {
        let mut name_buf = [0u8; NAME_CAP];
        let mut name_text = SliceWriter::new(&mut name_buf);
        let mut base_buf = [0u8; NAME_CAP];
        let mut base_text = SliceWriter::new(&mut base_buf);
        match self.base {
            Some(base) => {
                if name.is_empty() {
                    return Err(SenmlError::InvalidName(PathError::EmptySegment));
                }
                // Validates depth and reserved ids of the full path.
                name.iter()
                    .try_fold(base, |p, &id| p.child(id))
                    .map_err(SenmlError::InvalidName)?;
                for (i, id) in name.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "/" };
                    write!(name_text, "{sep}{id}").map_err(|_| SenmlError::BufferFull)?;
                }
                if self.count == 0 {
                    let slash = if base.is_root() { "" } else { "/" };
                    write!(base_text, "{base}{slash}").map_err(|_| SenmlError::BufferFull)?;
                }
            }
            None => {
                let path = Path::new(name).map_err(SenmlError::InvalidName)?;
                write!(name_text, "{path}").map_err(|_| SenmlError::BufferFull)?;
            }
        }
        let base_name = (!base_text.is_empty()).then(|| base_text.as_str());
        let start = self
            .reserve
            .checked_add(self.pos)
            .ok_or(SenmlError::BufferFull)?;
        let tail = self.buf.get_mut(start..).ok_or(SenmlError::BufferFull)?;
        let written = write_record(tail, base_name, name_text.as_str(), value)?;
        self.pos = self
            .pos
            .checked_add(written)
            .ok_or(SenmlError::BufferFull)?;
        self.count = self.count.saturating_add(1);
        Ok(self)
    }

    /// Writes the array header and returns the encoded payload.
    pub fn finish(self) -> Result<&'a [u8], SenmlError> {
        let SenmlWriter {
            buf,
            reserve,
            pos,
            count,
            ..
        } = self;
        let mut head_bytes = [0u8; 9];
        let head_len = head(ARRAY, count, &mut head_bytes);
        let body_end = reserve.checked_add(pos).ok_or(SenmlError::BufferFull)?;
        if head_len > reserve || body_end > buf.len() {
            return Err(SenmlError::BufferFull);
        }
        buf.copy_within(reserve..body_end, head_len);
        buf.get_mut(..head_len)
            .ok_or(SenmlError::BufferFull)?
            .copy_from_slice(head_bytes.get(..head_len).unwrap_or(&[]));
        let total = head_len.checked_add(pos).ok_or(SenmlError::BufferFull)?;
        let buf: &'a [u8] = buf;
        buf.get(..total).ok_or(SenmlError::BufferFull)
    }
}

/// `[{bn: path, value}]`: a single resource or resource instance. Returns the payload length.
pub fn encode_single(buf: &mut [u8], path: &Path, value: &Value<'_>) -> Result<usize, SenmlError> {
    let mut base_buf = [0u8; NAME_CAP];
    let mut base_text = SliceWriter::new(&mut base_buf);
    write!(base_text, "{path}").map_err(|_| SenmlError::BufferFull)?;
    let (first, rest) = buf.split_first_mut().ok_or(SenmlError::BufferFull)?;
    *first = 0x81; // array(1)
    let body = write_record(rest, Some(base_text.as_str()), "", Some(value))?;
    body.checked_add(1).ok_or(SenmlError::BufferFull)
}

/// A multiple resource at `path`: `[{bn: "<path>/", n: "0", ...}, {n: "1", ...}]`. Returns the
/// payload length.
pub fn encode_multiple_resource<'v, I>(
    buf: &mut [u8],
    path: &Path,
    instances: I,
) -> Result<usize, SenmlError>
where
    I: IntoIterator<Item = (u16, Value<'v>)>,
{
    let mut w = SenmlWriter::new(buf, path);
    for (id, value) in instances {
        w.record(&[id], Some(&value))?;
    }
    Ok(w.finish()?.len())
}

/// One record map; `name` empty means no `n`. Returns the bytes written.
fn write_record(
    out: &mut [u8],
    base_name: Option<&str>,
    name: &str,
    value: Option<&Value<'_>>,
) -> Result<usize, SenmlError> {
    let pairs = [base_name.is_some(), !name.is_empty(), value.is_some()]
        .into_iter()
        .filter(|present| *present)
        .count() as u64;
    let mut enc = Cbor { out, pos: 0 };
    enc.head(MAP, pairs)?;
    if let Some(bn) = base_name {
        enc.i64(label::BASE_NAME)?.str(bn)?;
    }
    if !name.is_empty() {
        enc.i64(label::NAME)?.str(name)?;
    }
    match value {
        None => {}
        Some(Value::Integer(v)) => {
            enc.i64(label::VALUE)?.i64(*v)?;
        }
        Some(Value::Unsigned(v)) => {
            enc.i64(label::VALUE)?.head(UNSIGNED, *v)?;
        }
        #[cfg(not(feature = "float"))]
        Some(Value::Float(_)) => return Err(SenmlError::FloatUnsupported),
        #[cfg(feature = "float")]
        Some(Value::Float(v)) => {
            enc.i64(label::VALUE)?;
            let narrow = *v as f32;
            if f64::from(narrow) == *v {
                enc.put(&[0xfa])?.put(&narrow.to_be_bytes())?;
            } else {
                enc.put(&[0xfb])?.put(&v.to_be_bytes())?;
            }
        }
        Some(Value::Boolean(v)) => {
            enc.i64(label::VALUE_BOOL)?
                .put(&[if *v { 0xf5 } else { 0xf4 }])?;
        }
        Some(Value::String(s)) => {
            enc.i64(label::VALUE_STRING)?.str(s)?;
        }
        Some(Value::Opaque(b)) => {
            enc.i64(label::VALUE_DATA)?
                .head(BYTES, b.len() as u64)?
                .put(b)?;
        }
        Some(Value::ObjLink(o, i)) => {
            let mut link_buf = [0u8; 12];
            let mut link = SliceWriter::new(&mut link_buf);
            write!(link, "{o}:{i}").map_err(|_| SenmlError::BufferFull)?;
            enc.str(label::OBJLNK)?.str(link.as_str())?;
        }
    }
    Ok(enc.pos)
}

// CBOR major types (RFC 8949 §3.1), shifted into a head's first byte.
const UNSIGNED: u8 = 0x00;
const NEGATIVE: u8 = 0x20;
const BYTES: u8 = 0x40;
const TEXT: u8 = 0x60;
const ARRAY: u8 = 0x80;
const MAP: u8 = 0xa0;

/// A CBOR writer over a borrowed slice: each item in its shortest form, as minicbor's encoder
/// writes it (the tests compare the two); a write that does not fit is `BufferFull`.
struct Cbor<'b> {
    out: &'b mut [u8],
    pos: usize,
}

impl Cbor<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<&mut Self, SenmlError> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(SenmlError::BufferFull)?;
        self.out
            .get_mut(self.pos..end)
            .ok_or(SenmlError::BufferFull)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(self)
    }

    fn head(&mut self, major: u8, arg: u64) -> Result<&mut Self, SenmlError> {
        let mut bytes = [0u8; 9];
        let len = head(major, arg, &mut bytes);
        self.put(bytes.get(..len).unwrap_or(&[]))
    }

    fn i64(&mut self, v: i64) -> Result<&mut Self, SenmlError> {
        // A negative integer's argument is -1 - v, which is !v in two's complement.
        match u64::try_from(v) {
            Ok(v) => self.head(UNSIGNED, v),
            Err(_) => self.head(NEGATIVE, !v as u64),
        }
    }

    fn str(&mut self, s: &str) -> Result<&mut Self, SenmlError> {
        self.head(TEXT, s.len() as u64)?.put(s.as_bytes())
    }
}

/// Writes the head of `major` (already shifted) with argument `arg` into `out`, in its shortest
/// form; returns its length.
fn head(major: u8, arg: u64, out: &mut [u8; 9]) -> usize {
    let (info, len) = match arg {
        0..=23 => (arg as u8, 0),
        24..=0xFF => (24, 1),
        0x100..=0xFFFF => (25, 2),
        0x1_0000..=0xFFFF_FFFF => (26, 4),
        _ => (27, 8),
    };
    let (first, rest) = out.split_at_mut(1);
    if let Some(b) = first.first_mut() {
        *b = major | info;
    }
    let be = arg.to_be_bytes();
    if let (Some(dst), Some(src)) = (rest.get_mut(..len), be.get(be.len().saturating_sub(len)..)) {
        dst.copy_from_slice(src);
    }
    len.saturating_add(1)
}

/// Bytes a CBOR head takes for argument `n`.
fn head_len(n: u64) -> usize {
    head(0, n, &mut [0; 9])
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use minicbor::Encoder;
    use minicbor::encode::write::Cursor;
    use std::vec::Vec;

    /// minicbor's encoding of one item, written by `f`.
    fn minicbor(
        f: impl FnOnce(
            &mut Encoder<Cursor<&mut [u8]>>,
        )
            -> Result<(), minicbor::encode::Error<minicbor::encode::write::EndOfSlice>>,
    ) -> Vec<u8> {
        let mut buf = [0u8; 9];
        let mut enc = Encoder::new(Cursor::new(&mut buf[..]));
        f(&mut enc).unwrap();
        let len = enc.writer().position();
        buf[..len].to_vec()
    }

    /// Every argument width of every major type this writer writes, its bytes against
    /// minicbor's encoder.
    #[test]
    fn heads_and_integers_are_written_as_minicbor_writes_them() {
        let mut args: Vec<u64> = (0..=300).collect();
        for w in [8u32, 16, 32] {
            let edge = 1u64 << w;
            args.extend([edge - 2, edge - 1, edge, edge + 1]);
        }
        args.extend([u64::MAX - 1, u64::MAX, 0x1234_5678_9abc_def0]);
        for &arg in &args {
            for major in [UNSIGNED, NEGATIVE, BYTES, TEXT, ARRAY, MAP] {
                let mut ours = [0u8; 9];
                let len = head(major, arg, &mut ours);
                let mut want = minicbor(|e| {
                    match major {
                        UNSIGNED => e.u64(arg),
                        NEGATIVE => {
                            e.int(minicbor::data::Int::try_from(-1 - i128::from(arg)).unwrap())
                        }
                        ARRAY => e.array(arg),
                        MAP => e.map(arg),
                        // A string's head alone: a tag's head of the same argument, re-typed.
                        _ => e.tag(minicbor::data::Tag::new(arg)),
                    }
                    .map(|_| ())
                });
                if major == BYTES || major == TEXT {
                    want[0] = want[0] & 0x1f | major;
                }
                assert_eq!(&ours[..len], &want[..], "major {major:#x} arg {arg}");
                assert_eq!(head_len(arg), len);
            }
        }
        for v in [
            0i64,
            1,
            -1,
            23,
            -24,
            -25,
            255,
            -256,
            -257,
            i64::MAX,
            i64::MIN,
            -65537,
        ] {
            let mut buf = [0u8; 9];
            let mut ours = Cbor {
                out: &mut buf,
                pos: 0,
            };
            ours.i64(v).unwrap();
            let pos = ours.pos;
            assert_eq!(&buf[..pos], &minicbor(|e| e.i64(v).map(|_| ()))[..], "{v}");
        }
    }

    #[test]
    fn a_write_past_the_end_is_buffer_full() {
        let mut buf = [0u8; 3];
        let mut w = Cbor {
            out: &mut buf,
            pos: 0,
        };
        assert!(w.str("ab").is_ok());
        assert_eq!(w.str("").err(), Some(SenmlError::BufferFull));
        assert_eq!(w.pos, 3);
    }
}

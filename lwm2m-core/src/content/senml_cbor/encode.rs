//! SenML-CBOR encoding into a caller's buffer: definite-length array and maps, the base name on
//! the first record, integers in their shortest CBOR form, floats as `f32` when exact.

use super::{SenmlError, label};
use crate::content::Value;
use crate::{Path, PathError, SliceWriter};
use core::fmt::Write;
use minicbor::Encoder;
use minicbor::encode::write::Cursor;

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
        // Over a borrowed slice, as write_record's encoder: one copy of minicbor's encoder.
        let mut head_bytes = [0u8; 9];
        let mut head = Encoder::new(Cursor::new(&mut head_bytes[..]));
        head.array(count)?;
        let head_len = head.writer().position();
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
    let mut enc = Encoder::new(Cursor::new(out));
    enc.map(pairs)?;
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
            enc.i64(label::VALUE)?.u64(*v)?;
        }
        #[cfg(not(feature = "float"))]
        Some(Value::Float(_)) => return Err(SenmlError::FloatUnsupported),
        #[cfg(feature = "float")]
        Some(Value::Float(v)) => {
            enc.i64(label::VALUE)?;
            let narrow = *v as f32;
            if f64::from(narrow) == *v {
                enc.f32(narrow)?;
            } else {
                enc.f64(*v)?;
            }
        }
        Some(Value::Boolean(v)) => {
            enc.i64(label::VALUE_BOOL)?.bool(*v)?;
        }
        Some(Value::String(s)) => {
            enc.i64(label::VALUE_STRING)?.str(s)?;
        }
        Some(Value::Opaque(b)) => {
            enc.i64(label::VALUE_DATA)?.bytes(b)?;
        }
        Some(Value::ObjLink(o, i)) => {
            let mut link_buf = [0u8; 12];
            let mut link = SliceWriter::new(&mut link_buf);
            write!(link, "{o}:{i}").map_err(|_| SenmlError::BufferFull)?;
            enc.str(label::OBJLNK)?.str(link.as_str())?;
        }
    }
    Ok(enc.writer().position())
}

/// Bytes a CBOR head takes for argument `n`.
fn head_len(n: u64) -> usize {
    match n {
        0..=23 => 1,
        24..=0xFF => 2,
        0x100..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

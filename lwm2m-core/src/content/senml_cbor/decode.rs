//! Zero-copy SenML-CBOR decoding: an iterator over records, raw (names as written) or resolved
//! to LwM2M paths.
//!
//! Without the `float` feature (the device's build) no float is decoded: a float value (`v`) is
//! [`SenmlError::FloatUnsupported`]; times (`bt`, `t`), sums and update times are checked for
//! their CBOR form and skipped, and records carry no `time`.

use super::{SENML_VERSION, SenmlError, label};
use crate::Path;
use crate::content::{Value, text};
use cbor_read::{Decoder, Int, Type};

/// One record as written: the base name in force, the name, the resolved time and the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawRecord<'a> {
    /// The base name in force for this record (`bn` persists until the next `bn`).
    pub base_name: &'a str,
    /// The record's name (`n`), empty if absent.
    pub name: &'a str,
    /// Base time + time, if either is present (seconds; RFC 8428 §4.5.3 says how to read it).
    #[cfg(feature = "float")]
    pub time: Option<f64>,
    /// The value, or `None` for a record that only names a path (e.g. Read-Composite).
    pub value: Option<Value<'a>>,
}

/// One record resolved to its LwM2M path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// Base name + name as a path.
    pub path: Path,
    /// Base time + time, if either is present.
    #[cfg(feature = "float")]
    pub time: Option<f64>,
    /// The value, or `None` for a record that only names a path.
    pub value: Option<Value<'a>>,
}

/// Iterates over the records of a SenML-CBOR payload, names as written; stops after an error.
#[derive(Debug, Clone)]
pub struct RawSenmlReader<'a> {
    dec: Decoder<'a>,
    remaining: u64,
    base_name: &'a str,
    base_time: Option<Time>,
    finished: bool,
}

/// A decoded time: seconds as `f64` with the `float` feature, otherwise only its presence.
#[cfg(feature = "float")]
type Time = f64;
#[cfg(not(feature = "float"))]
type Time = ();

/// Iterates over the records of a SenML-CBOR payload with their LwM2M paths; stops after an
/// error.
#[derive(Debug, Clone)]
pub struct SenmlReader<'a> {
    raw: RawSenmlReader<'a>,
}

impl<'a> SenmlReader<'a> {
    /// Starts reading `payload`; fails if it does not begin with a definite-length array.
    pub fn new(payload: &'a [u8]) -> Result<SenmlReader<'a>, SenmlError> {
        Ok(SenmlReader {
            raw: RawSenmlReader::new(payload)?,
        })
    }
}

impl<'a> Iterator for SenmlReader<'a> {
    type Item = Result<Record<'a>, SenmlError>;

    fn next(&mut self) -> Option<Self::Item> {
        let raw = match self.raw.next()? {
            Ok(raw) => raw,
            Err(e) => return Some(Err(e)),
        };
        match Path::parse_concat(raw.base_name, raw.name) {
            Ok(path) => Some(Ok(Record {
                path,
                #[cfg(feature = "float")]
                time: raw.time,
                value: raw.value,
            })),
            Err(e) => {
                self.raw.finished = true;
                Some(Err(SenmlError::InvalidName(e)))
            }
        }
    }
}

impl<'a> RawSenmlReader<'a> {
    /// Starts reading `payload`; fails if it does not begin with a definite-length array.
    pub fn new(payload: &'a [u8]) -> Result<RawSenmlReader<'a>, SenmlError> {
        let mut dec = Decoder::new(payload);
        let remaining = match dec.datatype()? {
            Type::Array => dec.array()?,
            Type::ArrayIndef => return Err(SenmlError::IndefiniteLength),
            _ => return Err(SenmlError::NotAnArray),
        };
        Ok(RawSenmlReader {
            dec,
            remaining,
            base_name: "",
            base_time: None,
            finished: false,
        })
    }

    fn record(&mut self) -> Result<RawRecord<'a>, SenmlError> {
        let pairs = match self.dec.datatype()? {
            Type::Map => self.dec.map()?,
            Type::MapIndef => return Err(SenmlError::IndefiniteLength),
            Type::Break | Type::Unknown => return Err(SenmlError::Malformed),
            _ => return Err(SenmlError::RecordNotAMap),
        };
        let mut seen = 0u16;
        let mut name = "";
        let mut time = None;
        let mut value = None;
        // Every pair consumes input, so a huge declared count ends at the input's end.
        for _ in 0..pairs {
            let label = self.label()?;
            if let Some(bit) = label.bit() {
                if seen & bit != 0 {
                    return Err(SenmlError::DuplicateLabel);
                }
                seen |= bit;
            }
            match label {
                Label::BaseName => self.base_name = self.text()?,
                Label::BaseTime => self.base_time = Some(self.time()?),
                Label::Name => name = self.text()?,
                Label::Time => time = Some(self.time()?),
                Label::Value => set_once(&mut value, self.numeric_value()?)?,
                Label::ValueString => set_once(&mut value, Value::String(self.text()?))?,
                Label::ValueBool => set_once(&mut value, Value::Boolean(self.boolean()?))?,
                Label::ValueData => set_once(&mut value, Value::Opaque(self.bytes()?))?,
                Label::ObjLink => {
                    let (o, i) = text::parse_objlnk(self.text()?.as_bytes())
                        .map_err(|_| SenmlError::InvalidObjLink)?;
                    set_once(&mut value, Value::ObjLink(o, i))?;
                }
                Label::BaseVersion => {
                    // A version that is not an unsigned integer is not one we understand.
                    let version = match self.unsigned() {
                        Err(SenmlError::WrongValueType) => Err(SenmlError::UnsupportedVersion),
                        other => other,
                    }?;
                    if version > SENML_VERSION {
                        return Err(SenmlError::UnsupportedVersion);
                    }
                }
                Label::BaseUnit | Label::Unit => {
                    self.text()?;
                }
                Label::Sum | Label::UpdateTime => {
                    self.number()?;
                }
                Label::MustUnderstand => return Err(SenmlError::UnsupportedLabel),
                Label::Unknown => self.skip_scalar()?,
            }
        }
        #[cfg(feature = "float")]
        let time = match (self.base_time, time) {
            (None, None) => None,
            (bt, t) => Some(bt.unwrap_or(0.0) + t.unwrap_or(0.0)),
        };
        #[cfg(not(feature = "float"))]
        let _: Option<Time> = time;
        Ok(RawRecord {
            base_name: self.base_name,
            name,
            #[cfg(feature = "float")]
            time,
            value,
        })
    }

    fn label(&mut self) -> Result<Label, SenmlError> {
        match self.dec.datatype()? {
            t if is_int(t) => Ok(Label::from_int(self.dec.int()?)),
            Type::String => Ok(Label::from_text(self.text()?)),
            Type::StringIndef => Err(SenmlError::IndefiniteLength),
            Type::Break | Type::Unknown => Err(SenmlError::Malformed),
            _ => Err(SenmlError::InvalidLabelType),
        }
    }

    /// A text string, borrowed.
    fn text(&mut self) -> Result<&'a str, SenmlError> {
        match self.dec.datatype()? {
            // A declared length past the input's end is `Truncated` (on any width of `usize`).
            Type::String => self.dec.str().map_err(|e| match e {
                cbor_read::Error::Truncated => SenmlError::Truncated,
                _ => SenmlError::InvalidUtf8,
            }),
            Type::StringIndef => Err(SenmlError::IndefiniteLength),
            _ => Err(SenmlError::ExpectedText),
        }
    }

    /// A byte string, borrowed.
    fn bytes(&mut self) -> Result<&'a [u8], SenmlError> {
        match self.dec.datatype()? {
            Type::Bytes => Ok(self.dec.bytes()?),
            Type::BytesIndef => Err(SenmlError::IndefiniteLength),
            _ => Err(SenmlError::ExpectedBytes),
        }
    }

    fn boolean(&mut self) -> Result<bool, SenmlError> {
        match self.dec.datatype()? {
            Type::Bool => Ok(self.dec.bool()?),
            other => Err(structural(other).unwrap_or(SenmlError::WrongValueType)),
        }
    }

    fn unsigned(&mut self) -> Result<u64, SenmlError> {
        match self.dec.datatype()? {
            Type::Unsigned => Ok(self.dec.u64()?),
            other => Err(structural(other).unwrap_or(SenmlError::WrongValueType)),
        }
    }

    /// `v`: an integer or a float.
    fn numeric_value(&mut self) -> Result<Value<'a>, SenmlError> {
        match self.dec.datatype()? {
            t if is_int(t) => {
                let v = self.dec.int()?;
                if let Some(v) = v.to_i64() {
                    Ok(Value::Integer(v))
                } else if let Some(v) = v.to_u64() {
                    Ok(Value::Unsigned(v))
                } else {
                    Err(SenmlError::OversizedInteger)
                }
            }
            #[cfg(feature = "float")]
            Type::F16 => Ok(Value::Float(self.half()?)),
            #[cfg(feature = "float")]
            Type::F32 | Type::F64 => Ok(Value::Float(self.float()?)),
            #[cfg(not(feature = "float"))]
            Type::F16 | Type::F32 | Type::F64 => Err(SenmlError::FloatUnsupported),
            Type::Tag => match self.dec.tag()? {
                // Positive and negative bignums (RFC 8949 §3.4.3).
                2 | 3 => Err(SenmlError::OversizedInteger),
                _ => Err(SenmlError::UnsupportedTag),
            },
            other => Err(structural(other).unwrap_or(SenmlError::WrongValueType)),
        }
    }

    /// Any number as `f64` (sums, update times).
    #[cfg(feature = "float")]
    fn number(&mut self) -> Result<f64, SenmlError> {
        match self.dec.datatype()? {
            t if is_int(t) => Ok(self.dec.int()?.to_i128() as f64),
            Type::F16 => self.half(),
            Type::F32 | Type::F64 => self.float(),
            Type::Tag => Err(SenmlError::UnsupportedTag),
            other => Err(structural(other).unwrap_or(SenmlError::WrongValueType)),
        }
    }

    /// Any number, checked and skipped (sums, update times, times without the `float` feature).
    #[cfg(not(feature = "float"))]
    fn number(&mut self) -> Result<(), SenmlError> {
        match self.dec.datatype()? {
            t if is_int(t) => self.dec.int().map(|_| ()).map_err(SenmlError::from),
            Type::F16 | Type::F32 | Type::F64 => self.skip_float(),
            Type::Tag => Err(SenmlError::UnsupportedTag),
            other => Err(structural(other).unwrap_or(SenmlError::WrongValueType)),
        }
    }

    /// Consumes a float (`f9`, `fa` or `fb` and 2, 4 or 8 bytes) without decoding it.
    #[cfg(not(feature = "float"))]
    fn skip_float(&mut self) -> Result<(), SenmlError> {
        self.dec.simple()?;
        Ok(())
    }

    /// `bt` or `t`: a number, or a decimal fraction (tag 4) `[exponent, mantissa]`.
    fn time(&mut self) -> Result<Time, SenmlError> {
        if self.dec.datatype()? != Type::Tag {
            return self.number();
        }
        if self.dec.tag()? != 4 {
            return Err(SenmlError::UnsupportedTag);
        }
        match self.dec.datatype()? {
            Type::Array => {}
            Type::ArrayIndef => return Err(SenmlError::IndefiniteLength),
            _ => return Err(SenmlError::WrongValueType),
        }
        if self.dec.array()? != 2 {
            return Err(SenmlError::WrongValueType);
        }
        let exponent = match self.dec.datatype()? {
            t if is_int(t) => self.dec.int()?,
            _ => return Err(SenmlError::WrongValueType),
        };
        let mantissa = match self.dec.datatype()? {
            t if is_int(t) => self.dec.int()?,
            Type::Tag => return Err(SenmlError::UnsupportedTag),
            _ => return Err(SenmlError::WrongValueType),
        };
        // 10^±308 bounds f64; a larger exponent is no time anyone means.
        let exponent = exponent
            .to_i64()
            .and_then(|e| i32::try_from(e).ok())
            .filter(|e| e.unsigned_abs() <= 308)
            .ok_or(SenmlError::WrongValueType)?;
        #[cfg(feature = "float")]
        {
            let mantissa = mantissa.to_i128() as f64;
            let scale = (0..exponent.unsigned_abs()).fold(1.0f64, |acc, _| acc * 10.0);
            Ok(if exponent < 0 {
                mantissa / scale
            } else {
                mantissa * scale
            })
        }
        #[cfg(not(feature = "float"))]
        {
            let _ = (exponent, mantissa);
            Ok(())
        }
    }

    /// A single- or double-precision float (`fa` or `fb`), as `f64`.
    #[cfg(feature = "float")]
    fn float(&mut self) -> Result<f64, SenmlError> {
        let single = self.dec.datatype()? == Type::F32;
        let bits = self.dec.simple()?;
        Ok(match u32::try_from(bits) {
            Ok(bits) if single => f64::from(f32::from_bits(bits)),
            _ => f64::from_bits(bits),
        })
    }

    /// A half-precision float (0xf9), decoded here so no `half` dependency is needed.
    #[cfg(feature = "float")]
    fn half(&mut self) -> Result<f64, SenmlError> {
        // Called on an `f9` head only: its argument is the two bytes of the half.
        let bits = u16::try_from(self.dec.simple()?).map_err(|_| SenmlError::WrongValueType)?;
        Ok(half_to_f64(bits))
    }

    /// Consumes the scalar value of a label this decoder ignores.
    fn skip_scalar(&mut self) -> Result<(), SenmlError> {
        match self.dec.datatype()? {
            t if is_int(t) => {
                self.dec.int()?;
            }
            #[cfg(feature = "float")]
            Type::F16 => {
                self.half()?;
            }
            #[cfg(feature = "float")]
            Type::F32 | Type::F64 => {
                self.dec.simple()?;
            }
            #[cfg(not(feature = "float"))]
            Type::F16 | Type::F32 | Type::F64 => self.skip_float()?,
            Type::Bool | Type::Null | Type::Undefined | Type::Simple => {
                self.dec.simple()?;
            }
            Type::String => {
                self.text()?;
            }
            Type::Bytes => {
                self.bytes()?;
            }
            Type::Tag => return Err(SenmlError::UnsupportedTag),
            other => return Err(structural(other).unwrap_or(SenmlError::Malformed)),
        }
        Ok(())
    }
}

impl<'a> Iterator for RawSenmlReader<'a> {
    type Item = Result<RawRecord<'a>, SenmlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let Some(remaining) = self.remaining.checked_sub(1) else {
            self.finished = true;
            let trailing = self.dec.position() != self.dec.input().len();
            return trailing.then_some(Err(SenmlError::TrailingBytes));
        };
        self.remaining = remaining;
        let record = self.record();
        if record.is_err() {
            self.finished = true;
        }
        Some(record)
    }
}

/// The labels a record may carry, as far as this decoder cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    BaseVersion,
    BaseName,
    BaseTime,
    BaseUnit,
    Name,
    Unit,
    Value,
    ValueString,
    ValueBool,
    Sum,
    Time,
    UpdateTime,
    ValueData,
    ObjLink,
    /// `bv`, `bs`, or a text label ending in `_`.
    MustUnderstand,
    Unknown,
}

impl Label {
    fn from_int(v: Int) -> Label {
        match v.to_i64().ok_or(()) {
            Ok(label::BASE_VERSION) => Label::BaseVersion,
            Ok(label::BASE_NAME) => Label::BaseName,
            Ok(label::BASE_TIME) => Label::BaseTime,
            Ok(label::BASE_UNIT) => Label::BaseUnit,
            Ok(label::BASE_VALUE | label::BASE_SUM) => Label::MustUnderstand,
            Ok(label::NAME) => Label::Name,
            Ok(label::UNIT) => Label::Unit,
            Ok(label::VALUE) => Label::Value,
            Ok(label::VALUE_STRING) => Label::ValueString,
            Ok(label::VALUE_BOOL) => Label::ValueBool,
            Ok(label::SUM) => Label::Sum,
            Ok(label::TIME) => Label::Time,
            Ok(label::UPDATE_TIME) => Label::UpdateTime,
            Ok(label::VALUE_DATA) => Label::ValueData,
            _ => Label::Unknown,
        }
    }

    fn from_text(s: &str) -> Label {
        if s == label::OBJLNK {
            Label::ObjLink
        } else if s.ends_with('_') {
            Label::MustUnderstand
        } else {
            Label::Unknown
        }
    }

    /// The bit that tracks duplicates of this label; unknown labels are not tracked.
    fn bit(self) -> Option<u16> {
        let index = match self {
            Label::BaseVersion => 0,
            Label::BaseName => 1,
            Label::BaseTime => 2,
            Label::BaseUnit => 3,
            Label::Name => 4,
            Label::Unit => 5,
            Label::Value => 6,
            Label::ValueString => 7,
            Label::ValueBool => 8,
            Label::Sum => 9,
            Label::Time => 10,
            Label::UpdateTime => 11,
            Label::ValueData => 12,
            Label::ObjLink => 13,
            Label::MustUnderstand | Label::Unknown => return None,
        };
        Some(1u16 << index)
    }
}

fn set_once<'a>(slot: &mut Option<Value<'a>>, value: Value<'a>) -> Result<(), SenmlError> {
    if slot.is_some() {
        return Err(SenmlError::MultipleValues);
    }
    *slot = Some(value);
    Ok(())
}

fn is_int(t: Type) -> bool {
    matches!(t, Type::Unsigned | Type::Negative)
}

/// The error for containers, indefinite items and malformed bytes, wherever a scalar belongs.
fn structural(t: Type) -> Option<SenmlError> {
    match t {
        Type::Array | Type::Map => Some(SenmlError::NestingTooDeep),
        Type::ArrayIndef | Type::MapIndef | Type::StringIndef | Type::BytesIndef => {
            Some(SenmlError::IndefiniteLength)
        }
        Type::Break | Type::Unknown => Some(SenmlError::Malformed),
        _ => None,
    }
}

/// IEEE 754 binary16 to f64 (exact: every half value is an f64 value).
#[cfg(feature = "float")]
fn half_to_f64(bits: u16) -> f64 {
    let negative = bits & 0x8000 != 0;
    let exponent = (bits >> 10) & 0x1f;
    let fraction = f64::from(bits & 0x3ff);
    let magnitude = match exponent {
        // Subnormal: fraction * 2^-24.
        0 => fraction * (1.0 / 16_777_216.0),
        0x1f if fraction == 0.0 => f64::INFINITY,
        0x1f => f64::NAN,
        // Normal: (1024 + fraction) * 2^(exponent - 25).
        e => {
            let scale = f64::from_bits(u64::from(e.wrapping_add(1023 - 25)).wrapping_shl(52));
            (1024.0 + fraction) * scale
        }
    };
    if negative { -magnitude } else { magnitude }
}

#[cfg(all(test, feature = "float"))]
mod tests {
    use super::half_to_f64;

    // Values from the binary16 table of RFC 8949 Appendix A.
    #[test]
    fn half_precision_table() {
        assert_eq!(half_to_f64(0x0000), 0.0);
        assert_eq!(half_to_f64(0x8000).to_bits(), (-0.0f64).to_bits());
        assert_eq!(half_to_f64(0x3c00), 1.0);
        assert_eq!(half_to_f64(0x3e00), 1.5);
        assert_eq!(half_to_f64(0x7bff), 65504.0);
        assert_eq!(half_to_f64(0x0001), 5.960464477539063e-8);
        assert_eq!(half_to_f64(0x0400), 0.00006103515625);
        assert_eq!(half_to_f64(0xc400), -4.0);
        assert_eq!(half_to_f64(0x7c00), f64::INFINITY);
        assert_eq!(half_to_f64(0xfc00), f64::NEG_INFINITY);
        assert!(half_to_f64(0x7e00).is_nan());
    }
}

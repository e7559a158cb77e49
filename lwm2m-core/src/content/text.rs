//! Plain text (Content-Format 0, LwM2M TS Core 1.1 §7.4.1): one single-instance resource as a
//! UTF-8 string. Parsing is strict: no whitespace, no `+` sign, no `inf`/`NaN`, booleans are
//! exactly `0` or `1`, objlnk is `object:instance`. Floats need the `float` feature; without it
//! a float value is [`TextError::FloatUnsupported`].

use crate::SliceWriter;
use crate::content::Value;
use core::fmt::{self, Write};

/// Why a plain-text value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextError {
    /// Nothing to parse where a number or boolean was expected.
    Empty,
    /// A character that the type's grammar does not allow (whitespace, `+`, letters, ...).
    InvalidChar,
    /// A number outside the type's range.
    Overflow,
    /// A boolean other than `0` or `1`.
    InvalidBoolean,
    /// An objlnk that is not `object:instance` with two 16-bit ids.
    InvalidObjLink,
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// Infinity or NaN: plain text cannot carry them.
    NotFinite,
    /// Opaque values have no plain-text form here (use Content-Format 42).
    Opaque,
    /// The output buffer is full.
    BufferFull,
    /// A float, in a build without the `float` feature (the device's).
    FloatUnsupported,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextError::Empty => "empty value",
            TextError::InvalidChar => "character not allowed in this value",
            TextError::Overflow => "number out of range",
            TextError::InvalidBoolean => "boolean must be 0 or 1",
            TextError::InvalidObjLink => "objlnk must be object:instance",
            TextError::InvalidUtf8 => "not UTF-8",
            TextError::NotFinite => "infinite or NaN float",
            TextError::Opaque => "opaque value has no plain-text form",
            TextError::BufferFull => "output buffer full",
            TextError::FloatUnsupported => "no float support in this build",
        })
    }
}

/// Integer (or Time): optional `-`, then decimal digits.
pub fn parse_integer(text: &[u8]) -> Result<i64, TextError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(TextError::Empty);
    }
    digits.iter().try_fold(0i64, |acc, &b| {
        let d = i64::from(digit(b)?);
        let acc = acc.checked_mul(10).ok_or(TextError::Overflow)?;
        // Accumulate on the negative side so i64::MIN parses.
        if negative {
            acc.checked_sub(d)
        } else {
            acc.checked_add(d)
        }
        .ok_or(TextError::Overflow)
    })
}

/// Unsigned Integer: decimal digits only.
pub fn parse_unsigned(text: &[u8]) -> Result<u64, TextError> {
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let d = u64::from(digit(b)?);
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(d))
            .ok_or(TextError::Overflow)
    })
}

/// Float: `-? digits ( . digits )? ( [eE] [+-]? digits )?`; finite only.
#[cfg(feature = "float")]
pub fn parse_float(text: &[u8]) -> Result<f64, TextError> {
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    if !is_float_syntax(text) {
        return Err(TextError::InvalidChar);
    }
    let s = core::str::from_utf8(text).map_err(|_| TextError::InvalidChar)?;
    let v: f64 = s.parse().map_err(|_| TextError::InvalidChar)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(TextError::Overflow)
    }
}

/// Boolean: `0` or `1`.
pub fn parse_bool(text: &[u8]) -> Result<bool, TextError> {
    match text {
        b"0" => Ok(false),
        b"1" => Ok(true),
        [] => Err(TextError::Empty),
        _ => Err(TextError::InvalidBoolean),
    }
}

/// String: the payload as UTF-8.
pub fn parse_string(text: &[u8]) -> Result<&str, TextError> {
    core::str::from_utf8(text).map_err(|_| TextError::InvalidUtf8)
}

/// Objlnk: `object:instance`, each a decimal 16-bit id.
pub fn parse_objlnk(text: &[u8]) -> Result<(u16, u16), TextError> {
    let colon = text
        .iter()
        .position(|&b| b == b':')
        .ok_or(TextError::InvalidObjLink)?;
    let (object, instance) = text
        .split_at_checked(colon)
        .ok_or(TextError::InvalidObjLink)?;
    let instance = instance.get(1..).ok_or(TextError::InvalidObjLink)?;
    let id = |part: &[u8]| {
        parse_unsigned(part)
            .ok()
            .and_then(|v| u16::try_from(v).ok())
            .ok_or(TextError::InvalidObjLink)
    };
    Ok((id(object)?, id(instance)?))
}

/// Writes `value` in plain text.
pub fn write_value<W: Write>(out: &mut W, value: &Value<'_>) -> Result<(), TextError> {
    let full = |_| TextError::BufferFull;
    match *value {
        Value::Integer(v) => write!(out, "{v}").map_err(full),
        Value::Unsigned(v) => write!(out, "{v}").map_err(full),
        #[cfg(feature = "float")]
        Value::Float(v) => write_float(out, v),
        #[cfg(not(feature = "float"))]
        Value::Float(_) => Err(TextError::FloatUnsupported),
        Value::Boolean(v) => out.write_str(if v { "1" } else { "0" }).map_err(full),
        Value::String(s) => out.write_str(s).map_err(full),
        Value::ObjLink(o, i) => write!(out, "{o}:{i}").map_err(full),
        Value::Opaque(_) => Err(TextError::Opaque),
    }
}

/// Writes `value` in plain text into `buf`; returns the length.
pub fn encode_value(buf: &mut [u8], value: &Value<'_>) -> Result<usize, TextError> {
    let mut w = SliceWriter::new(buf);
    write_value(&mut w, value)?;
    Ok(w.len())
}

/// Writes a float so that [`parse_float`] gives back the same `f64`: shortest round-trip digits,
/// with an exponent only for very large or very small magnitudes.
#[cfg(feature = "float")]
pub fn write_float<W: Write>(out: &mut W, v: f64) -> Result<(), TextError> {
    if !v.is_finite() {
        return Err(TextError::NotFinite);
    }
    let magnitude = v.abs();
    let res = if magnitude != 0.0 && !(1e-5..1e16).contains(&magnitude) {
        write!(out, "{v:e}")
    } else {
        write!(out, "{v}")
    };
    res.map_err(|_| TextError::BufferFull)
}

fn digit(b: u8) -> Result<u8, TextError> {
    match b {
        b'0'..=b'9' => Ok(b.wrapping_sub(b'0')),
        _ => Err(TextError::InvalidChar),
    }
}

#[cfg(feature = "float")]
fn is_float_syntax(text: &[u8]) -> bool {
    let mut rest = text;
    let skip_digits = |s: &[u8]| -> Option<usize> {
        let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
        (n > 0).then_some(n)
    };
    if let Some(after) = rest.strip_prefix(b"-") {
        rest = after;
    }
    let Some(n) = skip_digits(rest) else {
        return false;
    };
    rest = rest.get(n..).unwrap_or(&[]);
    if let Some(after) = rest.strip_prefix(b".") {
        let Some(n) = skip_digits(after) else {
            return false;
        };
        rest = after.get(n..).unwrap_or(&[]);
    }
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let after = match after.split_first() {
            Some((b'+' | b'-', signed)) => signed,
            _ => after,
        };
        let Some(n) = skip_digits(after) else {
            return false;
        };
        rest = after.get(n..).unwrap_or(&[]);
    }
    rest.is_empty()
}

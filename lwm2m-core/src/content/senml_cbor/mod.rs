//! SenML-CBOR (Content-Format 112): RFC 8428 records with integer labels, as LwM2M TS Core 1.1
//! §7.4.5 uses them. The base name and name concatenate to the record's path (`"/5/0/"` + `"3"`),
//! the base name persists across records, and an objlnk value uses the text label `"vlo"`.
//!
//! Indefinite-length items are refused everywhere. RFC 8428 §6 requires a definite-length array
//! for SenML that is not streamed (LwM2M payloads are SenML, not SenSML); the LwM2M encoders we
//! interoperate with (Anjay, Leshan, Zephyr) write definite lengths; and an indefinite string is a
//! list of chunks that cannot be handed out as one borrowed `&str` without copying it together.
//!
//! Records are flat maps of scalars, so a value that is itself an array or map is refused as
//! nesting too deep. The one exception is a time (`bt`, `t`) written as a decimal fraction
//! (tag 4, `[exponent, mantissa]`), which Leshan uses for timestamps.

mod decode;
mod encode;

pub use decode::{RawRecord, RawSenmlReader, Record, SenmlReader};
pub use encode::{SenmlWriter, encode_multiple_resource, encode_single};

use crate::PathError;
use core::fmt;

/// SenML-CBOR labels (RFC 8428 Table 6) and the LwM2M objlnk label.
pub mod label {
    /// `bver`
    pub const BASE_VERSION: i64 = -1;
    /// `bn`
    pub const BASE_NAME: i64 = -2;
    /// `bt`
    pub const BASE_TIME: i64 = -3;
    /// `bu`
    pub const BASE_UNIT: i64 = -4;
    /// `bv`
    pub const BASE_VALUE: i64 = -5;
    /// `bs`
    pub const BASE_SUM: i64 = -6;
    /// `n`
    pub const NAME: i64 = 0;
    /// `u`
    pub const UNIT: i64 = 1;
    /// `v`
    pub const VALUE: i64 = 2;
    /// `vs`
    pub const VALUE_STRING: i64 = 3;
    /// `vb`
    pub const VALUE_BOOL: i64 = 4;
    /// `s`
    pub const SUM: i64 = 5;
    /// `t`
    pub const TIME: i64 = 6;
    /// `ut`
    pub const UPDATE_TIME: i64 = 7;
    /// `vd`
    pub const VALUE_DATA: i64 = 8;
    /// `vlo`: LwM2M objlnk value, `"object:instance"`.
    pub const OBJLNK: &str = "vlo";
}

/// Highest SenML version (`bver`) this decoder understands (RFC 8428's default).
pub const SENML_VERSION: u64 = 10;

/// Why SenML-CBOR was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenmlError {
    /// The input ends inside an item.
    Truncated,
    /// The payload is not a CBOR array.
    NotAnArray,
    /// A record is not a CBOR map.
    RecordNotAMap,
    /// An indefinite-length array, map or string.
    IndefiniteLength,
    /// A label appears twice in one record.
    DuplicateLabel,
    /// A map key that is neither an integer nor a text string.
    InvalidLabelType,
    /// A label this decoder must understand but does not (`bv`, `bs`, a text label ending in
    /// `_`): ignoring it would misread the values.
    UnsupportedLabel,
    /// More than one of `v`, `vs`, `vb`, `vd`, `vlo` in one record.
    MultipleValues,
    /// A value of the wrong CBOR type for its label (text for `v`, an integer for `vb`, ...).
    WrongValueType,
    /// A byte string (or another type) where a text string is expected (`bn`, `n`, `vs`, `vlo`).
    ExpectedText,
    /// Something other than a byte string for `vd`.
    ExpectedBytes,
    /// A text string that is not UTF-8.
    InvalidUtf8,
    /// Base name + name is not an LwM2M path.
    InvalidName(PathError),
    /// An integer outside `i64::MIN..=u64::MAX` (including CBOR bignums).
    OversizedInteger,
    /// An array or map where a record holds scalars.
    NestingTooDeep,
    /// A CBOR tag other than a decimal-fraction time.
    UnsupportedTag,
    /// `bver` above [`SENML_VERSION`].
    UnsupportedVersion,
    /// A `vlo` value that is not `object:instance`.
    InvalidObjLink,
    /// Bytes after the array.
    TrailingBytes,
    /// Not well-formed CBOR (reserved additional information, a stray break, ...).
    Malformed,
    /// The output buffer is full.
    BufferFull,
    /// A float value, in a build without the `float` feature (the device's).
    FloatUnsupported,
}

impl fmt::Display for SenmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenmlError::Truncated => f.write_str("SenML-CBOR truncated"),
            SenmlError::NotAnArray => f.write_str("SenML-CBOR payload is not an array"),
            SenmlError::RecordNotAMap => f.write_str("SenML record is not a map"),
            SenmlError::IndefiniteLength => f.write_str("indefinite-length CBOR item"),
            SenmlError::DuplicateLabel => f.write_str("duplicate label in a SenML record"),
            SenmlError::InvalidLabelType => f.write_str("SenML label neither integer nor text"),
            SenmlError::UnsupportedLabel => f.write_str("unsupported must-understand label"),
            SenmlError::MultipleValues => f.write_str("more than one value in a SenML record"),
            SenmlError::WrongValueType => f.write_str("value of the wrong type for its label"),
            SenmlError::ExpectedText => f.write_str("expected a text string"),
            SenmlError::ExpectedBytes => f.write_str("expected a byte string"),
            SenmlError::InvalidUtf8 => f.write_str("text string is not UTF-8"),
            SenmlError::InvalidName(e) => write!(f, "SenML name is not an LwM2M path: {e}"),
            SenmlError::OversizedInteger => f.write_str("integer out of range"),
            SenmlError::NestingTooDeep => f.write_str("array or map inside a SenML record"),
            SenmlError::UnsupportedTag => f.write_str("unsupported CBOR tag"),
            SenmlError::UnsupportedVersion => f.write_str("unsupported SenML version"),
            SenmlError::InvalidObjLink => f.write_str("objlnk is not object:instance"),
            SenmlError::TrailingBytes => f.write_str("bytes after the SenML array"),
            SenmlError::Malformed => f.write_str("malformed CBOR"),
            SenmlError::BufferFull => f.write_str("output buffer full"),
            SenmlError::FloatUnsupported => f.write_str("no float support in this build"),
        }
    }
}

impl From<cbor_read::Error> for SenmlError {
    fn from(e: cbor_read::Error) -> Self {
        match e {
            cbor_read::Error::Truncated => SenmlError::Truncated,
            cbor_read::Error::Indefinite => SenmlError::IndefiniteLength,
            _ => SenmlError::Malformed,
        }
    }
}

impl From<minicbor::decode::Error> for SenmlError {
    fn from(e: minicbor::decode::Error) -> Self {
        if e.is_end_of_input() {
            SenmlError::Truncated
        } else {
            SenmlError::Malformed
        }
    }
}

impl<E> From<minicbor::encode::Error<E>> for SenmlError {
    fn from(_: minicbor::encode::Error<E>) -> Self {
        SenmlError::BufferFull
    }
}

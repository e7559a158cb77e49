//! OMA LwM2M TLV (Content-Format 11542, LwM2M TS Core 1.1 §7.4.3): the compact binary format of
//! object instances and multiple-instance resources.
//!
//! Each entry is a type byte, an 8- or 16-bit id, an optional 8/16/24-bit length and the value:
//!
//! ```text
//! type byte: 7-6 kind (00 object instance, 01 resource instance, 10 multiple resource,
//!                      11 resource with value)
//!            5   id length (0: 8 bits, 1: 16 bits)
//!            4-3 length field (00: none, length in bits 2-0; 01: 8 bits; 10: 16; 11: 24)
//!            2-0 length of the value when bits 4-3 are 00
//! ```
//!
//! An object instance holds resources and multiple resources; a multiple resource holds resource
//! instances. Nothing nests deeper, and the reader and writer enforce that.

mod reader;
mod value;
mod writer;

pub use reader::{Tlv, TlvReader};
pub use value::{
    Scalar, decode_bool, decode_integer, decode_objlnk, decode_string, decode_unsigned,
    encode_bool, encode_integer, encode_objlnk, encode_unsigned,
};
#[cfg(feature = "float")]
pub use value::{decode_float, encode_float};
pub use writer::TlvWriter;

use core::fmt;

/// What a TLV entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlvKind {
    /// 0b00: an object instance; its value is more TLV.
    ObjectInstance,
    /// 0b01: one instance of a multiple resource.
    ResourceInstance,
    /// 0b10: a multiple resource; its value is resource instances.
    MultipleResource,
    /// 0b11: a single resource with its value.
    Resource,
}

impl TlvKind {
    const fn bits(self) -> u8 {
        match self {
            TlvKind::ObjectInstance => 0b00,
            TlvKind::ResourceInstance => 0b01,
            TlvKind::MultipleResource => 0b10,
            TlvKind::Resource => 0b11,
        }
    }

    const fn from_type_byte(b: u8) -> TlvKind {
        match b >> 6 {
            0b00 => TlvKind::ObjectInstance,
            0b01 => TlvKind::ResourceInstance,
            0b10 => TlvKind::MultipleResource,
            _ => TlvKind::Resource,
        }
    }
}

/// Why TLV was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlvError {
    /// The input ends inside a type byte, id or length field.
    Truncated,
    /// The length field points past the end of the input.
    LengthPastEnd,
    /// Id 65535, which LwM2M reserves.
    ReservedId,
    /// A container inside a container that cannot hold it (object instance in an object
    /// instance, anything but resource instances in a multiple resource).
    NestingTooDeep,
    /// A leaf in the wrong place (resource instance directly in an object instance, resource in a
    /// multiple resource).
    UnexpectedKind,
    /// `children()` on an entry that holds a value, not TLV.
    NotAContainer,
    /// A value of a length its type does not allow (integer of 3 bytes, boolean of 2, ...).
    WrongLength,
    /// A boolean byte other than 0 or 1.
    InvalidBoolean,
    /// A string value that is not UTF-8.
    InvalidUtf8,
    /// The output buffer is full.
    BufferFull,
    /// A value longer than the 24-bit length field allows.
    ValueTooLong,
    /// A float, in a build without the `float` feature (the device's).
    FloatUnsupported,
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlvError::Truncated => "TLV header truncated",
            TlvError::LengthPastEnd => "TLV length past the end of the input",
            TlvError::ReservedId => "TLV id 65535 is reserved",
            TlvError::NestingTooDeep => "TLV nested too deep",
            TlvError::UnexpectedKind => "TLV entry of a kind not allowed here",
            TlvError::NotAContainer => "TLV entry holds a value, not TLV",
            TlvError::WrongLength => "TLV value has the wrong length for its type",
            TlvError::InvalidBoolean => "TLV boolean is neither 0 nor 1",
            TlvError::InvalidUtf8 => "TLV string is not UTF-8",
            TlvError::BufferFull => "output buffer full",
            TlvError::ValueTooLong => "value longer than 2^24 - 1 bytes",
            TlvError::FloatUnsupported => "no float support in this build",
        })
    }
}

/// Which kinds may appear at one nesting level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// A payload: any kind.
    Top,
    /// Inside an object instance: resources and multiple resources.
    ObjectInstance,
    /// Inside a multiple resource: resource instances.
    MultipleResource,
}

impl Level {
    fn admit(self, kind: TlvKind) -> Result<(), TlvError> {
        use TlvKind as K;
        match (self, kind) {
            (Level::Top, _)
            | (Level::ObjectInstance, K::Resource | K::MultipleResource)
            | (Level::MultipleResource, K::ResourceInstance) => Ok(()),
            (Level::ObjectInstance, K::ResourceInstance)
            | (Level::MultipleResource, K::Resource) => Err(TlvError::UnexpectedKind),
            (Level::ObjectInstance, K::ObjectInstance)
            | (Level::MultipleResource, K::ObjectInstance | K::MultipleResource) => {
                Err(TlvError::NestingTooDeep)
            }
        }
    }

    fn inside(kind: TlvKind) -> Option<Level> {
        match kind {
            TlvKind::ObjectInstance => Some(Level::ObjectInstance),
            TlvKind::MultipleResource => Some(Level::MultipleResource),
            TlvKind::Resource | TlvKind::ResourceInstance => None,
        }
    }
}

/// Longest value a 24-bit length field can describe.
const MAX_VALUE_LEN: usize = 0xFF_FFFF;
/// Longest header: type byte, 16-bit id, 24-bit length.
const MAX_HEADER_LEN: usize = 6;

/// The header of one entry: bytes and how many of them are used.
fn header(kind: TlvKind, id: u16, len: usize) -> Result<([u8; MAX_HEADER_LEN], usize), TlvError> {
    if id == u16::MAX {
        return Err(TlvError::ReservedId);
    }
    if len > MAX_VALUE_LEN {
        return Err(TlvError::ValueTooLong);
    }
    let mut out = [0u8; MAX_HEADER_LEN];
    let mut n = 0usize;
    let mut push = |b: u8| {
        if let Some(slot) = out.get_mut(n) {
            *slot = b;
            n = n.saturating_add(1);
        }
    };
    let [_, l2, l1, l0] = (len as u32).to_be_bytes();
    let (length_bits, length_bytes): (u8, &[u8]) = match len {
        0..=7 => (l0, &[]),
        8..=0xFF => (0b01 << 3, &[l0]),
        0x100..=0xFFFF => (0b10 << 3, &[l1, l0]),
        _ => (0b11 << 3, &[l2, l1, l0]),
    };
    let [id_hi, id_lo] = id.to_be_bytes();
    let wide_id = if id > 0xFF { 0x20 } else { 0 };
    push((kind.bits() << 6) | wide_id | length_bits);
    if id > 0xFF {
        push(id_hi);
    }
    push(id_lo);
    for &b in length_bytes {
        push(b);
    }
    Ok((out, n))
}

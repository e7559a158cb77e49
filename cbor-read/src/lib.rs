//! cbor-read: the device's CBOR reader (RFC 8949), shared by the SUIT decoder (suit-manifest) and
//! the SenML-CBOR decoder (lwm2m-core), so that one small reader is linked into the firmware.
//!
//! `no_std`, no allocation, and no panic on any input: every read is bounds-checked through `get`
//! and checked arithmetic. Items are read in place (strings borrow from the input). Only what the
//! device needs is here: definite lengths (an indefinite head is [`Error::Indefinite`]), heads of
//! every major type, and a bounded skip. What each caller refuses beyond that (duplicate keys,
//! labels, types in a position) stays with the caller, which maps [`Error`] to its own errors.
//!
//! [`Decoder::datatype`] classifies the next item as minicbor's does (the host's encoders and the
//! server keep minicbor), and the tests check every reader against minicbor's on every head byte.
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![warn(missing_docs)]

/// Why a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The input ends inside the item (or a length points past the input's end).
    Truncated,
    /// The item is not of the type asked for.
    WrongType,
    /// An indefinite-length head (additional information 31), which this reader refuses.
    Indefinite,
    /// Not well-formed: reserved additional information (28-30), or a break or an indefinite
    /// head where an item belongs.
    Malformed,
    /// A text string that is not UTF-8.
    InvalidUtf8,
    /// Nesting deeper than the limit given to [`Decoder::skip`].
    TooDeep,
}

/// The next item's type, told from its first byte (minicbor's classification, with the integer
/// widths folded into [`Type::Unsigned`] and [`Type::Negative`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Major type 0.
    Unsigned,
    /// Major type 1 (-1 - argument).
    Negative,
    /// A definite byte string.
    Bytes,
    /// An indefinite byte string.
    BytesIndef,
    /// A definite text string.
    String,
    /// An indefinite text string.
    StringIndef,
    /// A definite array.
    Array,
    /// An indefinite array.
    ArrayIndef,
    /// A definite map.
    Map,
    /// An indefinite map.
    MapIndef,
    /// A tag.
    Tag,
    /// `false` or `true`.
    Bool,
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// Another simple value (`0xe0..=0xf3`, `0xf8`).
    Simple,
    /// A half-precision float.
    F16,
    /// A single-precision float.
    F32,
    /// A double-precision float.
    F64,
    /// The break stop code.
    Break,
    /// Reserved additional information, or an indefinite head of a major type that has none.
    Unknown,
}

/// An integer of major type 0 or 1: its sign and its argument (the value is `-1 - arg` when
/// negative), so that the full range (-2^64..2^64) fits without `i128` arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int {
    negative: bool,
    arg: u64,
}

impl Int {
    /// Whether the value is below zero.
    pub fn is_negative(self) -> bool {
        self.negative
    }

    /// The value, if it fits an `i64`.
    pub fn to_i64(self) -> Option<i64> {
        let v = i64::try_from(self.arg).ok()?;
        if self.negative {
            (-1i64).checked_sub(v)
        } else {
            Some(v)
        }
    }

    /// The value, if it is not negative.
    pub fn to_u64(self) -> Option<u64> {
        (!self.negative).then_some(self.arg)
    }

    /// The value, always exact.
    pub fn to_i128(self) -> i128 {
        let v = i128::from(self.arg);
        if self.negative {
            (-1i128).wrapping_sub(v)
        } else {
            v
        }
    }
}

/// A reader over a byte slice. Every method either consumes one whole item (or head) and
/// returns it, or fails; after a failure the position is unspecified.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Starts reading at the first byte of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Decoder { input, pos: 0 }
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// The offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next byte, not consumed.
    fn current(&self) -> Result<u8, Error> {
        self.input.get(self.pos).copied().ok_or(Error::Truncated)
    }

    /// The next item's type, without consuming anything. A negative integer whose argument
    /// follows the head needs that argument's first byte (as minicbor's `datatype`).
    pub fn datatype(&self) -> Result<Type, Error> {
        let b = self.current()?;
        let info = b & 0x1f;
        let t = match (b >> 5, info) {
            (_, 28..=30) => Type::Unknown,
            (7, 31) => Type::Break,
            (_, 31) => match b >> 5 {
                2 => Type::BytesIndef,
                3 => Type::StringIndef,
                4 => Type::ArrayIndef,
                5 => Type::MapIndef,
                _ => Type::Unknown,
            },
            (0, _) => Type::Unsigned,
            (1, _) => {
                if info >= 24 && self.input.get(self.pos.wrapping_add(1)).is_none() {
                    return Err(Error::Truncated);
                }
                Type::Negative
            }
            (2, _) => Type::Bytes,
            (3, _) => Type::String,
            (4, _) => Type::Array,
            (5, _) => Type::Map,
            (6, _) => Type::Tag,
            (_, 20 | 21) => Type::Bool,
            (_, 22) => Type::Null,
            (_, 23) => Type::Undefined,
            (_, 25) => Type::F16,
            (_, 26) => Type::F32,
            (_, 27) => Type::F64,
            _ => Type::Simple,
        };
        Ok(t)
    }

    /// Reads the head of an item of major type `major` and returns its argument: the value, the
    /// length, the count or the tag number.
    ///
    /// What the head is not is told in [`Decoder::datatype`]'s terms, so that a caller needs no
    /// look first: an indefinite string, array or map is [`Error::Indefinite`], a break or a
    /// reserved head [`Error::Malformed`], and only a well-formed head of another major type
    /// [`Error::WrongType`].
    fn head(&mut self, major: u8) -> Result<u64, Error> {
        let b = self.current()?;
        let info = b & 0x1f;
        let len: usize = match info {
            0..=23 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 if (0x40..0xc0).contains(&b) => return Err(Error::Indefinite),
            _ => return Err(Error::Malformed),
        };
        if b >> 5 != major {
            return Err(Error::WrongType);
        }
        // `current` succeeded, so `pos < input.len()` and `pos + 1` cannot overflow.
        let start = self.pos.wrapping_add(1);
        let end = start.checked_add(len).ok_or(Error::Truncated)?;
        let arg = match self.input.get(start..end) {
            Some([]) => u64::from(info),
            Some(bytes) => bytes
                .iter()
                .fold(0u64, |acc, &b| acc.wrapping_shl(8) | u64::from(b)),
            None => return Err(Error::Truncated),
        };
        self.pos = end;
        Ok(arg)
    }

    /// The next `len` bytes.
    fn take(&mut self, len: u64) -> Result<&'a [u8], Error> {
        let len = usize::try_from(len).map_err(|_| Error::Truncated)?;
        let end = self.pos.checked_add(len).ok_or(Error::Truncated)?;
        let bytes = self.input.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// An unsigned integer (major type 0).
    pub fn u64(&mut self) -> Result<u64, Error> {
        self.head(0)
    }

    /// An integer of either sign (major type 0 or 1).
    pub fn int(&mut self) -> Result<Int, Error> {
        // Any other major type is refused by `head`, as not unsigned.
        let major = u8::from(self.current()? >> 5 == 1);
        let arg = self.head(major)?;
        Ok(Int {
            negative: major == 1,
            arg,
        })
    }

    /// A definite byte string, borrowed.
    pub fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = self.head(2)?;
        self.take(len)
    }

    /// A definite text string, borrowed and checked to be UTF-8.
    pub fn str(&mut self) -> Result<&'a str, Error> {
        let len = self.head(3)?;
        core::str::from_utf8(self.take(len)?).map_err(|_| Error::InvalidUtf8)
    }

    /// The head of a definite array: its number of items.
    pub fn array(&mut self) -> Result<u64, Error> {
        self.head(4)
    }

    /// The head of a definite map: its number of pairs.
    pub fn map(&mut self) -> Result<u64, Error> {
        self.head(5)
    }

    /// A tag's number (the tagged item follows).
    pub fn tag(&mut self) -> Result<u64, Error> {
        self.head(6)
    }

    /// Any item of major type 7 but a break: a simple value's number, or a float's bits.
    pub fn simple(&mut self) -> Result<u64, Error> {
        self.head(7)
    }

    /// `false` or `true`.
    pub fn bool(&mut self) -> Result<bool, Error> {
        let value = match self.current()? {
            0xf4 => false,
            0xf5 => true,
            _ => return Err(Error::WrongType),
        };
        self.simple()?;
        Ok(value)
    }

    /// `null`.
    pub fn null(&mut self) -> Result<(), Error> {
        match self.current()? {
            0xf6 => self.simple().map(|_| ()),
            _ => Err(Error::WrongType),
        }
    }

    /// Skips one item of any type, nested at most `max_depth` deep (a scalar is depth 1, an
    /// array of scalars 2; a tag counts as a level): indefinite items are [`Error::Indefinite`],
    /// a text string is checked to be UTF-8.
    pub fn skip(&mut self, max_depth: usize) -> Result<(), Error> {
        let inner = max_depth.checked_sub(1).ok_or(Error::TooDeep)?;
        match self.datatype()? {
            Type::Array => {
                // Each item takes at least one byte, so a huge count ends at the input's end.
                for _ in 0..self.array()? {
                    self.skip(inner)?;
                }
            }
            Type::Map => {
                for _ in 0..self.map()? {
                    self.skip(inner)?;
                    self.skip(inner)?;
                }
            }
            Type::Tag => {
                self.tag()?;
                self.skip(inner)?;
            }
            Type::Unsigned | Type::Negative => {
                self.int()?;
            }
            Type::Bytes => {
                self.bytes()?;
            }
            Type::String => {
                self.str()?;
            }
            Type::BytesIndef | Type::StringIndef | Type::ArrayIndef | Type::MapIndef => {
                return Err(Error::Indefinite);
            }
            Type::Break | Type::Unknown => return Err(Error::Malformed),
            Type::Bool
            | Type::Null
            | Type::Undefined
            | Type::Simple
            | Type::F16
            | Type::F32
            | Type::F64 => {
                self.simple()?;
            }
        }
        Ok(())
    }
}

//! detools' size varint (`pack_size` in its `bsdiff.c`): the first byte holds 6 value bits, bit
//! 0x40 is the sign and 0x80 means "more"; each later byte holds 7 more bits (least significant
//! first) and 0x80 for "more". Sign and magnitude, so -0 exists and reads as 0.

use crate::error::PatchError;

/// The largest shift at which 7 more bits still fit in 63: 6 + 7 × 7.
const MAX_SHIFT: u8 = 55;

/// Reads one varint a byte at a time (the patch arrives in blocks that may split it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VarintReader {
    magnitude: u64,
    /// Bits read so far; 0 before the first byte.
    shift: u8,
    negative: bool,
}

impl VarintReader {
    pub const fn new() -> Self {
        Self {
            magnitude: 0,
            shift: 0,
            negative: false,
        }
    }

    /// Takes the next byte; the value once its last byte is in (and the reader starts over).
    pub fn push(&mut self, byte: u8) -> Result<Option<i64>, PatchError> {
        if self.shift == 0 {
            self.negative = byte & 0x40 != 0;
            self.magnitude = u64::from(byte & 0x3f);
            self.shift = 6;
        } else {
            if self.shift > MAX_SHIFT {
                return Err(PatchError::SizeOverflow);
            }
            self.magnitude |= u64::from(byte & 0x7f) << self.shift;
            self.shift = self.shift.saturating_add(7);
        }
        if byte & 0x80 != 0 {
            return Ok(None);
        }
        // At most 62 bits were read, so the magnitude fits in an i64.
        let magnitude = i64::try_from(self.magnitude).map_err(|_| PatchError::SizeOverflow)?;
        let value = if self.negative {
            magnitude.wrapping_neg()
        } else {
            magnitude
        };
        *self = Self::new();
        Ok(Some(value))
    }
}

/// Appends the varint of `value`.
#[cfg(feature = "std")]
pub fn encode(value: i64, out: &mut Vec<u8>) {
    let mut magnitude = value.unsigned_abs();
    let mut byte = (magnitude & 0x3f) as u8 | if value < 0 { 0x40 } else { 0 };
    magnitude >>= 6;
    while magnitude != 0 {
        out.push(byte | 0x80);
        byte = (magnitude & 0x7f) as u8;
        magnitude >>= 7;
    }
    out.push(byte);
}

// The tests use the encoder (feature `std`).
#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Option<i64>, PatchError> {
        let mut r = VarintReader::new();
        let mut last = Ok(None);
        for &b in bytes {
            last = r.push(b);
            if last.is_err() {
                break;
            }
        }
        last
    }

    /// The encodings printed by detools 0.53's `bsdiff.pack_size`.
    const DETOOLS: &[(i64, &[u8])] = &[
        (0, &[0x00]),
        (1, &[0x01]),
        (63, &[0x3f]),
        (64, &[0x80, 0x01]),
        (-1, &[0x41]),
        (-64, &[0xc0, 0x01]),
        (8191, &[0xbf, 0x7f]),
        (1 << 31, &[0x80, 0x80, 0x80, 0x80, 0x10]),
        (-(1 << 40), &[0xc0, 0x80, 0x80, 0x80, 0x80, 0x40]),
    ];

    #[test]
    fn reads_detools_encodings() {
        for &(value, bytes) in DETOOLS {
            assert_eq!(read(bytes), Ok(Some(value)), "{bytes:02x?}");
        }
    }

    #[test]
    fn encodes_as_detools() {
        for &(value, bytes) in DETOOLS {
            let mut out = Vec::new();
            encode(value, &mut out);
            assert_eq!(out, bytes, "{value}");
        }
    }

    #[test]
    fn extremes_round_trip_and_overlong_is_an_error() {
        for value in [(1 << 62) - 1, -((1 << 62) - 1), 0x7f_ffff_ffff] {
            let mut out = Vec::new();
            encode(value, &mut out);
            assert_eq!(read(&out), Ok(Some(value)));
        }
        assert_eq!(read(&[0x80; 11]), Err(PatchError::SizeOverflow));
        // A value not yet complete is no value.
        assert_eq!(read(&[0x80, 0x80]), Ok(None));
    }
}

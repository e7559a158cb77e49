//! The patch's first byte (`p1 u3 type u4 compression`, detools `common.py`) and the heatshrink
//! parameter byte that starts a heatshrink body (`u4 window-4, u4 lookahead-3`).

use crate::error::PatchError;
use crate::heatshrink::MAX_WINDOW_BITS;

/// detools' patch type number of a sequential patch.
pub const PATCH_TYPE_SEQUENTIAL: u8 = 0;
/// detools' compression numbers that this crate speaks.
pub const COMPRESSION_NONE: u8 = 0;
pub const COMPRESSION_HEATSHRINK: u8 = 4;

/// How the patch body is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Heatshrink(HeatshrinkParams),
}

impl Compression {
    /// detools' own default for heatshrink: window 2^8, lookahead 2^7.
    pub const HEATSHRINK: Self = Self::Heatshrink(HeatshrinkParams {
        window_bits: 8,
        lookahead_bits: 7,
    });

    /// The number in the header's low nibble.
    pub const fn number(self) -> u8 {
        match self {
            Self::None => COMPRESSION_NONE,
            Self::Heatshrink(_) => COMPRESSION_HEATSHRINK,
        }
    }

    /// detools' name (`--compression NAME`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Heatshrink(_) => "heatshrink",
        }
    }
}

/// The header byte of a sequential patch.
pub const fn header_byte(compression: Compression) -> u8 {
    (PATCH_TYPE_SEQUENTIAL << 4) | compression.number()
}

/// The compression number of a header byte, if it starts a sequential patch. Bit 7 is padding,
/// which detools ignores too.
pub fn parse_header(byte: u8) -> Result<u8, PatchError> {
    let patch_type = (byte >> 4) & 0x7;
    if patch_type != PATCH_TYPE_SEQUENTIAL {
        return Err(PatchError::PatchType(patch_type));
    }
    match byte & 0x0f {
        c @ (COMPRESSION_NONE | COMPRESSION_HEATSHRINK) => Ok(c),
        c => Err(PatchError::Compression(c)),
    }
}

/// heatshrink's window and lookahead, as powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeatshrinkParams {
    pub window_bits: u8,
    pub lookahead_bits: u8,
}

impl HeatshrinkParams {
    /// Parses the parameter byte and checks what this device can decode: heatshrink's own
    /// rules (window 2^4.., lookahead 2^3 up to below the window), and a window of at most
    /// 2^[`MAX_WINDOW_BITS`] bytes.
    pub fn from_byte(byte: u8) -> Result<Self, PatchError> {
        let params = Self {
            window_bits: (byte >> 4).saturating_add(4),
            lookahead_bits: (byte & 0x0f).saturating_add(3),
        };
        params.check()?;
        Ok(params)
    }

    /// The parameter byte.
    pub const fn to_byte(self) -> u8 {
        (self.window_bits.wrapping_sub(4) << 4) | (self.lookahead_bits.wrapping_sub(3) & 0x0f)
    }

    /// Whether this device can decode (and so this crate will encode) these parameters.
    pub fn check(self) -> Result<(), PatchError> {
        if (4..=MAX_WINDOW_BITS).contains(&self.window_bits)
            && self.lookahead_bits >= 3
            && self.lookahead_bits < self.window_bits
        {
            Ok(())
        } else {
            Err(PatchError::HeatshrinkParams {
                window_bits: self.window_bits,
                lookahead_bits: self.lookahead_bits,
            })
        }
    }
}

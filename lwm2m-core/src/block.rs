//! RFC 7959 Block1/Block2 option values (NUM, M, SZX) and the CoAP uint options around them
//! (Size1, Size2), so the pushing server, the pulling device and the image host do the same
//! block arithmetic.
//!
//! The option value is a 0-3 byte big-endian uint: `NUM << 4 | M << 3 | SZX`. The block size is
//! `16 << SZX`. SZX 7 is reserved for BERT (RFC 8323), which only exists on reliable transports;
//! on UDP it is an error.

use core::fmt;

/// Largest block number a 3-byte option can carry (2^20 - 1).
pub const MAX_NUM: u32 = (1 << 20) - 1;
/// Largest valid SZX over UDP (1024-byte blocks).
pub const MAX_SZX: u8 = 6;
/// SZX value RFC 8323 reserves for BERT.
pub const BERT_SZX: u8 = 7;

/// Why a block option or uint option was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockError {
    /// The option value is longer than the option allows (3 bytes for Block, 4 for Size).
    TooLong,
    /// SZX 7 (BERT) is not allowed on UDP.
    Bert,
    /// SZX above 7 (only reachable through the constructor).
    InvalidSzx,
    /// NUM does not fit in 20 bits.
    NumTooLarge,
    /// A block size that is not a power of two between 16 and 1024.
    InvalidSize,
    /// An offset that is not a multiple of the block size.
    Misaligned,
    /// The option appears more than once in one message (RFC 7959 §2.2 allows one of each).
    Repeated,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockError::TooLong => "option value too long",
            BlockError::Bert => "BERT block size (SZX 7) not allowed over UDP",
            BlockError::InvalidSzx => "SZX out of range",
            BlockError::NumTooLarge => "block number larger than 2^20 - 1",
            BlockError::InvalidSize => "block size not a power of two in 16..=1024",
            BlockError::Misaligned => "offset not a multiple of the block size",
            BlockError::Repeated => "block option given more than once",
        })
    }
}

/// So that std callers can carry it as the source of their own errors (`thiserror`'s `#[from]`).
impl core::error::Error for BlockError {}

/// One Block1 or Block2 option value; fields are private so a value is always encodable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockValue {
    num: u32,
    more: bool,
    szx: u8,
}

impl BlockValue {
    /// A block option from its fields; `num` < 2^20, `szx` <= 6.
    pub fn new(num: u32, more: bool, szx: u8) -> Result<BlockValue, BlockError> {
        if num > MAX_NUM {
            return Err(BlockError::NumTooLarge);
        }
        match szx {
            0..=MAX_SZX => Ok(BlockValue { num, more, szx }),
            BERT_SZX => Err(BlockError::Bert),
            _ => Err(BlockError::InvalidSzx),
        }
    }

    /// The block starting at byte `offset` with blocks of `size` bytes.
    pub fn from_offset(offset: u64, size: usize, more: bool) -> Result<BlockValue, BlockError> {
        let szx = szx_for_size(size)?;
        let size = u64::from(16u32.wrapping_shl(u32::from(szx)));
        if offset.checked_rem(size) != Some(0) {
            return Err(BlockError::Misaligned);
        }
        let num = offset.checked_div(size).ok_or(BlockError::InvalidSize)?;
        let num = u32::try_from(num).map_err(|_| BlockError::NumTooLarge)?;
        BlockValue::new(num, more, szx)
    }

    /// Decodes the option value (0 to 3 bytes, big-endian; leading zero bytes are accepted as
    /// RFC 7252 §3.2 requires).
    pub fn decode(bytes: &[u8]) -> Result<BlockValue, BlockError> {
        if bytes.len() > 3 {
            return Err(BlockError::TooLong);
        }
        let value = decode_uint_option(bytes)?;
        // 24 bits at most, so NUM (value >> 4) is below 2^20.
        BlockValue::new(value.wrapping_shr(4), value & 0x8 != 0, (value & 0x7) as u8)
    }

    /// Encodes the option value in its shortest form; returns the bytes and how many are used
    /// (0 for NUM=0, M=0, SZX=0: the empty option).
    pub fn encode(&self) -> ([u8; 3], usize) {
        let value = self.num.wrapping_shl(4) | (u32::from(self.more) << 3) | u32::from(self.szx);
        // NUM < 2^20, so the value fits in 3 bytes and the 4th byte of the uint is never used.
        let ([a, b, c, _], len) = encode_uint_option(value);
        ([a, b, c], len)
    }

    /// Block number.
    pub fn num(&self) -> u32 {
        self.num
    }

    /// M: more blocks follow.
    pub fn more(&self) -> bool {
        self.more
    }

    /// Size exponent: size = 16 << SZX.
    pub fn szx(&self) -> u8 {
        self.szx
    }

    /// Block size in bytes (16 to 1024).
    pub fn size(&self) -> usize {
        16usize.wrapping_shl(u32::from(self.szx))
    }

    /// Byte offset of this block: NUM * size.
    pub fn offset(&self) -> u64 {
        u64::from(self.num).wrapping_shl(u32::from(self.szx).wrapping_add(4))
    }
}

/// The largest SZX (up to [`MAX_SZX`]) whose block size is at most `limit` bytes; `None` below 16.
pub fn szx_at_most(limit: u64) -> Option<u8> {
    (0..=MAX_SZX).rev().find(|szx| {
        16u64
            .checked_shl(u32::from(*szx))
            .is_some_and(|size| size <= limit)
    })
}

/// The SZX for a block size of 16, 32, ... 1024 bytes.
pub fn szx_for_size(size: usize) -> Result<u8, BlockError> {
    match size {
        16 => Ok(0),
        32 => Ok(1),
        64 => Ok(2),
        128 => Ok(3),
        256 => Ok(4),
        512 => Ok(5),
        1024 => Ok(6),
        _ => Err(BlockError::InvalidSize),
    }
}

/// Decodes a CoAP uint option of 0 to 4 bytes (Size1, Size2, Content-Format, ...).
pub fn decode_uint_option(bytes: &[u8]) -> Result<u32, BlockError> {
    if bytes.len() > 4 {
        return Err(BlockError::TooLong);
    }
    Ok(bytes
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_shl(8) | u32::from(b)))
}

/// Encodes a CoAP uint option in its shortest form (0 is the empty value).
pub fn encode_uint_option(value: u32) -> ([u8; 4], usize) {
    let len = 4usize.saturating_sub((value.leading_zeros() / 8) as usize);
    let full = value.to_be_bytes();
    let mut out = [0u8; 4];
    let skip = 4usize.saturating_sub(len);
    for (slot, b) in out.iter_mut().zip(full.iter().skip(skip)) {
        *slot = *b;
    }
    (out, len)
}

//! Opaque (Content-Format 42, `application/octet-stream`): the payload is the value, byte for
//! byte. Firmware packages (/5/0/0) arrive this way, block by block.

use core::fmt;

/// The output buffer cannot hold the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufferFull;

impl fmt::Display for BufferFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("output buffer full")
    }
}

/// The value carried by an opaque payload (the payload itself).
pub fn decode(payload: &[u8]) -> &[u8] {
    payload
}

/// Copies `value` to the start of `buf`; returns its length.
pub fn encode(buf: &mut [u8], value: &[u8]) -> Result<usize, BufferFull> {
    buf.get_mut(..value.len())
        .ok_or(BufferFull)?
        .copy_from_slice(value);
    Ok(value.len())
}

/// The part of a value that one block carries: `size` bytes from `offset`, and whether more
/// follow (the M bit of a Block2 response). `None` when `offset` is past the end.
pub fn block_of(value: &[u8], offset: u64, size: usize) -> Option<(&[u8], bool)> {
    let start = usize::try_from(offset).ok()?;
    let rest = value.get(start..)?;
    let take = rest.len().min(size);
    let chunk = rest.get(..take)?;
    Some((chunk, rest.len() > take))
}

//! Zero-copy TLV decoding: an iterator over the entries of one level.

use super::{Level, TlvError, TlvKind};

/// One TLV entry; `value` borrows from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// What the entry is.
    pub kind: TlvKind,
    /// Object instance, resource or resource instance id.
    pub id: u16,
    /// The value bytes (more TLV for object instances and multiple resources).
    pub value: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// The entries inside an object instance or multiple resource.
    pub fn children(&self) -> Result<TlvReader<'a>, TlvError> {
        let level = Level::inside(self.kind).ok_or(TlvError::NotAContainer)?;
        Ok(TlvReader {
            rest: self.value,
            level,
            failed: false,
        })
    }
}

/// Iterates over the TLV entries of one level; stops after the first error.
#[derive(Debug, Clone)]
pub struct TlvReader<'a> {
    rest: &'a [u8],
    level: Level,
    failed: bool,
}

impl<'a> TlvReader<'a> {
    /// Reads a whole payload (any kind of entry at the top).
    pub fn new(payload: &'a [u8]) -> TlvReader<'a> {
        TlvReader {
            rest: payload,
            level: Level::Top,
            failed: false,
        }
    }
}

impl<'a> Iterator for TlvReader<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let item = decode_entry(self.rest).and_then(|(tlv, rest)| {
            self.level.admit(tlv.kind)?;
            Ok((tlv, rest))
        });
        match item {
            Ok((tlv, rest)) => {
                self.rest = rest;
                Some(Ok(tlv))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Decodes the entry at the start of `buf` and returns it with the bytes after it.
fn decode_entry(buf: &[u8]) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    let (&type_byte, rest) = buf.split_first().ok_or(TlvError::Truncated)?;
    let kind = TlvKind::from_type_byte(type_byte);
    let id_len = if type_byte & 0x20 != 0 { 2 } else { 1 };
    let (id_bytes, rest) = rest.split_at_checked(id_len).ok_or(TlvError::Truncated)?;
    let id = id_bytes
        .iter()
        .fold(0u16, |acc, &b| acc.wrapping_shl(8) | u16::from(b));
    if id == u16::MAX {
        return Err(TlvError::ReservedId);
    }
    let (len, rest) = match (type_byte >> 3) & 0b11 {
        0 => (usize::from(type_byte & 0b111), rest),
        n => {
            let (len_bytes, rest) = rest
                .split_at_checked(usize::from(n))
                .ok_or(TlvError::Truncated)?;
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| acc.wrapping_shl(8) | usize::from(b));
            (len, rest)
        }
    };
    let (value, rest) = rest.split_at_checked(len).ok_or(TlvError::LengthPastEnd)?;
    Ok((Tlv { kind, id, value }, rest))
}

//! A `core::fmt::Write` over a byte slice, so text formats can be produced without allocation.

use core::fmt;

/// Writes formatted text into a borrowed byte buffer; a write that does not fit fails whole.
#[derive(Debug)]
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceWriter<'a> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceWriter { buf, len: 0 }
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// The text written so far (always valid UTF-8: only whole `&str`s are appended).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Gives back the written part of the buffer.
    pub fn into_bytes(self) -> &'a [u8] {
        let SliceWriter { buf, len } = self;
        let buf: &'a [u8] = buf;
        buf.get(..len).unwrap_or(&[])
    }
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn writes_until_full_then_fails_whole() {
        let mut buf = [0u8; 5];
        let mut w = SliceWriter::new(&mut buf);
        assert!(w.write_str("abc").is_ok());
        assert!(w.write_str("def").is_err());
        assert_eq!(w.as_str(), "abc");
        assert!(w.write_str("de").is_ok());
        assert_eq!(w.into_bytes(), b"abcde");
    }
}

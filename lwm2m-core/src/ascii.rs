//! Small text helpers that do what a core method does, for the device's flash:
//!
//! - [`rsplit_once`]: `str::rsplit_once(char)` and `str::rfind(char)` go through core's reverse
//!   `CharSearcher` (about 330 bytes on the MCU, used only by the URI code); a byte loop does the
//!   same for an ASCII needle, whose position is always a char boundary.
//! - [`find`], [`split_once`] and [`split`]: the same for the forward searches (`find`,
//!   `split_once`, `split`, `contains` with a `char`), which go through core's forward
//!   `CharSearcher` and `memchr`.
//! - [`parse_u32`]: `u32::from_str`, whose generic body is compiled for each integer type parsed.

/// `s.rsplit_once(byte as char)` for an ASCII `byte`.
#[inline(never)]
pub fn rsplit_once(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = s.bytes().rposition(|b| b == byte)?;
    Some((s.get(..at)?, s.get(at.checked_add(1)?..)?))
}

/// `s.find(byte as char)` for an ASCII `byte`.
pub fn find(s: &str, byte: u8) -> Option<usize> {
    s.bytes().position(|b| b == byte)
}

/// `s.split_once(byte as char)` for an ASCII `byte`.
#[inline(never)]
pub fn split_once(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = find(s, byte)?;
    Some((s.get(..at)?, s.get(at.checked_add(1)?..)?))
}

/// `s.split(byte as char)` for an ASCII `byte`.
pub fn split(s: &str, byte: u8) -> Split<'_> {
    Split {
        rest: Some(s),
        byte,
    }
}

/// The iterator of [`split`].
#[derive(Debug, Clone)]
pub struct Split<'a> {
    rest: Option<&'a str>,
    byte: u8,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match split_once(rest, self.byte) {
            Some((head, tail)) => {
                self.rest = Some(tail);
                Some(head)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// `text.parse::<u32>().ok()`: decimal digits with an optional leading `+`, no overflow.
#[inline(never)]
pub fn parse_u32(text: &str) -> Option<u32> {
    let digits = match text.as_bytes() {
        [b'+', rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    if digits.is_empty() {
        return None;
    }
    let mut value = 0u32;
    for &b in digits {
        let digit = char::from(b).to_digit(10)?;
        value = value.checked_mul(10)?.checked_add(digit)?;
    }
    Some(value)
}

/// `text.parse::<u16>().ok()`.
pub fn parse_u16(text: &str) -> Option<u16> {
    parse_u32(text).and_then(|v| u16::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_searches_agree_with_str() {
        extern crate std;
        use std::vec::Vec;
        for s in [
            "",
            "a",
            ":",
            "a:b",
            "a:b:c",
            "::",
            "é:ü",
            ":é:",
            "[::1]:5683",
            "ab",
            "a::",
            "/a/b/",
            "//",
        ] {
            for byte in [b':', b'/', b'a', b'#'] {
                let c = char::from(byte);
                assert_eq!(find(s, byte), s.find(c), "{s:?} {c:?}");
                assert_eq!(split_once(s, byte), s.split_once(c), "{s:?} {c:?}");
                assert_eq!(
                    split(s, byte).collect::<Vec<_>>(),
                    s.split(c).collect::<Vec<_>>(),
                    "{s:?} {c:?}"
                );
            }
        }
    }

    #[test]
    fn integers_parse_as_core_parses_them() {
        for s in [
            "",
            "+",
            "-",
            "-0",
            "0",
            "+0",
            "00",
            "007",
            "+5683",
            "++1",
            "1+",
            " 1",
            "1 ",
            "65535",
            "65536",
            "4294967295",
            "4294967296",
            "99999999999",
            "12a",
            "\u{e9}",
            "１",
        ] {
            assert_eq!(parse_u32(s), s.parse::<u32>().ok(), "{s:?}");
            assert_eq!(parse_u16(s), s.parse::<u16>().ok(), "{s:?}");
        }
    }

    #[test]
    fn agrees_with_str_rsplit_once() {
        for s in [
            "",
            "a",
            ":",
            "a:b",
            "a:b:c",
            "::",
            "é:ü",
            "[::1]:5683",
            "ab",
        ] {
            assert_eq!(rsplit_once(s, b':'), s.rsplit_once(':'), "{s:?}");
        }
    }
}

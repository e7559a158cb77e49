//! Searching text for an ASCII byte from the end. `str::rsplit_once(char)` and `str::rfind(char)`
//! go through core's reverse `CharSearcher` (about 330 bytes of flash on the MCU, used only by
//! the URI code); a byte loop does the same for an ASCII needle, whose position is always a char
//! boundary.

/// `s.rsplit_once(byte as char)` for an ASCII `byte`.
#[inline(never)]
pub fn rsplit_once(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = s.bytes().rposition(|b| b == byte)?;
    Some((s.get(..at)?, s.get(at.checked_add(1)?..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

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

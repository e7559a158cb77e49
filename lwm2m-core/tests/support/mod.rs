//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// Bytes from hex text; whitespace, commas and `0x` prefixes are ignored so spec listings can be
/// pasted as they are printed.
pub fn hex(text: &str) -> Vec<u8> {
    let cleaned = text.replace("0x", "").replace("0X", "");
    let digits: Vec<u8> = cleaned.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

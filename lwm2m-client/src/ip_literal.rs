//! IP literals and port numbers of a Package URI's authority, parsed exactly as core's
//! `Ipv4Addr`, `Ipv6Addr` and `u16` `FromStr` do (the tests check that on every input of a large
//! generated set), in about a third of the flash: core's `net::parser` is generic over the
//! number type and read through closures, about 1.6 KB on the MCU for the three calls the device
//! makes. The grammar is core's:
//!
//! - IPv4: four decimal octets separated by `.`, at most 3 digits each, no leading zero (`01`).
//! - IPv6: up to eight groups of at most 4 hex digits separated by `:`, one `::` standing for at
//!   least one zero group, and an IPv4 address in place of the last two groups.
//! - port: decimal digits with an optional leading `+`, at most 65535.

use core::net::{Ipv4Addr, Ipv6Addr};

/// The input left to read. A reader that fails leaves it where it was (core's `read_atomically`).
type Input<'a> = &'a [u8];

/// Runs `read` on a copy of `input` and moves `input` on only when it succeeds.
fn atomically<'a, T>(
    input: &mut Input<'a>,
    read: impl FnOnce(&mut Input<'a>) -> Option<T>,
) -> Option<T> {
    let mut copy = *input;
    let value = read(&mut copy)?;
    *input = copy;
    Some(value)
}

/// Reads `byte` if it comes next.
fn eat(input: &mut Input<'_>, byte: u8) -> bool {
    match input.split_first() {
        Some((&b, rest)) if b == byte => {
            *input = rest;
            true
        }
        _ => false,
    }
}

/// Reads the run of `radix` digits that comes next (core's `read_number`): none, more than
/// `max_digits`, or a leading zero of a number of several digits when `zero_prefix` is false, and
/// nothing is read.
#[inline(never)]
fn number(input: &mut Input<'_>, radix: u32, max_digits: usize, zero_prefix: bool) -> Option<u32> {
    let start = *input;
    let mut value = 0u32;
    let mut digits = 0usize;
    while let Some((&b, rest)) = input.split_first() {
        let Some(digit) = char::from(b).to_digit(radix) else {
            break;
        };
        digits = digits.saturating_add(1);
        if digits > max_digits {
            *input = start;
            return None;
        }
        // At most 4 digits of radix 16 or 3 of radix 10: no overflow, checked all the same.
        value = value.checked_mul(radix)?.checked_add(digit)?;
        *input = rest;
    }
    if digits == 0 || (!zero_prefix && digits > 1 && start.first() == Some(&b'0')) {
        *input = start;
        return None;
    }
    Some(value)
}

/// `a.b.c.d`, with nothing read when it is not one.
fn ipv4(input: &mut Input<'_>) -> Option<[u8; 4]> {
    atomically(input, |p| {
        let mut octets = [0u8; 4];
        for (i, octet) in octets.iter_mut().enumerate() {
            if i > 0 && !eat(p, b'.') {
                return None;
            }
            *octet = u8::try_from(number(p, 10, 3, false)?).ok()?;
        }
        Some(octets)
    })
}

/// A run of `:`-separated groups into `groups`, the last two of which may be an IPv4 address:
/// how many groups were read and whether the run ended with an IPv4 address.
fn groups(input: &mut Input<'_>, groups: &mut [u16]) -> (usize, bool) {
    let limit = groups.len();
    for i in 0..limit {
        // The separator and what follows it are read together or not at all.
        let sep = |p: &mut Input<'_>| i == 0 || eat(p, b':');
        if i.saturating_add(1) < limit {
            if let Some([a, b, c, d]) = atomically(input, |p| sep(p).then(|| ipv4(p))?) {
                if let Some(pair) = groups.get_mut(i..i.saturating_add(2)) {
                    pair.copy_from_slice(&[u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])]);
                }
                return (i.saturating_add(2), true);
            }
        }
        match atomically(input, |p| sep(p).then(|| number(p, 16, 4, true))?) {
            Some(group) => {
                if let Some(slot) = groups.get_mut(i) {
                    // At most 4 hex digits: always fits.
                    *slot = u16::try_from(group).unwrap_or(0);
                }
            }
            None => return (i, false),
        }
    }
    (limit, false)
}

/// The whole of `text` as an IPv4 address (`Ipv4Addr::from_str`).
pub fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut input = text.as_bytes();
    let octets = ipv4(&mut input)?;
    input.is_empty().then_some(Ipv4Addr::from(octets))
}

/// The whole of `text` as an IPv6 address (`Ipv6Addr::from_str`).
pub fn parse_ipv6(text: &str) -> Option<Ipv6Addr> {
    let mut input = text.as_bytes();
    let mut head = [0u16; 8];
    let (head_len, head_ipv4) = groups(&mut input, &mut head);
    if head_len < 8 {
        // An IPv4 address only at the end; otherwise `::` and at least one zero group.
        if head_ipv4 || !(eat(&mut input, b':') && eat(&mut input, b':')) {
            return None;
        }
        let mut tail = [0u16; 7];
        let limit = 7usize.saturating_sub(head_len);
        let (tail_len, _) = groups(&mut input, tail.get_mut(..limit)?);
        let from = 8usize.saturating_sub(tail_len);
        head.get_mut(from..)?.copy_from_slice(tail.get(..tail_len)?);
    }
    input.is_empty().then_some(Ipv6Addr::from(head))
}

/// The whole of `text` as a port number (`u16::from_str`: an optional `+`, then digits).
pub fn parse_port(text: &str) -> Option<u16> {
    lwm2m_core::ascii::parse_u16(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string of the alphabet up to the length, and a few hand-picked ones: each parser
    /// agrees with core's on every one.
    fn agree(text: &str) {
        assert_eq!(
            parse_ipv4(text),
            text.parse::<Ipv4Addr>().ok(),
            "v4 {text:?}"
        );
        assert_eq!(
            parse_ipv6(text),
            text.parse::<Ipv6Addr>().ok(),
            "v6 {text:?}"
        );
        assert_eq!(parse_port(text), text.parse::<u16>().ok(), "port {text:?}");
    }

    #[test]
    fn hand_picked_inputs_agree_with_core() {
        for text in [
            "",
            "0",
            "1.2.3.4",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "0.0.0.0",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.4.5",
            "1..2.3",
            "1.2.3.0004",
            "1.2.3.4 ",
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:DB8:0:0:0:0:0:1",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::",
            "::1:2:3:4:5:6:7",
            "::1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6::7",
            "::ffff:192.0.2.1",
            "::192.0.2.1",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1.2.3.4::",
            "1.2.3.4::1",
            ":::",
            "1:::2",
            "12345::",
            "fffff::",
            "0000:0::",
            "g::",
            ":1::",
            "1:",
            ":",
            "::1.2.3.4.5",
            "::01.2.3.4",
            "1::2::3",
            "fe80::1%1",
            "+",
            "+1",
            "-1",
            "65535",
            "65536",
            "+65535",
            "00080",
            "+0",
            "++1",
            "1+",
            "5683",
            "99999999",
            "\u{e9}",
            "1.2.3.\u{e9}",
        ] {
            agree(text);
        }
    }

    #[test]
    fn generated_inputs_agree_with_core() {
        // All strings up to 6 bytes over a small alphabet, then longer ones by a fixed walk.
        const ALPHABET: &[u8] = b"01:.f9+";
        let mut buf = Vec::new();
        fn walk(buf: &mut Vec<u8>, depth: usize) {
            agree(core::str::from_utf8(buf).unwrap());
            if depth == 0 {
                return;
            }
            for &b in ALPHABET {
                buf.push(b);
                walk(buf, depth - 1);
                buf.pop();
            }
        }
        walk(&mut buf, 6);
        // Longer strings: a fixed pseudo-random walk joining pieces of addresses, 300 000 of them.
        const PIECES: &[&str] = &[
            "0", "1", "00", "0000", "ffff", "FfFf", "12345", "1.2.3.4", "255", "256", "01", ":",
            "::", ".", "9", "a", "g", "+",
        ];
        let mut state = 0x2545_f491_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for _ in 0..300_000 {
            let mut s = String::new();
            for _ in 0..1 + next() % 16 {
                s.push_str(PIECES[next() % PIECES.len()]);
            }
            agree(&s);
        }
    }
}

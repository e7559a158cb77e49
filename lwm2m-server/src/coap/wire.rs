//! Wire-level facts that coap-lite's parser does not check (RFC 7252 §3, §4.1, §5.4.1), and the
//! few fixed messages the endpoint builds itself.

use coap_lite::{MessageClass, MessageType, Packet, ResponseType};

/// What a received datagram turned out to be.
#[derive(Debug)]
pub(crate) enum Inspected {
    /// Too short to carry a header, or not CoAP version 1: ignored silently (RFC 7252 §3).
    Ignore,
    /// A message format error (RFC 7252 §4.2/§4.3): a confirmable one is rejected with a Reset.
    Malformed { mid: u16, confirmable: bool },
    /// A well-formed message.
    Message(Packet),
}

/// Checks the structure of a datagram before handing it to coap-lite.
pub(crate) fn inspect(bytes: &[u8]) -> Inspected {
    let [first, code, mid_hi, mid_lo, rest @ ..] = bytes else {
        return Inspected::Ignore;
    };
    if first >> 6 != 1 {
        return Inspected::Ignore;
    }
    let mid = u16::from_be_bytes([*mid_hi, *mid_lo]);
    let malformed = Inspected::Malformed {
        mid,
        confirmable: (first >> 4) & 0x3 == 0,
    };
    let tkl = usize::from(first & 0x0f);
    if tkl > 8 || rest.len() < tkl {
        return malformed;
    }
    // An Empty message is exactly the 4-byte header: no token, no options, no payload (§4.1).
    if *code == 0 && !rest.is_empty() {
        return malformed;
    }
    // Code classes 1, 6 and 7 are reserved (§3).
    if matches!(code >> 5, 1 | 6 | 7) {
        return malformed;
    }
    if !options_well_formed(&rest[tkl..]) {
        return malformed;
    }
    match Packet::from_bytes(bytes) {
        Ok(packet) => Inspected::Message(packet),
        Err(_) => malformed,
    }
}

/// Walks the options; false on a reserved nibble (15), a truncated option, an option number above
/// 65535, or a payload marker that is not followed by payload (§3.1).
fn options_well_formed(mut rest: &[u8]) -> bool {
    let mut number: u32 = 0;
    while let Some((&first, tail)) = rest.split_first() {
        if first == 0xff {
            return !tail.is_empty();
        }
        rest = tail;
        // The delta's extended bytes come before the length's (RFC 7252 §3.1).
        let Some(delta) = extended(first >> 4, &mut rest) else {
            return false;
        };
        let Some(len) = extended(first & 0x0f, &mut rest) else {
            return false;
        };
        number += delta;
        let len = len as usize;
        if number > u32::from(u16::MAX) || rest.len() < len {
            return false;
        }
        rest = &rest[len..];
    }
    true
}

/// Decodes a 4-bit option delta or length nibble with its extended bytes.
fn extended(nibble: u8, rest: &mut &[u8]) -> Option<u32> {
    match nibble {
        0..=12 => Some(u32::from(nibble)),
        13 => {
            let (&b, tail) = rest.split_first()?;
            *rest = tail;
            Some(u32::from(b) + 13)
        }
        14 => {
            let [a, b, tail @ ..] = *rest else {
                return None;
            };
            *rest = tail;
            Some(u32::from(u16::from_be_bytes([*a, *b])) + 269)
        }
        _ => None,
    }
}

/// Option numbers this endpoint recognises (RFC 7252 §12.2, RFC 7641, RFC 7959, RFC 7967).
/// OSCORE (9) is deliberately absent: we do not implement it.
pub(crate) const KNOWN_OPTIONS: &[u16] = &[
    1, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 17, 20, 23, 27, 28, 35, 39, 60, 258,
];

/// True when the message carries a critical (odd-numbered) option we do not recognise (§5.4.1).
pub(crate) fn has_unknown_critical_option(packet: &Packet) -> bool {
    packet.options().any(|(number, values)| {
        number % 2 == 1 && !values.is_empty() && !KNOWN_OPTIONS.contains(number)
    })
}

/// The raw code byte.
pub(crate) fn code_byte(packet: &Packet) -> u8 {
    u8::from(packet.header.code)
}

pub(crate) fn is_request_code(code: u8) -> bool {
    code != 0 && code >> 5 == 0
}

pub(crate) fn is_success_code(code: u8) -> bool {
    code >> 5 == 2
}

/// An Empty message (ACK or RST) answering `mid`.
pub(crate) fn empty_message(ty: MessageType, mid: u16) -> Vec<u8> {
    let ty_bits: u8 = match ty {
        MessageType::Confirmable => 0,
        MessageType::NonConfirmable => 1,
        MessageType::Acknowledgement => 2,
        MessageType::Reset => 3,
    };
    let [hi, lo] = mid.to_be_bytes();
    vec![0x40 | (ty_bits << 4), 0, hi, lo]
}

/// A response packet with just a code; the endpoint fills in type, message ID and token.
pub fn new_response(code: ResponseType) -> Packet {
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Response(code);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_messages_have_the_exact_header() {
        assert_eq!(
            empty_message(MessageType::Reset, 0x1234),
            vec![0x70, 0, 0x12, 0x34]
        );
        assert_eq!(
            empty_message(MessageType::Acknowledgement, 7),
            vec![0x60, 0, 0, 7]
        );
    }

    #[test]
    fn structural_errors_are_reported_with_the_message_id() {
        // TKL 9
        assert!(matches!(
            inspect(&[0x49, 0x01, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Inspected::Malformed {
                mid: 5,
                confirmable: true
            }
        ));
        // payload marker without payload
        assert!(matches!(
            inspect(&[0x50, 0x01, 0, 6, 0xff]),
            Inspected::Malformed {
                mid: 6,
                confirmable: false
            }
        ));
        // option length nibble 15
        assert!(matches!(
            inspect(&[0x40, 0x01, 0, 7, 0xbf]),
            Inspected::Malformed { .. }
        ));
        // truncated option value
        assert!(matches!(
            inspect(&[0x40, 0x01, 0, 8, 0xb3, b'a']),
            Inspected::Malformed { .. }
        ));
        // Empty message with a token
        assert!(matches!(
            inspect(&[0x41, 0x00, 0, 9, 0xaa]),
            Inspected::Malformed { mid: 9, .. }
        ));
        // reserved code class 7
        assert!(matches!(
            inspect(&[0x40, 0xe0, 0, 10]),
            Inspected::Malformed { mid: 10, .. }
        ));
        // version 2 and runts are ignored
        assert!(matches!(inspect(&[0x80, 0x01, 0, 11]), Inspected::Ignore));
        assert!(matches!(inspect(&[0x40, 0x01, 0]), Inspected::Ignore));
        // a good GET /a with payload
        assert!(matches!(
            inspect(&[0x40, 0x01, 0, 12, 0xb1, b'a', 0xff, 1]),
            Inspected::Message(_)
        ));
    }

    #[test]
    fn unknown_critical_options_are_detected_but_elective_ones_are_not() {
        let mut p = new_response(ResponseType::Content);
        p.add_option(coap_lite::CoapOption::Unknown(2050), vec![1]); // even: elective
        assert!(!has_unknown_critical_option(&p));
        p.add_option(coap_lite::CoapOption::Unknown(9), vec![1]); // OSCORE: not ours
        assert!(has_unknown_critical_option(&p));
    }
}

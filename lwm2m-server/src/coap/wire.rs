//! The datagram checks and the few fixed messages of the endpoint. coap-lite is the server's
//! packet type (a documented choice, see `lwm2m_core`'s crate doc), but the structure of a
//! datagram (RFC 7252 §3, §4.1) is validated by lwm2m-core's [`Message::decode`], the same code
//! the device runs, and options are named by [`lwm2m_core::coap::option`]: no rule is written
//! here a second time.

use coap_lite::{MessageClass, MessageType, Packet, ResponseType};
use lwm2m_core::coap::{self, Code, Message, MessageWriter, option};

/// What a received datagram turned out to be.
#[derive(Debug)]
pub(crate) enum Inspected {
    /// Nothing to answer: too short for a header, not CoAP version 1 (RFC 7252 §3), or a
    /// malformed message that is not Confirmable.
    Ignore,
    /// A malformed Confirmable (RFC 7252 §4.2): rejected with a Reset carrying its message id.
    Reject { mid: u16 },
    /// A well-formed message.
    Message(Packet),
}

/// Validates a datagram with lwm2m-core before handing it to coap-lite.
pub(crate) fn inspect(bytes: &[u8]) -> Inspected {
    let message = match Message::decode(bytes) {
        Ok(m) => m,
        Err(_) => {
            return Message::rejectable_con_id(bytes)
                .map_or(Inspected::Ignore, |mid| Inspected::Reject { mid });
        }
    };
    let reject = || match message.ty {
        coap::MessageType::Confirmable => Inspected::Reject {
            mid: message.message_id,
        },
        _ => Inspected::Ignore,
    };
    // Code classes 1, 6 and 7 are reserved (§3): a format error like those `decode` finds.
    if message.code.is_reserved_class() {
        return reject();
    }
    match Packet::from_bytes(bytes) {
        Ok(packet) => Inspected::Message(packet),
        Err(_) => reject(),
    }
}

/// Options this endpoint recognises: every one lwm2m-core names (RFC 7252 §5.10, RFC 7641,
/// RFC 7959, RFC 7967), and OSCORE's.
pub(crate) const KNOWN_OPTIONS: &[u16] = &option::ALL;
/// The OSCORE option (RFC 8613): critical, handled above the endpoint by `coap::oscore`.
const OSCORE: u16 = 9;

/// The first critical option the message carries that we do not recognise (§5.4.1): a request
/// with one is answered 4.02, a response with one is rejected.
pub(crate) fn unknown_critical_option(packet: &Packet) -> Option<u16> {
    packet
        .options()
        .find(|(number, values)| {
            option::is_critical(**number)
                && !values.is_empty()
                && **number != OSCORE
                && !KNOWN_OPTIONS.contains(number)
        })
        .map(|(number, _)| *number)
}

/// The code of a packet, to ask lwm2m-core what it is (request, success, ...).
pub(crate) fn code(packet: &Packet) -> Code {
    Code(u8::from(packet.header.code))
}

/// An Empty message (ACK or RST) answering `mid`.
pub(crate) fn empty_message(ty: MessageType, mid: u16) -> Vec<u8> {
    let ty = match ty {
        MessageType::Confirmable => coap::MessageType::Confirmable,
        MessageType::NonConfirmable => coap::MessageType::NonConfirmable,
        MessageType::Acknowledgement => coap::MessageType::Acknowledgement,
        MessageType::Reset => coap::MessageType::Reset,
    };
    let mut buf = [0u8; coap::HEADER_LEN];
    // A 4-byte header always fits its 4-byte buffer.
    let len = MessageWriter::new(&mut buf, ty, Code::EMPTY, mid, &[])
        .map(MessageWriter::finish)
        .unwrap_or(0);
    buf[..len].to_vec()
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
            Inspected::Reject { mid: 5 }
        ));
        // payload marker without payload, in a NON: dropped without a Reset
        assert!(matches!(
            inspect(&[0x50, 0x01, 0, 6, 0xff]),
            Inspected::Ignore
        ));
        // option length nibble 15
        assert!(matches!(
            inspect(&[0x40, 0x01, 0, 7, 0xbf]),
            Inspected::Reject { mid: 7 }
        ));
        // truncated option value
        assert!(matches!(
            inspect(&[0x40, 0x01, 0, 8, 0xb3, b'a']),
            Inspected::Reject { mid: 8 }
        ));
        // Empty message with a token
        assert!(matches!(
            inspect(&[0x41, 0x00, 0, 9, 0xaa]),
            Inspected::Reject { mid: 9 }
        ));
        // reserved code class 7, in a CON and in a NON
        assert!(matches!(
            inspect(&[0x40, 0xe0, 0, 10]),
            Inspected::Reject { mid: 10 }
        ));
        assert!(matches!(inspect(&[0x50, 0xe0, 0, 10]), Inspected::Ignore));
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
        assert_eq!(unknown_critical_option(&p), None);
        p.add_option(coap_lite::CoapOption::Unknown(9), vec![1]); // OSCORE: known
        assert_eq!(unknown_critical_option(&p), None);
        p.add_option(coap_lite::CoapOption::Unknown(2049), vec![1]);
        assert_eq!(unknown_critical_option(&p), Some(2049));
    }
}

//! The CoAP message codec: byte vectors from RFC 7252 and RFC 7641 figures and vectors worked out
//! by hand from RFC 7252 §3.1 (the 13 and 14 extended delta/length forms), every refusal with
//! its precise error, and property tests against coap-lite (an independent implementation) in
//! both directions.

mod support;

use coap_lite::{CoapOption, MessageClass, Packet};
use lwm2m_core::coap::{
    CoapError, Code, MAX_OPTION_LEN, Message, MessageType, MessageWriter, empty_ack, option, reset,
};
use proptest::collection::vec;
use proptest::prelude::*;
use support::hex;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Writes a message with the given options (in order) and payload into a fresh buffer.
fn write(
    ty: MessageType,
    code: Code,
    mid: u16,
    token: &[u8],
    options: &[(u16, &[u8])],
    payload: &[u8],
) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000 + payload.len()];
    let mut w = MessageWriter::new(&mut buf, ty, code, mid, token).unwrap();
    for (number, value) in options {
        w.option(*number, value).unwrap();
    }
    let len = w.payload(payload).unwrap();
    buf.truncate(len);
    buf
}

fn options_of(msg: &Message<'_>) -> Vec<(u16, Vec<u8>)> {
    msg.options().map(|(n, v)| (n, v.to_vec())).collect()
}

fn decode_err(bytes: &[u8]) -> CoapError {
    Message::decode(bytes).unwrap_err()
}

// ---------------------------------------------------------------------------------------------
// Spec figures

/// RFC 7252 Appendix A, Figure 16 (request): CON GET, TKL 0, MID 0x7d34, one Uri-Path
/// "temperature": `| 1 | 0 | 0 | GET=1 | MID=0x7d34 |` then `| 11 | 11 | "temperature"`.
#[test]
fn rfc7252_figure16_request() {
    let expected = hex("40 01 7d 34  bb  74 65 6d 70 65 72 61 74 75 72 65");
    let mut buf = [0u8; 64];
    let mut w =
        MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0x7d34, &[]).unwrap();
    w.path("/temperature").unwrap();
    let len = w.finish();
    assert_eq!(&buf[..len], &expected[..]);

    let msg = Message::decode(&expected).unwrap();
    assert_eq!(msg.ty, MessageType::Confirmable);
    assert_eq!(msg.code, Code::GET);
    assert_eq!(msg.message_id, 0x7d34);
    assert_eq!(msg.token(), b"");
    assert_eq!(
        options_of(&msg),
        vec![(option::URI_PATH, b"temperature".to_vec())]
    );
    assert_eq!(msg.path().collect::<Vec<_>>(), vec![&b"temperature"[..]]);
    assert_eq!(msg.payload, b"");
}

/// RFC 7252 Appendix A, Figure 16 (response): ACK 2.05=69, MID 0x7d34, payload marker,
/// "22.3 C".
#[test]
fn rfc7252_figure16_response() {
    let expected = hex("60 45 7d 34  ff  32 32 2e 33 20 43");
    let mut buf = [0u8; 64];
    let w = MessageWriter::new(
        &mut buf,
        MessageType::Acknowledgement,
        Code::CONTENT,
        0x7d34,
        &[],
    )
    .unwrap();
    let len = w.payload(b"22.3 C").unwrap();
    assert_eq!(&buf[..len], &expected[..]);

    let msg = Message::decode(&expected).unwrap();
    assert_eq!(msg.ty, MessageType::Acknowledgement);
    assert_eq!(msg.code, Code::CONTENT);
    assert_eq!(msg.code.0, 69);
    assert_eq!(msg.options().count(), 0);
    assert_eq!(msg.payload, b"22.3 C");
}

/// RFC 7641 §1.2 Figure 2: the registration `Header: GET 0x41011633`, `Token: 0x4a`,
/// `Uri-Path: temperature`, `Observe: 0`. The option bytes are by hand: Observe (6) with the
/// empty value for 0 is delta 6, length 0 = 0x60; Uri-Path (11) is delta 5, length 11 = 0x5b.
#[test]
fn rfc7641_figure2_register() {
    let expected = hex("41 01 16 33  4a  60  5b 74 65 6d 70 65 72 61 74 75 72 65");
    let mut buf = [0u8; 64];
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::Confirmable,
        Code::GET,
        0x1633,
        &[0x4a],
    )
    .unwrap();
    w.uint_option(option::OBSERVE, 0)
        .unwrap()
        .path("temperature")
        .unwrap();
    let len = w.finish();
    assert_eq!(&buf[..len], &expected[..]);

    let msg = Message::decode(&expected).unwrap();
    assert_eq!(msg.token(), [0x4a]);
    assert_eq!(msg.uint_option(option::OBSERVE), Ok(Some(0)));
    assert_eq!(msg.option(option::OBSERVE), Some(&b""[..]));
    assert_eq!(msg.path().collect::<Vec<_>>(), vec![&b"temperature"[..]]);
}

/// RFC 7641 §1.2 Figure 2: the first notification `Header: 2.05 0x61451633`, `Token: 0x4a`,
/// `Observe: 9`, `Max-Age: 15`, `Payload: "18.5 Cel"`. By hand: Observe delta 6 length 1 =
/// 0x61 0x09; Max-Age (14) delta 8 length 1 = 0x81 0x0f; then 0xff and the payload.
#[test]
fn rfc7641_figure2_notification() {
    let expected = hex("61 45 16 33  4a  61 09  81 0f  ff 31 38 2e 35 20 43 65 6c");
    let mut buf = [0u8; 64];
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::Acknowledgement,
        Code::CONTENT,
        0x1633,
        &[0x4a],
    )
    .unwrap();
    w.uint_option(option::OBSERVE, 9)
        .unwrap()
        .uint_option(option::MAX_AGE, 15)
        .unwrap();
    let len = w.payload(b"18.5 Cel").unwrap();
    assert_eq!(&buf[..len], &expected[..]);

    let msg = Message::decode(&expected).unwrap();
    assert_eq!(msg.uint_option(option::OBSERVE), Ok(Some(9)));
    assert_eq!(msg.uint_option(option::MAX_AGE), Ok(Some(15)));
    assert_eq!(msg.payload, b"18.5 Cel");
}

// ---------------------------------------------------------------------------------------------
// Extended option encodings (RFC 7252 §3.1), computed by hand

/// Block2 (23) after Uri-Path (11): delta 12, the largest delta that fits the nibble.
/// CON GET MID 0x0001 token 0xab, Uri-Path "fw" (0xb2), Block2 NUM 0 M 0 SZX 6 = 0x06 (0xc1).
#[test]
fn block2_after_uri_path_is_delta_12() {
    let expected = hex("41 01 00 01  ab  b2 66 77  c1 06");
    let bytes = write(
        MessageType::Confirmable,
        Code::GET,
        1,
        &[0xab],
        &[(option::URI_PATH, b"fw"), (option::BLOCK2, &[0x06])],
        b"",
    );
    assert_eq!(bytes, expected);
    let msg = Message::decode(&expected).unwrap();
    assert_eq!(msg.option(option::BLOCK2), Some(&[0x06][..]));
}

/// No-Response (258) on its own: delta 258 = 13 + 245, so nibble 13 and one extended byte
/// 0xf5; length 1. Value 26 (suppress 2.xx, 4.xx, 5.xx is 2|8|16 = 26 = 0x1a).
#[test]
fn no_response_alone_uses_one_byte_extended_delta() {
    let expected = hex("50 02 12 34  d1 f5 1a");
    let bytes = write(
        MessageType::NonConfirmable,
        Code::POST,
        0x1234,
        &[],
        &[(option::NO_RESPONSE, &[26])],
        b"",
    );
    assert_eq!(bytes, expected);
    let msg = Message::decode(&expected).unwrap();
    assert_eq!(msg.uint_option(option::NO_RESPONSE), Ok(Some(26)));
}

/// No-Response after Uri-Path "5": delta 258 - 11 = 247 = 13 + 234 (0xea).
#[test]
fn no_response_after_uri_path() {
    let expected = hex("50 02 12 34  b1 35  d1 ea 1a");
    let bytes = write(
        MessageType::NonConfirmable,
        Code::POST,
        0x1234,
        &[],
        &[(option::URI_PATH, b"5"), (option::NO_RESPONSE, &[26])],
        b"",
    );
    assert_eq!(bytes, expected);
    let msg = Message::decode(&expected).unwrap();
    assert_eq!(options_of(&msg), vec![(11, b"5".to_vec()), (258, vec![26])]);
}

/// A 300-byte Proxy-Uri (35): delta 35 = 13 + 22 (0x16), length 300 = 269 + 31 (0x00 0x1f),
/// so the option header is 0xde 0x16 0x00 0x1f.
#[test]
fn proxy_uri_of_300_bytes_uses_two_byte_extended_length() {
    let uri: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut expected = hex("40 01 01 02  de 16 00 1f");
    expected.extend_from_slice(&uri);
    let bytes = write(
        MessageType::Confirmable,
        Code::GET,
        0x0102,
        &[],
        &[(option::PROXY_URI, &uri)],
        b"",
    );
    assert_eq!(bytes, expected);
    let msg = Message::decode(&expected).unwrap();
    assert_eq!(msg.option(option::PROXY_URI), Some(&uri[..]));
    assert_eq!(msg.payload, b"");
}

/// The boundaries of each form, for the delta and for the length.
#[test]
fn extended_form_boundaries() {
    let header = hex("40 01 00 00");
    let cases: &[(u16, usize, &str)] = &[
        (12, 0, "c0"),
        (13, 0, "d0 00"),
        // 268 = 13 + 255: the extended byte is 0xff and is not a payload marker.
        (268, 0, "d0 ff"),
        (269, 0, "e0 00 00"),
        // 65535 = 269 + 65266 (0xfef2).
        (65535, 0, "e0 fe f2"),
        (1, 12, "1c"),
        (1, 13, "1d 00"),
        (1, 268, "1d ff"),
        (1, 269, "1e 00 00"),
        (1, MAX_OPTION_LEN, "1e ff ff"),
    ];
    for &(number, len, option_header) in cases {
        let value = vec![0x55u8; len];
        let bytes = write(
            MessageType::Confirmable,
            Code::GET,
            0,
            &[],
            &[(number, &value)],
            b"",
        );
        let mut expected = header.clone();
        expected.extend(hex(option_header));
        expected.extend(&value);
        assert_eq!(bytes, expected, "option {number} of {len} bytes");
        let msg = Message::decode(&bytes).unwrap();
        assert_eq!(options_of(&msg), vec![(number, value)]);
    }
}

#[test]
fn path_splitting_follows_rfc7252_section_6_4() {
    let segments = |path: &str| -> Vec<Vec<u8>> {
        let mut buf = [0u8; 128];
        let mut w =
            MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
        w.path(path).unwrap();
        let len = w.finish();
        let msg = Message::decode(&buf[..len]).unwrap();
        msg.path().map(<[u8]>::to_vec).collect()
    };
    let v =
        |parts: &[&str]| -> Vec<Vec<u8>> { parts.iter().map(|p| p.as_bytes().to_vec()).collect() };
    assert_eq!(segments("/5/0/3"), v(&["5", "0", "3"]));
    assert_eq!(segments("5/0/3"), v(&["5", "0", "3"]));
    assert_eq!(segments(""), v(&[]));
    assert_eq!(segments("/"), v(&[]));
    assert_eq!(segments("/a//b"), v(&["a", "", "b"]));
    assert_eq!(segments("/rd/"), v(&["rd", ""]));

    // "/5/0/3": Uri-Path delta 11 length 1 (0xb1), then delta 0 length 1 (0x01) twice.
    let bytes = {
        let mut buf = [0u8; 32];
        let mut w =
            MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
        w.path("/5/0/3").unwrap();
        let len = w.finish();
        buf[..len].to_vec()
    };
    assert_eq!(bytes, hex("40 01 00 00  b1 35 01 30 01 33"));
}

/// RFC 9176 §5.3 style response: 2.01 Created with `Location-Path: /rd/4521`:
/// Location-Path (8) delta 8 length 2 = 0x82 "rd", then delta 0 length 4 = 0x04 "4521".
#[test]
fn location_path() {
    let mut buf = [0u8; 32];
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::Acknowledgement,
        Code::CREATED,
        0x0a0b,
        &[0x01, 0x02],
    )
    .unwrap();
    w.location_path("/rd/4521").unwrap();
    let len = w.finish();
    assert_eq!(
        &buf[..len],
        &hex("62 41 0a 0b  01 02  82 72 64  04 34 35 32 31")[..]
    );
    let msg = Message::decode(&buf[..len]).unwrap();
    assert_eq!(
        msg.option_values(option::LOCATION_PATH).collect::<Vec<_>>(),
        vec![&b"rd"[..], &b"4521"[..]]
    );
    assert_eq!(msg.path().count(), 0);
}

#[test]
fn empty_ack_and_reset() {
    let mut buf = [0xeeu8; 8];
    assert_eq!(empty_ack(&mut buf, 0x1234), Ok(4));
    assert_eq!(&buf[..4], &hex("60 00 12 34")[..]);
    assert_eq!(reset(&mut buf, 0xbeef), Ok(4));
    assert_eq!(&buf[..4], &hex("70 00 be ef")[..]);
    let msg = Message::decode(&buf[..4]).unwrap();
    assert_eq!(
        (msg.ty, msg.code, msg.message_id),
        (MessageType::Reset, Code::EMPTY, 0xbeef)
    );
    assert_eq!(empty_ack(&mut [0u8; 3], 1), Err(CoapError::BufferFull));
    assert_eq!(reset(&mut [0u8; 3], 1), Err(CoapError::BufferFull));
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[test]
fn decode_refuses_every_malformed_form() {
    let cases: &[(&str, CoapError, &str)] = &[
        ("", CoapError::Truncated, "no header"),
        ("40 01 00", CoapError::Truncated, "3-byte header"),
        ("80 01 00 00", CoapError::BadVersion, "version 2"),
        ("00 01 00 00", CoapError::BadVersion, "version 0"),
        ("c0 01 00 00", CoapError::BadVersion, "version 3"),
        (
            "49 01 00 00 01 02 03 04 05 06 07 08 09",
            CoapError::TokenTooLong,
            "TKL 9",
        ),
        ("4f 01 00 00", CoapError::TokenTooLong, "TKL 15"),
        (
            "44 01 00 00 aa bb",
            CoapError::Truncated,
            "TKL 4, 2 token bytes",
        ),
        (
            "40 01 00 00 f0",
            CoapError::ReservedOptionNibble,
            "delta nibble 15",
        ),
        (
            "40 01 00 00 bf",
            CoapError::ReservedOptionNibble,
            "length nibble 15",
        ),
        // The header byte is refused before its missing extended delta byte is looked for.
        (
            "40 01 00 00 df",
            CoapError::ReservedOptionNibble,
            "delta 13, length nibble 15",
        ),
        (
            "40 01 00 00 b1 35 0f",
            CoapError::ReservedOptionNibble,
            "length 15 after an option",
        ),
        (
            "40 01 00 00 d0",
            CoapError::Truncated,
            "delta 13, extended byte missing",
        ),
        (
            "40 01 00 00 e0 00",
            CoapError::Truncated,
            "delta 14, one of two extended bytes",
        ),
        (
            "40 01 00 00 0d",
            CoapError::Truncated,
            "length 13, extended byte missing",
        ),
        (
            "40 01 00 00 0e 01",
            CoapError::Truncated,
            "length 14, one of two extended bytes",
        ),
        (
            "40 01 00 00 b5 61 62",
            CoapError::Truncated,
            "value shorter than its length",
        ),
        (
            "40 01 00 00 0d 00 61",
            CoapError::Truncated,
            "13-byte value with 1 byte",
        ),
        // 65535 then delta 1.
        (
            "40 01 00 00 e0 fe f2 10",
            CoapError::OptionNumberOverflow,
            "65535 + 1",
        ),
        // 269 + 0xffff = 65804 from 0.
        (
            "40 01 00 00 e0 ff ff",
            CoapError::OptionNumberOverflow,
            "delta 65804",
        ),
        // 269 + 0xfef3 = 65536.
        (
            "40 01 00 00 e0 fe f3",
            CoapError::OptionNumberOverflow,
            "delta 65536",
        ),
        (
            "40 01 00 00 ff",
            CoapError::EmptyPayload,
            "marker, no payload",
        ),
        (
            "41 45 00 00 aa b1 35 ff",
            CoapError::EmptyPayload,
            "marker after option, no payload",
        ),
        (
            "41 00 00 00 aa",
            CoapError::EmptyMessageNotEmpty,
            "Empty with a token",
        ),
        (
            "41 00 00 00",
            CoapError::EmptyMessageNotEmpty,
            "Empty with TKL 1 and nothing after",
        ),
        (
            "60 00 00 00 b1 35",
            CoapError::EmptyMessageNotEmpty,
            "Empty with an option",
        ),
        (
            "60 00 00 00 ff 01",
            CoapError::EmptyMessageNotEmpty,
            "Empty with a payload",
        ),
        (
            "70 00 00 00 00",
            CoapError::EmptyMessageNotEmpty,
            "RST with a trailing byte",
        ),
    ];
    for &(bytes, error, what) in cases {
        assert_eq!(decode_err(&hex(bytes)), error, "{what}");
    }
}

#[test]
fn decode_accepts_the_edges() {
    // Option 65535 exactly, repeated (delta 0 keeps it at 65535).
    let bytes = hex("40 01 00 00 e0 fe f2 00");
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(options_of(&msg), vec![(65535, vec![]), (65535, vec![])]);
    // 0xff as an extended delta byte, then a real payload marker.
    let bytes = hex("40 02 00 00 d1 ff 07 ff 00");
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(options_of(&msg), vec![(268, vec![7])]);
    assert_eq!(msg.payload, [0x00]);
    // A payload that itself contains 0xff.
    let bytes = hex("40 02 00 00 ff ff ff");
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.payload, [0xff, 0xff]);
    // An 8-byte token and nothing else.
    let bytes = hex("58 45 00 09 01 02 03 04 05 06 07 08");
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.token(), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(msg.ty, MessageType::NonConfirmable);
    // CON Empty (a ping) is well formed.
    let bytes = hex("40 00 ab cd");
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!((msg.code, msg.message_id), (Code::EMPTY, 0xabcd));
    // Reserved code classes decode; their handling is the caller's.
    let bytes = hex("40 e1 00 00");
    let msg = Message::decode(&bytes).unwrap();
    assert!(msg.code.is_reserved_class());
}

#[test]
fn rejectable_con_id() {
    // Malformed CONs: the MID comes back so the caller can send RST.
    assert_eq!(
        Message::rejectable_con_id(&hex("40 01 12 34 f0")),
        Some(0x1234)
    );
    assert_eq!(
        Message::rejectable_con_id(&hex("49 01 12 35")),
        Some(0x1235)
    );
    assert_eq!(
        Message::rejectable_con_id(&hex("40 01 12 36 ff")),
        Some(0x1236)
    );
    assert_eq!(
        Message::rejectable_con_id(&hex("41 00 12 37 aa")),
        Some(0x1237)
    );
    assert_eq!(
        Message::rejectable_con_id(&hex("40 01 12 38 e0 ff ff")),
        Some(0x1238)
    );
    assert_eq!(
        Message::rejectable_con_id(&hex("42 01 12 39 aa")),
        Some(0x1239)
    );
    // A well-formed CON is not rejectable by this rule.
    assert_eq!(Message::rejectable_con_id(&hex("40 01 12 34 b1 35")), None);
    assert_eq!(Message::rejectable_con_id(&hex("40 00 12 34")), None);
    // Not CON: NON, ACK, RST are never answered with RST here.
    assert_eq!(Message::rejectable_con_id(&hex("50 01 12 34 f0")), None);
    assert_eq!(Message::rejectable_con_id(&hex("60 45 12 34 ff")), None);
    assert_eq!(Message::rejectable_con_id(&hex("70 00 12 34 00")), None);
    // Unknown version: silently ignored (RFC 7252 §3), even if it looks like a CON.
    assert_eq!(Message::rejectable_con_id(&hex("80 01 12 34 f0")), None);
    assert_eq!(Message::rejectable_con_id(&hex("00 01 12 34 f0")), None);
    // No readable header.
    assert_eq!(Message::rejectable_con_id(&hex("40 01 12")), None);
    assert_eq!(Message::rejectable_con_id(&[]), None);
}

#[test]
fn writer_refusals() {
    let mut buf = [0u8; 64];
    assert_eq!(
        MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[0; 9]).unwrap_err(),
        CoapError::TokenTooLong
    );
    assert_eq!(
        MessageWriter::new(&mut buf, MessageType::Acknowledgement, Code::EMPTY, 0, &[1])
            .unwrap_err(),
        CoapError::EmptyMessageNotEmpty
    );
    assert_eq!(
        MessageWriter::new(&mut [0u8; 3], MessageType::Confirmable, Code::GET, 0, &[]).unwrap_err(),
        CoapError::BufferFull
    );
    assert_eq!(
        MessageWriter::new(
            &mut [0u8; 5],
            MessageType::Confirmable,
            Code::GET,
            0,
            &[1, 2]
        )
        .unwrap_err(),
        CoapError::BufferFull
    );
    assert!(
        MessageWriter::new(
            &mut [0u8; 6],
            MessageType::Confirmable,
            Code::GET,
            0,
            &[1, 2]
        )
        .is_ok()
    );

    // Options out of order; an equal number is fine.
    let mut w = MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
    w.option(option::URI_PATH, b"a").unwrap();
    w.option(option::URI_PATH, b"b").unwrap();
    assert_eq!(
        w.option(option::ETAG, b"x").unwrap_err(),
        CoapError::OptionsOutOfOrder
    );
    w.path("/c").unwrap();
    assert_eq!(w.finish(), 4 + 2 + 2 + 2);

    // Too long for any option header.
    let long = vec![0u8; MAX_OPTION_LEN + 1];
    let mut big = vec![0u8; MAX_OPTION_LEN + 64];
    let mut w = MessageWriter::new(&mut big, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
    assert_eq!(w.option(1, &long).unwrap_err(), CoapError::OptionTooLong);

    // Empty messages take no options and no payload.
    let mut w =
        MessageWriter::new(&mut buf, MessageType::Acknowledgement, Code::EMPTY, 7, &[]).unwrap();
    assert_eq!(
        w.option(option::URI_PATH, b"").unwrap_err(),
        CoapError::EmptyMessageNotEmpty
    );
    assert_eq!(
        w.payload(b"x").unwrap_err(),
        CoapError::EmptyMessageNotEmpty
    );
    let w =
        MessageWriter::new(&mut buf, MessageType::Acknowledgement, Code::EMPTY, 7, &[]).unwrap();
    assert_eq!(w.payload(b""), Ok(4));
}

/// Every part needs exactly its bytes: one byte less is BufferFull and leaves the message as it
/// was, so the writer can still finish it.
#[test]
fn writer_buffer_boundaries_are_exact_and_failures_atomic() {
    // 4 header + 1 token + (1 + 2 "fw") + (2 + 1 No-Response) + (1 + 3 payload) = 15.
    let full = hex("41 02 00 05 aa b2 66 77 d1 ea 01 ff 61 62 63");
    for size in 0..=full.len() {
        let mut buf = vec![0u8; size];
        let result = (|| -> Result<usize, CoapError> {
            let mut w =
                MessageWriter::new(&mut buf, MessageType::Confirmable, Code::POST, 5, &[0xaa])?;
            w.path("fw")?;
            w.uint_option(option::NO_RESPONSE, 1)?;
            w.payload(b"abc")
        })();
        if size == full.len() {
            assert_eq!(result, Ok(full.len()));
            assert_eq!(buf, full);
        } else {
            assert_eq!(result, Err(CoapError::BufferFull), "buffer of {size}");
        }
    }

    // A failed option leaves the length unchanged.
    let mut buf = [0u8; 9];
    let mut w = MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
    w.option(option::URI_PATH, b"ab").unwrap(); // 7 bytes
    assert_eq!(
        w.option(option::URI_PATH, b"cd").unwrap_err(),
        CoapError::BufferFull
    );
    assert_eq!(w.finish(), 7);

    // A path that does not fit whole writes no segment, and the order check is not advanced.
    let mut buf = [0u8; 10];
    let mut w = MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
    w.option(option::ETAG, b"e").unwrap(); // 6 bytes
    assert_eq!(w.path("/a/b/c").unwrap_err(), CoapError::BufferFull);
    w.option(option::IF_NONE_MATCH, b"").unwrap(); // 7 bytes: 5 > 4 still in order
    let len = w.finish();
    assert_eq!(len, 7);
    let msg = Message::decode(&buf[..len]).unwrap();
    assert_eq!(options_of(&msg), vec![(4, b"e".to_vec()), (5, vec![])]);
}

#[derive(Debug, PartialEq)]
enum EncodeError {
    Coap(CoapError),
    Mine,
}

impl From<CoapError> for EncodeError {
    fn from(e: CoapError) -> Self {
        EncodeError::Coap(e)
    }
}

#[test]
fn payload_with() {
    // 4 header + 1 Content-Format (0xc0).
    fn new(buf: &mut [u8]) -> MessageWriter<'_> {
        let mut w =
            MessageWriter::new(buf, MessageType::Acknowledgement, Code::CONTENT, 9, &[]).unwrap();
        w.uint_option(option::CONTENT_FORMAT, 0).unwrap();
        w
    }

    // The closure writes into the buffer after room for the marker.
    let mut buf = [0u8; 16];
    let len = new(&mut buf)
        .payload_with(|out: &mut [u8]| -> Result<usize, EncodeError> {
            assert_eq!(out.len(), 16 - 6);
            out[..2].copy_from_slice(b"hi");
            Ok(2)
        })
        .unwrap();
    assert_eq!(&buf[..len], &hex("60 45 00 09 c0 ff 68 69")[..]);

    // Nothing written: no marker.
    let mut buf = [0x77u8; 16];
    let len = new(&mut buf)
        .payload_with(|_| -> Result<usize, EncodeError> { Ok(0) })
        .unwrap();
    assert_eq!(len, 5);
    assert_eq!(Message::decode(&buf[..len]).unwrap().payload, b"");

    // The closure's error passes through.
    let mut buf = [0u8; 16];
    assert_eq!(
        new(&mut buf).payload_with(|_| Err(EncodeError::Mine)),
        Err(EncodeError::Mine)
    );

    // A count beyond the space given is refused.
    let mut buf = [0u8; 16];
    assert_eq!(
        new(&mut buf).payload_with(|out: &mut [u8]| Ok::<_, EncodeError>(out.len() + 1)),
        Err(EncodeError::Coap(CoapError::BufferFull))
    );

    // No room even for the marker: the closure gets an empty slice.
    let mut buf = [0u8; 5];
    assert_eq!(
        new(&mut buf).payload_with(|out: &mut [u8]| -> Result<usize, EncodeError> {
            assert!(out.is_empty());
            Ok(0)
        }),
        Ok(5)
    );
    let mut buf = [0u8; 6];
    assert_eq!(
        new(&mut buf).payload_with(|out: &mut [u8]| -> Result<usize, EncodeError> {
            assert!(out.is_empty());
            Ok(1)
        }),
        Err(EncodeError::Coap(CoapError::BufferFull))
    );

    // An Empty message takes no payload this way either.
    let mut buf = [0u8; 16];
    let w = MessageWriter::new(&mut buf, MessageType::Reset, Code::EMPTY, 1, &[]).unwrap();
    assert_eq!(
        w.payload_with(|_| Ok::<_, EncodeError>(1)),
        Err(EncodeError::Coap(CoapError::EmptyMessageNotEmpty))
    );
}

// ---------------------------------------------------------------------------------------------
// Accessors

#[test]
fn accessors() {
    // Uri-Path 5 / 0 / 3, Content-Format 11542 (0x2d16, TLV) with a leading zero byte,
    // Uri-Query "ep=a" and "lt=60", Size1 as 5 bytes (too long for a uint).
    let bytes = write(
        MessageType::Confirmable,
        Code::PUT,
        0x0042,
        &[0xde, 0xad],
        &[
            (option::URI_PATH, b"5"),
            (option::URI_PATH, b"0"),
            (option::URI_PATH, b"3"),
            (option::CONTENT_FORMAT, &[0x00, 0x2d, 0x16]),
            (option::URI_QUERY, b"ep=a"),
            (option::URI_QUERY, b"lt=60"),
            (option::SIZE1, &[0, 0, 0, 0, 1]),
        ],
        b"\x01",
    );
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.token(), [0xde, 0xad]);
    assert_eq!(
        msg.path().collect::<Vec<_>>(),
        vec![&b"5"[..], &b"0"[..], &b"3"[..]]
    );
    assert_eq!(
        msg.queries().collect::<Vec<_>>(),
        vec![&b"ep=a"[..], &b"lt=60"[..]]
    );
    assert_eq!(msg.option(option::URI_PATH), Some(&b"5"[..]));
    assert_eq!(msg.option(option::URI_QUERY), Some(&b"ep=a"[..]));
    assert_eq!(msg.option(option::ACCEPT), None);
    assert_eq!(msg.uint_option(option::CONTENT_FORMAT), Ok(Some(11542)));
    assert_eq!(msg.uint_option(option::ACCEPT), Ok(None));
    assert_eq!(msg.uint_option(option::SIZE1), Err(CoapError::BadUint));
    assert_eq!(msg.payload, [0x01]);

    // Four bytes is the longest uint.
    let bytes = write(
        MessageType::Confirmable,
        Code::GET,
        0,
        &[],
        &[(option::SIZE2, &[0xff, 0xff, 0xff, 0xff])],
        b"",
    );
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.uint_option(option::SIZE2), Ok(Some(u32::MAX)));

    // The writer's uint options are the shortest: 0 empty, 255 one byte, 256 two bytes.
    let bytes = write_uints(&[
        (option::OBSERVE, 0),
        (option::MAX_AGE, 255),
        (option::ACCEPT, 256),
    ]);
    assert_eq!(bytes, hex("40 01 00 00  60  81 ff  32 01 00"));
    let bytes = write_uints(&[(option::SIZE1, u32::MAX)]);
    // Size1 (60) = 13 + 47: 0xd4 0x2f, then four bytes.
    assert_eq!(bytes, hex("40 01 00 00  d4 2f ff ff ff ff"));
}

fn write_uints(options: &[(u16, u32)]) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let mut w = MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
    for &(n, v) in options {
        w.uint_option(n, v).unwrap();
    }
    let len = w.finish();
    buf[..len].to_vec()
}

#[test]
fn unknown_critical_option() {
    // Uri-Path (11, critical), Content-Format (12, elective), Block2 (23, critical),
    // No-Response (258, elective), 2049 (odd: critical, unknown).
    let bytes = write(
        MessageType::Confirmable,
        Code::GET,
        0,
        &[],
        &[(11, b"x"), (12, b""), (23, b""), (258, b""), (2049, b"")],
        b"",
    );
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.unknown_critical_option(&[11, 23]), Some(2049));
    assert_eq!(msg.unknown_critical_option(&[11]), Some(23));
    assert_eq!(msg.unknown_critical_option(&[]), Some(11));
    // Electives are never reported, even if unknown.
    assert_eq!(msg.unknown_critical_option(&[11, 23, 2049]), None);
}

/// RFC 7252 §5.10 Table 4, columns C (critical), U (unsafe) and N (no cache key).
#[test]
fn option_properties_match_table_4() {
    #[rustfmt::skip]
    let table: &[(u16, bool, bool, bool)] = &[
        (option::IF_MATCH, true, false, false),
        (option::URI_HOST, true, true, false),
        (option::ETAG, false, false, false),
        (option::IF_NONE_MATCH, true, false, false),
        (option::URI_PORT, true, true, false),
        (option::LOCATION_PATH, false, false, false),
        (option::URI_PATH, true, true, false),
        (option::CONTENT_FORMAT, false, false, false),
        (option::MAX_AGE, false, true, false),
        (option::URI_QUERY, true, true, false),
        (option::ACCEPT, true, false, false),
        (option::LOCATION_QUERY, false, false, false),
        (option::PROXY_URI, true, true, false),
        (option::PROXY_SCHEME, true, true, false),
        (option::SIZE1, false, false, true),
    ];
    for &(n, c, u, nck) in table {
        assert_eq!(option::is_critical(n), c, "C of {n}");
        assert_eq!(option::is_unsafe(n), u, "U of {n}");
        assert_eq!(option::is_no_cache_key(n), nck, "N of {n}");
    }
    // RFC 7252 §5.4.6: NoCacheKey is `(onum & 0x1e) == 0x1c`: Size2 (28, RFC 7959) has it;
    // 30 and 62 have bit 1 set as well, so they do not.
    assert!(option::is_no_cache_key(option::SIZE2));
    assert!(!option::is_no_cache_key(30));
    assert!(!option::is_no_cache_key(62));
    assert!(option::is_no_cache_key(92));
    // The numbers themselves (RFC 7252 Table 4, RFC 7641, RFC 7959, RFC 7967), in `ALL`.
    assert_eq!(
        option::ALL,
        [
            1, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 17, 20, 23, 27, 28, 35, 39, 60, 258
        ]
    );
    // Block1, Block2 critical; Size2, Observe, No-Response elective.
    assert!(option::is_critical(option::BLOCK1) && option::is_critical(option::BLOCK2));
    assert!(!option::is_critical(option::SIZE2));
    assert!(!option::is_critical(option::OBSERVE));
    assert!(!option::is_critical(option::NO_RESPONSE));
}

#[test]
fn codes() {
    // class << 5 | detail, by hand.
    let table: &[(Code, u8, &str)] = &[
        (Code::EMPTY, 0x00, "0.00"),
        (Code::GET, 0x01, "0.01"),
        (Code::POST, 0x02, "0.02"),
        (Code::PUT, 0x03, "0.03"),
        (Code::DELETE, 0x04, "0.04"),
        (Code::FETCH, 0x05, "0.05"),
        (Code::CREATED, 0x41, "2.01"),
        (Code::DELETED, 0x42, "2.02"),
        (Code::VALID, 0x43, "2.03"),
        (Code::CHANGED, 0x44, "2.04"),
        (Code::CONTENT, 0x45, "2.05"),
        (Code::CONTINUE, 0x5f, "2.31"),
        (Code::BAD_REQUEST, 0x80, "4.00"),
        (Code::UNAUTHORIZED, 0x81, "4.01"),
        (Code::BAD_OPTION, 0x82, "4.02"),
        (Code::FORBIDDEN, 0x83, "4.03"),
        (Code::NOT_FOUND, 0x84, "4.04"),
        (Code::METHOD_NOT_ALLOWED, 0x85, "4.05"),
        (Code::NOT_ACCEPTABLE, 0x86, "4.06"),
        (Code::REQUEST_ENTITY_INCOMPLETE, 0x88, "4.08"),
        (Code::PRECONDITION_FAILED, 0x8c, "4.12"),
        (Code::REQUEST_ENTITY_TOO_LARGE, 0x8d, "4.13"),
        (Code::UNSUPPORTED_CONTENT_FORMAT, 0x8f, "4.15"),
        (Code::INTERNAL_SERVER_ERROR, 0xa0, "5.00"),
        (Code::NOT_IMPLEMENTED, 0xa1, "5.01"),
        (Code::SERVICE_UNAVAILABLE, 0xa3, "5.03"),
    ];
    for &(code, byte, text) in table {
        assert_eq!(code.0, byte, "{text}");
        assert_eq!(code.to_string(), text);
    }
    assert_eq!((Code::CONTINUE.class(), Code::CONTINUE.detail()), (2, 31));
    assert_eq!((Code(0xff).class(), Code(0xff).detail()), (7, 31));
    assert_eq!(Code::from_parts(4, 4), Some(Code::NOT_FOUND));
    assert_eq!(Code::from_parts(8, 0), None);
    assert_eq!(Code::from_parts(0, 32), None);

    assert!(Code::GET.is_request() && !Code::GET.is_response());
    assert!(!Code::EMPTY.is_request() && !Code::EMPTY.is_response() && Code::EMPTY.is_empty());
    assert!(Code::CONTENT.is_response() && Code::CONTENT.is_success());
    assert!(Code::NOT_FOUND.is_response() && !Code::NOT_FOUND.is_success());
    assert!(Code::SERVICE_UNAVAILABLE.is_response());
    for reserved in [Code(0x20), Code(0xc0), Code(0xe0)] {
        assert!(!reserved.is_request() && !reserved.is_response() && !reserved.is_success());
        assert!(reserved.is_reserved_class());
    }
    // Display agrees with coap-lite for every byte.
    for byte in 0..=255u8 {
        assert_eq!(Code(byte).to_string(), MessageClass::from(byte).to_string());
    }
}

#[test]
fn message_type_bits() {
    for (ty, bits, text) in [
        (MessageType::Confirmable, 0, "CON"),
        (MessageType::NonConfirmable, 1, "NON"),
        (MessageType::Acknowledgement, 2, "ACK"),
        (MessageType::Reset, 3, "RST"),
    ] {
        assert_eq!(ty.bits(), bits);
        assert_eq!(MessageType::from_bits(bits), ty);
        assert_eq!(ty.to_string(), text);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties, and the cross-check with coap-lite

/// A message as plain data, the common ground between this codec and coap-lite.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    ty: u8,
    code: u8,
    mid: u16,
    token: Vec<u8>,
    options: Vec<(u16, Vec<u8>)>,
    payload: Vec<u8>,
}

fn option_number() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => 0u16..=40,
        2 => 0u16..=600,
        1 => any::<u16>(),
        1 => Just(65535u16),
    ]
}

fn option_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..=14),
        2 => vec(any::<u8>(), 0..=300),
        1 => vec(any::<u8>(), 260..=600),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    (
        0u8..4,
        prop_oneof![4 => any::<u8>(), 1 => Just(0u8), 1 => Just(0x45u8)],
        any::<u16>(),
        vec(any::<u8>(), 0..=8),
        vec((option_number(), option_value()), 0..8),
        prop_oneof![vec(any::<u8>(), 0..4), vec(any::<u8>(), 0..200)],
    )
        .prop_map(|(ty, code, mid, mut token, mut options, mut payload)| {
            // Stable: repeated options keep their order, as both codecs do.
            options.sort_by_key(|(n, _)| *n);
            if code == 0 {
                token.clear();
                options.clear();
                payload.clear();
            }
            Model {
                ty,
                code,
                mid,
                token,
                options,
                payload,
            }
        })
}

fn write_ours(m: &Model) -> Vec<u8> {
    let mut buf = vec![0u8; 8192];
    let mut w = MessageWriter::new(
        &mut buf,
        MessageType::from_bits(m.ty),
        Code(m.code),
        m.mid,
        &m.token,
    )
    .unwrap();
    for (n, v) in &m.options {
        w.option(*n, v).unwrap();
    }
    let len = w.payload(&m.payload).unwrap();
    buf.truncate(len);
    buf
}

fn lite_type(ty: u8) -> coap_lite::MessageType {
    match ty {
        0 => coap_lite::MessageType::Confirmable,
        1 => coap_lite::MessageType::NonConfirmable,
        2 => coap_lite::MessageType::Acknowledgement,
        _ => coap_lite::MessageType::Reset,
    }
}

fn write_lite(m: &Model) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(lite_type(m.ty));
    p.header.code = MessageClass::from(m.code);
    p.header.message_id = m.mid;
    p.set_token(m.token.clone());
    for (n, v) in &m.options {
        p.add_option(CoapOption::from(*n), v.clone());
    }
    p.payload = m.payload.clone();
    p.to_bytes_unlimited().unwrap()
}

fn model_of_ours(msg: &Message<'_>) -> Model {
    Model {
        ty: msg.ty.bits(),
        code: msg.code.0,
        mid: msg.message_id,
        token: msg.token().to_vec(),
        options: options_of(msg),
        payload: msg.payload.to_vec(),
    }
}

fn model_of_lite(p: &Packet) -> Model {
    let ty = match p.header.get_type() {
        coap_lite::MessageType::Confirmable => 0,
        coap_lite::MessageType::NonConfirmable => 1,
        coap_lite::MessageType::Acknowledgement => 2,
        coap_lite::MessageType::Reset => 3,
    };
    Model {
        ty,
        code: u8::from(p.header.code),
        mid: p.header.message_id,
        token: p.get_token().to_vec(),
        options: p
            .options()
            .flat_map(|(n, values)| values.iter().map(move |v| (*n, v.clone())))
            .collect(),
        payload: p.payload.clone(),
    }
}

/// Inputs that get past the header often: a version-1 first byte with a small TKL, then
/// random bytes; plus fully random bytes.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..48),
        (
            0u8..4,
            0u8..10,
            any::<u8>(),
            any::<u16>(),
            vec(any::<u8>(), 0..64)
        )
            .prop_map(|(ty, tkl, code, mid, tail)| {
                let mut v = vec![0x40 | ty << 4 | tkl, code];
                v.extend(mid.to_be_bytes());
                v.extend(tail);
                v
            }),
    ]
}

/// A valid message with some bytes changed and maybe cut short.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        model(),
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(m, edits, cut)| {
            let mut bytes = write_ours(&m);
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let keep = cut.index(bytes.len() + 1);
            if keep > 4 {
                bytes.truncate(keep);
            }
            bytes
        })
}

/// What decoding arbitrary bytes must satisfy.
fn check_any_datagram(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ours = Message::decode(bytes);
    let lite = Packet::from_bytes(bytes);
    let con_v1 = bytes.len() >= 4 && bytes[0] >> 6 == 1 && (bytes[0] >> 4) & 3 == 0;
    match ours {
        Ok(msg) => {
            // Writing the decoded fields back gives the same bytes (canonical encoding).
            let model = model_of_ours(&msg);
            prop_assert_eq!(write_ours(&model), bytes);
            // coap-lite reads the same message.
            let lite = lite.map_err(|e| TestCaseError::fail(format!("coap-lite: {e:?}")))?;
            prop_assert_eq!(model_of_lite(&lite), model);
            prop_assert_eq!(Message::rejectable_con_id(bytes), None);
        }
        Err(e) => {
            if lite.is_ok() {
                // coap-lite checks neither the version, nor the Empty-message rule, nor an
                // empty payload after the marker; everything else both refuse.
                prop_assert!(
                    matches!(
                        e,
                        CoapError::BadVersion
                            | CoapError::EmptyMessageNotEmpty
                            | CoapError::EmptyPayload
                    ),
                    "we refuse with {:?}, coap-lite accepts",
                    e
                );
            }
            let expected_rst = con_v1.then(|| u16::from_be_bytes([bytes[2], bytes[3]]));
            prop_assert_eq!(Message::rejectable_con_id(bytes), expected_rst);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Never panics on any bytes; a decoded message re-encodes to the same bytes and coap-lite
    /// agrees with it.
    #[test]
    fn arbitrary_datagrams(bytes in datagram()) {
        check_any_datagram(&bytes)?;
    }

    /// The same for damaged valid messages, which reach deep into the options.
    #[test]
    fn mutated_messages(bytes in mutated()) {
        check_any_datagram(&bytes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Write → decode gives back every field.
    #[test]
    fn write_decode_round_trip(m in model()) {
        let bytes = write_ours(&m);
        let msg = Message::decode(&bytes).unwrap();
        prop_assert_eq!(model_of_ours(&msg), m.clone());
        // The per-number accessors agree with the option list.
        for (n, _) in &m.options {
            let all: Vec<Vec<u8>> =
                m.options.iter().filter(|(k, _)| k == n).map(|(_, v)| v.clone()).collect();
            let got: Vec<Vec<u8>> = msg.option_values(*n).map(<[u8]>::to_vec).collect();
            prop_assert_eq!(&got, &all);
            prop_assert_eq!(msg.option(*n), all.first().map(Vec::as_slice));
        }
    }

    /// Ours → coap-lite: coap-lite decodes what we write to the same fields, and its encoder
    /// produces byte-for-byte what ours does.
    #[test]
    fn coap_lite_reads_what_we_write(m in model()) {
        let bytes = write_ours(&m);
        let packet = Packet::from_bytes(&bytes).unwrap();
        prop_assert_eq!(model_of_lite(&packet), m.clone());
        prop_assert_eq!(write_lite(&m), bytes);
    }

    /// coap-lite → ours: we decode what coap-lite writes to the same fields.
    #[test]
    fn we_read_what_coap_lite_writes(m in model()) {
        let bytes = write_lite(&m);
        let msg = Message::decode(&bytes).unwrap();
        prop_assert_eq!(model_of_ours(&msg), m);
    }
}

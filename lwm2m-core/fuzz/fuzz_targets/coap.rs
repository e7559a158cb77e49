//! CoAP messages: never panic; a decoded message written back with `MessageWriter` (into a
//! buffer of exactly its size) gives the same bytes (the option encoding is canonical) and
//! decodes to the same message; a datagram that does not decode is RST-able exactly when it is a
//! version-1 CON with a readable header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::coap::{CoapError, Message, MessageType, MessageWriter, option};

fn rewrite(msg: &Message<'_>, buf: &mut [u8], with_closure: bool) -> Result<usize, CoapError> {
    let mut w = MessageWriter::new(buf, msg.ty, msg.code, msg.message_id, msg.token())?;
    for (number, value) in msg.options() {
        w.option(number, value)?;
    }
    if with_closure {
        w.payload_with(|out: &mut [u8]| {
            let dst = out
                .get_mut(..msg.payload.len())
                .ok_or(CoapError::BufferFull)?;
            dst.copy_from_slice(msg.payload);
            Ok::<_, CoapError>(msg.payload.len())
        })
    } else {
        w.payload(msg.payload)
    }
}

fuzz_target!(|data: &[u8]| {
    match Message::decode(data) {
        Ok(msg) => {
            assert_eq!(Message::rejectable_con_id(data), None);
            for with_closure in [false, true] {
                let mut buf = vec![0u8; data.len()];
                let len = rewrite(&msg, &mut buf, with_closure).expect("re-encode");
                assert_eq!(&buf[..len], data);
                assert_eq!(Message::decode(&buf[..len]), Ok(msg));
                // One byte less never fits.
                if !data.is_empty() {
                    let mut short = vec![0u8; data.len() - 1];
                    assert_eq!(
                        rewrite(&msg, &mut short, with_closure),
                        Err(CoapError::BufferFull)
                    );
                }
            }
            // The accessors agree with the option list.
            let mut previous = 0u16;
            for (number, value) in msg.options() {
                assert!(number >= previous);
                previous = number;
                assert!(msg.option_values(number).any(|v| core::ptr::eq(v, value)));
            }
            assert_eq!(
                msg.path().count(),
                msg.options()
                    .filter(|(n, _)| *n == option::URI_PATH)
                    .count()
            );
            assert_eq!(
                msg.queries().count(),
                msg.options()
                    .filter(|(n, _)| *n == option::URI_QUERY)
                    .count()
            );
            let first = msg.option(option::CONTENT_FORMAT);
            match msg.uint_option(option::CONTENT_FORMAT) {
                Ok(None) => assert!(first.is_none()),
                Ok(Some(_)) => assert!(first.is_some_and(|v| v.len() <= 4)),
                Err(e) => {
                    assert_eq!(e, CoapError::BadUint);
                    assert!(first.is_some_and(|v| v.len() > 4));
                }
            }
            if let Some(n) = msg.unknown_critical_option(&[option::URI_PATH]) {
                assert!(n % 2 == 1 && n != option::URI_PATH);
            }
            assert!(msg.token().len() <= 8);
            if msg.code.is_empty() {
                assert!(
                    msg.token().is_empty()
                        && msg.options().next().is_none()
                        && msg.payload.is_empty()
                );
            }
        }
        Err(_) => {
            let rst = data.len() >= 4
                && data[0] >> 6 == 1
                && MessageType::from_bits(data[0] >> 4) == MessageType::Confirmable;
            let expected = rst.then(|| u16::from_be_bytes([data[2], data[3]]));
            assert_eq!(Message::rejectable_con_id(data), expected);
        }
    }
});

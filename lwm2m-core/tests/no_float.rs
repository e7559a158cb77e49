//! The device's build of lwm2m-core (without the `float` feature): every codec refuses a float
//! with a precise error and keeps working for everything else; SenML times are checked and
//! skipped. Run by `cargo test -p lwm2m-core --test no_float` (scripts/test.sh does); with the
//! feature on this file is empty.
#![cfg(not(feature = "float"))]

mod support;

use lwm2m_core::content::Value;
use lwm2m_core::content::senml_cbor::{SenmlError, SenmlReader, SenmlWriter};
use lwm2m_core::content::text::{self, TextError};
use lwm2m_core::content::tlv::{TlvError, TlvWriter};
use support::hex;

#[test]
fn text_refuses_a_float_and_writes_the_rest() {
    let mut buf = [0u8; 32];
    assert_eq!(
        text::encode_value(&mut buf, &Value::Float(1.5)),
        Err(TextError::FloatUnsupported)
    );
    assert_eq!(text::encode_value(&mut buf, &Value::Integer(-42)), Ok(3));
    assert_eq!(&buf[..3], b"-42");
    assert_eq!(
        TextError::FloatUnsupported.to_string(),
        "no float support in this build"
    );
}

#[test]
fn tlv_refuses_a_float_and_writes_the_rest() {
    let mut buf = [0u8; 32];
    let mut w = TlvWriter::new(&mut buf);
    assert_eq!(
        w.resource_value(1, &Value::Float(0.5)).err(),
        Some(TlvError::FloatUnsupported)
    );
    // The writer is unchanged by the refusal: the next value goes where the float would have.
    assert!(w.resource_value(2, &Value::Integer(7)).is_ok());
    let n = w.len();
    assert_eq!(&buf[..n], &hex("c1 02 07")[..]);
}

#[test]
fn senml_refuses_a_float_value_both_ways() {
    // [{0: "/1/0/1", 2: 1.5 (f32)}]
    let payload = hex("81 a2 00 66 2f 31 2f 30 2f 31 02 fa 3f c0 00 00");
    let first = SenmlReader::new(&payload).unwrap().next().unwrap();
    assert_eq!(first.err(), Some(SenmlError::FloatUnsupported));
    let mut buf = [0u8; 64];
    let mut w = SenmlWriter::absolute(&mut buf);
    assert_eq!(
        w.record(&[1, 0, 1], Some(&Value::Float(1.5))).err(),
        Some(SenmlError::FloatUnsupported)
    );
    // Nothing of the refused record stays: the payload is the one integer record after it.
    w.record(&[1, 0, 2], Some(&Value::Integer(7))).unwrap();
    assert_eq!(
        w.finish().unwrap(),
        &hex("81 a2 00 66 2f 31 2f 30 2f 32 02 07")[..]
    );
}

#[test]
fn senml_times_sums_and_unknown_floats_are_checked_and_skipped() {
    // [{-3: 1.5e9 (f64), 0: "/5/0/1", 6: 4([-1, 15]), 3: "coap://x"}, {0: "/5/0/3", 5: 2.5 (f16), 2: 7}]
    let payload = hex(
        "82 a4 22 fb 41 d6 5a 0b c0 00 00 00 00 66 2f 35 2f 30 2f 31 06 c4 82 20 0f 03 68 63 6f 61 \
         70 3a 2f 2f 78 a3 00 66 2f 35 2f 30 2f 33 05 f9 41 00 02 07",
    );
    let records: Vec<_> = SenmlReader::new(&payload)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].path, lwm2m_core::Path::parse("/5/0/1").unwrap());
    assert_eq!(records[0].value, Some(Value::String("coap://x")));
    assert_eq!(records[1].value, Some(Value::Integer(7)));
    // A float cut short is still an error, not skipped past the end.
    let cut = hex("81 a1 06 fb 41 d6");
    let err = SenmlReader::new(&cut).unwrap().next().unwrap().err();
    assert_eq!(err, Some(SenmlError::Truncated));
}

#[test]
fn a_float_value_displays_as_its_bits() {
    assert_eq!(Value::Float(1.0).to_string(), "f64:0x3ff0000000000000");
}

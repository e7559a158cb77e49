//! Plain text: never panic; every accepted value prints and parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::content::{Value, text};

fn reparse<T: PartialEq + std::fmt::Debug>(
    v: Value<'_>,
    parse: impl Fn(&[u8]) -> Result<T, text::TextError>,
    expect: T,
) {
    let mut buf = [0u8; 512];
    let n = text::encode_value(&mut buf, &v).expect("fits");
    assert_eq!(parse(&buf[..n]), Ok(expect));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = text::parse_integer(data) {
        reparse(Value::Integer(v), text::parse_integer, v);
    }
    if let Ok(v) = text::parse_unsigned(data) {
        reparse(Value::Unsigned(v), text::parse_unsigned, v);
    }
    if let Ok(v) = text::parse_float(data) {
        let mut buf = [0u8; 512];
        let n = text::encode_value(&mut buf, &Value::Float(v)).expect("fits");
        assert_eq!(
            text::parse_float(&buf[..n]).map(f64::to_bits),
            Ok(v.to_bits())
        );
    }
    if let Ok(v) = text::parse_bool(data) {
        reparse(Value::Boolean(v), text::parse_bool, v);
        assert_eq!(data, if v { b"1" } else { b"0" });
    }
    if let Ok((o, i)) = text::parse_objlnk(data) {
        reparse(Value::ObjLink(o, i), text::parse_objlnk, (o, i));
    }
    if let Ok(s) = text::parse_string(data) {
        let mut buf = vec![0u8; data.len()];
        let n = text::encode_value(&mut buf, &Value::String(s)).expect("fits");
        assert_eq!(&buf[..n], data);
    }
});

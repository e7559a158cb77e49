//! Plain text: accepted forms, strict refusals, formatting, and round trips.

use lwm2m_core::SliceWriter;
use lwm2m_core::content::Value;
use lwm2m_core::content::text::{self, TextError};
use proptest::prelude::*;

fn show(v: Value<'_>) -> String {
    let mut s = String::new();
    text::write_value(&mut s, &v).unwrap();
    s
}

#[test]
fn integers() {
    assert_eq!(text::parse_integer(b"0"), Ok(0));
    assert_eq!(text::parse_integer(b"-1"), Ok(-1));
    assert_eq!(text::parse_integer(b"1367491215"), Ok(1_367_491_215));
    assert_eq!(text::parse_integer(b"007"), Ok(7));
    assert_eq!(text::parse_integer(b"9223372036854775807"), Ok(i64::MAX));
    assert_eq!(text::parse_integer(b"-9223372036854775808"), Ok(i64::MIN));
    assert_eq!(
        text::parse_integer(b"9223372036854775808"),
        Err(TextError::Overflow)
    );
    assert_eq!(
        text::parse_integer(b"-9223372036854775809"),
        Err(TextError::Overflow)
    );
    for bad in [
        &b"+1"[..],
        b" 1",
        b"1 ",
        b"1.0",
        b"0x10",
        b"1e3",
        b"--1",
        b"1-",
    ] {
        assert_eq!(
            text::parse_integer(bad),
            Err(TextError::InvalidChar),
            "{bad:?}"
        );
    }
    assert_eq!(text::parse_integer(b""), Err(TextError::Empty));
    assert_eq!(text::parse_integer(b"-"), Err(TextError::Empty));
    assert_eq!(show(Value::Integer(-42)), "-42");
}

#[test]
fn unsigned() {
    assert_eq!(text::parse_unsigned(b"18446744073709551615"), Ok(u64::MAX));
    assert_eq!(
        text::parse_unsigned(b"18446744073709551616"),
        Err(TextError::Overflow)
    );
    assert_eq!(text::parse_unsigned(b"-1"), Err(TextError::InvalidChar));
    assert_eq!(text::parse_unsigned(b""), Err(TextError::Empty));
    assert_eq!(show(Value::Unsigned(u64::MAX)), "18446744073709551615");
}

#[test]
fn floats() {
    let good: [(&[u8], f64); 8] = [
        (b"1.5", 1.5),
        (b"-0.25", -0.25),
        (b"3", 3.0),
        (b"1e3", 1000.0),
        (b"1E3", 1000.0),
        (b"2.5e-3", 0.0025),
        (b"2.5e+3", 2500.0),
        (b"-0", -0.0),
    ];
    for (t, v) in good {
        assert_eq!(text::parse_float(t), Ok(v), "{t:?}");
    }
    for bad in [
        &b"+1.5"[..],
        b".5",
        b"5.",
        b"1e",
        b"1e+",
        b" 1",
        b"inf",
        b"NaN",
        b"1,5",
        b"0x1p3",
    ] {
        assert_eq!(
            text::parse_float(bad),
            Err(TextError::InvalidChar),
            "{bad:?}"
        );
    }
    assert_eq!(text::parse_float(b""), Err(TextError::Empty));
    assert_eq!(text::parse_float(b"1e400"), Err(TextError::Overflow));
    // Plain decimal in the middle range, exponent outside it.
    assert_eq!(show(Value::Float(1.5)), "1.5");
    assert_eq!(show(Value::Float(0.00001)), "0.00001");
    assert_eq!(show(Value::Float(1e-6)), "1e-6");
    assert_eq!(show(Value::Float(1e20)), "1e20");
    assert_eq!(show(Value::Float(-0.0)), "-0");
    assert_eq!(
        text::write_float(&mut String::new(), f64::NAN),
        Err(TextError::NotFinite)
    );
    assert_eq!(
        text::write_float(&mut String::new(), f64::INFINITY),
        Err(TextError::NotFinite)
    );
}

#[test]
fn booleans_strings_objlnks() {
    assert_eq!(text::parse_bool(b"0"), Ok(false));
    assert_eq!(text::parse_bool(b"1"), Ok(true));
    assert_eq!(text::parse_bool(b""), Err(TextError::Empty));
    for bad in [&b"2"[..], b"true", b"01", b" 1"] {
        assert_eq!(text::parse_bool(bad), Err(TextError::InvalidBoolean));
    }
    assert_eq!(show(Value::Boolean(true)), "1");
    // The spec's plain-text example: GET /3/0/0 answers "Open Mobile Alliance".
    assert_eq!(
        text::parse_string(b"Open Mobile Alliance"),
        Ok("Open Mobile Alliance")
    );
    assert_eq!(text::parse_string(&[0xff]), Err(TextError::InvalidUtf8));
    assert_eq!(text::parse_objlnk(b"3:0"), Ok((3, 0)));
    assert_eq!(text::parse_objlnk(b"65535:65535"), Ok((65535, 65535)));
    for bad in [
        &b"3"[..],
        b":0",
        b"3:",
        b"3:65536",
        b"3:0:1",
        b"a:0",
        b"3 :0",
    ] {
        assert_eq!(
            text::parse_objlnk(bad),
            Err(TextError::InvalidObjLink),
            "{bad:?}"
        );
    }
    assert_eq!(show(Value::ObjLink(3, 0)), "3:0");
    assert_eq!(
        text::write_value(&mut String::new(), &Value::Opaque(b"x")),
        Err(TextError::Opaque)
    );
}

#[test]
fn slice_output() {
    let mut buf = [0u8; 4];
    assert_eq!(text::encode_value(&mut buf, &Value::Integer(-123)), Ok(4));
    assert_eq!(&buf, b"-123");
    assert_eq!(
        text::encode_value(&mut buf, &Value::Integer(12345)),
        Err(TextError::BufferFull)
    );
    let mut w = SliceWriter::new(&mut buf);
    assert_eq!(text::write_float(&mut w, 0.5), Ok(()));
    assert_eq!(w.as_str(), "0.5");
}

proptest! {
    #[test]
    fn integer_round_trip(v: i64) {
        prop_assert_eq!(text::parse_integer(show(Value::Integer(v)).as_bytes()), Ok(v));
    }

    #[test]
    fn unsigned_round_trip(v: u64) {
        prop_assert_eq!(text::parse_unsigned(show(Value::Unsigned(v)).as_bytes()), Ok(v));
    }

    #[test]
    fn float_round_trip(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
        let back = text::parse_float(show(Value::Float(v)).as_bytes()).unwrap();
        prop_assert_eq!(back.to_bits(), v.to_bits());
    }

    #[test]
    fn bool_objlnk_string_round_trip(b: bool, o: u16, i: u16, s in "\\PC{0,30}") {
        prop_assert_eq!(text::parse_bool(show(Value::Boolean(b)).as_bytes()), Ok(b));
        prop_assert_eq!(text::parse_objlnk(show(Value::ObjLink(o, i)).as_bytes()), Ok((o, i)));
        let shown = show(Value::String(&s));
        prop_assert_eq!(text::parse_string(shown.as_bytes()), Ok(s.as_str()));
    }

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..30)) {
        let _ = text::parse_integer(&bytes);
        let _ = text::parse_unsigned(&bytes);
        let _ = text::parse_float(&bytes);
        let _ = text::parse_bool(&bytes);
        let _ = text::parse_string(&bytes);
        let _ = text::parse_objlnk(&bytes);
    }

    #[test]
    fn number_like_text_never_panics(s in "[-+0-9.eE:]{0,30}") {
        if let Ok(v) = text::parse_float(s.as_bytes()) {
            prop_assert!(v.is_finite());
        }
        let _ = text::parse_integer(s.as_bytes());
        let _ = text::parse_objlnk(s.as_bytes());
    }
}

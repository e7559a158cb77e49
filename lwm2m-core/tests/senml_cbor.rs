//! SenML-CBOR: the RFC 8428 example, a real LwM2M server's payload, an independent encoder's
//! expected bytes, payloads worked out by hand, every error variant, and round trips.

mod support;
use support::hex;

use lwm2m_core::content::Value;
use lwm2m_core::content::senml_cbor::{
    RawRecord, RawSenmlReader, Record, SenmlError, SenmlReader, SenmlWriter,
    encode_multiple_resource, encode_single,
};
use lwm2m_core::{Path, PathError};
use proptest::prelude::*;

/// RFC 8428 §6: the CBOR representation of the §5.1.2 "multiple data points" pack (as quoted
/// by several CBOR libraries' test suites that cite §6).
const RFC8428_EXAMPLE: &str = "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b00106223614120050067766f6c7461676501615602fb405e066666666666a3006763757272656e74062402fb3ff3333333333333a3006763757272656e74062302fb3ff4cccccccccccda3006763757272656e74062202fb3ff6666666666666a3006763757272656e74062102f93e00a3006763757272656e74062002fb3ff999999999999aa3006763757272656e74060002fb3ffb333333333333";

/// A bootstrap Write to /0 sent by AVSystem's Coiote server, logged in
/// eclipse-leshan/leshan#984: 13 records, base name "/0/", vs / v / vd / vb values. The two
/// 24-byte secret keys (/0/1/5, /0/2/5) are replaced by `x` bytes so no credential sits in the repo.
const COIOTE_BOOTSTRAP: &str = "
8d a3 21 63 2f 30 2f 00 63 31 2f 30 03 78 23 63 6f 61 70 73 3a 2f 2f 6c 77 6d 32 6d 2d 74 65 73
74 2e 61 76 73 79 73 74 65 6d 2e 69 6f 3a 35 36 39 34 a2 00 63 31 2f 32 02 00 a2 00 63 31 2f 33
08 47 74 65 73 74 2d 6a 62 a2 00 63 31 2f 35 08 58 18 78 78 78 78 78 78 78 78 78 78 78 78 78 78
78 78 78 78 78 78 78 78 78 78 a2 00 63 31 2f 34 08 40 a2 00 63 31 2f 31 04 f5 a2 00 63 32 2f 30
03 78 23 63 6f 61 70 73 3a 2f 2f 6c 77 6d 32 6d 2d 74 65 73 74 2e 61 76 73 79 73 74 65 6d 2e 69
6f 3a 35 36 38 34 a2 00 63 32 2f 32 02 00 a2 00 63 32 2f 33 08 47 74 65 73 74 2d 6a 62 a2 00 63
32 2f 35 08 58 18 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 a2 00
63 32 2f 34 08 40 a2 00 63 32 2f 31 04 f4 a2 00 64 32 2f 31 30 02 01";

fn p(text: &str) -> Path {
    Path::parse(text).unwrap()
}

fn records(payload: &[u8]) -> Vec<Record<'_>> {
    SenmlReader::new(payload)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The first error decoding `payload` produces, at the start or while iterating.
fn error(payload: &[u8]) -> SenmlError {
    match SenmlReader::new(payload) {
        Err(e) => e,
        Ok(r) => r.filter_map(Result::err).next().expect("an error"),
    }
}

#[test]
fn rfc8428_example() {
    let bytes = hex(RFC8428_EXAMPLE);
    let raw: Vec<RawRecord<'_>> = RawSenmlReader::new(&bytes)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // The same pack in JSON, RFC 8428 §5.1.2:
    // [{"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,"bu":"A","bver":5,
    //   "n":"voltage","u":"V","v":120.1},
    //  {"n":"current","t":-5,"v":1.2}, {"n":"current","t":-4,"v":1.3},
    //  {"n":"current","t":-3,"v":1.4}, {"n":"current","t":-2,"v":1.5},
    //  {"n":"current","t":-1,"v":1.6}, {"n":"current","v":1.7}]
    let bt = 1.276020076001e9;
    let expected = [
        ("voltage", bt, 120.1),
        ("current", bt - 5.0, 1.2),
        ("current", bt - 4.0, 1.3),
        ("current", bt - 3.0, 1.4),
        ("current", bt - 2.0, 1.5), // encoded as a half float, f9 3e00
        ("current", bt - 1.0, 1.6),
        ("current", bt, 1.7),
    ];
    assert_eq!(raw.len(), expected.len());
    for (r, (name, time, v)) in raw.iter().zip(expected) {
        assert_eq!(r.base_name, "urn:dev:ow:10e2073a0108006:");
        assert_eq!(r.name, name);
        assert_eq!(r.time, Some(time));
        assert_eq!(r.value, Some(Value::Float(v)));
    }
    // Its names are not LwM2M paths.
    assert_eq!(
        error(&bytes),
        SenmlError::InvalidName(PathError::MissingLeadingSlash)
    );
}

#[test]
fn coiote_bootstrap_write() {
    let bytes = hex(COIOTE_BOOTSTRAP);
    let got = records(&bytes);
    let expected: [(&str, Value<'_>); 13] = [
        (
            "/0/1/0",
            Value::String("coaps://lwm2m-test.avsystem.io:5694"),
        ),
        ("/0/1/2", Value::Integer(0)),
        ("/0/1/3", Value::Opaque(b"test-jb")),
        ("/0/1/5", Value::Opaque(&[b'x'; 24])),
        ("/0/1/4", Value::Opaque(b"")),
        ("/0/1/1", Value::Boolean(true)),
        (
            "/0/2/0",
            Value::String("coaps://lwm2m-test.avsystem.io:5684"),
        ),
        ("/0/2/2", Value::Integer(0)),
        ("/0/2/3", Value::Opaque(b"test-jb")),
        ("/0/2/5", Value::Opaque(&[b'x'; 24])),
        ("/0/2/4", Value::Opaque(b"")),
        ("/0/2/1", Value::Boolean(false)),
        ("/0/2/10", Value::Integer(1)),
    ];
    assert_eq!(got.len(), expected.len());
    for (r, (path, value)) in got.iter().zip(expected) {
        assert_eq!((r.path, r.value, r.time), (p(path), Some(value), None));
    }
}

#[test]
fn leshan_encoder_outputs_decode_and_match() {
    // eclipse-leshan/leshan LwM2mNodeEncoderTest.senml_cbor_encode_opaque_resource:
    // [{-2: "/0/0/3", 8: h'ABCDEF'}]
    let opaque = hex("81a221662f302f302f330843abcdef");
    let got = records(&opaque);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].path, got[0].value),
        (p("/0/0/3"), Some(Value::Opaque(&[0xAB, 0xCD, 0xEF])))
    );
    let mut buf = [0u8; 32];
    let n = encode_single(&mut buf, &p("/0/0/3"), &Value::Opaque(&[0xAB, 0xCD, 0xEF])).unwrap();
    assert_eq!(&buf[..n], opaque.as_slice());

    // LwM2mNodeEncoderTest.senml_cbor_encode_timestamped_nodes: times as decimal fractions,
    // tag 4 [0, 500000004] etc.
    let timed = hex(
        "83a321662f302f302f3022c482001a1dcd6504036c53616d706c65537472696e67a321662f302f302f3122c482001a1dcd650504f4a321662f302f302f3222c482001a1dcd6506021901c8",
    );
    let got = records(&timed);
    let expected = [
        ("/0/0/0", 500_000_004.0, Value::String("SampleString")),
        ("/0/0/1", 500_000_005.0, Value::Boolean(false)),
        ("/0/0/2", 500_000_006.0, Value::Integer(456)),
    ];
    for (r, (path, time, value)) in got.iter().zip(expected) {
        assert_eq!(
            (r.path, r.time, r.value),
            (p(path), Some(time), Some(value))
        );
    }
}

#[test]
fn text_labels_are_not_integer_labels() {
    // eclipse-leshan/leshan#1654: {"3": "hhh", "-2": "/3442/0/110"} uses text keys, which are
    // unknown labels, so the record has no name and no value.
    let bytes = hex("81a2613363686868622d326b2f333434322f302f313130");
    let raw: Vec<_> = RawSenmlReader::new(&bytes).unwrap().collect();
    assert_eq!(
        raw,
        [Ok(RawRecord {
            base_name: "",
            name: "",
            time: None,
            value: None
        })]
    );
    assert_eq!(
        error(&bytes),
        SenmlError::InvalidName(PathError::MissingLeadingSlash)
    );
}

#[test]
fn base_name_persists_by_hand() {
    // [{bn:"/5/0/", n:"3", v:2}, {n:"5", v:0}, {bn:"/3/0/", n:"0", vs:"OMA"}, {n:"1"}]
    let bytes = hex("84
         a3 21 65 2f 35 2f 30 2f 00 61 33 02 02
         a2 00 61 35 02 00
         a3 21 65 2f 33 2f 30 2f 00 61 30 03 63 4f 4d 41
         a1 00 61 31");
    let got: Vec<(Path, Option<Value<'_>>)> =
        records(&bytes).iter().map(|r| (r.path, r.value)).collect();
    assert_eq!(
        got,
        [
            (p("/5/0/3"), Some(Value::Integer(2))),
            (p("/5/0/5"), Some(Value::Integer(0))),
            (p("/3/0/0"), Some(Value::String("OMA"))),
            (p("/3/0/1"), None),
        ]
    );
}

#[test]
fn ignores_units_versions_and_unknown_labels() {
    // {bver:10, bu:"A", u:"V", "xyz":1, 100:h'00', n:"/5/0/3", v:0}
    let bytes = hex(
        "81 a7 20 0a 23 61 41 01 61 56 63 78 79 7a 01 18 64 41 00 00 66 2f 35 2f 30 2f 33 02 00",
    );
    let got = records(&bytes);
    assert_eq!(
        (got[0].path, got[0].value),
        (p("/5/0/3"), Some(Value::Integer(0)))
    );
}

#[test]
fn integer_range() {
    let with_v = |v: &str| hex(&format!("81 a2 00 66 2f 35 2f 30 2f 33 02 {v}"));
    let check = |v: &str, expected: Value<'static>| {
        let bytes = with_v(v);
        assert_eq!(records(&bytes)[0].value, Some(expected), "{v}");
    };
    check("20", Value::Integer(-1));
    check("39 01 f3", Value::Integer(-500));
    check("1b 7f ff ff ff ff ff ff ff", Value::Integer(i64::MAX));
    check("1b 80 00 00 00 00 00 00 00", Value::Unsigned(1 << 63));
    check("1b ff ff ff ff ff ff ff ff", Value::Unsigned(u64::MAX));
    check("3b 7f ff ff ff ff ff ff ff", Value::Integer(i64::MIN));
    check("fa 3f c0 00 00", Value::Float(1.5));
    assert_eq!(
        error(&with_v("3b 80 00 00 00 00 00 00 00")),
        SenmlError::OversizedInteger
    );
    assert_eq!(
        error(&with_v("3b ff ff ff ff ff ff ff ff")),
        SenmlError::OversizedInteger
    );
    // Bignum tag 2 around 2^64.
    assert_eq!(
        error(&with_v("c2 49 01 00 00 00 00 00 00 00 00")),
        SenmlError::OversizedInteger
    );
}

#[test]
fn encodes_by_hand() {
    let mut buf = [0u8; 128];
    // /3/0/7 = {0: 3800, 1: 5000}: 82, then a3 21 "/3/0/7/" 00 "0" 02 19 0ed8, a2 00 "1" 02 19 1388.
    let n = encode_multiple_resource(
        &mut buf,
        &p("/3/0/7"),
        [(0, Value::Integer(3800)), (1, Value::Integer(5000))],
    )
    .unwrap();
    assert_eq!(
        &buf[..n],
        hex("82 a3 21 67 2f 33 2f 30 2f 37 2f 00 61 30 02 19 0e d8 a2 00 61 31 02 19 13 88")
            .as_slice()
    );

    // Object 5 instance: State 0, Update Result 1, PkgVersion "1.2.0", Protocol Support {0, 1}.
    let mut w = SenmlWriter::new(&mut buf, &p("/5/0"));
    w.record(&[3], Some(&Value::Integer(0))).unwrap();
    w.record(&[5], Some(&Value::Integer(1))).unwrap();
    w.record(&[7], Some(&Value::String("1.2.0"))).unwrap();
    w.record(&[8, 0], Some(&Value::Integer(0))).unwrap();
    w.record(&[8, 1], Some(&Value::Integer(1))).unwrap();
    let out = w.finish().unwrap();
    assert_eq!(
        out,
        hex("85
             a3 21 65 2f 35 2f 30 2f 00 61 33 02 00
             a2 00 61 35 02 01
             a2 00 61 37 03 65 31 2e 32 2e 30
             a2 00 63 38 2f 30 02 00
             a2 00 63 38 2f 31 02 01")
        .as_slice()
    );

    // Read-Composite request body: [{0: "/5/0/3"}, {0: "/5/0/5"}].
    let mut w = SenmlWriter::absolute(&mut buf);
    w.record(&[5, 0, 3], None)
        .unwrap()
        .record(&[5, 0, 5], None)
        .unwrap();
    assert_eq!(
        w.finish().unwrap(),
        hex("82 a1 00 66 2f 35 2f 30 2f 33 a1 00 66 2f 35 2f 30 2f 35").as_slice()
    );

    // Root base: bn "/" and n "3/0/0".
    let mut w = SenmlWriter::new(&mut buf, &Path::root());
    w.record(&[3, 0, 0], Some(&Value::String("x"))).unwrap();
    assert_eq!(
        w.finish().unwrap(),
        hex("81 a3 21 61 2f 00 65 33 2f 30 2f 30 03 61 78").as_slice()
    );
}

#[test]
fn single_values_by_hand() {
    let single = |v: Value<'_>| {
        let mut buf = [0u8; 64];
        let n = encode_single(&mut buf, &p("/5/0/3"), &v).unwrap();
        buf[..n].to_vec()
    };
    // 81 a2 21 66 "/5/0/3" then the value pair.
    let head = "81 a2 21 66 2f 35 2f 30 2f 33";
    let cases: [(Value<'_>, &str); 9] = [
        (Value::Integer(2), "02 02"),
        (Value::Integer(-500), "02 39 01 f3"),
        (Value::Unsigned(u64::MAX), "02 1b ff ff ff ff ff ff ff ff"),
        (Value::Float(1.5), "02 fa 3f c0 00 00"),
        (Value::Float(0.1), "02 fb 3f b9 99 99 99 99 99 9a"),
        (Value::Boolean(true), "04 f5"),
        (Value::String(""), "03 60"),
        (Value::Opaque(&[0xAB, 0xCD, 0xEF]), "08 43 ab cd ef"),
        // "vlo": "3:0"
        (Value::ObjLink(3, 0), "63 76 6c 6f 63 33 3a 30"),
    ];
    for (v, tail) in cases {
        assert_eq!(single(v), hex(&format!("{head} {tail}")), "{v:?}");
        let bytes = single(v);
        assert_eq!(records(&bytes)[0].value, Some(v));
    }
}

#[test]
fn structural_errors() {
    assert_eq!(error(&[]), SenmlError::Truncated);
    assert_eq!(error(&hex("a0")), SenmlError::NotAnArray);
    assert_eq!(error(&hex("01")), SenmlError::NotAnArray);
    assert_eq!(error(&hex("9f ff")), SenmlError::IndefiniteLength);
    assert_eq!(error(&hex("81 bf ff")), SenmlError::IndefiniteLength);
    assert_eq!(
        error(&hex("81 a1 00 7f 61 2f ff")),
        SenmlError::IndefiniteLength
    );
    assert_eq!(
        error(&hex("81 a2 00 66 2f 35 2f 30 2f 30 08 5f 41 00 ff")),
        SenmlError::IndefiniteLength
    );
    assert_eq!(error(&hex("81 01")), SenmlError::RecordNotAMap);
    assert_eq!(error(&hex("81 80")), SenmlError::RecordNotAMap);
    assert_eq!(error(&hex("81 ff")), SenmlError::Malformed);
    assert_eq!(error(&hex("81 a1 1c 00")), SenmlError::Malformed);
    assert_eq!(error(&hex("80 00")), SenmlError::TrailingBytes);
}

#[test]
fn label_errors() {
    assert_eq!(
        error(&hex("81 a2 00 62 2f 35 00 62 2f 35")),
        SenmlError::DuplicateLabel
    );
    assert_eq!(
        error(&hex("81 a2 21 61 2f 21 61 2f")),
        SenmlError::DuplicateLabel
    );
    assert_eq!(error(&hex("81 a1 f4 00")), SenmlError::InvalidLabelType);
    assert_eq!(error(&hex("81 a1 41 00 00")), SenmlError::InvalidLabelType);
    assert_eq!(
        error(&hex("81 a1 f9 3c 00 00")),
        SenmlError::InvalidLabelType
    );
    // bv (-5) and bs (-6) change what v means; a text label ending in '_' must be understood.
    let n = "00 66 2f 35 2f 30 2f 33";
    assert_eq!(
        error(&hex(&format!("81 a2 {n} 24 00"))),
        SenmlError::UnsupportedLabel
    );
    assert_eq!(
        error(&hex(&format!("81 a2 {n} 25 00"))),
        SenmlError::UnsupportedLabel
    );
    assert_eq!(
        error(&hex(&format!("81 a2 {n} 64 66 6f 6f 5f 00"))),
        SenmlError::UnsupportedLabel
    );
    assert_eq!(
        error(&hex(&format!("81 a2 20 0b {n}"))),
        SenmlError::UnsupportedVersion
    );
    assert_eq!(
        error(&hex(&format!("81 a2 20 61 31 {n}"))),
        SenmlError::UnsupportedVersion
    );
}

#[test]
fn value_errors() {
    let n = "00 66 2f 35 2f 30 2f 33";
    let e = |tail: &str, pairs: u8| error(&hex(&format!("81 {:02x} {n} {tail}", 0xa0 + pairs)));
    assert_eq!(e("02 00 03 61 78", 3), SenmlError::MultipleValues);
    assert_eq!(
        e("02 00 63 76 6c 6f 63 33 3a 30", 3),
        SenmlError::MultipleValues
    );
    assert_eq!(e("04 01", 2), SenmlError::WrongValueType);
    assert_eq!(e("02 61 78", 2), SenmlError::WrongValueType);
    assert_eq!(e("02 f6", 2), SenmlError::WrongValueType);
    assert_eq!(e("08 61 78", 2), SenmlError::ExpectedBytes);
    assert_eq!(e("03 41 78", 2), SenmlError::ExpectedText);
    assert_eq!(error(&hex("81 a1 00 42 2f 35")), SenmlError::ExpectedText);
    assert_eq!(error(&hex("81 a1 21 05")), SenmlError::ExpectedText);
    assert_eq!(error(&hex("81 a1 00 62 ff fe")), SenmlError::InvalidUtf8);
    assert_eq!(e("63 76 6c 6f 61 33", 2), SenmlError::InvalidObjLink);
    assert_eq!(
        e("63 76 6c 6f 67 33 3a 37 30 30 30 30", 2),
        SenmlError::InvalidObjLink
    );
    assert_eq!(e("02 c1 00", 2), SenmlError::UnsupportedTag);
    assert_eq!(e("06 c1 00", 2), SenmlError::UnsupportedTag);
    assert_eq!(e("02 81 00", 2), SenmlError::NestingTooDeep);
    assert_eq!(e("18 64 a0", 2), SenmlError::NestingTooDeep);
    assert_eq!(e("18 64 81 81 81 81 81 00", 2), SenmlError::NestingTooDeep);
}

#[test]
fn name_errors() {
    // "/5/0/" + "x"
    assert_eq!(
        error(&hex("81 a2 21 65 2f 35 2f 30 2f 00 61 78")),
        SenmlError::InvalidName(PathError::NotADigit)
    );
    // "/5/0/" alone
    assert_eq!(
        error(&hex("81 a1 21 65 2f 35 2f 30 2f")),
        SenmlError::InvalidName(PathError::EmptySegment)
    );
    // No name at all.
    assert_eq!(
        error(&hex("81 a1 02 00")),
        SenmlError::InvalidName(PathError::MissingLeadingSlash)
    );
    // Decoding stops after the first bad name.
    let bytes = hex("82 a1 02 00 a1 00 62 2f 35");
    let mut r = SenmlReader::new(&bytes).unwrap();
    assert!(r.next().unwrap().is_err());
    assert!(r.next().is_none());
}

#[test]
fn truncation_anywhere_is_truncated() {
    for example in [RFC8428_EXAMPLE, COIOTE_BOOTSTRAP] {
        let bytes = hex(example);
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            let err = match RawSenmlReader::new(prefix) {
                Err(e) => e,
                Ok(r) => r.filter_map(Result::err).next().expect("an error"),
            };
            assert_eq!(err, SenmlError::Truncated, "cut at {cut}");
        }
    }
    // A text length far beyond the input.
    assert_eq!(
        error(&hex("81 a1 00 7b ff ff ff ff ff ff ff ff")),
        SenmlError::Truncated
    );
    // A huge record count with one record present.
    let bytes = hex("9b ff ff ff ff ff ff ff ff a1 00 61 2f");
    let mut r = SenmlReader::new(&bytes).unwrap();
    assert_eq!(r.next().unwrap().unwrap().path, Path::root());
    assert_eq!(r.next(), Some(Err(SenmlError::Truncated)));
    assert_eq!(r.next(), None);
}

#[test]
fn writer_errors() {
    let mut buf = [0u8; 8];
    let mut w = SenmlWriter::new(&mut buf, &p("/5/0"));
    assert_eq!(
        w.record(&[], None).err(),
        Some(SenmlError::InvalidName(PathError::EmptySegment))
    );
    assert_eq!(
        w.record(&[1, 2, 3], None).err(),
        Some(SenmlError::InvalidName(PathError::TooDeep))
    );
    assert_eq!(
        w.record(&[65535], None).err(),
        Some(SenmlError::InvalidName(PathError::ReservedId))
    );
    assert_eq!(
        w.record(&[3], Some(&Value::String("too long for 8 bytes")))
            .err(),
        Some(SenmlError::BufferFull)
    );
    assert_eq!(
        encode_single(&mut [0u8; 4], &p("/5/0/3"), &Value::Integer(0)),
        Err(SenmlError::BufferFull)
    );
}

#[derive(Debug, Clone)]
enum Owned {
    Integer(i64),
    Unsigned(u64),
    Float(f64),
    Boolean(bool),
    String(String),
    Opaque(Vec<u8>),
    ObjLink(u16, u16),
}

impl Owned {
    fn value(&self) -> Value<'_> {
        match self {
            Owned::Integer(v) => Value::Integer(*v),
            Owned::Unsigned(v) => Value::Unsigned(*v),
            Owned::Float(v) => Value::Float(*v),
            Owned::Boolean(v) => Value::Boolean(*v),
            Owned::String(v) => Value::String(v),
            Owned::Opaque(v) => Value::Opaque(v),
            Owned::ObjLink(o, i) => Value::ObjLink(*o, *i),
        }
    }
}

fn owned() -> impl Strategy<Value = Owned> {
    prop_oneof![
        any::<i64>().prop_map(Owned::Integer),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Owned::Unsigned),
        any::<f64>().prop_map(Owned::Float),
        any::<bool>().prop_map(Owned::Boolean),
        ".{0,20}".prop_map(Owned::String),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(Owned::Opaque),
        (any::<u16>(), any::<u16>()).prop_map(|(o, i)| Owned::ObjLink(o, i)),
    ]
}

fn same_value(a: Option<Value<'_>>, b: Option<Value<'_>>) -> bool {
    match (a, b) {
        (Some(Value::Float(x)), Some(Value::Float(y))) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn ids(n: usize) -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(0u16..u16::MAX, n)
}

proptest! {
    #[test]
    fn round_trip_with_base(
        base in (0usize..=3).prop_flat_map(ids),
        records in prop::collection::vec((1usize..=4, prop::option::of(owned())), 0..6),
    ) {
        let base = Path::new(&base).unwrap();
        let room = 4 - base.depth();
        let named: Vec<(Vec<u16>, Option<Owned>)> = records
            .into_iter()
            .enumerate()
            .map(|(i, (len, v))| ((0..len.min(room)).map(|k| (i * 7 + k) as u16).collect(), v))
            .collect();
        let mut buf = vec![0u8; 4096];
        let mut w = SenmlWriter::new(&mut buf, &base);
        for (name, v) in &named {
            w.record(name, v.as_ref().map(Owned::value).as_ref()).unwrap();
        }
        let out = w.finish().unwrap();
        let back = records_of(out);
        prop_assert_eq!(back.len(), named.len());
        for (r, (name, v)) in back.iter().zip(&named) {
            let mut path = base;
            for id in name {
                path = path.child(*id).unwrap();
            }
            prop_assert_eq!(r.path, path);
            prop_assert!(same_value(r.value, v.as_ref().map(Owned::value)));
        }
    }

    #[test]
    fn round_trip_absolute(paths in prop::collection::vec((0usize..=4).prop_flat_map(ids), 0..6), v in owned()) {
        let mut buf = vec![0u8; 4096];
        let mut w = SenmlWriter::absolute(&mut buf);
        for path in &paths {
            w.record(path, Some(&v.value())).unwrap();
        }
        let out = w.finish().unwrap();
        let back = records_of(out);
        prop_assert_eq!(back.len(), paths.len());
        for (r, ids) in back.iter().zip(&paths) {
            prop_assert_eq!(r.path.ids(), &ids[..]);
            prop_assert!(same_value(r.value, Some(v.value())));
        }
    }

    #[test]
    fn single_round_trip(path in (0usize..=4).prop_flat_map(ids), v in owned()) {
        let path = Path::new(&path).unwrap();
        let mut buf = vec![0u8; 256];
        let n = encode_single(&mut buf, &path, &v.value()).unwrap();
        let back = records_of(&buf[..n]);
        prop_assert_eq!(back.len(), 1);
        prop_assert_eq!(back[0].path, path);
        prop_assert!(same_value(back[0].value, Some(v.value())));
    }

    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(r) = RawSenmlReader::new(&bytes) {
            for _ in r {}
        }
        if let Ok(r) = SenmlReader::new(&bytes) {
            for _ in r {}
        }
    }

    #[test]
    fn mutated_examples_never_panic(i in 0usize..400, b: u8, which: bool) {
        let mut bytes = hex(if which { RFC8428_EXAMPLE } else { COIOTE_BOOTSTRAP });
        let i = i % bytes.len();
        bytes[i] = b;
        if let Ok(r) = SenmlReader::new(&bytes) {
            for _ in r {}
        }
    }

    #[test]
    fn writer_never_panics_on_small_buffers(size in 0usize..40, v in owned()) {
        let mut buf = vec![0u8; size];
        let _ = encode_single(&mut buf, &Path::resource(5, 0, 3).unwrap(), &v.value());
        let mut w = SenmlWriter::new(&mut buf, &Path::instance(5, 0).unwrap());
        let _ = w.record(&[1], Some(&v.value()));
        if let Ok(out) = w.finish() {
            // Whatever fit is a valid payload.
            let _ = records_of(out);
        }
    }
}

fn records_of(payload: &[u8]) -> Vec<Record<'_>> {
    records(payload)
}

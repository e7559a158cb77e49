//! OMA TLV: the LwM2M specification's examples (decoded and re-encoded byte for byte), header
//! variants and integer encodings worked out by hand, every error, and round trips.

mod support;
use support::hex;

use lwm2m_core::content::Value;
use lwm2m_core::content::tlv::{self, Tlv, TlvError, TlvKind, TlvReader, TlvWriter};
use proptest::prelude::*;

/// LwM2M TS 1.0 §6.4.3.1 / TS 1.1 §7.4.3 "Single Object Instance Request" example: Read /3/0
/// (Device) in TLV, 121 bytes, as printed in the specification.
const DEVICE_3_0: &str = "
    C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
    C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
    C8 02 09 33 34 35 30 30 30 31 32 33
    C3 03 31 2E 30
    86 06 41 00 01 41 01 05
    88 07 08 42 00 0E D8 42 01 13 88
    87 08 41 00 7D 42 01 03 84
    C1 09 64
    C1 0A 0F
    83 0B 41 00 00
    C4 0D 51 82 42 8F
    C6 0E 2B 30 32 3A 30 30
    C1 10 55";

/// LwM2M TS 1.0 §6.4.3.2 "Multiple Object Instance Request" example: Read /2 (Access Control),
/// two object instances, 38 bytes; the second ACL has a resource instance with a 16-bit id (310).
const ACCESS_CONTROL_2: &str = "
    08 00 0E C1 00 01 C1 01 00 83 02 41 7F 07 C1 03 7F
    08 02 12 C1 00 03 C1 01 00 87 02 41 7F 07 61 01 36 01 C1 03 7F";

fn entries(payload: &[u8]) -> Vec<Tlv<'_>> {
    TlvReader::new(payload).collect::<Result<_, _>>().unwrap()
}

fn int(t: &Tlv<'_>) -> i64 {
    tlv::decode_integer(t.value).unwrap()
}

fn string<'a>(t: &Tlv<'a>) -> &'a str {
    tlv::decode_string(t.value).unwrap()
}

/// The instances of a multiple resource as (id, integer).
fn instances(t: &Tlv<'_>) -> Vec<(u16, i64)> {
    t.children()
        .unwrap()
        .map(|c| {
            let c = c.unwrap();
            assert_eq!(c.kind, TlvKind::ResourceInstance);
            (c.id, int(&c))
        })
        .collect()
}

#[test]
fn decodes_the_device_object_example() {
    let bytes = hex(DEVICE_3_0);
    assert_eq!(bytes.len(), 121);
    let e = entries(&bytes);
    let ids: Vec<u16> = e.iter().map(|t| t.id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 13, 14, 16]);
    assert_eq!(string(&e[0]), "Open Mobile Alliance");
    assert_eq!(string(&e[1]), "Lightweight M2M Client");
    assert_eq!(string(&e[2]), "345000123");
    assert_eq!(string(&e[3]), "1.0");
    assert_eq!(e[4].kind, TlvKind::MultipleResource);
    assert_eq!(instances(&e[4]), [(0, 1), (1, 5)]); // Available Power Sources
    assert_eq!(instances(&e[5]), [(0, 3800), (1, 5000)]); // Power Source Voltage
    assert_eq!(instances(&e[6]), [(0, 125), (1, 900)]); // Power Source Current
    assert_eq!(int(&e[7]), 100); // Battery Level
    assert_eq!(int(&e[8]), 15); // Memory Free
    assert_eq!(instances(&e[9]), [(0, 0)]); // Error Code
    assert_eq!(int(&e[10]), 1_367_491_215); // Current Time 0x5182428F
    assert_eq!(string(&e[11]), "+02:00");
    assert_eq!(string(&e[12]), "U");
    assert!(e.iter().all(|t| t.kind != TlvKind::ObjectInstance));
}

fn write_device(w: &mut TlvWriter<'_>) -> Result<(), TlvError> {
    let ints = |w: &mut TlvWriter<'_>, values: &[i64]| -> Result<(), TlvError> {
        for (i, v) in values.iter().enumerate() {
            w.resource_instance_value(i as u16, &Value::Integer(*v))?;
        }
        Ok(())
    };
    w.resource_value(0, &Value::String("Open Mobile Alliance"))?
        .resource_value(1, &Value::String("Lightweight M2M Client"))?
        .resource_value(2, &Value::String("345000123"))?
        .resource_value(3, &Value::String("1.0"))?
        .multiple_resource(6, |w| ints(w, &[1, 5]))?
        .multiple_resource(7, |w| ints(w, &[3800, 5000]))?
        .multiple_resource(8, |w| ints(w, &[125, 900]))?
        .resource_value(9, &Value::Integer(100))?
        .resource_value(10, &Value::Integer(15))?
        .multiple_resource(11, |w| ints(w, &[0]))?
        .resource_value(13, &Value::Integer(1_367_491_215))?
        .resource_value(14, &Value::String("+02:00"))?
        .resource_value(16, &Value::String("U"))?;
    Ok(())
}

#[test]
fn encodes_the_device_object_example_byte_for_byte() {
    let mut buf = [0u8; 256];
    let mut w = TlvWriter::new(&mut buf);
    write_device(&mut w).unwrap();
    assert_eq!(w.written(), hex(DEVICE_3_0).as_slice());
}

#[test]
fn device_object_as_an_object_instance() {
    // The spec's multiple-instance form of the same read: 08 00 79 wraps the 121 bytes.
    let mut expected = hex("08 00 79");
    expected.extend(hex(DEVICE_3_0));
    let mut buf = [0u8; 256];
    let mut w = TlvWriter::new(&mut buf);
    w.object_instance(0, write_device).unwrap();
    assert_eq!(w.written(), expected.as_slice());
    let e = entries(&expected);
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].kind, e[0].id, e[0].value.len()),
        (TlvKind::ObjectInstance, 0, 121)
    );
    assert_eq!(e[0].children().unwrap().count(), 13);
}

#[test]
fn access_control_example_both_ways() {
    let bytes = hex(ACCESS_CONTROL_2);
    let e = entries(&bytes);
    assert_eq!(e.len(), 2);
    assert_eq!((e[0].kind, e[0].id), (TlvKind::ObjectInstance, 0));
    assert_eq!((e[1].kind, e[1].id), (TlvKind::ObjectInstance, 2));
    let inst2: Vec<Tlv<'_>> = e[1].children().unwrap().map(Result::unwrap).collect();
    assert_eq!(int(&inst2[0]), 3); // Object ID
    assert_eq!(int(&inst2[1]), 0); // Object Instance ID
    assert_eq!(instances(&inst2[2]), [(127, 7), (310, 1)]); // ACL
    assert_eq!(int(&inst2[3]), 127); // Access Control Owner

    let mut buf = [0u8; 64];
    let mut w = TlvWriter::new(&mut buf);
    let acl = |object: i64, acl: &'static [(u16, i64)]| {
        move |w: &mut TlvWriter<'_>| -> Result<(), TlvError> {
            w.resource_value(0, &Value::Integer(object))?
                .resource_value(1, &Value::Integer(0))?
                .multiple_resource(2, |w| {
                    for (id, v) in acl {
                        w.resource_instance_value(*id, &Value::Integer(*v))?;
                    }
                    Ok(())
                })?
                .resource_value(3, &Value::Integer(127))?;
            Ok(())
        }
    };
    w.object_instance(0, acl(1, &[(127, 7)]))
        .unwrap()
        .object_instance(2, acl(3, &[(127, 7), (310, 1)]))
        .unwrap();
    assert_eq!(w.written(), bytes.as_slice());
}

#[test]
fn wakaama_object_instances_example() {
    // Three object instances (10, 11, 12), each holding resource 1: the first test buffer of
    // Eclipse Wakaama's TLV tests.
    let bytes = hex("03 0A C1 01 14 03 0B C1 01 15 03 0C C1 01 16");
    let e = entries(&bytes);
    let got: Vec<(u16, u16, i64)> = e
        .iter()
        .map(|oi| {
            let r = oi.children().unwrap().next().unwrap().unwrap();
            (oi.id, r.id, int(&r))
        })
        .collect();
    assert_eq!(got, [(10, 1, 0x14), (11, 1, 0x15), (12, 1, 0x16)]);
}

fn encode_resource(id: u16, value: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; value.len() + 8];
    let mut w = TlvWriter::new(&mut buf);
    w.resource(id, value).unwrap();
    w.written().to_vec()
}

#[test]
fn header_variants_by_hand() {
    // Type byte = kind << 6 | id16 << 5 | length type << 3 | short length.
    // Length 0 in the type byte: 11 0 00 000 = C0.
    assert_eq!(encode_resource(5, &[]), hex("C0 05"));
    // Length 7, the largest that fits in the type byte: 11 0 00 111 = C7.
    assert_eq!(encode_resource(0, &[1; 7])[..2], hex("C7 00")[..]);
    // Length 8 needs the 8-bit length field: 11 0 01 000 = C8, then 08.
    assert_eq!(encode_resource(1, &[0; 8])[..3], hex("C8 01 08")[..]);
    // Length 256 needs 16 bits: 11 0 10 000 = D0, id 00, length 01 00.
    let r = encode_resource(0, &[0xAA; 256]);
    assert_eq!((&r[..4], r.len()), (&hex("D0 00 01 00")[..], 260));
    // Length 65536 needs 24 bits: 11 0 11 000 = D8, id 00, length 01 00 00.
    let r = encode_resource(0, &vec![0x55; 65536]);
    assert_eq!((&r[..5], r.len()), (&hex("D8 00 01 00 00")[..], 65541));
    // Id 300 = 0x012C needs 16 bits: 11 1 00 001 = E1.
    assert_eq!(encode_resource(300, &[0x2A]), hex("E1 01 2C 2A"));
    // Resource instance 256 with 10 bytes: 01 1 01 000 = 68, id 01 00, length 0A.
    let mut buf = [0u8; 32];
    let mut w = TlvWriter::new(&mut buf);
    w.resource_instance(256, &[0; 10]).unwrap();
    assert_eq!(&w.written()[..4], &hex("68 01 00 0A")[..]);
    // Object instance 1000 (03 E8) around a 300-byte resource (D0 00 01 2C + 300 = 304 = 0x130):
    // 00 1 10 000 = 30, id 03 E8, length 01 30.
    let mut buf = vec![0u8; 400];
    let mut w = TlvWriter::new(&mut buf);
    w.object_instance(1000, |w| w.resource(0, &[7; 300]).map(|_| ()))
        .unwrap();
    let out = w.written();
    assert_eq!(&out[..9], &hex("30 03 E8 01 30 D0 00 01 2C")[..]);
    assert_eq!(out.len(), 5 + 304);
}

#[test]
fn decodes_every_length_field() {
    for (bytes, len) in [
        (hex("C2 01 AA BB"), 2),
        (hex("C8 01 02 AA BB"), 2),
        (hex("D0 01 00 02 AA BB"), 2),
        (hex("D8 01 00 00 02 AA BB"), 2),
        (hex("F8 01 00 00 00 02 AA BB"), 2),
    ] {
        let e = entries(&bytes);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].kind, e[0].value),
            (TlvKind::Resource, &[0xAA, 0xBB][..len])
        );
    }
    // F8: 16-bit id 0x0100.
    assert_eq!(entries(&hex("F8 01 00 00 00 02 AA BB"))[0].id, 256);
}

#[test]
fn integers_by_hand() {
    // Two's complement, big-endian, shortest of 1/2/4/8 bytes.
    let cases: [(i64, &str); 13] = [
        (0, "00"),
        (1, "01"),
        (127, "7F"),
        (128, "00 80"),
        (-1, "FF"),
        (-128, "80"),
        (-129, "FF 7F"),
        (32767, "7F FF"),
        (32768, "00 00 80 00"),
        (-32769, "FF FF 7F FF"),
        (2_147_483_647, "7F FF FF FF"),
        (2_147_483_648, "00 00 00 00 80 00 00 00"),
        (i64::MIN, "80 00 00 00 00 00 00 00"),
    ];
    for (v, bytes) in cases {
        assert_eq!(
            tlv::encode_integer(v).as_slice(),
            hex(bytes).as_slice(),
            "{v}"
        );
        assert_eq!(tlv::decode_integer(&hex(bytes)), Ok(v));
    }
    // Resource 5 with -129: C2 05 FF 7F.
    let mut buf = [0u8; 8];
    let mut w = TlvWriter::new(&mut buf);
    w.resource_value(5, &Value::Integer(-129)).unwrap();
    assert_eq!(w.written(), hex("C2 05 FF 7F").as_slice());
    // Resource 5 with i64::MIN: 8 bytes, so the 8-bit length field: C8 05 08.
    let mut buf = [0u8; 16];
    let mut w = TlvWriter::new(&mut buf);
    w.resource_value(5, &Value::Integer(i64::MIN)).unwrap();
    assert_eq!(
        w.written(),
        hex("C8 05 08 80 00 00 00 00 00 00 00").as_slice()
    );
}

#[test]
fn other_scalars_by_hand() {
    assert_eq!(tlv::encode_unsigned(255).as_slice(), hex("FF").as_slice());
    assert_eq!(
        tlv::encode_unsigned(256).as_slice(),
        hex("01 00").as_slice()
    );
    assert_eq!(
        tlv::encode_unsigned(1 << 32).as_slice(),
        hex("00 00 00 01 00 00 00 00").as_slice()
    );
    assert_eq!(
        tlv::decode_unsigned(&hex("FF FF FF FF FF FF FF FF")),
        Ok(u64::MAX)
    );
    // 1.5 = 0x3FC00000 as f32 (exact, so 4 bytes); 0.1 needs f64: 0x3FB999999999999A.
    assert_eq!(
        tlv::encode_float(1.5).as_slice(),
        hex("3F C0 00 00").as_slice()
    );
    assert_eq!(
        tlv::encode_float(0.1).as_slice(),
        hex("3F B9 99 99 99 99 99 9A").as_slice()
    );
    assert_eq!(tlv::decode_float(&hex("3F C0 00 00")), Ok(1.5));
    assert_eq!(tlv::decode_float(&hex("3F B9 99 99 99 99 99 9A")), Ok(0.1));
    assert_eq!(tlv::encode_bool(true).as_slice(), &[1]);
    assert_eq!(tlv::decode_bool(&[0]), Ok(false));
    assert_eq!(
        tlv::encode_objlnk(3, 0).as_slice(),
        hex("00 03 00 00").as_slice()
    );
    assert_eq!(tlv::decode_objlnk(&hex("FF FF FF FF")), Ok((65535, 65535)));
}

#[test]
fn value_decoders_refuse_wrong_lengths() {
    for len in [0, 3, 5, 6, 7, 9] {
        let v = vec![0u8; len];
        assert_eq!(tlv::decode_integer(&v), Err(TlvError::WrongLength), "{len}");
        assert_eq!(
            tlv::decode_unsigned(&v),
            Err(TlvError::WrongLength),
            "{len}"
        );
        assert_eq!(tlv::decode_float(&v), Err(TlvError::WrongLength), "{len}");
    }
    assert_eq!(tlv::decode_float(&[0; 2]), Err(TlvError::WrongLength));
    assert_eq!(tlv::decode_bool(&[]), Err(TlvError::WrongLength));
    assert_eq!(tlv::decode_bool(&[0, 1]), Err(TlvError::WrongLength));
    assert_eq!(tlv::decode_bool(&[2]), Err(TlvError::InvalidBoolean));
    assert_eq!(tlv::decode_objlnk(&[0; 3]), Err(TlvError::WrongLength));
    assert_eq!(
        tlv::decode_string(&[0xC3, 0x28]),
        Err(TlvError::InvalidUtf8)
    );
}

fn first_error(payload: &[u8]) -> TlvError {
    TlvReader::new(payload).find_map(Result::err).unwrap()
}

#[test]
fn decoder_errors() {
    // Type byte without id.
    assert_eq!(first_error(&hex("C8")), TlvError::Truncated);
    // 16-bit id with one byte.
    assert_eq!(first_error(&hex("E1 01")), TlvError::Truncated);
    // 8-bit length field missing.
    assert_eq!(first_error(&hex("C8 00")), TlvError::Truncated);
    // 16-bit length field half there.
    assert_eq!(first_error(&hex("D0 00 01")), TlvError::Truncated);
    // 24-bit length field two thirds there.
    assert_eq!(first_error(&hex("D8 00 00 01")), TlvError::Truncated);
    // Length 3 with 1 byte of value.
    assert_eq!(first_error(&hex("C3 00 31")), TlvError::LengthPastEnd);
    // 8-bit length 0x20 with 2 bytes.
    assert_eq!(first_error(&hex("C8 00 20 31 32")), TlvError::LengthPastEnd);
    // A good entry, then a truncated one: the good one comes first.
    let mut r = TlvReader::new(&[0xC1, 0x00, 0x01, 0xC8]);
    assert!(r.next().unwrap().is_ok());
    assert_eq!(r.next(), Some(Err(TlvError::Truncated)));
    assert_eq!(r.next(), None, "stops after the first error");
    // Id 65535.
    assert_eq!(first_error(&hex("E1 FF FF 01")), TlvError::ReservedId);
}

#[test]
fn nesting_is_bounded() {
    let child_error = |payload: &[u8]| {
        let top = TlvReader::new(payload).next().unwrap().unwrap();
        top.children().unwrap().find_map(Result::err).unwrap()
    };
    // Object instance 0 (02 00, 2 bytes) holding object instance 1 (00 01): too deep.
    assert_eq!(child_error(&hex("02 00 00 01")), TlvError::NestingTooDeep);
    // Multiple resource 5 holding multiple resource 0.
    assert_eq!(child_error(&hex("82 05 80 00")), TlvError::NestingTooDeep);
    // Multiple resource 5 holding object instance 0.
    assert_eq!(child_error(&hex("82 05 00 00")), TlvError::NestingTooDeep);
    // Object instance holding a resource instance directly.
    assert_eq!(
        child_error(&hex("03 00 41 00 01")),
        TlvError::UnexpectedKind
    );
    // Multiple resource holding a single resource.
    assert_eq!(
        child_error(&hex("83 01 C1 00 01")),
        TlvError::UnexpectedKind
    );
    // A resource has no children.
    let r = TlvReader::new(&[0xC1, 0x00, 0x01]).next().unwrap().unwrap();
    assert_eq!(r.children().err(), Some(TlvError::NotAContainer));
    // An object instance whose content is truncated TLV.
    assert_eq!(child_error(&hex("01 00 C8")), TlvError::Truncated);
}

#[test]
fn writer_errors() {
    let mut buf = [0u8; 4];
    let mut w = TlvWriter::new(&mut buf);
    // C2 00 'a' 'b' fills the 4 bytes exactly.
    assert_eq!(w.resource(0, b"ab").map(|_| ()), Ok(()));
    assert_eq!(w.resource(1, b"x").err(), Some(TlvError::BufferFull));
    assert_eq!(w.len(), 4, "a failed entry leaves nothing behind");

    let mut buf = [0u8; 64];
    let mut w = TlvWriter::new(&mut buf);
    assert_eq!(w.resource(u16::MAX, b"x").err(), Some(TlvError::ReservedId));
    let nested = w.object_instance(0, |w| w.object_instance(1, |_| Ok(())).map(|_| ()));
    assert_eq!(nested.err(), Some(TlvError::NestingTooDeep));
    let misplaced = w.multiple_resource(1, |w| w.resource(0, b"x").map(|_| ()));
    assert_eq!(misplaced.err(), Some(TlvError::UnexpectedKind));
    let misplaced = w.object_instance(1, |w| w.resource_instance(0, b"x").map(|_| ()));
    assert_eq!(misplaced.err(), Some(TlvError::UnexpectedKind));
    assert!(w.is_empty());

    let huge = vec![0u8; 0x100_0000];
    let mut buf = [0u8; 8];
    let mut w = TlvWriter::new(&mut buf);
    assert_eq!(w.resource(0, &huge).err(), Some(TlvError::ValueTooLong));
}

/// A generated tree: object instances of resources / multiple resources.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Resource(u16, Vec<u8>),
    Multiple(u16, Vec<(u16, Vec<u8>)>),
}

fn id() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..256, 256u16..u16::MAX]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..10),
        prop::collection::vec(any::<u8>(), 250..300),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        (id(), value()).prop_map(|(i, v)| Node::Resource(i, v)),
        (id(), prop::collection::vec((id(), value()), 0..4))
            .prop_map(|(i, v)| Node::Multiple(i, v)),
    ]
}

fn write_nodes(w: &mut TlvWriter<'_>, nodes: &[Node]) -> Result<(), TlvError> {
    for n in nodes {
        match n {
            Node::Resource(id, v) => w.resource(*id, v).map(|_| ())?,
            Node::Multiple(id, instances) => w
                .multiple_resource(*id, |w| {
                    for (i, v) in instances {
                        w.resource_instance(*i, v)?;
                    }
                    Ok(())
                })
                .map(|_| ())?,
        }
    }
    Ok(())
}

fn read_nodes(reader: TlvReader<'_>) -> Vec<Node> {
    reader
        .map(|t| {
            let t = t.unwrap();
            match t.kind {
                TlvKind::Resource => Node::Resource(t.id, t.value.to_vec()),
                TlvKind::MultipleResource => Node::Multiple(
                    t.id,
                    t.children()
                        .unwrap()
                        .map(|c| {
                            let c = c.unwrap();
                            (c.id, c.value.to_vec())
                        })
                        .collect(),
                ),
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn object_instances_round_trip(objects in prop::collection::vec((id(), prop::collection::vec(node(), 0..5)), 0..4)) {
        let mut buf = vec![0u8; 20_000];
        let mut w = TlvWriter::new(&mut buf);
        for (oid, nodes) in &objects {
            w.object_instance(*oid, |w| write_nodes(w, nodes)).unwrap();
        }
        let out = w.into_written();
        let back: Vec<(u16, Vec<Node>)> = TlvReader::new(out)
            .map(|t| {
                let t = t.unwrap();
                (t.id, read_nodes(t.children().unwrap()))
            })
            .collect();
        prop_assert_eq!(back, objects);
    }

    #[test]
    fn integers_round_trip(v: i64) {
        prop_assert_eq!(tlv::decode_integer(tlv::encode_integer(v).as_slice()), Ok(v));
    }

    #[test]
    fn unsigned_round_trip(v: u64) {
        prop_assert_eq!(tlv::decode_unsigned(tlv::encode_unsigned(v).as_slice()), Ok(v));
    }

    #[test]
    fn floats_round_trip(v: f64) {
        let back = tlv::decode_float(tlv::encode_float(v).as_slice()).unwrap();
        prop_assert!(back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()));
    }

    #[test]
    fn objlnk_and_bool_round_trip(o: u16, i: u16, b: bool) {
        prop_assert_eq!(tlv::decode_objlnk(tlv::encode_objlnk(o, i).as_slice()), Ok((o, i)));
        prop_assert_eq!(tlv::decode_bool(tlv::encode_bool(b).as_slice()), Ok(b));
    }

    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        fn walk(r: TlvReader<'_>) {
            for t in r.flatten() {
                if let Ok(inner) = t.children() {
                    walk(inner);
                }
                let _ = tlv::decode_integer(t.value);
                let _ = tlv::decode_float(t.value);
                let _ = tlv::decode_string(t.value);
            }
        }
        walk(TlvReader::new(&bytes));
    }

    #[test]
    fn writer_never_panics_on_small_buffers(size in 0usize..40, objects in prop::collection::vec(prop::collection::vec(node(), 0..3), 0..3)) {
        let mut buf = vec![0u8; size];
        let mut w = TlvWriter::new(&mut buf);
        for (i, nodes) in objects.iter().enumerate() {
            let _ = w.object_instance(i as u16, |w| write_nodes(w, nodes));
        }
        // Whatever was written is well formed.
        for t in TlvReader::new(w.written()) {
            let t = t.unwrap();
            for c in t.children().unwrap() {
                c.unwrap();
            }
        }
    }
}

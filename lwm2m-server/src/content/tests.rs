//! Decoding typed by the models, and writes encoded by the resource's type in each format.

use super::*;
use lwm2m_core::content::{LWM2M_TLV, OCTET_STREAM, SENML_CBOR, TEXT_PLAIN};
use serde_json::json;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

fn models() -> Models {
    Models::builtin()
}

/// The Device object example of LwM2M TS Core (the /3/0 TLV read response).
const DEVICE_3_0: &str = "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
    C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
    C8 02 09 33 34 35 30 30 30 31 32 33 C3 03 31 2E 30 86 06 41 00 01 41 01 05
    88 07 08 42 00 0E D8 42 01 13 88 87 08 41 00 7D 42 01 03 84 C1 09 64 C1 0A 0F
    83 0B 41 00 00 C4 0D 51 82 42 8F C6 0E 2B 30 32 3A 30 30 C1 10 55";

fn find<'a>(items: &'a [Item], path: &str) -> &'a Item {
    items
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("{path} missing in {items:?}"))
}

#[test]
fn the_specs_device_tlv_decodes_with_types_names_and_units() {
    let items = decode(&p("/3/0"), Some(LWM2M_TLV), &hex(DEVICE_3_0), &models()).unwrap();
    let fw = find(&items, "/3/0/3");
    assert_eq!(
        (&fw.value, fw.name.as_deref()),
        (&json!("1.0"), Some("Firmware Version"))
    );
    assert_eq!(find(&items, "/3/0/0").value, json!("Open Mobile Alliance"));
    // Multiple resource 7 (Power Source Voltage): instances 0 = 3800, 1 = 5000.
    assert_eq!(find(&items, "/3/0/7/0").value, json!(3800));
    assert_eq!(
        find(&items, "/3/0/7/1").name.as_deref(),
        Some("Power Source Voltage")
    );
    let battery = find(&items, "/3/0/9");
    assert_eq!(
        (&battery.value, battery.units.as_deref()),
        (&json!(100), Some("/100"))
    );
    // Current Time 0x5182428F = 1367491215, a Time.
    let t = find(&items, "/3/0/13");
    assert_eq!((t.kind, &t.value), ("time", &json!(1367491215)));
    assert_eq!(find(&items, "/3/0/14").value, json!("+02:00"));
    assert_eq!(items.len(), 16);
}

#[test]
fn object_5_values_carry_their_meaning() {
    let m = models();
    let state = decode(&p("/5/0/3"), Some(TEXT_PLAIN), b"1", &m).unwrap();
    assert_eq!(
        (state[0].name.as_deref(), state[0].meaning),
        (Some("State"), Some("Downloading"))
    );
    let result = decode(&p("/5/0/5"), Some(LWM2M_TLV), &[0xc1, 0x05, 0x05], &m).unwrap();
    assert_eq!(result[0].meaning, Some("Integrity check failure"));
    let unknown = decode(&p("/5/0/5"), Some(TEXT_PLAIN), b"42", &m).unwrap();
    assert_eq!(unknown[0].meaning, None, "no meaning is made up");
}

#[test]
fn a_single_resource_tlv_and_text_decode_to_the_requested_path() {
    let m = models();
    // C1 03 02: resource 3 (State) = 2.
    let items = decode(&p("/5/0/3"), Some(LWM2M_TLV), &[0xc1, 0x03, 0x02], &m).unwrap();
    assert_eq!(
        (items[0].path.as_str(), &items[0].value),
        ("/5/0/3", &json!(2))
    );
    assert_eq!(items[0].kind, "integer");
    let items = decode(&p("/5/0/3"), Some(TEXT_PLAIN), b"2", &m).unwrap();
    assert_eq!(items[0].value, json!(2));
    let items = decode(&p("/5/0/7"), None, b"2.0.0", &m).unwrap();
    assert_eq!(items[0].value, json!("2.0.0"));
    // No model: printable text stays text, a number stays the string it was.
    let items = decode(&p("/32769/0/1"), Some(LWM2M_TLV), &[0xc1, 0x01, 0x41], &m).unwrap();
    assert_eq!((items[0].kind, items[0].name.as_ref()), ("string", None));
}

#[test]
fn malformed_payloads_are_errors_not_panics() {
    let m = models();
    let path = p("/5/0/3");
    assert!(matches!(
        decode(&path, Some(TEXT_PLAIN), b"two", &m),
        Err(ContentError::Malformed { .. })
    ));
    assert!(matches!(
        decode(&path, Some(LWM2M_TLV), &[0xc8, 0x03], &m),
        Err(ContentError::Malformed { .. })
    ));
    assert!(matches!(
        decode(&path, Some(SENML_CBOR), &[0x9f], &m),
        Err(ContentError::Malformed { .. })
    ));
    assert_eq!(
        decode(&path, Some(50), b"{}", &m),
        Err(ContentError::Unsupported(50))
    );
    let e = decode(&path, Some(TEXT_PLAIN), b"two", &m).unwrap_err();
    assert!(!e.to_string().contains("InvalidChar"), "Debug text in {e}");
}

/// A single write in `format`, through the builtin models.
fn write(path: &str, v: serde_json::Value, format: Option<WriteFormat>) -> (u16, Vec<u8>) {
    encode_resource(&p(path), &v, &models(), format, false)
        .unwrap_or_else(|e| panic!("{path} {v}: {e}"))
}

fn refused(path: &str, v: serde_json::Value) -> String {
    encode_resource(&p(path), &v, &models(), None, false)
        .unwrap_err()
        .to_string()
}

#[test]
fn each_type_is_written_in_plain_text_by_its_type() {
    use WriteFormat::Text;
    // Integer (Severity), Unsigned (Lifetime), Float (3303 Sensor Value is R: Min Range is R too,
    // so 3316 Current Calibration), Boolean (3311 On/Off), String, Time, Objlnk, Corelnk.
    assert_eq!(
        write("/5/0/11", json!("2"), None),
        (TEXT_PLAIN, b"2".to_vec())
    );
    assert_eq!(
        write("/1/0/1", json!("600"), Some(Text)),
        (TEXT_PLAIN, b"600".to_vec())
    );
    assert_eq!(
        write("/3316/0/5821", json!("0.5"), None),
        (TEXT_PLAIN, b"0.5".to_vec())
    );
    assert_eq!(
        write("/3311/0/5850", json!("true"), None),
        (TEXT_PLAIN, b"1".to_vec())
    );
    assert_eq!(
        write("/3/0/14", json!("+02:00"), None),
        (TEXT_PLAIN, b"+02:00".to_vec())
    );
    assert_eq!(
        write("/3/0/13", json!("2013-05-02T10:40:15Z"), None),
        (TEXT_PLAIN, b"1367491215".to_vec())
    );
    assert_eq!(
        write("/1/0/10", json!("11:0"), None),
        (TEXT_PLAIN, b"11:0".to_vec())
    );
    // Opaque goes as octet-stream.
    assert_eq!(write("/5/0/0", json!("00"), None), (OCTET_STREAM, vec![0]));
    // A string that looks like a number stays a string for a String resource.
    assert_eq!(
        write("/5/0/1", json!("42"), None),
        (TEXT_PLAIN, b"42".to_vec())
    );
}

#[test]
fn each_type_is_written_in_tlv_by_its_type() {
    use WriteFormat::Tlv;
    // Resource 11 = 2: C1 0B 02. Lifetime 600 as 2 bytes: C2 01 02 58.
    assert_eq!(
        write("/5/0/11", json!("2"), Some(Tlv)),
        (LWM2M_TLV, hex("C1 0B 02"))
    );
    assert_eq!(
        write("/1/0/1", json!("600"), Some(Tlv)),
        (LWM2M_TLV, hex("C2 01 02 58"))
    );
    // Float 0.5 as a 4-byte single: 16-bit id 5821 = 0x16BD, type E4.
    assert_eq!(
        write("/3316/0/5821", json!("0.5"), Some(Tlv)),
        (LWM2M_TLV, hex("E4 16 BD 3F 00 00 00"))
    );
    assert_eq!(
        write("/3311/0/5850", json!("1"), Some(Tlv)),
        (LWM2M_TLV, hex("E1 16 DA 01"))
    );
    assert_eq!(
        write("/3/0/14", json!("+02"), Some(Tlv)),
        (LWM2M_TLV, hex("C3 0E 2B 30 32"))
    );
    // Time 0x5182428F in 4 bytes, Objlnk 11:0 as two 16-bit ids.
    assert_eq!(
        write("/3/0/13", json!(1367491215), Some(Tlv)),
        (LWM2M_TLV, hex("C4 0D 51 82 42 8F"))
    );
    assert_eq!(
        write("/1/0/10", json!("11:0"), Some(Tlv)),
        (LWM2M_TLV, hex("C4 0A 00 0B 00 00"))
    );
    assert_eq!(
        write("/5/0/0", json!("0102"), Some(Tlv)),
        (LWM2M_TLV, hex("C2 00 01 02"))
    );
    // A multiple-instance resource: 88 07 08 (resource 7, 8 bytes) 42 00 0E D8 42 01 13 88.
    assert_eq!(
        write("/3/0/7", json!(["3800", 5000]), None),
        (LWM2M_TLV, hex("88 07 08 42 00 0E D8 42 01 13 88"))
    );
}

#[test]
fn each_type_is_written_in_senml_cbor_and_reads_back_the_same() {
    let m = models();
    for (path, v, want) in [
        ("/5/0/11", json!("2"), json!(2)),
        ("/1/0/1", json!("600"), json!(600)),
        ("/3316/0/5821", json!("0.5"), json!(0.5)),
        ("/3311/0/5850", json!("false"), json!(false)),
        ("/3/0/14", json!("+02:00"), json!("+02:00")),
        ("/3/0/13", json!("1367491215"), json!(1367491215)),
        ("/1/0/10", json!("11:0"), json!("11:0")),
        ("/5/0/0", json!("0102"), json!("0102")),
    ] {
        let (cf, bytes) = write(path, v.clone(), Some(WriteFormat::SenmlCbor));
        assert_eq!(cf, SENML_CBOR);
        let back = decode(&p(path), Some(SENML_CBOR), &bytes, &m).unwrap();
        assert_eq!(
            (back[0].path.as_str(), &back[0].value),
            (path, &want),
            "{v}"
        );
    }
    // Several instances, relative to the resource.
    let (cf, bytes) = encode_resource(
        &p("/3/0/7"),
        &json!({"0": 3800, "1": "5000"}),
        &m,
        None,
        true,
    )
    .unwrap();
    assert_eq!(cf, SENML_CBOR);
    let back = decode(&p("/3/0/7"), Some(SENML_CBOR), &bytes, &m).unwrap();
    let got: Vec<(&str, &serde_json::Value)> =
        back.iter().map(|i| (i.path.as_str(), &i.value)).collect();
    assert_eq!(
        got,
        [("/3/0/7/0", &json!(3800)), ("/3/0/7/1", &json!(5000))]
    );
}

#[test]
fn a_value_that_does_not_fit_is_refused_with_the_resource_and_the_reason() {
    let cases = [
        (
            "/1/0/1",
            json!("abc"),
            "/1/0/1 (Lifetime, Unsigned Integer): \"abc\" is not an integer",
        ),
        (
            "/1/0/1",
            json!("-5"),
            "/1/0/1 (Lifetime, Unsigned Integer): \"-5\" is negative",
        ),
        (
            "/5/0/11",
            json!("2.5"),
            "/5/0/11 (Severity, Integer): \"2.5\" is not a whole number",
        ),
        (
            "/3311/0/5850",
            json!("on"),
            "(On/Off, Boolean): \"on\" is not a boolean",
        ),
        (
            "/3316/0/5821",
            json!("warm"),
            "(Current Calibration, Float): \"warm\" is not a number",
        ),
        (
            "/5/0/0",
            json!("xyz"),
            "(Package, Opaque): \"xyz\" is not hex",
        ),
        (
            "/3/0/13",
            json!("noon"),
            "(Current Time, Time): \"noon\" is not a time",
        ),
        (
            "/1/0/10",
            json!("11"),
            "(APN Link, Objlnk): \"11\" is not an object link",
        ),
        (
            "/3/0/4",
            json!(""),
            "/3/0/4 (Reboot, no value (executable)): it is executable",
        ),
        (
            "/3/0/14",
            json!(["a", "b"]),
            "(UTC Offset, String): it is a single-instance resource",
        ),
    ];
    for (path, v, want) in cases {
        let got = refused(path, v.clone());
        assert!(got.contains(want), "{path} {v}: got {got:?}, want {want:?}");
    }
    // Opaque bytes only for an Opaque resource; an instance never as plain text.
    let e = encode_resource(
        &p("/1/0/1"),
        &json!("1"),
        &models(),
        Some(WriteFormat::Opaque),
        false,
    );
    assert!(
        e.unwrap_err()
            .to_string()
            .contains("only an Opaque resource")
    );
    let mut m = serde_json::Map::new();
    m.insert("1".into(), json!(300));
    let e = encode_instance(&p("/1/0"), &m, &models(), Some(WriteFormat::Text), false);
    assert!(e.unwrap_err().to_string().contains("use tlv or senml-cbor"));
    assert!(
        ContentError::Value {
            target: String::new(),
            reason: String::new()
        }
        .is_request_error()
    );
}

#[test]
fn an_instance_write_encodes_every_resource_by_its_type() {
    let m = models();
    let mut values = serde_json::Map::new();
    values.insert("1".into(), json!("300"));
    values.insert("6".into(), json!("false"));
    values.insert("7".into(), json!("UQ"));
    // TLV: C2 01 01 2C, C1 06 00, C2 07 55 51.
    let (cf, bytes) = encode_instance(&p("/1/0"), &values, &m, None, false).unwrap();
    assert_eq!(
        (cf, bytes),
        (LWM2M_TLV, hex("C2 01 01 2C C1 06 00 C2 07 55 51"))
    );
    let (cf, bytes) = encode_instance(&p("/1/0"), &values, &m, None, true).unwrap();
    assert_eq!(cf, SENML_CBOR);
    let back = decode(&p("/1/0"), Some(SENML_CBOR), &bytes, &m).unwrap();
    let got: Vec<(&str, &serde_json::Value)> =
        back.iter().map(|i| (i.path.as_str(), &i.value)).collect();
    assert_eq!(
        got,
        [
            ("/1/0/1", &json!(300)),
            ("/1/0/6", &json!(false)),
            ("/1/0/7", &json!("UQ"))
        ]
    );
    values.insert("1".into(), json!("soon"));
    let e = encode_instance(&p("/1/0"), &values, &m, None, false).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/1/0/1 (Lifetime, Unsigned Integer)"),
        "{e}"
    );
}

#[test]
fn an_object_without_a_model_is_written_by_number_from_the_json() {
    let m = models();
    assert_eq!(
        encode_resource(&p("/32769/0/1"), &json!(12), &m, None, false).unwrap(),
        (TEXT_PLAIN, b"12".to_vec())
    );
    assert_eq!(
        encode_resource(&p("/32769/0/1"), &json!("twelve"), &m, None, false).unwrap(),
        (TEXT_PLAIN, b"twelve".to_vec())
    );
    let (_, tlv) = encode_resource(
        &p("/32769/0/1"),
        &json!(true),
        &m,
        Some(WriteFormat::Tlv),
        false,
    )
    .unwrap();
    assert_eq!(tlv, hex("C1 01 01"));
}

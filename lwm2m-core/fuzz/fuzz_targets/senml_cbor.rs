//! SenML-CBOR: never panic; a payload whose records all resolve to paths re-encodes (full names,
//! no base) to a payload that decodes to the same paths and values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::content::Value;
use lwm2m_core::content::senml_cbor::{RawSenmlReader, SenmlReader, SenmlWriter};

fn same(a: &Option<Value<'_>>, b: &Option<Value<'_>>) -> bool {
    match (a, b) {
        (Some(Value::Float(x)), Some(Value::Float(y))) => x.to_bits() == y.to_bits() || x == y,
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = RawSenmlReader::new(data) {
        for r in raw {
            if r.is_err() {
                break;
            }
        }
    }
    let Ok(reader) = SenmlReader::new(data) else {
        return;
    };
    let Ok(records) = reader.collect::<Result<Vec<_>, _>>() else {
        return;
    };
    // Full names cost more than base-name compression: a record that is one byte in the input
    // (an empty map under a base name) takes its whole path when re-encoded.
    let mut buf = vec![0u8; data.len() * 2 + records.len() * 64 + 64];
    let mut w = SenmlWriter::absolute(&mut buf);
    for r in &records {
        w.record(r.path.ids(), r.value.as_ref())
            .expect("record fits");
    }
    let encoded = w.finish().expect("header fits");
    let again: Vec<_> = SenmlReader::new(encoded)
        .expect("re-encoded payload is an array")
        .collect::<Result<_, _>>()
        .expect("re-encoded payload decodes");
    assert_eq!(again.len(), records.len());
    for (a, b) in again.iter().zip(&records) {
        assert_eq!(a.path, b.path);
        assert!(same(&a.value, &b.value), "{:?} != {:?}", a.value, b.value);
    }
});

//! TLV: never panic; a payload that decodes completely re-encodes (shortest headers) to bytes
//! that decode to the same tree, and every value decoder round-trips what it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::content::tlv::{self, TlvError, TlvKind, TlvReader, TlvWriter};

#[derive(Debug, PartialEq)]
struct Node {
    kind: TlvKind,
    id: u16,
    value: Vec<u8>,
    children: Vec<Node>,
}

fn read(reader: TlvReader<'_>) -> Result<Vec<Node>, TlvError> {
    let mut nodes = Vec::new();
    for tlv in reader {
        let tlv = tlv?;
        let children = match tlv.children() {
            Ok(inner) => read(inner)?,
            Err(_) => Vec::new(),
        };
        check_values(tlv.value);
        nodes.push(Node {
            kind: tlv.kind,
            id: tlv.id,
            value: tlv.value.to_vec(),
            children,
        });
    }
    Ok(nodes)
}

fn write(w: &mut TlvWriter<'_>, nodes: &[Node]) -> Result<(), TlvError> {
    for n in nodes {
        match n.kind {
            TlvKind::Resource => w.resource(n.id, &n.value).map(|_| ())?,
            TlvKind::ResourceInstance => w.resource_instance(n.id, &n.value).map(|_| ())?,
            TlvKind::MultipleResource => w
                .multiple_resource(n.id, |w| write(w, &n.children))
                .map(|_| ())?,
            TlvKind::ObjectInstance => w
                .object_instance(n.id, |w| write(w, &n.children))
                .map(|_| ())?,
        }
    }
    Ok(())
}

fn strip_container_values(nodes: &mut [Node]) {
    for n in nodes {
        if matches!(n.kind, TlvKind::ObjectInstance | TlvKind::MultipleResource) {
            n.value.clear();
            strip_container_values(&mut n.children);
        }
    }
}

fn check_values(v: &[u8]) {
    if let Ok(i) = tlv::decode_integer(v) {
        assert_eq!(
            tlv::decode_integer(tlv::encode_integer(i).as_slice()),
            Ok(i)
        );
    }
    if let Ok(u) = tlv::decode_unsigned(v) {
        assert_eq!(
            tlv::decode_unsigned(tlv::encode_unsigned(u).as_slice()),
            Ok(u)
        );
    }
    if let Ok(f) = tlv::decode_float(v) {
        let back = tlv::decode_float(tlv::encode_float(f).as_slice()).unwrap();
        assert!(back == f || (back.is_nan() && f.is_nan()));
    }
    if let Ok(b) = tlv::decode_bool(v) {
        assert_eq!(tlv::encode_bool(b).as_slice(), v);
    }
    if let Ok((o, i)) = tlv::decode_objlnk(v) {
        assert_eq!(tlv::encode_objlnk(o, i).as_slice(), v);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut nodes) = read(TlvReader::new(data)) else {
        return;
    };
    // Shortest headers never make the payload longer.
    let mut buf = vec![0u8; data.len() + 16];
    let mut w = TlvWriter::new(&mut buf);
    write(&mut w, &nodes).expect("re-encoding a decoded tree fits");
    let encoded = w.into_written();
    assert!(encoded.len() <= data.len());
    let mut again = read(TlvReader::new(encoded)).expect("re-encoded TLV decodes");
    strip_container_values(&mut nodes);
    strip_container_values(&mut again);
    assert_eq!(again, nodes);
});

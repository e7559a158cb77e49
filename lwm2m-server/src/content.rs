//! LwM2M payloads to and from JSON for the admin API: TLV, SenML-CBOR, plain text, opaque and link
//! format, decoded with lwm2m-core and typed with [`crate::model`].

use lwm2m_core::Path;
use lwm2m_core::content::senml_cbor::{SenmlReader, SenmlWriter};
use lwm2m_core::content::tlv::{self, TlvKind, TlvReader, TlvWriter};
use lwm2m_core::content::{ContentFormat, Value, text};
use serde::Serialize;
use serde_json::json;

use crate::model::{ResourceType, resource_type};

/// One value read from a device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Item {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: serde_json::Value,
}

/// A payload that could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("malformed {format} payload: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    #[error("content format {0} is not supported")]
    Unsupported(u16),
    #[error("cannot encode the value: {0}")]
    Encode(String),
}

fn malformed(format: &'static str, e: impl std::fmt::Debug) -> ContentError {
    ContentError::Malformed {
        format,
        detail: format!("{e:?}"),
    }
}

fn item(path: Path, value: Value<'_>) -> Item {
    let (kind, value) = match value {
        Value::Integer(v) => ("integer", json!(v)),
        Value::Unsigned(v) => ("unsigned", json!(v)),
        Value::Float(v) => ("float", json!(v)),
        Value::Boolean(v) => ("boolean", json!(v)),
        Value::String(v) => ("string", json!(v)),
        Value::Opaque(v) => ("opaque", json!(crate::repository::hex(v))),
        Value::ObjLink(o, i) => ("objlnk", json!(format!("{o}:{i}"))),
    };
    Item {
        path: path.to_string(),
        kind,
        value,
    }
}

/// Decodes a response payload for a request on `path` with content format `cf`.
pub fn decode(path: &Path, cf: Option<u16>, payload: &[u8]) -> Result<Vec<Item>, ContentError> {
    let cf = cf.unwrap_or(0);
    match ContentFormat::from_number(cf) {
        Some(ContentFormat::TextPlain) => {
            let s = std::str::from_utf8(payload).map_err(|e| malformed("text", e))?;
            let typed = typed_text(path, s)?;
            Ok(vec![item(*path, typed)])
        }
        Some(ContentFormat::OctetStream) => Ok(vec![item(*path, Value::Opaque(payload))]),
        Some(ContentFormat::Lwm2mTlv) => decode_tlv(path, payload),
        Some(ContentFormat::SenmlCbor) => {
            let reader = SenmlReader::new(payload).map_err(|e| malformed("SenML-CBOR", e))?;
            let mut out = Vec::new();
            for r in reader {
                let r = r.map_err(|e| malformed("SenML-CBOR", e))?;
                if let Some(v) = r.value {
                    out.push(item(r.path, v));
                }
            }
            Ok(out)
        }
        Some(ContentFormat::LinkFormat) => {
            let s = std::str::from_utf8(payload).map_err(|e| malformed("link format", e))?;
            Ok(vec![Item {
                path: path.to_string(),
                kind: "link-format",
                value: json!(s),
            }])
        }
        _ => Err(ContentError::Unsupported(cf)),
    }
}

fn typed_text<'a>(path: &Path, s: &'a str) -> Result<Value<'a>, ContentError> {
    let t = match (path.object_id(), path.resource_id()) {
        (Some(o), Some(r)) => resource_type(o, r),
        _ => None,
    };
    let b = s.as_bytes();
    let err = |e| malformed("text", e);
    Ok(match t {
        Some(ResourceType::Integer | ResourceType::Time) => {
            Value::Integer(text::parse_integer(b).map_err(err)?)
        }
        Some(ResourceType::Unsigned) => Value::Unsigned(text::parse_unsigned(b).map_err(err)?),
        Some(ResourceType::Float) => Value::Float(text::parse_float(b).map_err(err)?),
        Some(ResourceType::Boolean) => Value::Boolean(text::parse_bool(b).map_err(err)?),
        Some(ResourceType::ObjLink) => {
            let (o, i) = text::parse_objlnk(b).map_err(err)?;
            Value::ObjLink(o, i)
        }
        _ => Value::String(s),
    })
}

fn decode_tlv(path: &Path, payload: &[u8]) -> Result<Vec<Item>, ContentError> {
    let mut out = Vec::new();
    let object = path
        .object_id()
        .ok_or_else(|| malformed("TLV", "a TLV read needs an object path"))?;
    // The TLV's top level holds instances for an object path and resources below that; for a
    // resource (or resource instance) path the ids are resource ids under the instance.
    let base = match (path.depth(), path.instance_id()) {
        (d, Some(instance)) if d >= 3 => {
            Path::instance(object, instance).map_err(|e| malformed("TLV", e))?
        }
        _ => *path,
    };
    for tlv in TlvReader::new(payload) {
        let tlv = tlv.map_err(|e| malformed("TLV", e))?;
        let here = base.child(tlv.id).map_err(|e| malformed("TLV", e))?;
        walk_tlv(object, here, tlv, &mut out)?;
    }
    Ok(out)
}

fn walk_tlv(
    object: u16,
    here: Path,
    t: tlv::Tlv<'_>,
    out: &mut Vec<Item>,
) -> Result<(), ContentError> {
    match t.kind {
        TlvKind::ObjectInstance | TlvKind::MultipleResource => {
            for child in t.children().map_err(|e| malformed("TLV", e))? {
                let child = child.map_err(|e| malformed("TLV", e))?;
                let p = here.child(child.id).map_err(|e| malformed("TLV", e))?;
                walk_tlv(object, p, child, out)?;
            }
        }
        TlvKind::Resource | TlvKind::ResourceInstance => {
            let resource = here.resource_id().unwrap_or(0);
            out.push(item(
                here,
                tlv_value(resource_type(object, resource), t.value)?,
            ));
        }
    }
    Ok(())
}

fn tlv_value(t: Option<ResourceType>, v: &[u8]) -> Result<Value<'_>, ContentError> {
    let err = |e| malformed("TLV", e);
    Ok(match t {
        Some(ResourceType::Integer | ResourceType::Time) => {
            Value::Integer(tlv::decode_integer(v).map_err(err)?)
        }
        Some(ResourceType::Unsigned) => Value::Unsigned(tlv::decode_unsigned(v).map_err(err)?),
        Some(ResourceType::Float) => Value::Float(tlv::decode_float(v).map_err(err)?),
        Some(ResourceType::Boolean) => Value::Boolean(tlv::decode_bool(v).map_err(err)?),
        Some(ResourceType::ObjLink) => {
            let (o, i) = tlv::decode_objlnk(v).map_err(err)?;
            Value::ObjLink(o, i)
        }
        Some(ResourceType::String) => Value::String(tlv::decode_string(v).map_err(err)?),
        Some(ResourceType::Opaque | ResourceType::Executable) => Value::Opaque(v),
        None => match std::str::from_utf8(v) {
            Ok(s) if !s.is_empty() && s.chars().all(|c| !c.is_control()) => Value::String(s),
            _ => Value::Opaque(v),
        },
    })
}

/// A JSON value as the LwM2M value the resource at `path` expects.
fn value_for<'a>(
    path: &Path,
    v: &'a serde_json::Value,
    scratch: &'a mut Vec<u8>,
) -> Result<Value<'a>, ContentError> {
    let t = match (path.object_id(), path.resource_id()) {
        (Some(o), Some(r)) => resource_type(o, r),
        _ => None,
    };
    let bad = || ContentError::Encode(format!("{v} does not fit {path}"));
    Ok(match (t, v) {
        (Some(ResourceType::Opaque), serde_json::Value::String(s)) => {
            *scratch = (0..s.len())
                .step_by(2)
                .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| ContentError::Encode(format!("{path} is opaque: give hex")))?;
            Value::Opaque(scratch)
        }
        (Some(ResourceType::Integer | ResourceType::Time), _) => Value::Integer(
            v.as_i64()
                .or_else(|| v.as_str()?.parse().ok())
                .ok_or_else(bad)?,
        ),
        (Some(ResourceType::Unsigned), _) => Value::Unsigned(
            v.as_u64()
                .or_else(|| v.as_str()?.parse().ok())
                .ok_or_else(bad)?,
        ),
        (Some(ResourceType::Float), _) => Value::Float(
            v.as_f64()
                .or_else(|| v.as_str()?.parse().ok())
                .ok_or_else(bad)?,
        ),
        (Some(ResourceType::Boolean), _) => Value::Boolean(match v {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(s) if s == "1" || s == "true" => true,
            serde_json::Value::String(s) if s == "0" || s == "false" => false,
            _ => return Err(bad()),
        }),
        (_, serde_json::Value::String(s)) => Value::String(s),
        (_, serde_json::Value::Bool(b)) => Value::Boolean(*b),
        (_, n @ serde_json::Value::Number(_)) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().ok_or_else(bad)?),
        },
        _ => return Err(bad()),
    })
}

/// Encodes a value for a Write on a single resource: plain text (or opaque for opaque resources),
/// which every LwM2M client accepts for a single resource. Returns the content format and bytes.
pub fn encode_resource(path: &Path, v: &serde_json::Value) -> Result<(u16, Vec<u8>), ContentError> {
    let mut scratch = Vec::new();
    let value = value_for(path, v, &mut scratch)?;
    match value {
        Value::Opaque(b) => Ok((ContentFormat::OctetStream.number(), b.to_vec())),
        other => {
            let mut s = String::new();
            text::write_value(&mut s, &other)
                .map_err(|e| ContentError::Encode(format!("{e:?}")))?;
            Ok((ContentFormat::TextPlain.number(), s.into_bytes()))
        }
    }
}

/// Encodes `{resource id: value}` for a Write on an object instance or a Create, in TLV (LwM2M 1.0
/// clients) or SenML-CBOR (1.1).
pub fn encode_instance(
    path: &Path,
    values: &serde_json::Map<String, serde_json::Value>,
    senml: bool,
) -> Result<(u16, Vec<u8>), ContentError> {
    let mut buf = vec![0u8; 4096];
    let mut resources = Vec::new();
    for (k, v) in values {
        let id: u16 = k
            .parse()
            .map_err(|_| ContentError::Encode(format!("resource id {k:?} is not a number")))?;
        resources.push((id, v));
    }
    resources.sort_by_key(|(id, _)| *id);
    let enc = |e: &dyn std::fmt::Debug| ContentError::Encode(format!("{e:?}"));
    if senml {
        let mut w = SenmlWriter::new(&mut buf, path);
        for (id, v) in &resources {
            let rp = path.child(*id).map_err(|e| enc(&e))?;
            let mut scratch = Vec::new();
            let value = value_for(&rp, v, &mut scratch)?;
            w.record(&[*id], Some(&value)).map_err(|e| enc(&e))?;
        }
        let out = w.finish().map_err(|e| enc(&e))?.to_vec();
        Ok((ContentFormat::SenmlCbor.number(), out))
    } else {
        let mut w = TlvWriter::new(&mut buf);
        for (id, v) in &resources {
            let rp = path.child(*id).map_err(|e| enc(&e))?;
            let mut scratch = Vec::new();
            let value = value_for(&rp, v, &mut scratch)?;
            w.resource_value(*id, &value).map_err(|e| enc(&e))?;
        }
        Ok((ContentFormat::Lwm2mTlv.number(), w.written().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwm2m_core::content::{LWM2M_TLV, OCTET_STREAM, SENML_CBOR, TEXT_PLAIN};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
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
    fn the_specs_device_tlv_decodes_with_types() {
        let items = decode(
            &Path::parse("/3/0").unwrap(),
            Some(LWM2M_TLV),
            &hex(DEVICE_3_0),
        )
        .unwrap();
        assert_eq!(find(&items, "/3/0/0").value, json!("Open Mobile Alliance"));
        assert_eq!(find(&items, "/3/0/3").value, json!("1.0"));
        // Multiple resource 7 (Power Source Voltage): instances 0 = 3800, 1 = 5000.
        assert_eq!(find(&items, "/3/0/7/0").value, json!(3800));
        assert_eq!(find(&items, "/3/0/7/1").value, json!(5000));
        assert_eq!(find(&items, "/3/0/9").value, json!(100));
        // Current Time 0x5182428F = 1367491215.
        let t = find(&items, "/3/0/13");
        assert_eq!((t.kind, &t.value), ("integer", &json!(1367491215)));
        assert_eq!(find(&items, "/3/0/14").value, json!("+02:00"));
        assert_eq!(items.len(), 16);
    }

    #[test]
    fn a_single_resource_tlv_and_text_decode_to_the_requested_path() {
        // C1 03 02: resource 3 (State) = 2.
        let items = decode(
            &Path::parse("/5/0/3").unwrap(),
            Some(LWM2M_TLV),
            &[0xc1, 0x03, 0x02],
        )
        .unwrap();
        assert_eq!(
            items,
            vec![Item {
                path: "/5/0/3".into(),
                kind: "integer",
                value: json!(2)
            }]
        );
        let items = decode(&Path::parse("/5/0/3").unwrap(), Some(TEXT_PLAIN), b"2").unwrap();
        assert_eq!(items[0].value, json!(2));
        let items = decode(&Path::parse("/5/0/7").unwrap(), None, b"2.0.0").unwrap();
        assert_eq!(items[0].value, json!("2.0.0"));
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let p = Path::parse("/5/0/3").unwrap();
        assert!(matches!(
            decode(&p, Some(TEXT_PLAIN), b"two"),
            Err(ContentError::Malformed { .. })
        ));
        assert!(matches!(
            decode(&p, Some(LWM2M_TLV), &[0xc8, 0x03]),
            Err(ContentError::Malformed { .. })
        ));
        assert!(matches!(
            decode(&p, Some(SENML_CBOR), &[0x9f]),
            Err(ContentError::Malformed { .. })
        ));
        assert_eq!(
            decode(&p, Some(50), b"{}"),
            Err(ContentError::Unsupported(50))
        );
    }

    #[test]
    fn writes_encode_by_resource_type() {
        let uri = Path::parse("/5/0/1").unwrap();
        assert_eq!(
            encode_resource(&uri, &json!("coap://h/fw/1/manifest")).unwrap(),
            (TEXT_PLAIN, b"coap://h/fw/1/manifest".to_vec())
        );
        assert_eq!(
            encode_resource(&uri, &json!("")).unwrap(),
            (TEXT_PLAIN, vec![])
        );
        let pkg = Path::parse("/5/0/0").unwrap();
        assert_eq!(
            encode_resource(&pkg, &json!("00")).unwrap(),
            (OCTET_STREAM, vec![0])
        );
        let lifetime = Path::parse("/1/0/1").unwrap();
        assert_eq!(
            encode_resource(&lifetime, &json!(300)).unwrap(),
            (TEXT_PLAIN, b"300".to_vec())
        );
        assert!(encode_resource(&lifetime, &json!("soon")).is_err());
        // An instance write in TLV: resource 1 = 300 as a 2-byte integer: C2 01 01 2C.
        let mut m = serde_json::Map::new();
        m.insert("1".into(), json!(300));
        let (cf, bytes) = encode_instance(&Path::parse("/1/0").unwrap(), &m, false).unwrap();
        assert_eq!((cf, bytes), (LWM2M_TLV, vec![0xc2, 0x01, 0x01, 0x2c]));
        let (cf, bytes) = encode_instance(&Path::parse("/1/0").unwrap(), &m, true).unwrap();
        assert_eq!(cf, SENML_CBOR);
        let back = decode(&Path::parse("/1/0").unwrap(), Some(SENML_CBOR), &bytes).unwrap();
        assert_eq!(
            back,
            vec![Item {
                path: "/1/0/1".into(),
                kind: "integer",
                value: json!(300)
            }]
        );
    }
}

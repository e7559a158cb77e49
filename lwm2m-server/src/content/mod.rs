//! LwM2M payloads to and from JSON for the admin API: TLV, SenML-CBOR, plain text, opaque and link
//! format, decoded with lwm2m-core and typed, named and given units by the object models
//! ([`crate::model`]).
//!
//! - this module: [`Item`] (one value read) and [`decode`];
//! - `value`: an operator's JSON as the value a resource's type takes, or the reason it does not;
//! - `encode`: writes and creates, in the format asked for or the client's.

mod encode;
mod value;

#[cfg(test)]
mod tests;

use lwm2m_core::Path;
use lwm2m_core::content::senml_cbor::SenmlReader;
use lwm2m_core::content::tlv::{self, TlvKind, TlvReader};
use lwm2m_core::content::{ContentFormat, Value, text};
use serde::Serialize;
use serde_json::json;

pub use encode::{WriteFormat, encode_instance, encode_resource};

use crate::model::{Models, ResourceModel, ResourceType};

/// One value read from a device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Item {
    pub path: String,
    /// The data type: the model's when the object has one, else what the payload carried.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: serde_json::Value,
    /// The resource's name, from its model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its units, from its model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    /// What an enumerated value means (Object 5 State, Update Result, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meaning: Option<&'static str>,
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
    /// A value to write that does not fit its resource: `target` names it (path, name, type).
    #[error("{target}: {reason}")]
    Value { target: String, reason: String },
}

impl ContentError {
    /// Whether the request was at fault (a value to write), not the device (a payload it sent).
    pub fn is_request_error(&self) -> bool {
        matches!(self, ContentError::Value { .. } | ContentError::Encode(_))
    }
}

fn malformed(format: &'static str, e: impl std::fmt::Display) -> ContentError {
    ContentError::Malformed {
        format,
        detail: e.to_string(),
    }
}

/// The kind a value of this variant has on the wire.
fn wire_kind(value: &Value<'_>) -> &'static str {
    match value {
        Value::Integer(_) => "integer",
        Value::Unsigned(_) => "unsigned",
        Value::Float(_) => "float",
        Value::Boolean(_) => "boolean",
        Value::String(_) => "string",
        Value::Opaque(_) => "opaque",
        Value::ObjLink(..) => "objlnk",
    }
}

/// Whether a value of this variant is what a resource of type `t` holds.
fn fits(t: ResourceType, value: &Value<'_>) -> bool {
    use ResourceType as T;
    matches!(
        (t, value),
        (
            T::Integer | T::Time | T::UnsignedInteger | T::Float,
            Value::Integer(_)
        ) | (T::UnsignedInteger | T::Float, Value::Unsigned(_))
            | (T::Float, Value::Float(_))
            | (T::Boolean, Value::Boolean(_))
            | (T::String | T::Corelnk, Value::String(_))
            | (T::Opaque, Value::Opaque(_))
            | (T::Objlnk, Value::ObjLink(..))
    )
}

fn item(path: Path, value: Value<'_>, model: Option<&ResourceModel>) -> Item {
    let kind = match model {
        Some(m) if fits(m.kind, &value) => m.kind.as_str(),
        _ => wire_kind(&value),
    };
    let meaning = match (path.object_id(), path.resource_id(), value) {
        (Some(o), Some(r), Value::Integer(n)) => crate::words::meaning(o, r, n),
        _ => None,
    };
    let json = match value {
        Value::Integer(v) => json!(v),
        Value::Unsigned(v) => json!(v),
        Value::Float(v) => json!(v),
        Value::Boolean(v) => json!(v),
        Value::String(v) => json!(v),
        Value::Opaque(v) => json!(crate::repository::hex(v)),
        Value::ObjLink(o, i) => json!(format!("{o}:{i}")),
    };
    Item {
        path: path.to_string(),
        kind,
        value: json,
        name: model.map(|m| m.name.clone()),
        units: model.map(|m| m.units.clone()).filter(|u| !u.is_empty()),
        meaning,
    }
}

/// The model of the resource at `path` (any depth below the resource counts).
fn model_at(models: &Models, path: &Path) -> Option<ResourceModel> {
    models.resource(path.object_id()?, path.resource_id()?)
}

/// Decodes a response payload for a request on `path` with content format `cf`.
pub fn decode(
    path: &Path,
    cf: Option<u16>,
    payload: &[u8],
    models: &Models,
) -> Result<Vec<Item>, ContentError> {
    let cf = cf.unwrap_or(0);
    match ContentFormat::from_number(cf) {
        Some(ContentFormat::TextPlain) => {
            let s = std::str::from_utf8(payload).map_err(|e| malformed("text", e))?;
            let model = model_at(models, path);
            let typed = typed_text(model.as_ref().map(|m| m.kind), s)?;
            Ok(vec![item(*path, typed, model.as_ref())])
        }
        Some(ContentFormat::OctetStream) => Ok(vec![item(
            *path,
            Value::Opaque(payload),
            model_at(models, path).as_ref(),
        )]),
        Some(ContentFormat::Lwm2mTlv) => decode_tlv(path, payload, models),
        Some(ContentFormat::SenmlCbor) => {
            let reader = SenmlReader::new(payload).map_err(|e| malformed("SenML-CBOR", e))?;
            let mut out = Vec::new();
            for r in reader {
                let r = r.map_err(|e| malformed("SenML-CBOR", e))?;
                if let Some(v) = r.value {
                    out.push(item(r.path, v, model_at(models, &r.path).as_ref()));
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
                name: None,
                units: None,
                meaning: None,
            }])
        }
        _ => Err(ContentError::Unsupported(cf)),
    }
}

fn typed_text(t: Option<ResourceType>, s: &str) -> Result<Value<'_>, ContentError> {
    let b = s.as_bytes();
    let err = |e| malformed("text", e);
    Ok(match t {
        Some(ResourceType::Integer | ResourceType::Time) => {
            Value::Integer(text::parse_integer(b).map_err(err)?)
        }
        Some(ResourceType::UnsignedInteger) => {
            Value::Unsigned(text::parse_unsigned(b).map_err(err)?)
        }
        Some(ResourceType::Float) => Value::Float(text::parse_float(b).map_err(err)?),
        Some(ResourceType::Boolean) => Value::Boolean(text::parse_bool(b).map_err(err)?),
        Some(ResourceType::Objlnk) => {
            let (o, i) = text::parse_objlnk(b).map_err(err)?;
            Value::ObjLink(o, i)
        }
        _ => Value::String(s),
    })
}

fn decode_tlv(path: &Path, payload: &[u8], models: &Models) -> Result<Vec<Item>, ContentError> {
    let mut out = Vec::new();
    if path.object_id().is_none() {
        return Err(malformed("TLV", "a TLV read needs an object path"));
    }
    // The TLV's top level holds instances for an object path and resources below that; for a
    // resource (or resource instance) path the ids are resource ids under the instance.
    let base = match (path.object_id(), path.instance_id()) {
        (Some(object), Some(instance)) if path.depth() >= 3 => {
            Path::instance(object, instance).map_err(|e| malformed("TLV", e))?
        }
        _ => *path,
    };
    for tlv in TlvReader::new(payload) {
        let tlv = tlv.map_err(|e| malformed("TLV", e))?;
        let here = base.child(tlv.id).map_err(|e| malformed("TLV", e))?;
        walk_tlv(here, tlv, models, &mut out)?;
    }
    Ok(out)
}

fn walk_tlv(
    here: Path,
    t: tlv::Tlv<'_>,
    models: &Models,
    out: &mut Vec<Item>,
) -> Result<(), ContentError> {
    match t.kind {
        TlvKind::ObjectInstance | TlvKind::MultipleResource => {
            for child in t.children().map_err(|e| malformed("TLV", e))? {
                let child = child.map_err(|e| malformed("TLV", e))?;
                let p = here.child(child.id).map_err(|e| malformed("TLV", e))?;
                walk_tlv(p, child, models, out)?;
            }
        }
        TlvKind::Resource | TlvKind::ResourceInstance => {
            let model = model_at(models, &here);
            let value = tlv_value(model.as_ref().map(|m| m.kind), t.value)?;
            out.push(item(here, value, model.as_ref()));
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
        Some(ResourceType::UnsignedInteger) => {
            Value::Unsigned(tlv::decode_unsigned(v).map_err(err)?)
        }
        Some(ResourceType::Float) => Value::Float(tlv::decode_float(v).map_err(err)?),
        Some(ResourceType::Boolean) => Value::Boolean(tlv::decode_bool(v).map_err(err)?),
        Some(ResourceType::Objlnk) => {
            let (o, i) = tlv::decode_objlnk(v).map_err(err)?;
            Value::ObjLink(o, i)
        }
        Some(ResourceType::String | ResourceType::Corelnk) => {
            Value::String(tlv::decode_string(v).map_err(err)?)
        }
        Some(ResourceType::Opaque | ResourceType::None) => Value::Opaque(v),
        None => match std::str::from_utf8(v) {
            Ok(s) if !s.is_empty() && s.chars().all(|c| !c.is_control()) => Value::String(s),
            _ => Value::Opaque(v),
        },
    })
}

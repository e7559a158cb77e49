//! Writes encoded by the resource's type (from its model): a single resource in plain text
//! (opaque ones as `application/octet-stream`), or in TLV or SenML-CBOR when asked; a
//! multiple-instance resource, an object instance or a Create in TLV (LwM2M 1.0) or SenML-CBOR
//! (1.1). A resource without a model is typed by the JSON it was given.

use lwm2m_core::Path;
use lwm2m_core::content::senml_cbor::{SenmlWriter, encode_single};
use lwm2m_core::content::tlv::TlvWriter;
use lwm2m_core::content::{self, text};
use serde_json::Value as Json;

use super::ContentError;
use super::value::{Typed, typed, untyped};
use crate::model::{Models, ResourceModel};

/// Largest write body this server builds (a block-wise body beyond it is not supported).
const MAX_BODY: usize = 4096;

/// A content format a write may be sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFormat {
    Text,
    Opaque,
    Tlv,
    SenmlCbor,
}

impl WriteFormat {
    /// `text`, `opaque`, `tlv`, `senml-cbor`.
    pub fn from_name(name: &str) -> Option<WriteFormat> {
        Some(match name {
            "text" => WriteFormat::Text,
            "opaque" => WriteFormat::Opaque,
            "tlv" => WriteFormat::Tlv,
            "senml-cbor" | "senml" => WriteFormat::SenmlCbor,
            _ => return None,
        })
    }

    pub fn number(self) -> u16 {
        match self {
            WriteFormat::Text => content::TEXT_PLAIN,
            WriteFormat::Opaque => content::OCTET_STREAM,
            WriteFormat::Tlv => content::LWM2M_TLV,
            WriteFormat::SenmlCbor => content::SENML_CBOR,
        }
    }
}

/// The resource's model, if its object has one.
fn model_of(models: &Models, path: &Path) -> Option<ResourceModel> {
    models.resource(path.object_id()?, path.resource_id()?)
}

/// `/1/0/1 (Lifetime, Unsigned Integer)` or `/9/0/1`.
fn describe(path: &Path, model: Option<&ResourceModel>) -> String {
    match model {
        Some(m) => format!("{path} ({}, {})", m.name, m.kind.label()),
        None => path.to_string(),
    }
}

/// One value for the resource at `path`, typed by its model.
fn value_at(path: &Path, model: Option<&ResourceModel>, v: &Json) -> Result<Typed, ContentError> {
    let typed = match model {
        Some(m) => typed(m.kind, v),
        None => untyped(v),
    };
    typed.map_err(|reason| ContentError::Value {
        target: describe(path, model),
        reason,
    })
}

/// The instances of a multiple-instance resource: `[a, b]` (ids 0, 1, ...) or `{"0": a, "5": b}`.
fn instances<'v>(path: &Path, v: &'v Json) -> Result<Vec<(u16, &'v Json)>, ContentError> {
    let bad_id = |k: &str| ContentError::Value {
        target: path.to_string(),
        reason: format!("{k:?} is not a resource instance id (0 to 65534)"),
    };
    match v {
        Json::Array(list) => (0..list.len())
            .zip(list)
            .map(|(i, v)| Ok((u16::try_from(i).map_err(|_| bad_id(&i.to_string()))?, v)))
            .collect(),
        Json::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.parse().map_err(|_| bad_id(k))?, v)))
            .collect(),
        _ => Err(ContentError::Value {
            target: path.to_string(),
            reason: "a multiple-instance resource takes a list or {\"instance id\": value}".into(),
        }),
    }
}

fn encode_err(e: impl std::fmt::Display) -> ContentError {
    ContentError::Encode(e.to_string())
}

/// Encodes a Write of `v` on a resource or resource instance `path`. `format` is what the caller
/// asked for; without it a single value goes as plain text (opaque as octet-stream) and several
/// instances as SenML-CBOR when `senml` (an LwM2M 1.1 client), else TLV.
pub fn encode_resource(
    path: &Path,
    v: &Json,
    models: &Models,
    format: Option<WriteFormat>,
    senml: bool,
) -> Result<(u16, Vec<u8>), ContentError> {
    let model = model_of(models, path);
    let many = path.resource_instance_id().is_none() && (v.is_array() || v.is_object());
    let structured = if senml {
        WriteFormat::SenmlCbor
    } else {
        WriteFormat::Tlv
    };
    let mut buf = vec![0u8; MAX_BODY];
    if many {
        if model.as_ref().is_some_and(|m| !m.multiple) {
            return Err(ContentError::Value {
                target: describe(path, model.as_ref()),
                reason: "it is a single-instance resource: give one value".into(),
            });
        }
        let mut list = Vec::new();
        for (id, item) in instances(path, v)? {
            let at = path.child(id).map_err(encode_err)?;
            list.push((id, value_at(&at, model.as_ref(), item)?));
        }
        let resource = path.resource_id().unwrap_or(0);
        return match format.unwrap_or(structured) {
            WriteFormat::Tlv => {
                let mut w = TlvWriter::new(&mut buf);
                w.multiple_resource(resource, |w| {
                    for (id, value) in &list {
                        w.resource_instance_value(*id, &value.as_value())?;
                    }
                    Ok(())
                })
                .map_err(encode_err)?;
                Ok((WriteFormat::Tlv.number(), w.written().to_vec()))
            }
            WriteFormat::SenmlCbor => {
                let mut w = SenmlWriter::new(&mut buf, path);
                for (id, value) in &list {
                    w.record(&[*id], Some(&value.as_value()))
                        .map_err(encode_err)?;
                }
                let out = w.finish().map_err(encode_err)?.to_vec();
                Ok((WriteFormat::SenmlCbor.number(), out))
            }
            other => Err(ContentError::Value {
                target: describe(path, model.as_ref()),
                reason: format!(
                    "several instances cannot be sent as {}: use tlv or senml-cbor",
                    format_name(other)
                ),
            }),
        };
    }
    let value = value_at(path, model.as_ref(), v)?;
    let default = match value {
        Typed::Opaque(_) => WriteFormat::Opaque,
        _ => WriteFormat::Text,
    };
    match format.unwrap_or(default) {
        WriteFormat::Opaque => match &value {
            Typed::Opaque(b) => Ok((WriteFormat::Opaque.number(), b.clone())),
            _ => Err(ContentError::Value {
                target: describe(path, model.as_ref()),
                reason: "only an Opaque resource can be sent as opaque bytes".into(),
            }),
        },
        WriteFormat::Text => {
            let mut s = String::new();
            text::write_value(&mut s, &value.as_value()).map_err(|e| ContentError::Value {
                target: describe(path, model.as_ref()),
                reason: format!("it cannot be sent as plain text ({e}): use tlv or senml-cbor"),
            })?;
            Ok((WriteFormat::Text.number(), s.into_bytes()))
        }
        WriteFormat::Tlv => {
            let mut w = TlvWriter::new(&mut buf);
            match path.resource_instance_id() {
                Some(ri) => w.resource_instance_value(ri, &value.as_value()),
                None => w.resource_value(path.resource_id().unwrap_or(0), &value.as_value()),
            }
            .map_err(encode_err)?;
            Ok((WriteFormat::Tlv.number(), w.written().to_vec()))
        }
        WriteFormat::SenmlCbor => {
            let n = encode_single(&mut buf, path, &value.as_value()).map_err(encode_err)?;
            buf.truncate(n);
            Ok((WriteFormat::SenmlCbor.number(), buf))
        }
    }
}

fn format_name(f: WriteFormat) -> &'static str {
    match f {
        WriteFormat::Text => "text",
        WriteFormat::Opaque => "opaque",
        WriteFormat::Tlv => "tlv",
        WriteFormat::SenmlCbor => "senml-cbor",
    }
}

/// A resource's values to write: one (`None`) or several resource instances.
type ResourceValues = Vec<(Option<u16>, Typed)>;

/// Encodes `{resource id: value}` (a list or an object for a multiple-instance resource) for a
/// Write on an object instance or a Create on an object, in TLV or SenML-CBOR.
pub fn encode_instance(
    path: &Path,
    values: &serde_json::Map<String, Json>,
    models: &Models,
    format: Option<WriteFormat>,
    senml: bool,
) -> Result<(u16, Vec<u8>), ContentError> {
    let mut resources: Vec<(u16, &Json)> = Vec::new();
    for (k, v) in values {
        let id: u16 = k.parse().map_err(|_| ContentError::Value {
            target: path.to_string(),
            reason: format!("{k:?} is not a resource id (0 to 65534)"),
        })?;
        resources.push((id, v));
    }
    resources.sort_by_key(|(id, _)| *id);
    // Each resource typed first, so a bad value is reported before anything is encoded.
    let mut typed_resources: Vec<(u16, ResourceValues)> = Vec::new();
    for (id, v) in resources {
        let rp = path.child(id).map_err(encode_err)?;
        let model = model_of(models, &rp);
        let values = if v.is_array() || v.is_object() {
            if model.as_ref().is_some_and(|m| !m.multiple) {
                return Err(ContentError::Value {
                    target: describe(&rp, model.as_ref()),
                    reason: "it is a single-instance resource: give one value".into(),
                });
            }
            let mut list = Vec::new();
            for (ri, item) in instances(&rp, v)? {
                let at = rp.child(ri).map_err(encode_err)?;
                list.push((Some(ri), value_at(&at, model.as_ref(), item)?));
            }
            list
        } else {
            vec![(None, value_at(&rp, model.as_ref(), v)?)]
        };
        typed_resources.push((id, values));
    }
    let mut buf = vec![0u8; MAX_BODY];
    let structured = if senml {
        WriteFormat::SenmlCbor
    } else {
        WriteFormat::Tlv
    };
    match format.unwrap_or(structured) {
        WriteFormat::SenmlCbor => {
            let mut w = SenmlWriter::new(&mut buf, path);
            for (id, values) in &typed_resources {
                for (ri, value) in values {
                    let name: Vec<u16> = std::iter::once(*id).chain(*ri).collect();
                    w.record(&name, Some(&value.as_value()))
                        .map_err(encode_err)?;
                }
            }
            let out = w.finish().map_err(encode_err)?.to_vec();
            Ok((WriteFormat::SenmlCbor.number(), out))
        }
        WriteFormat::Tlv => {
            let mut w = TlvWriter::new(&mut buf);
            for (id, values) in &typed_resources {
                match values.as_slice() {
                    [(None, value)] => {
                        w.resource_value(*id, &value.as_value())
                            .map_err(encode_err)?;
                    }
                    list => {
                        w.multiple_resource(*id, |w| {
                            for (ri, value) in list {
                                w.resource_instance_value(ri.unwrap_or(0), &value.as_value())?;
                            }
                            Ok(())
                        })
                        .map_err(encode_err)?;
                    }
                }
            }
            Ok((WriteFormat::Tlv.number(), w.written().to_vec()))
        }
        other => Err(ContentError::Value {
            target: path.to_string(),
            reason: format!(
                "an instance cannot be sent as {}: use tlv or senml-cbor",
                format_name(other)
            ),
        }),
    }
}

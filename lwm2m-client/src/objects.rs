//! The objects the device serves (0 Security, minimal; 1 Server; 3 Device; 5 Firmware Update) and
//! their encodings: plain text for a single resource, TLV or SenML-CBOR for anything, as the
//! request's Accept asks (LwM2M TS Core 1.1 §7.4).

use lwm2m_core::Path;
use lwm2m_core::coap::Code;
use lwm2m_core::content::senml_cbor::SenmlWriter;
use lwm2m_core::content::tlv::TlvWriter;
use lwm2m_core::content::{self, Value, text};

/// One resource's value as the device reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resource<'a> {
    Single(Value<'a>),
    /// A multiple-instance resource with these instances.
    Multiple(&'a [(u16, Value<'a>)]),
}

/// Answers reads: (object, instance, resource) → value. Instances other than 0 do not exist.
pub trait ObjectModel {
    /// The readable resource ids of `object`, in order (for instance and object reads).
    fn resources(&self, object: u16) -> &'static [u16];
    /// The value of one resource; `None` if it does not exist or is not readable.
    fn read(&self, object: u16, resource: u16) -> Option<Resource<'_>>;
}

/// Encodes a read of `path` in `format` into `out`; returns the content format used and the length,
/// or the response code that refuses it.
pub fn encode_read(
    model: &impl ObjectModel,
    path: &Path,
    accept: Option<u16>,
    out: &mut [u8],
) -> Result<(u16, usize), Code> {
    let object = path.object_id().ok_or(Code::METHOD_NOT_ALLOWED)?;
    if model.resources(object).is_empty() {
        return Err(Code::NOT_FOUND);
    }
    if path.instance_id().is_some_and(|i| i != 0) {
        return Err(Code::NOT_FOUND);
    }
    match path.resource_id() {
        Some(res) => {
            let value = model.read(object, res).ok_or(Code::NOT_FOUND)?;
            let value = match (value, path.resource_instance_id()) {
                (Resource::Multiple(list), Some(ri)) => Resource::Single(
                    list.iter()
                        .find(|(i, _)| *i == ri)
                        .map(|(_, v)| *v)
                        .ok_or(Code::NOT_FOUND)?,
                ),
                (Resource::Single(_), Some(_)) => return Err(Code::NOT_FOUND),
                (v, None) => v,
            };
            let default = match value {
                Resource::Single(Value::Opaque(_)) => content::OCTET_STREAM,
                Resource::Single(_) => content::TEXT_PLAIN,
                Resource::Multiple(_) => content::LWM2M_TLV,
            };
            match (accept.unwrap_or(default), value) {
                (content::TEXT_PLAIN, Resource::Single(v)) if !matches!(v, Value::Opaque(_)) => {
                    Ok((
                        content::TEXT_PLAIN,
                        text::encode_value(out, &v).map_err(|e| match e {
                            // A device build has no float text (lwm2m-core without `float`).
                            text::TextError::FloatUnsupported => Code::NOT_ACCEPTABLE,
                            _ => Code::INTERNAL_SERVER_ERROR,
                        })?,
                    ))
                }
                (content::OCTET_STREAM, Resource::Single(Value::Opaque(b))) => {
                    let dst = out.get_mut(..b.len()).ok_or(Code::INTERNAL_SERVER_ERROR)?;
                    dst.copy_from_slice(b);
                    Ok((content::OCTET_STREAM, b.len()))
                }
                (content::LWM2M_TLV, v) => {
                    let mut w = TlvWriter::new(out);
                    let id = path.resource_instance_id().unwrap_or(res);
                    write_tlv(&mut w, id, v, path.resource_instance_id().is_some())?;
                    Ok((content::LWM2M_TLV, w.len()))
                }
                (content::SENML_CBOR, v) => {
                    let mut w = SenmlWriter::absolute(out);
                    senml_resource(&mut w, object, res, path.resource_instance_id(), v)?;
                    Ok((
                        content::SENML_CBOR,
                        w.finish().map_err(|_| Code::INTERNAL_SERVER_ERROR)?.len(),
                    ))
                }
                _ => Err(Code::NOT_ACCEPTABLE),
            }
        }
        None => match accept.unwrap_or(content::LWM2M_TLV) {
            content::LWM2M_TLV => {
                let mut w = TlvWriter::new(out);
                let write_all = |w: &mut TlvWriter<'_>| -> Result<(), Code> {
                    for &res in model.resources(object) {
                        if let Some(v) = model.read(object, res) {
                            write_tlv(w, res, v, false)?;
                        }
                    }
                    Ok(())
                };
                if path.instance_id().is_some() {
                    write_all(&mut w)?;
                } else {
                    let mut inner = Ok(());
                    w.object_instance(0, |w| {
                        inner = write_all(w);
                        Ok(())
                    })
                    .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
                    inner?;
                }
                Ok((content::LWM2M_TLV, w.len()))
            }
            content::SENML_CBOR => {
                let mut w = SenmlWriter::absolute(out);
                for &res in model.resources(object) {
                    if let Some(v) = model.read(object, res) {
                        senml_resource(&mut w, object, res, None, v)?;
                    }
                }
                Ok((
                    content::SENML_CBOR,
                    w.finish().map_err(|_| Code::INTERNAL_SERVER_ERROR)?.len(),
                ))
            }
            _ => Err(Code::NOT_ACCEPTABLE),
        },
    }
}

fn write_tlv(
    w: &mut TlvWriter<'_>,
    id: u16,
    value: Resource<'_>,
    as_instance: bool,
) -> Result<(), Code> {
    let full = |_| Code::INTERNAL_SERVER_ERROR;
    match value {
        Resource::Single(v) if as_instance => {
            w.resource_instance_value(id, &v).map(|_| ()).map_err(full)
        }
        Resource::Single(v) => w.resource_value(id, &v).map(|_| ()).map_err(full),
        Resource::Multiple(list) => w
            .multiple_resource(id, |w| {
                for (i, v) in list {
                    w.resource_instance_value(*i, v)?;
                }
                Ok(())
            })
            .map(|_| ())
            .map_err(full),
    }
}

fn senml_resource(
    w: &mut SenmlWriter<'_>,
    object: u16,
    res: u16,
    instance: Option<u16>,
    value: Resource<'_>,
) -> Result<(), Code> {
    let full = |_| Code::INTERNAL_SERVER_ERROR;
    match (value, instance) {
        (Resource::Single(v), Some(ri)) => w
            .record(&[object, 0, res, ri], Some(&v))
            .map(|_| ())
            .map_err(full),
        (Resource::Single(v), None) => w
            .record(&[object, 0, res], Some(&v))
            .map(|_| ())
            .map_err(full),
        (Resource::Multiple(list), _) => {
            for (i, v) in list {
                w.record(&[object, 0, res, *i], Some(v)).map_err(full)?;
            }
            Ok(())
        }
    }
}

/// Writes the link-format description of `object` for Discover (`</5/0>,</5/0/0>,...`).
pub fn encode_discover(
    model: &impl ObjectModel,
    object: u16,
    out: &mut [u8],
) -> Result<usize, Code> {
    use core::fmt::Write;
    let mut w = lwm2m_core::SliceWriter::new(out);
    let full = |_| Code::INTERNAL_SERVER_ERROR;
    write!(w, "</{object}/0>").map_err(full)?;
    for res in model.resources(object) {
        write!(w, ",</{object}/0/{res}>").map_err(full)?;
    }
    Ok(w.len())
}

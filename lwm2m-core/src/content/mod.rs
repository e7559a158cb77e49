//! Content formats: the CoAP Content-Format numbers LwM2M uses, the value model the encoders
//! share, and one module per format.

pub mod link;
pub mod opaque;
pub mod senml_cbor;
pub mod text;
pub mod tlv;

use core::fmt;

/// `text/plain;charset=utf-8`
pub const TEXT_PLAIN: u16 = 0;
/// `application/link-format` (RFC 6690)
pub const LINK_FORMAT: u16 = 40;
/// `application/octet-stream`
pub const OCTET_STREAM: u16 = 42;
/// `application/cbor`
pub const CBOR: u16 = 60;
/// `application/senml+json`
pub const SENML_JSON: u16 = 110;
/// `application/senml+cbor`
pub const SENML_CBOR: u16 = 112;
/// `application/vnd.oma.lwm2m+tlv`
pub const LWM2M_TLV: u16 = 11542;
/// `application/vnd.oma.lwm2m+json`
pub const LWM2M_JSON: u16 = 11543;
/// `application/vnd.oma.lwm2m+cbor`
pub const LWM2M_CBOR: u16 = 11544;

/// A Content-Format LwM2M knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentFormat {
    /// 0: plain text.
    TextPlain,
    /// 40: CoRE Link Format.
    LinkFormat,
    /// 42: opaque bytes.
    OctetStream,
    /// 60: CBOR.
    Cbor,
    /// 110: SenML JSON.
    SenmlJson,
    /// 112: SenML CBOR.
    SenmlCbor,
    /// 11542: OMA TLV.
    Lwm2mTlv,
    /// 11543: OMA LwM2M JSON.
    Lwm2mJson,
    /// 11544: LwM2M CBOR.
    Lwm2mCbor,
}

impl ContentFormat {
    /// Every known format.
    pub const ALL: &'static [ContentFormat] = &[
        ContentFormat::TextPlain,
        ContentFormat::LinkFormat,
        ContentFormat::OctetStream,
        ContentFormat::Cbor,
        ContentFormat::SenmlJson,
        ContentFormat::SenmlCbor,
        ContentFormat::Lwm2mTlv,
        ContentFormat::Lwm2mJson,
        ContentFormat::Lwm2mCbor,
    ];

    /// The Content-Format number.
    pub const fn number(self) -> u16 {
        match self {
            ContentFormat::TextPlain => TEXT_PLAIN,
            ContentFormat::LinkFormat => LINK_FORMAT,
            ContentFormat::OctetStream => OCTET_STREAM,
            ContentFormat::Cbor => CBOR,
            ContentFormat::SenmlJson => SENML_JSON,
            ContentFormat::SenmlCbor => SENML_CBOR,
            ContentFormat::Lwm2mTlv => LWM2M_TLV,
            ContentFormat::Lwm2mJson => LWM2M_JSON,
            ContentFormat::Lwm2mCbor => LWM2M_CBOR,
        }
    }

    /// The format with this number, if LwM2M uses it.
    pub fn from_number(number: u16) -> Option<ContentFormat> {
        ContentFormat::ALL
            .iter()
            .copied()
            .find(|f| f.number() == number)
    }
}

/// A Content-Format number this crate does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnknownContentFormat(pub u16);

impl TryFrom<u16> for ContentFormat {
    type Error = UnknownContentFormat;
    fn try_from(number: u16) -> Result<Self, Self::Error> {
        ContentFormat::from_number(number).ok_or(UnknownContentFormat(number))
    }
}

impl From<ContentFormat> for u16 {
    fn from(f: ContentFormat) -> u16 {
        f.number()
    }
}

/// One resource value, as the LwM2M data types map onto the wire (Time is an Integer of seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Integer or Time.
    Integer(i64),
    /// Unsigned Integer (decoders use it only above `i64::MAX`).
    Unsigned(u64),
    /// Float.
    Float(f64),
    /// Boolean.
    Boolean(bool),
    /// String.
    String(&'a str),
    /// Opaque.
    Opaque(&'a [u8]),
    /// Objlnk: object id and object instance id.
    ObjLink(u16, u16),
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(v) => write!(f, "{v}"),
            Value::Unsigned(v) => write!(f, "{v}"),
            #[cfg(feature = "float")]
            Value::Float(v) => write!(f, "{v}"),
            // Without the `float` feature no float is formatted: its IEEE 754 bits instead.
            #[cfg(not(feature = "float"))]
            Value::Float(v) => write!(f, "f64:{:#018x}", v.to_bits()),
            Value::Boolean(v) => f.write_str(if *v { "1" } else { "0" }),
            Value::String(v) => f.write_str(v),
            Value::Opaque(v) => {
                for b in v.iter() {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            Value::ObjLink(o, i) => write!(f, "{o}:{i}"),
        }
    }
}

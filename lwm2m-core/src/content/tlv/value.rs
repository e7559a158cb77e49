//! TLV value encodings (LwM2M TS Core 1.1 Appendix C): integers in the shortest of 1/2/4/8 bytes
//! (two's complement, big-endian), floats in 4 or 8 bytes, booleans in 1 byte, objlnk in 4.
//! Strings and opaque values are their raw bytes; Time is an Integer.

use super::TlvError;

/// An encoded scalar of at most 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scalar {
    bytes: [u8; 8],
    len: u8,
}

impl Scalar {
    /// The encoded bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The last `len` bytes of `be` (a big-endian 8-byte value).
    fn tail(be: [u8; 8], len: u8) -> Scalar {
        let mut bytes = [0u8; 8];
        let skip = 8usize.saturating_sub(usize::from(len));
        for (slot, b) in bytes.iter_mut().zip(be.iter().skip(skip)) {
            *slot = *b;
        }
        Scalar { bytes, len }
    }
}

impl AsRef<[u8]> for Scalar {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Integer (or Time) in the shortest of 1, 2, 4 or 8 bytes.
pub fn encode_integer(v: i64) -> Scalar {
    let len = if i8::try_from(v).is_ok() {
        1
    } else if i16::try_from(v).is_ok() {
        2
    } else if i32::try_from(v).is_ok() {
        4
    } else {
        8
    };
    Scalar::tail(v.to_be_bytes(), len)
}

/// Unsigned Integer in the shortest of 1, 2, 4 or 8 bytes.
pub fn encode_unsigned(v: u64) -> Scalar {
    let len = if v <= 0xFF {
        1
    } else if v <= 0xFFFF {
        2
    } else if v <= 0xFFFF_FFFF {
        4
    } else {
        8
    };
    Scalar::tail(v.to_be_bytes(), len)
}

/// Float in 4 bytes when `f32` holds it exactly, else 8.
#[cfg(feature = "float")]
pub fn encode_float(v: f64) -> Scalar {
    let narrow = v as f32;
    if f64::from(narrow) == v {
        let [a, b, c, d] = narrow.to_be_bytes();
        Scalar::tail([0, 0, 0, 0, a, b, c, d], 4)
    } else {
        Scalar::tail(v.to_be_bytes(), 8)
    }
}

/// Boolean as one byte, 0 or 1.
pub fn encode_bool(v: bool) -> Scalar {
    Scalar::tail([0, 0, 0, 0, 0, 0, 0, u8::from(v)], 1)
}

/// Objlnk: object id then object instance id, 16 bits each.
pub fn encode_objlnk(object: u16, instance: u16) -> Scalar {
    let [a, b] = object.to_be_bytes();
    let [c, d] = instance.to_be_bytes();
    Scalar::tail([0, 0, 0, 0, a, b, c, d], 4)
}

/// Integer (or Time) from 1, 2, 4 or 8 bytes.
pub fn decode_integer(bytes: &[u8]) -> Result<i64, TlvError> {
    match *bytes {
        [a] => Ok(i64::from(i8::from_be_bytes([a]))),
        [a, b] => Ok(i64::from(i16::from_be_bytes([a, b]))),
        [a, b, c, d] => Ok(i64::from(i32::from_be_bytes([a, b, c, d]))),
        [a, b, c, d, e, f, g, h] => Ok(i64::from_be_bytes([a, b, c, d, e, f, g, h])),
        _ => Err(TlvError::WrongLength),
    }
}

/// Unsigned Integer from 1, 2, 4 or 8 bytes.
pub fn decode_unsigned(bytes: &[u8]) -> Result<u64, TlvError> {
    match *bytes {
        [a] => Ok(u64::from(a)),
        [a, b] => Ok(u64::from(u16::from_be_bytes([a, b]))),
        [a, b, c, d] => Ok(u64::from(u32::from_be_bytes([a, b, c, d]))),
        [a, b, c, d, e, f, g, h] => Ok(u64::from_be_bytes([a, b, c, d, e, f, g, h])),
        _ => Err(TlvError::WrongLength),
    }
}

/// Float from 4 or 8 bytes (IEEE 754, big-endian).
#[cfg(feature = "float")]
pub fn decode_float(bytes: &[u8]) -> Result<f64, TlvError> {
    match *bytes {
        [a, b, c, d] => Ok(f64::from(f32::from_be_bytes([a, b, c, d]))),
        [a, b, c, d, e, f, g, h] => Ok(f64::from_be_bytes([a, b, c, d, e, f, g, h])),
        _ => Err(TlvError::WrongLength),
    }
}

/// Boolean from one byte, 0 or 1.
pub fn decode_bool(bytes: &[u8]) -> Result<bool, TlvError> {
    match *bytes {
        [0] => Ok(false),
        [1] => Ok(true),
        [_] => Err(TlvError::InvalidBoolean),
        _ => Err(TlvError::WrongLength),
    }
}

/// Objlnk from 4 bytes.
pub fn decode_objlnk(bytes: &[u8]) -> Result<(u16, u16), TlvError> {
    match *bytes {
        [a, b, c, d] => Ok((u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))),
        _ => Err(TlvError::WrongLength),
    }
}

/// String: the bytes as UTF-8.
pub fn decode_string(bytes: &[u8]) -> Result<&str, TlvError> {
    core::str::from_utf8(bytes).map_err(|_| TlvError::InvalidUtf8)
}

//! The OSCORE option's value (RFC 8613 §6.1): flag byte `0 0 0 h k n n n`, then the Partial IV
//! (n bytes), the kid context (one length byte s, then s bytes) when h, and the kid (the rest)
//! when k. An option with no field set is empty. Decoding borrows from the value.

use core::fmt;

use super::crypto::MAX_PIV_LEN;

/// A decoded OSCORE option value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OscoreOption<'a> {
    /// The Partial IV (a request's, or a response's own).
    pub piv: Option<&'a [u8]>,
    /// The kid context (ID Context).
    pub kid_context: Option<&'a [u8]>,
    /// The kid: the sender's ID (requests).
    pub kid: Option<&'a [u8]>,
}

/// Why an OSCORE option value cannot be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionError {
    /// Reserved flag bits are set.
    ReservedFlags,
    /// A Partial IV of this many bytes (at most 5).
    PivLength(usize),
    /// Shorter than its flags say.
    Truncated,
    /// A non-empty value without a flag.
    NoFlags,
    /// The caller's buffer (or the kid context's length byte) is too small.
    TooLong,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::ReservedFlags => f.write_str("reserved flag bits are set"),
            OptionError::PivLength(n) => write!(f, "a Partial IV of {n} bytes (at most 5)"),
            OptionError::Truncated => f.write_str("the option value is shorter than its flags say"),
            OptionError::NoFlags => f.write_str("a non-empty option without any flag"),
            OptionError::TooLong => f.write_str("the option value does not fit"),
        }
    }
}

const FLAG_KID: u8 = 0x08;
const FLAG_KID_CONTEXT: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// Longest value [`OscoreOption::encode`] writes without a kid context: flags, a 5-byte Partial
/// IV and a 7-byte kid.
pub const MAX_LEN_NO_CONTEXT: usize = 1 + MAX_PIV_LEN + super::crypto::MAX_ID_LEN;

impl<'a> OscoreOption<'a> {
    /// Reads an option value.
    pub fn decode(value: &'a [u8]) -> Result<OscoreOption<'a>, OptionError> {
        let Some((&flags, mut rest)) = value.split_first() else {
            return Ok(OscoreOption::default());
        };
        if flags & RESERVED != 0 {
            return Err(OptionError::ReservedFlags);
        }
        if flags == 0 {
            return Err(OptionError::NoFlags);
        }
        let n = usize::from(flags & 0x07);
        if n > MAX_PIV_LEN {
            return Err(OptionError::PivLength(n));
        }
        let mut out = OscoreOption::default();
        if n > 0 {
            let (piv, r) = rest.split_at_checked(n).ok_or(OptionError::Truncated)?;
            out.piv = Some(piv);
            rest = r;
        }
        if flags & FLAG_KID_CONTEXT != 0 {
            let (&s, r) = rest.split_first().ok_or(OptionError::Truncated)?;
            let (ctx, r) = r
                .split_at_checked(usize::from(s))
                .ok_or(OptionError::Truncated)?;
            out.kid_context = Some(ctx);
            rest = r;
        }
        if flags & FLAG_KID != 0 {
            out.kid = Some(rest);
        } else if !rest.is_empty() {
            return Err(OptionError::Truncated);
        }
        Ok(out)
    }

    /// Writes the value into `out`; returns its length (0: the empty option).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, OptionError> {
        let piv = self.piv.unwrap_or_default();
        if piv.len() > MAX_PIV_LEN {
            return Err(OptionError::PivLength(piv.len()));
        }
        let mut flags = piv.len() as u8; // at most 5
        if self.kid_context.is_some() {
            flags |= FLAG_KID_CONTEXT;
        }
        if self.kid.is_some() {
            flags |= FLAG_KID;
        }
        if flags == 0 {
            return Ok(0);
        }
        let mut len = 0usize;
        let mut put = |bytes: &[u8]| -> Result<(), OptionError> {
            let end = len.checked_add(bytes.len()).ok_or(OptionError::TooLong)?;
            out.get_mut(len..end)
                .ok_or(OptionError::TooLong)?
                .copy_from_slice(bytes);
            len = end;
            Ok(())
        };
        put(&[flags])?;
        put(piv)?;
        if let Some(ctx) = self.kid_context {
            let s = u8::try_from(ctx.len()).map_err(|_| OptionError::TooLong)?;
            put(&[s])?;
            put(ctx)?;
        }
        if let Some(kid) = self.kid {
            put(kid)?;
        }
        Ok(len)
    }
}

/// A Partial IV: a sequence number big-endian, leading zeros removed, 0 as one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piv {
    bytes: [u8; 8],
    len: u8,
}

impl Piv {
    /// The Partial IV of `seq` (at most [`super::MAX_SEQ`] for 5 bytes).
    pub fn of(seq: u64) -> Piv {
        let bytes = seq.to_be_bytes();
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(7);
        Piv {
            bytes,
            len: 8u8.saturating_sub(first as u8),
        }
    }

    /// The bytes (1 to 8).
    pub fn as_bytes(&self) -> &[u8] {
        let start = 8usize.saturating_sub(usize::from(self.len));
        self.bytes.get(start..).unwrap_or_default()
    }
}

/// The Partial IV of `seq`, as [`Piv::of`].
pub fn piv_of(seq: u64) -> Piv {
    Piv::of(seq)
}

/// The sequence number a Partial IV of at most 5 bytes stands for.
pub fn seq_of(piv: &[u8]) -> u64 {
    piv.iter()
        .fold(0u64, |acc, &b| acc.wrapping_shl(8) | u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn option_values_of_rfc8613_appendix_c_round_trip() {
        // C.4: Partial IV 0x14, empty kid; C.5: kid 0x00; C.6: kid context; C.8: PIV only.
        type Fields = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);
        let cases: [(&[u8], Fields); 5] = [
            (&[0x09, 0x14], (Some(vec![0x14]), None, Some(vec![]))),
            (&[0x09, 0x14, 0x00], (Some(vec![0x14]), None, Some(vec![0]))),
            (
                &[0x19, 0x14, 0x02, 0x37, 0xcb, 0x00],
                (Some(vec![0x14]), Some(vec![0x37, 0xcb]), Some(vec![0])),
            ),
            (&[0x01, 0x00], (Some(vec![0]), None, None)),
            (&[], (None, None, None)),
        ];
        for (hex, fields) in cases {
            let o = OscoreOption::decode(hex).unwrap();
            let got = (
                o.piv.map(<[u8]>::to_vec),
                o.kid_context.map(<[u8]>::to_vec),
                o.kid.map(<[u8]>::to_vec),
            );
            assert_eq!(got, fields);
            let mut out = [0u8; 32];
            let n = o.encode(&mut out).unwrap();
            assert_eq!(&out[..n], hex);
        }
        let mut small = [0u8; 2];
        let o = OscoreOption {
            piv: Some(&[1, 2]),
            kid: Some(&[3]),
            kid_context: None,
        };
        assert_eq!(o.encode(&mut small), Err(OptionError::TooLong));
    }

    #[test]
    fn malformed_option_values_are_refused_with_a_reason() {
        assert_eq!(
            OscoreOption::decode(&[0x20]),
            Err(OptionError::ReservedFlags)
        );
        assert_eq!(
            OscoreOption::decode(&[0x06, 1, 2, 3, 4, 5, 6]),
            Err(OptionError::PivLength(6))
        );
        assert_eq!(
            OscoreOption::decode(&[0x03, 1]),
            Err(OptionError::Truncated)
        );
        assert_eq!(
            OscoreOption::decode(&[0x10, 5, 1]),
            Err(OptionError::Truncated)
        );
        assert_eq!(
            OscoreOption::decode(&[0x01, 1, 9]),
            Err(OptionError::Truncated)
        );
        assert_eq!(OscoreOption::decode(&[0x00]), Err(OptionError::NoFlags));
    }

    #[test]
    fn partial_ivs_are_minimal_big_endian() {
        assert_eq!(piv_of(0).as_bytes(), [0]);
        assert_eq!(piv_of(20).as_bytes(), [0x14]);
        assert_eq!(piv_of(0x0100).as_bytes(), [1, 0]);
        assert_eq!(seq_of(&[1, 0]), 256);
        assert_eq!(seq_of(piv_of((1 << 40) - 1).as_bytes()), (1 << 40) - 1);
    }
}

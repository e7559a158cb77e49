//! A strict reader over `cbor_read::Decoder` (the device's CBOR reader, shared with SenML-CBOR):
//! definite lengths only, bounded nesting, duplicate-key detection, and every failure mapped to
//! [`Error`]. All SUIT decoding goes through it so that the rules for bad input live in one place.

use cbor_read::Decoder;
pub(crate) use cbor_read::Type;

use crate::error::{Error, Part};
use crate::limits::MAX_CBOR_DEPTH;

/// A zero-copy CBOR reader that refuses what SUIT's deterministic encoding forbids.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    dec: Decoder<'a>,
    part: Part,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], part: Part) -> Self {
        Reader {
            dec: Decoder::new(bytes),
            part,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.dec.position()
    }

    pub(crate) fn input(&self) -> &'a [u8] {
        self.dec.input()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.dec.position() >= self.dec.input().len()
    }

    /// Fails unless every byte has been consumed.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        if self.at_end() {
            Ok(())
        } else {
            Err(Error::TrailingBytes(self.part))
        }
    }

    fn map_err(&self, e: cbor_read::Error) -> Error {
        match e {
            cbor_read::Error::Truncated => Error::Truncated,
            cbor_read::Error::WrongType => Error::WrongType(self.part),
            cbor_read::Error::Indefinite => Error::IndefiniteLength,
            cbor_read::Error::TooDeep => Error::TooDeep,
            cbor_read::Error::Malformed | cbor_read::Error::InvalidUtf8 => Error::MalformedCbor,
        }
    }

    pub(crate) fn datatype(&self) -> Result<Type, Error> {
        let t = self.dec.datatype().map_err(|e| self.map_err(e))?;
        match t {
            Type::ArrayIndef | Type::MapIndef | Type::BytesIndef | Type::StringIndef => {
                Err(Error::IndefiniteLength)
            }
            Type::Break | Type::Unknown => Err(Error::MalformedCbor),
            t => Ok(t),
        }
    }

    /// Checks the next item's type before reading it, so that indefinite items and wrong
    /// types give precise errors (the typed readers of `cbor_read` below tell them apart by
    /// themselves, in the same order).
    fn expect(&self, want: Type) -> Result<(), Error> {
        if self.datatype()? == want {
            Ok(())
        } else {
            Err(Error::WrongType(self.part))
        }
    }

    pub(crate) fn map(&mut self) -> Result<u64, Error> {
        self.dec.map().map_err(|e| self.map_err(e))
    }

    pub(crate) fn array(&mut self) -> Result<u64, Error> {
        self.dec.array().map_err(|e| self.map_err(e))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Error> {
        self.dec.bytes().map_err(|e| self.map_err(e))
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, Error> {
        self.dec.str().map_err(|e| self.map_err(e))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        self.dec.u64().map_err(|e| self.map_err(e))
    }

    /// A u64 above i64::MAX or a negative integer below i64::MIN overflows.
    pub(crate) fn i64(&mut self) -> Result<i64, Error> {
        let v = self.dec.int().map_err(|e| self.map_err(e))?;
        v.to_i64().ok_or(Error::IntegerOverflow)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, Error> {
        self.expect(Type::Bool)?;
        self.dec.bool().map_err(|e| self.map_err(e))
    }

    pub(crate) fn null(&mut self) -> Result<(), Error> {
        self.expect(Type::Null)?;
        self.dec.null().map_err(|e| self.map_err(e))
    }

    pub(crate) fn tag(&mut self) -> Result<u64, Error> {
        self.dec.tag().map_err(|e| self.map_err(e))
    }

    /// Reads a bstr and returns both the whole encoded item (header included: what SUIT digests
    /// cover) and its content.
    pub(crate) fn wrapped(&mut self) -> Result<Wrapped<'a>, Error> {
        let start = self.position();
        let content = self.bytes()?;
        let whole = self
            .input()
            .get(start..self.position())
            .ok_or(Error::Truncated)?;
        Ok(Wrapped { whole, content })
    }

    /// Skips one item of any type, refusing indefinite lengths and nesting beyond the limit.
    pub(crate) fn skip(&mut self) -> Result<(), Error> {
        self.dec.skip(MAX_CBOR_DEPTH).map_err(|e| self.map_err(e))
    }
}

/// A bstr-wrapped item: the encoded bstr (header and content) and the content alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wrapped<'a> {
    pub(crate) whole: &'a [u8],
    pub(crate) content: &'a [u8],
}

/// The integer keys seen in one map, to refuse duplicates without allocating.
pub(crate) struct KeySet {
    seen: [i64; 24],
    len: usize,
    part: Part,
}

impl KeySet {
    pub(crate) fn new(part: Part) -> Self {
        KeySet {
            seen: [0; 24],
            len: 0,
            part,
        }
    }

    pub(crate) fn insert(&mut self, key: i64) -> Result<(), Error> {
        let seen = self.seen.get(..self.len).unwrap_or(&[]);
        if seen.contains(&key) {
            return Err(Error::DuplicateKey(self.part));
        }
        let slot = self
            .seen
            .get_mut(self.len)
            .ok_or(Error::UnknownKey(self.part))?;
        *slot = key;
        self.len += 1;
        Ok(())
    }
}

/// Encodes a CBOR bstr header for `len` bytes into `out`, returning the used prefix.
pub(crate) fn bstr_header(len: usize, out: &mut [u8; 9]) -> &[u8] {
    let len = len as u64;
    let n = if len < 24 {
        out[0] = 0x40 | len as u8;
        1
    } else if len <= 0xff {
        out[0] = 0x58;
        out[1] = len as u8;
        2
    } else if len <= 0xffff {
        out[0] = 0x59;
        out[1..3].copy_from_slice(&(len as u16).to_be_bytes());
        3
    } else if len <= 0xffff_ffff {
        out[0] = 0x5a;
        out[1..5].copy_from_slice(&(len as u32).to_be_bytes());
        5
    } else {
        out[0] = 0x5b;
        out[1..9].copy_from_slice(&len.to_be_bytes());
        9
    };
    out.get(..n).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;

    use super::*;

    #[test]
    fn bstr_headers_match_rfc8949_encodings() {
        let mut b = [0u8; 9];
        assert_eq!(bstr_header(0, &mut b), [0x40]);
        assert_eq!(bstr_header(23, &mut b), [0x57]);
        assert_eq!(bstr_header(24, &mut b), [0x58, 24]);
        assert_eq!(bstr_header(0x71, &mut b), [0x58, 0x71]);
        assert_eq!(bstr_header(256, &mut b), [0x59, 1, 0]);
        assert_eq!(bstr_header(70000, &mut b), [0x5a, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn indefinite_items_are_refused() {
        // 0x9f = indefinite array, 0xbf = indefinite map, 0x5f = indefinite bstr.
        for bytes in [
            &[0x9f, 0xff][..],
            &[0xbf, 0xff],
            &[0x5f, 0xff],
            &[0x7f, 0xff],
        ] {
            let mut r = Reader::new(bytes, Part::Envelope);
            assert_eq!(r.skip(), Err(Error::IndefiniteLength), "{bytes:02x?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = [0x81u8; 64]; // [[[[...
        let mut r = Reader::new(&deep, Part::Envelope);
        assert_eq!(r.skip(), Err(Error::TooDeep));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let mut k = KeySet::new(Part::Manifest);
        assert_eq!(k.insert(1), Ok(()));
        assert_eq!(k.insert(-1), Ok(()));
        assert_eq!(k.insert(1), Err(Error::DuplicateKey(Part::Manifest)));
    }

    #[test]
    fn scalars_skip_as_minicbor_skips_them() {
        // Every head byte followed by a few continuations, truncated at every length: the
        // reader's skip ends where minicbor's does, or fails as minicbor's error maps.
        for bytes in every_head_cut(1) {
            let input = &bytes[..];
            let mut ours = Reader::new(input, Part::Envelope);
            if matches!(
                ours.datatype(),
                Ok(Type::Array | Type::Map | Type::Tag) | Err(_)
            ) {
                continue;
            }
            let got = ours.skip().map(|()| ours.position());
            let mut theirs = minicbor::Decoder::new(input);
            let want = theirs.skip().map(|()| theirs.position()).map_err(|e| {
                if e.is_end_of_input() {
                    Error::Truncated
                } else {
                    Error::MalformedCbor
                }
            });
            assert_eq!(got, want, "{input:02x?}");
        }
    }

    #[test]
    fn typed_reads_fail_as_a_look_at_the_type_first_would() {
        // Each typed read tells a malformed, an indefinite and a wrong-typed item apart without
        // a look at `datatype` first: the same error as that look would give (but for a
        // negative integer whose argument is cut off, which is of the wrong type either way).
        type Read = fn(&mut Reader<'_>) -> Result<(), Error>;
        let reads: [(Type, Read); 6] = [
            (Type::Map, |r| r.map().map(drop)),
            (Type::Array, |r| r.array().map(drop)),
            (Type::Bytes, |r| r.bytes().map(drop)),
            (Type::String, |r| r.str().map(drop)),
            (Type::Unsigned, |r| r.u64().map(drop)),
            (Type::Tag, |r| r.tag().map(drop)),
        ];
        for bytes in every_head_cut(0) {
            let input = &bytes[..];
            let look = Reader::new(input, Part::Envelope).datatype();
            for (want, read) in reads {
                let mut r = Reader::new(input, Part::Envelope);
                let got = read(&mut r);
                match look {
                    Err(Error::Truncated) if matches!(input, [0x38..=0x3b]) => {
                        assert_eq!(got, Err(Error::WrongType(Part::Envelope)))
                    }
                    Err(e) => assert_eq!(got, Err(e), "{want:?} {input:02x?}"),
                    Ok(t) if t != want => {
                        assert_eq!(
                            got,
                            Err(Error::WrongType(Part::Envelope)),
                            "{want:?} {input:02x?}"
                        )
                    }
                    Ok(_) => assert!(
                        got.is_ok()
                            || got == Err(Error::Truncated)
                            || got == Err(Error::MalformedCbor),
                        "{want:?} {input:02x?}: {got:?}"
                    ),
                }
            }
            let got = Reader::new(input, Part::Envelope).i64().map(drop);
            match look {
                Err(e) => assert_eq!(got, Err(e), "i64 {input:02x?}"),
                Ok(Type::Unsigned | Type::Negative) => {}
                Ok(_) => assert_eq!(
                    got,
                    Err(Error::WrongType(Part::Envelope)),
                    "i64 {input:02x?}"
                ),
            }
        }
    }

    /// Every head byte followed by a few continuations, cut at every length from `shortest`.
    fn every_head_cut(shortest: usize) -> Vec<Vec<u8>> {
        let tails: [&[u8]; 5] = [&[], &[0x00], &[0x18, 0x61], &[0xff; 9], &[0x61, 0xff, 0x80]];
        let mut inputs = Vec::new();
        for head in 0u8..=0xff {
            for tail in tails {
                let mut bytes = vec![head];
                bytes.extend_from_slice(tail);
                for cut in shortest..=bytes.len() {
                    inputs.push(bytes[..cut].to_vec());
                }
            }
        }
        inputs
    }

    #[test]
    fn huge_counts_end_at_the_input_end() {
        // An array claiming 2^64-1 items with two bytes of content.
        let bytes = [
            0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02,
        ];
        let mut r = Reader::new(&bytes, Part::Envelope);
        assert_eq!(r.skip(), Err(Error::Truncated));
    }
}

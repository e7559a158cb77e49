//! Every reader against minicbor's decoder: each head byte (every major type, additional
//! information 0..=27, the reserved 28..=30 and indefinite 31) followed by several tails, cut at
//! every length. Where both succeed they agree on the value and the position; where ours fails,
//! minicbor fails the same way (end of input, wrong type, or not well-formed), except that ours
//! refuses indefinite items and stray breaks, which minicbor's skip takes.

use cbor_read::{Decoder, Error, Type};
use minicbor::data::Type as T;
use proptest::prelude::*;

type Theirs<X> = Result<X, minicbor::decode::Error>;

fn class(t: T) -> Type {
    match t {
        T::U8 | T::U16 | T::U32 | T::U64 => Type::Unsigned,
        T::I8 | T::I16 | T::I32 | T::I64 | T::Int => Type::Negative,
        T::Bytes => Type::Bytes,
        T::BytesIndef => Type::BytesIndef,
        T::String => Type::String,
        T::StringIndef => Type::StringIndef,
        T::Array => Type::Array,
        T::ArrayIndef => Type::ArrayIndef,
        T::Map => Type::Map,
        T::MapIndef => Type::MapIndef,
        T::Tag => Type::Tag,
        T::Bool => Type::Bool,
        T::Null => Type::Null,
        T::Undefined => Type::Undefined,
        T::Simple => Type::Simple,
        T::F16 => Type::F16,
        T::F32 => Type::F32,
        T::F64 => Type::F64,
        T::Break => Type::Break,
        _ => Type::Unknown,
    }
}

/// Ours and minicbor's outcome of one read agree (see the module doc).
fn agree<X: PartialEq + std::fmt::Debug>(
    input: &[u8],
    what: &str,
    ours: Result<(X, usize), Error>,
    theirs: Theirs<(X, usize)>,
) {
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what} {input:02x?}"),
        (Err(Error::Truncated), Err(e)) if e.is_end_of_input() => {}
        (Err(Error::WrongType), Err(e)) if e.is_type_mismatch() => {}
        // minicbor names the type in its error, and to tell a negative integer's width it reads
        // the byte after the argument's first: missing, that error is the end of input. Callers
        // ask `datatype` first, which agrees.
        (Err(Error::WrongType), Err(e))
            if e.is_end_of_input() && matches!(input.first(), Some(0x38..=0x3b)) => {}
        (Err(Error::Indefinite | Error::Malformed | Error::InvalidUtf8), Err(e))
            if !e.is_end_of_input() => {}
        _ => panic!("{what} {input:02x?}: ours {ours:?}, minicbor {theirs:?}"),
    }
}

fn ours<'a, X>(
    input: &'a [u8],
    f: impl FnOnce(&mut Decoder<'a>) -> Result<X, Error>,
) -> Result<(X, usize), Error> {
    let mut d = Decoder::new(input);
    f(&mut d).map(|x| (x, d.position()))
}

fn theirs<'a, X>(
    input: &'a [u8],
    f: impl FnOnce(&mut minicbor::Decoder<'a>) -> Theirs<X>,
) -> Theirs<(X, usize)> {
    let mut d = minicbor::Decoder::new(input);
    f(&mut d).map(|x| (x, d.position()))
}

/// Checks every reader on `input`.
fn check(input: &[u8]) {
    let ours_type = Decoder::new(input).datatype();
    let theirs_type = minicbor::Decoder::new(input).datatype().map(class);
    agree(
        input,
        "datatype",
        ours_type.map(|t| (t, 0)),
        theirs_type.map(|t| (t, 0)),
    );

    agree(
        input,
        "u64",
        ours(input, |d| d.u64()),
        theirs(input, |d| d.u64()),
    );
    agree(
        input,
        "int",
        ours(input, |d| d.int().map(|i| i.to_i128())),
        theirs(input, |d| d.int().map(i128::from)),
    );
    agree(
        input,
        "bytes",
        ours(input, |d| d.bytes()),
        theirs(input, |d| d.bytes()),
    );
    agree(
        input,
        "str",
        ours(input, |d| d.str()),
        theirs(input, |d| d.str()),
    );
    agree(
        input,
        "tag",
        ours(input, |d| d.tag()),
        theirs(input, |d| d.tag().map(|t| t.as_u64())),
    );
    agree(
        input,
        "bool",
        ours(input, |d| d.bool()),
        theirs(input, |d| d.bool()),
    );
    agree(
        input,
        "null",
        ours(input, |d| d.null()),
        theirs(input, |d| d.null()),
    );
    // minicbor gives `None` for an indefinite array or map, which ours refuses.
    let indef = |r: Theirs<(Option<u64>, usize)>| match r {
        Ok((None, _)) => Err(minicbor::decode::Error::message("indefinite")),
        Ok((Some(n), p)) => Ok((n, p)),
        Err(e) => Err(e),
    };
    agree(
        input,
        "array",
        ours(input, |d| d.array()),
        indef(theirs(input, |d| d.array())),
    );
    agree(
        input,
        "map",
        ours(input, |d| d.map()),
        indef(theirs(input, |d| d.map())),
    );
    // Ours reads every major-7 head; minicbor's `simple` only simple values.
    if matches!(input.first(), Some(0xe0..=0xf3 | 0xf8)) {
        agree(
            input,
            "simple",
            ours(input, |d| d.simple()),
            theirs(input, |d| d.simple().map(u64::from)),
        );
    }
    check_skip(input);
}

fn check_skip(input: &[u8]) {
    let ours = ours(input, |d| d.skip(16));
    let theirs = theirs(input, |d| d.skip());
    match (&ours, &theirs) {
        // Refused on purpose: indefinite items, breaks (minicbor's skip takes a stray break as
        // an item), and nesting past the limit.
        (Err(Error::Indefinite), _) => {
            assert!(input.iter().any(|&b| b & 0x1f == 31), "{input:02x?}")
        }
        (Err(Error::Malformed), _) if input.contains(&0xff) => {}
        (Err(Error::TooDeep), _) => {}
        _ => agree(input, "skip", ours, theirs),
    }
}

const TAILS: &[&[u8]] = &[
    &[],
    &[0x00],
    &[0x18, 0x61],
    &[0xff; 9],
    &[0x61, 0xff, 0x80],
    &[0x80, 0x00, 0x7f],
    &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x61, 0x62],
    &[0x00, 0x00, 0x00, 0x03, b'a', b'b', b'c', 0x00],
    &[0, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c'],
    &[0x05, b'a', b'b', b'c', b'd', b'e', 0x01],
    &[0x00, 0x05, 0xc3, 0xa9, b'a', b'b', b'c'],
    // Two items and a container, for the heads of arrays, maps and tags.
    &[0x01, 0x62, b'h', b'i', 0x82, 0x20, 0x40, 0xf5],
    &[0x81, 0x81, 0x81, 0xa1, 0x01, 0xc2, 0x41, 0x00],
    // 27 text bytes: every short length 0..=23 and the one-byte lengths fit.
    b"abcdefghijklmnopqrstuvwxyz0",
];

#[test]
fn every_head_byte_with_every_tail_cut_at_every_length() {
    for head in 0u8..=0xff {
        for tail in TAILS {
            let mut bytes = vec![head];
            bytes.extend_from_slice(tail);
            for cut in 0..=bytes.len() {
                check(&bytes[..cut]);
            }
        }
    }
}

#[test]
fn every_argument_width_of_every_major_type() {
    // Arguments in 0..=23 and in 1, 2, 4 and 8 bytes, at their smallest and largest, and the
    // same value in a wider head than it needs (not preferred, still read).
    for major in 0u8..8 {
        for arg in [
            0u64,
            1,
            23,
            24,
            255,
            256,
            65535,
            65536,
            u32::MAX.into(),
            1 << 32,
            u64::MAX,
        ] {
            for width in [0usize, 1, 2, 4, 8] {
                let (info, len) = match width {
                    0 if arg < 24 => (arg as u8, 0),
                    0 => continue,
                    1 => (24, 1),
                    2 => (25, 2),
                    4 => (26, 4),
                    _ => (27, 8),
                };
                if len < 8 && arg >> (8 * len) != 0 {
                    continue;
                }
                let mut bytes = vec![major << 5 | info];
                bytes.extend_from_slice(&arg.to_be_bytes()[8 - len..]);
                bytes.extend_from_slice(&[0x61; 300]);
                for cut in 0..=bytes.len().min(16) {
                    check(&bytes[..cut]);
                }
                check(&bytes);
            }
        }
    }
}

#[test]
fn integers_convert_as_minicbor_converts_them() {
    for bytes in [
        &[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..], // i64::MIN
        &[0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0],                          // below i64::MIN
        &[0x1b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],     // i64::MAX
        &[0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0],                          // above i64::MAX
        &[0x20],
        &[0x17],
    ] {
        let ours = Decoder::new(bytes).int().unwrap();
        let theirs = minicbor::Decoder::new(bytes).int().unwrap();
        assert_eq!(ours.to_i64(), i64::try_from(theirs).ok(), "{bytes:02x?}");
        assert_eq!(ours.to_u64(), u64::try_from(theirs).ok(), "{bytes:02x?}");
        assert_eq!(ours.to_i128(), i128::from(theirs), "{bytes:02x?}");
        assert_eq!(ours.is_negative(), i128::from(theirs) < 0, "{bytes:02x?}");
    }
}

#[test]
fn nesting_is_bounded() {
    // k arrays (or tags) around an integer: k + 1 levels.
    for head in [0x81u8, 0xc1, 0xa1] {
        for k in 0..24usize {
            let mut bytes = vec![head; k];
            if head == 0xa1 {
                // A map's value nested, its key a scalar: a1 01 a1 01 ... 00.
                bytes = [head, 0x01].repeat(k);
            }
            bytes.push(0x00);
            let mut d = Decoder::new(&bytes);
            let got = d.skip(16);
            if k < 16 {
                assert_eq!(got, Ok(()), "{bytes:02x?}");
                assert_eq!(d.position(), bytes.len());
                check_skip(&bytes);
            } else {
                assert_eq!(got, Err(Error::TooDeep), "{bytes:02x?}");
            }
        }
    }
    assert_eq!(Decoder::new(&[0x00]).skip(0), Err(Error::TooDeep));
    assert_eq!(Decoder::new(&[0x00]).skip(1), Ok(()));
    assert_eq!(Decoder::new(&[0x81, 0x00]).skip(1), Err(Error::TooDeep));
}

#[test]
fn indefinite_items_and_breaks_are_refused() {
    for bytes in [
        &[0x5f, 0xff][..],
        &[0x7f, 0xff],
        &[0x9f, 0xff],
        &[0xbf, 0xff],
        &[0x82, 0x01, 0x9f, 0xff],
    ] {
        assert_eq!(
            Decoder::new(bytes).skip(16),
            Err(Error::Indefinite),
            "{bytes:02x?}"
        );
    }
    for bytes in [
        &[0xff][..],
        &[0x81, 0xff],
        &[0x1f],
        &[0x3f],
        &[0xdf],
        &[0x1c],
        &[0xfc],
    ] {
        assert_eq!(
            Decoder::new(bytes).skip(16),
            Err(Error::Malformed),
            "{bytes:02x?}"
        );
    }
}

#[test]
fn huge_lengths_end_at_the_input_end() {
    let mut bytes = vec![0x9b];
    bytes.extend_from_slice(&[0xff; 8]);
    bytes.extend_from_slice(&[0x01, 0x02]);
    assert_eq!(Decoder::new(&bytes).skip(16), Err(Error::Truncated));
    for head in [0x5b, 0x7b] {
        let mut bytes = vec![head];
        bytes.extend_from_slice(&[0xff; 8]);
        bytes.push(b'a');
        assert_eq!(Decoder::new(&bytes).skip(16), Err(Error::Truncated));
        check(&bytes);
    }
}

proptest! {
    #[test]
    fn random_input_reads_as_minicbor_reads_it(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        check(&bytes);
    }

    #[test]
    fn random_input_of_likely_heads(
        bytes in proptest::collection::vec(
            prop_oneof![Just(0x81u8), Just(0x82), Just(0xa1), Just(0xc1), Just(0x41), Just(0x61), Just(0x00), Just(0x18), Just(0x20), Just(0xf5), Just(0xf8), Just(0xf9), any::<u8>()],
            0..40,
        )
    ) {
        check(&bytes);
    }
}

//! Block1/Block2 option values: encodings worked out by hand from RFC 7959 §2.2
//! (value = NUM << 4 | M << 3 | SZX, shortest big-endian uint), size and offset arithmetic, and
//! every refusal.

use lwm2m_core::block::{
    BlockError, BlockValue, decode_uint_option, encode_uint_option, szx_at_most, szx_for_size,
};
use proptest::prelude::*;

fn enc(num: u32, more: bool, szx: u8) -> Vec<u8> {
    let (bytes, len) = BlockValue::new(num, more, szx).unwrap().encode();
    bytes[..len].to_vec()
}

#[test]
fn encodings_by_hand() {
    // NUM=3, M=1, SZX=6: 3<<4 | 1<<3 | 6 = 48 + 8 + 6 = 62 = 0x3E.
    assert_eq!(enc(3, true, 6), [0x3E]);
    // All zero: the empty option (RFC 7959 §2.2: "a value of 0 ... zero-length").
    assert_eq!(enc(0, false, 0), [] as [u8; 0]);
    // RFC 7959 notation 0/1/128: NUM 0, M 1, SZX 3 = 0x0B.
    assert_eq!(enc(0, true, 3), [0x0B]);
    // NUM=15, M=0, SZX=6: 240 | 6 = 0xF6, still one byte.
    assert_eq!(enc(15, false, 6), [0xF6]);
    // NUM=16, M=0, SZX=6: 256 | 6 = 0x0106.
    assert_eq!(enc(16, false, 6), [0x01, 0x06]);
    // NUM=4095, M=1, SZX=4: 0xFFF0 | 0x8 | 0x4 = 0xFFFC.
    assert_eq!(enc(4095, true, 4), [0xFF, 0xFC]);
    // NUM=4096, SZX=0: 0x10000, three bytes.
    assert_eq!(enc(4096, false, 0), [0x01, 0x00, 0x00]);
    // NUM=2^20-1, M=1, SZX=6: 0xFFFFF0 | 0x8 | 0x6 = 0xFFFFFE.
    assert_eq!(enc((1 << 20) - 1, true, 6), [0xFF, 0xFF, 0xFE]);
}

#[test]
fn decodes_by_hand() {
    let b = BlockValue::decode(&[0x3E]).unwrap();
    assert_eq!(
        (b.num(), b.more(), b.szx(), b.size(), b.offset()),
        (3, true, 6, 1024, 3072)
    );
    let b = BlockValue::decode(&[]).unwrap();
    assert_eq!(
        (b.num(), b.more(), b.szx(), b.size(), b.offset()),
        (0, false, 0, 16, 0)
    );
    let b = BlockValue::decode(&[0x01, 0x06]).unwrap();
    assert_eq!((b.num(), b.more(), b.szx()), (16, false, 6));
    let b = BlockValue::decode(&[0xFF, 0xFF, 0xFE]).unwrap();
    assert_eq!((b.num(), b.more(), b.szx()), (0xFFFFF, true, 6));
    // Leading zero bytes are legal (RFC 7252 §3.2) and mean the same value.
    assert_eq!(
        BlockValue::decode(&[0x00, 0x3E]),
        BlockValue::decode(&[0x3E])
    );
}

#[test]
fn refusals() {
    // SZX 7 is BERT: 0x0F = NUM 0, M 1, SZX 7.
    assert_eq!(BlockValue::decode(&[0x0F]), Err(BlockError::Bert));
    assert_eq!(
        BlockValue::decode(&[0x12, 0x34, 0x56, 0x78]),
        Err(BlockError::TooLong)
    );
    assert_eq!(
        BlockValue::new(1 << 20, false, 0),
        Err(BlockError::NumTooLarge)
    );
    assert_eq!(BlockValue::new(0, false, 7), Err(BlockError::Bert));
    assert_eq!(BlockValue::new(0, false, 8), Err(BlockError::InvalidSzx));
    assert_eq!(
        BlockValue::from_offset(100, 64, false),
        Err(BlockError::Misaligned)
    );
    assert_eq!(
        BlockValue::from_offset(0, 1000, false),
        Err(BlockError::InvalidSize)
    );
    assert_eq!(
        BlockValue::from_offset(0, 2048, false),
        Err(BlockError::InvalidSize)
    );
    assert_eq!(
        BlockValue::from_offset(16 << 20, 16, false),
        Err(BlockError::NumTooLarge)
    );
    assert_eq!(
        BlockValue::from_offset(u64::MAX - 15, 16, false),
        Err(BlockError::NumTooLarge)
    );
}

#[test]
fn from_offset() {
    let b = BlockValue::from_offset(3072, 1024, true).unwrap();
    assert_eq!((b.num(), b.more(), b.szx()), (3, true, 6));
    let last = BlockValue::from_offset(((1 << 20) - 1) * 1024, 1024, false).unwrap();
    assert_eq!(last.num(), (1 << 20) - 1);
    assert_eq!(last.offset(), 1_073_740_800);
}

#[test]
fn sizes() {
    let table = [
        (16, 0),
        (32, 1),
        (64, 2),
        (128, 3),
        (256, 4),
        (512, 5),
        (1024, 6),
    ];
    for (size, szx) in table {
        assert_eq!(szx_for_size(size), Ok(szx));
        assert_eq!(BlockValue::new(0, false, szx).unwrap().size(), size);
    }
    for size in [0, 8, 15, 48, 2048, usize::MAX] {
        assert_eq!(szx_for_size(size), Err(BlockError::InvalidSize));
    }
}

#[test]
fn largest_size_within_a_limit() {
    assert_eq!(szx_at_most(15), None);
    assert_eq!(szx_at_most(16), Some(0));
    assert_eq!(szx_at_most(100), Some(2), "64 fits under 100, 128 does not");
    assert_eq!(szx_at_most(1024), Some(6));
    assert_eq!(szx_at_most(u64::MAX), Some(6), "never above 1024 on UDP");
}

#[test]
fn uint_options() {
    assert_eq!(decode_uint_option(&[]), Ok(0));
    assert_eq!(decode_uint_option(&[0x01, 0x00]), Ok(256));
    assert_eq!(decode_uint_option(&[0x00, 0x00, 0x01, 0x00]), Ok(256));
    assert_eq!(decode_uint_option(&[0xFF; 4]), Ok(u32::MAX));
    assert_eq!(decode_uint_option(&[0x01; 5]), Err(BlockError::TooLong));
    let (b, n) = encode_uint_option(0);
    assert_eq!(&b[..n], &[] as &[u8]);
    let (b, n) = encode_uint_option(256);
    assert_eq!(&b[..n], &[0x01, 0x00]);
    // Size2 of a 100 000-byte image: 0x0186A0.
    let (b, n) = encode_uint_option(100_000);
    assert_eq!(&b[..n], &[0x01, 0x86, 0xA0]);
    let (b, n) = encode_uint_option(0x0100_0000);
    assert_eq!(&b[..n], &[0x01, 0x00, 0x00, 0x00]);
}

proptest! {
    #[test]
    fn round_trip(num in 0u32..(1 << 20), more: bool, szx in 0u8..=6) {
        let b = BlockValue::new(num, more, szx).unwrap();
        let (bytes, len) = b.encode();
        prop_assert_eq!(BlockValue::decode(&bytes[..len]), Ok(b));
        prop_assert!(len == 0 || bytes[0] != 0, "shortest form");
        prop_assert_eq!(b.offset(), u64::from(num) * (16u64 << szx));
        prop_assert_eq!(BlockValue::from_offset(b.offset(), b.size(), more), Ok(b));
    }

    #[test]
    fn uint_round_trip(v: u32) {
        let (bytes, len) = encode_uint_option(v);
        prop_assert_eq!(decode_uint_option(&bytes[..len]), Ok(v));
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..6)) {
        let _ = decode_uint_option(&bytes);
        if let Ok(b) = BlockValue::decode(&bytes) {
            let (out, len) = b.encode();
            prop_assert_eq!(BlockValue::decode(&out[..len]), Ok(b));
        }
    }

    #[test]
    fn from_offset_never_panics(offset: u64, size: usize, more: bool) {
        let _ = BlockValue::from_offset(offset, size, more);
    }
}

//! Block and uint option values: never panic; a decoded value encodes and decodes to itself, and
//! a shortest-form input encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::block::{BlockValue, decode_uint_option, encode_uint_option};

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = BlockValue::decode(data) {
        let (bytes, len) = block.encode();
        assert_eq!(BlockValue::decode(&bytes[..len]), Ok(block));
        if data.first() != Some(&0) {
            assert_eq!(&bytes[..len], data);
        }
        assert_eq!(block.offset(), u64::from(block.num()) * block.size() as u64);
        let again = BlockValue::from_offset(block.offset(), block.size(), block.more());
        assert_eq!(again, Ok(block));
    }
    if let Ok(v) = decode_uint_option(data) {
        let (bytes, len) = encode_uint_option(v);
        assert_eq!(decode_uint_option(&bytes[..len]), Ok(v));
    }
});

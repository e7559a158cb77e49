//! Opaque payloads and the Block2 slicing helper.

use lwm2m_core::content::opaque::{self, BufferFull};

#[test]
fn pass_through_and_copy() {
    assert_eq!(opaque::decode(b"\x00\xff"), b"\x00\xff");
    let mut buf = [0u8; 3];
    assert_eq!(opaque::encode(&mut buf, b"abc"), Ok(3));
    assert_eq!(opaque::encode(&mut buf, b"abcd"), Err(BufferFull));
}

#[test]
fn blocks_of_a_value() {
    let image: Vec<u8> = (0..=99).collect();
    // 100 bytes in 32-byte blocks: 32, 32, 32, 4.
    assert_eq!(opaque::block_of(&image, 0, 32), Some((&image[0..32], true)));
    assert_eq!(
        opaque::block_of(&image, 64, 32),
        Some((&image[64..96], true))
    );
    assert_eq!(
        opaque::block_of(&image, 96, 32),
        Some((&image[96..], false))
    );
    assert_eq!(opaque::block_of(&image, 100, 32), Some((&[][..], false)));
    assert_eq!(opaque::block_of(&image, 101, 32), None);
    assert_eq!(opaque::block_of(&image, u64::MAX, 32), None);
}

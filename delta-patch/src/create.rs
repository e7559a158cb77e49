//! Patch creation on the host: bsdiff (the `bsdiff` crate, which writes the classic control
//! triples uncompressed) re-framed as detools' sequential format and compressed.

use crate::header::{Compression, header_byte};
use crate::{heatshrink_encode, varint};

/// A sequential patch that turns `old` into `new`, as `detools create_patch --type sequential
/// --compression NAME` makes one. Heatshrink parameters must pass [`crate::header::HeatshrinkParams::check`].
pub fn create_patch(old: &[u8], new: &[u8], compression: Compression) -> Vec<u8> {
    let mut patch = vec![header_byte(compression)];
    varint::encode(new.len() as i64, &mut patch);
    if new.is_empty() {
        return patch; // detools writes no body for an empty image
    }
    let body = body(old, new);
    match compression {
        Compression::None => patch.extend_from_slice(&body),
        Compression::Heatshrink(params) => {
            patch.push(params.to_byte());
            patch.extend_from_slice(&heatshrink_encode::encode(&body, params));
        }
    }
    patch
}

/// The uncompressed body: no data-format patch, then one detools chunk per bsdiff triple.
fn body(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    // Writing into a Vec cannot fail.
    bsdiff::diff(old, new, &mut raw).expect("bsdiff into memory");
    let mut body = Vec::with_capacity(raw.len());
    varint::encode(0, &mut body);
    let mut rest = raw.as_slice();
    while let Some((control, after)) = rest.split_first_chunk::<24>() {
        let [diff, extra, seek] = [0, 8, 16].map(|at| offtin(&control[at..at + 8]));
        let (diff_bytes, after) = after.split_at(diff as usize);
        let (extra_bytes, after) = after.split_at(extra as usize);
        varint::encode(diff, &mut body);
        body.extend_from_slice(diff_bytes);
        varint::encode(extra, &mut body);
        body.extend_from_slice(extra_bytes);
        varint::encode(seek, &mut body);
        rest = after;
    }
    body
}

/// bsdiff's 8-byte sign-and-magnitude little-endian integer.
fn offtin(bytes: &[u8]) -> i64 {
    let raw = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    let magnitude = (raw & !(1 << 63)) as i64;
    if raw >> 63 == 1 {
        -magnitude
    } else {
        magnitude
    }
}

//! Test support: firmware-like image pairs and applying a patch in blocks.

#![allow(dead_code)] // each test binary uses a part

use delta_patch::{Applier, ApplyError, PatchError};

/// A deterministic firmware-like image: Thumb-ish 16-bit words from a small vocabulary, literal
/// pools of addresses, and a text table, so that it compresses and diffs like real code.
pub fn image(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        match next() % 8 {
            0 => out.extend_from_slice(&(0x0800_0000 + ((next() % 0x4_0000) & !3)).to_le_bytes()),
            1 => out.extend_from_slice(b"update: "),
            _ => out.extend_from_slice(&[(next() % 24) as u8 * 2, 0x46 + (next() % 3) as u8]),
        }
    }
    out.truncate(len);
    out
}

/// A "rebuild" of `old`: a function inserted, one removed, and a block of addresses shifted,
/// as a code change moves everything after it.
pub fn rebuild(old: &[u8]) -> Vec<u8> {
    let n = old.len();
    let mut new = old[..n / 4].to_vec();
    new.extend_from_slice(&image(300, 99));
    new.extend_from_slice(&old[n / 4..n / 2]);
    let tail = old.get(n / 2 + 200..).unwrap_or_default();
    new.extend(tail.chunks(4).enumerate().flat_map(|(i, w)| {
        let mut w = w.to_vec();
        if i % 5 == 0 && w.len() == 4 {
            w[0] = w[0].wrapping_add(0x2c);
        }
        w
    }));
    new
}

/// The old/new pairs every interop test runs: a typical rebuild, and the edges.
pub fn pairs() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let old = image(24_000, 1);
    vec![
        ("rebuild", old.clone(), rebuild(&old)),
        ("identical", old.clone(), old.clone()),
        ("unrelated", old.clone(), image(5_000, 7)),
        ("empty old", Vec::new(), image(3_000, 3)),
        ("empty new", old.clone(), Vec::new()),
        ("one byte", vec![1], vec![2]),
    ]
}

/// Applies `patch` to `old`, `block` bytes at a time, as blocks arrive over the network.
pub fn apply_in_blocks(
    old: &[u8],
    patch: &[u8],
    block: usize,
) -> Result<Vec<u8>, ApplyError<core::convert::Infallible, core::convert::Infallible>> {
    let mut applier = Applier::new(old.len() as u32, u32::MAX);
    let mut new = Vec::new();
    for piece in patch.chunks(block) {
        applier.feed(piece, &mut { old }, &mut new)?;
    }
    applier.finish()?;
    Ok(new)
}

/// Just the patch error (the readers and writers of these tests cannot fail).
pub fn patch_error<R, W>(e: ApplyError<R, W>) -> PatchError {
    match e {
        ApplyError::Patch(e) => e,
        _ => panic!("not a patch error"),
    }
}

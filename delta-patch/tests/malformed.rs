//! Malformed, truncated and hostile patches end in a precise error, never a panic, a write past
//! the declared new size or a read outside the old image; failing readers and writers surface
//! as such.

mod support;

use delta_patch::varint::encode;
use delta_patch::{Applier, ApplyError, Compression, NewImage, OldImage, PatchError, create_patch};
use proptest::prelude::*;
use support::{apply_in_blocks, image, patch_error, rebuild};

/// A `none` patch from its parts: new size, then the body varints and bytes.
fn raw_patch(new_size: i64, body: &[Part]) -> Vec<u8> {
    let mut p = vec![0x00];
    encode(new_size, &mut p);
    for part in body {
        match part {
            Part::Int(v) => encode(*v, &mut p),
            Part::Bytes(b) => p.extend_from_slice(b),
        }
    }
    p
}

enum Part {
    Int(i64),
    Bytes(&'static [u8]),
}
use Part::{Bytes, Int};

fn error_of(old: &[u8], patch: &[u8]) -> PatchError {
    patch_error(apply_in_blocks(old, patch, 3).unwrap_err())
}

#[test]
fn a_hand_made_patch_applies() {
    // new = old[0..2] + 1, then "xy", seek back 2, then old[0..2] unchanged.
    let patch = raw_patch(
        6,
        &[
            Int(0),
            Int(2),
            Bytes(&[1, 1]),
            Int(2),
            Bytes(b"xy"),
            Int(-2),
            Int(2),
            Bytes(&[0, 0]),
            Int(0),
            Int(0),
        ],
    );
    assert_eq!(apply_in_blocks(b"ab", &patch, 1).unwrap(), b"bcxyab");
}

#[test]
fn each_bad_field_has_its_error() {
    let old = b"abcd";
    assert_eq!(error_of(old, &[0x10, 0x00]), PatchError::PatchType(1));
    assert_eq!(error_of(old, &[0x20]), PatchError::PatchType(2));
    assert_eq!(error_of(old, &[0x01, 0x00]), PatchError::Compression(1));
    assert_eq!(error_of(old, &[0x00, 0x41]), PatchError::NegativeSize);
    assert_eq!(
        error_of(
            old,
            &[
                0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80
            ]
        ),
        PatchError::SizeOverflow
    );
    // Window 2^13 is more than the device keeps; a lookahead as large as the window is illegal.
    let params = |window_bits, lookahead_bits| PatchError::HeatshrinkParams {
        window_bits,
        lookahead_bits,
    };
    assert_eq!(error_of(old, &[0x04, 0x01, 0x94]), params(13, 7));
    assert_eq!(error_of(old, &[0x04, 0x01, 0x01]), params(4, 4));
    assert_eq!(
        error_of(old, &raw_patch(4, &[Int(3)])),
        PatchError::DataFormat
    );
    assert_eq!(
        error_of(old, &raw_patch(4, &[Int(0), Int(5)])),
        PatchError::ChunkTooLong
    );
    assert_eq!(
        error_of(old, &raw_patch(4, &[Int(0), Int(-1)])),
        PatchError::NegativeSize
    );
    assert_eq!(
        error_of(old, &raw_patch(4, &[Int(0), Int(0), Int(9)])),
        PatchError::ChunkTooLong
    );
    // A diff reading past the old image's end, and one before its start.
    assert_eq!(
        error_of(old, &raw_patch(6, &[Int(0), Int(6), Bytes(&[0; 6])])),
        PatchError::OldOutOfRange
    );
    assert_eq!(
        error_of(
            old,
            &raw_patch(
                4,
                &[
                    Int(0),
                    Int(0),
                    Int(2),
                    Bytes(b"xy"),
                    Int(-1),
                    Int(2),
                    Bytes(&[0, 0])
                ]
            )
        ),
        PatchError::OldOutOfRange
    );
    // Adjustments that overflow the old position (empty chunks, so the image never completes).
    let big = (1 << 62) - 1;
    let body = [
        Int(0),
        Int(0),
        Int(0),
        Int(big),
        Int(0),
        Int(0),
        Int(big),
        Int(0),
        Int(0),
        Int(big),
    ];
    assert_eq!(
        error_of(old, &raw_patch(4, &body)),
        PatchError::SizeOverflow
    );
}

#[test]
fn every_truncation_is_truncated_and_trailing_data_is_refused() {
    let old = image(3_000, 5);
    let new = rebuild(&old);
    for compression in [Compression::HEATSHRINK, Compression::None] {
        let patch = create_patch(&old, &new, compression);
        for cut in 0..patch.len() {
            let mut applier = Applier::new(old.len() as u32, u32::MAX);
            let mut out = Vec::new();
            applier
                .feed(&patch[..cut], &mut old.as_slice(), &mut out)
                .unwrap();
            assert_eq!(
                applier.finish(),
                Err(PatchError::Truncated),
                "{compression:?} cut at {cut}"
            );
            assert!(
                new.starts_with(&out),
                "what is written is a prefix of the new image"
            );
        }
        // A whole literal (heatshrink: tag 1 + a byte) or any byte (none) after the end.
        let mut longer = patch.clone();
        longer.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(
            error_of(&old, &longer),
            PatchError::TrailingData,
            "{compression:?}"
        );
    }
    // Nothing may follow the size of an empty image.
    assert_eq!(error_of(b"", &[0x04, 0x00, 0x44]), PatchError::TrailingData);
}

#[test]
fn the_size_limit_and_an_earlier_error_stop_the_applier() {
    let old = image(2_000, 8);
    let new = rebuild(&old);
    let patch = create_patch(&old, &new, Compression::HEATSHRINK);
    let mut applier = Applier::new(old.len() as u32, new.len() as u32 - 1);
    let mut out = Vec::new();
    let e = applier
        .feed(&patch, &mut old.as_slice(), &mut out)
        .unwrap_err();
    assert_eq!(
        patch_error(e),
        PatchError::NewTooLarge {
            size: new.len() as u64,
            max: new.len() as u32 - 1
        }
    );
    assert!(out.is_empty(), "refused before any byte is written");
    let e = applier.feed(&[], &mut old.as_slice(), &mut out);
    assert!(e.is_ok(), "no input, nothing to refuse");
    let e = applier
        .feed(&patch[..1], &mut old.as_slice(), &mut out)
        .unwrap_err();
    assert_eq!(patch_error(e), PatchError::Failed);
    assert_eq!(applier.finish(), Err(PatchError::Failed));
}

/// A flash that fails at a given offset.
struct Failing {
    at: u32,
    written: u32,
}

impl NewImage for Failing {
    type Error = &'static str;
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        if self.written + bytes.len() as u32 > self.at {
            return Err("program failed");
        }
        self.written += bytes.len() as u32;
        Ok(())
    }
}

impl OldImage for Failing {
    type Error = &'static str;
    fn size(&self) -> u32 {
        4096
    }
    fn read(&mut self, _: u32, _: &mut [u8]) -> Result<(), Self::Error> {
        Err("read failed")
    }
}

#[test]
fn reader_and_writer_errors_surface() {
    let old = image(4096, 9);
    let new = rebuild(&old);
    let patch = create_patch(&old, &new, Compression::HEATSHRINK);
    let mut applier = Applier::new(4096, u32::MAX);
    let mut flash = Failing {
        at: 1000,
        written: 0,
    };
    let e = applier
        .feed(&patch, &mut old.as_slice(), &mut flash)
        .unwrap_err();
    assert_eq!(e, ApplyError::WriteNew("program failed"));
    assert!(flash.written <= 1000);
    let mut applier = Applier::new(4096, u32::MAX);
    let e = applier
        .feed(&patch, &mut Failing { at: 0, written: 0 }, &mut Vec::new())
        .unwrap_err();
    assert_eq!(e, ApplyError::ReadOld("read failed"));
}

/// Applies a patch with a writer that checks the bound itself; returns the outcome.
fn apply_bounded(old: &[u8], patch: &[u8], block: usize) -> (Vec<u8>, Result<u32, PatchError>) {
    let mut applier = Applier::new(old.len() as u32, 1 << 20);
    let mut out = Vec::new();
    for piece in patch.chunks(block.max(1)) {
        if let Err(e) = applier.feed(piece, &mut { old }, &mut out) {
            return (out, Err(patch_error(e)));
        }
        let declared = applier.new_size().unwrap_or(0) as usize;
        assert!(
            out.len() <= declared,
            "wrote {} past the declared {declared}",
            out.len()
        );
    }
    (out, applier.finish())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any patch we make rebuilds the new image, fed in any block size.
    #[test]
    fn round_trip(seed in 0u32..1000, len in 0usize..3000, cut in 0usize..3000, block in 1usize..300, hs in any::<bool>()) {
        let old = image(len, seed);
        let mut new = rebuild(&old);
        new.truncate(cut.max(new.len() / 2));
        let compression = if hs { Compression::HEATSHRINK } else { Compression::None };
        let patch = create_patch(&old, &new, compression);
        prop_assert_eq!(apply_in_blocks(&old, &patch, block).unwrap(), new);
    }

    /// Corrupted patches (bytes flipped, cut, inserted) end in a result, never a panic, and never
    /// write past the declared size; a patch that still completes wrote exactly that size.
    #[test]
    fn corruption_never_panics(seed in 0u32..1000, edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6), block in 1usize..200, hs in any::<bool>()) {
        let old = image(1500, seed);
        let new = rebuild(&old);
        let compression = if hs { Compression::HEATSHRINK } else { Compression::None };
        let mut patch = create_patch(&old, &new, compression);
        for (at, byte, kind) in edits {
            let at = at % patch.len();
            match kind {
                0 => patch[at] ^= byte | 1,
                1 => patch.truncate(at),
                _ => patch.insert(at, byte),
            }
            if patch.is_empty() { patch.push(byte); }
        }
        let (out, result) = apply_bounded(&old, &patch, block);
        if let Ok(size) = result {
            prop_assert_eq!(out.len(), size as usize);
        }
    }

    /// Arbitrary bytes after a valid header.
    #[test]
    fn random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..600), hs in any::<bool>()) {
        let mut patch = if hs { vec![0x04, 0x90, 0x03, 0x44] } else { vec![0x00, 0x90, 0x03] };
        patch.extend_from_slice(&body);
        let (out, _) = apply_bounded(b"some old image bytes", &patch, 17);
        prop_assert!(out.len() <= 0x190);
    }
}

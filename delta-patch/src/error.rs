//! What can go wrong while applying a patch: a precise [`PatchError`] for a bad or unsupported
//! patch, or the old image's reader or the new image's writer failing ([`ApplyError`]).

use core::fmt;

/// The patch is malformed, truncated or uses something this applier does not support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatchError {
    /// The header names another patch type than sequential (detools' in-place = 1, hdiffpatch = 2).
    PatchType(u8),
    /// The header names a compression other than none (0) or heatshrink (4), e.g. lzma (1).
    Compression(u8),
    /// The heatshrink parameters are invalid or need a larger window than this device keeps.
    HeatshrinkParams { window_bits: u8, lookahead_bits: u8 },
    /// A size field does not fit in 64 bits.
    SizeOverflow,
    /// A size field that must not be negative is.
    NegativeSize,
    /// The new image would be larger than the caller allows (its slot, or the manifest's size).
    NewTooLarge { size: u64, max: u32 },
    /// The patch carries a data-format transform (detools `--data-format`), not supported.
    DataFormat,
    /// A diff or extra chunk runs past the end of the new image.
    ChunkTooLong,
    /// A diff chunk reads outside the old image.
    OldOutOfRange,
    /// Patch bytes follow the end of the patch.
    TrailingData,
    /// The patch ended before the whole new image was written.
    Truncated,
    /// An earlier error stopped this applier; start a new one.
    Failed,
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PatchType(t) => write!(f, "patch type {t} is not sequential (0)"),
            Self::Compression(c) => {
                write!(
                    f,
                    "compression {c} is not supported (none = 0, heatshrink = 4)"
                )
            }
            Self::HeatshrinkParams {
                window_bits,
                lookahead_bits,
            } => write!(
                f,
                "heatshrink window 2^{window_bits}, lookahead 2^{lookahead_bits} not supported (window at most 2^{})",
                crate::heatshrink::MAX_WINDOW_BITS
            ),
            Self::SizeOverflow => f.write_str("a size field overflows 64 bits"),
            Self::NegativeSize => f.write_str("a size field is negative"),
            Self::NewTooLarge { size, max } => {
                write!(
                    f,
                    "the new image ({size} bytes) is larger than allowed ({max})"
                )
            }
            Self::DataFormat => f.write_str("data-format patches are not supported"),
            Self::ChunkTooLong => f.write_str("a chunk runs past the end of the new image"),
            Self::OldOutOfRange => f.write_str("a diff chunk reads outside the old image"),
            Self::TrailingData => f.write_str("data after the end of the patch"),
            Self::Truncated => f.write_str("the patch ends before the new image is complete"),
            Self::Failed => f.write_str("the applier stopped at an earlier error"),
        }
    }
}

/// Applying failed: the patch, or reading the old image, or writing the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyError<R, W> {
    Patch(PatchError),
    ReadOld(R),
    WriteNew(W),
}

impl<R, W> From<PatchError> for ApplyError<R, W> {
    fn from(e: PatchError) -> Self {
        Self::Patch(e)
    }
}

impl<R: fmt::Debug, W: fmt::Debug> fmt::Display for ApplyError<R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Patch(e) => write!(f, "bad patch: {e}"),
            Self::ReadOld(e) => write!(f, "reading the old image failed: {e:?}"),
            Self::WriteNew(e) => write!(f, "writing the new image failed: {e:?}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PatchError {}

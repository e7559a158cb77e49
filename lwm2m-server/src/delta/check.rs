//! What the server can check of a delta release before hosting it. The patch is run through the
//! device's own applier (delta-patch, no_std, no heap) and the new image it writes is hashed as
//! it goes, never held: against the precursor's image when the server holds it (then the result
//! must be exactly the manifest's new image), else against a stand-in of the precursor's size,
//! which still checks the whole framing (header, sizes, chunk bounds, trailing bytes).

use delta_patch::{Applier, NewImage, OldImage};
use sha2::{Digest, Sha256};

/// Patch bytes fed to the applier at a time (any split works; this is a CoAP block's size).
const FEED: usize = 1024;

/// What applying the patch wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    pub sha256: [u8; 32],
    pub size: u64,
}

/// Applies `patch` to `old` (hashing the output) for a new image of at most `new_size` bytes.
pub fn apply(patch: &[u8], old: &[u8], new_size: u64) -> Result<Applied, String> {
    apply_to(patch, &mut &old[..], new_size)
}

/// Like [`apply`] against a stand-in precursor of `old_size` zero bytes: the digest is then
/// meaningless, but every size and bound in the patch has been checked.
/// Returns the size the patch makes.
pub fn check_framing(patch: &[u8], old_size: u64, new_size: u64) -> Result<u64, String> {
    let size = u32::try_from(old_size)
        .map_err(|_| format!("the precursor's size {old_size} is over 4 GiB"))?;
    apply_to(patch, &mut Zeros(size), new_size).map(|a| a.size)
}

fn apply_to<O: OldImage>(patch: &[u8], old: &mut O, new_size: u64) -> Result<Applied, String>
where
    O::Error: core::fmt::Debug,
{
    let max = u32::try_from(new_size)
        .map_err(|_| format!("the new image's size {new_size} is over 4 GiB"))?;
    let mut applier = Applier::new(old.size(), max);
    let mut out = Hashing::default();
    for piece in patch.chunks(FEED) {
        applier
            .feed(piece, old, &mut out)
            .map_err(|e| format!("not a patch this server's devices can apply: {e}"))?;
    }
    let size = applier
        .finish()
        .map_err(|e| format!("not a complete detools sequential patch: {e}"))?;
    Ok(Applied {
        sha256: out.sha.finalize().into(),
        size: u64::from(size),
    })
}

/// The new image's bytes, hashed and counted as they come out.
#[derive(Default)]
struct Hashing {
    sha: Sha256,
}

impl NewImage for Hashing {
    type Error = core::convert::Infallible;
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.sha.update(bytes);
        Ok(())
    }
}

/// An old image of zeros: only its size matters for checking the framing.
struct Zeros(u32);

impl OldImage for Zeros {
    type Error = core::convert::Infallible;
    fn size(&self) -> u32 {
        self.0
    }
    fn read(&mut self, _offset: u32, buf: &mut [u8]) -> Result<(), Self::Error> {
        buf.fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use delta_patch::Compression;

    fn pair() -> (Vec<u8>, Vec<u8>) {
        let old: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = old.clone();
        new[100..140].fill(9);
        new.extend_from_slice(b"more");
        (old, new)
    }

    #[test]
    fn a_good_patch_rebuilds_the_new_image_and_its_framing_checks_without_the_precursor() {
        let (old, new) = pair();
        for c in [Compression::HEATSHRINK, Compression::None] {
            let patch = delta_patch::create_patch(&old, &new, c);
            let got = apply(&patch, &old, new.len() as u64).unwrap();
            assert_eq!(got.sha256, <[u8; 32]>::from(Sha256::digest(&new)));
            assert_eq!(got.size, new.len() as u64);
            check_framing(&patch, old.len() as u64, new.len() as u64).unwrap();
        }
    }

    #[test]
    fn a_wrong_precursor_gives_another_image_and_garbage_is_refused() {
        let (old, new) = pair();
        let patch = delta_patch::create_patch(&old, &new, Compression::HEATSHRINK);
        let mut other = old.clone();
        other[7] ^= 0xff;
        let got = apply(&patch, &other, new.len() as u64).unwrap();
        assert_ne!(got.sha256, <[u8; 32]>::from(Sha256::digest(&new)));
        // The new image itself, an image declared smaller than the patch's, a cut patch.
        assert!(check_framing(&new, old.len() as u64, new.len() as u64).is_err());
        assert!(apply(&patch, &old, new.len() as u64 - 1).is_err());
        assert!(apply(&patch[..patch.len() / 2], &old, new.len() as u64).is_err());
    }
}

//! Delta updates in the simulator (issue 15): a typical rebuild of the factory image and the
//! three releases the server holds to send it as a delta. The job targets the new image's full
//! release; the server itself picks the delta for a device that reports the factory version.

use anyhow::{Result, ensure};
use delta_patch::Compression;
use lwm2m_client::image::{HEADER_LEN, make_image};
use suit_manifest::builder::DeltaSpec;

use super::release::{Firmware, Release, sign};
use super::world::World;

/// Where [`rebuild`] changes the body, and how much of it.
const CHANGED_AT: usize = HEADER_LEN + 500;
const CHANGED_LEN: usize = 60;

/// What the server holds for a delta update from the factory image.
#[derive(Clone, Debug)]
pub struct DeltaReleases {
    /// The factory image's full release: how the server knows the image behind the version a
    /// device reports, the delta's precursor.
    pub precursor: Release,
    /// The new image's full release: the job's target, and the fallback.
    pub full: Release,
    /// The delta from the precursor to the new image; its `image` is the patch.
    pub delta: Release,
}

/// `old` rebuilt as `version`: the header names the new version and one 60-byte region of the
/// body differs, as a changed constant and a rebuild give (the nRF52840 rebuild of
/// docs/BENCHMARKS.md differs by one byte). The rest is `old`'s body, byte for byte.
pub fn rebuild(old: &[u8], version: &str) -> Result<Vec<u8>> {
    ensure!(
        old.len() >= CHANGED_AT + CHANGED_LEN,
        "a {}-byte image is too small to rebuild",
        old.len()
    );
    let header = make_image(version, old.len(), true)
        .ok_or_else(|| anyhow::anyhow!("version {version:?} does not fit the image header"))?;
    let mut new = header[..HEADER_LEN].to_vec();
    new.extend_from_slice(&old[HEADER_LEN..]);
    new[CHANGED_AT..CHANGED_AT + CHANGED_LEN].fill(0x5a);
    Ok(new)
}

impl Firmware {
    /// The releases of a delta update from the factory image to its rebuild as `version`, with
    /// `sequence` (the factory release has 1). The patch is what the server checks and hosts:
    /// a detools sequential patch, heatshrink-compressed.
    pub fn delta_releases(&self, version: &str, sequence: u64) -> Result<DeltaReleases> {
        ensure!(sequence > 1, "the factory release has sequence 1");
        let old = self.factory.clone();
        let new = rebuild(&old, version)?;
        let patch = delta_patch::create_patch(&old, &new, Compression::HEATSHRINK);
        let factory_version = lwm2m_client::image::ImageHeader::parse(&old)
            .map(|h| h.version.as_str().to_string())
            .ok_or_else(|| anyhow::anyhow!("the factory image has no header"))?;
        let full_release = |image: Vec<u8>, version: &str, sequence: u64| -> Result<Release> {
            let spec = self.manifest(&image, version, sequence);
            Ok(Release {
                version: version.into(),
                sequence,
                envelope: sign(&spec, &self.vendor_key)?,
                image,
            })
        };
        let mut spec = self.manifest(&new, version, sequence);
        spec.delta = Some(DeltaSpec::detools_from(&old));
        let delta = Release {
            version: version.into(),
            sequence,
            envelope: sign(&spec, &self.vendor_key)?,
            image: patch,
        };
        Ok(DeltaReleases {
            precursor: full_release(old, &factory_version, 1)?,
            full: full_release(new, version, sequence)?,
            delta,
        })
    }
}

impl DeltaReleases {
    /// Adds the three to the server's repository, the precursor first (the server checks the
    /// patch against it); returns the ids of the full new release and of the delta.
    pub fn add_to(&self, world: &World) -> Result<(String, String)> {
        world.add_release(&self.precursor, None)?;
        let full = world.add_release(&self.full, None)?;
        let delta = world.add_release(&self.delta, None)?;
        Ok((full, delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuild_keeps_the_size_and_differs_in_the_header_and_one_region() {
        let fw = Firmware::new(3, 8192).unwrap();
        let r = fw.delta_releases("2.0.0", 2).unwrap();
        assert_eq!(r.precursor.image, fw.factory);
        assert_eq!(r.precursor.version, "1.0.0");
        assert_eq!(r.full.image.len(), fw.factory.len());
        let differing = (HEADER_LEN..fw.factory.len())
            .filter(|&i| r.full.image[i] != fw.factory[i])
            .count();
        assert!((1..=CHANGED_LEN).contains(&differing), "{differing}");
        // The server checks that the patch makes the new image (the fleet's tests add it).
        assert!(r.delta.image.len() * 10 < r.full.image.len());
    }
}

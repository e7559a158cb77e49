//! Test images and signed SUIT releases (suit-manifest's builder), for the vendor and class every
//! test device is built for.

use lwm2m_client::image::make_image;
use p256::ecdsa::SigningKey;
use suit_manifest::Algorithm;
use suit_manifest::builder::{self, ComponentSpec, ManifestSpec, Signing};

/// The vendor-id of every test device and release.
pub const VENDOR: [u8; 16] = [7; 16];
/// The class-id of every test device and release.
pub const CLASS: [u8; 16] = [8; 16];

/// A new ES256 signing key.
pub fn key() -> SigningKey {
    suit_manifest::keyfile::generate().expect("key generation")
}

/// `len` bytes of deterministic noise (xorshift32). Distinct seeds give distinct images (release
/// ids are content hashes, so two releases of one test must differ), and no 4 KiB page repeats
/// within an image, so a swap that mixes or moves pages is caught.
pub fn image(len: usize, seed: u32) -> Vec<u8> {
    // A bijection of the seed (odd multiplier) that avoids xorshift's one fixed point, 0.
    let mut x = seed
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add(0x6d2b_79f5)
        .max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

/// A firmware image for the simulated device (`lwm2m-client make-image`): its header carries
/// `version`, which the device reports as its Firmware Version once it runs it, and its
/// self-test passes.
pub fn firmware(version: &str, len: usize) -> Vec<u8> {
    make_image(version, len, true).expect("version fits the header")
}

/// Like [`firmware`], but its self-test fails: a device that boots it on trial rolls back and
/// reports Update Result 8.
pub fn failing_firmware(version: &str, len: usize) -> Vec<u8> {
    make_image(version, len, false).expect("version fits the header")
}

/// The component of `image` for [`VENDOR`] and [`CLASS`], fetched from `uri` (`image`: next to
/// the manifest), installing as `version`.
pub fn component(image: &[u8], uri: &str, version: &str) -> ComponentSpec {
    let mut c = ComponentSpec::for_image(image, VENDOR, CLASS);
    c.uri = Some(uri.into());
    c.version = Some(version.into());
    c
}

/// A signed envelope (ES256) of `component` with `sequence`.
pub fn envelope_of(key: &SigningKey, sequence: u64, component: ComponentSpec) -> Vec<u8> {
    builder::signed_envelope(
        &ManifestSpec::new(sequence, component),
        key,
        Algorithm::Es256,
    )
    .expect("a test manifest builds")
}

/// A signed envelope for `image` at `uri`, version 2.0.0.
pub fn envelope(key: &SigningKey, image: &[u8], sequence: u64, uri: &str) -> Vec<u8> {
    envelope_of(key, sequence, component(image, uri, "2.0.0"))
}

/// A signed envelope that carries `image` itself (`suit create --integrated`: the URI `#image`),
/// as a push needs it.
pub fn integrated(key: &SigningKey, image: &[u8], sequence: u64, version: &str) -> Vec<u8> {
    let manifest = builder::manifest(&ManifestSpec::new(
        sequence,
        component(image, "#image", version),
    ))
    .expect("a test manifest builds");
    builder::envelope(
        &manifest,
        Signing::Sign(key, Algorithm::Es256),
        &[("#image", image)],
    )
    .expect("a test envelope builds")
}

/// A signed release on disk, as `lwm2m-server serve --trust` and `firmware add` take it.
pub struct ReleaseFiles {
    /// The signing key's public half (PEM), for `--trust`.
    pub trust: std::path::PathBuf,
    /// The signed envelope (sequence 2, the image next to the manifest).
    pub envelope: std::path::PathBuf,
    /// The image: a [`firmware`] of `len` bytes that reports `version`.
    pub image: std::path::PathBuf,
}

/// Writes `key.pub.pem`, `rel.suit` and `rel.bin` into `dir`: a release of [`firmware`]
/// `version` (`len` bytes) signed by `key` with sequence 2.
pub fn write_release(
    dir: &std::path::Path,
    key: &SigningKey,
    version: &str,
    len: usize,
) -> ReleaseFiles {
    let files = ReleaseFiles {
        trust: dir.join("key.pub.pem"),
        envelope: dir.join("rel.suit"),
        image: dir.join("rel.bin"),
    };
    let pem = suit_manifest::keyfile::verifying_key_to_pem(key.verifying_key())
        .expect("a P-256 public key encodes as PEM");
    std::fs::write(&files.trust, pem).expect("write key.pub.pem");
    let img = firmware(version, len);
    let env = envelope_of(key, 2, component(&img, "image", version));
    std::fs::write(&files.envelope, env).expect("write rel.suit");
    std::fs::write(&files.image, img).expect("write rel.bin");
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_differ_by_seed_and_no_page_repeats() {
        let pages = image(4 * 4096, 1);
        let mut seen: Vec<&[u8]> = pages.chunks(4096).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4, "a page repeats");
        // Neighbouring seeds (which `seed | 1` would have merged) give other images.
        for seed in 0..8 {
            assert_ne!(image(64, seed), image(64, seed + 1), "seed {seed}");
        }
        assert_eq!(image(100, 7), image(100, 7));
    }
}

//! Signed SUIT releases made with suit-manifest's builder, and test images.

use p256::ecdsa::SigningKey;
use suit_manifest::builder::{self, ComponentSpec, ManifestSpec};

pub const VENDOR: [u8; 16] = [7; 16];
pub const CLASS: [u8; 16] = [8; 16];

pub fn key() -> SigningKey {
    suit_manifest::keyfile::generate().unwrap()
}

/// A deterministic, non-repeating-looking image.
pub fn image(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

/// The component of `image` for this device's vendor and class, fetched from `uri`.
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
        suit_manifest::Algorithm::Es256,
    )
    .unwrap()
}

/// A signed envelope for `image` at `uri`.
pub fn envelope(key: &SigningKey, image: &[u8], sequence: u64, uri: &str) -> Vec<u8> {
    envelope_of(key, sequence, component(image, uri, "2.0.0"))
}

//! Links the firmware for mps2-an386 and embeds the SUIT test vectors it verifies. The vectors live
//! beside the repo (../shared/vectors, never copied into it): when they are missing the build fails
//! under CI (CI=true) and otherwise builds a binary that prints a notice and skips.
//!
//! For `engine-update` it also makes a signed release with suit-manifest's builder (see
//! [`release`]): a factory image, a new image and the SUIT envelope that names it, signed with a
//! fixed key so that every build produces the same bytes.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_vectors)");
    println!("cargo::rerun-if-changed=memory.x");
    println!("cargo::rerun-if-env-changed=CI");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.starts_with("thumb") {
        return; // host build: the bins are stubs
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rustc-link-arg-bins=-Tlink.x");
    release(&out);

    let vectors = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../../../shared/vectors/suit");
    let files = [
        ("spec/example0.cbor", "example0.cbor"),
        ("derived/neg-bad-signature.cbor", "neg-bad-signature.cbor"),
        ("spec/public_key.sec1.hex", "public_key.sec1.hex"),
    ];
    if files.iter().all(|(src, _)| vectors.join(src).is_file()) {
        for (src, dst) in files {
            println!("cargo::rerun-if-changed={}", vectors.join(src).display());
            std::fs::copy(vectors.join(src), out.join(dst)).expect("copy vector");
        }
        println!("cargo::rustc-cfg=has_vectors");
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but the shared SUIT vectors are missing at {}",
            vectors.display()
        );
    } else {
        println!(
            "cargo::warning=shared SUIT vectors not found at {}: the QEMU test will skip",
            vectors.display()
        );
    }
}

/// Image format of lwm2m_client::image (64-byte header: `OTAF`, header version 1, flags (bit 0:
/// the self-test fails), 2 reserved bytes, the length (u32 LE, header included), the version
/// (32 bytes, NUL-padded), 20 reserved bytes), then a deterministic filler derived from the
/// version, as `lwm2m-client make-image` writes it.
fn image(version: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"OTAF");
    out[4] = 1;
    out[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    out[12..12 + version.len()].copy_from_slice(version.as_bytes());
    let mut x: u32 = version.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    out.extend((64..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    out
}

/// The release `engine-update` installs: `factory.img` (1.0.0, in ACTIVE at the first power-on),
/// `update.img` (2.0.0, 16 KiB), `update.suit` (its envelope: sequence 2, image URI `image`
/// relative to the manifest's), `trust.sec1` (the public key the device trusts) and `release.rs`
/// (the identities and versions as constants).
fn release(out: &std::path::Path) {
    use suit_manifest::builder::{self, ComponentSpec, ManifestSpec};
    const NEW: &str = "2.0.0";
    const OLD: &str = "1.0.0";
    const SEQUENCE: u64 = 2;
    const IMAGE_LEN: usize = 16 * 1024;

    let key = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("a valid fixed key");
    let vendor = builder::uuid_for("otafleet.example", None);
    let class = builder::uuid_for("qemu-mps2-an386", Some(&vendor));
    let new = image(NEW, IMAGE_LEN);
    let mut component = ComponentSpec::for_image(&new, vendor, class);
    component.uri = Some("image".into());
    component.version = Some(NEW.into());
    let envelope = builder::signed_envelope(
        &ManifestSpec::new(SEQUENCE, component),
        &key,
        suit_manifest::Algorithm::Esp256,
    )
    .expect("build the envelope");
    let public = key.verifying_key().to_sec1_point(false);

    let write = |name: &str, bytes: &[u8]| std::fs::write(out.join(name), bytes).expect(name);
    write("factory.img", &image(OLD, 12 * 1024));
    write("update.img", &new);
    write("update.suit", &envelope);
    write("trust.sec1", public.as_bytes());
    write(
        "release.rs",
        format!(
            "/// Vendor id of the release (UUIDv5 of `otafleet.example`).\n\
             pub const VENDOR_ID: [u8; 16] = {vendor:?};\n\
             /// Class id of the release (UUIDv5 of `qemu-mps2-an386` under the vendor).\n\
             pub const CLASS_ID: [u8; 16] = {class:?};\n\
             pub const SEQUENCE: u64 = {SEQUENCE};\n\
             pub const NEW_VERSION: &str = {NEW:?};\n\
             pub const OLD_VERSION: &str = {OLD:?};\n"
        )
        .as_bytes(),
    );
}

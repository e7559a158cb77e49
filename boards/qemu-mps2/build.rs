//! Links the firmware for mps2-an386 and embeds what `suit-verify` judges on the MCU, each with the
//! verdict of the host's verifier (suit-manifest with the `p256` crate), so that the firmware
//! compares the two verifiers case by case: every SUIT test vector ([`suit_vectors`]) and
//! suit-manifest's ES256 policy cases ([`policy_cases`]). The vectors live beside the repo
//! (../shared/vectors, copied only into OUT_DIR, never into the repo): when they are missing the
//! build fails under CI (CI=true) and otherwise the firmware skips them with a notice.
//!
//! For `engine-update` it also makes a signed release with suit-manifest's builder (see
//! [`release`]): a factory image, a new image and the SUIT envelope that names it, signed with a
//! fixed key so that every build produces the same bytes; for `engine-delta` a delta release (see
//! [`delta_release`]): a precursor, its rebuild, the patch between them and the envelope.

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
    delta_release(&out);

    policy_cases(&out);
    let vectors = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../../../shared/vectors/suit");
    if vectors.join("spec/public_key.sec1.hex").is_file() {
        suit_vectors(&vectors, &out);
        println!("cargo::rustc-cfg=has_vectors");
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but the shared SUIT vectors are missing at {}",
            vectors.display()
        );
    } else {
        println!(
            "cargo::warning=shared SUIT vectors not found at {}: the QEMU test will skip them",
            vectors.display()
        );
    }
}

/// Every SUIT vector (`*.cbor` in spec/, derived/, libcsuit-esp256/) with the verdict of the
/// host's verifier (the `p256` crate): `vectors.rs` holds `VECTORS: &[(name, bytes, verdict)]`
/// (the verdict as `{:?}` of `verify` + `check_severed_elements`, mapped to the sequence number)
/// and `SPEC_KEY`, the spec's public key. `suit-verify` must reach the same verdicts on the MCU.
fn suit_vectors(dir: &std::path::Path, out: &std::path::Path) {
    use std::fmt::Write as _;
    println!("cargo::rerun-if-changed={}", dir.display());
    let key_hex = std::fs::read_to_string(dir.join("spec/public_key.sec1.hex")).expect("key");
    let key: Vec<u8> = (0..key_hex.trim().len() / 2)
        .map(|i| u8::from_str_radix(&key_hex.trim()[2 * i..2 * i + 2], 16).expect("hex key"))
        .collect();
    let anchor = suit_manifest::TrustAnchor::from_sec1(&key).expect("the spec key");
    let mut names = Vec::new();
    for sub in ["spec", "derived", "libcsuit-esp256"] {
        for entry in std::fs::read_dir(dir.join(sub)).expect("vector folder") {
            let name = entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8");
            if name.ends_with(".cbor") {
                names.push(format!("{sub}/{name}"));
            }
        }
    }
    names.sort();
    let mut rs = format!("pub static SPEC_KEY: [u8; {}] = {key:?};\n", key.len());
    rs.push_str("pub static VECTORS: &[(&str, &[u8], &str)] = &[\n");
    for name in &names {
        let bytes = std::fs::read(dir.join(name)).expect("vector");
        let verdict = suit_manifest::verify(&bytes, std::slice::from_ref(&anchor))
            .and_then(|m| m.check_severed_elements().map(|()| m.sequence_number()));
        let file = out.join(name.replace('/', "_"));
        std::fs::write(&file, &bytes).expect("copy vector");
        writeln!(
            rs,
            "    ({name:?}, include_bytes!({:?}), {:?}),",
            file.display(),
            format!("{verdict:?}")
        )
        .expect("write");
    }
    rs.push_str("];\n");
    std::fs::write(out.join("vectors.rs"), rs).expect("write vectors.rs");
}

/// suit-manifest's ES256 policy cases, judged by the host's backend: `policy.rs` holds
/// `POLICY: &[(name, key, prehash, signature, verdict)]` for `suit-verify` to judge on the MCU.
fn policy_cases(out: &std::path::Path) {
    use std::fmt::Write as _;
    use suit_manifest::es256_cases::{Verdict, cases};
    let mut rs = String::from(
        "/// Name, key (SEC1), prehash, signature (r||s), the host's verdict.\n\
         pub type PolicyCase = (&'static str, &'static [u8], [u8; 32], &'static [u8], &'static str);\n\
         pub static POLICY: &[PolicyCase] = &[\n",
    );
    for c in cases() {
        let host = Verdict::of(&c.key, &c.prehash, &c.signature);
        assert_eq!(
            host, c.expected,
            "the host's verifier breaks the policy: {}",
            c.name
        );
        writeln!(
            rs,
            "    ({:?}, &{:?}, {:?}, &{:?}, {:?}),",
            c.name,
            c.key,
            c.prehash,
            c.signature,
            format!("{host:?}")
        )
        .expect("write");
    }
    rs.push_str("];\n");
    std::fs::write(out.join("policy.rs"), rs).expect("write policy.rs");
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

/// The release `engine-delta` installs: `delta-old.img` (1.0.0, 16 KiB, in ACTIVE at the first
/// power-on: the precursor), `delta-new.img` (2.0.0: the precursor rebuilt with 300 bytes inserted
/// at a third, so everything after moves, and 60 bytes changed), `delta.patch` (the detools
/// sequential patch, heatshrink, that turns the one into the other) and `delta.suit` (its
/// envelope: the precursor's digest and size, sequence 2, payload URI `image`), signed with the
/// key and identities of [`release`].
fn delta_release(out: &std::path::Path) {
    use delta_patch::Compression;
    use suit_manifest::builder::{self, ComponentSpec, DeltaSpec, ManifestSpec};
    const OLD_LEN: usize = 16 * 1024;

    let key = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("a valid fixed key");
    let vendor = builder::uuid_for("otafleet.example", None);
    let class = builder::uuid_for("qemu-mps2-an386", Some(&vendor));
    let old = image("1.0.0", OLD_LEN);
    let mut body = old[64..].to_vec();
    let at = body.len() / 3;
    let inserted: Vec<u8> = old[64..364].iter().map(|b| b.rotate_left(3)).collect();
    let tail = body.split_off(at);
    body.extend(inserted);
    body.extend(tail);
    body[2 * at..2 * at + 60].fill(0x5a);
    let mut new = image("2.0.0", 64 + body.len())[..64].to_vec();
    new.extend_from_slice(&body);
    let patch = delta_patch::create_patch(&old, &new, Compression::HEATSHRINK);

    let mut component = ComponentSpec::for_image(&new, vendor, class);
    component.uri = Some("image".into());
    component.version = Some("2.0.0".into());
    let mut spec = ManifestSpec::new(2, component);
    spec.delta = Some(DeltaSpec::detools_from(&old));
    let envelope = builder::signed_envelope(&spec, &key, suit_manifest::Algorithm::Esp256)
        .expect("build the delta envelope");
    let write = |name: &str, bytes: &[u8]| std::fs::write(out.join(name), bytes).expect(name);
    write("delta-old.img", &old);
    write("delta-new.img", &new);
    write("delta.patch", &patch);
    write("delta.suit", &envelope);
}

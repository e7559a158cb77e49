//! Links the firmware for mps2-an386 and embeds the SUIT test vectors it verifies. The vectors live
//! beside the repo (../shared/vectors, never copied into it): when they are missing the build fails
//! under CI (CI=true) and otherwise builds a binary that prints a notice and skips.

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

//! Test helpers: the shared SUIT vectors live beside the repo in `../shared/vectors/suit`, never in
//! it. When the folder is missing a test fails under CI (CI=true) and otherwise skips with a notice.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn vectors() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/suit");
    if dir.join("expected.json").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but the shared SUIT vectors are missing at {}",
            dir.display()
        );
    }
    eprintln!(
        "NOTICE: skipped, the shared SUIT vectors are not at {}",
        dir.display()
    );
    None
}

pub fn read(dir: &std::path::Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn spec_anchor(dir: &std::path::Path) -> suit_manifest::TrustAnchor {
    let sec1 = hex(&String::from_utf8(read(dir, "spec/public_key.sec1.hex")).unwrap());
    suit_manifest::TrustAnchor::from_sec1(&sec1).unwrap()
}

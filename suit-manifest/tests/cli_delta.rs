//! `suit create --delta-from` end to end: the patch it writes applies with Python `detools
//! apply_patch`, a patch made by detools is accepted (and a wrong one refused) with `--patch`, and
//! `suit show` prints the precursor.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

#[allow(dead_code)] // libcoap is for the CoAP interop tests
#[path = "../../lwm2m-server/tests/support/peers/lookup.rs"]
mod lookup;

fn detools() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/detools");
    lookup::peer_tool("detools (Python, in the venv)", path)
}

fn suit(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suit"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Firmware-like bytes (a small instruction vocabulary), and a rebuild with a change inside.
fn images() -> (Vec<u8>, Vec<u8>) {
    let old: Vec<u8> = (0..20_000u32)
        .map(|i| {
            [0x46, 0x0a, 0x68, 0xbd, 0x10][(i.wrapping_mul(2_654_435_761) >> 29) as usize % 5]
                ^ (i / 999) as u8
        })
        .collect();
    let mut new = old.clone();
    new.splice(
        7_000..7_100,
        b"a new function, and some of its literal pool ".repeat(4),
    );
    (old, new)
}

const CREATE: &[&str] = &[
    "create",
    "--image",
    "new.bin",
    "--delta-from",
    "old.bin",
    "--vendor-id",
    "example.com",
    "--class-id",
    "board",
    "--sequence",
    "3",
    "--uri",
    "image",
    "--key",
    "k.pem",
    "-o",
    "d.suit",
];

#[test]
fn delta_create_show_and_detools_interop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (old, new) = images();
    std::fs::write(dir.join("old.bin"), &old).unwrap();
    std::fs::write(dir.join("new.bin"), &new).unwrap();
    ok(suit(dir, &["keygen", "-o", "k.pem"]));

    let printed = ok(suit(
        dir,
        &[CREATE, &["--patch-out", "ours.patch"]].concat(),
    ));
    assert!(printed.contains("ours.patch"), "{printed}");
    let patch = std::fs::read(dir.join("ours.patch")).unwrap();
    assert!(
        patch.len() * 4 < new.len(),
        "a small change gives a small patch: {}",
        patch.len()
    );

    let shown = ok(suit(
        dir,
        &["show", "--json", "--key", "k.pub.pem", "d.suit"],
    ));
    let doc: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(doc["precursor"]["image_digest"], hex(&Sha256::digest(&old)));
    assert_eq!(doc["precursor"]["image_size"], old.len());
    assert_eq!(doc["components"][0]["payload_format"], "detools-sequential");
    assert_eq!(
        doc["components"][0]["image_digest"],
        hex(&Sha256::digest(&new))
    );
    let text = ok(suit(dir, &["show", "d.suit"]));
    assert!(text.contains("precursor     sha-256:"), "{text}");
    ok(suit(
        dir,
        &[
            "verify",
            "--key",
            "k.pub.pem",
            "--image",
            "new.bin",
            "d.suit",
        ],
    ));

    let Some(detools) = detools() else { return };
    // Ours applies with detools, byte-exact.
    let applied = Command::new(&detools)
        .current_dir(dir)
        .args(["apply_patch", "old.bin", "ours.patch", "out.bin"])
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert!(std::fs::read(dir.join("out.bin")).unwrap() == new);
    // detools' is accepted with --patch and written out as is.
    let made = Command::new(&detools)
        .current_dir(dir)
        .args([
            "create_patch",
            "--patch-type",
            "sequential",
            "--compression",
            "heatshrink",
        ])
        .args(["old.bin", "new.bin", "theirs.patch"])
        .output()
        .unwrap();
    assert!(made.status.success());
    ok(suit(
        dir,
        &[
            CREATE,
            &["--patch", "theirs.patch", "--patch-out", "out.patch"],
        ]
        .concat(),
    ));
    assert_eq!(
        std::fs::read(dir.join("out.patch")).unwrap(),
        std::fs::read(dir.join("theirs.patch")).unwrap()
    );
    // A patch of another pair is refused before anything is signed, with a one-line reason.
    std::fs::write(dir.join("other.bin"), b"not the old image").unwrap();
    let args = [
        &CREATE[..4],
        &["other.bin"],
        &CREATE[5..16],
        &[
            "wrong.suit",
            "--patch",
            "theirs.patch",
            "--patch-out",
            "x.patch",
        ],
    ]
    .concat();
    let refused = suit(dir, &args);
    assert!(!refused.status.success());
    let err = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("theirs.patch"), "{err}");
    assert!(!dir.join("wrong.suit").exists());
}

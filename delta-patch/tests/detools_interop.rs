//! Interop with the Python `detools` package (0.53, in the venv that scripts/setup.sh makes):
//! its sequential patches apply byte-exact on our applier, and ours with `detools apply_patch`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use delta_patch::{Compression, PatchError, create_patch};
use support::{apply_in_blocks, pairs, patch_error};

#[allow(dead_code)] // libcoap is for the CoAP interop tests
#[path = "../../lwm2m-server/tests/support/peers/lookup.rs"]
mod lookup;

fn detools() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/detools");
    lookup::peer_tool("detools (Python, in the venv)", path)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `detools create_patch --patch-type sequential` with extra arguments, on files in `dir`.
fn detools_patch(tool: &Path, dir: &Path, old: &[u8], new: &[u8], args: &[&str]) -> Vec<u8> {
    let (o, n, p) = (dir.join("old"), dir.join("new"), dir.join("patch"));
    std::fs::write(&o, old).unwrap();
    std::fs::write(&n, new).unwrap();
    run(Command::new(tool)
        .args(["create_patch", "--patch-type", "sequential"])
        .args(args)
        .args([&o, &n, &p]));
    std::fs::read(p).unwrap()
}

#[test]
fn detools_patches_apply_byte_exact() {
    let Some(tool) = detools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let settings: [&[&str]; 3] = [
        &["--compression", "heatshrink"],
        &["--compression", "none"],
        &[
            "--compression",
            "heatshrink",
            "--heatshrink-window-sz2",
            "6",
            "--heatshrink-lookahead-sz2",
            "4",
        ],
    ];
    for (name, old, new) in pairs() {
        for args in settings {
            let patch = detools_patch(&tool, dir, &old, &new, args);
            for block in [1, 7, 64, 1024] {
                let rebuilt = apply_in_blocks(&old, &patch, block)
                    .unwrap_or_else(|e| panic!("{name} {args:?} in blocks of {block}: {e}"));
                assert!(
                    rebuilt == new,
                    "{name} {args:?} in blocks of {block}: wrong image"
                );
            }
        }
    }
}

#[test]
fn our_patches_apply_with_detools() {
    let Some(tool) = detools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (o, p, n) = (dir.join("old"), dir.join("patch"), dir.join("new"));
    for (name, old, new) in pairs() {
        for compression in [Compression::HEATSHRINK, Compression::None] {
            let patch = create_patch(&old, &new, compression);
            std::fs::write(&o, &old).unwrap();
            std::fs::write(&p, &patch).unwrap();
            run(Command::new(&tool).arg("apply_patch").args([&o, &p, &n]));
            let rebuilt = std::fs::read(&n).unwrap();
            assert!(
                rebuilt == new,
                "{name} {compression:?}: detools rebuilt another image"
            );
            // And our own applier agrees.
            assert!(apply_in_blocks(&old, &patch, 100).unwrap() == new, "{name}");
        }
    }
}

/// What the device cannot decode is refused at the header, before any byte is written.
#[test]
fn lzma_and_large_windows_are_refused() {
    let Some(tool) = detools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, old, new) = pairs().swap_remove(0);
    let lzma = detools_patch(&tool, dir, &old, &new, &["--compression", "lzma"]);
    let e = apply_in_blocks(&old, &lzma, 64).unwrap_err();
    assert_eq!(patch_error(e), PatchError::Compression(1));
    let wide = detools_patch(
        &tool,
        dir,
        &old,
        &new,
        &[
            "--compression",
            "heatshrink",
            "--heatshrink-window-sz2",
            "10",
        ],
    );
    let e = apply_in_blocks(&old, &wide, 64).unwrap_err();
    assert_eq!(
        patch_error(e),
        PatchError::HeatshrinkParams {
            window_bits: 10,
            lookahead_bits: 7
        }
    );
}

/// Our patch is no larger than detools' on the typical rebuild (the bench measures real firmware).
#[test]
fn our_patch_is_as_small_as_detools() {
    let Some(tool) = detools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, old, new) = pairs().swap_remove(0);
    let theirs = detools_patch(&tool, dir, &old, &new, &["--compression", "heatshrink"]);
    let ours = create_patch(&old, &new, Compression::HEATSHRINK);
    assert!(
        ours.len() * 100 <= theirs.len() * 110,
        "ours {} vs detools {}",
        ours.len(),
        theirs.len()
    );
    assert!(
        ours.len() * 5 < new.len(),
        "a rebuild patch must be small: {}",
        ours.len()
    );
}

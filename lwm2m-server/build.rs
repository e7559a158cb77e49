//! Puts the git commit the binary is built from into `OTAFLEET_GIT_COMMIT` (for `--version`).
//! Outside a git checkout, or without git, it is `OTAFLEET_GIT_COMMIT` from the build's
//! environment if set (a packager building from a tarball), else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=OTAFLEET_GIT_COMMIT");
    let commit = std::env::var("OTAFLEET_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=OTAFLEET_GIT_COMMIT={commit}");
    // Build again when HEAD moves: HEAD itself (a checkout), the branch it points at (a
    // commit), and packed-refs (a gc). A worktree's files are found by `--git-path`. Only files
    // that exist are named: cargo would rebuild every time for a missing one.
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

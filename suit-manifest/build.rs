//! Builds Emil Lenngren's P-256 for Cortex-M4 (MIT, vendored in `p256-cortex-m4/`) when the
//! target is a bare-metal ARMv7E-M or ARMv8-M Mainline core, with only what signature
//! verification needs: `verify` and point decoding. Everything else (sign, keygen, ECDH, the
//! base-point table of the fast fixed-base multiplication) is compiled out, which is what makes
//! this verifier small (see README "Footprint"). On every other target nothing is built and the
//! crate verifies with the `p256` crate.
//!
//! The C compiler: `CC_<target>` or `TARGET_CC` if set (cc's usual variables), else
//! `arm-none-eabi-gcc` when it is on PATH, else `clang` (scripts/setup.sh installs one of them).
//! Both compile the same sources against `c-include/`, which declares the two libc functions the
//! C file calls (`memcpy`, `memset`; compiler_builtins provides them at link time), so no libc
//! headers are needed. The assembly goes through GNU as whichever compiler it is ([`assemble`]).

use std::env;
use std::path::{Path, PathBuf};

/// The `include_*` switches of `p256-cortex-m4-config.h` and their values for a verify-only build.
const CONFIG: &[(&str, &str)] = &[
    ("include_p256_verify", "1"),
    // TrustAnchor::from_sec1 decodes and validates the key (on the curve, coordinates < p).
    ("include_p256_decode_point", "1"),
    ("include_p256_decompress_point", "1"),
    ("include_p256_sign", "0"),
    ("include_p256_keygen", "0"),
    ("include_p256_ecdh", "0"),
    ("include_p256_raw_scalarmult_generic", "0"),
    ("include_p256_raw_scalarmult_base", "0"),
    ("include_p256_to_octet_string_uncompressed", "0"),
    ("include_p256_to_octet_string_compressed", "0"),
    ("include_p256_to_octet_string_hybrid", "0"),
    // Squaring through the multiplication routine: about 500 bytes less code for a few percent
    // more time per verification, which runs once per update.
    ("use_mul_for_sqr", "1"),
];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(p256_asm)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=p256-cortex-m4");
    println!("cargo::rerun-if-changed=c-include");
    let target = env::var("TARGET").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // Cargo.toml leaves out the `p256` crate on exactly these targets (arm, os none).
    if arch != "arm" || os != "none" {
        return;
    }
    // UMAAL and the Thumb-2 the assembly uses: Cortex-M4/M7 (v7E-M) and Cortex-M33 (v8-M Main).
    if !(target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main")) {
        panic!(
            "suit-manifest: the bare-metal P-256 verifier needs an ARMv7E-M or ARMv8-M Mainline \
             core (thumbv7em-*, thumbv8m.main-*), not {target}"
        );
    }
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let src = dir.join("p256-cortex-m4");
    let mut build = cc::Build::new();
    build
        .file(src.join("p256-cortex-m4.c"))
        .include(dir.join("c-include"))
        .include(&src)
        .flag("-std=c11")
        .flag("-ffreestanding")
        // The same code in every profile: small, and fast enough (the hot loops are assembly).
        .opt_level_str("s")
        .warnings(false);
    for (name, value) in CONFIG {
        build.define(name, *value);
    }
    if !has_compiler_override(&target) {
        build.compiler(if on_path("arm-none-eabi-gcc") {
            "arm-none-eabi-gcc"
        } else {
            "clang"
        });
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    build.object(assemble(
        &build,
        &src.join("p256-cortex-m4-asm-gcc.S"),
        &out,
        &target,
    ));
    build.compile("p256_cortex_m4");
    println!("cargo::rustc-cfg=p256_asm");
}

/// Preprocesses the assembly with the C compiler (same defines and target flags as the C file)
/// and assembles it with GNU as (`arm-none-eabi-as`, from binutils-arm-none-eabi). Not clang's
/// integrated assembler: it encodes the source's single-register `ldm`/`stm` as 32-bit LDM/STM
/// with one register, which ARMv7-M makes UNPREDICTABLE (QEMU faults on it); GNU as writes the
/// equivalent LDR/STR, as the source expects.
fn assemble(build: &cc::Build, source: &Path, out: &Path, target: &str) -> PathBuf {
    let preprocessed = out.join("p256-cortex-m4-asm.s");
    let object = out.join("p256-cortex-m4-asm.o");
    let mut cpp = build.get_compiler().to_command();
    cpp.args(["-E", "-x", "assembler-with-cpp"])
        .arg(source)
        .arg("-o")
        .arg(&preprocessed);
    run(&mut cpp, "preprocess the P-256 assembly");
    let arch: &[&str] = if target.starts_with("thumbv8m.main") {
        &["-march=armv8-m.main+dsp"]
    } else {
        &["-mcpu=cortex-m4"]
    };
    let float: &[&str] = if target.ends_with("eabihf") {
        &["-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
    } else {
        &["-mfloat-abi=soft"]
    };
    let mut gas = std::process::Command::new("arm-none-eabi-as");
    gas.args(["-mthumb"])
        .args(arch)
        .args(float)
        .arg(&preprocessed)
        .arg("-o")
        .arg(&object);
    run(
        &mut gas,
        "assemble the P-256 assembly (arm-none-eabi-as: install binutils-arm-none-eabi, \
         scripts/setup.sh does)",
    );
    object
}

fn run(command: &mut std::process::Command, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("suit-manifest: could not {what}: {command:?} exited with {status}"),
        Err(e) => panic!("suit-manifest: could not {what}: {command:?}: {e}"),
    }
}

/// Whether the environment names a compiler for this target (`CC_<target>`, `TARGET_CC`); a plain
/// `CC` is the host's and does not count.
fn has_compiler_override(target: &str) -> bool {
    let underscored = target.replace(['-', '.'], "_");
    [
        format!("CC_{target}"),
        format!("CC_{underscored}"),
        "TARGET_CC".into(),
    ]
    .iter()
    .any(|v| {
        println!("cargo::rerun-if-env-changed={v}");
        env::var_os(v).is_some()
    })
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|paths| {
        env::split_paths(&paths).any(|d: PathBuf| Path::new(&d).join(program).is_file())
    })
}

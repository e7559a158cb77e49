//! Links the nRF52840 application at ACTIVE's start (memory.x) and fixes its build-time settings
//! into `config.rs` in OUT_DIR:
//!
//! - `OTAFLEET_SERVER`: the LwM2M server, `[IPv6]:port` (default `[fd00::1]:5683`); the device takes
//!   an address in the same /64, so the server is on-link (no router needed).
//! - `OTAFLEET_TRUST_KEY`: the file with the release signing key's public half (SPKI PEM or SEC1
//!   hex, as `suit keygen` writes it). Without it the firmware trusts the development key
//!   (private scalar 0x42 × 32, the one the QEMU test signs with) and the build says so.
//! - `OTAFLEET_VENDOR` / `OTAFLEET_CLASS`: vendor and class ids, as `suit create` takes them
//!   (UUID, or a name turned into a UUIDv5); defaults `otafleet.example` / `nrf52840-dk`.
//! - `OTAFLEET_VERSION`: the version in the image header (default: the package version).
//! - `OTAFLEET_CHANNEL`: the 802.15.4 channel, 11..=26 (default 26; the default build's only: on
//!   Thread the dataset sets it).
//! - `OTAFLEET_THREAD_POLL_MS`: feature `thread` only: 0 (default) for an end device with its
//!   receiver on, else a sleepy end device polling its parent every that many milliseconds.
//!
//! On the host (clippy, tests) nothing is linked: the binary is a stub.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=memory.x");
    for var in [
        "OTAFLEET_SERVER",
        "OTAFLEET_TRUST_KEY",
        "OTAFLEET_VENDOR",
        "OTAFLEET_CLASS",
        "OTAFLEET_VERSION",
        "OTAFLEET_CHANNEL",
        "OTAFLEET_THREAD_POLL_MS",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.starts_with("thumb") {
        return; // host build: the binary is a stub
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let memory = std::fs::read_to_string("memory.x").expect("read memory.x");
    std::fs::write(out.join("memory.x"), &memory).expect("copy memory.x");
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rustc-link-arg-bins=-Tlink.x");

    let (origin, length) = flash_region(&memory);
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let server: SocketAddr = env("OTAFLEET_SERVER")
        .unwrap_or_else(|| "[fd00::1]:5683".into())
        .parse()
        .expect("OTAFLEET_SERVER must be [IPv6]:port");
    let SocketAddr::V6(server) = server else {
        panic!("OTAFLEET_SERVER must be an IPv6 address: the link is 6LoWPAN");
    };
    let trust = match env("OTAFLEET_TRUST_KEY") {
        Some(path) => {
            println!("cargo::rerun-if-changed={path}");
            let text = std::fs::read_to_string(&path).expect("read OTAFLEET_TRUST_KEY");
            let key = suit_manifest::keyfile::verifying_key_from_text(&text)
                .expect("OTAFLEET_TRUST_KEY must be a P-256 public key");
            key.to_sec1_point(false).as_bytes().to_vec()
        }
        None => {
            println!(
                "cargo::warning=nrf52840: OTAFLEET_TRUST_KEY not set, the firmware trusts the development signing key"
            );
            let dev = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("fixed key");
            dev.verifying_key().to_sec1_point(false).as_bytes().to_vec()
        }
    };
    let vendor_name = env("OTAFLEET_VENDOR").unwrap_or_else(|| "otafleet.example".into());
    let class_name = env("OTAFLEET_CLASS").unwrap_or_else(|| "nrf52840-dk".into());
    let vendor = suit_manifest::builder::uuid_for(&vendor_name, None);
    let class = suit_manifest::builder::uuid_for(&class_name, Some(&vendor));
    let version = env("OTAFLEET_VERSION")
        .unwrap_or_else(|| std::env::var("CARGO_PKG_VERSION").expect("cargo sets it"));
    assert!(
        version.len() <= 32,
        "OTAFLEET_VERSION is longer than 32 bytes"
    );
    let channel: u8 = env("OTAFLEET_CHANNEL")
        .map(|c| c.parse().expect("OTAFLEET_CHANNEL must be a number"))
        .unwrap_or(26);
    assert!(
        (11..=26).contains(&channel),
        "OTAFLEET_CHANNEL must be 11..=26"
    );

    let poll_ms: u32 = env("OTAFLEET_THREAD_POLL_MS")
        .map(|c| {
            c.parse()
                .expect("OTAFLEET_THREAD_POLL_MS must be a number of milliseconds")
        })
        .unwrap_or(0);

    let mut rs = String::new();
    let seg = server.ip().segments();
    writeln!(
        rs,
        "/// Where memory.x links the application (FLASH ORIGIN, LENGTH)."
    )
    .unwrap();
    writeln!(rs, "pub const LINKED_AT: u32 = {origin:#x};").unwrap();
    writeln!(rs, "pub const LINKED_LEN: u32 = {length:#x};").unwrap();
    writeln!(rs, "/// The LwM2M server ({server}).").unwrap();
    writeln!(
        rs,
        "pub const SERVER: core::net::SocketAddr = core::net::SocketAddr::V6(core::net::SocketAddrV6::new(core::net::Ipv6Addr::new({}), {}, 0, 0));",
        seg.map(|s| format!("{s:#x}")).join(", "),
        server.port()
    )
    .unwrap();
    writeln!(
        rs,
        "/// The release signing key's public half (SEC1, uncompressed)."
    )
    .unwrap();
    writeln!(
        rs,
        "pub const TRUST_SEC1: [u8; {}] = {:?};",
        trust.len(),
        trust
    )
    .unwrap();
    writeln!(rs, "/// Vendor id: `{vendor_name}`.").unwrap();
    writeln!(rs, "pub const VENDOR_ID: [u8; 16] = {vendor:?};").unwrap();
    writeln!(rs, "/// Class id: `{class_name}`.").unwrap();
    writeln!(rs, "pub const CLASS_ID: [u8; 16] = {class:?};").unwrap();
    writeln!(rs, "/// The version in this image's header.").unwrap();
    writeln!(rs, "pub const VERSION: &str = {version:?};").unwrap();
    writeln!(
        rs,
        "/// The 802.15.4 channel (the default build's; on Thread the dataset sets it)."
    )
    .unwrap();
    writeln!(
        rs,
        "#[allow(dead_code)]\npub const CHANNEL: u8 = {channel};"
    )
    .unwrap();
    writeln!(
        rs,
        "/// Thread: 0 for a receiver-on end device, else a sleepy one's poll period (ms)."
    )
    .unwrap();
    writeln!(
        rs,
        "#[allow(dead_code)]\npub const THREAD_POLL_MS: u32 = {poll_ms};"
    )
    .unwrap();
    std::fs::write(out.join("config.rs"), rs).expect("write config.rs");
}

/// FLASH's ORIGIN and LENGTH from memory.x (`ORIGIN = 0x..., LENGTH = nK`).
fn flash_region(memory: &str) -> (u32, u32) {
    let line = memory
        .lines()
        .find(|l| l.trim_start().starts_with("FLASH") && l.contains("ORIGIN"))
        .expect("memory.x has a FLASH region");
    let field = |name: &str| {
        let rest = line.split(name).nth(1).expect("field").trim_start();
        let rest = rest.trim_start_matches('=').trim_start();
        rest.split([',', ' ']).next().expect("value").to_string()
    };
    let origin = u32::from_str_radix(field("ORIGIN").trim_start_matches("0x"), 16).expect("hex");
    let length = field("LENGTH");
    let length = match length.strip_suffix('K') {
        Some(k) => k.parse::<u32>().expect("number") * 1024,
        None => length.parse().expect("number"),
    };
    (origin, length)
}

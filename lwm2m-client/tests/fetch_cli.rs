//! `lwm2m-client fetch`, the device's downloader on its own, against real CoAP servers: libcoap's
//! `coap-server-notls` (the file PUT into it) byte-exact with several block sizes and windows, and
//! the failures a user meets (a missing path, a bad block size) as a non-zero exit
//! with a message that says what to do.
//!
//! A missing peer tool fails the test when CI=true and otherwise skips it with a NOTICE.
#![cfg(feature = "std")]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::peers::{self, free_udp_port, libcoap, wait_up};

fn fetch(uri: &str, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .args(["fetch", uri, "--json", "-o"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_libcoap_server_is_byte_exact_and_failures_say_what_to_do() {
    let Some(server_bin) = libcoap("coap-server-notls") else {
        return;
    };
    let Some(client_bin) = libcoap("coap-client-notls") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut cmd = Command::new(server_bin);
    cmd.args(["-A", "127.0.0.1", "-p", &port.to_string(), "-d", "20"]);
    let server = peers::spawn(cmd, &dir.path().join("coap-server.log"));
    let peer = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        wait_up(peer, ".well-known/core", Duration::from_secs(10)).await,
        "coap-server-notls did not answer: {}",
        server.output()
    );
    // 40 000 bytes: not a multiple of any block size, so the last block is short.
    let image: Vec<u8> = (0..40_000u32).map(|i| (i * 31 + i / 977) as u8).collect();
    let file = dir.path().join("image.bin");
    std::fs::write(&file, &image).unwrap();
    let put = Command::new(client_bin)
        .args(["-m", "put", "-b", "1024", "-f"])
        .arg(&file)
        .arg(format!("coap://{peer}/fw/image"))
        .status()
        .unwrap();
    assert!(put.success());
    let want: String = Sha256::digest(&image)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let uri = format!("coap://{peer}/fw/image");
    for (block, window) in [("64", "16"), ("256", "4"), ("1024", "1")] {
        let out = dir.path().join(format!("out-{block}"));
        let o = fetch(&uri, &out, &["--block-size", block, "--window", window]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{block}×{window}: {stdout} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["bytes"], 40_000, "{v}");
        assert_eq!(
            v["sha256"],
            want.as_str(),
            "{block}: the JSON names the bytes' hash"
        );
        assert!(
            std::fs::read(&out).unwrap() == image,
            "{block}×{window}: bytes differ"
        );
    }

    // A path the server does not have: 4.04, a clear message, no success.
    let out = dir.path().join("missing");
    let o = fetch(&format!("coap://{peer}/fw/nothing"), &out, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("check the path"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);

    // A block size that is not a power of two: refused before anything is sent.
    let o = fetch(&uri, &out, &["--block-size", "100"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("power of two"));
}

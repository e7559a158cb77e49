//! The real server with real peers on loopback: libcoap's client (-b 64, 256, 1024) and aiocoap
//! fetch a release's image byte-identical, also from a release or a client prefix whose block size
//! is capped (the server answers a smaller SZX than asked, and libcoap follows), and a client made
//! of libcoap requests registers and is listed by `lwm2m-server clients`.

mod support;

use std::process::Command;

use sha2::{Digest, Sha256};
use support::peers::{aiocoap_get, libcoap, run, venv_python};
use testkit::{TOKEN, TestServer, image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_and_aiocoap_fetch_a_release_byte_identical() {
    let s = TestServer::start(|_| {}).await;
    let img = image(150_000, 1);
    let (rel, _) = s.server.repo.add_plain(&img, "3.1.4", 0).unwrap();
    let uri = format!("coap://{}/fw/{}/image", s.coap_addr(), rel.id);
    let want = Sha256::digest(&img);
    if let Some(client) = libcoap("coap-client-notls") {
        for size in [64, 256, 1024] {
            let out = s.scratch().join(format!("libcoap-{size}"));
            let mut cmd = Command::new(&client);
            cmd.args(["-m", "get", "-b", &size.to_string(), "-B", "80", "-o"])
                .arg(&out)
                .arg(&uri);
            let o = run(cmd).await;
            // libcoap's client exits 0 even on failure: judge by the bytes.
            let got = std::fs::read(&out).unwrap_or_default();
            assert_eq!(
                Sha256::digest(&got),
                want,
                "-b {size}: {} bytes; {}",
                got.len(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    if let Some(python) = venv_python() {
        let out = s.scratch().join("aiocoap");
        let o = run(aiocoap_get(&python, &uri, &out)).await;
        let got = std::fs::read(&out).unwrap_or_default();
        assert_eq!(
            Sha256::digest(&got),
            want,
            "aiocoap: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Fetches `uri` with libcoap's client asking for 1024-byte blocks; returns the bytes and the
/// block sizes the server served (from its download events).
async fn libcoap_1024(
    s: &TestServer,
    client: &std::path::Path,
    uri: &str,
    name: &str,
) -> (Vec<u8>, Vec<u32>) {
    let mut events = s.server.events.subscribe();
    let out = s.scratch().join(name);
    let mut cmd = Command::new(client);
    cmd.args(["-m", "get", "-b", "1024", "-B", "80", "-o"])
        .arg(&out)
        .arg(uri);
    run(cmd).await;
    let mut sizes = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let lwm2m_server::events::ServerEvent::Download { block_size, .. } = e {
            sizes.push(block_size);
        }
    }
    sizes.sort();
    sizes.dedup();
    (std::fs::read(&out).unwrap_or_default(), sizes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_release_or_prefix_serves_libcoap_smaller_blocks_than_asked_byte_exact() {
    let Some(client) = libcoap("coap-client-notls") else {
        return;
    };
    // A release capped at 256 bytes: `-b 1024` gets 256-byte blocks.
    let s = TestServer::start(|_| {}).await;
    let img = image(20_000, 2);
    let (rel, _) = s.server.repo.add_plain(&img, "3.1.5", 0).unwrap();
    s.server
        .repo
        .set_max_block_size(&rel.id, Some(256))
        .unwrap();
    assert!(
        s.server
            .repo
            .set_max_block_size(&rel.id, Some(100))
            .is_err()
    );
    assert_eq!(
        s.server
            .store
            .release(&rel.id)
            .unwrap()
            .unwrap()
            .max_block_size,
        Some(256)
    );
    let uri = format!("coap://{}/fw/{}/image", s.coap_addr(), rel.id);
    let (got, sizes) = libcoap_1024(&s, &client, &uri, "capped-release").await;
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&img),
        "{} bytes",
        got.len()
    );
    assert_eq!(sizes, [256]);
    // Uncapped again: 1024.
    s.server.repo.set_max_block_size(&rel.id, None).unwrap();
    let (got, sizes) = libcoap_1024(&s, &client, &uri, "uncapped").await;
    assert_eq!(Sha256::digest(&got), Sha256::digest(&img));
    assert_eq!(sizes, [1024]);

    // A prefix that holds the client (loopback) capped at 64, a release capped at 256: the
    // smaller wins.
    let s = TestServer::start(|c| {
        c.block_size_for = vec![
            "127.0.0.0/8=64".parse().unwrap(),
            "fd00::/8=512".parse().unwrap(),
        ];
    })
    .await;
    let (rel, _) = s.server.repo.add_plain(&img, "3.1.5", 0).unwrap();
    s.server
        .repo
        .set_max_block_size(&rel.id, Some(256))
        .unwrap();
    let uri = format!("coap://{}/fw/{}/image", s.coap_addr(), rel.id);
    let (got, sizes) = libcoap_1024(&s, &client, &uri, "capped-prefix").await;
    assert_eq!(Sha256::digest(&got), Sha256::digest(&img));
    assert_eq!(sizes, [64]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_add_max_block_size_caps_a_release_and_refuses_a_bad_size() {
    let s = TestServer::start(|_| {}).await;
    let path = s.scratch().join("plain.bin");
    std::fs::write(&path, image(3000, 3)).unwrap();
    let bin = env!("CARGO_BIN_EXE_lwm2m-server");
    let add = |size: &str| {
        let mut c = Command::new(bin);
        c.args([
            "--url", &s.http, "--token", TOKEN, "--json", "firmware", "add", "--plain",
        ])
        .arg(&path)
        .args(["--version", "1.2.3", "--max-block-size", size]);
        c
    };
    let out = run(add("128")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["release"]["max_block_size"], 128);
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.server.store.release(&id).unwrap().unwrap().max_block_size,
        Some(128)
    );
    // Again with another cap: the existing release changes its cap.
    let out = run(add("512")).await;
    assert!(out.status.success());
    assert_eq!(
        s.server.store.release(&id).unwrap().unwrap().max_block_size,
        Some(512)
    );
    let out = run(add("100")).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("power of two") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        s.server.store.release(&id).unwrap().unwrap().max_block_size,
        Some(512)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libcoap_registration_is_listed_by_the_clients_command() {
    let s = TestServer::start(|_| {}).await;
    let Some(client) = libcoap("coap-client-notls") else {
        return;
    };
    let mut cmd = Command::new(&client);
    cmd.args([
        "-m",
        "post",
        "-t",
        "40",
        "-e",
        "</1/0>,</3/0>,</5/0>",
        "-B",
        "10",
    ])
    .arg(format!(
        "coap://{}/rd?ep=libcoap-device&lt=120&lwm2m=1.1&b=U",
        s.coap_addr()
    ));
    run(cmd).await;
    let reg = s.server.registry.get("libcoap-device").expect("registered");
    assert_eq!(reg.lifetime_s, 120);
    assert!(reg.has_object(5));
    let bin = env!("CARGO_BIN_EXE_lwm2m-server");
    let out = run({
        let mut c = Command::new(bin);
        c.args(["clients", "--json", "--url", &s.http, "--token", TOKEN]);
        c
    })
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["endpoint"], "libcoap-device");
    // The same command with a wrong token fails with a one-line reason.
    let out = run({
        let mut c = Command::new(bin);
        c.args(["clients", "--url", &s.http, "--token", "wrong"]);
        c
    })
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the admin token") && err.lines().count() == 1,
        "{err}"
    );
}

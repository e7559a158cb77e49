//! The real server with real peers on loopback: libcoap's client (-b 64, 256, 1024) and aiocoap
//! fetch a release's image byte-identical, and a client made of libcoap requests registers and is
//! listed by `lwm2m-server clients`.

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

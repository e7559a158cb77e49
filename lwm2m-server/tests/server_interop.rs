//! The real server with real peers on loopback: libcoap's client (-b 64, 256, 1024) and aiocoap
//! fetch a release's image byte-identical, and a client made of libcoap requests registers and is
//! listed by `lwm2m-server clients`.

mod peers;

use std::process::Command;
use std::sync::Arc;

use lwm2m_server::clock::SystemClock;
use lwm2m_server::server::{Server, ServerConfig};
use peers::{aiocoap_get, libcoap, run, venv_python};
use sha2::{Digest, Sha256};

const TOKEN: &str = "interop-token";

async fn start() -> (Arc<Server>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let config = ServerConfig::new(dir.path().to_path_buf(), format!("coap://{addr}"));
    let server = Server::start(socket, config, Arc::new(SystemClock))
        .await
        .unwrap();
    let app = lwm2m_server::api::router(server.clone(), TOKEN, 8 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (server, http, dir)
}

fn image(len: usize) -> Vec<u8> {
    let mut x = 0x1234_5678u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_and_aiocoap_fetch_a_release_byte_identical() {
    let (server, _http, dir) = start().await;
    let img = image(150_000);
    let (rel, _) = server.repo.add_plain(&img, "3.1.4", 0).unwrap();
    let uri = format!("coap://{}/fw/{}/image", server.coap_addr(), rel.id);
    let want = Sha256::digest(&img);
    if let Some(client) = libcoap("coap-client-notls") {
        for size in [64, 256, 1024] {
            let out = dir.path().join(format!("libcoap-{size}"));
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
        let out = dir.path().join("aiocoap");
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
    let (server, http, _dir) = start().await;
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
        server.coap_addr()
    ));
    run(cmd).await;
    let reg = server.registry.get("libcoap-device").expect("registered");
    assert_eq!(reg.lifetime_s, 120);
    assert!(reg.has_object(5));
    let bin = env!("CARGO_BIN_EXE_lwm2m-server");
    let out = run({
        let mut c = Command::new(bin);
        c.args(["clients", "--json", "--url", &http, "--token", TOKEN]);
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
        c.args(["clients", "--url", &http, "--token", "wrong"]);
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

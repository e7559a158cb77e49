//! The device engine pulls a signed release from third-party CoAP servers, byte-exact: libcoap's
//! `coap-server-notls` (resources created with `coap-client-notls` PUTs) and aiocoap's file
//! server. A scripted LwM2M server registers the device and writes the Package URI; the engine
//! fetches the SUIT manifest and then the image with 64-byte Block2 requests, verifies both and
//! ends in State Downloaded with the image in its staging slot.
//!
//! A missing peer tool fails the test when CI=true and otherwise skips it with a NOTICE.
#![cfg(feature = "std")]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use lwm2m_client::engine::Event;
use lwm2m_core::object5::{State, UpdateResult};
use support::device;
use support::peers::{self, free_udp_port, libcoap, run, wait_up};
use testkit::release;

/// The scripted LwM2M server writes `manifest_uri` to the device and waits (polling GET /5/0/3)
/// for State Downloaded; then the staging slot must hold `image` exactly.
async fn engine_pulls(
    label: &str,
    manifest_uri: &str,
    image: &[u8],
    key: &p256::ecdsa::SigningKey,
) {
    let (mut lw, dev, at) = device::udp_device_told_to_pull(key, manifest_uri).await;
    let downloaded = lw
        .poll_state(at, 2, Duration::from_millis(100), Duration::from_secs(60))
        .await;
    let (state, result) = lw.object5(at).await;
    let uri = lw.read(at, "5/0/1").await;
    let version = lw.read(at, "5/0/7").await;
    let mut stopped = dev.stop().await;
    let fw: Vec<_> = stopped
        .events
        .iter()
        .filter(|e| matches!(e, Event::Firmware { .. }))
        .cloned()
        .collect();
    assert!(downloaded, "{label}: State never became Downloaded; {fw:?}");
    assert_eq!((state, result), (2, 0), "{label}");
    assert_eq!(uri, manifest_uri, "{label}: /5/0/1 reads back");
    assert_eq!(version, "2.0.0", "{label}: /5/0/7 from the manifest text");
    assert_eq!(
        fw,
        vec![
            Event::Firmware {
                state: State::Downloading,
                result: UpdateResult::Initial
            },
            Event::Firmware {
                state: State::Downloaded,
                result: UpdateResult::Initial
            },
        ],
        "{label}"
    );
    // One Progress event per block with new bytes: each further than the one before, the last
    // at the end of the image.
    let progress: Vec<u32> = stopped
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { bytes, total } => {
                assert_eq!(*total as usize, image.len());
                Some(*bytes)
            }
            _ => None,
        })
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "{label}: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&(image.len() as u32)), "{label}");
    let platform = stopped.platform();
    assert!(
        platform.slot[image.len()..].iter().all(|&b| b == 0xff),
        "{label}: nothing past the image"
    );
    assert!(
        platform.staged(image.len()) == image,
        "{label}: the staged image differs from the served one"
    );
    let rec = platform.record.expect("a record was saved");
    assert_eq!(
        (rec.state, rec.result),
        (State::Downloaded, UpdateResult::Initial)
    );
    assert_eq!(
        rec.staged.map(|s| s.sequence),
        Some(3),
        "{label}: staged release recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_pulls_a_release_from_libcoap_server_byte_exact() {
    let Some(server_bin) = libcoap("coap-server-notls") else {
        return;
    };
    let Some(client_bin) = libcoap("coap-client-notls") else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        let port = free_udp_port();
        let mut cmd = Command::new(server_bin);
        cmd.args(["-A", "127.0.0.1", "-p", &port.to_string(), "-d", "20"]);
        let logs = tempfile::tempdir().unwrap();
        let server = peers::spawn(cmd, &logs.path().join("coap-server.log"));
        let peer = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            wait_up(peer, ".well-known/core", Duration::from_secs(10)).await,
            "coap-server-notls did not answer: {}",
            server.output()
        );

        let key = release::key();
        let image = release::image(20_000, 1);
        // The manifest names the image by an absolute URI on the third-party server.
        let envelope = release::envelope(
            &key,
            &image,
            3,
            &format!("coap://127.0.0.1:{port}/fw/image"),
        );
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [("image", &image), ("manifest", &envelope)] {
            let file = dir.path().join(name);
            std::fs::write(&file, bytes).unwrap();
            let mut put = Command::new(&client_bin);
            put.args(["-m", "put", "-b", "1024", "-B", "20", "-f"])
                .arg(&file)
                .arg(format!("coap://127.0.0.1:{port}/fw/{name}"));
            let out = run(put).await;
            assert!(
                out.status.success(),
                "coap-client PUT {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // libcoap itself serves back what was PUT (so a mismatch below is the engine's).
        let back = dir.path().join("readback");
        let mut get = Command::new(&client_bin);
        get.args(["-m", "get", "-b", "512", "-B", "20", "-o"])
            .arg(&back)
            .arg(format!("coap://127.0.0.1:{port}/fw/image"));
        run(get).await;
        assert_eq!(std::fs::read(&back).unwrap_or_default(), image);

        engine_pulls(
            "libcoap",
            &format!("coap://127.0.0.1:{port}/fw/manifest"),
            &image,
            &key,
        )
        .await;
    })
    .await
    .expect("libcoap interop test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_pulls_a_release_from_aiocoap_fileserver_byte_exact() {
    let Some(python) = peers::venv_bin("python") else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        let port = free_udp_port();
        let dir = tempfile::tempdir().unwrap();
        let key = release::key();
        let image = release::image(20_000, 2);
        // One manifest with an absolute image URI, one with a relative reference ("image",
        // resolved against the manifest's URI as RFC 3986 §5 says).
        let absolute =
            release::envelope(&key, &image, 3, &format!("coap://127.0.0.1:{port}/image"));
        let relative = release::envelope(&key, &image, 3, "image");
        std::fs::write(dir.path().join("image"), &image).unwrap();
        std::fs::write(dir.path().join("manifest"), &absolute).unwrap();
        std::fs::write(dir.path().join("manifest-rel"), &relative).unwrap();

        // aiocoap's file server (the `aiocoap-fileserver` program), serving the directory with
        // Block2 and stat-based ETags.
        let mut cmd = Command::new(python);
        cmd.arg("-c")
            .arg(
                "import sys\n\
                 from aiocoap.cli.fileserver import FileServerProgram\n\
                 sys.argv[0] = 'aiocoap-fileserver'\n\
                 sys.exit(FileServerProgram.sync_main())",
            )
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .arg(dir.path());
        let logs = tempfile::tempdir().unwrap();
        let server = peers::spawn(cmd, &logs.path().join("aiocoap.log"));
        let peer = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            wait_up(peer, "image", Duration::from_secs(20)).await,
            "aiocoap-fileserver did not answer: {}",
            server.output()
        );

        engine_pulls(
            "aiocoap (absolute image URI)",
            &format!("coap://127.0.0.1:{port}/manifest"),
            &image,
            &key,
        )
        .await;
        engine_pulls(
            "aiocoap (relative image URI)",
            &format!("coap://127.0.0.1:{port}/manifest-rel"),
            &image,
            &key,
        )
        .await;
    })
    .await
    .expect("aiocoap interop test timed out");
}

//! The device engine against the real lwm2m-server over UDP on loopback, on a RAM platform: it
//! registers, the server's update job makes it pull the SUIT manifest and then the image, Update
//! hands over to a (simulated) reboot, and the new image reports Result 1 and its version. Bad
//! releases end Idle with the right Update Result and, when the manifest is at fault, without a
//! single image block requested.
#![cfg(feature = "std")]

mod support;

use std::time::Duration;

use heapless::String;
use lwm2m_client::engine::{Config, Engine, Event};
use lwm2m_client::host::{self, Clock, Exit};
use lwm2m_client::platform::{BootInfo, BootOutcome, FirmwareRecord};
use lwm2m_core::object5::{State, UpdateResult};
use support::platform::RamPlatform;
use testkit::TestServer;
use testkit::device::config;
use testkit::release::{self, component};

async fn start_server() -> TestServer {
    TestServer::start(|c| c.jobs.update_timeout = Duration::from_secs(20)).await
}

/// A release of `image` for another class than the device's.
fn other_class_release(
    s: &TestServer,
    image: &[u8],
    seq: u64,
    version: &str,
) -> std::string::String {
    let mut comp = component(image, "image", version);
    comp.class_id = [9; 16];
    s.add_envelope(&release::envelope_of(&s.key, seq, comp), image)
}

/// Runs one "boot" of the device until it asks for a reboot or `stop` says so.
async fn boot(
    cfg: Config,
    platform: RamPlatform,
    outcome: BootOutcome,
    version: &str,
    socket: &tokio::net::UdpSocket,
    limit: Duration,
) -> (Option<Exit>, Engine<RamPlatform>, Vec<Event>) {
    let record = platform.record.clone();
    let clock = Clock::new();
    // A new seed per boot, as a device's RNG gives: the server deduplicates by message id.
    static BOOTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let cfg = Config {
        seed: BOOTS.fetch_add(0x9e37, std::sync::atomic::Ordering::Relaxed) ^ 0x1234_5678,
        ..cfg
    };
    let mut engine = Engine::new(
        cfg,
        platform,
        BootInfo {
            record,
            outcome,
            running_version: String::try_from(version).unwrap(),
        },
        clock.now(),
    );
    let mut events = Vec::new();
    let exit = tokio::time::timeout(
        limit,
        host::run(&mut engine, socket, &clock, |e| {
            events.push(e.clone());
            std::ops::ControlFlow::Continue(())
        }),
    )
    .await
    .ok();
    (exit, engine, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_updates_itself_from_the_real_server() {
    update_from_the_real_server(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_four_block_requests_gives_the_same_image() {
    update_from_the_real_server(4).await;
}

async fn update_from_the_real_server(window: u8) {
    let s = start_server().await;
    let image = testkit::image(20_000, 1);
    let rel = s.add_release(&image, 3, "2.0.0");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = Config {
        window,
        ..config("engine-1", s.coap_addr(), &s.trust())
    };
    // First boot: register; the job starts as soon as the server knows the device.
    let server = s.server.clone();
    let rel2 = rel.clone();
    let starter = tokio::spawn(async move {
        for _ in 0..200 {
            if server.registry.get("engine-1").is_some() {
                return server.jobs.start(&rel2, &["engine-1".into()]).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never registered");
    });
    let (exit, engine, events) = boot(
        cfg.clone(),
        RamPlatform::default(),
        BootOutcome::Normal,
        "1.0.0",
        &socket,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(exit, Some(Exit::Reboot), "{events:?}");
    let job = starter.await.unwrap();
    let mut platform = engine_into_platform(engine);
    assert!(
        platform.marked,
        "Update marked the staged image for a trial boot"
    );
    assert_eq!(
        &platform.slot[..image.len()],
        &image[..],
        "the staged image is byte-exact"
    );
    assert!(
        events.contains(&Event::Firmware {
            state: State::Downloaded,
            result: UpdateResult::Initial
        }),
        "{events:?}"
    );
    // The reboot: the bootloader swaps, the new image passes its self-test and confirms.
    platform.marked = false;
    let (_exit, engine, _events) = boot(
        cfg,
        platform,
        BootOutcome::Confirmed,
        "2.0.0",
        &socket,
        Duration::from_secs(3),
    )
    .await;
    let v = s.finished(job).await;
    assert_eq!(v.status, "succeeded", "{v:?}");
    assert_eq!(
        (engine.state(), engine.result()),
        (State::Idle, UpdateResult::Success)
    );
    assert_eq!(v.devices[0].pkg_version.as_deref(), Some("2.0.0"));

    // A second update on the rebooted device: it downloads and stages 3.0.0 as well.
    let image3 = testkit::image(9_000, 3);
    let rel3 = s.add_release(&image3, 4, "3.0.0");
    let platform = engine_into_platform(engine);
    let server = s.server.clone();
    let starter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.jobs.start(&rel3, &["engine-1".into()]).unwrap()
    });
    let (exit, engine, events) = boot(
        Config {
            window,
            ..config("engine-1", s.coap_addr(), &s.trust())
        },
        platform,
        BootOutcome::Normal,
        "2.0.0",
        &socket,
        Duration::from_secs(30),
    )
    .await;
    starter.await.unwrap();
    assert_eq!(
        exit,
        Some(Exit::Reboot),
        "the second update reached Update: {events:?}"
    );
    let mut engine = engine;
    assert_eq!(&engine.platform().slot[..image3.len()], &image3[..]);
}

fn engine_into_platform(mut e: Engine<RamPlatform>) -> RamPlatform {
    std::mem::take(e.platform())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_end_idle_with_the_right_result_and_no_image_block() {
    let s = start_server().await;
    let image = vec![0x5au8; 3000];
    // Another class: Result 6. A lower sequence number: Result 6. A device that trusts another key:
    // Result 5. An image larger than the slot: Result 2.
    let other_class = other_class_release(&s, &image, 5, "9.9.9");
    let big = vec![1u8; 70_000];
    let too_big = s.add_release(&big, 6, "9.9.8");
    let stranger = release::key();
    let mut served = s.server.events.subscribe();
    for (name, rel, trust, accepted, want) in [
        (
            "class",
            other_class.clone(),
            s.key.clone(),
            0,
            UpdateResult::UnsupportedPackage,
        ),
        (
            "rollback",
            other_class.clone(),
            s.key.clone(),
            99,
            UpdateResult::UnsupportedPackage,
        ),
        (
            "key",
            other_class.clone(),
            stranger.clone(),
            0,
            UpdateResult::IntegrityFailure,
        ),
        (
            "size",
            too_big.clone(),
            s.key.clone(),
            0,
            UpdateResult::NotEnoughFlash,
        ),
    ] {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("bad-{name}");
        let cfg = config(&endpoint, s.coap_addr(), trust.verifying_key());
        let platform = RamPlatform {
            record: Some(FirmwareRecord {
                accepted_sequence: accepted,
                ..FirmwareRecord::default()
            }),
            ..RamPlatform::default()
        };
        let server = s.server.clone();
        let ep = endpoint.clone();
        let job = tokio::spawn(async move {
            for _ in 0..200 {
                if server.registry.get(&ep).is_some() {
                    return server.jobs.start(&rel, std::slice::from_ref(&ep)).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("never registered");
        });
        let runner = tokio::spawn(async move {
            let (_exit, engine, _events) = boot(
                cfg,
                platform,
                BootOutcome::Normal,
                "1.0.0",
                &socket,
                Duration::from_millis(2500),
            )
            .await;
            engine
        });
        let job = job.await.unwrap();
        let v = s.finished(job).await;
        let engine = runner.await.unwrap();
        let mut engine = engine;
        assert_eq!(v.status, "failed", "{name}: {v:?}");
        assert_eq!(v.devices[0].fw_result, Some(want as i64), "{name}");
        assert_eq!(
            (engine.state(), engine.result()),
            (State::Idle, want),
            "{name}"
        );
        assert_eq!(
            engine.platform().writes,
            0,
            "{name}: not one image byte was written"
        );
    }
    // The server saw no request for any image block: the manifest was refused first every time.
    while let Ok(ev) = served.try_recv() {
        assert!(
            !matches!(ev, lwm2m_server::events::ServerEvent::Download { .. }),
            "an image block was served: {ev:?}"
        );
    }
}

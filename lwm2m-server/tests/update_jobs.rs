//! Update jobs end to end over real UDP on loopback: the server drives the Object 5 procedure on
//! the real device engine (testkit's `Device`: lwm2m-client's engine on its flash stack, rebooting
//! into the new image after Update) and, where that engine does not go (a device that takes push
//! only, or plain images), on the scripted device of tests/support/fake_device.rs. The server must
//! count success only when the device reports it after the update, fail with the device's reason,
//! push when pull is not offered, reach sleeping devices, follow reboots and address changes, and
//! cancel.

mod support;

use std::time::Duration;

use coap_lite::{RequestType, ResponseType};
use lwm2m_core::object5::{State, UpdateResult};
use support::fake_device::{DeviceConfig, FakeDevice};
use testkit::device::{self, Device, Faults, Spec, TransferKind};
use testkit::release::{self, failing_firmware, firmware};
use testkit::server::sleepy_devices;
use testkit::{TestServer, image};

async fn start() -> TestServer {
    TestServer::start(|_| {}).await
}

/// The real engine as `ep`, trusting the server's key, built for the releases' vendor and class.
fn spec(s: &TestServer, ep: &str) -> Spec {
    Spec::new(device::config(ep, s.coap_addr(), &s.trust()))
}

/// The real engine whose requests for firmware never arrive: it stays Downloading.
fn stuck_downloading(s: &TestServer, ep: &str) -> Spec {
    Spec {
        faults: Faults {
            silent_firmware_host: true,
            ..Faults::default()
        },
        ..spec(s, ep)
    }
}

/// The scripted push-only device, checking SUIT packages against the server's key.
fn push_only_suit(s: &TestServer, ep: &str) -> DeviceConfig {
    DeviceConfig {
        trust: Some(suit_manifest::TrustAnchor::from_key(s.trust())),
        ..DeviceConfig::new(ep, s.coap_addr())
    }
}

fn events(s: &TestServer, job: i64) -> Vec<String> {
    s.server
        .store
        .job_audit(job)
        .unwrap()
        .into_iter()
        .map(|a| a.event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suit_pull_update_succeeds_only_after_the_device_reports_result_1() {
    let s = start().await;
    let rel = s.add_release(&firmware("2.1.0", 6000), 5, "2.1.0");
    // A stale Result 1 from an earlier update must not count.
    let dev = Device::start(spec(&s, "dev-a").with_record(1, UpdateResult::Success)).await;
    s.registered("dev-a").await;
    let job = s.server.jobs.start(&rel, &["dev-a".into()]).unwrap();
    let v = s.finished(job).await;
    let d = &v.devices[0];
    assert_eq!(
        (v.status.as_str(), d.status.as_str()),
        ("succeeded", "succeeded"),
        "{v:?}"
    );
    assert_eq!(
        (d.fw_state, d.fw_result, d.pkg_version.as_deref()),
        (Some(0), Some(1), Some("2.1.0"))
    );
    assert_eq!(d.delivery.as_deref(), Some("pull"));
    assert_eq!(d.bytes_done, 6000);
    assert_eq!(dev.installed_version(), "2.1.0");
    assert_eq!(dev.sequence(), 5);
    // The device fetched the manifest from /fw/<id>/manifest and the image it names, relative.
    let transfers = dev.transfers();
    assert!(
        transfers[0].uri.ends_with(&format!("/fw/{rel}/manifest")),
        "{transfers:?}"
    );
    assert!(
        transfers
            .iter()
            .any(|t| t.kind == TransferKind::Image && t.uri.ends_with(&format!("/fw/{rel}/image")))
    );
    // Every step is in the audit trail, in order, with times.
    let trail = events(&s, job);
    let order = [
        "job-created",
        "prepared",
        "download-started",
        "downloaded",
        "update-executed",
        "succeeded",
    ];
    let mut at = 0;
    for step in order {
        at += trail[at..]
            .iter()
            .position(|e| e == step)
            .unwrap_or_else(|| panic!("{step} missing from {trail:?}"));
    }
    let audit = s.server.store.job_audit(job).unwrap();
    assert!(audit.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_reboots_and_re_registers_from_a_new_port_is_followed() {
    let s = start().await;
    let rel = s.add_release(&firmware("3.0.0", 3000), 7, "3.0.0");
    let dev = Device::start(Spec {
        new_port_on_reboot: true,
        ..spec(&s, "dev-b")
    })
    .await;
    s.registered("dev-b").await;
    let before = dev.addr().unwrap();
    let job = s.server.jobs.start(&rel, &["dev-b".into()]).unwrap();
    let v = s.finished(job).await;
    assert_eq!(v.status, "succeeded", "{v:?}");
    assert_ne!(
        s.server.registry.get("dev-b").unwrap().address,
        before,
        "the device came back on another port"
    );
    assert!(dev.counters().registrations >= 2);
}

/// A device out of reach when its job starts is updated as soon as it speaks again, not at the
/// end of the job's backoff (10 minutes here: longer than any wait of the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_comes_back_is_updated_at_once_not_after_the_backoff() {
    let s = TestServer::start(|c| {
        c.jobs.retry_delay = Duration::from_secs(600);
        c.dm.request_timeout = Duration::from_millis(500);
    })
    .await;
    let rel = s.add_release(&firmware("3.1.0", 3000), 7, "3.1.0");
    // Registered, then gone: its registration stays, its socket is closed.
    let gone = Device::start(spec(&s, "dev-w")).await;
    s.registered("dev-w").await;
    drop(gone);
    let job = s.server.jobs.start(&rel, &["dev-w".into()]).unwrap();
    testkit::wait::until(
        "the job to find the device unreachable",
        Duration::from_secs(20),
        async || {
            events(&s, job)
                .iter()
                .any(|e| e == "unreachable")
                .then_some(())
        },
    )
    .await;
    // It comes back (registers again, from another port).
    let back = Device::start(spec(&s, "dev-w")).await;
    let v = s.finished(job).await;
    assert_eq!(v.status, "succeeded", "{v:?}");
    assert_eq!(back.installed_version(), "3.1.0");
    assert_eq!(
        v.devices[0].attempts, 0,
        "unreachable is not a failed attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_update_does_not_fail_a_device_that_updated() {
    // Found through `sim-network proxy` at 20 % loss: the 2.04 to Execute Update was lost, the
    // device rebooted into the new image, and the server's retransmission got 4.05.
    let s = start().await;
    let rel = s.add_release(&firmware("3.1.0", 2500), 8, "3.1.0");
    let dev = Device::start(Spec {
        faults: Faults {
            lose_first_update_answer: true,
            ..Faults::default()
        },
        ..spec(&s, "dev-lost-ack")
    })
    .await;
    s.registered("dev-lost-ack").await;
    let job = s.server.jobs.start(&rel, &["dev-lost-ack".into()]).unwrap();
    let v = s.finished(job).await;
    let executes: Vec<_> = dev
        .requests()
        .into_iter()
        .filter(|r| r.path == "/5/0/2")
        .map(|r| r.code)
        .collect();
    assert_eq!(
        executes,
        [
            Some(ResponseType::Changed),
            Some(ResponseType::MethodNotAllowed)
        ],
        "the first answer lost, the retransmission refused"
    );
    assert_eq!(
        (v.status.as_str(), v.devices[0].fw_result),
        ("succeeded", Some(1)),
        "{v:?}"
    );
    assert_eq!(dev.installed_version(), "3.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_install_fails_the_job_with_result_8() {
    let s = start().await;
    // The new image fails its self-test on the trial boot: the device rolls back.
    let rel = s.add_release(&failing_firmware("4.0.0", 2000), 9, "4.0.0");
    // A stale Result 1 from an earlier update must not count.
    let dev = Device::start(spec(&s, "dev-c").with_record(1, UpdateResult::Success)).await;
    s.registered("dev-c").await;
    let job = s.server.jobs.start(&rel, &["dev-c".into()]).unwrap();
    let v = s.finished(job).await;
    assert_eq!(
        (v.status.as_str(), v.devices[0].fw_result),
        ("failed", Some(8)),
        "{v:?}"
    );
    assert_eq!(dev.installed_version(), "1.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_the_device_refuses_fails_without_a_single_image_block() {
    let s = start().await;
    // Lower sequence number than the device holds: Result 6 (the engine's answer to a rollback).
    let old = s.add_release(&firmware("0.9.0", 4000), 1, "0.9.0");
    let dev = Device::start(spec(&s, "dev-d").with_record(3, UpdateResult::Initial)).await;
    s.registered("dev-d").await;
    let v = s
        .finished(s.server.jobs.start(&old, &["dev-d".into()]).unwrap())
        .await;
    assert_eq!(
        (v.status.as_str(), v.devices[0].fw_result),
        ("failed", Some(6)),
        "{v:?}"
    );
    // In words, with the number: never Rust's Debug text.
    assert_eq!(
        v.devices[0].error.as_deref(),
        Some("Download failed: Unsupported package type (Result 6)")
    );
    let audit = s.server.store.job_audit(v.id).unwrap();
    let failed = audit.iter().find(|a| a.event == "failed").unwrap();
    assert_eq!(
        (failed.what, failed.result, failed.result_name),
        ("Failed", Some(6), Some("Unsupported package type"))
    );
    assert!(
        audit
            .iter()
            .all(|a| !a.detail.as_deref().unwrap_or("").contains("Some(")),
        "{audit:?}"
    );
    assert_eq!(dev.counters().image_block_requests, 0);
    // A device that trusts another key: integrity failure, 5, again no image block.
    let stranger = release::key();
    let dev2 = Device::start(Spec::new(device::config(
        "dev-d2",
        s.coap_addr(),
        stranger.verifying_key(),
    )))
    .await;
    s.registered("dev-d2").await;
    let rel = s.add_release(&firmware("5.0.0", 4000), 8, "5.0.0");
    let v = s
        .finished(s.server.jobs.start(&rel, &["dev-d2".into()]).unwrap())
        .await;
    assert_eq!(
        (v.status.as_str(), v.devices[0].fw_result),
        ("failed", Some(5)),
        "{v:?}"
    );
    assert_eq!(dev2.counters().image_block_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_only_device_gets_the_plain_image_by_block1() {
    let s = start().await;
    let img = image(5000, 6);
    let (rel, _) = s.server.repo.add_plain(&img, "2.0.0", 0).unwrap();
    let dev = FakeDevice::start(DeviceConfig::new("dev-e", s.coap_addr())).await;
    s.registered("dev-e").await;
    let v = s
        .finished(s.server.jobs.start(&rel.id, &["dev-e".into()]).unwrap())
        .await;
    let d = &v.devices[0];
    assert_eq!(
        (v.status.as_str(), d.delivery.as_deref(), d.bytes_done),
        ("succeeded", Some("push"), 5000),
        "{v:?}"
    );
    assert_eq!(dev.installed_version(), "2.0.0");
    // It was pushed, not pulled: no Package URI was written, the package went to /5/0/0.
    assert!(!dev.requests().iter().any(|r| r.path == "/5/0/1"));
    assert!(dev.requests().iter().any(|r| r.path == "/5/0/0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suit_release_that_is_not_integrated_cannot_be_pushed() {
    let s = start().await;
    let rel = s.add_release(&image(1000, 7), 4, "1.1.0");
    let _dev = FakeDevice::start(push_only_suit(&s, "dev-f")).await;
    s.registered("dev-f").await;
    let v = s
        .finished(s.server.jobs.start(&rel, &["dev-f".into()]).unwrap())
        .await;
    assert_eq!(v.status, "failed");
    assert!(
        v.devices[0]
            .error
            .as_deref()
            .unwrap()
            .contains("--integrated"),
        "{v:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrated_suit_release_is_pushed_to_a_push_only_device() {
    let s = start().await;
    let img = image(3000, 8);
    let rel = s.add_envelope(&release::integrated(&s.key, &img, 11, "6.0.0"), &img);
    let dev = FakeDevice::start(push_only_suit(&s, "dev-g")).await;
    s.registered("dev-g").await;
    let v = s
        .finished(s.server.jobs.start(&rel, &["dev-g".into()]).unwrap())
        .await;
    assert_eq!(v.status, "succeeded", "{v:?}");
    assert_eq!(dev.installed_version(), "6.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_queue_mode_device_is_updated_as_it_wakes() {
    // Awake 300 ms after it last sent (the server believes 250 ms), an Update every second.
    let s = TestServer::start(sleepy_devices).await;
    let rel = s.add_release(&firmware("1.2.0", 2000), 3, "1.2.0");
    let dev = Device::start(spec(&s, "dev-h").sleepy()).await;
    s.registered("dev-h").await;
    assert!(s.server.registry.get("dev-h").unwrap().queue_mode);
    // Start while it sleeps: the first request must wait for its next Update.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!s.server.registry.is_reachable("dev-h"));
    let updates_before = dev.counters().updates;
    let v = s
        .finished(s.server.jobs.start(&rel, &["dev-h".into()]).unwrap())
        .await;
    assert_eq!(v.status, "succeeded", "{v:?}");
    assert_eq!(dev.installed_version(), "1.2.0");
    assert!(
        dev.counters().updates > updates_before,
        "the device woke up to send an Update"
    );
    // Every request waited for the device to wake: none arrived while it slept. (Not counted: a
    // CoAP retransmission, whose first copy the server sent while the device was awake and which
    // the device lost while it rebooted into the new image.)
    let dropped: Vec<_> = dev
        .requests()
        .into_iter()
        .filter(|r| r.code.is_none() && !r.while_off && !r.retransmission)
        .collect();
    assert!(
        dropped.is_empty(),
        "requests sent to the sleeping device: {dropped:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_cancelled_with_the_devices_cancel_resource() {
    let s = start().await;
    let rel = s.add_release(&firmware("1.3.0", 2000), 3, "1.3.0");
    let dev = Device::start(stuck_downloading(&s, "dev-i")).await;
    s.registered("dev-i").await;
    let job = s.server.jobs.start(&rel, &["dev-i".into()]).unwrap();
    dev.wait_for("downloading", |d| d.state() == State::Downloading)
        .await;
    s.server.jobs.cancel(job).unwrap();
    let v = s.finished(job).await;
    assert_eq!(
        (v.status.as_str(), v.devices[0].status.as_str()),
        ("cancelled", "cancelled"),
        "{v:?}"
    );
    assert_eq!(
        (dev.state(), dev.result()),
        (State::Idle, UpdateResult::Cancelled)
    );
    assert!(dev.requests().iter().any(|r| r.path == "/5/0/10"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_never_ends_times_out_after_bounded_retries() {
    let s = TestServer::start(|c| {
        c.jobs.poll_interval = Duration::from_millis(200);
        c.jobs.retry_delay = Duration::from_millis(50);
        c.jobs.download_timeout = Duration::from_millis(800);
        c.jobs.max_attempts = 2;
    })
    .await;
    let (rel, _) = s.server.repo.add_plain(&image(500, 11), "9.9", 0).unwrap();
    let dev = Device::start(stuck_downloading(&s, "dev-j")).await;
    s.registered("dev-j").await;
    let job = s.server.jobs.start(&rel.id, &["dev-j".into()]).unwrap();
    let v = s.finished(job).await;
    let d = &v.devices[0];
    assert_eq!((v.status.as_str(), d.attempts), ("failed", 2), "{v:?}");
    assert!(d.error.as_deref().unwrap().contains("timed out"), "{d:?}");
    // Each attempt wrote the Package URI again.
    let writes = dev
        .requests()
        .iter()
        .filter(|r| r.path == "/5/0/1" && r.method == RequestType::Put)
        .count();
    assert!(writes >= 2, "{writes} URI writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_refuse_unknown_releases_clients_and_a_second_job_for_a_busy_device() {
    let s = start().await;
    let rel = s.add_release(&firmware("1.0.1", 1000), 3, "1.0.1");
    let _dev = Device::start(stuck_downloading(&s, "dev-k")).await;
    s.registered("dev-k").await;
    assert!(
        s.server
            .jobs
            .start("0000000000000000", &["dev-k".into()])
            .is_err()
    );
    assert!(s.server.jobs.start(&rel, &["nobody".into()]).is_err());
    assert!(s.server.jobs.start(&rel, &[]).is_err());
    let job = s.server.jobs.start(&rel, &["dev-k".into()]).unwrap();
    let second = s.server.jobs.start(&rel, &["dev-k".into()]).unwrap_err();
    assert!(
        second.to_string().contains("already has an update job"),
        "{second}"
    );
    s.server.jobs.cancel(job).unwrap();
    s.finished(job).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_management_reads_writes_executes_and_observes() {
    let s = start().await;
    let dev = Device::start(spec(&s, "dev-l")).await;
    s.registered("dev-l").await;
    let dm = &s.server.dm;
    let path = |p: &str| lwm2m_core::Path::parse(p).unwrap();
    let v = dm.read("dev-l", &path("/3/0/3"), None).await.unwrap();
    assert_eq!(v.values[0].value, serde_json::json!("1.0.0"));
    let v = dm
        .read("dev-l", &path("/5/0/8"), Some(11542))
        .await
        .unwrap();
    assert_eq!(v.values[0].path, "/5/0/8/0");
    let v = dm.read("dev-l", &path("/5/0/8"), Some(112)).await.unwrap();
    assert_eq!(v.values[0].value, serde_json::json!(0));
    // Refusals come back as the device's code.
    let e = dm
        .execute("dev-l", &path("/5/0/2"), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("4.05"), "{e}");
    let e = dm.read("dev-l", &path("/9/0/0"), None).await.unwrap_err();
    assert!(e.to_string().contains("4.04"), "{e}");
    // Observe State, then make it change by writing a URI: a notification arrives.
    let mut events = s.server.events.subscribe();
    dm.observe("dev-l", &path("/5/0/3")).await.unwrap();
    let rel = s.add_release(&firmware("2.0.0", 300), 2, "2.0.0");
    let uri = format!("coap://{}/fw/{rel}/manifest", s.coap_addr());
    dm.write("dev-l", &path("/5/0/1"), &serde_json::json!(uri), true)
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(lwm2m_server::events::ServerEvent::Notification { path, value, .. }) =
                events.recv().await
            {
                if path == "/5/0/3" && value[0]["value"] == 2 {
                    return;
                }
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "no notification of State 2 (Downloaded)");
    assert_eq!(dev.state(), State::Downloaded);
    assert!(dm.cancel_observe("dev-l", &path("/5/0/3")).await.unwrap());
    // Reset with an empty URI.
    dm.write("dev-l", &path("/5/0/1"), &serde_json::json!(""), true)
        .await
        .unwrap();
    assert_eq!(dev.state(), State::Idle);
}

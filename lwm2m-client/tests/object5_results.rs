//! Object 5 through the engine, on the wire: every Update Result the device can produce, the
//! State transitions and the CoAP response codes of the operations that drive them, block-wise
//! details (ETag change, late negotiation), duplicate requests, resumption after a reboot,
//! Observe, and malformed datagrams.
//!
//! The engine runs in the host driver's loop (support/device.rs `run_mem`, `host::run` over an
//! in-memory datagram network) against a scripted LwM2M server and a scripted Block2 file
//! server, on tokio's paused clock: retransmissions and back-offs take no real time, and the
//! runs are deterministic. Why not UDP on a paused clock: see support/net.rs.
//!
//! Two tests fail on purpose until engine bugs are fixed; their assertion messages start with
//! "ENGINE BUG".
#![cfg(feature = "std")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lwm2m_client::engine::{Event, MANIFEST_CAP};
use lwm2m_client::host::Exit;
use lwm2m_client::platform::{BootOutcome, FirmwareRecord};
use lwm2m_core::object5::{State, UpdateResult};
use p256::ecdsa::SigningKey;
use suit_manifest::builder::ComponentSpec;
use support::coap::{self, Msg, code_str, opt};
use support::device::{self, Device, config};
use support::fileserver::FileServer;
use support::lwm2m::LwServer;
use support::net::{Link, MemNet};
use support::platform::RamPlatform;
use testkit::release::{self, CLASS, VENDOR};

const LONG: Duration = Duration::from_secs(3600);
const MANIFEST: &str = "fw/manifest";
const IMAGE: &str = "fw/image";

/// The scripted LwM2M server and a registered device.
struct Rig {
    lw: LwServer,
    dev: Device,
    at: SocketAddr,
}

/// An in-memory network (see support/net.rs) for one test.
fn mem() -> Link {
    Link::Mem(MemNet::new())
}

async fn rig(link: &Link, trust: &SigningKey, platform: RamPlatform) -> Rig {
    boot(link, trust, platform, BootOutcome::Normal, "1.0.0").await
}

async fn boot(
    link: &Link,
    trust: &SigningKey,
    platform: RamPlatform,
    outcome: BootOutcome,
    version: &str,
) -> Rig {
    let lw = LwServer::start(link).await;
    let dev = device::boot(
        link,
        config(lw.addr, trust.verifying_key()),
        platform,
        outcome,
        version,
    )
    .await;
    let at = lw.registered(1, Duration::from_secs(30)).await;
    assert_eq!(at, dev.addr);
    Rig { lw, dev, at }
}

impl Rig {
    /// Writes the Package URI; asserts 2.04.
    async fn write_uri(&mut self, uri: &str) {
        let r = self.lw.write_text(self.at, "5/0/1", uri).await;
        assert_eq!(code_str(r.code), "2.04", "write /5/0/1 {uri:?}: {r:?}");
    }

    async fn code_of_write(&mut self, uri: &str) -> String {
        code_str(self.lw.write_text(self.at, "5/0/1", uri).await.code)
    }

    async fn code_of_execute(&mut self, path: &str) -> String {
        code_str(self.lw.execute(self.at, path).await.code)
    }

    /// (State, Update Result) as GET /5/0/3 and /5/0/5 read them.
    async fn wire(&mut self) -> (u8, u8) {
        self.lw.object5(self.at).await
    }

    /// Waits for the download to end (Idle or Downloaded) and returns how, as events said.
    async fn end(&mut self) -> (State, UpdateResult) {
        self.dev
            .wait_download_end(LONG)
            .await
            .unwrap_or_else(|| panic!("the download never ended: {:?}", self.dev.drain()))
    }

    /// A download that ends in `want`, checked through the events and on the wire.
    async fn expect_end(&mut self, want: (State, UpdateResult), why: &str) {
        let got = self.end().await;
        assert_eq!(got, want, "{why}: {:?}", self.dev.seen);
        assert_eq!(
            self.wire().await,
            (want.0 as u8, want.1 as u8),
            "{why}: on the wire"
        );
    }
}

/// A file server with a release (manifest at fw/manifest, naming the image by the relative
/// reference "image") and the image at fw/image.
async fn release_server(link: &Link, key: &SigningKey, image: &[u8], sequence: u64) -> FileServer {
    let env = release::envelope(key, image, sequence, "image");
    FileServer::start(link, &[(MANIFEST, &env), (IMAGE, image)]).await
}

/// Polls (in virtual time) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LONG;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fw(state: State, result: UpdateResult) -> (State, UpdateResult) {
    (state, result)
}

// ---- 0: reset ----

#[tokio::test(start_paused = true)]
async fn result_0_after_a_reset_while_downloading_and_while_downloaded() {
    let link = mem();
    let key = release::key();
    let image = release::image(3000, 10);
    let fs = release_server(&link, &key, &image, 2).await;
    fs.set(|b| {
        b.silent.insert(IMAGE.into());
    });
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    until("an image block is requested", || {
        !fs.requests(IMAGE).is_empty()
    })
    .await;
    assert_eq!(r.wire().await, (1, 0), "Downloading");

    // Reset while Downloading: 2.04, State 0, Result 0, the URI reads back empty.
    r.write_uri("").await;
    assert_eq!(r.wire().await, (0, 0));
    assert_eq!(r.lw.read(r.at, "5/0/1").await, "");
    let asked = fs.requests(IMAGE).len();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        fs.requests(IMAGE).len(),
        asked,
        "the block request in flight was dropped: no retransmission after the reset"
    );

    // Reset while Downloaded.
    fs.set(|b| {
        b.silent.clear();
    });
    r.dev.clear();
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Downloaded, UpdateResult::Initial), "download")
        .await;
    r.write_uri("").await;
    assert_eq!(r.wire().await, (0, 0));
    let mut stopped = r.dev.stop().await;
    let rec = stopped.platform().record.unwrap();
    assert_eq!(
        (rec.state, rec.result),
        (State::Idle, UpdateResult::Initial)
    );
    assert!(rec.staged.is_none() && rec.download.is_none(), "{rec:?}");
}

// ---- 1 and 8: after the update's reboot ----

/// Downloads `image` (sequence 7, version 2.0.0) and executes Update; returns the platform as
/// the reboot leaves it.
async fn downloaded_and_executed(link: &Link, key: &SigningKey, image: &[u8]) -> RamPlatform {
    let fs = release_server(link, key, image, 7).await;
    let mut r = rig(link, key, RamPlatform::default()).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Downloaded, UpdateResult::Initial), "download")
        .await;
    assert_eq!(r.code_of_execute("5/0/2").await, "2.04", "Execute Update");
    assert!(
        r.dev
            .wait_event(LONG, |e| *e == Event::Reboot)
            .await
            .is_some(),
        "Update asks for a reboot"
    );
    assert_eq!(r.wire().await, (3, 0), "Updating until the reset");
    let mut stopped = r.dev.stop().await;
    assert_eq!(stopped.exits.first(), Some(&Exit::Reboot));
    let p = stopped.platform();
    assert!(p.marked, "the staged image is marked for a trial boot");
    let rec = p.record.clone().unwrap();
    assert_eq!(rec.state, State::Updating);
    assert_eq!(rec.pending.as_ref().map(|p| p.sequence), Some(7), "{rec:?}");
    p
}

#[tokio::test(start_paused = true)]
async fn result_1_after_the_new_image_confirms_itself() {
    let link = mem();
    let key = release::key();
    let image = release::image(700, 11);
    let platform = downloaded_and_executed(&link, &key, &image).await;

    let mut r = boot(&link, &key, platform, BootOutcome::Confirmed, "2.0.0").await;
    assert_eq!(
        r.wire().await,
        (0, 1),
        "Idle, Result 1 (firmware updated successfully)"
    );
    assert_eq!(r.lw.read(r.at, "5/0/7").await, "2.0.0", "PkgVersion");
    assert_eq!(r.lw.read(r.at, "3/0/3").await, "2.0.0", "running version");
    // The release's sequence number is now the accepted one: offering it again is refused (6).
    let fs = release_server(&link, &key, &image, 7).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(
        fw(State::Idle, UpdateResult::UnsupportedPackage),
        "the same sequence again",
    )
    .await;
    let mut stopped = r.dev.stop().await;
    let rec = stopped.platform().record.unwrap();
    assert_eq!(rec.accepted_sequence, 7);
    assert!(rec.pending.is_none());
}

#[tokio::test(start_paused = true)]
async fn result_8_after_a_rollback_and_the_release_may_be_retried() {
    let link = mem();
    let key = release::key();
    let image = release::image(700, 12);
    let platform = downloaded_and_executed(&link, &key, &image).await;

    let mut r = boot(&link, &key, platform, BootOutcome::RolledBack, "1.0.0").await;
    assert_eq!(
        r.wire().await,
        (0, 8),
        "Idle, Result 8 (firmware update failed)"
    );
    assert_eq!(
        r.lw.read(r.at, "3/0/3").await,
        "1.0.0",
        "the old image runs"
    );
    // A rollback does not consume the sequence number: the same release can be tried again.
    let fs = release_server(&link, &key, &image, 7).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Downloaded, UpdateResult::Initial), "retry")
        .await;
    let mut stopped = r.dev.stop().await;
    let rec = stopped.platform().record.unwrap();
    assert_eq!(rec.accepted_sequence, 0);
    assert!(rec.pending.is_none());
}

// ---- 2 and 3: resources ----

#[tokio::test(start_paused = true)]
async fn result_2_when_the_manifest_says_the_image_is_larger_than_the_slot() {
    let link = mem();
    let key = release::key();
    let image = release::image(5000, 13);
    let fs = release_server(&link, &key, &image, 2).await;
    let mut r = rig(&link, &key, RamPlatform::with_slot(4096)).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Idle, UpdateResult::NotEnoughFlash), "5000 > 4096")
        .await;
    assert!(
        fs.requests(IMAGE).is_empty(),
        "no image block was asked for"
    );
    let mut stopped = r.dev.stop().await;
    assert_eq!(stopped.platform().writes, 0);
}

#[tokio::test(start_paused = true)]
async fn result_3_when_the_manifest_is_larger_than_the_manifest_buffer() {
    let link = mem();
    let key = release::key();
    let image = release::image(500, 14);
    let mut comp = release::component(&image, "image", "2.0.0");
    comp.version = Some("v".repeat(1500));
    let env = release::envelope_of(&key, 2, comp);
    assert!(env.len() > MANIFEST_CAP + 64, "{}", env.len());
    let fs = FileServer::start(&link, &[(MANIFEST, &env), (IMAGE, &image)]).await;
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Idle, UpdateResult::OutOfRam), "manifest > 1024")
        .await;
    // The first block's Size2 already says the envelope cannot fit: nothing more is asked.
    assert_eq!(fs.blocks(MANIFEST), vec![0]);
    assert!(fs.requests(IMAGE).is_empty());
}

// ---- 4: connection lost ----

#[tokio::test(start_paused = true)]
async fn result_4_when_the_image_server_stops_answering_after_backed_off_retries() {
    let link = mem();
    let real = std::time::Instant::now();
    let key = release::key();
    let image = release::image(3000, 15);
    let fs = release_server(&link, &key, &image, 2).await;
    fs.set(|b| {
        b.answer_limit.insert(IMAGE.into(), 5);
    });
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    let started = tokio::time::Instant::now();
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Idle, UpdateResult::ConnectionLost), "host gone")
        .await;
    let virtual_time = started.elapsed();

    // Five image requests answered, then silence. Every exchange after that is transmitted
    // 1 + MAX_RETRANSMIT (4) times with the timeout doubling (RFC 7252 §4.2), and the download
    // gives up once RetryPolicy::max_failures (6) requests started after the last answer timed
    // out: the ones in flight at the last answer do not count, they are asked again.
    let reqs = fs.requests(IMAGE);
    let last_answered = reqs.iter().rposition(|q| q.answered).unwrap();
    let silent: Vec<_> = reqs[last_answered + 1..].to_vec();
    let mut exchanges: Vec<(u16, Vec<tokio::time::Instant>)> = Vec::new();
    for q in &silent {
        match exchanges.iter_mut().find(|e| e.0 == q.mid) {
            Some((_, times)) => times.push(q.at),
            None => exchanges.push((q.mid, vec![q.at])),
        }
    }
    // (Those still in flight when it gave up were dropped before their last copies.)
    assert!(exchanges.iter().all(|e| e.1.len() <= 5), "{exchanges:?}");
    let whole: Vec<_> = exchanges.iter().filter(|e| e.1.len() == 5).collect();
    assert!(
        whole.len() >= 6 && exchanges.len() <= 6 + 16,
        "{} exchanges, {} with 5 copies",
        exchanges.len(),
        whole.len()
    );
    for (_, e) in whole {
        for k in 1..4 {
            let (a, b) = (e[k] - e[k - 1], e[k + 1] - e[k]);
            let diff = b.as_millis().abs_diff(2 * a.as_millis());
            assert!(diff <= 2, "timeouts {a:?} then {b:?}: not doubled");
        }
    }
    assert!(virtual_time > Duration::from_secs(30), "{virtual_time:?}");
    // Nothing more after giving up.
    let n = fs.requests(IMAGE).len();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fs.requests(IMAGE).len(), n);
    let spins = r.dev.spins.clone();
    let mut stopped = r.dev.stop().await;
    assert!(stopped.platform().record.unwrap().download.is_none());
    assert!(
        real.elapsed() < Duration::from_secs(30),
        "the paused clock made {virtual_time:?} of back-off take {:?}",
        real.elapsed()
    );
    // The sans-IO contract: after handle_timeout(now) the next deadline is in the future.
    assert_eq!(
        spins.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "ENGINE BUG: while a retried block request is in flight, poll_timeout() returns a \
         deadline in the past, so the driver wakes at once, again and again (a busy loop; \
         host::run under a paused clock never lets time advance and hangs). Download::retry_at \
         stays set after the retry is sent: Engine::request_blocks starts the exchange but does \
         not clear it, and poll_timeout() adds it unconditionally"
    );
}

// ---- 5: integrity ----

#[tokio::test(start_paused = true)]
async fn result_5_for_a_manifest_signed_with_another_key() {
    let link = mem();
    let trusted = release::key();
    let stranger = release::key();
    let image = release::image(1000, 16);
    let fs = release_server(&link, &stranger, &image, 2).await;
    let mut r = rig(&link, &trusted, RamPlatform::default()).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(
        fw(State::Idle, UpdateResult::IntegrityFailure),
        "bad signature",
    )
    .await;
    assert!(
        fs.requests(IMAGE).is_empty(),
        "refused before any image block"
    );
}

#[tokio::test(start_paused = true)]
async fn result_5_for_an_image_that_does_not_match_the_manifest_digest() {
    let link = mem();
    let key = release::key();
    let image = release::image(3000, 17);
    let mut tampered = image.clone();
    tampered[1234] ^= 0x01;
    let env = release::envelope(&key, &image, 2, "image");
    let fs = FileServer::start(&link, &[(MANIFEST, &env), (IMAGE, &tampered)]).await;
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(
        fw(State::Idle, UpdateResult::IntegrityFailure),
        "one bit flipped",
    )
    .await;
    assert!(
        FileServer::cover(&fs.exchanges(IMAGE), 3000),
        "the whole image was fetched, then refused"
    );

    // An image longer than the manifest says: the answers that show it (Size2, the block past
    // the manifest's size) are setbacks, asked again with a growing wait, then Result 4.
    let mut longer = image.clone();
    longer.extend_from_slice(&[0u8; 64]);
    fs.set(|b| {
        b.files.insert(IMAGE.into(), longer);
        b.etags.insert(IMAGE.into(), vec![2]);
    });
    r.dev.clear();
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Idle, UpdateResult::ConnectionLost), "too long")
        .await;
    let mut stopped = r.dev.stop().await;
    let rec = stopped.platform().record.unwrap();
    assert!(rec.staged.is_none() && rec.download.is_none(), "{rec:?}");
}

// ---- 6: unsupported package ----

#[tokio::test(start_paused = true)]
async fn result_6_for_another_class_and_for_a_sequence_not_higher_than_the_accepted_one() {
    let link = mem();
    let key = release::key();
    let image = release::image(1000, 18);
    let mut comp = ComponentSpec::for_image(&image, VENDOR, [9; 16]);
    comp.uri = Some("image".into());
    let other_class = release::envelope_of(&key, 9, comp);
    let same_seq = release::envelope(&key, &image, 5, "image");
    let next_seq = release::envelope(&key, &image, 6, "image");
    assert_ne!(CLASS, [9; 16]);
    let fs = FileServer::start(
        &link,
        &[
            ("fw/class", &other_class),
            ("fw/seq5", &same_seq),
            ("fw/seq6", &next_seq),
            (IMAGE, &image),
        ],
    )
    .await;
    let platform = RamPlatform::with_record(FirmwareRecord {
        accepted_sequence: 5,
        ..FirmwareRecord::default()
    });
    let mut r = rig(&link, &key, platform).await;
    for (path, why) in [("fw/class", "class"), ("fw/seq5", "sequence 5 <= 5")] {
        r.dev.clear();
        r.write_uri(&fs.uri(path)).await;
        r.expect_end(fw(State::Idle, UpdateResult::UnsupportedPackage), why)
            .await;
    }
    assert!(fs.requests(IMAGE).is_empty());
    // The control: a higher sequence number is accepted.
    r.dev.clear();
    r.write_uri(&fs.uri("fw/seq6")).await;
    r.expect_end(fw(State::Downloaded, UpdateResult::Initial), "sequence 6")
        .await;
}

// ---- 7 and 9: URIs ----

#[tokio::test(start_paused = true)]
async fn result_7_for_an_unusable_uri_and_for_a_4_04_from_the_server() {
    let link = mem();
    let key = release::key();
    let image = release::image(1000, 19);
    let fs = release_server(&link, &key, &image, 2).await;
    let mut r = rig(&link, &key, RamPlatform::default()).await;

    // No DNS on the device: a host name is an invalid URI. The write itself succeeds (2.04).
    r.write_uri("coap://no-such-host/x").await;
    r.expect_end(fw(State::Idle, UpdateResult::InvalidUri), "host name")
        .await;
    assert_eq!(
        r.dev.firmware_events(),
        vec![
            fw(State::Downloading, UpdateResult::Initial),
            fw(State::Idle, UpdateResult::InvalidUri)
        ]
    );

    // The manifest is not there.
    r.dev.clear();
    r.write_uri(&fs.uri("fw/nothing")).await;
    r.expect_end(fw(State::Idle, UpdateResult::InvalidUri), "manifest 4.04")
        .await;

    // The image is not there.
    fs.set(|b| {
        b.status.insert(IMAGE.into(), coap::NOT_FOUND);
    });
    r.dev.clear();
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Idle, UpdateResult::InvalidUri), "image 4.04")
        .await;
    let asked = fs.exchanges(IMAGE);
    assert!(
        !asked.is_empty() && asked.len() <= 2 && asked.iter().all(|q| q.answered),
        "the first window (2 requests), answered 4.04: {asked:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn result_9_for_schemes_the_device_does_not_speak() {
    let link = mem();
    let key = release::key();
    let image = release::image(1000, 20);
    let coaps_image = release::envelope(&key, &image, 2, "coaps://127.0.0.1:5684/fw/image");
    let fs = FileServer::start(&link, &[(MANIFEST, &coaps_image), (IMAGE, &image)]).await;
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    assert_eq!(
        r.lw.read(r.at, "5/0/8/0").await,
        "0",
        "only CoAP is supported"
    );
    for uri in [
        "coaps://127.0.0.1:5684/fw/manifest",
        "http://127.0.0.1/fw/manifest",
        "https://[::1]/fw/manifest",
    ] {
        r.dev.clear();
        r.write_uri(uri).await;
        r.expect_end(fw(State::Idle, UpdateResult::UnsupportedProtocol), uri)
            .await;
    }
    // A manifest (fetched over coap) that names its image with coaps://.
    r.dev.clear();
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(
        fw(State::Idle, UpdateResult::UnsupportedProtocol),
        "coaps image URI",
    )
    .await;
    assert!(fs.requests(IMAGE).is_empty());
}

// ---- 10: cancel, and refused operations ----

#[tokio::test(start_paused = true)]
async fn result_10_for_cancel_while_downloading_or_downloaded_and_4_05_in_idle_or_updating() {
    let link = mem();
    let key = release::key();
    let image = release::image(1000, 21);
    let fs = release_server(&link, &key, &image, 2).await;
    let mut r = rig(&link, &key, RamPlatform::default()).await;

    assert_eq!(
        r.code_of_execute("5/0/10").await,
        "4.05",
        "nothing to cancel in Idle"
    );
    assert_eq!(r.wire().await, (0, 0));

    // Downloading.
    fs.set(|b| {
        b.silent.insert(IMAGE.into());
    });
    r.write_uri(&fs.uri(MANIFEST)).await;
    until("an image block is requested", || {
        !fs.requests(IMAGE).is_empty()
    })
    .await;
    assert_eq!(r.wire().await, (1, 0));
    assert_eq!(
        r.code_of_execute("5/0/10").await,
        "2.04",
        "cancel while Downloading"
    );
    assert_eq!(r.wire().await, (0, 10));
    let n = fs.requests(IMAGE).len();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fs.requests(IMAGE).len(), n, "no block request after Cancel");
    assert_eq!(r.code_of_execute("5/0/10").await, "4.05", "Idle again");
    assert_eq!(
        r.wire().await,
        (0, 10),
        "the refused Cancel changes nothing"
    );

    // Downloaded.
    fs.set(|b| {
        b.silent.clear();
    });
    r.dev.clear();
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Downloaded, UpdateResult::Initial), "download")
        .await;
    assert_eq!(
        r.code_of_execute("5/0/10").await,
        "2.04",
        "cancel while Downloaded"
    );
    assert_eq!(r.wire().await, (0, 10));
    assert_eq!(
        r.code_of_execute("5/0/2").await,
        "4.05",
        "nothing to update"
    );

    // Updating: too late to cancel.
    r.dev.clear();
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(fw(State::Downloaded, UpdateResult::Initial), "download")
        .await;
    assert_eq!(r.code_of_execute("5/0/2").await, "2.04");
    assert_eq!(r.wire().await, (3, 0));
    assert_eq!(
        r.code_of_execute("5/0/10").await,
        "4.05",
        "cancel while Updating"
    );
    assert_eq!(r.code_of_write("").await, "4.05", "reset while Updating");
    assert_eq!(r.code_of_execute("5/0/2").await, "4.05", "Update twice");
    assert_eq!(r.wire().await, (3, 0), "still Updating");
}

#[tokio::test(start_paused = true)]
async fn execute_in_idle_is_4_05_and_a_new_uri_while_downloading_is_4_00() {
    let link = mem();
    let key = release::key();
    let image = release::image(1000, 22);
    let fs = release_server(&link, &key, &image, 2).await;
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    assert_eq!(r.code_of_execute("5/0/2").await, "4.05", "Update in Idle");
    assert_eq!(r.wire().await, (0, 0));

    fs.set(|b| {
        b.silent.insert(IMAGE.into());
    });
    let first = fs.uri(MANIFEST);
    r.write_uri(&first).await;
    until("an image block is requested", || {
        !fs.requests(IMAGE).is_empty()
    })
    .await;
    assert_eq!(
        r.code_of_write("coap://127.0.0.1:9/other").await,
        "4.00",
        "a new URI while Downloading"
    );
    assert_eq!(
        r.code_of_execute("5/0/2").await,
        "4.05",
        "Update while Downloading"
    );
    assert_eq!(r.wire().await, (1, 0));
    assert_eq!(
        r.lw.read(r.at, "5/0/1").await,
        first,
        "the URI is unchanged"
    );
    // The first download carries on, undisturbed.
    fs.set(|b| {
        b.silent.clear();
    });
    r.expect_end(
        fw(State::Downloaded, UpdateResult::Initial),
        "first download",
    )
    .await;
    assert_eq!(
        r.code_of_write("coap://127.0.0.1:9/other").await,
        "4.00",
        "a new URI while Downloaded"
    );
    let mut stopped = r.dev.stop().await;
    assert!(stopped.platform().staged(image.len()) == image);
}

// ---- block-wise behaviour ----

#[tokio::test(start_paused = true)]
async fn a_changed_etag_mid_download_restarts_the_image_and_erases_each_page_once_more() {
    let link = mem();
    let key = release::key();
    let image = release::image(9000, 23);
    let fs = release_server(&link, &key, &image, 2).await;
    // ETag A for the first 10 image answers, then B (the representation changed under us).
    fs.set(|b| {
        b.etags.insert(IMAGE.into(), vec![0xa]);
        b.etag_switch = Some((IMAGE.into(), 10, vec![0xb]));
    });
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    let end = r.end().await;
    assert_eq!(end, fw(State::Downloaded, UpdateResult::Initial));
    // After the first answer with ETag B, every byte is asked for again.
    let reqs = fs.exchanges(IMAGE);
    let switch = reqs.iter().position(|q| q.etag == [0xb]).unwrap();
    assert!(FileServer::cover(&reqs[switch..], 9000));
    let mut stopped = r.dev.stop().await;
    let p = stopped.platform();
    assert!(
        p.staged(image.len()) == image,
        "byte-exact after the restart"
    );
    // The pages written under ETag A are erased again, once.
    assert_eq!(p.max_erases(), 2, "{:?}", p.erases);
    assert_eq!(p.reprogrammed_words, 0);
}

#[tokio::test(start_paused = true)]
async fn a_changed_etag_mid_manifest_restarts_the_manifest() {
    let link = mem();
    let key = release::key();
    let image = release::image(500, 29);
    let fs = release_server(&link, &key, &image, 2).await;
    let len = fs.ctl.lock().unwrap().files[MANIFEST].len() as u64;
    assert!(len > 3 * 64);
    fs.set(|b| {
        b.etags.insert(MANIFEST.into(), vec![0xa]);
        b.etag_switch = Some((MANIFEST.into(), 2, vec![0xb]));
    });
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(
        fw(State::Downloaded, UpdateResult::Initial),
        "manifest restart",
    )
    .await;
    let reqs = fs.exchanges(MANIFEST);
    let switch = reqs.iter().position(|q| q.etag == [0xb]).unwrap();
    assert!(FileServer::cover(&reqs[switch..], len));
    let mut stopped = r.dev.stop().await;
    assert!(stopped.platform().staged(image.len()) == image);
}

#[tokio::test(start_paused = true)]
async fn late_negotiation_to_32_byte_blocks_still_yields_the_exact_image() {
    let link = mem();
    let key = release::key();
    let image = release::image(1000, 24);
    let fs = release_server(&link, &key, &image, 2).await;
    fs.set(|b| b.max_szx = Some(1));
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(
        fw(State::Downloaded, UpdateResult::Initial),
        "32-byte blocks",
    )
    .await;
    let manifest = fs.exchanges(MANIFEST);
    assert_eq!(
        (manifest[0].num, manifest[0].szx),
        (0, Some(2)),
        "the first request asks 64"
    );
    assert!(manifest[0].size2, "the first request asks for Size2");
    assert!(
        manifest[1..].iter().all(|q| q.szx == Some(1)),
        "then follows the server's 32"
    );
    // The image, from the same server, at 32 from the start: each block once.
    let image_reqs = fs.exchanges(IMAGE);
    assert!(image_reqs.iter().all(|q| q.szx == Some(1)));
    let mut nums: Vec<u32> = image_reqs.iter().map(|q| q.num).collect();
    nums.sort();
    assert_eq!(nums, (0..1000u32.div_ceil(32)).collect::<Vec<_>>());
    let mut stopped = r.dev.stop().await;
    assert!(stopped.platform().staged(image.len()) == image);
}

#[tokio::test(start_paused = true)]
async fn a_retransmitted_package_uri_write_gets_the_same_response_and_starts_one_download() {
    let link = mem();
    let key = release::key();
    let image = release::image(1000, 25);
    let fs = release_server(&link, &key, &image, 2).await;
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    let put =
        r.lw.con(coap::PUT, "5/0/1")
            .with_uint(opt::CONTENT_FORMAT, 0)
            .with_payload(fs.uri(MANIFEST).as_bytes());
    let bytes = put.encode();
    r.lw.send_raw(r.at, &bytes).await;
    r.lw.send_raw(r.at, &bytes).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let a =
            r.lw.recv_where(Duration::from_secs(20), |rx| {
                rx.msg.ty == coap::ACK && rx.msg.mid == put.mid
            })
            .await
            .expect("an answer to each copy");
        answers.push(a.raw);
    }
    assert_eq!(answers[0], answers[1], "the same response, byte for byte");
    assert_eq!(code_str(Msg::decode(&answers[0]).unwrap().code), "2.04");
    r.expect_end(fw(State::Downloaded, UpdateResult::Initial), "one download")
        .await;
    assert_eq!(
        r.dev.firmware_events(),
        vec![
            fw(State::Downloading, UpdateResult::Initial),
            fw(State::Downloaded, UpdateResult::Initial)
        ]
    );
    let manifest_blocks = fs.blocks(MANIFEST);
    assert_eq!(
        manifest_blocks.iter().filter(|&&n| n == 0).count(),
        1,
        "the manifest was fetched once: {manifest_blocks:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reused_message_id_with_a_new_token_is_a_new_request_not_a_retransmission() {
    // Server nodes that share one address count their message IDs apart: a request from one may
    // carry the ID of the last request from another. Only the token tells them apart.
    let link = mem();
    let key = release::key();
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    let first = r.lw.con(coap::GET, "5/0/3");
    let mut second = r.lw.con(coap::GET, "3/0/3");
    second.mid = first.mid;
    let mut answers = Vec::new();
    for req in [&first, &second] {
        r.lw.send_raw(r.at, &req.encode()).await;
        let a =
            r.lw.recv_where(Duration::from_secs(20), |rx| {
                rx.msg.ty == coap::ACK && rx.msg.mid == req.mid && rx.msg.token == req.token
            })
            .await
            .expect("an answer with the request's own token");
        answers.push(a.msg);
    }
    assert_eq!(code_str(answers[0].code), "2.05");
    assert_eq!(code_str(answers[1].code), "2.05");
    assert_eq!(answers[0].payload, b"0", "/5/0/3: State Idle");
    assert_eq!(
        answers[1].payload, b"1.0.0",
        "/3/0/3: the version, not State again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_download_interrupted_by_a_reboot_resumes_with_the_persisted_units() {
    let link = mem();
    let key = release::key();
    let image = release::image(10_000, 26);
    let fs = release_server(&link, &key, &image, 2).await;
    fs.set(|b| {
        b.answer_limit.insert(IMAGE.into(), 80);
    });
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    r.write_uri(&fs.uri(MANIFEST)).await;
    until("block 80 is asked for", || fs.requests(IMAGE).len() > 80).await;
    // Power off after 80 answered blocks (at least 5120 bytes): progress was persisted at least
    // once, every 4096 bytes.
    let mut stopped = r.dev.stop().await;
    let platform = stopped.platform();
    let rec = platform.record.clone().unwrap();
    assert_eq!(rec.state, State::Downloading);
    let d = rec.download.clone().expect("download progress persisted");
    assert_eq!(d.total, 10_000);
    let map = &d.received;
    assert!(
        map.bytes() >= 4096 && map.bytes() < 10_000,
        "{}",
        map.bytes()
    );
    // Every recorded unit is in the slot.
    for u in (0..map.units()).filter(|&u| map.has(u)) {
        let range = map.unit_range(u);
        let range = range.start as usize..range.end as usize;
        assert_eq!(platform.slot[range.clone()], image[range], "unit {u}");
    }
    let page0 = map.all_in(0..4096 / map.unit());
    assert!(page0, "the first page was recorded whole");

    // Reboot on the same flash; the host answers again.
    let before = fs.log.lock().unwrap().len();
    fs.set(|b| {
        b.answer_limit.clear();
    });
    let lw = r.lw;
    let mut dev = device::boot(
        &link,
        config(lw.addr, key.verifying_key()),
        platform,
        BootOutcome::Normal,
        "1.0.0",
    )
    .await;
    let at = lw.registered(2, Duration::from_secs(30)).await;
    let mut lw = lw;
    let end = dev.wait_download_end(LONG).await.expect("download ends");
    assert_eq!(
        end,
        fw(State::Downloaded, UpdateResult::Initial),
        "{:?}",
        dev.seen
    );
    assert_eq!(lw.object5(at).await, (2, 0));
    let after: Vec<_> = fs.log.lock().unwrap()[before..].to_vec();
    assert_eq!(
        (after[0].path.as_str(), after[0].num),
        (MANIFEST, 0),
        "the manifest is checked again first"
    );
    // Resumed, not restarted: nothing of the first page is asked for again.
    let images: Vec<_> = after.iter().filter(|q| q.path == IMAGE).collect();
    assert!(
        images.iter().all(|q| q.offset() >= 4096),
        "{:?}",
        images.iter().map(|q| (q.num, q.szx)).collect::<Vec<_>>()
    );
    let progress: Vec<u32> = dev
        .seen
        .iter()
        .filter_map(|e| match e {
            Event::Progress { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .collect();
    assert!(progress.first().is_some_and(|&b| b > 4096), "{progress:?}");
    let mut stopped = dev.stop().await;
    let platform = stopped.platform();
    assert!(
        platform.slot[..10_000] == image,
        "byte-exact across the reboot"
    );
    assert_eq!(
        platform.reprogrammed_words, 0,
        "each word programmed once per erase"
    );
    assert!(platform.max_erases() <= 2, "{:?}", platform.erases);
}

// ---- Observe ----

#[tokio::test(start_paused = true)]
async fn observe_state_notifies_every_change_and_a_reset_notification_ends_it() {
    let link = mem();
    let key = release::key();
    let image = release::image(640, 27);
    let fs = release_server(&link, &key, &image, 2).await;
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    let obs = r.lw.con(coap::GET, "5/0/3").with_uint(opt::OBSERVE, 0);
    let first = r.lw.request(r.at, &obs).await;
    assert_eq!(code_str(first.code), "2.05");
    assert_eq!(first.text(), "0");
    let mut seq = first.uint(opt::OBSERVE).expect("Observe in the response");

    r.write_uri(&fs.uri(MANIFEST)).await;
    for want in ["1", "2"] {
        let n =
            r.lw.notification(&obs.token, LONG)
                .await
                .unwrap_or_else(|| panic!("no notification of State {want}"))
                .msg;
        assert_eq!(n.ty, coap::CON, "notifications are confirmable: {n:?}");
        assert_eq!(code_str(n.code), "2.05");
        assert_eq!(n.text(), want);
        let s = n.uint(opt::OBSERVE).unwrap();
        assert!(s > seq, "Observe increases: {s} after {seq}");
        seq = s;
    }
    assert_eq!(r.end().await, fw(State::Downloaded, UpdateResult::Initial));

    // The server answers the next notification with RST: the observation is gone.
    r.lw.shared
        .rst_tokens
        .lock()
        .unwrap()
        .insert(obs.token.clone());
    r.write_uri("").await;
    let n =
        r.lw.notification(&obs.token, LONG)
            .await
            .expect("notification of 0");
    assert_eq!(n.msg.text(), "0");
    assert_eq!(r.lw.shared.reset.lock().unwrap().len(), 1, "it was reset");
    r.dev.clear();
    r.write_uri(&fs.uri(MANIFEST)).await;
    assert_eq!(r.end().await, fw(State::Downloaded, UpdateResult::Initial));
    assert!(
        r.lw.notification(&obs.token, Duration::from_secs(300))
            .await
            .is_none(),
        "no notification after the RST"
    );
}

// ---- malformed datagrams ----

#[tokio::test(start_paused = true)]
async fn malformed_datagrams_get_rst_or_are_ignored_and_the_engine_keeps_working() {
    let link = mem();
    let key = release::key();
    let image = release::image(500, 28);
    let fs = release_server(&link, &key, &image, 2).await;
    let mut r = rig(&link, &key, RamPlatform::default()).await;
    // CON message format errors (RFC 7252 §3, §4.2): Reset with the same message id.
    for (what, d) in [
        (
            "option delta nibble 15",
            vec![0x40, 0x01, 0x12, 0x34, 0xf1, 0x00],
        ),
        (
            "option length nibble 15",
            vec![0x40, 0x01, 0x12, 0x35, 0xbf],
        ),
        (
            "token length 9",
            vec![0x49, 0x01, 0x12, 0x36, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ),
        (
            "payload marker, no payload",
            vec![0x40, 0x01, 0x12, 0x37, 0xff],
        ),
        ("CoAP ping (empty CON)", vec![0x40, 0x00, 0x12, 0x38]),
    ] {
        r.lw.send_raw(r.at, &d).await;
        let mid = u16::from_be_bytes([d[2], d[3]]);
        let got =
            r.lw.recv_where(Duration::from_secs(10), |rx| rx.msg.mid == mid)
                .await
                .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(got.raw, Msg::empty(coap::RST, mid).encode(), "{what}: RST");
    }
    // An unknown critical option in a request: 4.02.
    let bad = r.lw.con(coap::GET, "5/0/3").with_opt(2049, b"x");
    let resp = r.lw.request(r.at, &bad).await;
    assert_eq!((resp.ty, code_str(resp.code)), (coap::ACK, "4.02".into()));
    // Non-confirmable garbage, other versions and runts: silently ignored.
    for d in [
        vec![0x50, 0x01, 0x0b, 0x0b, 0xf1, 0x00],
        vec![0x00, 0x01, 0x0b, 0x0c],
        vec![0x80, 0x01, 0x0b, 0x0d, 0xff, 1],
        b"hello, device".to_vec(),
        vec![0x40],
        vec![],
    ] {
        r.lw.send_raw(r.at, &d).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stray: Vec<_> =
        r.lw.pending()
            .iter()
            .filter(|rx| [0x0b0b, 0x0b0c, 0x0b0d].contains(&rx.msg.mid))
            .map(|rx| rx.msg.clone())
            .collect();
    assert!(stray.is_empty(), "answers to ignored datagrams: {stray:?}");
    // Still working: reads, and a whole update download.
    assert_eq!(r.wire().await, (0, 0));
    r.write_uri(&fs.uri(MANIFEST)).await;
    r.expect_end(
        fw(State::Downloaded, UpdateResult::Initial),
        "after the garbage",
    )
    .await;
    let mut stopped = r.dev.stop().await;
    assert!(stopped.platform().staged(image.len()) == image);
}

// ---- 11: deferred ----

/// A device whose user defers updates, with a release downloaded and Maximum Defer Period 60 s.
async fn deferring_rig_downloaded(seed: u32) -> Rig {
    let link = mem();
    let key = release::key();
    let image = release::image(1000, seed);
    let fs = release_server(&link, &key, &image, 2).await;
    let lw = LwServer::start(&link).await;
    let cfg = lwm2m_client::engine::Config {
        defer_updates: true,
        ..config(lw.addr, key.verifying_key())
    };
    let dev = device::boot(
        &link,
        cfg,
        RamPlatform::default(),
        BootOutcome::Normal,
        "1.0.0",
    )
    .await;
    let at = lw.registered(1, Duration::from_secs(30)).await;
    let mut r = Rig { lw, dev, at };
    r.write_uri(&fs.uri(MANIFEST)).await;
    assert!(
        r.lw.poll_state(r.at, 2, Duration::from_millis(200), LONG)
            .await,
        "Downloaded"
    );
    // Maximum Defer Period 0 (the default) allows no deferral; set 60 s.
    assert_eq!(
        code_str(r.lw.write_text(r.at, "5/0/13", "60").await.code),
        "2.04"
    );
    r
}

#[tokio::test(start_paused = true)]
async fn result_11_when_the_user_defers_until_the_maximum_defer_period_and_never_a_critical_update()
{
    let mut r = deferring_rig_downloaded(31).await;
    assert_eq!(r.code_of_execute("5/0/2").await, "2.04");
    assert_eq!(
        r.wire().await,
        (2, 11),
        "deferred: still Downloaded, Result 11"
    );
    assert!(
        r.dev
            .wait_event(Duration::from_secs(30), |e| *e == Event::Reboot)
            .await
            .is_none(),
        "not before the period ends"
    );
    // When the period is over the device installs without asking.
    let reboot = r
        .dev
        .wait_event(Duration::from_secs(40), |e| *e == Event::Reboot)
        .await;
    assert_eq!(
        reboot,
        Some(Event::Reboot),
        "installed after the maximum defer period"
    );
}

#[tokio::test(start_paused = true)]
async fn a_critical_update_is_never_deferred() {
    let mut r = deferring_rig_downloaded(32).await;
    assert_eq!(
        code_str(r.lw.write_text(r.at, "5/0/11", "0").await.code),
        "2.04",
        "Severity Critical"
    );
    assert_eq!(
        code_str(r.lw.write_text(r.at, "5/0/11", "7").await.code),
        "4.00",
        "no Severity 7"
    );
    assert_eq!(r.code_of_execute("5/0/2").await, "2.04");
    assert_eq!(
        r.dev
            .wait_event(Duration::from_secs(5), |e| *e == Event::Reboot)
            .await,
        Some(Event::Reboot)
    );
}

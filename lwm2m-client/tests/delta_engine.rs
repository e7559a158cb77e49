//! A delta release through the engine, on the wire (the rig of object5_results.rs: the host
//! driver over an in-memory network, a scripted LwM2M server and a Block2 file server, tokio's
//! paused clock): the precursor is checked against the running image before any patch byte is
//! fetched, the patch is applied in order into the staging slot, and the staged image is the
//! manifest's, byte for byte; a bad patch fails with Result 5 and nothing bootable.
#![cfg(feature = "std")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use delta_patch::{Compression, create_patch};
use lwm2m_client::engine::Event;
use lwm2m_client::host::Exit;
use lwm2m_client::platform::BootOutcome;
use lwm2m_core::object5::{State, UpdateResult};
use p256::ecdsa::SigningKey;
use suit_manifest::Algorithm;
use suit_manifest::builder::{self, DeltaSpec, ManifestSpec};
use support::coap::code_str;
use support::device::{self, Device, config};
use support::fileserver::FileServer;
use support::lwm2m::LwServer;
use support::net::{Link, MemNet};
use support::platform::RamPlatform;
use testkit::release;

const LONG: Duration = Duration::from_secs(3600);
const MANIFEST: &str = "fw/manifest";
const PATCH: &str = "fw/patch";

struct Rig {
    lw: LwServer,
    dev: Device,
    at: SocketAddr,
}

async fn rig(link: &Link, trust: &SigningKey, platform: RamPlatform) -> Rig {
    let lw = LwServer::start(link).await;
    let dev = device::boot(
        link,
        config(lw.addr, trust.verifying_key()),
        platform,
        BootOutcome::Normal,
        "1.0.0",
    )
    .await;
    let at = lw.registered(1, Duration::from_secs(30)).await;
    Rig { lw, dev, at }
}

impl Rig {
    async fn pull(&mut self, uri: &str) -> (State, UpdateResult) {
        let r = self.lw.write_text(self.at, "5/0/1", uri).await;
        assert_eq!(code_str(r.code), "2.04", "write /5/0/1: {r:?}");
        self.dev
            .wait_download_end(LONG)
            .await
            .unwrap_or_else(|| panic!("the download never ended: {:?}", self.dev.drain()))
    }
}

/// An old image and a new one that shares most of it (a patch a few per cent of the image).
pub fn images() -> (Vec<u8>, Vec<u8>) {
    let old = release::image(20_000, 3);
    let mut new = old.clone();
    for at in (0..new.len()).step_by(997) {
        new[at] = new[at].wrapping_add(1);
    }
    new.splice(5000..5000, release::image(300, 9));
    new.truncate(19_500);
    (old, new)
}

/// A signed delta release of `new` against `precursor`, its payload at "patch".
pub fn delta_envelope(key: &SigningKey, precursor: &[u8], new: &[u8], seq: u64) -> Vec<u8> {
    let comp = release::component(new, "patch", "2.0.0");
    let mut spec = ManifestSpec::new(seq, comp);
    spec.delta = Some(DeltaSpec::detools_from(precursor));
    builder::signed_envelope(&spec, key, Algorithm::Es256).unwrap()
}

fn mem() -> Link {
    Link::Mem(MemNet::new())
}

fn running(old: &[u8]) -> RamPlatform {
    RamPlatform {
        active: old.to_vec(),
        ..RamPlatform::default()
    }
}

/// Runs a delta pull of `patch` for a device running `active`; returns the end, the platform
/// and the patch blocks requested.
pub async fn delta_pull(
    key: &SigningKey,
    active: &[u8],
    precursor: &[u8],
    new: &[u8],
    patch: &[u8],
) -> ((State, UpdateResult), RamPlatform, usize) {
    let link = mem();
    let env = delta_envelope(key, precursor, new, 5);
    let fs = FileServer::start(&link, &[(MANIFEST, &env), (PATCH, patch)]).await;
    let mut r = rig(&link, key, running(active)).await;
    let end = r.pull(&fs.uri(MANIFEST)).await;
    let asked = fs.requests(PATCH).len();
    let p = r.dev.stop().await.platform();
    (end, p, asked)
}

#[tokio::test(start_paused = true)]
async fn a_delta_release_is_applied_in_order_and_staged_byte_exact_then_updates() {
    let key = release::key();
    let (old, new) = images();
    let patch = create_patch(&old, &new, Compression::HEATSHRINK);
    println!(
        "delta: patch {} bytes for an image of {} ({:.1} %)",
        patch.len(),
        new.len(),
        100.0 * patch.len() as f64 / new.len() as f64
    );
    assert!(
        patch.len() < new.len() / 4,
        "a patch smaller than the image"
    );
    let link = mem();
    let env = delta_envelope(&key, &old, &new, 5);
    let fs = FileServer::start(&link, &[(MANIFEST, &env), (PATCH, &patch)]).await;
    let mut r = rig(&link, &key, running(&old)).await;
    let end = r.pull(&fs.uri(MANIFEST)).await;
    assert_eq!(
        end,
        (State::Downloaded, UpdateResult::Initial),
        "{:?}",
        r.dev.seen
    );
    // Update proceeds as for a full image.
    assert_eq!(code_str(r.lw.execute(r.at, "5/0/2").await.code), "2.04");
    assert!(
        r.dev
            .wait_event(LONG, |e| *e == Event::Reboot)
            .await
            .is_some(),
        "Update asks for a reboot"
    );
    let mut stopped = r.dev.stop().await;
    assert_eq!(stopped.exits.first(), Some(&Exit::Reboot));
    let p = stopped.platform();
    assert!(p.marked, "marked for a trial boot");
    assert_eq!(
        p.staged(new.len()),
        &new[..],
        "the staged image is the new one"
    );
    assert_eq!(p.reprogrammed_words, 0, "no word programmed twice");
    let served = fs.requests(PATCH).len();
    println!("delta: {served} patch requests");
}

#[tokio::test(start_paused = true)]
async fn a_precursor_that_is_not_the_running_image_is_result_6_and_no_patch_byte_asked() {
    let key = release::key();
    let (old, new) = images();
    let patch = create_patch(&old, &new, Compression::HEATSHRINK);
    let mut other = old.clone();
    other[10] ^= 1;
    let (end, p, asked) = delta_pull(&key, &other, &old, &new, &patch).await;
    assert_eq!(end, (State::Idle, UpdateResult::UnsupportedPackage));
    assert_eq!(asked, 0, "no patch block requested");
    assert!(!p.marked);
    // A device that does not know its running image refuses a delta the same way.
    let (end, _, asked) = delta_pull(&key, &[], &old, &new, &patch).await;
    assert_eq!((end.1, asked), (UpdateResult::UnsupportedPackage, 0));
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_patch_is_result_5_and_nothing_is_bootable() {
    let key = release::key();
    let (old, new) = images();
    let patch = create_patch(&old, &new, Compression::HEATSHRINK);
    // A flipped byte in the header or the body: either the applier refuses the patch or the
    // image it makes is not the manifest's; both are integrity failures. (Not the last byte: its
    // low bits may be heatshrink padding that no decoder reads.)
    for at in [
        1usize,
        patch.len() / 3,
        patch.len() / 2,
        patch.len() * 3 / 4,
    ] {
        let mut bad = patch.clone();
        bad[at] ^= 0x5a;
        let (end, p, _) = delta_pull(&key, &old, &old, &new, &bad).await;
        assert_eq!(
            end,
            (State::Idle, UpdateResult::IntegrityFailure),
            "byte {at}"
        );
        assert!(!p.marked, "byte {at}");
        let rec = p.record.unwrap();
        assert!(rec.staged.is_none() && rec.pending.is_none(), "byte {at}");
    }
    // A patch cut short.
    let (end, _, _) = delta_pull(&key, &old, &old, &new, &patch[..patch.len() / 2]).await;
    assert_eq!(
        end,
        (State::Idle, UpdateResult::IntegrityFailure),
        "truncated"
    );
}

/// Waits (paused clock: no real time) until `done`, at most an hour of it.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..36_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(start_paused = true)]
async fn a_delta_over_a_lossy_link_with_small_blocks_still_stages_the_new_image() {
    let key = release::key();
    let (old, new) = images();
    let patch = create_patch(&old, &new, Compression::HEATSHRINK);
    let link = mem();
    let env = delta_envelope(&key, &old, &new, 5);
    let fs = FileServer::start(&link, &[(MANIFEST, &env), (PATCH, &patch)]).await;
    fs.set(|b| {
        b.drop_every.insert(PATCH.into(), 3);
        b.max_szx = Some(1); // 32-byte blocks, whatever the device asks
    });
    let mut r = rig(&link, &key, running(&old)).await;
    let end = r.pull(&fs.uri(MANIFEST)).await;
    assert_eq!(
        end,
        (State::Downloaded, UpdateResult::Initial),
        "{:?}",
        r.dev.seen
    );
    let p = r.dev.stop().await.platform();
    assert_eq!(p.staged(new.len()), &new[..]);
    assert_eq!(p.reprogrammed_words, 0);
}

#[tokio::test(start_paused = true)]
async fn a_delta_interrupted_by_a_reboot_is_applied_again_from_the_patch_start() {
    let key = release::key();
    let (old, new) = images();
    let patch = create_patch(&old, &new, Compression::HEATSHRINK);
    let link = mem();
    let env = delta_envelope(&key, &old, &new, 5);
    let fs = FileServer::start(&link, &[(MANIFEST, &env), (PATCH, &patch)]).await;
    fs.set(|b| {
        b.answer_limit.insert(PATCH.into(), 4);
        b.max_szx = Some(1);
    });
    let mut r = rig(&link, &key, running(&old)).await;
    let w = r.lw.write_text(r.at, "5/0/1", &fs.uri(MANIFEST)).await;
    assert_eq!(code_str(w.code), "2.04");
    until("patch block 4 asked", || fs.requests(PATCH).len() > 4).await;
    let platform = r.dev.stop().await.platform();
    assert_eq!(platform.record.clone().unwrap().state, State::Downloading);
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
    lw.registered(2, Duration::from_secs(30)).await;
    let end = dev.wait_download_end(LONG).await.expect("download ends");
    assert_eq!(
        end,
        (State::Downloaded, UpdateResult::Initial),
        "{:?}",
        dev.seen
    );
    let after: Vec<_> = fs.log.lock().unwrap()[before..].to_vec();
    let first = after.iter().find(|q| q.path == PATCH).expect("patch asked");
    assert_eq!(first.num, 0, "the patch is applied again from its start");
    let p = dev.stop().await.platform();
    assert_eq!(p.staged(new.len()), &new[..]);
    assert_eq!(
        p.reprogrammed_words, 0,
        "each page erased again before its words"
    );
}

/// A patch made by the Python `detools` package (the venv of scripts/setup.sh; skipped with a
/// notice when it is missing, unless CI=true), applied by the engine: the staged image is byte
/// for byte the new one.
#[tokio::test(start_paused = true)]
async fn a_patch_made_by_python_detools_is_applied_by_the_engine_byte_exact() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/detools");
    let Some(tool) = support::peers::peer_tool("detools (Python, in the venv)", path) else {
        return;
    };
    let key = release::key();
    let (old, new) = images();
    let tmp = tempfile::tempdir().unwrap();
    let (o, n, p) = (
        tmp.path().join("old"),
        tmp.path().join("new"),
        tmp.path().join("patch"),
    );
    std::fs::write(&o, &old).unwrap();
    std::fs::write(&n, &new).unwrap();
    let out = std::process::Command::new(&tool)
        .args([
            "create_patch",
            "--patch-type",
            "sequential",
            "--compression",
            "heatshrink",
        ])
        .args([&o, &n, &p])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let patch = std::fs::read(&p).unwrap();
    let (end, platform, _) = delta_pull(&key, &old, &old, &new, &patch).await;
    assert_eq!(end, (State::Downloaded, UpdateResult::Initial));
    assert_eq!(platform.staged(new.len()), &new[..], "byte-exact");
}

//! A power cut at every flash operation of a whole update, driven by the real engine on the real
//! flash stack: `FlashPlatform` (embassy-boot staging + sequential-storage record) on a `RamFlash`
//! with a power budget. storage_power.rs sweeps the storage layer with a hand-written update; this
//! sweeps what the device actually does: the engine's downloads, record stores and Update, the
//! bootloader's swap at the next power-on, the self-test and confirm, and the engine's first store
//! after the reboot.
//!
//! Each scenario: factory image 1.0.0 in ACTIVE, a scripted LwM2M server that writes the Package
//! URI, a Block2 file server with the signed manifest and the 2.0.0 image, all on an in-memory
//! network under tokio's paused clock (see support/net.rs). The uncut run gives N, the flash
//! operations from the first power-on until the device reports 2.0.0. Then, for every k < N and
//! both tear modes, the same scenario with the power cut at operation k: the device dies on the
//! spot (nothing it queued is sent), the power comes back, the boot logic of `lwm2m-client`'s
//! `boot_once` runs (bootloader, self-test, confirm, record, BootOutcome incl. the Normal+pending
//! rule), a new engine starts from the loaded record, and the server keeps driving: State 0 with
//! Result != 1 → write the URI again; State 2 → execute Update; otherwise wait.
//!
//! The file server leaves every 7th image request unanswered, so blocks are written out of order
//! and the map of received units has holes when the power goes. At every engine start the test
//! works out, from the record and the staging slot, what the download must resume with: every
//! recorded unit must be in flash byte for byte, and the units of a page that also holds a unit
//! written after the record was stored are dropped (that page is erased again); the resumed
//! download must then ask for none of the units it resumes with.
//!
//! The same sweep runs for a delta release (issue 15): the file server's "image" is then the
//! detools patch from 1.0.0 to a 2.0.0 that shares most of its bytes, which the engine applies in
//! order into DFU and, after a cut, applies again from its start (N = 265).
//!
//! Checked for every cut point: after every boot ACTIVE is byte-exactly one of the two images;
//! every status the server reads is the truth (running 2.0.0 ⇔ State 0, Result 1, /3/0/3 2.0.0;
//! running 1.0.0 ⇒ Result != 1; /3/0/3 is the running image's version); every power loss inside
//! the engine was reported as `Event::PlatformError`; and the update completes in the end.
//!
//! N = 217 for the 8150-byte image, so 434 runs (266 before downloads went out of order and
//! stopped erasing pages through embassy-boot's updater). Two bugs this sweep found (7 of the 532 cut
//! points failed), both fixed: `start_update` set the swap marker before the
//! record named the image as pending (a cut between the two left 2.0.0 running but reported as
//! Downloaded, and a second Update swapped in a mixed image); and `boot_once` installed the
//! factory image into an ACTIVE whose header a cut mid-swap had erased, before the bootloader
//! could finish the swap. The record is now stored first, and the factory image goes only into a
//! new flash file.
#![cfg(feature = "std")]

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delta_patch::{Compression, create_patch};
use embedded_storage::nor_flash::NorFlash;
use lwm2m_client::engine::{Engine, Event};
use lwm2m_client::flash_platform::FlashPlatform;
use lwm2m_client::image::{HEADER_LEN, make_image};
use lwm2m_client::platform::{BootInfo, BootOutcome};
use lwm2m_client::power_on::{PowerOn, PowerOnError, power_on};
use lwm2m_client::storage::flash::{RamFlash, Tear};
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use lwm2m_client::storage::slots;
use p256::ecdsa::VerifyingKey;
use suit_manifest::Algorithm;
use suit_manifest::builder::{self, DeltaSpec, ManifestSpec};
use support::coap::{self, opt};
use support::device::{MemClock, SPIN_STEP, config};
use support::fileserver::FileServer;
use support::lwm2m::LwServer;
use support::net::{Link, MemNet, MemSock};
use testkit::release;
use tokio::sync::Notify;

/// Three pages per slot: room for the ~8 KiB image, and a swap that moves three pages.
const SLOT: u32 = 12 * 1024;
const SETTINGS: u32 = 16 * 1024;
#[allow(clippy::panic)]
const LAYOUT: Layout = match Layout::new(0, SLOT, SETTINGS) {
    Ok(l) => l,
    Err(_) => panic!("test layout"),
};
/// STATE 4 KiB + ACTIVE 12 KiB + DFU 16 KiB + SETTINGS 16 KiB.
const FLASH_SIZE: usize = 48 * 1024;
type Flash = RamFlash<FLASH_SIZE>;
type Dev = DeviceFlash<Flash>;
type DeviceEngine<'f> = Engine<FlashPlatform<'f, Flash>>;

/// Not a multiple of the block (64) nor of the word (4): the last block is short and its tail
/// word is padded.
const IMAGE_LEN: usize = 8150;
const MANIFEST: &str = "fw/manifest";
const IMAGE: &str = "fw/image";
const TEARS: [Tear; 2] = [Tear::Half, Tear::Nothing];
/// Bounds of one scenario.
const MAX_BOOTS: usize = 10;
const MAX_URI_WRITES: usize = 5;
const VIRTUAL_LIMIT: Duration = Duration::from_secs(3 * 3600);
/// How long the server waits for a response before it takes the device for gone.
const RESPONSE_LIMIT: Duration = Duration::from_secs(20);

struct Fixture {
    trust: VerifyingKey,
    factory: Vec<u8>,
    new: Vec<u8>,
    envelope: Vec<u8>,
    /// What the manifest's URI serves: the new image, or for a delta release the patch from the
    /// factory image to it.
    payload: Vec<u8>,
    /// The flash as it leaves the factory: 1.0.0 in ACTIVE, no record.
    base: Flash,
}

impl Fixture {
    fn new(delta: bool) -> Fixture {
        let key = release::key();
        let factory = make_image("1.0.0", IMAGE_LEN, true).unwrap();
        let mut new = make_image("2.0.0", IMAGE_LEN, true).unwrap();
        if delta {
            // A new version that shares most of the old one (what deltas are for): 2.0.0's
            // header on 1.0.0's body with a byte changed every 500, so every page differs.
            new[HEADER_LEN..].copy_from_slice(&factory[HEADER_LEN..]);
            for at in (HEADER_LEN..IMAGE_LEN).step_by(500) {
                new[at] ^= 0xA5;
            }
        }
        // Manifest sequence 2, version 2.0.0, image (or patch) at the relative reference "image".
        let (envelope, payload) = if delta {
            let mut spec = ManifestSpec::new(2, release::component(&new, "image", "2.0.0"));
            spec.delta = Some(DeltaSpec::detools_from(&factory));
            let env = builder::signed_envelope(&spec, &key, Algorithm::Es256).unwrap();
            (env, create_patch(&factory, &new, Compression::HEATSHRINK))
        } else {
            (release::envelope(&key, &new, 2, "image"), new.clone())
        };
        let dev = DeviceFlash::new(Flash::new(), LAYOUT).unwrap();
        {
            // What `lwm2m-client`'s install_factory does on a new flash.
            let mut padded = factory.clone();
            padded.resize(IMAGE_LEN.next_multiple_of(Flash::ERASE_SIZE), 0xff);
            let mut active = dev.active();
            active.erase(0, padded.len() as u32).unwrap();
            active.write(0, &padded).unwrap();
        }
        Fixture {
            trust: *key.verifying_key(),
            factory,
            new,
            envelope,
            payload,
            base: dev.into_inner(),
        }
    }

    /// Which image ACTIVE holds, byte for byte; Err describes a mix.
    fn active(&self, dev: &Dev) -> Result<&'static str, String> {
        let mut buf = vec![0u8; IMAGE_LEN];
        slots::read_active(dev, 0, &mut buf).map_err(|e| format!("read ACTIVE: {e:?}"))?;
        if buf == self.new {
            return Ok("2.0.0");
        }
        if buf == self.factory {
            return Ok("1.0.0");
        }
        let pages: Vec<&str> = buf
            .chunks(Flash::ERASE_SIZE)
            .zip(self.factory.chunks(Flash::ERASE_SIZE))
            .zip(self.new.chunks(Flash::ERASE_SIZE))
            .map(|((a, f), n)| {
                if a == n {
                    "new"
                } else if a == f {
                    "old"
                } else {
                    "other"
                }
            })
            .collect();
        Err(format!("ACTIVE holds a mix, pages: {pages:?}"))
    }
}

/// The unit of the image's map: 8150 bytes fit 8192 units of 16 bytes.
const UNIT: u64 = 16;

/// What a boot's engine must resume the image download with, by the record it starts from and
/// the staging slot: every recorded unit (checked to be in flash, byte for byte), less the pages
/// that also hold a unit written after the record was stored (not blank: erased again). `None`
/// if the record holds no image progress.
fn resume_units(
    fx: &Fixture,
    dev: &Dev,
    info: &BootInfo,
) -> Result<Option<(Vec<u32>, u32, u32)>, String> {
    let Some(d) = info.record.as_ref().and_then(|r| r.download.as_ref()) else {
        return Ok(None);
    };
    let map = &d.received;
    if d.total as usize != IMAGE_LEN || map.units() == 0 {
        return Ok(None);
    }
    assert_eq!(u64::from(map.unit()), UNIT);
    let mut dfu = vec![0u8; IMAGE_LEN];
    slots::read_dfu(dev, 0, &mut dfu).map_err(|e| format!("read DFU: {e:?}"))?;
    let per_page = Flash::ERASE_SIZE as u32 / map.unit();
    let mut units = Vec::new();
    for page in 0..map.units().div_ceil(per_page) {
        let page_units: Vec<u32> =
            (page * per_page..((page + 1) * per_page).min(map.units())).collect();
        let mut dirty = false;
        for &u in &page_units {
            let r = map.unit_range(u);
            let bytes = &dfu[r.start as usize..r.end as usize];
            if map.has(u) {
                if bytes != &fx.new[r.start as usize..r.end as usize] {
                    return Err(format!("recorded unit {u} is not in flash"));
                }
            } else {
                dirty |= bytes.iter().any(|&b| b != 0xFF);
            }
        }
        if !dirty {
            units.extend(page_units.into_iter().filter(|&u| map.has(u)));
        }
    }
    let dropped = map.count() - units.len() as u32;
    Ok(Some((units, map.units(), dropped)))
}

fn ops(dev: &Dev) -> u64 {
    dev.with_flash(|f| f.ops()).unwrap()
}

fn powered(dev: &Dev) -> bool {
    dev.with_flash(|f| f.is_powered()).unwrap()
}

// ---- the device's boot logic (lwm2m-client's boot_once) ----

enum Boot {
    /// Start the engine with this.
    Run(Box<BootInfo>),
    /// The trial image failed its self-test: reset without confirming.
    SelfTestFailed,
    /// The power died during this flash call.
    PowerLoss(&'static str),
}

/// A failed flash call at boot: a power loss if the power is off, else a bug in the test.
fn lost(dev: &Dev, site: &'static str, e: impl std::fmt::Debug) -> Boot {
    assert!(!powered(dev), "{site} failed with the power on: {e:?}");
    Boot::PowerLoss(site)
}

/// The device's power-on (`lwm2m_client::power_on`, which `lwm2m-client`'s `boot_once` runs):
/// bootloader, self-test and confirm of a trial boot, the persisted record, and the BootOutcome.
/// The factory image goes only into a new flash, which the fixture made: `factory_installed`
/// stays false.
fn boot_logic(dev: &Dev, factory: &[u8], factory_installed: &mut bool) -> Boot {
    let _ = (factory, &factory_installed);
    match power_on(dev) {
        Ok(PowerOn::Run(info)) => Boot::Run(Box::new(info)),
        Ok(PowerOn::SelfTestFailed(_)) => Boot::SelfTestFailed,
        Err(PowerOnError::NoImage) => panic!("no bootable image after the bootloader"),
        Err(e) => lost(dev, "power-on", e),
    }
}

// ---- the scripted server ----

/// (State, Update Result, /3/0/3) as the server read them from the device at `at`.
#[derive(Clone, Debug)]
struct Obs {
    at: SocketAddr,
    state: u8,
    result: u8,
    version: String,
}

#[derive(Default)]
struct ServerLog {
    obs: Vec<Obs>,
    uri_writes: usize,
    executes: usize,
    /// The server stopped: it read State 0 + Result 1 (true), or gave up (false).
    finished: Option<bool>,
}

/// GET of a text resource; None if no 2.05 comes (the device is gone).
async fn read(lw: &mut LwServer, to: SocketAddr, path: &str) -> Option<String> {
    let req = lw.con(coap::GET, path);
    lw.send_raw(to, &req.encode()).await;
    let r = lw.response_to(&req, RESPONSE_LIMIT).await?;
    (coap::code_str(r.code) == "2.05").then(|| r.text())
}

/// Sends `req`; true if any response came.
async fn send(lw: &mut LwServer, to: SocketAddr, req: coap::Msg) -> bool {
    lw.send_raw(to, &req.encode()).await;
    lw.response_to(&req, RESPONSE_LIMIT).await.is_some()
}

/// Drives the update on whichever device registered last, until it reads State 0 + Result 1.
async fn server_script(
    mut lw: LwServer,
    uri: String,
    log: Arc<Mutex<ServerLog>>,
    done: Arc<Notify>,
) {
    let mut seen = 0;
    let mut at: Option<SocketAddr> = None;
    let finish = |ok: bool| {
        log.lock().unwrap().finished = Some(ok);
        done.notify_one();
    };
    loop {
        {
            let regs = lw.shared.registrations.lock().unwrap();
            if regs.len() > seen {
                seen = regs.len();
                at = regs.last().copied();
            }
        }
        let Some(to) = at else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let status = async {
            let version = read(&mut lw, to, "3/0/3").await?;
            let state = read(&mut lw, to, "5/0/3").await?.parse().ok()?;
            let result = read(&mut lw, to, "5/0/5").await?.parse().ok()?;
            Some((state, result, version))
        }
        .await;
        let Some((state, result, version)) = status else {
            // Gone (power cut or reset): wait for it to register again.
            at = None;
            continue;
        };
        log.lock().unwrap().obs.push(Obs {
            at: to,
            state,
            result,
            version,
        });
        match (state, result) {
            (0, 1) => return finish(true),
            (0, _) => {
                let n = {
                    let mut l = log.lock().unwrap();
                    l.uri_writes += 1;
                    l.uri_writes
                };
                if n > MAX_URI_WRITES {
                    return finish(false);
                }
                let req = lw
                    .con(coap::PUT, "5/0/1")
                    .with_uint(opt::CONTENT_FORMAT, 0)
                    .with_payload(uri.as_bytes());
                if !send(&mut lw, to, req).await {
                    at = None;
                    continue;
                }
            }
            (2, _) => {
                log.lock().unwrap().executes += 1;
                let req = lw.con(coap::POST, "5/0/2");
                if !send(&mut lw, to, req).await {
                    at = None;
                    continue;
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ---- the device ----

enum Stop {
    /// The power died during an engine call; whether the engine reported PlatformError.
    PowerLoss { platform_error: bool },
    /// The engine asked for the reset after Update.
    Reboot,
}

/// Drains the events: (PlatformError was among them, Reboot was among them).
fn drain(engine: &mut DeviceEngine<'_>) -> (bool, bool) {
    let (mut platform_error, mut reboot) = (false, false);
    while let Some(e) = engine.poll_event() {
        platform_error |= e == Event::PlatformError;
        reboot |= e == Event::Reboot;
    }
    (platform_error, reboot)
}

/// support/device.rs `run_mem` on this engine, plus the power: once the flash has lost it, the
/// device is dead at once (what it queued is never sent).
async fn drive(
    engine: &mut DeviceEngine<'_>,
    dev: &Dev,
    socket: &MemSock,
    clock: &MemClock,
    spins: &mut u64,
    site: &mut String,
) -> Stop {
    let mut tx = vec![0u8; 1500];
    let mut timed_out_at = Some(clock.now());
    let label = |engine: &DeviceEngine<'_>| format!("engine in State {:?}", engine.state());
    *site = label(engine);
    engine.handle_timeout(clock.now());
    loop {
        if !powered(dev) {
            return Stop::PowerLoss {
                platform_error: drain(engine).0,
            };
        }
        let (_, reboot) = drain(engine);
        while let Some((peer, n)) = engine.poll_transmit(clock.now(), &mut tx) {
            socket.send_to(&tx[..n], peer);
        }
        if reboot {
            return Stop::Reboot;
        }
        let now = clock.now();
        let deadline = match engine.poll_timeout() {
            Some(d) if d <= now && timed_out_at == Some(now) => {
                *spins += 1;
                Some(tokio::time::Instant::now() + SPIN_STEP)
            }
            d => d.map(|d| {
                tokio::time::Instant::now() + Duration::from_millis(d.0.saturating_sub(now.0))
            }),
        };
        tokio::select! {
            biased;
            received = socket.recv_from() => {
                let (bytes, from) = received.expect("the device's socket stays open");
                timed_out_at = None;
                *site = label(engine);
                engine.handle_datagram(clock.now(), from, &bytes);
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                let now = clock.now();
                timed_out_at = Some(now);
                *site = label(engine);
                engine.handle_timeout(now);
            }
        }
    }
}

/// What one scenario did.
#[derive(Default, Debug)]
struct Run {
    /// Flash operations from the first power-on to the end.
    ops: u64,
    /// Where the power died, if it did.
    cut_site: Option<String>,
    /// Power-ons (each runs the boot logic).
    power_ons: usize,
    /// Per engine start that resumed an image download: (units it should resume with, units of
    /// the image), and the index of the file server's log where that start began.
    resumes: Vec<(Vec<u32>, u32, usize)>,
    /// Recorded units dropped at a start because their page held a unit written after the record.
    dropped: u32,
    /// Per engine start: the device's address, the running version, the BootOutcome given to the engine.
    boots: Vec<(SocketAddr, String, BootOutcome)>,
    obs: Vec<Obs>,
    uri_writes: usize,
    executes: usize,
    /// The server read State 0 + Result 1.
    finished: bool,
    /// Why the scenario ended otherwise.
    stuck: Option<String>,
    /// ACTIVE had no image header before the bootloader ran, so boot_once installed the factory
    /// image.
    factory_installed: bool,
    spins: u64,
    /// Everything wrong, for the report.
    problems: Vec<String>,
}

async fn scenario(fx: &Fixture, cut: Option<(u64, Tear)>) -> Run {
    let net = MemNet::new();
    let link = Link::Mem(net.clone());
    let fs = FileServer::start(&link, &[(MANIFEST, &fx.envelope), (IMAGE, &fx.payload)]).await;
    // Every 7th image request goes unanswered: later blocks are written first and the holes
    // filled afterwards, so the map has gaps when the power goes.
    fs.set(|b| {
        b.drop_every.insert(IMAGE.into(), 7);
    });
    let lw = LwServer::start(&link).await;
    let server = lw.addr;
    let log = Arc::new(Mutex::new(ServerLog::default()));
    let done = Arc::new(Notify::new());
    let script = tokio::spawn(server_script(
        lw,
        fs.uri(MANIFEST),
        log.clone(),
        done.clone(),
    ));

    let dev: Box<Dev> = Box::new(DeviceFlash::new(fx.base.clone(), LAYOUT).unwrap());
    let start = ops(&dev);
    if let Some((k, tear)) = cut {
        dev.with_flash_mut(|f| f.cut_power_after_with(k, tear));
    }
    let deadline = tokio::time::Instant::now() + VIRTUAL_LIMIT;
    let mut run = Run::default();
    let mut boots = 0;
    loop {
        if boots == MAX_BOOTS {
            run.stuck = Some(format!("still not done after {MAX_BOOTS} boots"));
            break;
        }
        boots += 1;
        if !powered(&dev) {
            dev.with_flash_mut(|f| f.power_cycle());
        }
        let mut factory_installed = false;
        let info = match boot_logic(&dev, &fx.factory, &mut factory_installed) {
            Boot::Run(info) => info,
            Boot::SelfTestFailed => continue,
            Boot::PowerLoss(site) => {
                run.cut_site = Some(format!("boot: {site}"));
                run.factory_installed |= factory_installed;
                continue;
            }
        };
        if factory_installed {
            run.factory_installed = true;
            run.problems.push(format!(
                "boot {boots}: ACTIVE had no image header before the bootloader ran, and \
                 boot_once's new-flash branch installed the factory image there"
            ));
        }
        match fx.active(&dev) {
            Ok(v) if v == info.running_version.as_str() => {}
            Ok(v) => run.problems.push(format!(
                "boot {boots}: header says {} but ACTIVE is {v}",
                info.running_version
            )),
            Err(mix) => {
                run.problems.push(format!("boot {boots}: {mix}"));
                run.stuck = Some("stopped at the mixed image".into());
                break;
            }
        }
        if let Err(p) = resume_units(fx, &dev, &info).map(|resume| {
            if let Some((units, of, dropped)) = resume {
                run.dropped += dropped;
                run.resumes.push((units, of, fs.log.lock().unwrap().len()));
            }
        }) {
            run.problems.push(format!("boot {boots}: {p}"));
        }
        let mut cfg = config(server, &fx.trust);
        cfg.seed = 0x5eed_0000 ^ (boots as u32).wrapping_mul(0x9e37_79b9);
        let socket = net.bind();
        run.boots
            .push((socket.addr, info.running_version.to_string(), info.outcome));
        let mut word = slots::StateWord::new();
        let platform = FlashPlatform::new(&dev, &mut word).expect("staging");
        let clock = MemClock::new();
        let mut engine = Engine::new(cfg, platform, *info, clock.now());
        let mut site = String::from("engine start (after-boot store)");
        let stop = if !powered(&dev) {
            Some(Stop::PowerLoss {
                platform_error: drain(&mut engine).0,
            })
        } else {
            tokio::select! {
                biased;
                _ = done.notified() => None,
                _ = tokio::time::sleep_until(deadline) => {
                    run.stuck = Some("virtual time limit".into());
                    None
                }
                s = drive(&mut engine, &dev, &socket, &clock, &mut run.spins, &mut site) => Some(s),
            }
        };
        match stop {
            None => break,
            Some(Stop::Reboot) => {}
            Some(Stop::PowerLoss { platform_error }) => {
                if !platform_error {
                    run.problems
                        .push(format!("power lost in {site} without Event::PlatformError"));
                }
                run.cut_site = Some(format!("{site} on {}", run.boots.last().unwrap().1));
            }
        }
    }
    run.ops = ops(&dev) - start;
    run.power_ons = boots;
    // A resumed download asks for no unit it resumed with: the units in flash are used as they
    // are, and none is written twice.
    let requests = fs.log.lock().unwrap().clone();
    for (i, (units, _, from)) in run.resumes.iter().enumerate() {
        let to = run.resumes.get(i + 1).map_or(requests.len(), |r| r.2);
        for q in requests[*from..to].iter().filter(|q| q.path == IMAGE) {
            let r = q.range();
            if units
                .iter()
                .any(|&u| (u as u64 * UNIT) < r.end && r.start < (u as u64 + 1) * UNIT)
            {
                run.problems.push(format!(
                    "a resumed download asked again for block {} (size {}) it had in flash",
                    q.num,
                    16 << q.szx.unwrap_or(6)
                ));
                break;
            }
        }
    }
    script.abort();
    let log = log.lock().unwrap();
    run.obs = log.obs.clone();
    run.uri_writes = log.uri_writes;
    run.executes = log.executes;
    run.finished = log.finished == Some(true);
    if log.finished == Some(false) {
        run.stuck = Some(format!(
            "the server gave up after {MAX_URI_WRITES} URI writes"
        ));
    }
    check(fx, &dev, &mut run);
    run
}

/// The truth, on every status the server read and at the end.
fn check(fx: &Fixture, dev: &Dev, run: &mut Run) {
    let mut problems = Vec::new();
    for o in &run.obs {
        let Some((_, running, _)) = run.boots.iter().find(|b| b.0 == o.at) else {
            problems.push(format!("status from an unknown device {o:?}"));
            continue;
        };
        let (s, r, v) = (o.state, o.result, o.version.as_str());
        if v != running {
            problems.push(format!("/3/0/3 reads {v:?} but {running} runs"));
        }
        if running == "2.0.0" && (s, r) != (0, 1) {
            problems.push(format!(
                "2.0.0 runs but the device reports State {s} Result {r}"
            ));
        }
        if running != "2.0.0" && r == 1 {
            problems.push(format!(
                "{running} runs but the device reports Result 1 (State {s})"
            ));
        }
    }
    let last_boot = run.boots.last().map(|b| (b.0, b.1.clone()));
    match fx.active(dev) {
        Ok("2.0.0") => {}
        Ok(v) => problems.push(format!("ends running {v}")),
        Err(mix) => problems.push(format!("ends with {mix}")),
    }
    match (run.obs.last(), last_boot) {
        (Some(o), Some((addr, _))) if o.at == addr => {
            if (o.state, o.result, o.version.as_str()) != (0, 1, "2.0.0") {
                problems.push(format!("ends reporting {o:?}"));
            }
        }
        (o, _) => problems.push(format!(
            "no final status from the running device (last {o:?})"
        )),
    }
    if !run.finished {
        problems.push(format!(
            "not completed: {}",
            run.stuck.clone().unwrap_or_else(|| "?".into())
        ));
    }
    if run.spins > 0 {
        problems.push(format!("{} busy-loop deadlines", run.spins));
    }
    run.problems.extend(problems);
}

/// How a scenario went, for the distribution.
fn outcome(run: &Run) -> String {
    let mut s = format!(
        "{} power-ons, URI written {}x, Update executed {}x",
        run.power_ons, run.uri_writes, run.executes
    );
    for (units, of, _) in &run.resumes {
        let _ = write!(s, ", image resumed with {} of {of} units", units.len());
    }
    if run.dropped > 0 {
        let _ = write!(s, " ({} recorded dropped: page erased again)", run.dropped);
    }
    if run.obs.iter().any(|o| o.result == 8) {
        s.push_str(", Result 8 reported first");
    }
    if !run.problems.is_empty() {
        s.push_str(" -> FAILED");
    }
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn power_cut_at_every_flash_operation_of_an_engine_driven_update() {
    sweep(false);
}

/// The same sweep for a delta release (issue 15): the patch is applied in order into DFU and,
/// after a cut, applied again from its start; ACTIVE is always one image or the other.
#[test]
fn power_cut_at_every_flash_operation_of_an_engine_driven_delta_update() {
    sweep(true);
}

fn sweep(delta: bool) {
    let started = std::time::Instant::now();
    let fx = Fixture::new(delta);
    println!(
        "{}: payload {} bytes for a {}-byte image",
        if delta { "delta" } else { "full" },
        fx.payload.len(),
        fx.new.len()
    );

    let reference = runtime().block_on(scenario(&fx, None));
    assert!(
        reference.problems.is_empty() && reference.cut_site.is_none(),
        "the uncut update: {reference:#?}"
    );
    assert_eq!(
        (
            reference.uri_writes,
            reference.executes,
            reference.boots.len()
        ),
        (1, 1, 2),
        "the uncut update: one URI write, one Update, one reboot"
    );
    let n = reference.ops;
    println!(
        "uncut update: {n} flash operations (download, Update, swap, confirm, after-boot store), {:?}",
        started.elapsed()
    );

    let jobs: Vec<(u64, Tear)> = TEARS
        .iter()
        .flat_map(|&t| (0..n).map(move |k| (k, t)))
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(u64, Tear, Run)>> = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            std::thread::Builder::new()
                .stack_size(16 << 20)
                .spawn_scoped(s, || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(k, tear)) = jobs.get(i) else {
                            return;
                        };
                        let run = runtime().block_on(scenario(&fx, Some((k, tear))));
                        results.lock().unwrap().push((k, tear, run));
                    }
                })
                .unwrap();
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(k, t, _)| (*t == Tear::Nothing, *k));

    let mut failures = Vec::new();
    let mut factory_installed = Vec::new();
    for tear in TEARS {
        let runs: Vec<_> = results.iter().filter(|r| r.1 == tear).collect();
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        // Per site: how many cut points, and the first and last operation index.
        let mut sites: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
        for (k, _, run) in &runs {
            if run.cut_site.is_none() {
                failures.push(format!("cut {k} ({tear:?}): the power was never cut"));
            }
            *outcomes.entry(outcome(run)).or_default() += 1;
            let site = sites
                .entry(run.cut_site.clone().unwrap_or_else(|| "never".into()))
                .or_insert((0, *k, *k));
            *site = (site.0 + 1, site.1.min(*k), site.2.max(*k));
            if run.factory_installed {
                factory_installed.push(format!("{k} ({tear:?})"));
            }
            if !run.problems.is_empty() {
                failures.push(format!(
                    "cut {k} ({tear:?}) in {}: {}",
                    run.cut_site.as_deref().unwrap_or("?"),
                    run.problems.join("; ")
                ));
            }
        }
        let completed = runs.iter().filter(|r| r.2.problems.is_empty()).count();
        println!(
            "tear {tear:?}: {} cut points covered, {completed} completed the update correctly",
            runs.len()
        );
        println!("  where the power died:");
        let mut by_first: Vec<_> = sites.iter().collect();
        by_first.sort_by_key(|(_, (_, first, _))| *first);
        for (site, (c, first, last)) in by_first {
            println!("    {c:4}  ops {first:3}..={last:3}  {site}");
        }
        println!("  outcomes:");
        for (o, c) in &outcomes {
            println!("    {c:4}  {o}");
        }
        println!(
            "  cut points where the server had to do more than once (URI, Update) or saw Result 8:"
        );
        for (k, _, run) in &runs {
            if run.uri_writes != 1 || run.executes != 1 || run.obs.iter().any(|o| o.result == 8) {
                println!(
                    "    cut {k:3} in {}: {}",
                    run.cut_site.as_deref().unwrap_or("?"),
                    outcome(run)
                );
            }
        }
    }
    if !factory_installed.is_empty() {
        println!(
            "boot_once's new-flash branch (no image header in ACTIVE) ran at {} cut points: {}",
            factory_installed.len(),
            factory_installed.join(", ")
        );
    }
    println!("total {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {} cut points went wrong:\n{}",
        failures.len(),
        results.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

//! One simulated device: the real engine (`lwm2m_client::engine`) over the real flash stack
//! (embassy-boot slots and the sequential-storage record) on a [`HeapFlash`], powered on through
//! `lwm2m_client::power_on` like the board and the `lwm2m-client` binary. The simulator can cut
//! its power at a flash operation or at a moment, and looks at its flash afterwards.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwm2m_client::engine::{Config, Engine, Event};
use lwm2m_client::flash_platform::FlashPlatform;
use lwm2m_client::host::{self, Clock, Exit, OscoreSocket};
use lwm2m_client::oscore::{FlashSeqStore, Oscore};
use lwm2m_client::power_on::{PowerOn, install_factory, power_on, running_image};
use lwm2m_client::storage::flash::{HeapFlash, Tear};
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use lwm2m_client::storage::persist;
use lwm2m_client::storage::slots;
use sha2::{Digest, Sha256};

use super::net::DeviceSocket;

/// A power cut the scenario asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerCut {
    /// When the flash starts its `n`-th program/erase operation since the first power-on (0-based),
    /// tearing it as `tear` says.
    AtFlashOp { n: u64, tear: Tear },
    /// At this virtual time since the device was created (between two flash operations).
    At(Duration),
}

/// What the simulator sees of a device while it runs.
#[derive(Clone, Debug, Default)]
pub struct DeviceView {
    /// The image version of the last power-on.
    pub running_version: String,
    pub boots: u32,
    pub power_cuts: u32,
    pub registered: bool,
    /// Object 5 State and Update Result as the engine last reported them.
    pub fw_state: u8,
    pub fw_result: u8,
    pub staged_bytes: u32,
    /// A power-on that could not start the engine (a damaged flash): the device is bricked.
    pub bricked: Option<String>,
    /// Flash operations done when the engine asked for the reboot into a new image (the end of
    /// download and Update) and when the engine started after it (swap and confirm done):
    /// scenarios tell from these in which phase a power cut fell.
    pub ops_at_update: Option<u64>,
    pub ops_after_swap: Option<u64>,
}

/// A device's OSCORE context with the server (RFC 8613), kept outside the updatable image.
#[derive(Clone, Debug)]
pub struct OscoreKeys {
    pub sender_id: Vec<u8>,
    pub recipient_id: Vec<u8>,
    pub master_secret: Vec<u8>,
}

/// A device as the simulator holds it: its flash outlives every boot.
pub struct Device {
    pub endpoint: String,
    pub view: Arc<Mutex<DeviceView>>,
    flash: Rc<DeviceFlash<HeapFlash>>,
    /// With a context, every boot protects the exchanges with the server with OSCORE.
    oscore: Option<OscoreKeys>,
}

impl Device {
    /// A device fresh from the factory: `factory` in ACTIVE of a flash laid out by `layout`.
    pub fn new(endpoint: String, layout: Layout, factory: &[u8]) -> anyhow::Result<Device> {
        let flash = DeviceFlash::new(HeapFlash::new(layout.end() as usize), layout)
            .map_err(|e| anyhow::anyhow!("flash layout: {e}"))?;
        install_factory(&flash, factory).map_err(|e| anyhow::anyhow!("factory image: {e:?}"))?;
        Ok(Device {
            endpoint,
            view: Arc::default(),
            flash: Rc::new(flash),
            oscore: None,
        })
    }

    /// The device speaks OSCORE with its server, with this context.
    pub fn with_oscore(mut self, keys: OscoreKeys) -> Device {
        self.oscore = Some(keys);
        self
    }

    /// The OSCORE sender reservation in the device's settings flash (0: none stored).
    pub fn oscore_reserved(&self) -> u64 {
        persist::load_oscore_seq(&self.flash)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// The view, copied.
    pub fn view(&self) -> DeviceView {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// SHA-256 of the first `len` bytes of the running image (ACTIVE), read as a debugger would.
    pub fn active_sha256(&self, len: usize) -> Option<[u8; 32]> {
        let start = self.flash.layout().active().start as usize;
        self.flash
            .with_flash(|f| {
                f.as_bytes()
                    .get(start..start + len)
                    .map(|b| Sha256::digest(b).into())
            })
            .flatten()
    }

    /// The version in ACTIVE's header right now.
    pub fn active_version(&self) -> Option<String> {
        running_image(&self.flash)
            .ok()
            .flatten()
            .map(|h| h.version.as_str().to_string())
    }

    /// Program/erase operations so far.
    pub fn flash_ops(&self) -> u64 {
        self.flash.with_flash(|f| f.ops()).unwrap_or(0)
    }

    /// Runs the device forever: power-on, engine until reboot, again. `seed` varies the engine's
    /// message ids and tokens from boot to boot, as a hardware RNG would.
    pub async fn run(
        &self,
        config: Config,
        socket: DeviceSocket,
        cut: Option<PowerCut>,
        reboot_time: Duration,
        seed: u32,
    ) {
        let started = tokio::time::Instant::now();
        let mut cut_pending = cut;
        if let Some(PowerCut::AtFlashOp { n, tear }) = cut {
            self.flash.with_flash_mut(|f| f.power().cut_after(n, tear));
        }
        let mut boot: u32 = 0;
        loop {
            boot = boot.wrapping_add(1);
            self.update(|v| v.boots += 1);
            let info = match power_on(&*self.flash) {
                Ok(PowerOn::Run(info)) => info,
                Ok(PowerOn::SelfTestFailed(_)) => {
                    tokio::time::sleep(reboot_time).await;
                    continue;
                }
                Err(e) => {
                    if !self.survived(&socket, &mut cut_pending, format!("power-on: {e:?}")) {
                        return;
                    }
                    tokio::time::sleep(reboot_time).await;
                    continue;
                }
            };
            let ops = self.flash_ops();
            self.update(|v| {
                v.running_version = info.running_version.as_str().to_string();
                v.registered = false;
                if v.ops_at_update.is_some() && v.ops_after_swap.is_none() {
                    v.ops_after_swap = Some(ops);
                }
            });
            let mut cfg = config.clone();
            cfg.seed = seed ^ boot.wrapping_mul(0x9e37_79b9);
            let (server, seed_boot) = (cfg.server, cfg.seed);
            let mut word = slots::StateWord::new();
            let platform = match FlashPlatform::new(&self.flash, &mut word) {
                Ok(p) => p,
                Err(e) => {
                    if !self.survived(&socket, &mut cut_pending, format!("staging: {e:?}")) {
                        return;
                    }
                    tokio::time::sleep(reboot_time).await;
                    continue;
                }
            };
            let clock = Clock::new();
            let mut engine = Engine::new(cfg, platform, info, clock.now());
            let timed_cut = match cut_pending {
                Some(PowerCut::At(at)) => Some(started + at),
                _ => None,
            };
            let exit = match &self.oscore {
                None => self.drive(&mut engine, &socket, &clock, timed_cut).await,
                Some(keys) => {
                    // A new context state at every boot, as on the board: the sender continues
                    // from the reservation in flash, the replay window waits for an Echo round.
                    let reserved = self.oscore_reserved();
                    let echo_seed = u64::from(seed_boot) << 32 | u64::from(boot);
                    match Oscore::new(
                        server,
                        &keys.master_secret,
                        &[],
                        &keys.sender_id,
                        &keys.recipient_id,
                        reserved,
                        echo_seed,
                    ) {
                        Ok(ctx) => {
                            let secured =
                                OscoreSocket::new(&socket, ctx, FlashSeqStore(&*self.flash));
                            self.drive(&mut engine, &secured, &clock, timed_cut).await
                        }
                        Err(e) => {
                            self.update(|v| v.bricked = Some(format!("OSCORE: {e}")));
                            return;
                        }
                    }
                }
            };
            drop(engine);
            if exit == Exit::Halted {
                self.flash.with_flash_mut(|f| f.power().power_cycle());
                socket.power_loss();
                // Only a power cut halts the engine: the one armed cut has happened.
                cut_pending = None;
                self.update(|v| v.power_cuts += 1);
            }
            tokio::time::sleep(reboot_time).await;
        }
    }

    /// One boot's engine on `socket` until it asks for a reboot, or the power cut at `timed_cut`.
    async fn drive<P: lwm2m_client::platform::Platform, S: host::Socket>(
        &self,
        engine: &mut Engine<P>,
        socket: &S,
        clock: &Clock,
        timed_cut: Option<tokio::time::Instant>,
    ) -> Exit {
        let view = self.view.clone();
        let flash = self.flash.clone();
        let run = host::run(engine, socket, clock, |e| {
            let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
            match e {
                Event::Registered => v.registered = true,
                Event::Firmware { state, result } => {
                    v.fw_state = *state as u8;
                    v.fw_result = *result as u8;
                }
                Event::Progress { bytes, .. } => v.staged_bytes = *bytes,
                Event::Reboot => {
                    v.ops_at_update = flash.with_flash(|f| f.ops());
                }
                // A flash call failed: if the power went, the device is dead on the spot.
                Event::PlatformError => {
                    if flash.with_flash(|f| !f.is_powered()).unwrap_or(false) {
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        });
        tokio::select! {
            exit = run => exit,
            _ = async {
                match timed_cut {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => Exit::Halted,
        }
    }

    /// After a failed flash call at power-on: true (and the power restored) if it was the armed
    /// power cut, so the device boots again; otherwise the device is bricked by `failure`.
    fn survived(&self, socket: &DeviceSocket, cut: &mut Option<PowerCut>, failure: String) -> bool {
        let died = self
            .flash
            .with_flash_mut(|f| {
                let died = !f.is_powered();
                if died {
                    f.power().power_cycle();
                }
                died
            })
            .unwrap_or(false);
        if died {
            socket.power_loss();
            *cut = None;
            self.update(|v| v.power_cuts += 1);
        } else {
            self.update(|v| v.bricked = Some(failure));
        }
        died
    }

    fn update(&self, f: impl FnOnce(&mut DeviceView)) {
        f(&mut self.view.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The device's address on the simulated mesh: one /64 per border router, as Thread gives.
pub fn address(mesh: usize, index: usize) -> SocketAddr {
    let ip = std::net::Ipv6Addr::new(
        0xfd00,
        0,
        0,
        (mesh + 1) as u16,
        0,
        0,
        ((index + 1) >> 16) as u16,
        (index + 1) as u16,
    );
    SocketAddr::new(ip.into(), 5683)
}

//! An end device: the real LwM2M engine (`lwm2m_client::engine`) over the real flash stack on a
//! RAM flash, its datagrams on OpenThread's UDP. It starts once attached to the mesh, as a device
//! application would; when the engine asks for the reboot into a new image, the device powers on
//! again (the bootloader's swap runs) and re-attaches.

use std::cell::RefCell;
use std::net::{SocketAddr, SocketAddrV6};
use std::rc::Rc;

use anyhow::{Result, anyhow};
use embassy_futures::select::{Either, select};
use embassy_time::Timer;
use heapless::String as HString;
use lwm2m_client::engine::{Config, Engine, Event};
use lwm2m_client::firmware::suit::Identity;
use lwm2m_client::flash_platform::FlashPlatform;
use lwm2m_client::power_on::{PowerOn, install_factory, power_on};
use lwm2m_client::storage::flash::HeapFlash;
use lwm2m_client::storage::layout::{DeviceFlash, Layout, PAGE_SIZE};
use lwm2m_client::storage::slots;
use lwm2m_client::time::Instant;
use openthread::{DeviceRole, OpenThread, UdpSocket};
use suit_manifest::TrustAnchor;

use crate::node::SERVER;
use crate::spec::DeviceSpec;

/// The local CoAP port.
const PORT: u16 = 5683;
/// How long the device is off for a reboot.
const REBOOT_MS: u64 = 1000;

/// What the simulator learns about the device when it asks.
#[derive(Default)]
pub struct DeviceState {
    pub flash: Option<Rc<DeviceFlash<HeapFlash>>>,
    /// Bytes of ACTIVE the status hashes.
    pub check_len: usize,
    pub boots: u32,
    pub registered: bool,
    pub fw_state: u8,
    pub fw_result: u8,
}

fn now() -> Instant {
    Instant(embassy_time::Instant::now().as_millis())
}

fn engine_config(dev: &DeviceSpec, seed: u32) -> Result<Config> {
    let trust_sec1 = hex_decode(&dev.trust_sec1_hex)?;
    let trust = TrustAnchor::from_sec1(&trust_sec1).map_err(|e| anyhow!("trust anchor: {e:?}"))?;
    let name = HString::try_from(dev.endpoint.as_str()).map_err(|_| anyhow!("endpoint"))?;
    let identity = Identity {
        vendor_id: dev.vendor_id,
        class_id: dev.class_id,
    };
    let mut cfg = Config::new(name, SocketAddr::V6(SERVER), identity, trust);
    cfg.block_size = dev.block_size;
    cfg.window = dev.window;
    cfg.lifetime_s = dev.lifetime_s;
    cfg.model = HString::try_from("sim-thread").unwrap_or_default();
    cfg.serial = HString::try_from(dev.endpoint.as_str()).unwrap_or_default();
    cfg.seed = seed;
    Ok(cfg)
}

fn hex_decode(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return Err(anyhow!("odd-length hex"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| anyhow!("hex: {e}")))
        .collect()
}

/// Waits until the node is attached to the mesh.
async fn attached(ot: &OpenThread<'static>) {
    while !matches!(
        ot.device_role(),
        DeviceRole::Child | DeviceRole::Router | DeviceRole::Leader
    ) {
        ot.wait_changed().await;
    }
}

/// Runs the device forever: power-on, engine until it asks for a reboot, again.
pub async fn run(
    ot: OpenThread<'static>,
    dev: &DeviceSpec,
    seed: u64,
    state: Rc<RefCell<DeviceState>>,
) -> Result<()> {
    let factory = std::fs::read(&dev.factory_image)
        .map_err(|e| anyhow!("{}: {e}", dev.factory_image.display()))?;
    let slot = dev.slot_size.next_multiple_of(PAGE_SIZE);
    let layout = Layout::new(0, slot, 4 * PAGE_SIZE).map_err(|e| anyhow!("flash layout: {e:?}"))?;
    let flash = DeviceFlash::new(HeapFlash::new(layout.end() as usize), layout)
        .map_err(|e| anyhow!("flash: {e:?}"))?;
    install_factory(&flash, &factory).map_err(|e| anyhow!("factory image: {e:?}"))?;
    let flash = Rc::new(flash);
    state.borrow_mut().flash = Some(flash.clone());
    state.borrow_mut().check_len = dev.check_len;

    let socket = UdpSocket::bind(
        ot.clone(),
        &SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, PORT, 0, 0),
    )
    .map_err(|e| anyhow!("UDP socket: {e:?}"))?;
    let mut boot: u32 = 0;
    loop {
        boot = boot.wrapping_add(1);
        state.borrow_mut().boots = boot;
        let info = match power_on(&*flash) {
            Ok(PowerOn::Run(info)) => info,
            Ok(PowerOn::SelfTestFailed(_)) => {
                Timer::after_millis(REBOOT_MS).await;
                continue;
            }
            Err(e) => return Err(anyhow!("power-on: {e:?}")),
        };
        attached(&ot).await;
        let cfg = engine_config(dev, (seed as u32) ^ boot.wrapping_mul(0x9e37_79b9))?;
        let mut word = slots::StateWord::new();
        let platform =
            FlashPlatform::new(&*flash, &mut word).map_err(|e| anyhow!("staging: {e:?}"))?;
        let mut engine = Engine::new(cfg, platform, info, now());
        state.borrow_mut().registered = false;
        drive(&mut engine, &socket, &state).await;
        drop(engine);
        // The reboot: the radio goes down with the device and the node attaches again.
        let _ = ot.enable_thread(false);
        Timer::after_millis(REBOOT_MS).await;
        let _ = ot.enable_thread(true);
    }
}

/// The engine on the socket until it asks for a reboot (the board's driver, on OpenThread).
async fn drive<P: lwm2m_client::platform::Platform>(
    engine: &mut Engine<P>,
    socket: &UdpSocket<'static>,
    state: &Rc<RefCell<DeviceState>>,
) {
    let mut out = [0u8; 1280];
    let mut datagram = [0u8; 1280];
    loop {
        while let Some((peer, n)) = engine.poll_transmit(now(), &mut out) {
            if let SocketAddr::V6(peer) = peer {
                // No buffer or no route right now: the engine retransmits.
                let _ = socket
                    .send(out.get(..n).unwrap_or_default(), None, &peer)
                    .await;
            }
        }
        let mut reboot = false;
        while let Some(event) = engine.poll_event() {
            let mut s = state.borrow_mut();
            match event {
                Event::Registered => s.registered = true,
                Event::Firmware { state, result } => {
                    s.fw_state = state as u8;
                    s.fw_result = result as u8;
                }
                Event::Reboot => reboot = true,
                _ => {}
            }
        }
        if reboot {
            return;
        }
        let deadline = engine
            .poll_timeout()
            .map_or(embassy_time::Instant::MAX, |t| {
                embassy_time::Instant::from_millis(t.0)
            });
        match select(socket.recv(&mut datagram), Timer::at(deadline)).await {
            Either::First(Ok((n, _local, from))) => {
                engine.handle_datagram(
                    now(),
                    SocketAddr::V6(from),
                    datagram.get(..n).unwrap_or_default(),
                );
            }
            Either::First(Err(_)) => {}
            Either::Second(()) => engine.handle_timeout(now()),
        }
    }
}

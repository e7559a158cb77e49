//! The engine on OpenThread's UDP socket: the loop of `lwm2m::run` (the default build's, kept
//! byte for byte in that image) with OpenThread's socket in place of embassy-net's, as
//! `sim-thread`'s device drives it. The engine starts once the device is attached; a datagram that
//! cannot go out (no route yet, no message buffer) is the engine's to retransmit.

use core::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use embassy_futures::select::{Either, select};
use embassy_time::Timer;
use lwm2m_client::engine::{Engine, Event};
use lwm2m_client::flash_platform::FlashPlatform;
#[cfg(feature = "oscore")]
use lwm2m_client::oscore::{FlashSeqStore, Incoming};
use lwm2m_client::platform::BootInfo;
use lwm2m_client::storage::layout::DeviceFlash;
use lwm2m_client::storage::slots::StateWord;
use openthread::{OpenThread, UdpSocket};
use static_cell::StaticCell;

use super::Flash;
use crate::boot;
#[cfg(feature = "oscore")]
use crate::lwm2m::oscore_context;
use crate::lwm2m::{FLUSH_BEFORE_RESET_MS, OUT_LEN, PORT, RX_DATAGRAM, at, engine_config, now};

/// Runs the engine forever (until it asks for a reset).
pub async fn run(
    ot: OpenThread<'static>,
    device: &'static DeviceFlash<Flash>,
    boot_info: BootInfo,
    eui64: [u8; 8],
    seed: u32,
) -> ! {
    let Some(cfg) = engine_config(eui64, seed) else {
        boot::halt("engine configuration");
    };
    #[cfg(feature = "oscore")]
    let (mut oscore, mut store, cfg) = {
        let oscore = oscore_context(device, cfg.server, seed);
        let mut cfg = cfg;
        cfg.oscore = oscore.is_some();
        (oscore, FlashSeqStore(device), cfg)
    };
    static WORD: StaticCell<StateWord> = StaticCell::new();
    let Ok(platform) = FlashPlatform::new(device, WORD.init(StateWord::new())) else {
        boot::halt("staging slot");
    };
    let mut engine = Engine::new(cfg, platform, boot_info, now());

    // Any of the device's addresses (mesh-local, or SLAAC's from the border router's prefix):
    // OpenThread picks the source for each destination.
    let Ok(socket) = UdpSocket::bind(ot, &SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, PORT, 0, 0))
    else {
        boot::halt("bind");
    };
    let mut out = [0u8; OUT_LEN];
    let mut datagram = [0u8; RX_DATAGRAM];
    loop {
        while let Some((peer, n)) = engine.poll_transmit(now(), &mut out) {
            #[cfg(feature = "oscore")]
            let n = match oscore.as_mut() {
                // Never sent unprotected to the server: dropped, the engine retransmits.
                Some(o) => match o.protect(peer, &mut out, n, &mut store) {
                    Some(m) => m,
                    None => continue,
                },
                None => n,
            };
            if let SocketAddr::V6(peer) = peer {
                let _ = socket.send(out.get(..n).unwrap_or(&[]), None, &peer).await;
            }
        }
        let mut reboot = false;
        while let Some(event) = engine.poll_event() {
            reboot |= event == Event::Reboot;
        }
        if reboot {
            // OpenThread has no flush: the time covers the MAC's retries of the last answer.
            Timer::after_millis(FLUSH_BEFORE_RESET_MS).await;
            boot::reset();
        }
        let deadline = engine.poll_timeout().map_or(embassy_time::Instant::MAX, at);
        match select(socket.recv(&mut datagram), Timer::at(deadline)).await {
            Either::First(Ok((n, _local, from))) => {
                let from = SocketAddr::V6(from);
                let data = datagram.get(..n).unwrap_or(&[]);
                #[cfg(feature = "oscore")]
                if let Some(o) = oscore.as_mut() {
                    match o.unprotect(from, data, &mut out, &mut store) {
                        Incoming::Pass => engine.handle_datagram(now(), from, data),
                        Incoming::Inner(m) => {
                            engine.handle_datagram(now(), from, out.get(..m).unwrap_or(&[]))
                        }
                        Incoming::Reply(m) => {
                            if let SocketAddr::V6(peer) = from {
                                let _ = socket.send(out.get(..m).unwrap_or(&[]), None, &peer).await;
                            }
                        }
                        Incoming::Drop => {}
                    }
                    continue;
                }
                engine.handle_datagram(now(), from, data);
            }
            Either::First(Err(_)) => {}
            Either::Second(()) => engine.handle_timeout(now()),
        }
    }
}

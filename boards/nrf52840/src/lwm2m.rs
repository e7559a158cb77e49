//! The engine on a UDP socket: the board's driver of the sans-IO engine. Everything the engine
//! wants to send goes out first, then the task sleeps until a datagram arrives or the engine's
//! next deadline (embassy-time), feeds whichever came to the engine, and starts over. When the
//! engine has executed an update it asks for a reset: the task lets the radio send the last
//! answer, then resets into the bootloader's swap.
//!
//! The `thread` build runs the same loop on OpenThread's UDP socket (src/ot/engine.rs), with the
//! helpers below; the default image keeps this one untouched.

use core::fmt::Write as _;
use core::net::SocketAddr;

#[cfg(not(feature = "thread"))]
use embassy_futures::select::{Either, select};
#[cfg(not(feature = "thread"))]
use embassy_net::Stack;
#[cfg(not(feature = "thread"))]
use embassy_net::udp::{PacketMetadata, UdpSocket};
#[cfg(not(feature = "thread"))]
use embassy_time::Timer;
use heapless::String;
#[cfg(not(feature = "thread"))]
use lwm2m_client::engine::Event;
use lwm2m_client::engine::limits::{MAX_DEVICE_TEXT_LEN, MAX_ENDPOINT_LEN};
use lwm2m_client::engine::{Config, Engine};
use lwm2m_client::firmware::suit::Identity;
use lwm2m_client::flash_platform::FlashPlatform;
#[cfg(feature = "oscore")]
use lwm2m_client::oscore::Oscore;
#[cfg(all(feature = "oscore", not(feature = "thread")))]
use lwm2m_client::oscore::{FlashSeqStore, Incoming};
#[cfg(not(feature = "thread"))]
use lwm2m_client::platform::BootInfo;
use lwm2m_client::storage::layout::DeviceFlash;
#[cfg(not(feature = "thread"))]
use lwm2m_client::storage::slots::StateWord;
use lwm2m_client::time::Instant;
#[cfg(not(feature = "thread"))]
use static_cell::StaticCell;
use suit_manifest::TrustAnchor;

use crate::app::Flash;
#[cfg(not(feature = "thread"))]
use crate::boot;
use crate::config;

/// The local CoAP port.
pub const PORT: u16 = 5683;
/// Largest datagram taken in: a 1024-byte block with its header and options.
pub const RX_DATAGRAM: usize = 1152;
/// Block size asked for: 64 bytes fit one 802.15.4 frame (see the design notes).
const BLOCK_SIZE: u16 = 64;
/// The transmit buffer; with OSCORE it also takes the unprotected form of a received datagram
/// (as large as one), which the engine reads before it writes anything to send.
pub const OUT_LEN: usize = if cfg!(feature = "oscore") {
    RX_DATAGRAM
} else {
    512
};
/// Time the radio gets to send the last answer before the reset.
pub const FLUSH_BEFORE_RESET_MS: u64 = 500;

/// The engine's size in RAM, kept in the image under a fixed name so that
/// scripts/footprint.sh can read it from the ELF.
#[allow(unsafe_code)] // a fixed symbol name is an unsafe attribute
#[unsafe(no_mangle)]
#[used]
static OTAFLEET_ENGINE_SIZE: u32 =
    core::mem::size_of::<Engine<FlashPlatform<'static, Flash>>>() as u32;

/// The engine's clock: embassy-time's, in milliseconds.
pub fn now() -> Instant {
    Instant(embassy_time::Instant::now().as_millis())
}

pub fn at(t: Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_millis(t.0)
}

pub fn engine_config(eui64: [u8; 8], seed: u32) -> Option<Config> {
    let mut endpoint: String<MAX_ENDPOINT_LEN> = String::new();
    write!(endpoint, "nrf52840-").ok()?;
    for b in eui64 {
        write!(endpoint, "{b:02x}").ok()?;
    }
    let mut serial: String<MAX_DEVICE_TEXT_LEN> = String::new();
    for b in eui64 {
        write!(serial, "{b:02x}").ok()?;
    }
    let identity = Identity {
        vendor_id: config::VENDOR_ID,
        class_id: config::CLASS_ID,
    };
    let trust = TrustAnchor::from_sec1(&config::TRUST_SEC1).ok()?;
    let mut cfg = Config::new(endpoint, config::SERVER, identity, trust);
    cfg.block_size = BLOCK_SIZE;
    cfg.model = String::try_from("nrf52840").ok()?;
    cfg.serial = serial;
    cfg.seed = seed;
    Some(cfg)
}

/// The OSCORE context with the server, if one was provisioned into the settings (at the
/// factory, outside the updatable image): the sender continues from its persisted reservation,
/// the replay window waits for the server's Echo round (RFC 8613 Appendix B.1).
#[cfg(feature = "oscore")]
pub fn oscore_context(
    device: &DeviceFlash<Flash>,
    server: SocketAddr,
    seed: u32,
) -> Option<Oscore> {
    use lwm2m_client::storage::persist;
    let provisioned = persist::load_oscore_context(device).ok()??;
    let reserved = persist::load_oscore_seq(device).ok().flatten().unwrap_or(0);
    let echo_seed = (u64::from(seed) << 32) | u64::from(seed.rotate_left(16));
    provisioned.context(server, reserved, echo_seed).ok()
}

/// Runs the engine forever (until it asks for a reset).
#[cfg(not(feature = "thread"))]
pub async fn run(
    stack: Stack<'static>,
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

    let mut rx_meta = [PacketMetadata::EMPTY; 4];
    let mut rx_buffer = [0u8; 2 * RX_DATAGRAM];
    let mut tx_meta = [PacketMetadata::EMPTY; 4];
    let mut tx_buffer = [0u8; 1024];
    let mut socket = UdpSocket::new(
        stack,
        &mut rx_meta,
        &mut rx_buffer,
        &mut tx_meta,
        &mut tx_buffer,
    );
    if socket.bind(PORT).is_err() {
        boot::halt("bind");
    }
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
            // IPv6 only (6LoWPAN). A datagram that cannot go out now (no route yet, buffer full)
            // is the engine's to retransmit.
            if let SocketAddr::V6(peer) = peer {
                let _ = socket.send_to(out.get(..n).unwrap_or(&[]), peer).await;
            }
        }
        let mut reboot = false;
        while let Some(event) = engine.poll_event() {
            reboot |= event == Event::Reboot;
        }
        if reboot {
            socket.flush().await;
            Timer::after_millis(FLUSH_BEFORE_RESET_MS).await;
            boot::reset();
        }
        let deadline = engine.poll_timeout().map_or(embassy_time::Instant::MAX, at);
        match select(socket.recv_from(&mut datagram), Timer::at(deadline)).await {
            Either::First(Ok((n, meta))) => {
                let from = meta.endpoint.into();
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
                                let _ = socket.send_to(out.get(..m).unwrap_or(&[]), peer).await;
                            }
                        }
                        Incoming::Drop => {}
                    }
                    continue;
                }
                engine.handle_datagram(now(), from, data);
            }
            // Larger than any message the device takes: dropped.
            Either::First(Err(_)) => {}
            Either::Second(()) => engine.handle_timeout(now()),
        }
    }
}

//! The radio glue: embassy-nrf's raw 802.15.4 PHY (`radio::ieee802154::Radio`) as an embassy-net
//! driver through `embassy-net-driver-channel`. embassy-nrf 0.11's own `net-driver` feature does
//! not compile against the published embassy-net-driver-channel 0.4, hence these few lines.
//!
//! It is a PHY, not a MAC: no auto-ACK, no MAC retransmission, no security. A send does CCA and
//! retries a few times with a short random back-off when the channel is busy; losses are left to
//! CoAP's retransmission. Frames carry no PAN id: embassy-net 0.9 does not expose smoltcp's
//! `pan_id`, so the peer must accept frames without one.

use core::net::{Ipv6Addr, SocketAddr};

use embassy_futures::select::{Either, select};
use embassy_net_driver_channel as ch;
use embassy_net_driver_channel::driver::{HardwareAddress, LinkState};
use embassy_nrf::radio::ieee802154::{Packet, Radio};
use embassy_time::{Duration, Timer};

/// Largest 802.15.4 frame the radio takes, CRC excluded.
pub const MTU: usize = Packet::CAPACITY as usize;
/// Frames buffered each way between the radio and the stack.
const RX_FRAMES: usize = 4;
const TX_FRAMES: usize = 4;
/// Transmission attempts when CCA finds the channel busy.
const CCA_ATTEMPTS: u32 = 5;
/// One back-off unit of 802.15.4 (20 symbols of 16 µs).
const BACKOFF_UNIT_US: u64 = 320;

pub type State = ch::State<MTU, RX_FRAMES, TX_FRAMES>;
pub type Runner = ch::Runner<'static, MTU>;
pub type Device = ch::Device<'static, MTU>;

/// The channel between the radio task and embassy-net, with the board's extended address.
pub fn new(state: &'static mut State, eui64: [u8; 8]) -> (Runner, Device) {
    ch::new(state, HardwareAddress::Ieee802154(eui64))
}

/// The board's EUI-64: from the factory-programmed device id, marked locally administered.
pub fn eui64() -> [u8; 8] {
    let lo = nrf_pac::FICR.deviceid(0).read().to_le_bytes();
    let hi = nrf_pac::FICR.deviceid(1).read().to_le_bytes();
    let mut eui = [hi[3], hi[2], hi[1], hi[0], lo[3], lo[2], lo[1], lo[0]];
    eui[0] = (eui[0] | 0x02) & !0x01; // locally administered, unicast
    eui
}

/// This board's address in the server's /64 (the server is then on-link): the prefix of
/// `server` and the interface id of `eui64` (its U/L bit inverted, RFC 4291 appendix A).
pub fn address_in(server: SocketAddr, eui64: [u8; 8]) -> Ipv6Addr {
    let prefix = match server.ip() {
        core::net::IpAddr::V6(ip) => ip.octets(),
        core::net::IpAddr::V4(_) => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0).octets(),
    };
    let mut octets = [0u8; 16];
    let (net, iid) = octets.split_at_mut(8);
    net.copy_from_slice(prefix.get(..8).unwrap_or(&[0; 8]));
    iid.copy_from_slice(&eui64);
    if let Some(b) = iid.first_mut() {
        *b ^= 0x02;
    }
    Ipv6Addr::from(octets)
}

/// Moves frames between the radio and the channel, forever: receive while nothing is queued for
/// sending; a frame to send interrupts the reception (the radio's receive is cancel-safe).
pub async fn run(mut radio: Radio<'static>, runner: Runner) -> ! {
    let (state, mut rx, mut tx) = runner.split();
    state.set_link_state(LinkState::Up);
    let mut rx_packet = Packet::new();
    let mut tx_packet = Packet::new();
    let mut lfsr: u32 = 0xACE1_u32 ^ u32::from_le_bytes([eui64()[4], eui64()[5], eui64()[6], 1]);
    loop {
        let event = select(
            async {
                let buf = rx.rx_buf().await;
                loop {
                    // Frames with a bad CRC are dropped here.
                    if radio.receive(&mut rx_packet).await.is_ok() {
                        break;
                    }
                }
                let frame: &[u8] = &rx_packet;
                let n = frame.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), frame.get(..n)) {
                    dst.copy_from_slice(src);
                }
                n
            },
            tx.tx_buf(),
        )
        .await;
        match event {
            Either::First(n) => rx.rx_done(n),
            Either::Second(frame) => {
                let n = frame.len().min(MTU);
                tx_packet.copy_from_slice(frame.get(..n).unwrap_or(&[]));
                for attempt in 0..CCA_ATTEMPTS {
                    if radio.try_send(&mut tx_packet).await.is_ok() {
                        break;
                    }
                    // Channel busy: wait a random number of back-off units, up to 2^(3+attempt).
                    lfsr ^= lfsr << 13;
                    lfsr ^= lfsr >> 17;
                    lfsr ^= lfsr << 5;
                    let units = u64::from(lfsr % (8u32 << attempt.min(2)));
                    Timer::after(Duration::from_micros(BACKOFF_UNIT_US * (units + 1))).await;
                }
                tx.tx_done();
            }
        }
    }
}

//! What a link is like. The defaults describe one healthy hop of a Thread mesh: 802.15.4 frames as
//! smoltcp fragments them, acknowledged and retried by the MAC as OpenThread does, on a medium
//! shared with the hops within two; a scenario turns up the loss, the hops, the jitter, or takes
//! the acknowledgements away.

use super::contention::Contention;
use super::framing::Framing;
use super::loss::{LossModel, LossUnit};
use super::mac::{self, Mac};
use super::phy::{BITRATE, DEFAULT_PER_FRAME_OVERHEAD, airtime};
use std::fmt;
use std::time::Duration;

/// One direction of a radio route. Loss, delay, jitter and airtime apply on each of `hops` hops;
/// duplication and reordering once per datagram at the end of the route.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// Loss on each hop (each hop draws on its own and keeps its own burst state).
    pub loss: LossModel,
    /// What one loss draw decides: a frame (default) or a whole datagram.
    pub loss_unit: LossUnit,
    /// Acknowledgements and retries of unicast frames. Default [`Mac::THREAD`].
    pub mac: Mac,
    /// Hops on either side whose transmissions a hop's medium hears: hop i is busy while hop j
    /// carries a frame for |i − j| ≤ `interference`. Default 2 (a relay cannot send and receive at
    /// once, and the next relay but one is still within range). 0 gives every hop its own medium,
    /// the model before issue 13. Read where the media are made ([`Link::new`](super::Link::new),
    /// [`Path::new`](super::Path::new), [`Mesh::new`](super::Mesh::new)).
    pub interference: u32,
    /// What an attempt that finds its medium busy pays besides the wait: another back-off, and a
    /// chance of colliding. Default [`Contention::THREAD`]; [`Contention::NONE`] makes the medium
    /// a perfect scheduler.
    pub contention: Contention,
    /// Whether frames take time on the air (default). Without, the link is a wire with only its
    /// loss and delays, such as a lossy UDP relay on loopback.
    pub on_air: bool,
    /// Per hop, after the last frame is on the air: propagation (negligible) plus the receiver's
    /// reassembly and the forwarder's processing. Default 2 ms.
    pub delay: Duration,
    /// Per hop, an extra uniform delay in [0, jitter). Never reorders: each hop forwards in order.
    /// Default 1 ms.
    pub jitter: Duration,
    /// Bits per second on the air. Default 250 000 (O-QPSK 2.4 GHz).
    pub bitrate: u32,
    /// Medium time each frame attempt costs besides its bytes and its acknowledgement. Default
    /// 2.272 ms (see `phy`).
    pub per_frame_overhead: Duration,
    /// Probability that a delivered datagram arrives twice (a retransmitted frame whose ACK was
    /// lost, a duplicate route). Default 0.
    pub duplicate: f64,
    /// Probability that a delivered datagram is held back by `reorder_delay`, so that later ones
    /// overtake it. Default 0.
    pub reorder: f64,
    /// How long a reordered datagram is held back. Default 20 ms.
    pub reorder_delay: Duration,
    /// Radio hops from sender to receiver (device → routers → border router). Default 1.
    pub hops: u32,
    /// Header sizes that decide fragmentation. Default [`Framing::SMOLTCP`].
    pub framing: Framing,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            loss: LossModel::None,
            loss_unit: LossUnit::Frame,
            mac: Mac::THREAD,
            interference: 2,
            contention: Contention::THREAD,
            on_air: true,
            delay: Duration::from_millis(2),
            jitter: Duration::from_millis(1),
            bitrate: BITRATE,
            per_frame_overhead: DEFAULT_PER_FRAME_OVERHEAD,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
            hops: 1,
            framing: Framing::SMOLTCP,
        }
    }
}

impl LinkConfig {
    /// A loss-free, delay-free, jitter-free link without contention: only airtime, and frames
    /// that share a medium take turns perfectly. A base for tests.
    pub fn ideal() -> Self {
        LinkConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            contention: Contention::NONE,
            ..LinkConfig::default()
        }
    }

    /// Medium time one attempt of a frame of `frame_bytes` (MAC header to FCS) holds: its airtime
    /// and overhead, plus, with acknowledgements, the acknowledgement if `acked` or the wait for
    /// it if not. Zero when frames are not on the air.
    pub fn attempt_airtime(&self, frame_bytes: usize, acked: bool) -> Duration {
        if !self.on_air {
            return Duration::ZERO;
        }
        let frame = airtime(frame_bytes, self.bitrate, self.per_frame_overhead);
        match (self.mac, acked) {
            (Mac::Raw, _) => frame,
            (Mac::Acked { .. }, true) => frame + mac::ack_exchange(self.bitrate),
            (Mac::Acked { .. }, false) => frame + mac::ack_timeout(),
        }
    }

    /// Medium time a frame sent once and (with acknowledgements) acknowledged at once holds: the
    /// least a frame can cost, for airtime bounds.
    pub fn frame_airtime(&self, frame_bytes: usize) -> Duration {
        self.attempt_airtime(frame_bytes, true)
    }

    /// How many hops of a route of `hops` hear each other's every frame: the frames of a datagram
    /// crossing them all take turns on the air, so a route's throughput is at most one hop's over
    /// this number.
    pub fn hops_sharing_air(&self) -> u32 {
        self.hops.min(self.interference.saturating_add(1))
    }

    /// One line for reports: "3 hop(s), 10 % loss per frame, MAC ACK, 15 retries".
    pub fn summary(&self) -> String {
        let loss = self.loss.stationary_loss();
        let loss = if loss == 0.0 {
            "no loss".to_string()
        } else {
            let bursty = matches!(self.loss, LossModel::GilbertElliott { .. });
            // Two decimals at most, trailing zeros trimmed: "10", "0.5".
            let pct = format!("{:.2}", loss * 100.0);
            let pct = pct.trim_end_matches('0').trim_end_matches('.');
            format!(
                "{}{pct} % loss per {}",
                if bursty { "bursty " } else { "" },
                self.loss_unit.name()
            )
        };
        let air = if self.on_air { "" } else { ", no airtime" };
        format!("{} hop(s), {loss}, {}{air}", self.hops, self.mac)
    }

    /// Checks that every probability lies in [0, 1] and the bit rate is positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prob = |name: &'static str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(ConfigError(name))
            }
        };
        if !self.loss.is_valid() {
            return Err(ConfigError("loss"));
        }
        prob("duplicate", self.duplicate)?;
        prob("contention.collision", self.contention.collision)?;
        prob("reorder", self.reorder)?;
        if self.bitrate == 0 {
            return Err(ConfigError("bitrate"));
        }
        Ok(())
    }
}

/// The border router's leg to the server (Ethernet, Wi-Fi, the Internet): fast and, by default,
/// lossless. Loss here is per datagram: it is not fragmented into 802.15.4 frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backhaul {
    /// One-way delay. Default 1 ms.
    pub delay: Duration,
    /// Probability that a datagram is lost. Default 0.
    pub loss: f64,
}

impl Default for Backhaul {
    fn default() -> Self {
        Backhaul {
            delay: Duration::from_millis(1),
            loss: 0.0,
        }
    }
}

/// A configuration value out of range: names the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link configuration: {} is out of range", self.0)
    }
}

impl std::error::Error for ConfigError {}

//! What a link is like. The defaults describe one healthy 802.15.4 hop as smoltcp drives it; a
//! scenario turns up the loss, the hops, the jitter.

use super::framing::Framing;
use super::loss::LossModel;
use super::phy::{BITRATE, DEFAULT_PER_FRAME_OVERHEAD};
use std::fmt;
use std::time::Duration;

/// One direction of a radio route. Loss, delay, jitter and airtime apply on each of `hops` hops;
/// duplication and reordering once per datagram at the end of the route.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// Frame loss on each hop (each hop draws on its own and keeps its own burst state).
    pub loss: LossModel,
    /// Per hop, after the last frame is on the air: propagation (negligible) plus the receiver's
    /// reassembly and the forwarder's processing. Default 2 ms.
    pub delay: Duration,
    /// Per hop, an extra uniform delay in [0, jitter). Never reorders: each hop forwards in order.
    /// Default 1 ms.
    pub jitter: Duration,
    /// Bits per second on the air. Default 250 000 (O-QPSK 2.4 GHz).
    pub bitrate: u32,
    /// Medium time each frame costs besides its bytes. Default 2.272 ms (see `phy`).
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
    /// A loss-free, delay-free, jitter-free link: only airtime. A base for tests.
    pub fn ideal() -> Self {
        LinkConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            ..LinkConfig::default()
        }
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

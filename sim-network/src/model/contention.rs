//! What a sender pays for finding the channel busy. The medium alone (see `medium`) is a perfect
//! scheduler: a frame that finds the air taken starts the moment it clears, and nothing ever
//! collides. 802.15.4's CSMA/CA is not that. A sender whose clear channel assessment fails backs
//! off again with a larger exponent instead of sending at once; when the channel clears, the
//! senders that were waiting pick their slots at random and some pick the same one; and a hidden
//! terminal (heard by the receiver, not by the sender) collides whatever the CCA said. All of it
//! grows with the traffic, so the model charges it only to attempts that had to wait for the air:
//! a lone sender on a quiet mesh pays nothing, and draws nothing.
//!
//! Calibrated against OpenThread (`sim-network calibrate`, docs/BENCHMARKS.md): 10 devices, 3
//! hops, 10 % loss per frame, every device downloading at once.

use super::phy::UNIT_BACKOFF;
use std::time::Duration;

/// Contention on a shared medium, charged to attempts that found the channel busy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contention {
    /// Probability that an attempt which had to wait for the channel collides when it finally
    /// goes (the senders that waited pick the same back-off slot): the receiver gets nothing,
    /// sends no acknowledgement, and the sender retries.
    pub collision: f64,
    /// How much longer than the moment the channel clears such an attempt waits: one more CSMA/CA
    /// round at a larger back-off exponent.
    pub busy_backoff: Duration,
}

impl Contention {
    /// A perfect scheduler: a waiting frame goes the moment the channel clears, and never
    /// collides (the model before issue 17).
    pub const NONE: Contention = Contention {
        collision: 0.0,
        busy_backoff: Duration::ZERO,
    };

    /// The default. The back-off is 802.15.4's mean second round, BE = macMinBE + 1 = 4: (2^4 − 1)
    /// / 2 unit periods. The collision rate is well above what slot collisions alone give (1/8 for
    /// two senders at BE = 3) because it also stands for hidden terminals, which the model's
    /// medium never lets overlap; 0.4 is as far as the calibration scenario goes before the model
    /// tips into a CoAP retransmission storm on some seeds (0.5 collapses seed 4), which
    /// OpenThread does not (docs/BENCHMARKS.md).
    pub const THREAD: Contention = Contention {
        collision: 0.4,
        busy_backoff: Duration::from_micros(UNIT_BACKOFF.as_micros() as u64 * 15 / 2),
    };
}

impl Default for Contention {
    fn default() -> Self {
        Contention::THREAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_backoff_is_the_mean_of_a_second_csma_round() {
        assert_eq!(Contention::THREAD.busy_backoff, Duration::from_micros(2400));
    }
}

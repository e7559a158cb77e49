//! 802.15.4 MAC acknowledgements and retries, as OpenThread sends unicast ("direct") frames.
//!
//! With acknowledgements, every attempt of a frame is answered by the receiver with an immediate
//! acknowledgement after aTurnaroundTime; a sender that hears none within macAckWaitDuration sends
//! the frame again, up to macMaxFrameRetries times, each attempt with its own CSMA/CA back-off.
//! When the frame arrived but its acknowledgement was lost, the retry reaches the receiver a
//! second time: 802.15.4 receivers drop it by its sequence number, so it costs airtime and nothing
//! else. A frame that exhausts its retries is given up, and OpenThread's mesh forwarder then drops
//! the rest of the datagram's fragments.
//!
//! OpenThread's figures (`src/core/config/mac.h`, `src/core/mac/sub_mac.cpp`):
//! `OPENTHREAD_CONFIG_MAC_DEFAULT_MAX_FRAME_RETRIES_DIRECT` = 15 (16 attempts; the standard's own
//! default macMaxFrameRetries is 3), and after an attempt without acknowledgement a random pause of
//! [0, 2^be) unit back-off periods before the next CSMA/CA, be growing from 0 by one per retry up
//! to 5 (`OPENTHREAD_CONFIG_MAC_ADD_DELAY_ON_NO_ACK_ERROR_BEFORE_RETRY`). The model charges that
//! pause at its mean, as it does the CSMA/CA back-off, and charges it to the sender only: the
//! medium is free for others meanwhile.

use super::phy::{ACK_FRAME, ACK_WAIT, LIFS, SHR_PHR, TURNAROUND, UNIT_BACKOFF, airtime};
use std::fmt;
use std::time::Duration;

/// How the MAC sends a unicast frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mac {
    /// No acknowledgement requested: every frame goes out once, lost or not, and recovery is left
    /// to CoAP. What smoltcp sends (`ack_request: false`) and what our nRF52840 board's PHY-only
    /// radio glue does; the harsher model.
    Raw,
    /// Acknowledged, retried up to `max_frame_retries` times: what a Thread network does with
    /// every unicast frame.
    Acked { max_frame_retries: u8 },
}

impl Mac {
    /// OpenThread's `OPENTHREAD_CONFIG_MAC_DEFAULT_MAX_FRAME_RETRIES_DIRECT`.
    pub const OPENTHREAD_MAX_FRAME_RETRIES: u8 = 15;

    /// Unicast frames as OpenThread sends them.
    pub const THREAD: Mac = Mac::Acked {
        max_frame_retries: Mac::OPENTHREAD_MAX_FRAME_RETRIES,
    };

    /// Attempts a frame may take: 1 without acknowledgements.
    pub fn attempts(self) -> u32 {
        match self {
            Mac::Raw => 1,
            Mac::Acked { max_frame_retries } => u32::from(max_frame_retries) + 1,
        }
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mac::Raw => f.write_str("raw (no MAC ACK)"),
            Mac::Acked { max_frame_retries } => {
                write!(f, "MAC ACK, {max_frame_retries} retries")
            }
        }
    }
}

/// Medium time an acknowledged attempt holds beyond its frame: the receiver's turnaround and its
/// acknowledgement frame (with its own SHR and PHR).
pub fn ack_exchange(bitrate: u32) -> Duration {
    TURNAROUND + airtime(ACK_FRAME, bitrate, SHR_PHR)
}

/// Medium time an unacknowledged attempt holds beyond its frame. The per-frame overhead already
/// counts an inter-frame space after the frame; a sender waiting for an acknowledgement listens
/// for macAckWaitDuration instead, so only the difference is added.
pub fn ack_timeout() -> Duration {
    ACK_WAIT.saturating_sub(LIFS)
}

/// The sender's mean pause before retry `retry` (1 for the first) of a frame whose last attempt
/// went unacknowledged: uniform in [0, 2^be) unit back-off periods, be = min(retry − 1, 5).
pub fn retry_pause(retry: u32) -> Duration {
    let be = retry.saturating_sub(1).min(5);
    // The mean of [0, 2^be − 1] is (2^be − 1) / 2 units: in half units to stay exact.
    let half_units = (1u32 << be) - 1;
    UNIT_BACKOFF * half_units / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::phy::BITRATE;

    #[test]
    fn the_exchange_and_the_timeout_follow_the_standard() {
        // Turnaround 192 µs + (6 + 5 bytes) × 32 µs.
        assert_eq!(ack_exchange(BITRATE), Duration::from_micros(192 + 352));
        // 864 µs of waiting, of which 640 µs the overhead already counts as LIFS.
        assert_eq!(ack_timeout(), Duration::from_micros(224));
    }

    #[test]
    fn retry_pauses_grow_as_openthread_s() {
        let us = |r| retry_pause(r).as_micros();
        // be 0, 1, 2, 3, 4, then capped at 5: means 0, 0.5, 1.5, 3.5, 7.5, 15.5 units of 320 µs.
        assert_eq!(
            [us(1), us(2), us(3), us(4), us(5), us(6), us(15)],
            [0, 160, 480, 1120, 2400, 4960, 4960]
        );
    }

    #[test]
    fn attempts_count_the_first_one() {
        assert_eq!(Mac::Raw.attempts(), 1);
        assert_eq!(Mac::THREAD.attempts(), 16);
    }
}

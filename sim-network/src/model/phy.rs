//! Airtime on the 2.4 GHz O-QPSK PHY of IEEE 802.15.4-2006: 250 kbit/s, 62.5 ksymbol/s, so one
//! byte takes 32 µs and one symbol 16 µs. The MAC constants below are in symbols in the standard.
//!
//! The default per-frame overhead is what a frame costs the medium besides its own bytes, for a
//! first CSMA/CA attempt and no MAC acknowledgement (smoltcp sends data frames with
//! `ack_request: false`; CoAP retransmission does the recovery):
//!
//! | part | standard | time |
//! |---|---|---|
//! | SHR + PHR | preamble 4 B + SFD 1 B + PHR 1 B | 192 µs |
//! | CSMA/CA backoff, mean | (2^macMinBE − 1)/2 = 3.5 × aUnitBackoffPeriod (20 symbols) | 1120 µs |
//! | CCA | 8 symbols | 128 µs |
//! | RX→TX turnaround | aTurnaroundTime 12 symbols | 192 µs |
//! | inter-frame space | macLIFSPeriod 40 symbols (frames > 18 B) | 640 µs |
//! | **total** | | **2272 µs** |
//!
//! The backoff is charged at its mean, not drawn, so that airtime is exact and the randomness of
//! timing stays in the link's jitter. With MAC acknowledgements (see `mac`) each attempt adds the
//! acknowledgement's turnaround and frame, or the wait for one that does not come.

use std::time::Duration;

/// The O-QPSK 2.4 GHz bit rate.
pub const BITRATE: u32 = 250_000;
/// Synchronisation header (4-byte preamble, 1-byte SFD) and 1-byte PHY header at 250 kbit/s.
pub const SHR_PHR: Duration = Duration::from_micros(6 * 32);
/// The mean first CSMA/CA backoff: 3.5 unit backoff periods of 320 µs.
pub const MEAN_CSMA_BACKOFF: Duration = Duration::from_micros(1120);
/// Clear channel assessment: 8 symbols.
pub const CCA: Duration = Duration::from_micros(8 * 16);
/// aTurnaroundTime, receive to transmit: 12 symbols.
pub const TURNAROUND: Duration = Duration::from_micros(12 * 16);
/// macLIFSPeriod, the gap after a frame longer than 18 bytes: 40 symbols.
pub const LIFS: Duration = Duration::from_micros(40 * 16);
/// The sum of the above: 2.272 ms for every frame.
pub const DEFAULT_PER_FRAME_OVERHEAD: Duration =
    Duration::from_micros(192 + 1120 + 128 + 192 + 640);

/// An immediate acknowledgement's MPDU: frame control 2, sequence number 1, FCS 2.
pub const ACK_FRAME: usize = 5;
/// macAckWaitDuration on O-QPSK 2.4 GHz: aUnitBackoffPeriod 20 + aTurnaroundTime 12 + SHR 10 +
/// 6 octets of 2 symbols = 54 symbols. A sender that hears no acknowledgement by then retries.
pub const ACK_WAIT: Duration = Duration::from_micros(54 * 16);
/// aUnitBackoffPeriod: 20 symbols, the unit of every CSMA/CA and retry back-off.
pub const UNIT_BACKOFF: Duration = Duration::from_micros(20 * 16);

/// How long a frame of `frame_bytes` (MAC header to FCS) holds the medium at `bitrate` bit/s,
/// including `per_frame_overhead`.
pub fn airtime(frame_bytes: usize, bitrate: u32, per_frame_overhead: Duration) -> Duration {
    let bits = frame_bytes as u128 * 8;
    let ns = bits * 1_000_000_000 / u128::from(bitrate.max(1));
    per_frame_overhead + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_the_sum_of_its_parts() {
        assert_eq!(
            DEFAULT_PER_FRAME_OVERHEAD,
            SHR_PHR + MEAN_CSMA_BACKOFF + CCA + TURNAROUND + LIFS
        );
    }

    #[test]
    fn an_acknowledgement_takes_352_us_on_air() {
        // SHR + PHR (6 bytes) and the 5-byte MPDU: 11 bytes at 32 µs.
        assert_eq!(
            airtime(ACK_FRAME, BITRATE, SHR_PHR),
            Duration::from_micros(352)
        );
        assert_eq!(ACK_WAIT, Duration::from_micros(864));
    }

    #[test]
    fn a_full_frame_takes_4064_us_on_air() {
        assert_eq!(
            airtime(127, BITRATE, Duration::ZERO),
            Duration::from_micros(4064)
        );
    }
}

//! RFC 7252 §4.8 transmission parameters and the times derived from them (§4.8.2), so that the
//! device, the server and the simulator time their retransmissions, deduplication and sleep
//! windows from one table instead of from copied literals.
//!
//! Only the defaults are fixed here; a deployment that changes ACK_TIMEOUT or MAX_RETRANSMIT
//! (RFC 7252 allows it) derives its own times with the `const fn`s below.

use core::time::Duration;

/// ACK_TIMEOUT: the initial retransmission timeout of a Confirmable message.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// ACK_RANDOM_FACTOR as a fraction (1.5 = 3/2): the initial timeout is drawn from
/// [ACK_TIMEOUT, ACK_TIMEOUT × ACK_RANDOM_FACTOR].
pub const ACK_RANDOM_FACTOR: (u32, u32) = (3, 2);
/// MAX_RETRANSMIT: retransmissions of a Confirmable message before it is given up.
pub const MAX_RETRANSMIT: u8 = 4;
/// NSTART: outstanding interactions per peer a client starts by default.
pub const NSTART: u8 = 1;
/// DEFAULT_LEISURE: how long a server may wait before answering a multicast request.
pub const DEFAULT_LEISURE: Duration = Duration::from_secs(5);
/// MAX_LATENCY: the longest a datagram is assumed to travel.
pub const MAX_LATENCY: Duration = Duration::from_secs(100);
/// PROCESSING_DELAY: the time a node takes to turn a Confirmable into its ACK (= ACK_TIMEOUT).
pub const PROCESSING_DELAY: Duration = ACK_TIMEOUT;

/// ACK_TIMEOUT × ACK_RANDOM_FACTOR: the upper end of the first timeout's random range.
pub const fn max_initial_timeout(ack_timeout: Duration) -> Duration {
    mul_frac(ack_timeout, ACK_RANDOM_FACTOR.0, ACK_RANDOM_FACTOR.1)
}

/// MAX_TRANSMIT_SPAN = ACK_TIMEOUT × (2^MAX_RETRANSMIT − 1) × ACK_RANDOM_FACTOR: from the first
/// transmission of a Confirmable to its last retransmission.
pub const fn max_transmit_span(ack_timeout: Duration, max_retransmit: u8) -> Duration {
    let doublings = pow2_minus_one(max_retransmit as u32);
    mul_frac(
        ack_timeout,
        doublings.saturating_mul(ACK_RANDOM_FACTOR.0),
        ACK_RANDOM_FACTOR.1,
    )
}

/// MAX_TRANSMIT_WAIT = ACK_TIMEOUT × (2^(MAX_RETRANSMIT + 1) − 1) × ACK_RANDOM_FACTOR: from the
/// first transmission until the sender gives up waiting for an ACK.
pub const fn max_transmit_wait(ack_timeout: Duration, max_retransmit: u8) -> Duration {
    let doublings = pow2_minus_one((max_retransmit as u32).saturating_add(1));
    mul_frac(
        ack_timeout,
        doublings.saturating_mul(ACK_RANDOM_FACTOR.0),
        ACK_RANDOM_FACTOR.1,
    )
}

/// MAX_TRANSMIT_SPAN for the default parameters: 45 s.
pub const MAX_TRANSMIT_SPAN: Duration = max_transmit_span(ACK_TIMEOUT, MAX_RETRANSMIT);
/// MAX_TRANSMIT_WAIT for the default parameters: 93 s.
pub const MAX_TRANSMIT_WAIT: Duration = max_transmit_wait(ACK_TIMEOUT, MAX_RETRANSMIT);
/// MAX_RTT = 2 × MAX_LATENCY + PROCESSING_DELAY: 202 s.
pub const MAX_RTT: Duration = add(add(MAX_LATENCY, MAX_LATENCY), PROCESSING_DELAY);
/// EXCHANGE_LIFETIME = MAX_TRANSMIT_SPAN + 2 × MAX_LATENCY + PROCESSING_DELAY: 247 s, how long
/// a message id stays in use (and a deduplication entry is kept).
pub const EXCHANGE_LIFETIME: Duration = add(MAX_TRANSMIT_SPAN, MAX_RTT);
/// NON_LIFETIME = MAX_TRANSMIT_SPAN + MAX_LATENCY: 145 s.
pub const NON_LIFETIME: Duration = add(MAX_TRANSMIT_SPAN, MAX_LATENCY);

/// 2^n − 1, saturating at u32::MAX.
const fn pow2_minus_one(n: u32) -> u32 {
    match 1u32.checked_shl(n) {
        Some(p) => p.saturating_sub(1),
        None => u32::MAX,
    }
}

const fn add(a: Duration, b: Duration) -> Duration {
    match a.checked_add(b) {
        Some(d) => d,
        None => Duration::MAX,
    }
}

/// `d × num / den` in whole milliseconds (every RFC value is a whole second).
const fn mul_frac(d: Duration, num: u32, den: u32) -> Duration {
    let ms = d.as_millis();
    let scaled = ms.saturating_mul(num as u128);
    let ms = match scaled.checked_div(den as u128) {
        Some(v) => v,
        None => 0,
    };
    Duration::from_millis(if ms > u64::MAX as u128 {
        u64::MAX
    } else {
        ms as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_times_match_rfc7252_section_4_8_2() {
        assert_eq!(MAX_TRANSMIT_SPAN, Duration::from_secs(45));
        assert_eq!(MAX_TRANSMIT_WAIT, Duration::from_secs(93));
        assert_eq!(MAX_RTT, Duration::from_secs(202));
        assert_eq!(EXCHANGE_LIFETIME, Duration::from_secs(247));
        assert_eq!(NON_LIFETIME, Duration::from_secs(145));
        assert_eq!(max_initial_timeout(ACK_TIMEOUT), Duration::from_secs(3));
    }

    #[test]
    fn other_parameters_derive_their_own_times() {
        // ACK_TIMEOUT 1 s and 2 retransmissions: span 1×3×1.5 = 4.5 s, wait 1×7×1.5 = 10.5 s.
        let one = Duration::from_secs(1);
        assert_eq!(max_transmit_span(one, 2), Duration::from_millis(4500));
        assert_eq!(max_transmit_wait(one, 2), Duration::from_millis(10500));
    }
}

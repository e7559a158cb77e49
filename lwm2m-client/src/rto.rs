//! The retransmission timeout, adapted to the measured round-trip time the CoCoA way
//! (draft-ietf-core-cocoa): a strong estimator from exchanges answered at the first
//! transmission, a weak one from exchanges answered after retransmissions, each with the RFC 6298
//! smoothing, blended into the RTO that starts the next exchange. RFC 7252's ACK_TIMEOUT is
//! the start, and the result is bounded so that a bad measurement cannot make the device hammer
//! the network or give up too late.

use lwm2m_core::coap::params::ACK_TIMEOUT;

use crate::time::Duration;

/// Bounds and start of the adaptive timeout.
#[derive(Clone, Copy, Debug)]
pub struct RtoConfig {
    /// RFC 7252 ACK_TIMEOUT: the timeout before anything was measured.
    pub initial: Duration,
    /// Lowest timeout ever used.
    pub min: Duration,
    /// Highest initial timeout ever used (before the exponential back-off of one exchange).
    pub max: Duration,
}

impl Default for RtoConfig {
    fn default() -> Self {
        RtoConfig {
            initial: Duration::from_core(ACK_TIMEOUT),
            min: Duration::from_millis(300),
            max: Duration::from_secs(32),
        }
    }
}

/// One RFC 6298 estimator (milliseconds).
#[derive(Clone, Copy, Debug, Default)]
struct Estimator {
    srtt: u64,
    rttvar: u64,
    rto: u64,
    measured: bool,
}

impl Estimator {
    /// Feeds one RTT sample; `k` is the variance weight (4 strong, 1 weak in CoCoA).
    fn sample(&mut self, rtt: u64, k: u64) {
        if self.measured {
            // RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|, SRTT = 7/8 SRTT + 1/8 R
            let delta = self.srtt.abs_diff(rtt);
            self.rttvar = (self.rttvar.saturating_mul(3).saturating_add(delta)) / 4;
            self.srtt = (self.srtt.saturating_mul(7).saturating_add(rtt)) / 8;
        } else {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
            self.measured = true;
        }
        // CoCoA keeps RTTVAR's contribution at least 1 ms (no clock granularity term here).
        self.rto = self
            .srtt
            .saturating_add(k.saturating_mul(self.rttvar).max(1));
    }
}

/// The adaptive retransmission timeout of one peer.
#[derive(Clone, Copy, Debug)]
pub struct Rto {
    config: RtoConfig,
    strong: Estimator,
    weak: Estimator,
    overall: u64,
    /// Exchanges answered or failed since the last strong sample.
    since_strong: u8,
}

/// After this many exchanges without a strong sample the path may have changed: weak samples
/// count again and a failure restarts from the RFC 7252 value. On a lossy but unchanged mesh a
/// strong sample comes far sooner (a quarter of the answered exchanges at 30 % loss per hop over
/// 3 hops).
const STALE_AFTER: u8 = 16;

impl Rto {
    pub fn new(config: RtoConfig) -> Self {
        Rto {
            config,
            strong: Estimator::default(),
            weak: Estimator::default(),
            overall: config.initial.as_millis(),
            since_strong: 0,
        }
    }

    /// The timeout for the first transmission of the next exchange.
    pub fn current(&self) -> Duration {
        Duration(
            self.overall
                .clamp(self.config.min.as_millis(), self.config.max.as_millis()),
        )
    }

    /// An exchange was answered `rtt` after its first transmission, after `retransmissions`
    /// retransmissions. CoCoA: the strong estimator learns only from exchanges without
    /// retransmission; the weak one from those with 1 or 2 (the RTT is then measured from the
    /// first transmission, so it is pessimistic); beyond 2 the sample says too little.
    ///
    /// Unlike CoCoA, weak samples count only while no recent strong one exists (Karn's rule
    /// otherwise): on a lossy mesh most exchanges need a retransmission, and a sample measured
    /// from the first copy is at least one RTO long, so weak samples would push the timeout up
    /// and keep it there (measured: 4 s and more at 10 % loss over 3 hops).
    pub fn answered(&mut self, rtt: Duration, retransmissions: u32) {
        let rtt = rtt.as_millis();
        match retransmissions {
            0 => {
                self.strong.sample(rtt, 4);
                self.overall = blend(self.overall, self.strong.rto, 2);
                self.since_strong = 0;
            }
            1 | 2 if self.stale() => {
                self.weak.sample(rtt, 1);
                self.overall = blend(self.overall, self.weak.rto, 4);
            }
            _ => {}
        }
        self.since_strong = self
            .since_strong
            .saturating_add(u8::from(retransmissions > 0));
    }

    /// An exchange failed altogether. Without a recent strong sample the path may have changed:
    /// start the next one from the RFC 7252 value again, as CoCoA's aging does. With one, the
    /// loss was the mesh's, and the exchange's own back-off already waited it out.
    pub fn failed(&mut self) {
        self.since_strong = self.since_strong.saturating_add(1);
        if self.stale() {
            self.overall = self.overall.max(self.config.initial.as_millis());
        }
    }

    fn stale(&self) -> bool {
        !self.strong.measured || self.since_strong >= STALE_AFTER
    }
}

/// CoCoA's blend: RTO_overall = w * E + (1 - w) * RTO_overall, with w = 1/divisor (1/2 strong,
/// 1/4 weak).
fn blend(overall: u64, estimate: u64, divisor: u64) -> u64 {
    let sum = estimate.saturating_add(overall.saturating_mul(divisor.saturating_sub(1)));
    sum.checked_div(divisor.max(1)).unwrap_or(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7252's ACK_TIMEOUT, where the timeout starts and restarts.
    const ACK: Duration = Duration::from_core(ACK_TIMEOUT);

    #[test]
    fn starts_at_ack_timeout_and_converges_to_a_fast_path() {
        let mut r = Rto::new(RtoConfig::default());
        assert_eq!(r.current(), ACK);
        // First strong sample of 100 ms: SRTT 100, RTTVAR 50, RTO 100 + 4*50 = 300;
        // overall = (300 + 2000) / 2 = 1150.
        r.answered(Duration(100), 0);
        assert_eq!(r.current(), Duration(1150));
        for _ in 0..20 {
            r.answered(Duration(100), 0);
        }
        // It approaches the strong RTO (RTTVAR decays towards 0; the floor is 300 ms).
        assert!(r.current().as_millis() < 400, "{:?}", r.current());
        assert!(r.current() >= Duration(300));
    }

    #[test]
    fn weak_samples_move_the_timeout_less_and_many_retransmissions_not_at_all() {
        let mut r = Rto::new(RtoConfig::default());
        // Weak first sample 6000 ms: SRTT 6000, RTTVAR 3000, RTO 6000 + 3000 = 9000;
        // overall = (9000 + 3 * 2000) / 4 = 3750.
        r.answered(Duration(6000), 1);
        assert_eq!(r.current(), Duration(3750));
        r.answered(Duration(60_000), 3);
        assert_eq!(r.current(), Duration(3750));
    }

    #[test]
    fn after_a_strong_sample_retransmitted_exchanges_do_not_inflate_the_timeout() {
        let mut r = Rto::new(RtoConfig::default());
        for _ in 0..20 {
            r.answered(Duration(100), 0);
        }
        let fast = r.current();
        // A lossy hop: answers after one retransmission, measured from the first copy (fewer
        // in a row than make the estimate stale).
        for _ in 0..STALE_AFTER - 1 {
            r.answered(Duration(fast.as_millis() + 100), 1);
        }
        assert_eq!(r.current(), fast);
    }

    #[test]
    fn the_timeout_stays_within_bounds() {
        let mut r = Rto::new(RtoConfig::default());
        for _ in 0..50 {
            r.answered(Duration(1), 0);
        }
        assert_eq!(r.current(), Duration(300));
        let mut r = Rto::new(RtoConfig::default());
        for _ in 0..50 {
            r.answered(Duration(500_000), 1);
        }
        assert_eq!(r.current(), Duration::from_secs(32));
        r.failed();
        assert!(r.current() >= ACK);
    }

    #[test]
    fn a_lost_exchange_on_a_measured_path_keeps_the_timeout_but_a_run_of_them_resets_it() {
        let mut r = Rto::new(RtoConfig::default());
        for _ in 0..20 {
            r.answered(Duration(100), 0);
        }
        let fast = r.current();
        r.failed();
        assert_eq!(r.current(), fast, "one lost exchange on a lossy mesh");
        for _ in 0..STALE_AFTER {
            r.failed();
        }
        assert_eq!(r.current(), ACK, "the path may have changed");
        // And weak samples count again: an RTT that grew is learnt without a first-try answer.
        let mut r = Rto::new(RtoConfig::default());
        for _ in 0..20 {
            r.answered(Duration(100), 0);
        }
        for _ in 0..40 {
            r.answered(Duration(3000), 1);
        }
        assert!(r.current() > ACK, "{:?}", r.current());
    }
}

//! Per-source rate limits: a token bucket per source IP address, so that one sender cannot fill
//! the registry (or whatever else is limited) faster than the configured rate, while a burst of
//! real devices (a border router that came back) still gets through. Memory stays bounded: a
//! bucket that has filled up again is the same as no bucket and is dropped by [`SourceRate::prune`],
//! and at `max_sources` a new source shares one overflow bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Sources tracked at once before new ones share the overflow bucket.
const MAX_SOURCES: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by source address.
#[derive(Debug)]
pub struct SourceRate {
    /// Tokens added per second; 0 turns the limit off.
    per_second: f64,
    /// Most tokens a bucket holds (the burst).
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by the sources beyond [`MAX_SOURCES`].
    overflow: Option<Bucket>,
}

impl SourceRate {
    /// `per_second` requests a second per source, with bursts of up to `burst`; `per_second`
    /// 0 allows everything.
    pub fn new(per_second: u32, burst: u32) -> SourceRate {
        SourceRate {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
            overflow: None,
        }
    }

    /// Takes a token for `source` at `now`; `Err(wait)` when it has none, with how long until it has.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let fresh = Bucket {
            tokens: burst,
            at: now,
        };
        let bucket = if self.buckets.len() < MAX_SOURCES || self.buckets.contains_key(&source) {
            self.buckets.entry(source).or_insert(fresh)
        } else {
            self.overflow.get_or_insert(fresh)
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }

    /// Forgets the sources whose bucket is full again.
    pub fn prune(&mut self, now: Instant) {
        let (per_second, burst) = (self.per_second, self.burst);
        let full = |b: &Bucket| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second >= burst
        };
        self.buckets.retain(|_, b| !full(b));
        if self.overflow.as_ref().is_some_and(full) {
            self.overflow = None;
        }
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_gets_its_burst_then_the_rate_and_others_are_not_affected() {
        let mut r = SourceRate::new(2, 5);
        let t0 = Instant::now();
        for _ in 0..5 {
            r.allow(ip(1), t0).unwrap();
        }
        let wait = r.allow(ip(1), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500), "one token every 500 ms");
        r.allow(ip(2), t0)
            .expect("another source has its own bucket");
        r.allow(ip(1), t0 + Duration::from_millis(500)).unwrap();
        assert!(r.allow(ip(1), t0 + Duration::from_millis(500)).is_err());
        // Refilled buckets are forgotten; half-empty ones are kept.
        r.prune(t0 + Duration::from_secs(1));
        assert_eq!(r.sources(), 1);
        r.prune(t0 + Duration::from_secs(10));
        assert_eq!(r.sources(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_zero_is_off() {
        let mut r = SourceRate::new(0, 1);
        for _ in 0..1000 {
            r.allow(ip(1), Instant::now()).unwrap();
        }
        assert_eq!(r.sources(), 0);
    }
}

//! The only way the model turns random bits into choices. Written out here rather than taken from
//! `rand`'s distributions so that a seed means the same run on every platform and every version.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::time::Duration;

/// The generator for `(seed, stream)`: one seed names a whole run, the stream one of its parts
/// (a device's uplink, its downlink...), so parts stay independent of each other's traffic.
pub(crate) fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A uniform draw in [0, 1) with 53 random bits.
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// True with probability `p` (never for p <= 0, always for p >= 1). Draws nothing when the answer
/// is certain, so a feature turned off does not shift the rest of the run.
pub(crate) fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    if p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        unit(rng) < p
    }
}

/// A uniform duration in [0, max), at nanosecond resolution; zero (and no draw) when `max` is zero.
pub(crate) fn below(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    let span = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if span == 0 {
        return Duration::ZERO;
    }
    // Multiply-shift: the high word of a 64x64 product is uniform enough over [0, span) for timing.
    let ns = ((u128::from(rng.next_u64()) * u128::from(span)) >> 64) as u64;
    Duration::from_nanos(ns)
}

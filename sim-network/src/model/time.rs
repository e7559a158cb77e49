//! Virtual time: a point is the `Duration` since the simulation's start, so the same model runs on a
//! virtual clock (the fleet) and on a real one (the proxy maps `std::time::Instant::elapsed` onto it).

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in simulated time: how long after the start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The start of the run.
    pub const START: Instant = Instant(Duration::ZERO);

    /// The point `since_start` after the start.
    pub const fn from_start(since_start: Duration) -> Self {
        Instant(since_start)
    }

    /// The point `us` microseconds after the start.
    pub const fn from_micros(us: u64) -> Self {
        Instant(Duration::from_micros(us))
    }

    /// The point `ms` milliseconds after the start.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(Duration::from_millis(ms))
    }

    /// How long after the start this point is.
    pub const fn since_start(self) -> Duration {
        self.0
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// The time from `earlier` to `self`; zero if `earlier` is the later one.
    fn sub(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// `d` earlier, but never before the start.
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d))
    }
}

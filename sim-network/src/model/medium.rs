//! A radio neighbourhood's airtime. Only one frame is on the air at a time, so a frame waits for the
//! first gap long enough for it: two devices (or both directions of one) that share a medium queue
//! behind each other, and a busy mesh slows everyone down. A handle: clones share the same medium.
//!
//! The media of a route's hops form a chain in which neighbours hear each other: hop i's medium is
//! busy while any hop within `reach` of it carries a frame. With a reach of 1 a relay cannot
//! receive on one hop while it sends on the next (half duplex); with 2 (the default) the relay
//! after next is still close enough to collide, so on a chain only every third hop can send at
//! once. A frame is booked on its own hop and checked against the hops within reach. What waiting
//! costs a CSMA/CA sender besides the wait (another back-off, a chance of colliding) is
//! `contention`'s.

use super::time::Instant;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One hop's airtime, with its own outages (the whole neighbourhood jammed, a border router off).
#[derive(Clone, Debug)]
pub struct Medium {
    air: Arc<Mutex<Air>>,
    hop: usize,
}

/// The media of one chain of hops, behind one lock.
#[derive(Debug)]
struct Air {
    hops: Vec<State>,
    reach: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Reserved intervals [start, end), sorted and disjoint.
    busy: VecDeque<(Instant, Instant)>,
    outages: Vec<(Instant, Instant)>,
    airtime: Duration,
    frames: u64,
}

impl Default for Medium {
    fn default() -> Self {
        Medium::new()
    }
}

impl Medium {
    /// A fresh, idle medium that hears no other.
    pub fn new() -> Self {
        Medium::chain(1, 0).remove(0)
    }

    /// The media of `hops` hops in a row, hop i hearing the hops within `reach` of it.
    pub fn chain(hops: u32, reach: u32) -> Vec<Medium> {
        let air = Arc::new(Mutex::new(Air {
            hops: (0..hops).map(|_| State::default()).collect(),
            reach: reach as usize,
        }));
        (0..hops as usize)
            .map(|hop| Medium {
                air: air.clone(),
                hop,
            })
            .collect()
    }

    fn air(&self) -> MutexGuard<'_, Air> {
        // A panic elsewhere cannot leave the state half-written: keep using it.
        self.air.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut air = self.air();
        f(&mut air.hops[self.hop])
    }

    /// Total time frames have held this medium (their bytes, overhead and acknowledgements).
    pub fn airtime_used(&self) -> Duration {
        self.with(|s| s.airtime)
    }

    /// Frame attempts sent on this medium, lost or not.
    pub fn frames(&self) -> u64 {
        self.with(|s| s.frames)
    }

    /// When the last frame reserved so far on this hop ends (the start if none is pending).
    pub fn busy_until(&self) -> Instant {
        self.with(|s| s.busy.back().map_or(Instant::START, |&(_, end)| end))
    }

    /// No frame that is on the air at any time in [from, until) arrives.
    pub fn outage(&self, from: Instant, until: Instant) {
        self.with(|s| s.outages.push((from, until)));
    }

    /// Whether [start, end) overlaps one of the medium's outages.
    pub(crate) fn in_outage(&self, start: Instant, end: Instant) -> bool {
        self.with(|s| overlaps(&s.outages, start, end))
    }

    /// Books the first interval of `len` at or after `ready` that is free on this hop and on every
    /// hop within reach, and returns it. A zero `len` (frames off the air) books nothing.
    #[cfg(test)]
    pub(crate) fn reserve(&self, ready: Instant, len: Duration) -> (Instant, Instant) {
        let a = self.reserve_csma(ready, len, Duration::ZERO, |_| len);
        (a.start, a.end)
    }

    /// As [`reserve`](Self::reserve), for a CSMA/CA sender: if the channel is not free for `len`
    /// from `ready` on, the sender waits until it is and then `busy_backoff` more (and again for
    /// anything booked meanwhile). `actual` is told whether the sender waited and says how long the
    /// attempt really holds the air (at most `len`: a collided attempt gets no acknowledgement).
    pub(crate) fn reserve_csma(
        &self,
        ready: Instant,
        len: Duration,
        busy_backoff: Duration,
        actual: impl FnOnce(bool) -> Duration,
    ) -> Booked {
        let mut air = self.air();
        if len.is_zero() {
            air.hops[self.hop].frames += 1;
            return Booked {
                start: ready,
                end: ready,
                waited: false,
            };
        }
        let near =
            self.hop.saturating_sub(air.reach)..=(self.hop + air.reach).min(air.hops.len() - 1);
        let mut start = first_gap(&air.hops[near.clone()], ready, len);
        let waited = start > ready;
        if waited && !busy_backoff.is_zero() {
            start = first_gap(&air.hops[near], start + busy_backoff, len);
        }
        let len = actual(waited).min(len);
        let own = &mut air.hops[self.hop];
        own.frames += 1;
        own.airtime += len;
        book(&mut own.busy, start, start + len);
        Booked {
            start,
            end: start + len,
            waited,
        }
    }

    /// Forgets reservations that ended by `now` on every hop of the chain: no later call can ask
    /// for time before it.
    pub(crate) fn forget_before(&self, now: Instant) {
        for s in &mut self.air().hops {
            let done = s.busy.partition_point(|&(_, end)| end <= now);
            s.busy.drain(..done);
        }
    }
}

/// An attempt's interval on the air, and whether its sender found the channel busy and waited.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Booked {
    pub start: Instant,
    pub end: Instant,
    pub waited: bool,
}

/// The first instant at or after `from` from which `len` is free on every one of `hops`: moves past
/// every booked interval that overlaps, on any of them, until none does.
fn first_gap(hops: &[State], from: Instant, len: Duration) -> Instant {
    let mut start = from;
    loop {
        let before = start;
        for s in hops {
            let mut i = s.busy.partition_point(|&(_, end)| end <= start);
            while i < s.busy.len() && s.busy[i].0 < start + len {
                start = start.max(s.busy[i].1);
                i += 1;
            }
        }
        if start == before {
            return start;
        }
    }
}

/// Inserts [start, end), which overlaps nothing in `busy`, merging with touching neighbours so
/// that a saturated medium stays one interval.
fn book(busy: &mut VecDeque<(Instant, Instant)>, start: Instant, end: Instant) {
    let i = busy.partition_point(|&(_, e)| e <= start);
    let joins_prev = i > 0 && busy[i - 1].1 == start;
    let joins_next = i < busy.len() && busy[i].0 == end;
    match (joins_prev, joins_next) {
        (true, true) => {
            let next_end = busy[i].1;
            busy[i - 1].1 = next_end;
            busy.remove(i);
        }
        (true, false) => busy[i - 1].1 = end,
        (false, true) => busy[i].0 = start,
        (false, false) => busy.insert(i, (start, end)),
    }
}

/// Whether [start, end) overlaps any of `windows` (each [from, until)).
pub(crate) fn overlaps(windows: &[(Instant, Instant)], start: Instant, end: Instant) -> bool {
    windows.iter().any(|&(from, until)| {
        from < until && start < until && from < end.max(start + Duration::from_nanos(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn frames_fill_the_first_gap_that_fits() {
        let m = Medium::new();
        let d = Duration::from_millis;
        assert_eq!(m.reserve(ms(10), d(5)), (ms(10), ms(15)));
        assert_eq!(m.reserve(ms(0), d(5)), (ms(0), ms(5)));
        // [5, 10) is a 5 ms gap: a 6 ms frame goes after [10, 15).
        assert_eq!(m.reserve(ms(0), d(6)), (ms(15), ms(21)));
        assert_eq!(m.reserve(ms(0), d(5)), (ms(5), ms(10)));
        // Everything touched: one interval.
        assert_eq!(m.with(|s| s.busy.len()), 1);
        m.forget_before(ms(21));
        assert_eq!(m.with(|s| s.busy.len()), 0);
        assert_eq!(m.airtime_used(), d(21));
        assert_eq!(m.frames(), 4);
    }
}

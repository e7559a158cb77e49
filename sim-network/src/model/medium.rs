//! A radio neighbourhood's airtime. Only one frame is on the air at a time, so a frame waits for the
//! first gap long enough for it: two devices (or both directions of one) that share a medium queue
//! behind each other, and a busy mesh slows everyone down. A handle: clones share the same medium.

use super::time::Instant;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Shared airtime, with its own outages (the whole neighbourhood jammed, a border router off).
#[derive(Clone, Debug, Default)]
pub struct Medium(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    /// Reserved intervals [start, end), sorted and disjoint.
    busy: VecDeque<(Instant, Instant)>,
    outages: Vec<(Instant, Instant)>,
    airtime: Duration,
    frames: u64,
}

impl Medium {
    /// A fresh, idle medium.
    pub fn new() -> Self {
        Medium::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-written: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Total time frames have held this medium (their bytes and per-frame overhead).
    pub fn airtime_used(&self) -> Duration {
        self.state().airtime
    }

    /// Frames sent on this medium, lost or not.
    pub fn frames(&self) -> u64 {
        self.state().frames
    }

    /// When the last frame reserved so far ends (the start if none is pending).
    pub fn busy_until(&self) -> Instant {
        self.state()
            .busy
            .back()
            .map_or(Instant::START, |&(_, end)| end)
    }

    /// No frame that is on the air at any time in [from, until) arrives.
    pub fn outage(&self, from: Instant, until: Instant) {
        self.state().outages.push((from, until));
    }

    /// Whether [start, end) overlaps one of the medium's outages.
    pub(crate) fn in_outage(&self, start: Instant, end: Instant) -> bool {
        overlaps(&self.state().outages, start, end)
    }

    /// Books the first free interval of `len` at or after `ready` and returns it.
    pub(crate) fn reserve(&self, ready: Instant, len: Duration) -> (Instant, Instant) {
        let mut s = self.state();
        s.airtime += len;
        s.frames += 1;
        let mut i = s.busy.partition_point(|&(_, end)| end <= ready);
        let mut start = ready;
        while i < s.busy.len() && s.busy[i].0 < start + len {
            start = start.max(s.busy[i].1);
            i += 1;
        }
        let end = start + len;
        // Merge with touching neighbours so that a saturated medium stays one interval.
        let joins_prev = i > 0 && s.busy[i - 1].1 == start;
        let joins_next = i < s.busy.len() && s.busy[i].0 == end;
        match (joins_prev, joins_next) {
            (true, true) => {
                let next_end = s.busy[i].1;
                s.busy[i - 1].1 = next_end;
                s.busy.remove(i);
            }
            (true, false) => s.busy[i - 1].1 = end,
            (false, true) => s.busy[i].0 = start,
            (false, false) => s.busy.insert(i, (start, end)),
        }
        (start, end)
    }

    /// Forgets reservations that ended by `now`: no later call can ask for time before it.
    pub(crate) fn forget_before(&self, now: Instant) {
        let mut s = self.state();
        let done = s.busy.partition_point(|&(_, end)| end <= now);
        s.busy.drain(..done);
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
        assert_eq!(m.state().busy.len(), 1);
        m.forget_before(ms(21));
        assert_eq!(m.state().busy.len(), 0);
        assert_eq!(m.airtime_used(), d(21));
        assert_eq!(m.frames(), 4);
    }
}

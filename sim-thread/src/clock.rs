//! The node's clock: embassy-time's driver on the simulator's virtual time. Nothing moves it but
//! [`advance`] (the simulator's [`ToNode::Advance`](crate::wire::ToNode::Advance)); timers that
//! come due wake their tasks, and [`next_deadline`] tells the simulator when this node next needs
//! to run. OpenThread's millisecond alarm and the soft MAC's microsecond timer both sit on it.

use std::sync::Mutex;
use std::task::Waker;

/// Virtual time in embassy ticks, and the timers waiting on it.
struct Virtual {
    now: u64,
    timers: Vec<(u64, Waker)>,
}

static STATE: Mutex<Virtual> = Mutex::new(Virtual {
    now: 0,
    timers: Vec::new(),
});

fn lock() -> std::sync::MutexGuard<'static, Virtual> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn ticks_from_micros(us: u64) -> u64 {
    (u128::from(us) * u128::from(embassy_time_driver::TICK_HZ) / 1_000_000) as u64
}

fn micros_from_ticks(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000).div_ceil(u128::from(embassy_time_driver::TICK_HZ)) as u64
}

/// Moves the clock to `us` microseconds since the start (never backwards) and wakes every timer
/// that is due.
pub fn advance(us: u64) {
    let due: Vec<Waker> = {
        let mut s = lock();
        s.now = s.now.max(ticks_from_micros(us));
        let now = s.now;
        let (due, rest): (Vec<_>, Vec<_>) = s.timers.drain(..).partition(|(at, _)| *at <= now);
        s.timers = rest;
        due.into_iter().map(|(_, w)| w).collect()
    };
    for w in due {
        w.wake();
    }
}

/// The earliest timer, in microseconds since the start.
pub fn next_deadline() -> Option<u64> {
    lock()
        .timers
        .iter()
        .map(|(at, _)| *at)
        .min()
        .map(micros_from_ticks)
}

/// Now, in microseconds since the start.
pub fn now_us() -> u64 {
    micros_from_ticks(lock().now)
}

struct VirtualDriver;

impl embassy_time_driver::Driver for VirtualDriver {
    fn now(&self) -> u64 {
        lock().now
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        let mut s = lock();
        if at <= s.now {
            drop(s);
            waker.wake_by_ref();
            return;
        }
        // One entry per task: a task that re-arms replaces its earlier timer.
        if let Some(entry) = s.timers.iter_mut().find(|(_, w)| w.will_wake(waker)) {
            entry.0 = entry.0.min(at);
        } else {
            s.timers.push((at, waker.clone()));
        }
    }
}

// The driver is found by a fixed symbol name, which makes this an unsafe attribute.
#[allow(unsafe_code)]
mod driver {
    embassy_time_driver::time_driver_impl!(static DRIVER: super::VirtualDriver = super::VirtualDriver);
}

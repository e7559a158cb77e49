//! How hard a download pushes, from what it measures: how many block requests it keeps in flight
//! (a window) and how big a block it asks for.
//!
//! **Window.** The round-trip time is the congestion signal (TCP Vegas, whose signal a lossy radio
//! does not fake): each answer at the first try compares its RTT with the least RTT seen at that
//! block size, and the difference says how many of the device's requests wait in a queue
//! somewhere (`queued = window × (RTT − base) / RTT`). Below [`QUEUE_LOW`] the window opens (one
//! more request per answer while it has never been closed, one per window after), above
//! [`QUEUE_HIGH`] it closes (one per window). A loss while more requests queue than that halves
//! it, once per round trip; a loss without such a queue does not (a lossy radio loses frames whatever the load).
//! So a lone device keeps its link busy, and devices sharing a mesh each keep only a couple of
//! requests queued on it. The retransmission timers stay CoCoA's (`rto`).
//!
//! **Block size.** Per size, the loss rate (requests that needed a retransmission or were
//! overtaken). A size's worth is the payload it delivers per byte sent, `size × (1 − loss) /
//! (size + overhead)`, the overhead being the request and headers every block costs: where loss
//! strikes per datagram (a backhaul, an IP network) it is the same at every size and big blocks
//! win; where it strikes per 802.15.4 frame a big block (up to 11 frames) is lost far more often,
//! and smaller blocks win (256 bytes at 10 % per frame over one hop, 64 at 30 % over three). (A
//! size's RTT is no measure of its cost: a device that keeps requests queued sees the queue in
//! every RTT, and a mesh shared with others more so.) Every
//! [`DECIDE_EVERY`] answers the download compares its size with the next smaller and larger ones,
//! after probing a few requests at a size it has no fresh figures for, and moves when another is
//! clearly better.

use crate::time::Instant;

/// Fixed point of the window: 1/16 request.
const ONE: u32 = 16;
/// Queued requests below which the window opens.
pub const QUEUE_LOW: u32 = 2;
/// Queued requests above which it closes.
pub const QUEUE_HIGH: u32 = 4;
/// The window a download starts with.
const INITIAL_WINDOW: u32 = 2;
/// Loss rates are in 1/1024.
const LOSS_ONE: u32 = 1024;
/// Answers between two block-size decisions.
pub const DECIDE_EVERY: u16 = 8;
/// Requests sent at a size to measure it.
const PROBE: u8 = 8;
/// Samples a size needs before it is compared.
const MIN_SAMPLES: u16 = 6;
/// Samples after which a size that comes close to the one in use is not probed further.
const CONFIDENT: u16 = 32;
/// Counts of a size are halved once this many requests were counted: the loss rate follows
/// the last few dozen requests.
const WINDOW_SAMPLES: u16 = 64;
/// A size's loss rate is drawn towards the one in use as if this many of its requests had been
/// seen (a few probes alone say little).
const PRIOR: u32 = 2;
/// Answers at other sizes after which a size's figures are forgotten (the link may have changed).
const STALE_AFTER: u16 = 512;
/// Bytes a block costs besides its payload: its request (about one 802.15.4 frame) and the
/// response's headers. It makes the payload per byte on the air, `size / (size + overhead)`,
/// grow with the size; a loss rate that grows with the size (loss per frame) bends it back.
const BLOCK_OVERHEAD: u64 = 128;
/// RTT differences this small (ms) are clock granularity, not a queue.
const RTT_SLACK_MS: u32 = 2;

/// What one block size has shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SizeStats {
    /// Requests lost (a retransmission, or overtaken), of `samples` (both halved now and then).
    lost: u16,
    /// Least RTT of an answer at the first try (ms).
    base: u32,
    /// Smoothed RTT of answers at the first try (ms).
    srtt: u32,
    samples: u16,
    /// Answers at other sizes since this one's last sample.
    age: u16,
}

/// The window and block size of one download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Requests in flight allowed, in 1/16 requests.
    cwnd: u32,
    /// Above this the window opens one request per window, below it one per answer.
    ssthresh: u32,
    /// The most requests in flight (the exchange slots, or the configured window).
    max: u32,
    /// Stats per SZX (0..=6).
    sizes: [SizeStats; 7],
    /// SZX of new requests.
    szx: u8,
    min_szx: u8,
    max_szx: u8,
    adapt: bool,
    /// Requests left to send at this SZX, to measure it.
    probe: Option<(u8, u8)>,
    since_decision: u16,
    /// No further halving before then (one per round trip).
    hold_until: Instant,
}

impl Pace {
    /// Starts at blocks of 2^(`szx`+4) bytes and at most `max_window` requests in flight. With
    /// `adapt` the size moves between `szx` (or 64 bytes, if larger) and 1024 bytes as measured;
    /// otherwise it stays.
    pub fn new(szx: u8, max_window: u8, adapt: bool) -> Self {
        let max = u32::from(max_window.max(1)).saturating_mul(ONE);
        Pace {
            cwnd: (INITIAL_WINDOW * ONE).min(max),
            ssthresh: max,
            max,
            sizes: [SizeStats::default(); 7],
            szx,
            min_szx: if adapt { szx.min(2) } else { szx },
            max_szx: if adapt { 6 } else { szx },
            adapt,
            probe: None,
            since_decision: 0,
            hold_until: Instant(0),
        }
    }

    /// Requests in flight allowed now.
    pub fn window(&self) -> usize {
        (self.cwnd / ONE).max(1) as usize
    }

    /// The SZX to ask the next block at, at most `cap` (the server's largest), and counts it if it
    /// is a probe.
    pub fn next_szx(&self, cap: u8) -> u8 {
        self.probe.map_or(self.szx, |p| p.0).min(cap)
    }

    /// A request at `szx` was sent.
    pub fn sent(&mut self, szx: u8) {
        if let Some((p, left)) = self.probe {
            if p == szx {
                self.probe = (left > 1).then(|| (p, left.saturating_sub(1)));
            }
        }
    }

    fn stats(&mut self, szx: u8) -> Option<&mut SizeStats> {
        self.sizes.get_mut(usize::from(szx))
    }

    /// One more loss sample of `szx`: each request counts once, lost or answered at the first try.
    fn sample_loss(&mut self, szx: u8, lost: bool) {
        let Some(s) = self.stats(szx) else { return };
        if s.samples >= WINDOW_SAMPLES {
            s.samples /= 2;
            s.lost /= 2;
        }
        s.samples = s.samples.saturating_add(1);
        s.lost = s.lost.saturating_add(u16::from(lost));
        s.age = 0;
        for (i, other) in self.sizes.iter_mut().enumerate() {
            if i != usize::from(szx) {
                other.age = other.age.saturating_add(1);
                if other.age > STALE_AFTER {
                    *other = SizeStats::default();
                }
            }
        }
    }

    /// A block request at `szx` was answered `rtt_ms` after it was first sent, after
    /// `retransmits` retransmissions; `already_lost` if [`Pace::lost`] counted it (a later
    /// request overtook it).
    pub fn answered(&mut self, szx: u8, rtt_ms: u64, retransmits: u8, already_lost: bool, cap: u8) {
        if !already_lost {
            self.sample_loss(szx, retransmits > 0);
        }
        let cwnd = self.cwnd;
        if retransmits == 0 {
            let rtt_ms = u32::try_from(rtt_ms).unwrap_or(u32::MAX);
            let Some(s) = self.stats(szx) else { return };
            s.base = if s.base == 0 || rtt_ms < s.base {
                rtt_ms.max(1)
            } else {
                s.base
            };
            s.srtt = if s.srtt == 0 {
                rtt_ms
            } else {
                (s.srtt.saturating_mul(7).saturating_add(rtt_ms)) / 8
            };
            let slack = RTT_SLACK_MS.max(s.base / 8);
            let excess = rtt_ms.saturating_sub(s.base.saturating_add(slack));
            let queued = u64::from(cwnd)
                .saturating_mul(u64::from(excess))
                .checked_div(u64::from(rtt_ms.max(1)))
                .unwrap_or(0);
            self.steer(queued);
        }
        self.since_decision = self.since_decision.saturating_add(1);
        if self.adapt && self.since_decision >= DECIDE_EVERY {
            self.since_decision = 0;
            self.decide(cap);
        }
    }

    /// Opens or closes the window by `queued` (in 1/16 requests).
    fn steer(&mut self, queued: u64) {
        let per_window = (ONE * ONE).checked_div(self.cwnd).unwrap_or(ONE).max(1);
        if queued < u64::from(QUEUE_LOW * ONE) {
            let step = if self.cwnd < self.ssthresh {
                ONE
            } else {
                per_window
            };
            self.cwnd = self.cwnd.saturating_add(step).min(self.max);
        } else if queued > u64::from(QUEUE_HIGH * ONE) {
            self.cwnd = self.cwnd.saturating_sub(per_window).max(ONE);
            self.ssthresh = self.ssthresh.min(self.cwnd);
        }
    }

    /// A block request at `szx` was lost (its first retransmission went out, or later requests
    /// were answered first). Halves the window if more requests queue than the window keeps
    /// queued on purpose (twice [`QUEUE_HIGH`], by the smoothed RTT), at most once per round trip.
    pub fn lost(&mut self, now: Instant, szx: u8) {
        self.sample_loss(szx, true);
        if now < self.hold_until {
            return;
        }
        let Some(s) = self.sizes.get(usize::from(szx)).copied() else {
            return;
        };
        let excess = s.srtt.saturating_sub(s.base.saturating_add(RTT_SLACK_MS));
        let queued = u64::from(self.cwnd)
            .saturating_mul(u64::from(excess))
            .checked_div(u64::from(s.srtt.max(1)))
            .unwrap_or(0);
        if s.base > 0 && queued > u64::from(2 * QUEUE_HIGH * ONE) {
            self.cwnd = (self.cwnd / 2).max(ONE);
            self.ssthresh = self.cwnd;
            self.hold_until = now + crate::time::Duration(u64::from(s.srtt));
        }
    }

    /// The least first timeout of a request at `szx`: twice the smoothed RTT of that size, or of
    /// the size in use scaled by the bytes each costs (a probe at a size not measured yet). The
    /// path's RTO is learnt from all sizes; a block four times larger than most takes longer, and
    /// must not be retransmitted (and counted lost) only for that.
    pub fn timeout_floor(&self, szx: u8) -> crate::time::Duration {
        let srtt = |z: u8| {
            self.sizes
                .get(usize::from(z))
                .map_or(0, |s| u64::from(s.srtt))
        };
        let ms = match srtt(szx) {
            0 => {
                let cost = |z: u8| (16u64 << z).saturating_add(BLOCK_OVERHEAD);
                srtt(self.szx)
                    .saturating_mul(cost(szx))
                    .checked_div(cost(self.szx))
                    .unwrap_or(0)
            }
            t => t,
        };
        crate::time::Duration(ms.saturating_mul(2))
    }

    /// A request timed out with nothing answered since it was sent: the path may be gone. Back
    /// to one request in flight (as TCP after a retransmission timeout); answers open it again.
    pub fn silent(&mut self) {
        self.ssthresh = (self.cwnd / 2).max(2 * ONE);
        self.cwnd = ONE;
    }

    /// The loss rate of a size (of [`LOSS_ONE`]), drawn towards `prior`.
    fn loss(&self, szx: u8, prior: u32) -> u32 {
        let Some(s) = self.sizes.get(usize::from(szx)) else {
            return LOSS_ONE;
        };
        let lost = u32::from(s.lost).saturating_mul(LOSS_ONE);
        let n = u32::from(s.samples).saturating_add(PRIOR);
        lost.saturating_add(PRIOR.saturating_mul(prior))
            .checked_div(n)
            .unwrap_or(prior)
    }

    /// What a size is worth: the payload delivered per byte sent, `size × (1 − loss) / (size +
    /// BLOCK_OVERHEAD)` (its loss rate drawn towards that of the size in use, `here`).
    fn worth(&self, szx: u8, here: u8) -> Option<u64> {
        let s = self.sizes.get(usize::from(szx))?;
        if s.samples < MIN_SAMPLES {
            return None;
        }
        let current = self.sizes.get(usize::from(here))?;
        let prior = (u32::from(current.lost).saturating_mul(LOSS_ONE))
            .checked_div(u32::from(current.samples))
            .unwrap_or(0);
        let size = 16u64 << szx;
        let kept = u64::from(LOSS_ONE.saturating_sub(self.loss(szx, prior)));
        size.saturating_mul(kept)
            .saturating_mul(1024)
            .checked_div(size.saturating_add(BLOCK_OVERHEAD))
    }

    /// Compares the size in use with its neighbours (probing one without figures), and moves.
    fn decide(&mut self, cap: u8) {
        let top = self.max_szx.min(cap);
        let cur = self.szx.min(top);
        let up = (cur < top).then(|| cur.saturating_add(1));
        let down = (cur > self.min_szx).then(|| cur.saturating_sub(1));
        let Some(here) = self.worth(cur, cur) else {
            self.szx = cur;
            return;
        };
        // Probe a neighbour with no figures, or one that comes close (within a quarter) while its
        // figures are few: a handful of requests at 19 % loss can look twice as lossy.
        for candidate in [up, down].into_iter().flatten() {
            let samples = self
                .sizes
                .get(usize::from(candidate))
                .map_or(0, |s| s.samples);
            let close = self
                .worth(candidate, cur)
                .is_none_or(|w| w >= here.saturating_sub(here / 4) && samples < CONFIDENT);
            if close {
                self.probe = Some((candidate, PROBE));
                return;
            }
        }
        // Another size must be better by 1/16 to move.
        let best = [up, down]
            .into_iter()
            .flatten()
            .filter_map(|c| self.worth(c, cur).map(|w| (w, c)))
            .filter(|&(w, _)| w > here.saturating_add(here / 16))
            .max();
        self.szx = best.map_or(cur, |b| b.1);
    }

    /// The SZX new requests use (no probe).
    pub fn szx(&self) -> u8 {
        self.szx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds answers: for `n` requests at the size `pace` picks, loss per `lost(szx)` (of 1024)
    /// and RTT per `rtt(szx)`. Deterministic: a request is lost when an accumulator overflows.
    fn drive(pace: &mut Pace, n: usize, lost: impl Fn(u8) -> u32, rtt: impl Fn(u8) -> u64) {
        let mut acc = [0u32; 7];
        for _ in 0..n {
            let szx = pace.next_szx(6);
            pace.sent(szx);
            let a = &mut acc[usize::from(szx)];
            *a += lost(szx);
            let retransmits = if *a >= 1024 {
                *a -= 1024;
                1
            } else {
                0
            };
            pace.answered(szx, rtt(szx), retransmits, false, 6);
        }
    }

    /// Frames of a block of 2^(szx+4) bytes plus its request on one 802.15.4 hop.
    fn frames(szx: u8) -> u32 {
        ((16u32 << szx) + 30).div_ceil(96) + 1
    }

    #[test]
    fn loss_per_datagram_grows_the_block_to_1024() {
        let mut p = Pace::new(2, 16, true);
        // 19 % of requests lost whatever their size; RTT 4 ms per frame.
        drive(&mut p, 400, |_| 195, |szx| 4 * u64::from(frames(szx)));
        assert_eq!(p.szx(), 6);
    }

    #[test]
    fn loss_per_frame_keeps_blocks_small() {
        let mut p = Pace::new(2, 16, true);
        // 10 % frame loss on each of 3 hops: a block is lost if any of its frames is.
        let loss = |szx: u8| (1024.0 * (1.0 - 0.9f64.powi(3 * frames(szx) as i32))) as u32;
        drive(&mut p, 600, loss, |szx| 12 * u64::from(frames(szx)));
        assert!(p.szx() <= 4, "szx {}", p.szx());
        // 30 %: only the one-frame block gets through at all.
        let mut p = Pace::new(2, 16, true);
        let loss = |szx: u8| (1024.0 * (1.0 - 0.7f64.powi(3 * frames(szx) as i32))) as u32;
        drive(&mut p, 600, loss, |szx| 12 * u64::from(frames(szx)));
        assert_eq!(p.szx(), 2);
    }

    #[test]
    fn a_fixed_size_stays() {
        let mut p = Pace::new(2, 16, false);
        drive(&mut p, 200, |_| 0, |_| 1);
        assert_eq!(p.szx(), 2);
        assert_eq!(p.next_szx(6), 2);
        // The server's cap wins over the size asked for.
        let p = Pace::new(6, 16, false);
        assert_eq!(p.next_szx(2), 2);
    }

    #[test]
    fn the_window_opens_on_an_idle_path_and_closes_when_requests_queue() {
        let mut p = Pace::new(2, 16, false);
        assert_eq!(p.window(), 2);
        drive(&mut p, 50, |_| 0, |_| 10);
        assert_eq!(p.window(), 16, "no queue: up to the slots");
        // Now every answer takes as long as 8 requests queued ahead of it (80 ms at a 10 ms base).
        drive(&mut p, 200, |_| 0, |_| 90);
        assert!(p.window() <= 6, "window {}", p.window());
        // A loss on an empty path keeps it; one with a queue halves it, once per round trip.
        let mut p = Pace::new(2, 16, false);
        drive(&mut p, 50, |_| 0, |_| 10);
        p.lost(Instant(1000), 2);
        assert_eq!(p.window(), 16);
        drive(&mut p, 30, |_| 0, |_| 80);
        let before = p.window();
        p.lost(Instant(1000), 2);
        assert_eq!(p.window(), (before / 2).max(1));
        p.lost(Instant(1010), 2);
        assert_eq!(p.window(), (before / 2).max(1), "held for a round trip");
    }
}

//! Who fetched which blocks of which release, recorded by the firmware server as it answers, so
//! that an operator sees a pull download's progress (bytes, rate, time left) with no message from
//! the device. Blocks may be fetched in any order, again, and at another size: the tracker counts
//! the distinct bytes served, in a bitmap whose unit is the smallest block size seen.
//!
//! It is also the server's own evidence for an update job: a pull update counts only if the
//! image's last block was served to the device ([`Progress::last_block_served`]), whatever the
//! device says.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;

use foldhash::HashMap;
use serde::Serialize;

/// The rate is measured over about this long.
const RATE_WINDOW_MS: i64 = 10_000;
/// A transfer nobody fetched from for this long is forgotten (a device that gave up).
const IDLE_FORGET_MS: i64 = 30 * 60_000;
/// Idle transfers are swept every this many blocks served.
const SWEEP_EVERY: u64 = 4096;
/// A transfer's progress is news (an event for the dashboard and the update job) at most this
/// often, besides its first block and its last: a device at 1024-byte blocks on loopback asks
/// thousands of blocks a second, and an event per block would cost more than serving it.
const NEWS_EVERY_MS: i64 = 250;

/// One block as served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockFetched {
    pub block: u32,
    pub block_size: u32,
    pub image_len: u64,
}

/// A transfer's progress, as the API and the event stream report it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Progress {
    /// Distinct bytes of the image served so far.
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Block requests answered, repeats included.
    pub requests: u64,
    /// The block size of the last request.
    pub block_size: u32,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
    /// Bytes per second over the last ~10 s (none before a second has passed).
    pub rate_bps: Option<f64>,
    /// Seconds left at that rate.
    pub eta_s: Option<f64>,
    /// Whether the block holding the image's last byte was served.
    pub last_block_served: bool,
}

/// One peer's transfer of one release.
#[derive(Debug)]
struct Transfer {
    image_len: u64,
    /// Bytes per bit of `covered`: the smallest block size seen.
    unit: u64,
    covered: Vec<u64>,
    bytes_done: u64,
    requests: u64,
    last_block_served: bool,
    block_size: u32,
    started_at_ms: i64,
    updated_at_ms: i64,
    /// `(time, bytes_done)`, at least 500 ms apart, over the rate window.
    samples: VecDeque<(i64, u64)>,
    /// When its progress was last news (see [`NEWS_EVERY_MS`]).
    news_at_ms: Option<i64>,
}

/// What [`DownloadTracker::record`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub progress: Progress,
    /// Worth an event: the transfer's first block, the block that completed it, the image's last
    /// block (the job's evidence), or the first block after [`NEWS_EVERY_MS`] of quiet.
    pub newsworthy: bool,
}

impl Transfer {
    fn new(image_len: u64, unit: u64, now_ms: i64) -> Transfer {
        let bits = image_len.div_ceil(unit.max(1)) as usize;
        Transfer {
            image_len,
            unit: unit.max(1),
            covered: vec![0; bits.div_ceil(64)],
            bytes_done: 0,
            requests: 0,
            last_block_served: false,
            block_size: 0,
            started_at_ms: now_ms,
            updated_at_ms: now_ms,
            samples: VecDeque::new(),
            news_at_ms: None,
        }
    }

    fn is_set(&self, bit: u64) -> bool {
        self.covered
            .get((bit / 64) as usize)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    /// Re-expresses the bitmap in a smaller unit (block sizes are powers of two).
    fn refine(&mut self, unit: u64) {
        let factor = self.unit / unit;
        let mut finer = Transfer::new(self.image_len, unit, self.started_at_ms);
        for bit in 0..self.image_len.div_ceil(self.unit) {
            if self.is_set(bit) {
                for b in bit * factor..(bit + 1) * factor {
                    if let Some(w) = finer.covered.get_mut((b / 64) as usize) {
                        *w |= 1 << (b % 64);
                    }
                }
            }
        }
        self.unit = unit;
        self.covered = finer.covered;
    }

    fn record(&mut self, f: BlockFetched, now_ms: i64) -> bool {
        let was_done = self.bytes_done == self.image_len;
        let size = u64::from(f.block_size.max(1));
        if size < self.unit && self.unit % size == 0 {
            self.refine(size);
        }
        let start = u64::from(f.block) * size;
        let end = (start + size).min(self.image_len);
        let last_block = start < self.image_len && end == self.image_len;
        self.last_block_served |= last_block;
        let mut bit = start / self.unit;
        while bit * self.unit < end {
            if !self.is_set(bit) {
                if let Some(w) = self.covered.get_mut((bit / 64) as usize) {
                    *w |= 1 << (bit % 64);
                    let from = bit * self.unit;
                    self.bytes_done += (from + self.unit).min(self.image_len) - from;
                }
            }
            bit += 1;
        }
        self.requests += 1;
        self.block_size = f.block_size;
        self.updated_at_ms = now_ms;
        if self.samples.back().is_none_or(|(t, _)| now_ms - t >= 500) {
            self.samples.push_back((now_ms, self.bytes_done));
        }
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now_ms - t >= RATE_WINDOW_MS)
        {
            self.samples.pop_front();
        }
        let completed = !was_done && self.bytes_done == self.image_len;
        let newsworthy =
            completed || last_block || self.news_at_ms.is_none_or(|t| now_ms - t >= NEWS_EVERY_MS);
        if newsworthy {
            self.news_at_ms = Some(now_ms);
        }
        newsworthy
    }

    fn progress(&self) -> Progress {
        let (t0, b0) = self
            .samples
            .front()
            .copied()
            .unwrap_or((self.started_at_ms, 0));
        let elapsed_ms = self.updated_at_ms - t0;
        let rate = (elapsed_ms >= 1000).then(|| {
            (self.bytes_done - b0.min(self.bytes_done)) as f64 * 1000.0 / elapsed_ms as f64
        });
        let left = self.image_len - self.bytes_done;
        Progress {
            bytes_done: self.bytes_done,
            bytes_total: self.image_len,
            requests: self.requests,
            block_size: self.block_size,
            started_at_ms: self.started_at_ms,
            updated_at_ms: self.updated_at_ms,
            rate_bps: rate,
            eta_s: rate.filter(|r| *r > 0.0).map(|r| left as f64 / r),
            last_block_served: self.last_block_served,
        }
    }
}

/// The tracker: bounded by the transfers under way (finished ones are forgotten by the job, idle
/// ones after half an hour). Keyed by peer, then release: a block served allocates nothing.
#[derive(Default)]
pub struct DownloadTracker {
    by_peer: Mutex<HashMap<SocketAddr, Vec<(String, Transfer)>>>,
    served: std::sync::atomic::AtomicU64,
}

impl DownloadTracker {
    /// Records one block served to `peer` at `now_ms`: the transfer's progress, and whether it is
    /// news.
    pub fn record(
        &self,
        peer: SocketAddr,
        release: &str,
        fetched: BlockFetched,
        now_ms: i64,
    ) -> Recorded {
        let mut map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        let n = self
            .served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            map.retain(|_, transfers| {
                transfers.retain(|(_, t)| now_ms - t.updated_at_ms < IDLE_FORGET_MS);
                !transfers.is_empty()
            });
        }
        let transfers = map.entry(peer).or_default();
        let fresh = || Transfer::new(fetched.image_len, u64::from(fetched.block_size), now_ms);
        let i = match transfers.iter().position(|(r, _)| r == release) {
            Some(i) => i,
            None => {
                transfers.push((release.to_string(), fresh()));
                transfers.len() - 1
            }
        };
        let t = &mut transfers[i].1; // found or pushed just now
        // A changed image (same id cannot change, but be safe): start over.
        if t.image_len != fetched.image_len {
            *t = fresh();
        }
        let newsworthy = t.record(fetched, now_ms);
        Recorded {
            progress: t.progress(),
            newsworthy,
        }
    }

    /// Progress of `release` fetched from `peer`; if nothing came from that exact address (a
    /// client may download from another port than it registered from), the only transfer of
    /// that release from the same IP address.
    pub fn progress(&self, peer: SocketAddr, release: &str) -> Option<Progress> {
        let map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        let at = Self::peer_of(&map, peer, release)?;
        Self::find(&map, at, release).map(Transfer::progress)
    }

    fn find<'m>(
        map: &'m HashMap<SocketAddr, Vec<(String, Transfer)>>,
        peer: SocketAddr,
        release: &str,
    ) -> Option<&'m Transfer> {
        map.get(&peer)?
            .iter()
            .find(|(r, _)| r == release)
            .map(|(_, t)| t)
    }

    /// The address the transfer of `release` to `peer` is recorded under: that exact address,
    /// else the only one from its IP address.
    fn peer_of(
        map: &HashMap<SocketAddr, Vec<(String, Transfer)>>,
        peer: SocketAddr,
        release: &str,
    ) -> Option<SocketAddr> {
        if Self::find(map, peer, release).is_some() {
            return Some(peer);
        }
        let mut same_ip = map.iter().filter(|(a, transfers)| {
            a.ip() == peer.ip() && transfers.iter().any(|(r, _)| r == release)
        });
        match (same_ip.next(), same_ip.next()) {
            (Some((a, _)), None) => Some(*a),
            _ => None,
        }
    }

    /// Every transfer under way: peer, release, progress.
    pub fn all(&self) -> Vec<(SocketAddr, String, Progress)> {
        let map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map
            .iter()
            .flat_map(|(a, transfers)| transfers.iter().map(|(r, t)| (*a, r.clone(), t.progress())))
            .collect();
        all.sort_by_key(|(_, _, p)| p.started_at_ms);
        all
    }

    /// Forgets the transfer of `release` to `peer` (when a job ends or starts a new delivery),
    /// found as [`DownloadTracker::progress`] finds it: other devices behind the same IP address
    /// keep theirs.
    pub fn forget(&self, peer: SocketAddr, release: &str) {
        let mut map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(at) = Self::peer_of(&map, peer, release) else {
            return;
        };
        if let Some(transfers) = map.get_mut(&at) {
            transfers.retain(|(r, _)| r != release);
            if transfers.is_empty() {
                map.remove(&at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(block: u32, block_size: u32) -> BlockFetched {
        BlockFetched {
            block,
            block_size,
            image_len: 1000,
        }
    }

    #[test]
    fn progress_by_exact_address_then_by_unique_ip() {
        let t = DownloadTracker::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        for n in 0..10 {
            t.record(b, "r1", block(n, 64), 0);
        }
        assert_eq!(t.progress(a, "r1").unwrap().bytes_done, 640);
        assert_eq!(t.progress(a, "r2"), None);
        t.record(c, "r1", block(15, 64), 0);
        assert_eq!(
            t.progress(a, "r1"),
            None,
            "two transfers from the same IP: ambiguous"
        );
        assert_eq!(
            t.progress(c, "r1").unwrap().bytes_done,
            1000 - 960,
            "the short last block"
        );
        t.forget(a, "r1");
        assert!(
            t.progress(c, "r1").is_some(),
            "ambiguous: nothing forgotten, the other devices behind the IP keep theirs"
        );
        t.forget(b, "r1");
        assert_eq!(
            t.progress(a, "r1").unwrap().bytes_done,
            40,
            "b's is gone, c's is now the only one from that IP"
        );
        t.forget(a, "r1");
        assert_eq!(t.progress(c, "r1"), None);
    }

    #[test]
    fn distinct_blocks_count_once_in_any_order_and_at_any_size() {
        let t = DownloadTracker::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        t.record(a, "r", block(3, 64), 0);
        t.record(a, "r", block(3, 64), 0);
        t.record(a, "r", block(0, 64), 0);
        let p = t.progress(a, "r").unwrap();
        assert_eq!(
            (p.bytes_done, p.requests),
            (128, 3),
            "a repeat counts as a request only"
        );
        // The device (or a capped server) switches to 16-byte blocks: block 1 of 16 is inside
        // block 0 of 64, block 8 of 16 is new.
        t.record(a, "r", block(1, 16), 0);
        t.record(a, "r", block(8, 16), 0);
        assert_eq!(t.progress(a, "r").unwrap().bytes_done, 144);
        // A bigger block again covers what is left of its range: 0..64 and 128..256 now.
        t.record(a, "r", block(1, 128), 0);
        assert_eq!(t.progress(a, "r").unwrap().bytes_done, 64 + 128);
        for n in 0..8 {
            t.record(a, "r", block(n, 128), 0);
        }
        let done = t.progress(a, "r").unwrap();
        assert_eq!((done.bytes_done, done.bytes_total), (1000, 1000));
    }

    #[test]
    fn the_last_block_counts_only_when_served() {
        let t = DownloadTracker::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        for n in 0..15 {
            t.record(a, "r", block(n, 64), 0);
        }
        assert!(
            !t.progress(a, "r").unwrap().last_block_served,
            "960 of 1000 bytes"
        );
        // A block past the end (a confused or hostile client) is not the last block.
        t.record(a, "r", block(40, 64), 0);
        assert!(!t.progress(a, "r").unwrap().last_block_served);
        t.record(a, "r", block(15, 64), 0);
        assert!(t.progress(a, "r").unwrap().last_block_served);
        // Fetched last first (any order): it counts at once.
        t.record(a, "s", block(7, 128), 0);
        assert!(t.progress(a, "s").unwrap().last_block_served);
    }

    #[test]
    fn rate_and_time_left_come_from_the_last_seconds() {
        let t = DownloadTracker::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let first = t.record(a, "r", block(0, 100), 1_000).progress;
        assert_eq!(
            (first.rate_bps, first.eta_s),
            (None, None),
            "too early to tell"
        );
        // 100 bytes every 500 ms: 200 B/s.
        let mut last = first;
        for n in 1..6 {
            last = t
                .record(a, "r", block(n, 100), 1_000 + 500 * i64::from(n))
                .progress;
        }
        assert_eq!(last.bytes_done, 600);
        let rate = last.rate_bps.unwrap();
        assert!((rate - 200.0).abs() < 1.0, "{rate}");
        let eta = last.eta_s.unwrap();
        assert!((eta - 2.0).abs() < 0.1, "400 bytes left at 200 B/s: {eta}");
    }

    #[test]
    fn progress_is_news_on_the_first_block_the_completing_one_and_every_quarter_second() {
        let t = DownloadTracker::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let news = |n: u32, at: i64| t.record(a, "r", block(n, 100), at).newsworthy;
        assert!(news(0, 1_000), "the first block");
        assert!(!news(1, 1_010), "10 ms later");
        assert!(!news(2, 1_249));
        assert!(news(3, 1_250), "250 ms after the last news");
        assert!(!news(4, 1_260));
        for n in 5..9 {
            assert!(!news(n, 1_270));
        }
        assert!(news(9, 1_280), "the block that completes the image");
        assert!(!news(5, 1_290), "a repeat after completion is not");
        assert!(
            news(9, 1_300),
            "the last block again is (the job's evidence)"
        );
        // Another release from the same peer has its own clock.
        assert!(t.record(a, "s", block(0, 100), 1_290).newsworthy);
    }
}

//! Download progress on its way to the other nodes. A device in a block-wise transfer makes one
//! `download` event per block: at 100 000 devices that is far more than PostgreSQL should carry
//! as NOTIFYs. So progress is coalesced: the latest report of each device waits here, goes at
//! most once per `window` per device, and at most `per_flush` reports go per flush (the ones
//! waiting longest first), so a node's progress traffic has a fixed ceiling whatever the size
//! of the fleet. Every other event (registrations, job and campaign state changes) passes at
//! once, after the pending progress of its device, so that the other nodes see them in order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::ServerEvent;

/// Progress of one device waiting to go.
struct Pending {
    since: Instant,
    event: ServerEvent,
}

pub(super) struct Coalescer {
    window: Duration,
    per_flush: usize,
    pending: HashMap<String, Pending>,
    last_sent: HashMap<String, Instant>,
}

impl Coalescer {
    pub fn new(window: Duration, per_flush: usize) -> Self {
        Coalescer {
            window,
            per_flush,
            pending: HashMap::new(),
            last_sent: HashMap::new(),
        }
    }

    /// Takes an event: what goes now (nothing for progress, which waits for [`Self::flush`]).
    pub fn offer(&mut self, event: ServerEvent, now: Instant) -> Vec<ServerEvent> {
        if let ServerEvent::Download { endpoint, .. } = &event {
            let since = self.pending.get(endpoint).map_or(now, |p| p.since);
            self.pending
                .insert(endpoint.clone(), Pending { since, event });
            return Vec::new();
        }
        let mut out = Vec::with_capacity(1);
        if let Some(p) = event.endpoint().and_then(|ep| self.pending.remove(ep)) {
            out.push(p.event);
        }
        out.push(event);
        out
    }

    /// The progress due at `now`: devices whose last report went at least `window` ago, the
    /// longest waiting first, at most `per_flush` of them.
    pub fn flush(&mut self, now: Instant) -> Vec<ServerEvent> {
        let window = self.window;
        self.last_sent
            .retain(|_, sent| now.saturating_duration_since(*sent) < window);
        let mut due: Vec<(Instant, &String)> = self
            .pending
            .iter()
            .filter(|(ep, _)| !self.last_sent.contains_key(*ep))
            .map(|(ep, p)| (p.since, ep))
            .collect();
        if due.len() > self.per_flush {
            due.select_nth_unstable(self.per_flush);
            due.truncate(self.per_flush);
        }
        due.sort();
        let due: Vec<String> = due.into_iter().map(|(_, ep)| ep.clone()).collect();
        due.into_iter()
            .filter_map(|ep| {
                let p = self.pending.remove(&ep)?;
                self.last_sent.insert(ep, now);
                Some(p.event)
            })
            .collect()
    }

    /// How many devices have progress waiting.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(ep: &str, bytes_done: u64) -> ServerEvent {
        ServerEvent::Download {
            endpoint: ep.into(),
            release_id: "r".into(),
            block: 0,
            block_size: 512,
            bytes_done,
            bytes_total: 10_000,
            requests: 1,
            started_at_ms: 0,
            rate_bps: None,
            eta_s: None,
        }
    }

    fn done(ev: &ServerEvent) -> u64 {
        match ev {
            ServerEvent::Download { bytes_done, .. } => *bytes_done,
            _ => u64::MAX,
        }
    }

    #[test]
    fn a_device_reports_progress_once_per_window_with_its_latest_state() {
        let mut c = Coalescer::new(Duration::from_secs(1), 100);
        let t0 = Instant::now();
        for b in 1..=50 {
            assert!(c.offer(progress("a", b * 100), t0).is_empty());
        }
        let sent = c.flush(t0);
        assert_eq!(sent.iter().map(done).collect::<Vec<_>>(), vec![5_000]);
        c.offer(progress("a", 6_000), t0 + Duration::from_millis(100));
        c.offer(progress("a", 7_000), t0 + Duration::from_millis(200));
        // Within the window: it waits.
        assert!(c.flush(t0 + Duration::from_millis(500)).is_empty());
        let sent = c.flush(t0 + Duration::from_secs(1));
        assert_eq!(sent.iter().map(done).collect::<Vec<_>>(), vec![7_000]);
        assert!(c.flush(t0 + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn a_flush_has_a_ceiling_and_serves_the_longest_waiting_first() {
        let mut c = Coalescer::new(Duration::from_secs(1), 10);
        let t0 = Instant::now();
        for i in 0..25 {
            c.offer(
                progress(&format!("d{i:02}"), 1),
                t0 + Duration::from_millis(i),
            );
        }
        let at = t0 + Duration::from_secs(1);
        let first: Vec<String> = c
            .flush(at)
            .iter()
            .map(|e| e.endpoint().unwrap().to_string())
            .collect();
        assert_eq!(
            first,
            (0..10).map(|i| format!("d{i:02}")).collect::<Vec<_>>()
        );
        assert_eq!(c.flush(at).len(), 10);
        assert_eq!(c.flush(at).len(), 5);
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn a_state_change_goes_at_once_after_the_progress_of_its_device() {
        let mut c = Coalescer::new(Duration::from_secs(1), 10);
        let t0 = Instant::now();
        c.offer(progress("a", 9_000), t0);
        c.offer(progress("b", 1_000), t0);
        let out = c.offer(
            ServerEvent::Deregistered {
                endpoint: "a".into(),
            },
            t0,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(done(&out[0]), 9_000);
        assert!(matches!(out[1], ServerEvent::Deregistered { .. }));
        // Events of no device pass alone; b's progress still waits for its flush.
        let out = c.offer(
            ServerEvent::CampaignWave {
                campaign_id: 1,
                wave: 0,
                percent: 100,
                size: 2,
            },
            t0,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(c.waiting(), 1);
    }
}

//! One direction of a route: decides, frame by frame and hop by hop, whether and when a datagram
//! arrives, charging each frame's airtime to the medium of the hop it crosses.

use super::config::{Backhaul, LinkConfig};
use super::draw;
use super::loss::{LossModel, LossState};
use super::medium::{Medium, overlaps};
use super::phy::airtime;
use super::time::Instant;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// A datagram's arrival: when, and how many identical copies arrive then (2 if duplicated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub at: Instant,
    pub copies: u32,
}

/// What a link has carried. Frames are counted on every radio hop they cross, so a one-frame
/// datagram over 3 hops counts 3 frames and 3 frames' airtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub datagrams_sent: u64,
    pub datagrams_delivered: u64,
    /// Lost to frame loss, backhaul loss or an outage.
    pub datagrams_dropped: u64,
    /// Of the dropped, those that met an outage.
    pub dropped_in_outage: u64,
    pub datagrams_duplicated: u64,
    pub datagrams_reordered: u64,
    pub frames_sent: u64,
    pub frames_lost: u64,
    /// Bytes of the frames sent (MAC header to FCS), on every hop crossed.
    pub frame_bytes: u64,
    /// Medium time this link's frames held, overhead included.
    pub airtime: Duration,
}

/// What one leg of a route runs over.
#[derive(Clone, Debug)]
pub(crate) enum Leg {
    Radio(Medium),
    Backhaul(Backhaul),
}

#[derive(Debug)]
struct Hop {
    leg: Leg,
    loss: LossState,
    delay: Duration,
    jitter: Duration,
    /// When this link's last frame on this hop ends: a sender's queue is first in, first out.
    last_tx_end: Instant,
    /// When this link's last datagram came out of this hop: forwarding keeps the order.
    last_arrival: Instant,
}

/// One direction of a route of radio hops (and, for a [`Path`](super::Path), the backhaul).
#[derive(Debug)]
pub struct Link {
    cfg: LinkConfig,
    hops: Vec<Hop>,
    rng: ChaCha8Rng,
    outages: Vec<(Instant, Instant)>,
    stats: LinkStats,
}

impl Link {
    /// `cfg.hops` radio hops, each on a medium of its own, randomness from `seed`.
    ///
    /// # Panics
    /// If `cfg` is invalid (see [`LinkConfig::validate`]).
    pub fn new(cfg: LinkConfig, seed: u64) -> Self {
        let media: Vec<Medium> = (0..cfg.hops).map(|_| Medium::new()).collect();
        Link::on_media(cfg, &media, seed, 0)
    }

    /// Radio hops on the given media (shared with other links: other devices, the other direction),
    /// randomness from stream `stream` of `seed`.
    ///
    /// # Panics
    /// If `cfg` is invalid or `media` does not hold one medium per hop.
    pub fn on_media(cfg: LinkConfig, media: &[Medium], seed: u64, stream: u64) -> Self {
        assert_eq!(media.len(), cfg.hops as usize, "one medium per hop");
        Link::build(cfg, media.iter().cloned().map(Leg::Radio), seed, stream)
    }

    /// A link over `legs` in order.
    pub(crate) fn build(
        cfg: LinkConfig,
        legs: impl IntoIterator<Item = Leg>,
        seed: u64,
        stream: u64,
    ) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("{e}");
        }
        let hops = legs
            .into_iter()
            .map(|leg| {
                let (loss, delay, jitter) = match &leg {
                    Leg::Radio(_) => (cfg.loss, cfg.delay, cfg.jitter),
                    Leg::Backhaul(b) => {
                        assert!((0.0..=1.0).contains(&b.loss), "backhaul loss out of range");
                        (LossModel::Bernoulli { p: b.loss }, b.delay, Duration::ZERO)
                    }
                };
                Hop {
                    leg,
                    loss: LossState::new(loss),
                    delay,
                    jitter,
                    last_tx_end: Instant::START,
                    last_arrival: Instant::START,
                }
            })
            .collect();
        Link {
            cfg,
            hops,
            rng: draw::rng(seed, stream),
            outages: Vec::new(),
            stats: LinkStats::default(),
        }
    }

    /// The configuration this link was built with.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// What this link has carried so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Frames a UDP payload of `payload_len` bytes takes on each radio hop of this link.
    pub fn frames_for(&self, payload_len: usize) -> u32 {
        self.cfg.framing.frames(payload_len)
    }

    /// Nothing passes this link in [from, until): a frame on the air at any moment of it is lost,
    /// and so is a datagram that reaches the backhaul then.
    pub fn outage(&mut self, from: Instant, until: Instant) {
        self.outages.push((from, until));
    }

    /// Sends a UDP datagram with `payload_len` bytes of payload at `now`. Returns its arrivals:
    /// none if it was lost, else one (with 2 copies if it was duplicated).
    pub fn send(&mut self, now: Instant, payload_len: usize) -> Vec<Delivery> {
        let Link {
            cfg,
            hops,
            rng,
            outages,
            stats,
        } = self;
        stats.datagrams_sent += 1;
        let mut t = now;
        for hop in hops.iter_mut() {
            let mut lost = false;
            let mut dark = false;
            match &hop.leg {
                Leg::Radio(medium) => {
                    medium.forget_before(now);
                    let mut ready = t.max(hop.last_tx_end);
                    for size in cfg.framing.frame_sizes(payload_len) {
                        let len = airtime(size, cfg.bitrate, cfg.per_frame_overhead);
                        let (start, end) = medium.reserve(ready, len);
                        ready = end;
                        stats.frames_sent += 1;
                        stats.frame_bytes += size as u64;
                        stats.airtime += len;
                        // The chain advances for every frame sent, lost in an outage or not.
                        let dropped = hop.loss.frame_lost(rng);
                        let jammed = overlaps(outages, start, end) || medium.in_outage(start, end);
                        if dropped || jammed {
                            stats.frames_lost += 1;
                        }
                        lost |= dropped || jammed;
                        dark |= jammed;
                    }
                    hop.last_tx_end = ready;
                    t = ready;
                }
                Leg::Backhaul(_) => {
                    let jammed = overlaps(outages, t, t);
                    lost = hop.loss.frame_lost(rng) || jammed;
                    dark = jammed;
                }
            }
            if lost {
                stats.datagrams_dropped += 1;
                stats.dropped_in_outage += u64::from(dark);
                return Vec::new();
            }
            t = (t + hop.delay + draw::below(rng, hop.jitter)).max(hop.last_arrival);
            hop.last_arrival = t;
        }
        stats.datagrams_delivered += 1;
        let copies = if draw::chance(rng, cfg.duplicate) {
            stats.datagrams_duplicated += 1;
            2
        } else {
            1
        };
        if draw::chance(rng, cfg.reorder) {
            stats.datagrams_reordered += 1;
            t += cfg.reorder_delay;
        }
        vec![Delivery { at: t, copies }]
    }
}

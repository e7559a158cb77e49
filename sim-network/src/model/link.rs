//! One direction of a route: decides, frame by frame and hop by hop, whether and when a datagram
//! arrives, charging each frame's attempts (and their acknowledgements) to the medium of the hop
//! it crosses.

use super::config::{Backhaul, LinkConfig};
use super::draw;
use super::loss::{LossModel, LossState, LossUnit};
use super::mac::{self, Mac};
use super::medium::{Medium, overlaps};
use super::phy::{ACK_FRAME, SHR_PHR, airtime};
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
/// datagram over 3 hops counts 3 frames and 3 frames' airtime; every MAC attempt is a frame sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub datagrams_sent: u64,
    pub datagrams_delivered: u64,
    /// Lost to frame or datagram loss, backhaul loss or an outage.
    pub datagrams_dropped: u64,
    /// Of the dropped, those that met an outage.
    pub dropped_in_outage: u64,
    pub datagrams_duplicated: u64,
    pub datagrams_reordered: u64,
    /// Frame transmissions, MAC retries included.
    pub frames_sent: u64,
    /// Frame transmissions that did not reach the receiver.
    pub frames_lost: u64,
    /// Bytes on the air (MAC header to FCS) of the frames and acknowledgements sent, on every hop.
    pub frame_bytes: u64,
    /// Medium time this link's frames held: overhead and acknowledgements included.
    pub airtime: Duration,
    /// MAC retransmissions: attempts after a frame's first, for want of an acknowledgement.
    pub mac_retries: u64,
    /// Frames that reached the receiver again after their acknowledgement was lost, and that it
    /// dropped by their sequence number.
    pub mac_duplicates: u64,
    /// Acknowledgements sent, and of those, lost on the way back.
    pub acks_sent: u64,
    pub acks_lost: u64,
    /// Frames given up after every retry went unacknowledged (the rest of their datagram is not
    /// sent).
    pub mac_failures: u64,
    /// Attempts that found the channel busy and waited for it (OpenThread's CCA failures), and of
    /// those, the ones that then collided (see `contention`); collisions are among `frames_lost`.
    pub channel_busy: u64,
    pub collisions: u64,
}

impl LinkStats {
    /// Time the radio really transmitted: the bytes of every frame attempt and acknowledgement,
    /// each with its SHR and PHR, at `bitrate`. `airtime` also holds the back-offs, CCAs,
    /// turnarounds, gaps and ACK waits around them; this is what OpenThread's medium counts.
    pub fn signal_airtime(&self, bitrate: u32) -> Duration {
        let headers = self.frames_sent + self.acks_sent;
        airtime(self.frame_bytes as usize, bitrate, Duration::ZERO)
            + Duration::from_nanos(SHR_PHR.as_nanos() as u64 * headers)
    }
}

/// What sending one frame on one hop came to.
struct FrameOutcome {
    /// When the receiver first had it (it keeps that copy, whatever the retries after).
    received: Option<Instant>,
    /// The sender heard no acknowledgement for any attempt and gave up.
    given_up: bool,
    /// An attempt met an outage.
    jammed: bool,
    /// When the sender is done with it.
    end: Instant,
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
    /// `cfg.hops` radio hops on a chain of media of their own (hops within `cfg.interference` of each
    /// other share airtime), randomness from `seed`.
    ///
    /// # Panics
    /// If `cfg` is invalid (see [`LinkConfig::validate`]).
    pub fn new(cfg: LinkConfig, seed: u64) -> Self {
        let media = Medium::chain(cfg.hops, cfg.interference);
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
            let mut dark = false;
            let lost = match &hop.leg {
                Leg::Radio(medium) => {
                    medium.forget_before(now);
                    let mut ready = t.max(hop.last_tx_end);
                    // Loss above the MAC: one draw per datagram and hop, its frames still sent.
                    let mut lost = cfg.loss_unit == LossUnit::Datagram && hop.loss.lost(rng);
                    // The receiver has the datagram when it has its last frame, which may be
                    // before the sender is done retrying it (a lost acknowledgement).
                    let mut complete = ready;
                    let mut frames = cfg.framing.frame_sizes(payload_len).peekable();
                    while let Some(size) = frames.next() {
                        let sent = send_frame(
                            cfg,
                            medium,
                            &mut hop.loss,
                            rng,
                            outages,
                            stats,
                            ready,
                            size,
                        );
                        ready = sent.end;
                        match sent.received {
                            Some(at) => complete = at,
                            None => lost = true,
                        }
                        dark |= sent.jammed;
                        if sent.given_up && frames.peek().is_some() {
                            // OpenThread drops the rest of a datagram whose fragment failed.
                            lost = true;
                            break;
                        }
                    }
                    hop.last_tx_end = ready;
                    t = complete;
                    lost
                }
                Leg::Backhaul(_) => {
                    dark = overlaps(outages, t, t);
                    hop.loss.lost(rng) || dark
                }
            };
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

/// Sends one frame of `size` bytes on `medium` from `ready` on: once without acknowledgements, else
/// until an attempt is acknowledged or the retries run out. Draws, per attempt, the frame's loss
/// and (if it arrived) its acknowledgement's, then, if the attempt had to wait for the air, whether
/// it collided (see `contention`); frames are never lost one by one to the loss model when loss is
/// per datagram.
#[allow(clippy::too_many_arguments)]
fn send_frame(
    cfg: &LinkConfig,
    medium: &Medium,
    loss: &mut LossState,
    rng: &mut ChaCha8Rng,
    outages: &[(Instant, Instant)],
    stats: &mut LinkStats,
    mut ready: Instant,
    size: usize,
) -> FrameOutcome {
    let per_frame = cfg.loss_unit == LossUnit::Frame;
    let acked_mac = matches!(cfg.mac, Mac::Acked { .. });
    let mut out = FrameOutcome {
        received: None,
        given_up: false,
        jammed: false,
        end: ready,
    };
    for attempt in 0..cfg.mac.attempts() {
        if attempt > 0 {
            stats.mac_retries += 1;
            ready += mac::retry_pause(attempt);
        }
        let mut arrived = !(per_frame && loss.lost(rng));
        let mut ack_back = acked_mac && arrived && !(per_frame && loss.lost(rng));
        let contention = cfg.contention;
        let mut collided = false;
        let booked = medium.reserve_csma(
            ready,
            cfg.attempt_airtime(size, ack_back),
            contention.busy_backoff,
            |waited| {
                // Drawn only for an attempt that met traffic, so a quiet medium draws as before.
                collided = waited && draw::chance(rng, contention.collision);
                cfg.attempt_airtime(size, ack_back && !collided)
            },
        );
        let (start, end) = (booked.start, booked.end);
        stats.channel_busy += u64::from(booked.waited);
        if collided {
            stats.collisions += 1;
            arrived = false;
            ack_back = false;
        }
        ready = end;
        out.end = end;
        stats.frames_sent += 1;
        stats.frame_bytes += size as u64;
        stats.airtime += end - start;
        if overlaps(outages, start, end) || medium.in_outage(start, end) {
            out.jammed = true;
            arrived = false;
            ack_back = false;
        }
        if !arrived {
            stats.frames_lost += 1;
        } else {
            stats.mac_duplicates += u64::from(out.received.is_some());
            out.received.get_or_insert(end);
            if acked_mac {
                stats.acks_sent += 1;
                stats.frame_bytes += ACK_FRAME as u64;
                stats.acks_lost += u64::from(!ack_back);
            }
        }
        if !acked_mac || ack_back {
            return out;
        }
    }
    stats.mac_failures += 1;
    out.given_up = true;
    out
}

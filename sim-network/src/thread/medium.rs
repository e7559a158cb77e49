//! The radio medium between OpenThread nodes: who hears whom (rings of hops around the border
//! router), how long a frame holds the air (the PHY's airtime, from `model::airtime`), clear
//! channel assessment, collisions at a receiver (hidden terminals included), half duplex, and an
//! independent loss draw per frame and receiver from the model's [`LossModel`]. OpenThread does
//! the rest (CSMA/CA back-off, ACKs, retries), so nothing here retries or delays.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::Serialize;

use crate::model::{self, LossModel, LossState};

/// Where the nodes are: node `i` sits in ring `ring[i]` (0 is the border router); a node hears
/// the nodes of its own ring and of the rings next to it.
#[derive(Clone, Debug)]
pub struct Layout {
    pub ring: Vec<u32>,
}

impl Layout {
    pub fn hears(&self, a: usize, b: usize) -> bool {
        match (self.ring.get(a), self.ring.get(b)) {
            (Some(x), Some(y)) => a != b && x.abs_diff(*y) <= 1,
            _ => false,
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

/// A frame on the air.
#[derive(Clone, Debug)]
struct OnAir {
    id: u64,
    from: usize,
    start: u64,
    end: u64,
}

/// What the medium carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MediumStats {
    /// Frames put on the air (data, MAC commands, beacons and ACKs), and of those, ACKs.
    pub frames: u64,
    pub acks: u64,
    /// Transmissions refused by a busy channel (CCA).
    pub cca_busy: u64,
    /// Receptions: heard, lost to the loss draw, lost to a collision or to the receiver sending.
    pub received: u64,
    pub lost: u64,
    pub collided: u64,
    /// Sum of the frames' airtime, in microseconds.
    pub airtime_us: u64,
}

/// The shared channel.
pub struct Medium {
    layout: Layout,
    /// One loss state per directed link `from * n + to` (a burst is a property of the place).
    loss: Vec<LossState>,
    rng: ChaCha8Rng,
    on_air: Vec<OnAir>,
    next_id: u64,
    pub stats: MediumStats,
}

/// How long frames are remembered after they end (longer than any frame).
const MEMORY_US: u64 = 10_000;

impl Medium {
    pub fn new(layout: Layout, loss: LossModel, seed: u64) -> Medium {
        let n = layout.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(0x7468_7264); // "thrd": apart from the model's streams
        Medium {
            layout,
            loss: vec![LossState::new(loss); n * n],
            rng,
            on_air: Vec::new(),
            next_id: 0,
            stats: MediumStats::default(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Airtime of a PSDU of `len` bytes (FCS included), preamble and PHY header added.
    pub fn airtime_us(len: usize) -> u64 {
        let t = model::airtime(len, model::BITRATE, model::SHR_PHR);
        u64::try_from(t.as_micros()).unwrap_or(u64::MAX)
    }

    fn overlaps(f: &OnAir, start: u64, end: u64) -> bool {
        f.start < end && start < f.end
    }

    /// Counts `psdu`, just put on the air, as an acknowledgement if its frame type (the low 3 bits
    /// of the frame control field) says so.
    pub fn count_kind(&mut self, psdu: &[u8]) {
        const FRAME_TYPE_ACK: u8 = 2;
        if psdu.first().is_some_and(|fc| fc & 0x07 == FRAME_TYPE_ACK) {
            self.stats.acks += 1;
        }
    }

    /// Whether `node` finds the channel clear at `now`: nothing it can hear is on the air, and
    /// it is not sending itself.
    pub fn clear(&self, node: usize, now: u64) -> bool {
        !self.on_air.iter().any(|f| {
            (f.from == node || self.layout.hears(f.from, node)) && f.start <= now && now < f.end
        })
    }

    /// `from` starts sending a frame of `len` bytes at `now` (after a CCA if `cca`). Returns
    /// `None` if the CCA found the channel busy, else the frame's id, its airtime and the nodes
    /// in range, for [`Medium::received`] at the frame's end.
    pub fn transmit(
        &mut self,
        from: usize,
        now: u64,
        len: usize,
        cca: bool,
    ) -> Option<(u64, u64, Vec<usize>)> {
        self.on_air.retain(|f| f.end + MEMORY_US >= now);
        if cca && !self.clear(from, now) {
            self.stats.cca_busy += 1;
            return None;
        }
        let airtime = Self::airtime_us(len);
        let id = self.next_id;
        self.next_id += 1;
        self.on_air.push(OnAir {
            id,
            from,
            start: now,
            end: now + airtime,
        });
        self.stats.frames += 1;
        self.stats.airtime_us += airtime;
        let hearers = (0..self.layout.len())
            .filter(|&to| self.layout.hears(from, to))
            .collect();
        Some((id, airtime, hearers))
    }

    /// Whether `to` receives frame `id` (called at the frame's end): not while sending itself,
    /// not if another frame it can hear overlapped it, and not if the link's loss draw says lost.
    pub fn received(&mut self, id: u64, to: usize) -> bool {
        let Some(frame) = self.on_air.iter().find(|f| f.id == id).cloned() else {
            return false;
        };
        let clash = self.on_air.iter().any(|f| {
            f.id != id
                && (f.from == to || self.layout.hears(f.from, to))
                && Self::overlaps(f, frame.start, frame.end)
        });
        if clash {
            self.stats.collided += 1;
            return false;
        }
        let n = self.layout.len();
        let lost = match self.loss.get_mut(frame.from * n + to) {
            Some(state) => state.lost(&mut self.rng),
            None => true,
        };
        if lost {
            self.stats.lost += 1;
            false
        } else {
            self.stats.received += 1;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Layout {
        // 0 - 1 - 2 - 3: each hears only its neighbours.
        Layout {
            ring: vec![0, 1, 2, 3],
        }
    }

    #[test]
    fn rings_hear_their_neighbours_only() {
        let l = line();
        assert!(l.hears(0, 1) && l.hears(1, 0) && l.hears(1, 2));
        assert!(!l.hears(0, 2) && !l.hears(0, 3) && !l.hears(2, 2));
    }

    #[test]
    fn a_frame_reaches_its_neighbours_after_its_airtime() {
        let mut m = Medium::new(line(), LossModel::None, 1);
        let (id, airtime, hearers) = m.transmit(1, 100, 127, true).unwrap();
        // 127 bytes plus 6 of preamble and PHY header, 32 µs each.
        assert_eq!(airtime, (127 + 6) * 32);
        assert_eq!(hearers, vec![0, 2]);
        assert!(m.received(id, 0) && m.received(id, 2));
        assert_eq!(m.stats.frames, 1);
    }

    #[test]
    fn cca_sees_a_neighbour_but_not_a_hidden_node() {
        let mut m = Medium::new(line(), LossModel::None, 1);
        m.transmit(0, 0, 50, true).unwrap();
        // Node 1 hears node 0 on the air: busy. Node 2 does not: clear (a hidden terminal).
        assert!(m.transmit(1, 100, 50, true).is_none());
        assert_eq!(m.stats.cca_busy, 1);
        assert!(m.transmit(2, 100, 50, true).is_some());
        // Without CCA (an ACK) the frame goes out regardless.
        assert!(m.transmit(1, 200, 5, false).is_some());
    }

    #[test]
    fn hidden_terminals_collide_at_the_node_between_them() {
        let mut m = Medium::new(line(), LossModel::None, 1);
        let (a, _, _) = m.transmit(0, 0, 100, true).unwrap();
        let (b, _, _) = m.transmit(2, 500, 100, true).unwrap();
        // Node 1 hears both: neither gets through. Node 3 hears only node 2: fine.
        assert!(!m.received(a, 1));
        assert!(!m.received(b, 1));
        assert!(m.received(b, 3));
        assert_eq!(m.stats.collided, 2);
    }

    #[test]
    fn a_node_does_not_hear_while_it_sends() {
        let mut m = Medium::new(line(), LossModel::None, 1);
        let (a, _, _) = m.transmit(0, 0, 100, true).unwrap();
        m.transmit(1, 10, 10, false).unwrap();
        assert!(!m.received(a, 1));
    }

    #[test]
    fn loss_is_drawn_per_reception_and_from_the_seed() {
        let run = |seed| {
            let mut m = Medium::new(line(), LossModel::Bernoulli { p: 0.3 }, seed);
            let mut got = Vec::new();
            for i in 0..1000u64 {
                let (id, _, _) = m.transmit(0, i * 10_000, 20, true).unwrap();
                got.push(m.received(id, 1));
            }
            (got, m.stats)
        };
        let (a, stats) = run(5);
        let lost = a.iter().filter(|r| !**r).count();
        assert!((230..370).contains(&lost), "lost {lost} of 1000 at p = 0.3");
        assert_eq!(stats.lost as usize, lost);
        assert_eq!(run(5).0, a);
        assert_ne!(run(6).0, a);
    }
}

//! Routes through a mesh: device → radio hops → border router → backhaul → server, and back. Both
//! directions of a device, and every device of a mesh, share each hop's medium, and hops within
//! `interference` of each other hear each other, so a 3-hop route costs 3 frames' airtime per
//! frame sent, its hops take turns, and a busy mesh makes everyone wait.

use super::config::{Backhaul, LinkConfig};
use super::link::{Delivery, Leg, Link, LinkStats};
use super::medium::Medium;
use super::time::Instant;
use std::iter::once;
use std::time::Duration;

/// A device's two directions to the server.
#[derive(Debug)]
pub struct Path {
    up: Link,
    down: Link,
}

/// A [`Path`]'s statistics, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Device to server.
    pub up: LinkStats,
    /// Server to device.
    pub down: LinkStats,
}

impl Path {
    /// A lone device: `cfg.hops` radio hops on a chain of media of their own (shared by both
    /// directions),
    /// then `backhaul`.
    pub fn new(cfg: LinkConfig, backhaul: Backhaul, seed: u64) -> Self {
        let media = Medium::chain(cfg.hops, cfg.interference);
        Path::on_media(cfg, backhaul, &media, seed, 0)
    }

    /// Device `device` of a mesh whose hop `i` (counted from the device) runs on `media[i]`. Its
    /// randomness is streams 2·device (up) and 2·device + 1 (down) of `seed`.
    ///
    /// # Panics
    /// If `cfg` is invalid or `media` does not hold one medium per hop.
    pub fn on_media(
        cfg: LinkConfig,
        backhaul: Backhaul,
        media: &[Medium],
        seed: u64,
        device: u64,
    ) -> Self {
        assert_eq!(media.len(), cfg.hops as usize, "one medium per hop");
        let radio = media.iter().cloned().map(Leg::Radio);
        let up = radio.clone().chain(once(Leg::Backhaul(backhaul)));
        let down = once(Leg::Backhaul(backhaul)).chain(radio.rev());
        Path {
            up: Link::build(cfg, up, seed, device.wrapping_mul(2)),
            down: Link::build(cfg, down, seed, device.wrapping_mul(2).wrapping_add(1)),
        }
    }

    /// Device to server.
    pub fn send_up(&mut self, now: Instant, payload_len: usize) -> Vec<Delivery> {
        self.up.send(now, payload_len)
    }

    /// Server to device.
    pub fn send_down(&mut self, now: Instant, payload_len: usize) -> Vec<Delivery> {
        self.down.send(now, payload_len)
    }

    /// The device-to-server link.
    pub fn up(&mut self) -> &mut Link {
        &mut self.up
    }

    /// The server-to-device link.
    pub fn down(&mut self) -> &mut Link {
        &mut self.down
    }

    /// Nothing passes in either direction in [from, until).
    pub fn outage(&mut self, from: Instant, until: Instant) {
        self.up.outage(from, until);
        self.down.outage(from, until);
    }

    /// What each direction has carried.
    pub fn stats(&self) -> PathStats {
        PathStats {
            up: self.up.stats(),
            down: self.down.stats(),
        }
    }
}

/// Devices at the same depth behind one border router: hop `i` of every device shares one medium,
/// the neighbourhood at that distance from the border router, which hears the neighbourhoods
/// within `cfg.interference` hops.
#[derive(Debug)]
pub struct Mesh {
    cfg: LinkConfig,
    backhaul: Backhaul,
    media: Vec<Medium>,
    seed: u64,
}

impl Mesh {
    /// A mesh of `cfg.hops` shared media. Devices are added with [`Mesh::path`].
    ///
    /// # Panics
    /// If `cfg` is invalid.
    pub fn new(cfg: LinkConfig, backhaul: Backhaul, seed: u64) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("{e}");
        }
        Mesh {
            cfg,
            backhaul,
            media: Medium::chain(cfg.hops, cfg.interference),
            seed,
        }
    }

    /// Device `device`'s route to the server. Its randomness depends on the seed and the index
    /// only, not on other devices: ask once per index.
    pub fn path(&self, device: u64) -> Path {
        Path::on_media(self.cfg, self.backhaul, &self.media, self.seed, device)
    }

    /// The shared media, from the devices' side (index 0) to the border router's.
    pub fn media(&self) -> &[Medium] {
        &self.media
    }

    /// Airtime used on all hops together.
    pub fn airtime_used(&self) -> Duration {
        self.media.iter().map(Medium::airtime_used).sum()
    }
}

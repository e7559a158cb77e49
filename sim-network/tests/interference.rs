//! Neighbouring hops share the air: a relay cannot send and receive at once (half duplex), and a
//! hop's medium is busy while any hop within `interference` (default 2) of it carries a frame, so
//! on a chain only hops three apart send together. Times computed by hand on the raw radio, where
//! a 64-byte datagram is one frame of 5 344 µs.

mod support;

use sim_network::model::{Backhaul, Instant, LinkConfig, Mesh, Path};
use std::time::Duration;
use support::model::raw;

/// One 64-byte frame: 96 B × 32 µs + 2 272 µs of overhead.
const A: Duration = Duration::from_micros(5344);

fn t0() -> Instant {
    Instant::from_millis(1000)
}

/// A raw, delay-free link of `hops` hops where hops within `interference` hear each other.
fn chain(hops: u32, interference: u32) -> LinkConfig {
    raw(LinkConfig {
        hops,
        interference,
        ..LinkConfig::ideal()
    })
}

fn no_backhaul() -> Backhaul {
    Backhaul {
        delay: Duration::ZERO,
        loss: 0.0,
    }
}

/// Two devices of a mesh send a 64-byte datagram up at the same moment: when each arrives.
fn two_devices(cfg: LinkConfig) -> (Duration, Duration) {
    let mesh = Mesh::new(cfg, no_backhaul(), 1);
    let (mut a, mut b) = (mesh.path(0), mesh.path(1));
    let at_a = a.send_up(t0(), 64)[0].at - t0();
    let at_b = b.send_up(t0(), 64)[0].at - t0();
    (at_a, at_b)
}

#[test]
fn how_far_a_hop_hears_decides_when_the_next_device_may_start() {
    // Device 0 takes hops 0, 1, 2 in [0, A), [A, 2A), [2A, 3A).
    // Deaf hops: device 1 follows one hop behind, hop 0 at [A, 2A): it arrives at 4A.
    assert_eq!(two_devices(chain(3, 0)), (A * 3, A * 4));
    // Half duplex only: hop 0 waits for hop 1 (the relay receiving from it cannot be sending),
    // but not for hop 2: device 1's hop 0 at [2A, 3A), beside device 0's hop 2. Arrives at 5A.
    assert_eq!(two_devices(chain(3, 1)), (A * 3, A * 5));
    // Two hops of reach (the default): all three hops take turns. Arrives at 6A.
    assert_eq!(two_devices(chain(3, 2)), (A * 3, A * 6));
    assert_eq!(LinkConfig::default().interference, 2);
}

#[test]
fn a_relay_cannot_send_and_receive_at_once() {
    // A request goes up a 2-hop path while the server's answer comes down at the same moment.
    // The relay between hop 0 and hop 1 hears the request on hop 0 during [0, A) and forwards it
    // on hop 1 during [A, 2A).
    let run = |interference| {
        let mut path = Path::new(chain(2, interference), no_backhaul(), 1);
        let up = path.send_up(t0(), 64)[0].at - t0();
        let down = path.send_down(t0(), 64)[0].at - t0();
        (up, down)
    };
    // Deaf hops: the relay would send the answer on hop 1 while receiving on hop 0, then pass it
    // on hop 0 right after: it arrives at 2A.
    assert_eq!(run(0), (A * 2, A * 2));
    // Half duplex: the answer waits until the relay is done with the request on both hops.
    assert_eq!(run(1), (A * 2, A * 4));
}

#[test]
fn hops_three_apart_send_at_once() {
    // Four hops, two of reach: device 1's first frame may go while device 0's is on hop 3.
    let (a, b) = two_devices(chain(4, 2));
    assert_eq!((a, b), (A * 4, A * 7));
    // With three of reach hop 3 is heard at hop 0 too, and device 1 waits for it.
    assert_eq!(two_devices(chain(4, 3)), (A * 4, A * 8));
}

#[test]
fn a_saturated_chain_carries_a_third_of_one_hop() {
    // Datagrams handed to a route back to back: how far apart they arrive once it is full.
    let gap = |hops| {
        let cfg = chain(hops, 2);
        let mut path = Path::new(cfg, no_backhaul(), 1);
        let arrivals: Vec<Instant> = (0..40).map(|_| path.send_up(t0(), 64)[0].at).collect();
        let last = arrivals[39] - arrivals[38];
        // Steady state: every gap from the tenth on is the same.
        assert!(arrivals[10..].windows(2).all(|w| w[1] - w[0] == last));
        (last, cfg.hops_sharing_air())
    };
    assert_eq!(gap(1), (A, 1));
    assert_eq!(gap(2), (A * 2, 2));
    assert_eq!(gap(3), (A * 3, 3));
    // Beyond three hops the chain reuses the air: still one datagram every three frame times.
    assert_eq!(gap(5), (A * 3, 3));
    assert_eq!(gap(8), (A * 3, 3));
}

#[test]
fn waiting_for_a_neighbour_costs_no_airtime() {
    let mesh = Mesh::new(chain(3, 2), no_backhaul(), 1);
    let mut paths: Vec<Path> = (0..3).map(|d| mesh.path(d)).collect();
    for p in &mut paths {
        p.send_up(t0(), 64);
    }
    // Each hop carried one frame per device: the turns are time lost, not airtime used.
    assert!(mesh.media().iter().all(|m| m.airtime_used() == A * 3));
    assert_eq!(mesh.media()[0].busy_until(), t0() + A * 7);
}

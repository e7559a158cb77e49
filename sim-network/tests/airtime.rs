//! Airtime at 250 kbit/s and queueing on busy media, with numbers computed by hand, on the raw
//! radio (every frame sent once, no acknowledgement): `mac.rs` adds what acknowledgements cost and
//! `interference.rs` what neighbouring hops do to each other.

mod support;

use sim_network::model::{
    Backhaul, DEFAULT_PER_FRAME_OVERHEAD, Instant, Link, LinkConfig, Medium, Mesh, Path,
};
use std::time::Duration;
use support::model::{raw, us};

/// 2272 µs: SHR+PHR 192 + mean CSMA backoff 1120 + CCA 128 + turnaround 192 + LIFS 640.
const OVERHEAD: Duration = Duration::from_micros(2272);
/// A 64-byte payload's frame: MAC header 21 + IPHC/UDP 9 + 64 + FCS 2 = 96 B × 32 µs + overhead.
const AIR_64: Duration = Duration::from_micros(96 * 32 + 2272);

fn t0() -> Instant {
    Instant::from_millis(1000)
}

#[test]
fn the_overhead_is_the_documented_sum() {
    assert_eq!(DEFAULT_PER_FRAME_OVERHEAD, OVERHEAD);
}

#[test]
fn a_full_127_byte_frame_takes_4064_us_plus_overhead() {
    let mut link = Link::new(raw(LinkConfig::ideal()), 1);
    // 95 B of payload fill the frame to exactly 127 bytes.
    let d = link.send(t0(), 95);
    assert_eq!(d[0].at - t0(), us(4064) + OVERHEAD);
    assert_eq!(link.stats().airtime, us(6336));
}

#[test]
fn a_64_byte_datagram_is_one_96_byte_frame() {
    let cfg = LinkConfig {
        delay: Duration::from_millis(2),
        ..LinkConfig::ideal()
    };
    let cfg = raw(cfg);
    let mut link = Link::new(cfg, 1);
    let d = link.send(t0(), 64);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].at - t0(), us(5344) + Duration::from_millis(2));
    assert_eq!(AIR_64, us(5344));
    let s = link.stats();
    assert_eq!((s.frames_sent, s.airtime, s.frame_bytes), (1, AIR_64, 96));
}

#[test]
fn a_1024_byte_datagram_costs_eleven_frames_of_airtime() {
    let mut link = Link::new(raw(LinkConfig::ideal()), 1);
    let d = link.send(t0(), 1024);
    // Bytes on air: 1024 payload + 9 headers + 11 × (21 MAC + 2 FCS) + FRAG1 4 + 10 × FRAGN 5 = 1340.
    let expected = us(1340 * 32) + OVERHEAD * 11;
    assert_eq!(expected, us(67_872));
    assert_eq!(d[0].at - t0(), expected);
    assert_eq!(link.stats().frames_sent, 11);
    assert_eq!(link.stats().frame_bytes, 1340);
}

#[test]
fn two_datagrams_sent_at_once_arrive_one_airtime_apart() {
    let cfg = LinkConfig {
        delay: Duration::from_millis(3),
        ..LinkConfig::ideal()
    };
    let cfg = raw(cfg);
    let mut link = Link::new(cfg, 1);
    let a = link.send(t0(), 64)[0].at;
    let b = link.send(t0(), 64)[0].at;
    assert_eq!(a - t0(), AIR_64 + Duration::from_millis(3));
    assert_eq!(b - a, AIR_64);
}

#[test]
fn devices_on_one_medium_queue_behind_each_other() {
    let medium = [Medium::new()];
    let mut links: Vec<Link> = (0..4)
        .map(|i| Link::on_media(raw(LinkConfig::ideal()), &medium, 9, i))
        .collect();
    let arrivals: Vec<Instant> = links.iter_mut().map(|l| l.send(t0(), 64)[0].at).collect();
    for (i, at) in arrivals.iter().enumerate() {
        assert_eq!(*at - t0(), AIR_64 * (i as u32 + 1));
    }
    assert_eq!(medium[0].airtime_used(), AIR_64 * 4);
    assert_eq!(medium[0].busy_until(), t0() + AIR_64 * 4);
}

#[test]
fn a_medium_left_idle_serves_at_once() {
    let mut link = Link::new(raw(LinkConfig::ideal()), 1);
    let a = link.send(t0(), 64)[0].at;
    let later = a + Duration::from_millis(1);
    assert_eq!(link.send(later, 64)[0].at - later, AIR_64);
}

#[test]
fn a_three_hop_path_costs_three_times_the_airtime() {
    let cfg = LinkConfig {
        delay: Duration::from_millis(2),
        hops: 3,
        ..LinkConfig::ideal()
    };
    let cfg = raw(cfg);
    let mut path = Path::new(cfg, Backhaul::default(), 1);
    let d = path.send_up(t0(), 64);
    // Three hops of airtime + 2 ms processing each, then 1 ms of backhaul.
    let expected = (AIR_64 + Duration::from_millis(2)) * 3 + Duration::from_millis(1);
    assert_eq!(d[0].at - t0(), expected);
    let up = path.stats().up;
    assert_eq!((up.frames_sent, up.airtime), (3, AIR_64 * 3));
    // The server's answer crosses the backhaul first, then the hops in reverse.
    let back = path.send_down(d[0].at, 64);
    assert_eq!(back[0].at - d[0].at, expected);
}

#[test]
fn both_directions_share_the_air() {
    let mut path = Path::new(raw(LinkConfig::ideal()), Backhaul::default(), 1);
    let up = path.send_up(t0(), 64)[0].at;
    // The server's reply leaves the backhaul 1 ms in, while the device's frame is still on the air.
    let down = path.send_down(t0(), 64)[0].at;
    assert_eq!(up - t0(), AIR_64 + Duration::from_millis(1));
    assert_eq!(down - t0(), AIR_64 * 2);
}

/// A raw two-hop mesh without delays or backhaul, hops within `interference` hearing each other.
fn two_hop_mesh(interference: u32) -> Mesh {
    let cfg = raw(LinkConfig {
        hops: 2,
        interference,
        ..LinkConfig::ideal()
    });
    let backhaul = Backhaul {
        delay: Duration::ZERO,
        loss: 0.0,
    };
    Mesh::new(cfg, backhaul, 3)
}

#[test]
fn a_busy_mesh_without_interference_pipelines_its_hops() {
    // Each hop on a medium of its own, deaf to the others (the model before issue 13).
    let mesh = two_hop_mesh(0);
    let mut paths: Vec<Path> = (0..4).map(|d| mesh.path(d)).collect();
    let arrivals: Vec<Instant> = paths
        .iter_mut()
        .map(|p| p.send_up(t0(), 64)[0].at)
        .collect();
    // Device i gets hop 0 after i others, hop 1 right behind: it arrives after (i + 2) airtimes.
    for (i, at) in arrivals.iter().enumerate() {
        assert_eq!(*at - t0(), AIR_64 * (i as u32 + 2), "device {i}");
    }
    assert_eq!(mesh.airtime_used(), AIR_64 * 8);
    assert!(mesh.media().iter().all(|m| m.airtime_used() == AIR_64 * 4));
}

#[test]
fn a_busy_two_hop_mesh_takes_turns_on_the_air() {
    // The same mesh as Thread's radios hear it (the default): the relay cannot receive on hop 0
    // while it sends on hop 1, so the 8 frames go one after the other.
    let mesh = two_hop_mesh(2);
    let mut paths: Vec<Path> = (0..4).map(|d| mesh.path(d)).collect();
    for (i, p) in paths.iter_mut().enumerate() {
        let at = p.send_up(t0(), 64)[0].at;
        assert_eq!(at - t0(), AIR_64 * (2 * i as u32 + 2), "device {i}");
    }
    // The same airtime as without interference: frames wait, they do not cost more.
    assert_eq!(mesh.airtime_used(), AIR_64 * 8);
}

//! Outages: everything on the air inside the window is lost, nothing outside it. On the raw radio,
//! so that a frame on the air in an outage is not sent again after it.

mod support;

use sim_network::model::{Backhaul, Instant, Link, LinkConfig, Mesh};
use std::time::Duration;
use support::model::{raw, us};

/// One 64-byte frame's airtime: 96 B × 32 µs + 2272 µs.
const AIR: Duration = Duration::from_micros(5344);

#[test]
fn a_link_outage_drops_everything_inside_and_nothing_outside() {
    let cfg = raw(LinkConfig {
        delay: Duration::from_millis(2),
        ..LinkConfig::ideal()
    });
    let mut link = Link::new(cfg, 5);
    let (from, until) = (Instant::from_millis(1000), Instant::from_millis(2000));
    link.outage(from, until);
    let mut inside = 0;
    for i in 0..300u64 {
        let now = Instant::from_millis(10 * i);
        let on_air = now < until && now + AIR > from;
        let d = link.send(now, 64);
        assert_eq!(d.is_empty(), on_air, "sent at {now:?}");
        inside += u64::from(on_air);
    }
    let s = link.stats();
    assert_eq!(inside, 100);
    assert_eq!((s.datagrams_dropped, s.dropped_in_outage), (inside, inside));
    assert_eq!(s.datagrams_delivered, 300 - inside);
}

#[test]
fn the_window_edges_are_exact() {
    let (from, until) = (Instant::from_millis(1000), Instant::from_millis(2000));
    let probe = |now: Instant| {
        let mut link = Link::new(raw(LinkConfig::ideal()), 5);
        link.outage(from, until);
        !link.send(now, 64).is_empty()
    };
    assert!(probe(from - AIR), "ends as the outage starts");
    assert!(!probe(from - AIR + us(1)));
    assert!(!probe(until - us(1)));
    assert!(probe(until), "starts as the outage ends");
}

#[test]
fn a_medium_outage_silences_every_device_behind_it() {
    // Hops deaf to each other, so that devices pipeline and the pattern below is easy to count.
    let cfg = raw(LinkConfig {
        hops: 3,
        interference: 0,
        ..LinkConfig::ideal()
    });
    let backhaul = Backhaul {
        delay: Duration::ZERO,
        loss: 0.0,
    };
    let mesh = Mesh::new(cfg, backhaul, 6);
    // The border router's neighbourhood (the last hop) is jammed for a second.
    let (from, until) = (Instant::from_millis(1000), Instant::from_millis(2000));
    mesh.media()[2].outage(from, until);
    let mut paths: Vec<_> = (0..5).map(|d| mesh.path(d)).collect();
    // Five devices sending at once pipeline: device i holds hop 2 during [now + (i+2)·AIR,
    // now + (i+3)·AIR). Batches just before each edge cut the batch in two.
    let batches = [
        Instant::from_millis(500),
        from - AIR * 5,
        Instant::from_millis(1500),
        until - AIR * 4,
        Instant::from_millis(2500),
    ];
    let mut lost = Vec::new();
    for now in batches {
        for (i, p) in paths.iter_mut().enumerate() {
            let (start, end) = (now + AIR * (i as u32 + 2), now + AIR * (i as u32 + 3));
            let d = p.send_up(now, 64);
            assert_eq!(
                d.is_empty(),
                start < until && end > from,
                "device {i} at {now:?}"
            );
            lost.push(d.is_empty());
        }
    }
    let pattern: String = lost.iter().map(|&l| if l { 'x' } else { '.' }).collect();
    assert_eq!(
        pattern,
        ".....   ...xx   xxxxx   xx...   .....".replace(' ', "")
    );
}

//! One seed, one run: the same seed and calls give the same deliveries; another seed differs.

use sim_network::model::{Backhaul, Delivery, Instant, LinkConfig, LossModel, Mesh};
use std::time::Duration;

/// A busy, lossy, jittery 3-hop mesh of 8 devices trading datagrams of mixed sizes with the server.
fn run(seed: u64) -> Vec<(u64, bool, Vec<Delivery>)> {
    let cfg = LinkConfig {
        loss: LossModel::GilbertElliott {
            p_good_to_bad: 0.05,
            p_bad_to_good: 0.3,
            loss_good: 0.02,
            loss_bad: 0.5,
        },
        jitter: Duration::from_millis(5),
        duplicate: 0.02,
        reorder: 0.02,
        hops: 3,
        ..LinkConfig::default()
    };
    let backhaul = Backhaul {
        loss: 0.01,
        ..Backhaul::default()
    };
    let mesh = Mesh::new(cfg, backhaul, seed);
    let mut paths: Vec<_> = (0..8).map(|d| mesh.path(d)).collect();
    let sizes = [16, 64, 100, 128, 256, 512];
    let mut out = Vec::new();
    for step in 0..2_000u64 {
        let now = Instant::from_millis(7 * step);
        let device = step % 8;
        let len = sizes[(step % 6) as usize];
        let up = step % 3 != 0;
        let p = &mut paths[device as usize];
        let d = if up {
            p.send_up(now, len)
        } else {
            p.send_down(now, len)
        };
        out.push((device, up, d));
    }
    out
}

#[test]
fn the_same_seed_gives_the_same_deliveries() {
    let a = run(7);
    assert_eq!(a, run(7));
    // The run is not trivial: things were lost, delivered, duplicated.
    assert!(a.iter().any(|(_, _, d)| d.is_empty()));
    assert!(a.iter().any(|(_, _, d)| d.len() == 1 && d[0].copies == 2));
}

#[test]
fn another_seed_gives_other_deliveries() {
    assert_ne!(run(7), run(8));
}

#[test]
fn the_sequence_is_pinned() {
    // The first arrivals of seed 7 in µs, recorded once: the same on every platform (ChaCha8 and our
    // own integer draws). If a change to the model moves them, recorded seeds no longer reproduce
    // their scenarios: say so in the change.
    let first: Vec<Option<u128>> = run(7)
        .iter()
        .take(12)
        .map(|(_, _, d)| d.first().map(|d| d.at.since_start().as_micros()))
        .collect();
    // Re-recorded for issue 13 (MAC acknowledgements and retries by default, hops within two
    // sharing airtime), and again for issue 17 (contention by default: an attempt that waits for
    // the air backs off again and may collide): seeds recorded before it no longer reproduce their
    // runs. The first arrival met no traffic and did not move.
    let pinned = [
        Some(31_759),
        Some(58_828),
        Some(130_552),
        Some(178_791),
        Some(252_397),
        Some(394_587),
        Some(406_465),
        Some(423_722),
        Some(476_908),
        Some(523_165),
        Some(593_193),
        Some(732_298),
    ];
    assert_eq!(first, pinned);
}

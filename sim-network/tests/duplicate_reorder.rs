//! Duplication and reordering happen at their configured rates, and never when turned off.

mod support;

use sim_network::model::{Delivery, Instant, Link, LinkConfig, LossModel};
use std::time::Duration;
use support::model::{assert_binomial, raw, send_every};

const AIR: Duration = Duration::from_micros(5344);

/// On the raw radio, so that every datagram takes exactly one frame's airtime.
fn cfg(duplicate: f64, reorder: f64) -> LinkConfig {
    raw(LinkConfig {
        delay: Duration::from_millis(2),
        duplicate,
        reorder,
        reorder_delay: Duration::from_millis(20),
        ..LinkConfig::ideal()
    })
}

/// Arrival order inversions: a datagram arriving before one sent earlier.
fn inversions(sent: &[(Instant, Vec<Delivery>)]) -> usize {
    let arrivals: Vec<Instant> = sent
        .iter()
        .flat_map(|(_, d)| d.iter().map(|d| d.at))
        .collect();
    arrivals.windows(2).filter(|w| w[1] < w[0]).count()
}

#[test]
fn duplicates_at_their_rate() {
    let n = 100_000;
    let mut link = Link::new(cfg(0.05, 0.0), 31);
    let sent = send_every(&mut link, n, 64, Instant::START, Duration::from_millis(10));
    let dups = sent.iter().filter(|(_, d)| d[0].copies == 2).count() as u64;
    assert!(sent.iter().all(|(_, d)| d.len() == 1 && d[0].copies <= 2));
    assert_binomial("duplicate = 0.05: duplicated", dups, n as u64, 0.05);
    assert_eq!(link.stats().datagrams_duplicated, dups);
    // Duplication does not move the arrival.
    assert!(
        sent.iter()
            .all(|(t, d)| d[0].at - *t == AIR + Duration::from_millis(2))
    );
}

#[test]
fn reorders_at_their_rate() {
    let n = 100_000;
    let mut link = Link::new(cfg(0.0, 0.05), 32);
    // One every 10 ms: a datagram held back 20 ms is overtaken by the next one.
    let sent = send_every(&mut link, n, 64, Instant::START, Duration::from_millis(10));
    let base = AIR + Duration::from_millis(2);
    let held = sent
        .iter()
        .filter(|(t, d)| d[0].at - *t == base + Duration::from_millis(20))
        .count() as u64;
    assert!(sent.iter().all(|(t, d)| {
        let late = d[0].at - *t;
        late == base || late == base + Duration::from_millis(20)
    }));
    assert_binomial("reorder = 0.05: held back", held, n as u64, 0.05);
    assert_eq!(link.stats().datagrams_reordered, held);
    let inv = inversions(&sent) as u64;
    eprintln!("reorder = 0.05: {inv} inversions in arrival order");
    // Every held datagram is overtaken, except when the next is held too (or it is the last).
    assert!(inv <= held && inv as f64 >= held as f64 * 0.9);
}

#[test]
fn never_duplicates_or_reorders_when_off() {
    // Loss, three hops, 20 ms of jitter per hop on datagrams sent every 3 ms: still in order, once.
    let lossy = LinkConfig {
        loss: LossModel::Bernoulli { p: 0.1 },
        jitter: Duration::from_millis(20),
        hops: 3,
        ..cfg(0.0, 0.0)
    };
    let mut link = Link::new(lossy, 33);
    let sent = send_every(
        &mut link,
        50_000,
        64,
        Instant::START,
        Duration::from_millis(3),
    );
    assert!(sent.iter().all(|(_, d)| d.iter().all(|d| d.copies == 1)));
    assert_eq!(inversions(&sent), 0);
    let s = link.stats();
    assert_eq!((s.datagrams_duplicated, s.datagrams_reordered), (0, 0));
    assert!(s.datagrams_dropped > 0);
}

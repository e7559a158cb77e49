//! Contention: an attempt that finds its medium busy waits, backs off once more, and may collide;
//! one that finds it free pays nothing. Times on the raw radio, where a 64-byte datagram is one
//! frame of 5 344 µs.

mod support;

use sim_network::model::{Backhaul, Contention, Instant, Link, LinkConfig, Mac, Medium, Mesh};
use std::time::Duration;
use support::model::{assert_binomial, raw, us};

/// One 64-byte frame: 96 B × 32 µs + 2 272 µs of overhead.
const A: Duration = Duration::from_micros(5344);

fn t0() -> Instant {
    Instant::from_millis(1000)
}

fn one_hop(contention: Contention) -> LinkConfig {
    raw(LinkConfig {
        contention,
        ..LinkConfig::ideal()
    })
}

fn no_backhaul() -> Backhaul {
    Backhaul {
        delay: Duration::ZERO,
        loss: 0.0,
    }
}

#[test]
fn the_default_backs_off_a_second_csma_round_and_may_collide() {
    let c = LinkConfig::default().contention;
    assert_eq!(c, Contention::THREAD);
    assert_eq!(c.busy_backoff, us(2400));
    assert!(c.collision > 0.0 && c.collision < 1.0);
    assert_eq!(LinkConfig::ideal().contention, Contention::NONE);
}

#[test]
fn a_sender_alone_on_the_air_never_waits_nor_collides() {
    let mut link = Link::new(one_hop(Contention::THREAD), 3);
    for i in 0..200u32 {
        let now = t0() + Duration::from_millis(20) * i;
        let d = link.send(now, 64);
        assert_eq!(d[0].at - now, A, "datagram {i}");
    }
    let s = link.stats();
    assert_eq!((s.channel_busy, s.collisions, s.frames_lost), (0, 0, 0));
}

#[test]
fn a_sender_that_finds_the_air_taken_backs_off_after_it_clears() {
    let cfg = one_hop(Contention {
        collision: 0.0,
        busy_backoff: us(2400),
    });
    let mesh = Mesh::new(cfg, no_backhaul(), 1);
    let (mut a, mut b) = (mesh.path(0), mesh.path(1));
    assert_eq!(a.send_up(t0(), 64)[0].at - t0(), A);
    // b waits for a's frame, then one more back-off: A + 2.4 ms + its own A.
    assert_eq!(b.send_up(t0(), 64)[0].at - t0(), A + us(2400) + A);
    let s = b.stats().up;
    assert_eq!((s.channel_busy, s.collisions), (1, 0));
}

#[test]
fn a_waiting_attempt_that_collides_is_lost_on_the_raw_radio_and_retried_with_acks() {
    let certain = Contention {
        collision: 1.0,
        busy_backoff: Duration::ZERO,
    };
    let medium = [Medium::new()];
    let mut first = Link::on_media(one_hop(certain), &medium, 5, 0);
    let mut raw_link = Link::on_media(one_hop(certain), &medium, 5, 1);
    assert_eq!(first.send(t0(), 64).len(), 1);
    assert!(
        raw_link.send(t0(), 64).is_empty(),
        "collided, never retried"
    );
    let s = raw_link.stats();
    assert_eq!((s.channel_busy, s.collisions, s.frames_lost), (1, 1, 1));
    // With acknowledgements the sender retries; the retry goes after its own pause and finds the
    // air free (nobody else is sending), so it gets through.
    let acked = LinkConfig {
        mac: Mac::THREAD,
        ..one_hop(certain)
    };
    let medium = [Medium::new()];
    let mut first = Link::on_media(acked, &medium, 5, 0);
    let mut second = Link::on_media(acked, &medium, 5, 1);
    assert_eq!(first.send(t0(), 64).len(), 1);
    assert_eq!(second.send(t0(), 64).len(), 1);
    let s = second.stats();
    assert_eq!((s.collisions, s.mac_retries, s.acks_sent), (1, 1, 1));
}

#[test]
fn waiting_attempts_collide_at_the_configured_rate() {
    let cfg = LinkConfig {
        contention: Contention {
            collision: 0.4,
            busy_backoff: Duration::ZERO,
        },
        ..LinkConfig::ideal()
    };
    let medium = [Medium::new()];
    let mut links: Vec<Link> = (0..4)
        .map(|i| Link::on_media(cfg, &medium, 11, i))
        .collect();
    // Four devices send at once, every 100 ms: three of them wait each round.
    for round in 0..2000u32 {
        let now = t0() + Duration::from_millis(100) * round;
        for l in &mut links {
            assert_eq!(l.send(now, 64).len(), 1, "MAC retries recover collisions");
        }
    }
    let (busy, collided) = links.iter().fold((0, 0), |(b, c), l| {
        (b + l.stats().channel_busy, c + l.stats().collisions)
    });
    assert!(busy >= 3 * 2000, "{busy}");
    assert_binomial("collisions per waiting attempt", collided, busy, 0.4);
}

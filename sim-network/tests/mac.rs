//! 802.15.4 MAC acknowledgements and retries (the default, as OpenThread sends unicast frames):
//! what an acknowledgement costs on the air, retries until one comes back or the retries run out,
//! a lost acknowledgement's duplicate dropped by the receiver, and a failed fragment ending its
//! datagram. Times by hand: a 64-byte datagram is one frame of 5 344 µs; an acknowledgement adds
//! 544 µs (turnaround 192 + 11 bytes at 32 µs), a missing one 224 µs (macAckWaitDuration 864
//! minus the inter-frame space the overhead already counts).

mod support;

use sim_network::model::{
    Instant, Link, LinkConfig, LossModel, Mac, Medium, ack_exchange, ack_timeout, retry_pause,
};
use std::time::Duration;
use support::model::{assert_binomial, raw, send_every, us};

const A: Duration = Duration::from_micros(5344);
const ACK: Duration = Duration::from_micros(544);
const NO_ACK: Duration = Duration::from_micros(224);

fn t0() -> Instant {
    Instant::from_millis(1000)
}

fn acked(retries: u8, p: f64) -> LinkConfig {
    LinkConfig {
        mac: Mac::Acked {
            max_frame_retries: retries,
        },
        loss: if p == 0.0 {
            LossModel::None
        } else {
            LossModel::Bernoulli { p }
        },
        ..LinkConfig::ideal()
    }
}

#[test]
fn the_default_is_openthread_s_unicast_mac() {
    assert_eq!(
        LinkConfig::default().mac,
        Mac::Acked {
            max_frame_retries: 15
        }
    );
    assert_eq!((ack_exchange(250_000), ack_timeout()), (ACK, NO_ACK));
}

#[test]
fn an_acknowledged_frame_holds_the_air_for_its_acknowledgement() {
    let mut link = Link::new(LinkConfig::ideal(), 1);
    let d = link.send(t0(), 64);
    assert_eq!(d[0].at - t0(), A + ACK);
    let s = link.stats();
    assert_eq!((s.frames_sent, s.acks_sent, s.mac_retries), (1, 1, 0));
    // 96 bytes of frame and 5 of acknowledgement.
    assert_eq!((s.frame_bytes, s.airtime), (101, A + ACK));
    // The next datagram waits for the acknowledgement too.
    let next = link.send(t0(), 64);
    assert_eq!(next[0].at - d[0].at, A + ACK);
}

#[test]
fn a_frame_is_retried_until_its_retries_run_out() {
    let media = Medium::chain(1, 2);
    let mut link = Link::on_media(acked(3, 1.0), &media, 1, 0);
    assert!(link.send(t0(), 64).is_empty());
    let s = link.stats();
    assert_eq!(
        (s.frames_sent, s.frames_lost, s.mac_retries, s.mac_failures),
        (4, 4, 3, 1)
    );
    assert_eq!((s.acks_sent, s.datagrams_dropped), (0, 1));
    // Four unacknowledged attempts, with OpenThread's pauses before retries 1, 2 and 3 (mean 0,
    // 160 and 480 µs) off the air.
    assert_eq!(
        [retry_pause(1), retry_pause(2), retry_pause(3)],
        [us(0), us(160), us(480)]
    );
    assert_eq!(media[0].busy_until(), t0() + (A + NO_ACK) * 4 + us(640));
    assert_eq!(media[0].airtime_used(), (A + NO_ACK) * 4);
}

#[test]
fn a_fragment_that_fails_drops_the_rest_of_its_datagram() {
    // 1024 bytes are 11 frames. With acknowledgements the sender knows the first one failed and
    // stops there, after its 16 attempts; the raw radio sends all 11 blindly.
    let mut link = Link::new(acked(15, 1.0), 1);
    assert!(link.send(t0(), 1024).is_empty());
    let s = link.stats();
    assert_eq!((s.frames_sent, s.mac_retries, s.mac_failures), (16, 15, 1));
    let mut blind = Link::new(
        raw(LinkConfig {
            loss: LossModel::Bernoulli { p: 1.0 },
            ..LinkConfig::ideal()
        }),
        1,
    );
    assert!(blind.send(t0(), 1024).is_empty());
    assert_eq!(blind.stats().frames_sent, 11);
}

#[test]
fn retries_recover_frames_at_their_rate_and_duplicates_are_dropped() {
    // p = 0.5 on every frame and every acknowledgement, 3 retries (4 attempts): a frame never
    // reaches the receiver only if all 4 attempts are lost, 0.5^4; an attempt ends the frame
    // when frame and acknowledgement both cross, 0.25.
    let n = 50_000;
    let mut link = Link::new(acked(3, 0.5), 31);
    let sent = send_every(&mut link, n, 64, Instant::START, Duration::from_millis(100));
    let got = sent.iter().filter(|(_, d)| !d.is_empty()).count() as u64;
    assert_binomial(
        "MAC ACK, 3 retries, p = 0.5",
        got,
        n as u64,
        1.0 - 0.5f64.powi(4),
    );
    let s = link.stats();
    let attempts = s.frames_sent as f64 / n as f64;
    let expected = (1.0 - 0.75f64.powi(4)) / 0.25;
    eprintln!("attempts per frame: measured {attempts:.4}, expected {expected:.4}");
    assert!((attempts - expected).abs() < 0.03);
    assert_eq!(s.mac_retries, s.frames_sent - n as u64);
    // Every attempt that arrived was acknowledged; every arrival after the first was a duplicate
    // the receiver dropped: the datagram is delivered once.
    assert_eq!(s.acks_sent, s.frames_sent - s.frames_lost);
    assert_eq!(s.acks_sent - s.mac_duplicates, got);
    assert!(s.mac_duplicates > 1000 && s.mac_duplicates <= s.acks_lost);
    assert!(sent.iter().all(|(_, d)| d.iter().all(|d| d.copies == 1)));
    assert_eq!(s.datagrams_duplicated, 0);
}

#[test]
fn a_lost_acknowledgement_delivers_once_at_the_first_arrival() {
    // Find, in a seeded run, a datagram whose first attempt arrived and whose acknowledgement was
    // lost, and nothing else lost: the receiver has it after that first attempt, while the sender
    // goes on to retry it.
    let media = Medium::chain(1, 2);
    let mut link = Link::on_media(acked(15, 0.5), &media, 7, 0);
    let found = (0..1000u64).find_map(|i| {
        let now = t0() + Duration::from_millis(200) * i as u32;
        let before = link.stats();
        let d = link.send(now, 64);
        let s = link.stats();
        let first_arrived_unacknowledged = s.frames_lost == before.frames_lost
            && s.mac_retries > before.mac_retries
            && s.mac_duplicates > before.mac_duplicates;
        first_arrived_unacknowledged.then(|| (now, d, s.mac_retries - before.mac_retries))
    });
    let (now, d, retries) = found.expect("seed 7 has such a datagram in its first 1000");
    assert_eq!(d.len(), 1, "delivered once");
    assert_eq!(d[0].copies, 1);
    assert_eq!(d[0].at - now, A + NO_ACK, "at the end of the first attempt");
    // The sender was busy longer: its retries up to the acknowledged one.
    assert!(media[0].busy_until() > d[0].at);
    assert!(retries >= 1);
}

#[test]
fn without_acknowledgements_nothing_is_retried() {
    let mut link = Link::new(
        raw(LinkConfig {
            loss: LossModel::Bernoulli { p: 0.5 },
            ..LinkConfig::ideal()
        }),
        3,
    );
    send_every(
        &mut link,
        1000,
        64,
        Instant::START,
        Duration::from_millis(10),
    );
    let s = link.stats();
    assert_eq!((s.frames_sent, s.mac_retries, s.acks_sent), (1000, 0, 0));
    assert_eq!(s.frame_bytes, 96 * 1000);
}

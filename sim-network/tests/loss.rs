//! Frame loss on the raw radio (no MAC retries to hide it): Bernoulli rates per frame and per hop,
//! Gilbert–Elliott bursts and stationary loss; and loss per datagram, whatever its size.

mod support;

use sim_network::model::{Instant, Link, LinkConfig, LossModel, LossUnit, Mac};
use std::time::Duration;
use support::model::{assert_binomial, raw, send_every};

/// Delivered datagrams out of `n` of `len` bytes, one every 100 ms (an idle medium each time).
fn delivered(cfg: LinkConfig, seed: u64, n: usize, len: usize) -> (u64, Link) {
    let mut link = Link::new(cfg, seed);
    let got = send_every(
        &mut link,
        n,
        len,
        Instant::START,
        Duration::from_millis(100),
    )
    .iter()
    .filter(|(_, d)| !d.is_empty())
    .count() as u64;
    (got, link)
}

fn bernoulli(p: f64, hops: u32) -> LinkConfig {
    raw(LinkConfig {
        loss: LossModel::Bernoulli { p },
        hops,
        ..LinkConfig::ideal()
    })
}

#[test]
fn one_frame_datagrams_survive_with_1_minus_p() {
    let n = 100_000;
    let (got, link) = delivered(bernoulli(0.1, 1), 11, n, 64);
    assert_binomial("1 frame, p = 0.1: delivered", got, n as u64, 0.9);
    let s = link.stats();
    assert_eq!(s.datagrams_delivered + s.datagrams_dropped, n as u64);
    assert_eq!(s.frames_lost, s.datagrams_dropped);
}

#[test]
fn an_eleven_frame_datagram_survives_with_0_9_pow_11() {
    let n = 50_000;
    let (got, link) = delivered(bernoulli(0.1, 1), 12, n, 1024);
    assert_binomial(
        "11 frames, p = 0.1: delivered",
        got,
        n as u64,
        0.9f64.powi(11),
    );
    let s = link.stats();
    assert_eq!(s.frames_sent, 11 * n as u64);
    assert_binomial("11 frames: frames lost", s.frames_lost, s.frames_sent, 0.1);
}

#[test]
fn three_hops_compound() {
    let n = 100_000;
    let (got, link) = delivered(bernoulli(0.1, 3), 13, n, 64);
    assert_binomial("3 hops, p = 0.1: delivered", got, n as u64, 0.9f64.powi(3));
    // A datagram lost on an early hop never takes the later ones.
    let s = link.stats();
    assert!(s.frames_sent < 3 * n as u64);
    assert_binomial("3 hops: frames lost", s.frames_lost, s.frames_sent, 0.1);
}

/// The loss sequence of `n` one-frame datagrams (true = lost).
fn losses(model: LossModel, seed: u64, n: usize) -> Vec<bool> {
    let cfg = raw(LinkConfig {
        loss: model,
        ..LinkConfig::ideal()
    });
    let mut link = Link::new(cfg, seed);
    send_every(&mut link, n, 64, Instant::START, Duration::from_millis(10))
        .into_iter()
        .map(|(_, d)| d.is_empty())
        .collect()
}

/// The long-run variance of the mean of a Gilbert–Elliott loss indicator, per sample: emission
/// noise plus the Markov chain's autocorrelated part, π(1−π)(1+λ)/(1−λ) with λ = 1 − a − b.
fn ge_variance(a: f64, b: f64, lg: f64, lb: f64) -> f64 {
    let pi = a / (a + b);
    let lambda = 1.0 - a - b;
    let emission = (1.0 - pi) * lg * (1.0 - lg) + pi * lb * (1.0 - lb);
    emission + (lb - lg).powi(2) * pi * (1.0 - pi) * (1.0 + lambda) / (1.0 - lambda)
}

#[test]
fn gilbert_bursts_last_one_over_p_bad_to_good() {
    let (a, b) = (0.01, 0.25);
    let model = LossModel::GilbertElliott {
        p_good_to_bad: a,
        p_bad_to_good: b,
        loss_good: 0.0,
        loss_bad: 1.0,
    };
    let n = 400_000;
    let lost = losses(model, 21, n);
    let mut bursts = Vec::new();
    let mut run = 0u64;
    for &l in &lost {
        if l {
            run += 1;
        } else if run > 0 {
            bursts.push(run);
            run = 0;
        }
    }
    let mean = bursts.iter().sum::<u64>() as f64 / bursts.len() as f64;
    // Burst lengths are geometric: mean 1/b, variance (1 − b)/b².
    let sigma = ((1.0 - b) / (b * b) / bursts.len() as f64).sqrt();
    eprintln!(
        "GE bursts: {} bursts, mean {mean:.3} frames, expected {:.3} ± {:.3} (5σ)",
        bursts.len(),
        1.0 / b,
        5.0 * sigma
    );
    assert!((mean - 1.0 / b).abs() <= 5.0 * sigma);
    let rate = lost.iter().filter(|&&l| l).count() as f64 / n as f64;
    let expected = model.stationary_loss();
    let tol = 5.0 * (ge_variance(a, b, 0.0, 1.0) / n as f64).sqrt();
    eprintln!("Gilbert loss: measured {rate:.5}, expected {expected:.5} ± {tol:.5}");
    assert!((rate - expected).abs() <= tol);
    // Bursty, not independent: a loss follows a loss far more often than the average rate.
    let after_loss = lost.windows(2).filter(|w| w[0] && w[1]).count() as f64
        / lost.iter().filter(|&&l| l).count() as f64;
    assert!(after_loss > 0.7, "P(loss | loss) = {after_loss}");
}

#[test]
fn gilbert_elliott_stationary_loss_matches_the_analytic_value() {
    let (a, b, lg, lb) = (0.02, 0.2, 0.01, 0.6);
    let model = LossModel::GilbertElliott {
        p_good_to_bad: a,
        p_bad_to_good: b,
        loss_good: lg,
        loss_bad: lb,
    };
    // π_bad = a / (a + b) = 1/11; loss = 10/11 · 0.01 + 1/11 · 0.6.
    let expected = (10.0 * 0.01 + 0.6) / 11.0;
    assert!((model.stationary_loss() - expected).abs() < 1e-12);
    let n = 400_000;
    let lost = losses(model, 22, n);
    let rate = lost.iter().filter(|&&l| l).count() as f64 / n as f64;
    let tol = 5.0 * (ge_variance(a, b, lg, lb) / n as f64).sqrt();
    eprintln!("GE loss: measured {rate:.5}, expected {expected:.5} ± {tol:.5}");
    assert!((rate - expected).abs() <= tol);
}

#[test]
fn no_loss_model_loses_nothing() {
    let (got, _) = delivered(LinkConfig::ideal(), 1, 10_000, 1024);
    assert_eq!(got, 10_000);
}

fn per_datagram(p: f64, hops: u32) -> LinkConfig {
    LinkConfig {
        loss_unit: LossUnit::Datagram,
        ..bernoulli(p, hops)
    }
}

#[test]
fn datagram_loss_takes_a_datagram_whatever_its_size() {
    let n = 50_000;
    // 11 frames, yet lost with p, not 1 − 0.9^11: the draw is per datagram.
    let (got, link) = delivered(per_datagram(0.1, 1), 14, n, 1024);
    assert_binomial("per datagram, 11 frames, p = 0.1", got, n as u64, 0.9);
    let s = link.stats();
    // Every frame is sent and none is lost on its own.
    assert_eq!((s.frames_sent, s.frames_lost), (11 * n as u64, 0));
    assert_eq!(s.datagrams_dropped, n as u64 - got);
}

#[test]
fn datagram_loss_compounds_over_hops() {
    let n = 100_000;
    let (got, _) = delivered(per_datagram(0.1, 3), 15, n, 300);
    assert_binomial("per datagram, 3 hops", got, n as u64, 0.9f64.powi(3));
}

#[test]
fn mac_retries_do_not_bring_back_a_datagram_lost_above_the_mac() {
    let n = 50_000;
    let cfg = LinkConfig {
        mac: Mac::THREAD,
        ..per_datagram(0.2, 1)
    };
    let (got, link) = delivered(cfg, 16, n, 256);
    assert_binomial("per datagram with MAC ACK", got, n as u64, 0.8);
    let s = link.stats();
    // Every frame was acknowledged at once: the loss is not the MAC's to see.
    assert_eq!((s.mac_retries, s.acks_sent), (0, s.frames_sent));
}

//! Shared by the model's tests: statistical bands and a steady sender.

use sim_network::model::{Delivery, Instant, Link, LinkConfig, Mac};
use std::time::Duration;

/// Asserts that `hits` out of `n` Bernoulli trials is within 5 standard deviations of `p`, and
/// prints the measurement (`cargo test -- --nocapture` shows it).
pub fn assert_binomial(what: &str, hits: u64, n: u64, p: f64) {
    let measured = hits as f64 / n as f64;
    let sigma = (p * (1.0 - p) / n as f64).sqrt();
    eprintln!(
        "{what}: measured {measured:.5}, expected {p:.5} ± {:.5} (5σ), n = {n}",
        5.0 * sigma
    );
    assert!(
        (measured - p).abs() <= 5.0 * sigma,
        "{what}: measured {measured}, expected {p} ± {}",
        5.0 * sigma
    );
}

/// Sends `n` datagrams of `len` bytes, one every `gap`, starting at `start`; returns each one's
/// send time and deliveries.
pub fn send_every(
    link: &mut Link,
    n: usize,
    len: usize,
    start: Instant,
    gap: Duration,
) -> Vec<(Instant, Vec<Delivery>)> {
    (0..n)
        .map(|i| {
            let now = start + gap * i as u32;
            (now, link.send(now, len))
        })
        .collect()
}

/// Microseconds as a `Duration`.
pub fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// `cfg` on the raw radio: no MAC acknowledgements, every frame sent once.
pub fn raw(cfg: LinkConfig) -> LinkConfig {
    LinkConfig {
        mac: Mac::Raw,
        ..cfg
    }
}

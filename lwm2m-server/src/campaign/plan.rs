//! The shape of a rollout: wave sizes from cumulative percentages, the failure-threshold decision,
//! and the mesh a device belongs to (its address prefix, which names its border router).

use std::net::{IpAddr, SocketAddr};

/// The waves used when a campaign names none: a canary, then ever larger shares.
pub const DEFAULT_WAVES: [u32; 4] = [1, 10, 50, 100];

/// Checks a wave list: non-empty, each in 1..=100, strictly increasing, ending at 100.
pub fn validate_waves(waves: &[u32]) -> Result<(), String> {
    if waves.is_empty() {
        return Err(
            "the wave list is empty: give cumulative percentages such as 1,10,50,100".into(),
        );
    }
    for w in waves {
        if *w == 0 || *w > 100 {
            return Err(format!(
                "wave {w}% is out of range: each wave is a cumulative percentage in 1..=100"
            ));
        }
    }
    if let Some(pair) = waves.windows(2).find(|p| p[0] >= p[1]) {
        return Err(format!(
            "waves must increase (cumulative percentages): {} is followed by {}",
            pair[0], pair[1]
        ));
    }
    if waves.last() != Some(&100) {
        return Err(format!(
            "the last wave must be 100 (cumulative), not {}: otherwise part of the target set is never updated",
            waves.last().copied().unwrap_or(0)
        ));
    }
    Ok(())
}

/// Checks a failure threshold: a fraction in [0, 1).
pub fn validate_threshold(t: f64) -> Result<(), String> {
    if !t.is_finite() || !(0.0..1.0).contains(&t) {
        return Err(format!(
            "failure threshold {t} is out of range: give a fraction in [0, 1), e.g. 0.1 for 10 %"
        ));
    }
    Ok(())
}

/// The size of each wave for `n` devices: the cumulative share `ceil(n * p / 100)`, and at least
/// one more device than the wave before while any are left. Sizes sum to `n`; a wave can be empty
/// only when the devices ran out before it (e.g. 2 devices and four waves).
pub fn wave_sizes(n: usize, waves: &[u32]) -> Vec<usize> {
    let mut sizes = Vec::with_capacity(waves.len());
    let mut done = 0usize;
    for (i, p) in waves.iter().enumerate() {
        let share = (n * *p as usize).div_ceil(100);
        let mut cum = share.max(done + 1).min(n);
        if i + 1 == waves.len() {
            cum = n;
        }
        sizes.push(cum - done);
        done = cum;
    }
    sizes
}

/// Whether a wave with these outcomes must stop the campaign: failed / decided exceeds the
/// threshold. Devices not yet decided, asleep or skipped do not count either way.
pub fn exceeds_threshold(failed: u64, decided: u64, threshold: f64) -> bool {
    decided > 0 && (failed as f64 / decided as f64) > threshold
}

/// The order devices start in: meshes take turns (in the order they first appear), each mesh's
/// devices in the order given. So the first waves sample every mesh instead of filling one, and
/// a wave's downloads spread over as many border routers as the per-mesh limit allows.
pub fn interleave_meshes<T: Clone>(devices: &[(T, Option<String>)]) -> Vec<(T, Option<String>)> {
    let mut order: Vec<Option<String>> = Vec::new();
    let mut groups: std::collections::HashMap<Option<String>, std::collections::VecDeque<usize>> =
        std::collections::HashMap::new();
    for (i, (_, mesh)) in devices.iter().enumerate() {
        let g = groups.entry(mesh.clone()).or_insert_with(|| {
            order.push(mesh.clone());
            std::collections::VecDeque::new()
        });
        g.push_back(i);
    }
    let mut out = Vec::with_capacity(devices.len());
    while out.len() < devices.len() {
        for mesh in &order {
            if let Some(i) = groups.get_mut(mesh).and_then(|g| g.pop_front()) {
                out.push(devices[i].clone());
            }
        }
    }
    out
}

/// The mesh of a device: its address prefix (IPv6 `/v6_len`, IPv4 `/v4_len`), e.g.
/// `fd00:0:0:1::/64`. On a Thread network every device behind one border router shares the /64
/// the border router advertises, so the prefix names the router whose airtime the devices share.
pub fn mesh_of(addr: SocketAddr, v6_len: u8, v4_len: u8) -> String {
    match addr.ip() {
        IpAddr::V6(ip) => {
            // An IPv4-mapped address is an IPv4 device behind a dual-stack socket.
            if let Some(v4) = ip.to_ipv4_mapped() {
                return mesh_of(SocketAddr::new(v4.into(), addr.port()), v6_len, v4_len);
            }
            let len = u32::from(v6_len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            let net = std::net::Ipv6Addr::from(u128::from(ip) & mask);
            format!("{net}/{len}")
        }
        IpAddr::V4(ip) => {
            let len = u32::from(v4_len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let net = std::net::Ipv4Addr::from(u32::from(ip) & mask);
            format!("{net}/{len}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_percent_of_200_is_2_and_waves_are_cumulative() {
        assert_eq!(wave_sizes(200, &DEFAULT_WAVES), vec![2, 18, 80, 100]);
        assert_eq!(wave_sizes(200, &DEFAULT_WAVES).iter().sum::<usize>(), 200);
    }

    #[test]
    fn wave_sizes_round_up_and_take_at_least_one() {
        // 1 % of 150 = 1.5 -> 2; 10 % = 15; 50 % = 75.
        assert_eq!(wave_sizes(150, &DEFAULT_WAVES), vec![2, 13, 60, 75]);
        // 1 % of 10 = 0.1 -> 1; 10 % = 1 -> at least one more: 2.
        assert_eq!(wave_sizes(10, &DEFAULT_WAVES), vec![1, 1, 3, 5]);
        // Fewer devices than waves: the last waves are empty.
        assert_eq!(wave_sizes(2, &DEFAULT_WAVES), vec![1, 1, 0, 0]);
        assert_eq!(wave_sizes(1, &[100]), vec![1]);
        assert_eq!(
            wave_sizes(100_000, &DEFAULT_WAVES),
            vec![1000, 9000, 40_000, 50_000]
        );
    }

    #[test]
    fn bad_wave_lists_are_refused_with_a_reason() {
        assert!(validate_waves(&[]).unwrap_err().contains("empty"));
        assert!(
            validate_waves(&[10, 5, 100])
                .unwrap_err()
                .contains("increase")
        );
        assert!(
            validate_waves(&[10, 10, 100])
                .unwrap_err()
                .contains("increase")
        );
        assert!(validate_waves(&[50, 150]).unwrap_err().contains("range"));
        assert!(validate_waves(&[0, 100]).unwrap_err().contains("range"));
        assert!(validate_waves(&[1, 50]).unwrap_err().contains("last wave"));
        assert!(validate_waves(&[1, 10, 50, 100]).is_ok());
        assert!(validate_waves(&[100]).is_ok());
    }

    #[test]
    fn threshold_decision() {
        assert!(validate_threshold(0.1).is_ok());
        assert!(validate_threshold(0.0).is_ok());
        assert!(validate_threshold(1.0).is_err());
        assert!(validate_threshold(-0.1).is_err());
        assert!(validate_threshold(f64::NAN).is_err());
        // Exceeds, not reaches: 1 of 10 at 0.1 goes on, 2 of 10 stops.
        assert!(!exceeds_threshold(1, 10, 0.1));
        assert!(exceeds_threshold(2, 10, 0.1));
        assert!(!exceeds_threshold(0, 0, 0.1));
        // A zero threshold stops at the first failure.
        assert!(exceeds_threshold(1, 50, 0.0));
        assert!(!exceeds_threshold(0, 50, 0.0));
    }

    #[test]
    fn meshes_take_turns() {
        let m = |s: &str| Some(s.to_string());
        let devices = vec![
            ("a1", m("A")),
            ("a2", m("A")),
            ("a3", m("A")),
            ("b1", m("B")),
            ("x", None),
            ("b2", m("B")),
        ];
        let order: Vec<&str> = interleave_meshes(&devices).iter().map(|d| d.0).collect();
        assert_eq!(order, ["a1", "b1", "x", "a2", "b2", "a3"]);
    }

    #[test]
    fn meshes_are_address_prefixes() {
        let a: SocketAddr = "[fd00:0:0:1::5]:5683".parse().unwrap();
        let b: SocketAddr = "[fd00:0:0:1:0:0:1:7]:40000".parse().unwrap();
        let c: SocketAddr = "[fd00:0:0:2::5]:5683".parse().unwrap();
        assert_eq!(mesh_of(a, 64, 24), "fd00:0:0:1::/64");
        assert_eq!(mesh_of(a, 64, 24), mesh_of(b, 64, 24));
        assert_ne!(mesh_of(a, 64, 24), mesh_of(c, 64, 24));
        // A shorter prefix puts both meshes together.
        assert_eq!(mesh_of(a, 48, 24), mesh_of(c, 48, 24));
        let v4: SocketAddr = "192.168.7.42:5683".parse().unwrap();
        assert_eq!(mesh_of(v4, 64, 24), "192.168.7.0/24");
        assert_eq!(mesh_of(v4, 64, 16), "192.168.0.0/16");
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:5683".parse().unwrap();
        assert_eq!(mesh_of(mapped, 64, 24), "10.1.2.0/24");
    }
}

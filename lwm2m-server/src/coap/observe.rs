//! Notification ordering for the observer role (RFC 7641 §3.4).

use std::time::{Duration, Instant};

/// True when a notification with sequence number `v2` received at `t2` is newer than the last
/// one used (`v1` at `t1`). Observe values are 24-bit and wrap; after 128 s anything is newer.
pub(crate) fn is_newer(v1: u32, t1: Instant, v2: u32, t2: Instant) -> bool {
    const HALF: u32 = 1 << 23;
    (v1 < v2 && v2 - v1 < HALF) || (v1 > v2 && v1 - v2 > HALF) || t2 > t1 + Duration::from_secs(128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_comparison_follows_rfc7641_section_3_4() {
        let t = Instant::now();
        assert!(is_newer(5, t, 6, t));
        assert!(!is_newer(6, t, 5, t));
        assert!(!is_newer(6, t, 6, t), "a repeat is not newer");
        // wrap-around: 0xFFFFFF then 1 is newer; 1 then 0xFFFFFF is not
        assert!(is_newer(0xff_ffff, t, 1, t));
        assert!(!is_newer(1, t, 0xff_ffff, t));
        // more than 2^23 ahead counts as older
        assert!(!is_newer(0, t, (1 << 23) + 1, t));
        // after 128 s even an older number is taken
        assert!(is_newer(6, t, 5, t + Duration::from_secs(129)));
        assert!(!is_newer(6, t, 5, t + Duration::from_secs(128)));
    }
}

//! Frames per datagram against the smoltcp 0.14 measurement (shared/notes/rust-crates.md §3).

use sim_network::model::{Framing, frames_for};

#[test]
fn frames_match_the_smoltcp_measurement() {
    for len in 32..=90 {
        assert_eq!(frames_for(len), 1, "{len} B");
    }
    for (len, frames) in [(100, 2), (128, 2), (256, 3), (512, 6), (1024, 11)] {
        assert_eq!(frames_for(len), frames, "{len} B");
    }
}

#[test]
fn one_frame_holds_up_to_95_bytes() {
    assert_eq!(frames_for(0), 1);
    assert_eq!(frames_for(95), 1);
    assert_eq!(frames_for(96), 2);
    // FRAG1 carries 88 payload bytes, each FRAGN 96.
    assert_eq!(frames_for(88 + 96), 2);
    assert_eq!(frames_for(88 + 96 + 1), 3);
}

#[test]
fn frames_grow_monotonically_one_at_a_time() {
    let mut prev = frames_for(0);
    for len in 1..=2000 {
        let n = frames_for(len);
        assert!(n == prev || n == prev + 1, "{len} B: {prev} then {n}");
        prev = n;
    }
}

#[test]
fn every_frame_fits_in_127_bytes_and_carries_the_datagram_once() {
    let f = Framing::SMOLTCP;
    for len in 0..=1500 {
        let sizes: Vec<usize> = f.frame_sizes(len).collect();
        assert_eq!(sizes.len() as u32, f.frames(len));
        assert!(sizes.iter().all(|&s| s <= 127), "{len} B: {sizes:?}");
        let headers = if sizes.len() == 1 {
            23
        } else {
            23 * sizes.len() + 4 + 5 * (sizes.len() - 1)
        };
        assert_eq!(sizes.iter().sum::<usize>() - headers, len + 9, "{len} B");
    }
}

#[test]
fn short_addresses_fit_more_per_frame() {
    // 9-byte MAC header (short addresses): 127 - 2 - 9 - 9 = 107 payload bytes in one frame.
    let short = Framing {
        mac_header: 9,
        ip_udp_header: 9,
    };
    assert_eq!(short.frames(107), 1);
    assert_eq!(short.frames(108), 2);
}

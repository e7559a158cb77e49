//! The airtime lower bound of a transfer on the link model: what the image costs the air if every
//! block and its request cross once, with the fewest header bytes CoAP allows, in the block size
//! that costs least. It follows the model: with MAC acknowledgements each frame also holds the air
//! for its acknowledgement, and hops within the model's interference range take turns, so a route
//! of h hops costs min(h, interference + 1) times one hop's airtime.

use sim_network::model::LinkConfig;

/// Bytes of CoAP around a block in the response: a 4-byte header, a 1-byte token, a 2-byte Block2
/// option and the payload marker.
const RESPONSE_OVERHEAD: usize = 8;
/// Bytes of the smallest block request (header, token, Uri-Path, Block2).
const REQUEST: usize = 16;

/// The bound for `size` bytes on `link`, in seconds, and the block size that reaches it; `None`
/// when the link's frames take no airtime.
pub fn airtime_bound(size: usize, link: &LinkConfig) -> Option<(f64, usize)> {
    if !link.on_air {
        return None;
    }
    let cost = |payload: usize| -> f64 {
        link.framing
            .frame_sizes(payload)
            .map(|f| link.frame_airtime(f).as_secs_f64())
            .sum()
    };
    let turns = f64::from(link.hops_sharing_air());
    (4..=10)
        .map(|e| {
            let block = 1usize << e;
            let blocks = size.div_ceil(block);
            let one_hop = blocks as f64 * (cost(block + RESPONSE_OVERHEAD) + cost(REQUEST));
            (one_hop * turns, block)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim_network::model::Mac;

    fn link(hops: u32, mac: Mac) -> LinkConfig {
        LinkConfig {
            hops,
            mac,
            ..LinkConfig::default()
        }
    }

    #[test]
    fn the_raw_bound_picks_the_cheapest_block_size() {
        let (bound, block) = airtime_bound(256 * 1024, &link(1, Mac::Raw)).unwrap();
        // 1024-byte blocks: 1032 B in 11 frames beats 64-byte blocks in one frame each, since
        // every frame pays 2.272 ms of overhead and 23 bytes of MAC header.
        assert_eq!(block, 1024);
        // 256 × (11 frames of a 1032-byte response + 1 frame of request) ≈ 256 × 74 ms.
        assert!(bound > 18.0 && bound < 20.0, "{bound}");
        // Halving the image halves the bound.
        let (half, _) = airtime_bound(128 * 1024, &link(1, Mac::Raw)).unwrap();
        assert!((bound / half - 2.0).abs() < 1e-9);
    }

    #[test]
    fn acknowledgements_add_their_airtime_to_every_frame() {
        let (raw, _) = airtime_bound(256 * 1024, &link(1, Mac::Raw)).unwrap();
        let (acked, block) = airtime_bound(256 * 1024, &link(1, Mac::THREAD)).unwrap();
        assert_eq!(block, 1024);
        // 256 blocks × 12 frames × 544 µs of turnaround and acknowledgement.
        assert!(
            (acked - raw - 256.0 * 12.0 * 544e-6).abs() < 1e-9,
            "{raw} {acked}"
        );
    }

    #[test]
    fn hops_that_hear_each_other_multiply_the_bound() {
        let one = airtime_bound(64 * 1024, &link(1, Mac::THREAD)).unwrap().0;
        let three = airtime_bound(64 * 1024, &link(3, Mac::THREAD)).unwrap().0;
        let five = airtime_bound(64 * 1024, &link(5, Mac::THREAD)).unwrap().0;
        assert!((three / one - 3.0).abs() < 1e-9);
        // Hops three apart send at once: a longer route is no slower than three hops.
        assert!((five / one - 3.0).abs() < 1e-9);
        let deaf = LinkConfig {
            interference: 0,
            ..link(3, Mac::THREAD)
        };
        assert!((airtime_bound(64 * 1024, &deaf).unwrap().0 / one - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_wire_has_no_airtime_bound() {
        let wire = LinkConfig {
            on_air: false,
            ..LinkConfig::default()
        };
        assert_eq!(airtime_bound(1024, &wire), None);
    }
}

//! How many 802.15.4 frames a UDP datagram costs, and how long each is, when 6LoWPAN carries it the
//! way smoltcp 0.13/0.14 sends it (`iface/interface/sixlowpan.rs`, `dispatch_sixlowpan`).
//!
//! smoltcp's rule: a frame holds 125 bytes before the 2-byte FCS (aMaxPHYPacketSize 127). If MAC
//! header + compressed headers + payload exceed 125, it fragments (RFC 4944 §5.3): FRAG1 (4 bytes)
//! carries the compressed headers and as much payload as keeps the *uncompressed* offset a multiple
//! of 8; every FRAGN (5 bytes) carries a multiple of 8 bytes, the last one the rest.
//!
//! With the defaults (21-byte MAC header, 9 bytes of IPHC + UDP NHC) this gives: one frame up to 95
//! bytes of payload, then 88 bytes in FRAG1 and 96 in each FRAGN, which reproduces the frames
//! measured with two smoltcp 0.14 interfaces (shared/notes/rust-crates.md §3):
//! 32–90 B → 1, 100 → 2, 128 → 2, 256 → 3, 512 → 6, 1024 → 11.

/// aMaxPHYPacketSize: the largest PSDU (MAC frame including its FCS).
pub const MAX_FRAME: usize = 127;
/// The MAC footer: a 16-bit CRC.
pub const FCS: usize = 2;
/// FRAG1: dispatch + datagram size (2 bytes), tag (2 bytes).
pub const FRAG1_HEADER: usize = 4;
/// FRAGN: FRAG1's fields plus the offset in units of 8 bytes.
pub const FRAGN_HEADER: usize = 5;
/// The IPv6 (40) and UDP (8) headers before compression: fragment offsets count in these.
pub const UNCOMPRESSED_IP_UDP: usize = 48;

/// The header sizes that decide fragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// MAC header bytes. smoltcp: frame control 2 + sequence number 1 + destination PAN 2 +
    /// destination and source extended addresses 8 + 8, PAN ID compression, no security = 21.
    /// (With short addresses it would be 2 + 1 + 2 + 2 + 2 = 9.)
    pub mac_header: usize,
    /// IPHC plus UDP NHC bytes. smoltcp between link-local addresses derived from the MAC
    /// addresses: IPHC 2 (traffic class and flow label elided, hop limit 64 compressed, both
    /// addresses elided) + NHC 1 + both ports inline 4 + checksum 2 = 9. (A server beyond the border
    /// router whose address must be carried inline adds up to 16.)
    pub ip_udp_header: usize,
}

impl Framing {
    /// What smoltcp sends between two link-local 802.15.4 nodes with extended addresses, the setting
    /// of the measurement.
    pub const SMOLTCP: Framing = Framing {
        mac_header: 21,
        ip_udp_header: 9,
    };

    /// The bytes of each frame (MAC header and FCS included) that a UDP payload of `payload_len`
    /// bytes takes.
    pub fn frame_sizes(self, payload_len: usize) -> FrameSizes {
        let mac = self.mac_header + FCS;
        let room = MAX_FRAME - FCS - self.mac_header;
        let total = self.ip_udp_header + payload_len;
        if total <= room {
            return FrameSizes {
                mac,
                first: Some(mac + total),
                rest: 0,
                fragn_room: 0,
            };
        }
        // smoltcp: frag1_size = (125 - ieee_len - 4 + diff) / 8 * 8 - diff, with diff the bytes that
        // compression saved, so that the next fragment's offset (uncompressed) is a multiple of 8.
        let diff = UNCOMPRESSED_IP_UDP.saturating_sub(self.ip_udp_header);
        let frag1 = ((room - FRAG1_HEADER + diff) / 8 * 8).saturating_sub(diff);
        let fragn_room = (room - FRAGN_HEADER) / 8 * 8;
        FrameSizes {
            mac,
            first: Some(mac + FRAG1_HEADER + frag1),
            rest: total - frag1,
            fragn_room,
        }
    }

    /// The number of frames a UDP payload of `payload_len` bytes takes.
    pub fn frames(self, payload_len: usize) -> u32 {
        self.frame_sizes(payload_len).len() as u32
    }
}

impl Default for Framing {
    fn default() -> Self {
        Framing::SMOLTCP
    }
}

/// The frames of one datagram, as the number of bytes each puts on the air (MAC header to FCS).
#[derive(Clone, Debug)]
pub struct FrameSizes {
    mac: usize,
    first: Option<usize>,
    rest: usize,
    fragn_room: usize,
}

impl Iterator for FrameSizes {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.rest == 0 {
            return None;
        }
        let chunk = self.rest.min(self.fragn_room);
        self.rest -= chunk;
        Some(self.mac + FRAGN_HEADER + chunk)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.first.is_some()) + self.rest.div_ceil(self.fragn_room.max(1));
        (n, Some(n))
    }
}

impl ExactSizeIterator for FrameSizes {}

/// The number of 127-byte 802.15.4 frames a UDP datagram with `payload_len` bytes of payload takes
/// when smoltcp sends it over 6LoWPAN ([`Framing::SMOLTCP`]).
pub fn frames_for(payload_len: usize) -> u32 {
    Framing::SMOLTCP.frames(payload_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_sizes_follow_smoltcp() {
        // 95 B fills one frame exactly; 96 B is the first that fragments.
        assert_eq!(Framing::SMOLTCP.frame_sizes(95).collect::<Vec<_>>(), [127]);
        // FRAG1: 23 + 4 + 97 (9 header + 88 payload); FRAGN: 23 + 5 + the remaining 8.
        assert_eq!(
            Framing::SMOLTCP.frame_sizes(96).collect::<Vec<_>>(),
            [124, 36]
        );
        let sizes: Vec<_> = Framing::SMOLTCP.frame_sizes(1024).collect();
        assert_eq!(sizes.len(), 11);
        assert!(sizes.iter().all(|&s| s <= MAX_FRAME));
        // Every payload byte is carried once: 1024 + 9 header bytes + per-frame overheads.
        let carried: usize = sizes.iter().sum::<usize>() - 11 * 23 - 4 - 10 * 5;
        assert_eq!(carried, 1024 + 9);
    }
}

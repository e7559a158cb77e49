//! Thread's active operational dataset as TLVs (Thread 1.4 §8.10): what a node needs to join a
//! network. The simulator gives every node the same one; on the board it comes from the
//! provisioning record. Only the TLVs a network needs are written.

/// The network a dataset describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub channel: u8,
    pub pan_id: u16,
    pub extended_pan_id: [u8; 8],
    pub network_key: [u8; 16],
    /// The first 64 bits of the mesh-local prefix (fdxx:…/64).
    pub mesh_local_prefix: [u8; 8],
    pub pskc: [u8; 16],
}

impl Network {
    /// The simulator's network: mesh-local prefix fd00::/64, so the server's address fd00::1
    /// (the model's too) is on-mesh at the border router. Keys derive from `seed`.
    pub fn simulated(seed: u64) -> Network {
        let mut key = [0u8; 16];
        let mut pskc = [0u8; 16];
        let mut x = seed ^ 0x5a5a_0f0f_3c3c_9696;
        for b in key.iter_mut().chain(pskc.iter_mut()) {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *b = (x >> 56) as u8;
        }
        Network {
            name: "otafleet-sim".into(),
            channel: 15,
            pan_id: 0xface,
            extended_pan_id: [0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0xca, 0xfe],
            network_key: key,
            mesh_local_prefix: [0xfd, 0, 0, 0, 0, 0, 0, 0],
            pskc,
        }
    }

    /// The active operational dataset, TLV-encoded.
    pub fn active_dataset_tlvs(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut tlv = |t: u8, v: &[u8]| {
            out.push(t);
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        };
        // Active Timestamp: seconds 1, ticks 0, not authoritative.
        tlv(14, &[0, 0, 0, 0, 0, 1, 0, 0]);
        // Channel: page 0, channel.
        tlv(0, &[0, 0, self.channel]);
        // Channel mask: page 0, 4 bytes, channels 11..26.
        tlv(53, &[0, 4, 0x00, 0x1f, 0xff, 0xe0]);
        tlv(1, &self.pan_id.to_be_bytes());
        tlv(2, &self.extended_pan_id);
        tlv(3, self.name.as_bytes());
        tlv(4, &self.pskc);
        tlv(5, &self.network_key);
        tlv(7, &self.mesh_local_prefix);
        // Security Policy: key rotation 672 h, the usual flags (obtain key, native commissioning,
        // routers, external commissioning, commercial; version threshold 0).
        tlv(12, &[0x02, 0xa0, 0xf7, 0xf8]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlvs_carry_the_network() {
        let n = Network::simulated(7);
        let tlvs = n.active_dataset_tlvs();
        // Walk the TLVs: every one is well formed and the key ones hold what the network says.
        let mut at = 0;
        let mut seen = Vec::new();
        while at < tlvs.len() {
            let (t, len) = (tlvs[at], usize::from(tlvs[at + 1]));
            let v = &tlvs[at + 2..at + 2 + len];
            match t {
                0 => assert_eq!(v, [0, 0, 15]),
                5 => assert_eq!(v, n.network_key),
                7 => assert_eq!(v, [0xfd, 0, 0, 0, 0, 0, 0, 0]),
                _ => {}
            }
            seen.push(t);
            at += 2 + len;
        }
        assert_eq!(at, tlvs.len());
        for t in [0, 1, 2, 3, 5, 7, 12, 14] {
            assert!(seen.contains(&t), "TLV {t} missing");
        }
        // Another seed, another key; the same seed, the same network.
        assert_ne!(Network::simulated(8).network_key, n.network_key);
        assert_eq!(Network::simulated(7), n);
    }
}

//! The byte formats of the Thread board's records, free of OpenThread and the chip so that they
//! are tested on the host (`cargo test -p nrf52840`): the provisioned dataset's check and the blob
//! OpenThread's settings are kept in.

/// The TLVs a device needs to attach (Thread 1.4 §8.10): their type and exact length.
const REQUIRED_TLVS: [(u8, usize); 6] = [
    (0, 3),  // Channel: page, channel (u16)
    (1, 2),  // PAN ID
    (2, 8),  // Extended PAN ID
    (5, 16), // Network Key
    (7, 8),  // Mesh-Local Prefix
    (14, 8), // Active Timestamp
];

/// Whether `tlvs` is a well-formed dataset with what attaching needs. OpenThread checks again;
/// this catches an erased, truncated or foreign record with a clear state instead of a network
/// that never appears.
pub fn valid_dataset(tlvs: &[u8]) -> bool {
    let mut seen = [false; REQUIRED_TLVS.len()];
    let mut rest = tlvs;
    while let [t, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let Some(value) = tail.get(..len) else {
            return false;
        };
        for (i, (want, want_len)) in REQUIRED_TLVS.iter().enumerate() {
            if t == want {
                if len != *want_len {
                    return false;
                }
                // Page 0, channels 11..=26: the 2.4 GHz band Thread uses.
                if *t == 0 && !matches!(value, [0, 0, 11..=26]) {
                    return false;
                }
                if let Some(s) = seen.get_mut(i) {
                    *s = true;
                }
            }
        }
        rest = tail.get(len..).unwrap_or(&[]);
    }
    rest.is_empty() && seen.iter().all(|s| *s)
}

/// The settings blob: entries of key (u16 LE), length (u16 LE), value, in the order given.
/// `None` if they do not fit `out`.
pub fn encode<'a>(entries: impl Iterator<Item = (u16, &'a [u8])>, out: &mut [u8]) -> Option<usize> {
    let mut at = 0;
    for (key, value) in entries {
        let len = u16::try_from(value.len()).ok()?;
        let end = at + 4 + value.len();
        let entry = out.get_mut(at..end)?;
        let (head, body) = entry.split_at_mut(4);
        let ([k0, k1], [l0, l1]) = (key.to_le_bytes(), len.to_le_bytes());
        head.copy_from_slice(&[k0, k1, l0, l1]);
        body.copy_from_slice(value);
        at = end;
    }
    Some(at)
}

/// Hands every entry of `blob` to `add`, in order; `None` for a damaged blob or a refused entry.
pub fn decode(mut blob: &[u8], mut add: impl FnMut(u16, &[u8]) -> Option<()>) -> Option<()> {
    while let [k0, k1, l0, l1, rest @ ..] = blob {
        let len = usize::from(u16::from_le_bytes([*l0, *l1]));
        let value = rest.get(..len)?;
        add(u16::from_le_bytes([*k0, *k1]), value)?;
        blob = rest.get(len..)?;
    }
    blob.is_empty().then_some(())
}

/// FNV-1a: enough to tell a changed blob from the stored one.
pub fn hash(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dataset as `sim_thread::dataset::Network::active_dataset_tlvs` writes one (and as
    /// `ot-ctl dataset active -x` prints one): channel 15, PAN 0xface.
    fn dataset() -> Vec<u8> {
        let mut out = Vec::new();
        let mut tlv = |t: u8, v: &[u8]| {
            out.push(t);
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        };
        tlv(14, &[0, 0, 0, 0, 0, 1, 0, 0]);
        tlv(0, &[0, 0, 15]);
        tlv(53, &[0, 4, 0x00, 0x1f, 0xff, 0xe0]);
        tlv(1, &[0xfa, 0xce]);
        tlv(2, &[0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0xca, 0xfe]);
        tlv(3, b"otafleet-sim");
        tlv(4, &[7; 16]);
        tlv(5, &[9; 16]);
        tlv(7, &[0xfd, 0, 0, 0, 0, 0, 0, 0]);
        tlv(12, &[0x02, 0xa0, 0xf7, 0xf8]);
        out
    }

    #[test]
    fn a_real_dataset_passes() {
        assert!(valid_dataset(&dataset()));
    }

    #[test]
    fn erased_truncated_or_incomplete_records_fail() {
        let d = dataset();
        assert!(!valid_dataset(&[]));
        assert!(!valid_dataset(&[0xff; 64]), "erased flash");
        for cut in 1..d.len() {
            // Every truncation either ends inside a TLV or drops a required one.
            let keeps_all = valid_dataset(&d[..cut]);
            assert!(
                !keeps_all || cut >= d.len() - 6,
                "truncated at {cut} passed"
            );
        }
        // Without the network key.
        let at = d.windows(2).position(|w| w == [5, 16]).unwrap();
        let mut no_key = d[..at].to_vec();
        no_key.extend_from_slice(&d[at + 18..]);
        assert!(!valid_dataset(&no_key));
        // A channel outside 11..=26, a key of the wrong length.
        let mut bad = d.clone();
        let ch = bad.windows(2).position(|w| w == [0, 3]).unwrap();
        bad[ch + 4] = 27;
        assert!(!valid_dataset(&bad));
        let mut short_key = d[..at].to_vec();
        short_key.extend_from_slice(&[5, 15]);
        short_key.extend_from_slice(&[9; 15]);
        short_key.extend_from_slice(&d[at + 18..]);
        assert!(!valid_dataset(&short_key));
    }

    #[test]
    fn the_settings_blob_round_trips_and_refuses_damage() {
        let entries: Vec<(u16, Vec<u8>)> = vec![
            (1, dataset()),
            (3, vec![1; 38]),
            (4, vec![]),
            (3, vec![2; 5]),
        ];
        let mut out = [0u8; 1024];
        let n = encode(entries.iter().map(|(k, v)| (*k, v.as_slice())), &mut out).unwrap();
        let mut back = Vec::new();
        decode(&out[..n], |k, v| {
            back.push((k, v.to_vec()));
            Some(())
        })
        .unwrap();
        assert_eq!(back, entries);
        assert_ne!(hash(&out[..n]), hash(&out[..n - 1]));
        // Too small a buffer; a blob cut short; a refused entry.
        let mut small = [0u8; 16];
        assert!(encode(entries.iter().map(|(k, v)| (*k, v.as_slice())), &mut small).is_none());
        assert!(decode(&out[..n - 1], |_, _| Some(())).is_none());
        assert!(decode(&out[..n], |_, _| None).is_none());
        assert_eq!(decode(&[], |_, _| None), Some(()));
    }
}

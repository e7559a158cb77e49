//! heatshrink (<https://github.com/atomicobject/heatshrink>), the LZSS bit stream detools
//! compresses patches with. Each item starts with a tag bit, most significant bit first:
//! `1` + 8 bits is a literal byte; `0` + `window_bits` bits of (offset - 1) + `lookahead_bits` bits
//! of (count - 1) copies `count` bytes from `offset` bytes back (the copy may overlap its own
//! output). The last byte is padded with zero bits, too few to form an item. The window starts
//! zeroed, as in heatshrink's C decoder.
//!
//! [`Decoder`] streams (device side, fixed RAM); `heatshrink_encode` (feature `std`) compresses.

use crate::header::HeatshrinkParams;

/// The largest window this decoder keeps: 2^8 = 256 bytes, detools' default.
pub const MAX_WINDOW_BITS: u8 = 8;
const WINDOW: usize = 1 << MAX_WINDOW_BITS;

/// A streaming heatshrink decoder: bytes in, decoded bytes out through a callback.
#[derive(Clone, Debug)]
pub struct Decoder {
    params: HeatshrinkParams,
    /// The last 256 bytes written, a ring indexed by `head` (mod 256, so any window of up to
    /// 2^8 bytes fits).
    window: [u8; WINDOW],
    head: u8,
    /// Bits not yet decoded, right-aligned; fewer than one item plus one byte.
    bits: u32,
    bit_count: u8,
}

impl Decoder {
    /// A decoder for checked parameters ([`HeatshrinkParams::from_byte`]).
    pub const fn new(params: HeatshrinkParams) -> Self {
        Self {
            params,
            window: [0; WINDOW],
            head: 0,
            bits: 0,
            bit_count: 0,
        }
    }

    /// Decodes what `byte` completes, handing each output byte to `out`. Stops at `out`'s first
    /// error (the decoder is then in an unspecified state: start over).
    pub fn push<E>(
        &mut self,
        byte: u8,
        out: &mut impl FnMut(u8) -> Result<(), E>,
    ) -> Result<(), E> {
        // At most 1 + 8 + 7 - 1 = 15 bits wait here, so 23 after the shift: no overflow.
        self.bits = (self.bits << 8) | u32::from(byte);
        self.bit_count = self.bit_count.saturating_add(8);
        let window_bits = self.params.window_bits;
        let lookahead_bits = self.params.lookahead_bits;
        let backref_bits = 1u8
            .saturating_add(window_bits)
            .saturating_add(lookahead_bits);
        while let Some(tag) = self.peek(1) {
            if tag == 1 {
                let Some(item) = self.peek(9) else { break };
                self.consume(9);
                self.emit(item as u8, out)?;
            } else {
                let Some(item) = self.peek(backref_bits) else {
                    break;
                };
                self.consume(backref_bits);
                let count_mask = (1u32 << lookahead_bits).wrapping_sub(1);
                let index_mask = (1u32 << window_bits).wrapping_sub(1);
                let count = (item & count_mask).saturating_add(1);
                let offset = ((item >> lookahead_bits) & index_mask).saturating_add(1);
                for _ in 0..count {
                    // offset ≤ 2^window_bits ≤ 256: the ring holds it.
                    let from = self.head.wrapping_sub(offset as u8);
                    let byte = self.window.get(usize::from(from)).copied().unwrap_or(0);
                    self.emit(byte, out)?;
                }
            }
        }
        Ok(())
    }

    /// The next `n` bits, most significant first, if that many are waiting.
    fn peek(&self, n: u8) -> Option<u32> {
        let rest = self.bit_count.checked_sub(n)?;
        let mask = (1u32 << n).wrapping_sub(1);
        Some((self.bits >> rest) & mask)
    }

    fn consume(&mut self, n: u8) {
        self.bit_count = self.bit_count.saturating_sub(n);
        self.bits &= (1u32 << self.bit_count).wrapping_sub(1);
    }

    fn emit<E>(&mut self, byte: u8, out: &mut impl FnMut(u8) -> Result<(), E>) -> Result<(), E> {
        if let Some(slot) = self.window.get_mut(usize::from(self.head)) {
            *slot = byte;
        }
        self.head = self.head.wrapping_add(1);
        out(byte)
    }
}

// The tests use the encoder (feature `std`).
#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::heatshrink_encode::encode;

    const DEFAULT: HeatshrinkParams = HeatshrinkParams {
        window_bits: 8,
        lookahead_bits: 7,
    };

    fn decode(input: &[u8], params: HeatshrinkParams) -> Vec<u8> {
        let mut d = Decoder::new(params);
        let mut out = Vec::new();
        for &b in input {
            d.push(b, &mut |x| {
                out.push(x);
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        out
    }

    /// Made by heatshrink2 0.15 (detools' compressor), window 8, lookahead 7.
    #[test]
    fn decodes_the_reference_encoder() {
        let compressed = [0xb0, 0xd8, 0xac, 0x60, 0x22, 0x80];
        assert_eq!(decode(&compressed, DEFAULT), b"abcabcabcabcabcabcabcabc");
    }

    #[test]
    fn encodes_to_the_reference_bytes() {
        assert_eq!(
            encode(b"abcabcabcabcabcabcabcabc", DEFAULT),
            [0xb0, 0xd8, 0xac, 0x60, 0x22, 0x80]
        );
    }

    #[test]
    fn round_trips_with_every_window() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 29) as u8 ^ (i / 300) as u8)
            .collect();
        for window_bits in 4..=8 {
            for lookahead_bits in 3..window_bits {
                let p = HeatshrinkParams {
                    window_bits,
                    lookahead_bits,
                };
                assert_eq!(decode(&encode(&data, p), p), data, "{p:?}");
            }
        }
    }

    #[test]
    fn a_back_reference_before_the_start_reads_zeros() {
        // 0 + offset-1 = 4 (8 bits) + count-1 = 2 (7 bits): three bytes from 5 back.
        let bits: u32 = (4 << 7) | 2;
        let compressed = [(bits >> 8) as u8, bits as u8];
        assert_eq!(decode(&compressed, DEFAULT), [0, 0, 0]);
    }
}

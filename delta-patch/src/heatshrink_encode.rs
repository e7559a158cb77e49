//! The heatshrink encoder (host side): see [`crate::heatshrink`] for the bit stream.

use crate::header::HeatshrinkParams;

/// Compresses `input` greedily (the longest match in the window at each position, as heatshrink's
/// own encoder does). The parameters must pass [`HeatshrinkParams::check`].
pub fn encode(input: &[u8], params: HeatshrinkParams) -> Vec<u8> {
    let window = 1usize << params.window_bits;
    let max_len = 1usize << params.lookahead_bits;
    let backref_bits = 1 + u32::from(params.window_bits) + u32::from(params.lookahead_bits);
    let mut out = BitWriter::default();
    let mut pos = 0;
    while pos < input.len() {
        let limit = max_len.min(input.len() - pos);
        let (mut best_len, mut best_offset) = (0, 0);
        for offset in 1..=window.min(pos) {
            let len = common_prefix(&input[pos - offset..], &input[pos..pos + limit]);
            if len > best_len {
                (best_len, best_offset) = (len, offset);
                if len == limit {
                    break;
                }
            }
        }
        // A back-reference only where it is shorter than the literals it replaces.
        if 9 * best_len as u32 > backref_bits {
            out.put(0, 1);
            out.put((best_offset - 1) as u32, params.window_bits);
            out.put((best_len - 1) as u32, params.lookahead_bits);
            pos += best_len;
        } else {
            out.put(1, 1);
            out.put(u32::from(input[pos]), 8);
            pos += 1;
        }
    }
    out.finish()
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Packs bits most significant first; the last byte is padded with zeros.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    acc: u32,
    count: u8,
}

impl BitWriter {
    fn put(&mut self, value: u32, bits: u8) {
        for i in (0..bits).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.count += 1;
            if self.count == 8 {
                self.bytes.push(self.acc as u8);
                (self.acc, self.count) = (0, 0);
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            self.bytes.push((self.acc << (8 - self.count)) as u8);
        }
        self.bytes
    }
}

//! Block-wise transfer helpers (RFC 7959): the Block1/Block2 option codec, stateless Block2
//! serving ([`serve_block2`]) and Block1 reassembly on the server side ([`Block1Receiver`]).
//! The client-side sender and fetcher live on the driver handle
//! ([`crate::coap::driver::CoapHandle::push_block1`], [`crate::coap::driver::CoapHandle::fetch_block2`]).
//!
//! The option codec itself is lwm2m-core's ([`lwm2m_core::block::BlockValue`]), shared with the
//! device; this module adds what a std server needs on top (coap-lite packets, owned encodings).

mod receiver;
mod server;

use coap_lite::{CoapOption, Packet};
use lwm2m_core::block::BlockValue;

pub use receiver::{Block1Receiver, Block1ReceiverConfig, Block1Step};
pub use server::{Block2Error, Block2Reply, serve_block2};

/// A Block1 or Block2 option value: block number, more flag and size exponent (RFC 7959 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOpt(BlockValue);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block option value longer than 3 bytes")]
    TooLong,
    #[error("SZX 7 (BERT) is not allowed over UDP")]
    Bert,
    #[error("block number above 2^20 - 1")]
    NumTooLarge,
    #[error("block option given more than once")]
    Repeated,
}

impl From<lwm2m_core::block::BlockError> for BlockError {
    fn from(e: lwm2m_core::block::BlockError) -> Self {
        use lwm2m_core::block::BlockError as Core;
        match e {
            Core::TooLong => BlockError::TooLong,
            Core::NumTooLarge => BlockError::NumTooLarge,
            // SZX 7 and anything that is not a UDP block size.
            _ => BlockError::Bert,
        }
    }
}

impl BlockOpt {
    pub const MAX_NUM: u32 = lwm2m_core::block::MAX_NUM;
    /// The largest size exponent on UDP (1024-byte blocks).
    pub const MAX_SZX: u8 = lwm2m_core::block::MAX_SZX;

    pub fn new(num: u32, more: bool, szx: u8) -> Result<Self, BlockError> {
        Ok(BlockOpt(BlockValue::new(num, more, szx)?))
    }

    pub fn num(&self) -> u32 {
        self.0.num()
    }

    pub fn more(&self) -> bool {
        self.0.more()
    }

    pub fn szx(&self) -> u8 {
        self.0.szx()
    }

    /// Block size in bytes: 2^(SZX + 4).
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// Byte offset of this block: NUM * size.
    pub fn offset(&self) -> u64 {
        self.0.offset()
    }

    /// Decodes an option value of 0 to 3 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, BlockError> {
        Ok(BlockOpt(BlockValue::decode(bytes)?))
    }

    /// Encodes with the fewest bytes (a zero value is the empty string).
    pub fn encode(&self) -> Vec<u8> {
        let (bytes, len) = self.0.encode();
        bytes[..len].to_vec()
    }

    /// The size exponent for an exact block size (16, 32, ..., 1024).
    pub fn szx_for_size(size: usize) -> Option<u8> {
        lwm2m_core::block::szx_for_size(size).ok()
    }

    /// The largest size exponent whose block size is at most `limit`.
    pub fn szx_at_most(limit: u64) -> Option<u8> {
        (0..=Self::MAX_SZX)
            .rev()
            .find(|szx| 1u64 << (szx + 4) <= limit)
    }
}

/// The request's or response's Block1 option, if any.
pub fn block1(packet: &Packet) -> Result<Option<BlockOpt>, BlockError> {
    block_option(packet, CoapOption::Block1)
}

/// The request's or response's Block2 option, if any.
pub fn block2(packet: &Packet) -> Result<Option<BlockOpt>, BlockError> {
    block_option(packet, CoapOption::Block2)
}

fn block_option(packet: &Packet, which: CoapOption) -> Result<Option<BlockOpt>, BlockError> {
    let Some(values) = packet.get_option(which) else {
        return Ok(None);
    };
    let mut iter = values.iter();
    let Some(first) = iter.next() else {
        return Ok(None);
    };
    if iter.next().is_some() {
        return Err(BlockError::Repeated);
    }
    BlockOpt::decode(first).map(Some)
}

pub fn set_block1(packet: &mut Packet, block: BlockOpt) {
    set_single(packet, CoapOption::Block1, block.encode());
}

pub fn set_block2(packet: &mut Packet, block: BlockOpt) {
    set_single(packet, CoapOption::Block2, block.encode());
}

/// An unsigned-integer option such as Size1/Size2 (up to 4 bytes); None if absent or too long.
pub fn uint_option(packet: &Packet, which: CoapOption) -> Option<u32> {
    let value = packet.get_first_option(which)?;
    if value.len() > 4 {
        return None;
    }
    Some(value.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// Replaces an unsigned-integer option with `value` in the shortest encoding.
pub fn set_uint_option(packet: &mut Packet, which: CoapOption, value: u32) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    set_single(packet, which, bytes[skip..].to_vec());
}

fn set_single(packet: &mut Packet, which: CoapOption, value: Vec<u8>) {
    let mut list = std::collections::LinkedList::new();
    list.push_back(value);
    packet.set_option(which, list);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_encode_to_hand_computed_bytes() {
        // NUM 0, M 0, SZX 0 → empty value
        assert_eq!(
            BlockOpt::new(0, false, 0).unwrap().encode(),
            Vec::<u8>::new()
        );
        // 2:0/1/1024 → 0x0e
        assert_eq!(BlockOpt::new(0, true, 6).unwrap().encode(), vec![0x0e]);
        // 2:1/0/64 → (1<<4)|2 = 0x12
        assert_eq!(BlockOpt::new(1, false, 2).unwrap().encode(), vec![0x12]);
        // NUM 16 → 0x01 0x0a for M=1, SZX=2 (two bytes)
        assert_eq!(
            BlockOpt::new(16, true, 2).unwrap().encode(),
            vec![0x01, 0x0a]
        );
        // NUM 2^20-1, M=1, SZX=6 → 0xff 0xff 0xfe
        assert_eq!(
            BlockOpt::new(BlockOpt::MAX_NUM, true, 6).unwrap().encode(),
            vec![0xff, 0xff, 0xfe]
        );
        // NUM 4096 needs three bytes: 0x01 0x00 0x00
        assert_eq!(
            BlockOpt::new(4096, false, 0).unwrap().encode(),
            vec![0x01, 0x00, 0x00]
        );
    }

    #[test]
    fn option_values_decode_and_reject_bert_and_overlong_values() {
        let b = BlockOpt::decode(&[0x01, 0x0a]).unwrap();
        assert_eq!(
            (b.num(), b.more(), b.szx(), b.size(), b.offset()),
            (16, true, 2, 64, 1024)
        );
        assert_eq!(
            BlockOpt::decode(&[]).unwrap(),
            BlockOpt::new(0, false, 0).unwrap()
        );
        assert_eq!(BlockOpt::decode(&[0x0f]), Err(BlockError::Bert));
        assert_eq!(BlockOpt::decode(&[0, 0, 0, 0]), Err(BlockError::TooLong));
        assert_eq!(
            BlockOpt::new(1 << 20, false, 0),
            Err(BlockError::NumTooLarge)
        );
        for num in [0, 1, 15, 16, 255, 4095, 4096, BlockOpt::MAX_NUM] {
            for szx in 0..=6 {
                let b = BlockOpt::new(num, num % 2 == 0, szx).unwrap();
                assert_eq!(BlockOpt::decode(&b.encode()).unwrap(), b);
            }
        }
    }

    #[test]
    fn size_exponents_are_found_for_exact_and_bounded_sizes() {
        assert_eq!(BlockOpt::szx_for_size(16), Some(0));
        assert_eq!(BlockOpt::szx_for_size(1024), Some(6));
        assert_eq!(BlockOpt::szx_for_size(100), None);
        assert_eq!(BlockOpt::szx_at_most(200), Some(3)); // 128
        assert_eq!(BlockOpt::szx_at_most(100_000), Some(6));
        assert_eq!(BlockOpt::szx_at_most(15), None);
    }

    #[test]
    fn packet_helpers_round_trip_and_detect_repeats() {
        let mut p = Packet::new();
        assert_eq!(block2(&p), Ok(None));
        set_block2(&mut p, BlockOpt::new(3, true, 4).unwrap());
        assert_eq!(p.get_first_option(CoapOption::Block2), Some(&vec![0x3c]));
        assert_eq!(block2(&p).unwrap().map(|b| b.offset()), Some(768));
        p.add_option(CoapOption::Block2, vec![0x10]);
        assert_eq!(block2(&p), Err(BlockError::Repeated));
        set_uint_option(&mut p, CoapOption::Size2, 100_000);
        assert_eq!(
            p.get_first_option(CoapOption::Size2),
            Some(&vec![0x01, 0x86, 0xa0])
        );
        assert_eq!(uint_option(&p, CoapOption::Size2), Some(100_000));
        set_uint_option(&mut p, CoapOption::Size1, 0);
        assert_eq!(uint_option(&p, CoapOption::Size1), Some(0));
    }
}

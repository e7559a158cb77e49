//! Block-wise transfer helpers (RFC 7959): the Block1/Block2 options of coap-lite packets,
//! stateless Block2 serving ([`serve_block2`]), the block-size caps by client prefix ([`cap`])
//! and Block1 reassembly on the server side ([`Block1Receiver`]). The client-side sender and fetcher live on the driver handle
//! ([`crate::coap::driver::CoapHandle::push_block1`], [`crate::coap::driver::CoapHandle::fetch_block2`]).
//!
//! The option codec, its errors and the block-size arithmetic are lwm2m-core's
//! ([`BlockValue`], [`BlockError`], [`lwm2m_core::block::szx_at_most`]), shared with the device;
//! this module only moves them in and out of coap-lite packets.

pub mod cap;
mod receiver;
mod server;

use coap_lite::{CoapOption, Packet};
use lwm2m_core::block::{BlockError, BlockValue, decode_uint_option, encode_uint_option};

pub use receiver::{Block1Receiver, Block1ReceiverConfig, Block1Step};
pub use server::{Block2Error, Block2Reply, Block2Request, plan_block2, serve_block2};

/// The request's or response's Block1 option, if any.
pub fn block1(packet: &Packet) -> Result<Option<BlockValue>, BlockError> {
    block_option(packet, CoapOption::Block1)
}

/// The request's or response's Block2 option, if any.
pub fn block2(packet: &Packet) -> Result<Option<BlockValue>, BlockError> {
    block_option(packet, CoapOption::Block2)
}

fn block_option(packet: &Packet, which: CoapOption) -> Result<Option<BlockValue>, BlockError> {
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
    BlockValue::decode(first).map(Some)
}

pub fn set_block1(packet: &mut Packet, block: BlockValue) {
    set_single(packet, CoapOption::Block1, encode_block(block));
}

pub fn set_block2(packet: &mut Packet, block: BlockValue) {
    set_single(packet, CoapOption::Block2, encode_block(block));
}

/// The option value in its shortest form (a zero value is the empty string).
fn encode_block(block: BlockValue) -> Vec<u8> {
    let (bytes, len) = block.encode();
    bytes[..len].to_vec()
}

/// An unsigned-integer option such as Size1/Size2 (up to 4 bytes); None if absent or too long.
pub fn uint_option(packet: &Packet, which: CoapOption) -> Option<u32> {
    decode_uint_option(packet.get_first_option(which)?).ok()
}

/// Replaces an unsigned-integer option with `value` in the shortest encoding.
pub fn set_uint_option(packet: &mut Packet, which: CoapOption, value: u32) {
    let (bytes, len) = encode_uint_option(value);
    set_single(packet, which, bytes[..len].to_vec());
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
    fn packet_helpers_round_trip_and_detect_repeats() {
        let mut p = Packet::new();
        assert_eq!(block2(&p), Ok(None));
        set_block2(&mut p, BlockValue::new(3, true, 4).unwrap());
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
        assert_eq!(p.get_first_option(CoapOption::Size1), Some(&vec![]));
    }

    #[test]
    fn a_zero_block_option_is_the_empty_value() {
        let mut p = Packet::new();
        set_block1(&mut p, BlockValue::new(0, false, 0).unwrap());
        assert_eq!(p.get_first_option(CoapOption::Block1), Some(&vec![]));
        assert_eq!(block1(&p), Ok(Some(BlockValue::new(0, false, 0).unwrap())));
    }
}

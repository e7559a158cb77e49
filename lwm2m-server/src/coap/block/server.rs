//! Stateless Block2 serving of a representation of known length (RFC 7959 §2.4).

use std::ops::Range;

use coap_lite::{CoapOption, Packet, ResponseType};
use lwm2m_core::block::{BlockError, BlockValue, MAX_SZX};
use lwm2m_core::coap::{CoapError, Message, MessageWriter, option};

use super::{block2, set_block2, set_uint_option, uint_option};

/// What a GET asks of a representation served block-wise: its Block2 option, and whether it
/// carried Size2 (asking for the total size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block2Request {
    pub block2: Option<BlockValue>,
    pub wants_size: bool,
}

impl Block2Request {
    /// Read from a coap-lite packet.
    pub fn of_packet(request: &Packet) -> Result<Self, BlockError> {
        Ok(Block2Request {
            block2: block2(request)?,
            wants_size: uint_option(request, CoapOption::Size2).is_some(),
        })
    }

    /// Read from a datagram decoded in place, by the same rules as [`Block2Request::of_packet`]
    /// (a repeated Block2 is an error, a Size2 longer than 4 bytes is not one).
    pub fn of_message(request: &Message<'_>) -> Result<Self, BlockError> {
        let mut values = request.option_values(option::BLOCK2);
        let block2 = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(value), None) => Some(BlockValue::decode(value)?),
            (Some(_), Some(_)) => return Err(BlockError::Repeated),
        };
        Ok(Block2Request {
            block2,
            wants_size: matches!(request.uint_option(option::SIZE2), Ok(Some(_))),
        })
    }
}

/// What to send for one Block2 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block2Reply {
    /// Byte range of the representation that goes into the payload.
    pub range: Range<u64>,
    /// The Block2 option for the response; None when the whole representation is sent as is.
    pub block2: Option<BlockValue>,
    /// The Size2 option for the response, if one is due.
    pub size2: Option<u64>,
}

impl Block2Reply {
    /// Writes the Block2 and Size2 options, in that order (the writer's options so far must be
    /// numbered below Block2's 23).
    pub fn write(&self, response: &mut MessageWriter<'_>) -> Result<(), CoapError> {
        if let Some(b) = self.block2 {
            let (bytes, len) = b.encode();
            response.option(option::BLOCK2, bytes.get(..len).unwrap_or(&[]))?;
        }
        if let Some(size) = self.size2 {
            response.uint_option(option::SIZE2, u32::try_from(size).unwrap_or(u32::MAX))?;
        }
        Ok(())
    }

    /// Adds the Block2 and Size2 options to `response`.
    pub fn apply(&self, response: &mut Packet) {
        if let Some(b) = self.block2 {
            set_block2(response, b);
        }
        if let Some(size) = self.size2 {
            set_uint_option(
                response,
                CoapOption::Size2,
                u32::try_from(size).unwrap_or(u32::MAX),
            );
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Block2Error {
    #[error("bad Block2 option: {0}")]
    BadOption(#[from] BlockError),
    #[error("block {num} (size {size}) starts past the end of the {total}-byte representation")]
    PastEnd { num: u32, size: usize, total: u64 },
}

impl Block2Error {
    /// The response code to answer with: 4.02 (Bad Option) in both cases. RFC 7959 names no code
    /// for a block number past the end; the option cannot be honoured, so we treat it as a bad
    /// option (RFC 7252 §5.9.2.3), as libcoap does.
    pub fn response_code(&self) -> ResponseType {
        ResponseType::BadOption
    }
}

/// Decides which part of a `total`-byte representation answers `request`.
///
/// * No Block2 in the request: the whole representation if it fits in one block of
///   `max_szx`, else block 0 of that size.
/// * Block2 NUM/SZX: the offset is NUM * (the request's size); the block size served is the
///   request's or `max_szx`'s, whichever is smaller, so a client that switches to a smaller size
///   mid-transfer (late negotiation) gets that size.
/// * Size2 is included on block 0 and whenever the request carried Size2 (RFC 7959 §4).
pub fn serve_block2(request: &Packet, total: u64, max_szx: u8) -> Result<Block2Reply, Block2Error> {
    plan_block2(Block2Request::of_packet(request)?, total, max_szx)
}

/// [`serve_block2`] for a request already read.
pub fn plan_block2(
    request: Block2Request,
    total: u64,
    max_szx: u8,
) -> Result<Block2Reply, Block2Error> {
    let max_szx = max_szx.min(MAX_SZX);
    let wants_size = request.wants_size;
    let Some(req) = request.block2 else {
        let size = 1u64 << (max_szx + 4);
        if total <= size {
            return Ok(Block2Reply {
                range: 0..total,
                block2: None,
                size2: wants_size.then_some(total),
            });
        }
        let block = BlockValue::new(0, true, max_szx)?;
        return Ok(Block2Reply {
            range: 0..size,
            block2: Some(block),
            size2: Some(total),
        });
    };
    let offset = req.offset();
    let szx = req.szx().min(max_szx);
    let size = 1u64 << (szx + 4);
    if offset >= total && !(offset == 0 && total == 0) {
        return Err(Block2Error::PastEnd {
            num: req.num(),
            size: req.size(),
            total,
        });
    }
    // offset is a multiple of the request's size, hence of any smaller power of two.
    let num = u32::try_from(offset / size).map_err(|_| BlockError::NumTooLarge)?;
    let end = (offset + size).min(total);
    let block = BlockValue::new(num, end < total, szx)?;
    let size2 = (wants_size || num == 0).then_some(total);
    Ok(Block2Reply {
        range: offset..end,
        block2: Some(block),
        size2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(block: Option<BlockValue>, size2: bool) -> Packet {
        let mut p = Packet::new();
        if let Some(b) = block {
            set_block2(&mut p, b);
        }
        if size2 {
            set_uint_option(&mut p, CoapOption::Size2, 0);
        }
        p
    }

    fn b(num: u32, szx: u8) -> Option<BlockValue> {
        Some(BlockValue::new(num, false, szx).unwrap())
    }

    #[test]
    fn a_small_representation_goes_whole_without_block2() {
        let r = serve_block2(&get(None, false), 1024, 6).unwrap();
        assert_eq!(
            r,
            Block2Reply {
                range: 0..1024,
                block2: None,
                size2: None
            }
        );
        let r = serve_block2(&get(None, true), 10, 6).unwrap();
        assert_eq!(
            r.size2,
            Some(10),
            "Size2=0 in the request asks for the size"
        );
    }

    #[test]
    fn a_large_representation_starts_with_block_0_of_the_default_size_and_size2() {
        let r = serve_block2(&get(None, false), 100_000, 6).unwrap();
        assert_eq!(r.range, 0..1024);
        assert_eq!(r.block2, Some(BlockValue::new(0, true, 6).unwrap()));
        assert_eq!(r.size2, Some(100_000));
        let mut resp = Packet::new();
        r.apply(&mut resp);
        assert_eq!(resp.get_first_option(CoapOption::Block2), Some(&vec![0x0e]));
        assert_eq!(
            resp.get_first_option(CoapOption::Size2),
            Some(&vec![0x01, 0x86, 0xa0])
        );
    }

    #[test]
    fn middle_and_last_blocks_have_the_right_bounds_and_more_flag() {
        // 100 000 bytes in 64-byte blocks: block 5 is 320..384 with M=1
        let r = serve_block2(&get(b(5, 2), false), 100_000, 6).unwrap();
        assert_eq!(
            (r.range.clone(), r.block2.unwrap().more(), r.size2),
            (320..384, true, None)
        );
        // last block: 100 000 = 1562 * 64 + 32 → block 1562 holds 32 bytes, M=0
        let r = serve_block2(&get(b(1562, 2), false), 100_000, 6).unwrap();
        assert_eq!(r.range, 99_968..100_000);
        assert!(!r.block2.unwrap().more());
        // exactly at a block boundary the last full block has M=0
        let r = serve_block2(&get(b(1, 4), false), 512, 6).unwrap();
        assert_eq!(
            (r.range.clone(), r.block2.unwrap().more()),
            (256..512, false)
        );
    }

    #[test]
    fn a_block_past_the_end_is_a_bad_option() {
        let e = serve_block2(&get(b(1563, 2), false), 100_000, 6).unwrap_err();
        assert_eq!(
            e,
            Block2Error::PastEnd {
                num: 1563,
                size: 64,
                total: 100_000
            }
        );
        assert_eq!(e.response_code(), ResponseType::BadOption);
        assert!(serve_block2(&get(b(2, 4), false), 512, 6).is_err());
        // block 0 of an empty representation is fine
        let r = serve_block2(&get(b(0, 4), false), 0, 6).unwrap();
        assert_eq!((r.range, r.block2.unwrap().more()), (0..0, false));
    }

    #[test]
    fn bert_is_rejected() {
        let mut p = Packet::new();
        p.add_option(CoapOption::Block2, vec![0x07]);
        assert_eq!(
            serve_block2(&p, 10_000, 6),
            Err(Block2Error::BadOption(BlockError::Bert))
        );
    }

    #[test]
    fn late_negotiation_serves_the_smaller_size_at_the_requests_offset() {
        // the client fetched block 0 at 1024 and now asks block 4 at 256 → offset 1024
        let r = serve_block2(&get(b(4, 4), false), 100_000, 6).unwrap();
        assert_eq!(r.range, 1024..1280);
        assert_eq!(r.block2, Some(BlockValue::new(4, true, 4).unwrap()));
        // a request for a larger size than the server's maximum is served at the maximum,
        // renumbered: 2:3/0/1024 with max 256 → offset 3072 = block 12 of 256
        let r = serve_block2(&get(b(3, 6), false), 100_000, 4).unwrap();
        assert_eq!(r.range, 3072..3328);
        assert_eq!(r.block2, Some(BlockValue::new(12, true, 4).unwrap()));
    }
}

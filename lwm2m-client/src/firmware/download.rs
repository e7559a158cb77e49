//! One block-wise download (RFC 7959 Block2, client side): which block to ask for next, what a
//! response means (data at an offset, a changed ETag that restarts the transfer, or a failure with
//! its Object 5 result), late negotiation of a smaller block size by the server, and retries with
//! a capped back-off. Where the bytes go (the manifest buffer or the staging slot) is the caller's.

use core::net::SocketAddr;

use heapless::Vec;
use lwm2m_core::block::BlockValue;
use lwm2m_core::coap::{Code, Message, MessageType, MessageWriter, option};
use lwm2m_core::object5::UpdateResult;

use crate::engine::limits::MAX_ETAG_LEN;
use crate::time::{Duration, Instant};
use crate::uri::{CoapUri, UriString};

/// What is being downloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Manifest,
    Image,
}

/// Retry policy of a download.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Consecutive failed block requests before the download fails with Result 4.
    pub max_failures: u8,
    /// The longest wait between two attempts.
    pub backoff_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_failures: 6,
            backoff_cap: Duration::from_secs(60),
        }
    }
}

/// A download in progress.
#[derive(Clone, Debug)]
pub struct Download {
    pub target: Target,
    pub uri: UriString,
    pub peer: SocketAddr,
    /// Block size exponent asked for (the server may answer with a smaller one).
    pub szx: u8,
    /// Bytes received in order so far: the offset of the next block.
    pub offset: u32,
    /// The representation's ETag, from its first response.
    pub etag: Vec<u8, MAX_ETAG_LEN>,
    /// The total size, when the server said (Size2).
    pub total: Option<u32>,
    failures: u8,
    /// When to send the next request after a failure.
    pub retry_at: Option<Instant>,
    /// The block number the next request asks for (ahead of `offset` when a window of requests
    /// is in flight).
    next_request: u32,
}

/// What a response means.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// `bytes` belong at `offset`; `last` when the representation is complete.
    Data {
        offset: u32,
        bytes: &'a [u8],
        last: bool,
    },
    /// The ETag changed: the representation is another one now; start again from zero.
    Restart,
    /// A block beyond the next one in order (a window of requests answered out of order):
    /// keep it until the blocks before it arrive.
    Ahead {
        offset: u32,
        bytes: &'a [u8],
        last: bool,
    },
    /// Not a block needed (a late duplicate): ignore it.
    Ignore,
    /// The download cannot go on: the Object 5 result to report.
    Failed(UpdateResult),
}

impl Download {
    /// A download of `uri` with blocks of 2^(szx+4) bytes, from `offset` (0, or a resume point).
    pub fn new(target: Target, uri: &str, szx: u8, offset: u32) -> Result<Self, UpdateResult> {
        let parsed = CoapUri::parse(uri)?;
        let mut owned = UriString::new();
        owned.push_str(uri).map_err(|_| UpdateResult::InvalidUri)?;
        Ok(Download {
            target,
            uri: owned,
            peer: parsed.peer,
            szx,
            offset,
            etag: Vec::new(),
            total: None,
            failures: 0,
            retry_at: None,
            next_request: offset >> (u32::from(szx) + 4),
        })
    }

    /// Bytes per block: 2^(szx+4), 16 to 1024.
    pub fn block_size(&self) -> u32 {
        1u32 << (u32::from(self.szx) + 4)
    }

    /// The block number of the next request.
    pub fn next_block(&self) -> u32 {
        self.offset >> (u32::from(self.szx) + 4)
    }

    /// Takes the block number for the next request of the window, unless it would start past
    /// `total` (when known) or lie `window` blocks or more beyond the next one in order (where
    /// nothing could keep it until its turn).
    pub fn take_request(&mut self, total: Option<u32>, window: u32) -> Option<u32> {
        let num = self.next_request;
        let start = u64::from(num) << (u32::from(self.szx) + 4);
        if total.or(self.total).is_some_and(|t| start >= u64::from(t)) && num != self.next_block() {
            return None;
        }
        if num >= self.next_block().saturating_add(window.max(1)) {
            return None;
        }
        self.next_request = num.saturating_add(1);
        Some(num)
    }

    /// Forgets the requests ahead of the in-order offset (after a failure or a size change):
    /// the window starts again from the next block needed.
    pub fn rewind(&mut self) {
        self.next_request = self.next_block();
    }

    /// After taking buffered blocks in order, keep the next request at or beyond the offset.
    pub fn rewind_if_behind(&mut self) {
        if self.next_request < self.next_block() {
            self.next_request = self.next_block();
        }
    }

    /// Writes the GET for block `num` into `buf`.
    pub fn write_request(
        &self,
        num: u32,
        buf: &mut [u8],
        message_id: u16,
        token: &[u8],
    ) -> Option<usize> {
        let uri = CoapUri::parse(&self.uri).ok()?;
        let block = BlockValue::new(num, false, self.szx).ok()?;
        let (bytes, len) = block.encode();
        let mut w =
            MessageWriter::new(buf, MessageType::Confirmable, Code::GET, message_id, token).ok()?;
        for seg in uri.segments() {
            w.option(option::URI_PATH, seg.as_bytes()).ok()?;
        }
        for q in uri.queries() {
            w.option(option::URI_QUERY, q.as_bytes()).ok()?;
        }
        w.option(option::BLOCK2, bytes.get(..len)?).ok()?;
        if num == 0 {
            // Size2: 0 asks the server for the total size (RFC 7959 §4).
            w.uint_option(option::SIZE2, 0).ok()?;
        }
        Some(w.finish())
    }

    /// Interprets the response to the block request.
    pub fn on_response<'a>(&mut self, msg: &Message<'a>) -> Step<'a> {
        if !msg.code.is_success() {
            return Step::Failed(match msg.code {
                Code::NOT_FOUND | Code::BAD_REQUEST | Code::FORBIDDEN | Code::UNAUTHORIZED => {
                    UpdateResult::InvalidUri
                }
                Code::UNSUPPORTED_CONTENT_FORMAT | Code::NOT_ACCEPTABLE => {
                    UpdateResult::UnsupportedPackage
                }
                // A block past the end: the representation shrank under us.
                Code::BAD_OPTION => return self.restart(),
                // Server trouble (5.xx): worth retrying.
                _ => return Step::Ignore,
            });
        }
        // A changed ETag means another representation. A response without one tells nothing
        // (libcoap's coap-server leaves it out of some blocks), and one that starts carrying an
        // ETag sets it.
        let etag = msg.option(option::ETAG).unwrap_or(&[]);
        if !etag.is_empty() {
            if self.etag.is_empty() {
                let _ = self
                    .etag
                    .extend_from_slice(etag.get(..etag.len().min(8)).unwrap_or(&[]));
            } else if etag != self.etag.as_slice() {
                return self.restart();
            }
        }
        if let Ok(Some(total)) = msg.uint_option(option::SIZE2) {
            self.total = Some(total);
        }
        self.failures = 0;
        self.retry_at = None;
        let Some(raw) = msg.option(option::BLOCK2) else {
            // No Block2: the whole representation fits in this response.
            if self.offset != 0 {
                return Step::Ignore;
            }
            self.offset = msg.payload.len() as u32;
            return Step::Data {
                offset: 0,
                bytes: msg.payload,
                last: true,
            };
        };
        let Ok(block) = BlockValue::decode(raw) else {
            return Step::Failed(UpdateResult::ConnectionLost);
        };
        let Ok(offset) = u32::try_from(block.offset()) else {
            return Step::Failed(UpdateResult::NotEnoughFlash);
        };
        let len = msg.payload.len() as u32;
        if block.more() && len != block.size() as u32 {
            // Every block but the last is exactly one block long (RFC 7959 §2.2).
            return Step::Ignore;
        }
        if offset < self.offset {
            return Step::Ignore;
        }
        // Late negotiation: the server may serve smaller blocks than asked; keep its size, and
        // ask again from the next block needed at that size.
        if block.szx() < self.szx {
            self.szx = block.szx();
            if offset != self.offset {
                self.rewind();
                return Step::Ignore;
            }
            self.next_request = offset.saturating_add(len) >> (u32::from(self.szx) + 4);
        }
        if offset > self.offset {
            return Step::Ahead {
                offset,
                bytes: msg.payload,
                last: !block.more(),
            };
        }
        self.offset = offset.saturating_add(len);
        self.rewind_if_behind();
        Step::Data {
            offset,
            bytes: msg.payload,
            last: !block.more(),
        }
    }

    fn restart(&mut self) -> Step<'static> {
        self.offset = 0;
        self.next_request = 0;
        self.etag.clear();
        self.total = None;
        Step::Restart
    }

    /// The request for block `num` went unanswered: ask for it again. Only failures of the block
    /// next in order count towards giving up (Result 4 after `max_failures` in a row) and wait
    /// before the retry (from the second one on, doubling, capped): the others are blocks of the
    /// window that a lossy hop ate, and the exchange's own back-off already paced them.
    pub fn on_failure(
        &mut self,
        now: Instant,
        num: u32,
        policy: &RetryPolicy,
    ) -> Option<UpdateResult> {
        self.rewind();
        if num != self.next_block() {
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= policy.max_failures {
            return Some(UpdateResult::ConnectionLost);
        }
        if self.failures >= 2 {
            let backoff = Duration::from_secs(1u64 << self.failures.saturating_sub(1).min(16))
                .min(policy.backoff_cap);
            self.retry_at = Some(now + backoff);
        }
        None
    }

    /// Whether the next request may go out at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(
        code: Code,
        block: Option<(u32, bool, u8)>,
        etag: &[u8],
        payload: &[u8],
        buf: &mut [u8],
    ) -> usize {
        let mut w = MessageWriter::new(buf, MessageType::Acknowledgement, code, 1, &[1]).unwrap();
        if !etag.is_empty() {
            w.option(option::ETAG, etag).unwrap();
        }
        if let Some((num, more, szx)) = block {
            let (b, l) = BlockValue::new(num, more, szx).unwrap().encode();
            w.option(option::BLOCK2, &b[..l]).unwrap();
        }
        w.payload(payload).unwrap()
    }

    #[test]
    fn requests_carry_the_uri_and_block2_and_size2_on_the_first() {
        let d = Download::new(Target::Image, "coap://10.0.0.1:5700/fw/ab/image", 2, 0).unwrap();
        let mut buf = [0u8; 64];
        let n = d.write_request(0, &mut buf, 7, &[9]).unwrap();
        let m = Message::decode(&buf[..n]).unwrap();
        assert_eq!(m.code, Code::GET);
        assert_eq!(
            m.path().collect::<heapless::Vec<_, 4>>().as_slice(),
            [b"fw".as_slice(), b"ab", b"image"]
        );
        // Block2 NUM 0, M 0, SZX 2 → 0x02; Size2 0 → empty value.
        assert_eq!(m.option(option::BLOCK2), Some(&[0x02][..]));
        assert_eq!(m.option(option::SIZE2), Some(&[][..]));
        assert_eq!(d.peer, "10.0.0.1:5700".parse().unwrap());
    }

    #[test]
    fn blocks_advance_the_offset_and_late_negotiation_is_followed() {
        let mut d = Download::new(Target::Image, "coap://10.0.0.1/i", 4, 0).unwrap();
        let mut buf = [0u8; 1200];
        // The server answers the 256-byte request with 64-byte blocks (SZX 2).
        let n = response(
            Code::CONTENT,
            Some((0, true, 2)),
            &[1, 2],
            &[7; 64],
            &mut buf,
        );
        let m = Message::decode(&buf[..n]).unwrap();
        assert_eq!(
            d.on_response(&m),
            Step::Data {
                offset: 0,
                bytes: &[7; 64],
                last: false
            }
        );
        assert_eq!((d.offset, d.szx, d.next_block()), (64, 2, 1));
        assert_eq!(d.take_request(None, 1), Some(1));
        let n = response(
            Code::CONTENT,
            Some((1, false, 2)),
            &[1, 2],
            &[8; 10],
            &mut buf,
        );
        let m = Message::decode(&buf[..n]).unwrap();
        assert_eq!(
            d.on_response(&m),
            Step::Data {
                offset: 64,
                bytes: &[8; 10],
                last: true
            }
        );
        assert_eq!(d.offset, 74);
    }

    #[test]
    fn early_blocks_wait_old_ones_are_ignored_and_a_changed_etag_restarts() {
        let mut d = Download::new(Target::Image, "coap://10.0.0.1/i", 2, 0).unwrap();
        let mut buf = [0u8; 200];
        let n = response(Code::CONTENT, Some((0, true, 2)), &[1], &[0; 64], &mut buf);
        d.on_response(&Message::decode(&buf[..n]).unwrap());
        // Block 5 answered before blocks 1..4 (a window of requests): kept for later.
        let n = response(Code::CONTENT, Some((5, true, 2)), &[1], &[3; 64], &mut buf);
        assert_eq!(
            d.on_response(&Message::decode(&buf[..n]).unwrap()),
            Step::Ahead {
                offset: 320,
                bytes: &[3; 64],
                last: false
            }
        );
        assert_eq!(d.offset, 64, "the in-order offset does not move");
        // A block without an ETag (libcoap leaves it out of some): no change of representation.
        let n = response(Code::CONTENT, Some((6, true, 2)), &[], &[4; 64], &mut buf);
        assert!(matches!(
            d.on_response(&Message::decode(&buf[..n]).unwrap()),
            Step::Ahead { offset: 384, .. }
        ));
        // Block 0 again (a late duplicate): ignored.
        let n = response(Code::CONTENT, Some((0, true, 2)), &[1], &[0; 64], &mut buf);
        assert_eq!(
            d.on_response(&Message::decode(&buf[..n]).unwrap()),
            Step::Ignore
        );
        let n = response(Code::CONTENT, Some((1, true, 2)), &[2], &[0; 64], &mut buf);
        assert_eq!(
            d.on_response(&Message::decode(&buf[..n]).unwrap()),
            Step::Restart
        );
        assert_eq!(d.offset, 0);
    }

    #[test]
    fn errors_map_to_object5_results_and_failures_back_off_then_give_up() {
        let mut d = Download::new(Target::Image, "coap://10.0.0.1/i", 2, 0).unwrap();
        let mut buf = [0u8; 64];
        let n = response(Code::NOT_FOUND, None, &[], &[], &mut buf);
        assert_eq!(
            d.on_response(&Message::decode(&buf[..n]).unwrap()),
            Step::Failed(UpdateResult::InvalidUri)
        );
        let policy = RetryPolicy {
            max_failures: 4,
            backoff_cap: Duration::from_secs(3),
        };
        // A block ahead of the next one in order failed: asked again, nothing counted.
        assert_eq!(d.on_failure(Instant(0), 5, &policy), None);
        assert_eq!(d.retry_at, None);
        // The block next in order: the first failure retries at once, then waits double.
        assert_eq!(d.on_failure(Instant(0), 0, &policy), None);
        assert!(d.ready(Instant(0)));
        assert_eq!(d.on_failure(Instant(0), 0, &policy), None);
        assert_eq!(d.retry_at, Some(Instant(2000)));
        assert!(!d.ready(Instant(1999)) && d.ready(Instant(2000)));
        assert_eq!(d.on_failure(Instant(0), 0, &policy), None);
        assert_eq!(d.retry_at, Some(Instant(3000)), "capped");
        assert_eq!(
            d.on_failure(Instant(0), 0, &policy),
            Some(UpdateResult::ConnectionLost)
        );
        assert_eq!(
            Download::new(Target::Image, "coaps://10.0.0.1/i", 2, 0).err(),
            Some(UpdateResult::UnsupportedProtocol)
        );
    }
}

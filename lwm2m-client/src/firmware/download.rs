//! One block-wise download (RFC 7959 Block2, client side) as a protocol: the request for a block,
//! and what an answer means. An answer is checked against the request it answers: the block it
//! carries must start where the request asked (a smaller SZX is late negotiation, a larger one or
//! another offset is wrong), lie inside the representation and agree with its length (Size2, the
//! manifest's image size, the last block's end). A changed ETag starts the download over, at most
//! [`MAX_RESTARTS`] times. Where the bytes go, and which block to ask next, is the caller's
//! (`blocks`, `window`).
//!
//! Nothing waits forever. A wrong answer, a server error or a 5.03 is a *setback*: the block is
//! asked again, at once after the first and after a doubling wait from the second on (a 5.03 after
//! its Max-Age, at most [`MAX_SERVER_WAIT`]); [`RetryPolicy::max_failures`] setbacks without new
//! data in between end the download with Result 4. So do `max_failures` requests in a row that
//! time out without any answer since they were sent (the server is gone).

use core::net::SocketAddr;

use heapless::Vec;
use lwm2m_core::block::BlockValue;
use lwm2m_core::coap::{Code, Message, MessageType, MessageWriter, option};
use lwm2m_core::object5::UpdateResult;

use crate::engine::limits::{MAX_ETAG_LEN, MAX_RESTARTS, MAX_SERVER_WAIT};
use crate::exchange::BlockReq;
use crate::firmware::blocks::Partials;
use crate::firmware::pace::Pace;
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
    /// Setbacks without new data, or timeouts without any answer, before the download fails
    /// with Result 4.
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

/// How a download asks for blocks.
#[derive(Clone, Copy, Debug)]
pub struct Asking {
    /// SZX to start with.
    pub szx: u8,
    /// Most block requests in flight.
    pub window: u8,
    /// Whether the block size adapts to the link (else it stays `szx`).
    pub adapt: bool,
}

/// A download in progress.
#[derive(Clone, Debug)]
pub struct Download {
    pub target: Target,
    pub uri: UriString,
    pub peer: SocketAddr,
    /// The representation's ETag, from its first answer that carried one.
    pub etag: Vec<u8, MAX_ETAG_LEN>,
    /// The representation's length once known: given (the manifest's image size), or learnt
    /// from Size2 or the last block.
    pub len: Option<u32>,
    /// Whether `len` was given and may not change.
    fixed_len: bool,
    /// No byte at or past this: the destination's size, or where the server said the end is.
    pub bound: u32,
    /// The destination's size.
    cap: u32,
    /// What a representation longer than the destination fails with.
    too_large: UpdateResult,
    /// The largest SZX the server serves (it answered a smaller one than asked: late negotiation).
    pub server_szx: u8,
    pub pace: Pace,
    /// Units that blocks smaller than a unit filled in part.
    pub partials: Partials,
    /// Times a changed ETag started the download over.
    pub restarts: u8,
    setbacks: u8,
    /// Requests started from this sequence number on count in the next setback.
    setback_seq: u32,
    timeouts: u8,
    /// Requests started from this sequence number on count as timeouts: none answered since
    /// (`answer_seq`), and one at a time (`timeout_seq`: started after the last one counted).
    answer_seq: u32,
    timeout_seq: u32,
    /// When the next request may go out after a setback.
    pub retry_at: Option<Instant>,
    policy: RetryPolicy,
}

/// What an answer means.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Bytes of the representation at `offset`: inside it and where the request asked.
    Data { offset: u32, bytes: &'a [u8] },
    /// The ETag changed: the representation is another one now; start over.
    Restart,
    /// Nothing to keep: the block is asked again (not before `retry_at`).
    Retry,
    /// The download cannot go on: the Object 5 result to report.
    Failed(UpdateResult),
}

impl Download {
    /// A download of `uri` into a destination of `bound` bytes (a longer representation fails
    /// with `too_large`); `len` when the length is known beforehand.
    pub fn new(
        target: Target,
        uri: &str,
        asking: Asking,
        len: Option<u32>,
        bound: u32,
        too_large: UpdateResult,
        policy: RetryPolicy,
    ) -> Result<Self, UpdateResult> {
        let parsed = CoapUri::parse(uri)?;
        let mut owned = UriString::new();
        owned.push_str(uri).map_err(|_| UpdateResult::InvalidUri)?;
        if len.is_some_and(|l| l > bound) {
            return Err(too_large);
        }
        Ok(Download {
            target,
            uri: owned,
            peer: parsed.peer,
            etag: Vec::new(),
            len,
            fixed_len: len.is_some(),
            bound: len.unwrap_or(bound),
            cap: bound,
            too_large,
            server_szx: lwm2m_core::block::MAX_SZX,
            pace: Pace::new(asking.szx, asking.window, asking.adapt),
            partials: Partials::new(),
            restarts: 0,
            setbacks: 0,
            setback_seq: 0,
            timeouts: 0,
            answer_seq: 0,
            timeout_seq: 0,
            retry_at: None,
            policy,
        })
    }

    /// Where the representation ends as far as is known.
    pub fn end(&self) -> u32 {
        self.len.unwrap_or(self.bound)
    }

    /// Writes the GET for `req` into `buf`.
    pub fn write_request(
        &self,
        req: BlockReq,
        buf: &mut [u8],
        message_id: u16,
        token: &[u8],
    ) -> Option<usize> {
        let uri = CoapUri::parse(&self.uri).ok()?;
        let block = BlockValue::new(req.num, false, req.szx).ok()?;
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
        if req.num == 0 {
            // Size2: 0 asks the server for the total size (RFC 7959 §4).
            w.uint_option(option::SIZE2, 0).ok()?;
        }
        Some(w.finish())
    }

    /// Interprets the answer `msg` to `req`, whose request was started as number `seq`
    /// (see [`crate::exchange::Answer`]); `next_seq` is the number the next request will get.
    pub fn on_response<'a>(
        &mut self,
        now: Instant,
        req: BlockReq,
        seq: u32,
        next_seq: u32,
        msg: &Message<'a>,
    ) -> Step<'a> {
        self.timeouts = 0;
        self.answer_seq = next_seq;
        if !msg.code.is_success() {
            return self.on_error(now, req, seq, next_seq, msg);
        }
        let payload = msg.payload;
        let Ok(len) = u32::try_from(payload.len()) else {
            return self.setback(now, seq, next_seq, None);
        };
        // Where the block starts and whether more follow, as the answer says.
        let (offset, more) = match msg.option(option::BLOCK2) {
            // The whole representation in one answer: only to a request for its start.
            None if req.offset() == 0 => (0, false),
            None => return self.setback(now, seq, next_seq, None),
            Some(raw) => {
                let Ok(b) = BlockValue::decode(raw) else {
                    return self.setback(now, seq, next_seq, None);
                };
                let size = b.size() as u32;
                let fits = if b.more() { len == size } else { len <= size };
                // A larger block than asked, another offset, or a payload that is not the block.
                if b.szx() > req.szx || u64::from(req.offset()) != b.offset() || !fits {
                    return self.setback(now, seq, next_seq, None);
                }
                if b.szx() < req.szx {
                    self.server_szx = self.server_szx.min(b.szx());
                }
                (req.offset(), b.more())
            }
        };
        let end = offset.saturating_add(len);
        // A changed ETag means another representation. A response without one tells nothing
        // (libcoap's coap-server leaves it out of some blocks), and one that starts carrying an
        // ETag sets it.
        let etag = msg.option(option::ETAG).unwrap_or(&[]);
        if !etag.is_empty() {
            if self.etag.is_empty() {
                let _ = self
                    .etag
                    .extend_from_slice(etag.get(..etag.len().min(MAX_ETAG_LEN)).unwrap_or(&[]));
            } else if etag != self.etag.as_slice() {
                return self.restart();
            }
        }
        // The length: Size2, or the end of the last block, must agree with what is known.
        let size2 = match msg.uint_option(option::SIZE2) {
            Ok(v) => v,
            Err(_) => return self.setback(now, seq, next_seq, None),
        };
        let last_end = (!more).then_some(end);
        for said in [size2, last_end].into_iter().flatten() {
            match self.len {
                Some(l) if l != said => {
                    if !self.fixed_len {
                        // Learnt from an answer that may have been the wrong one: learn again.
                        self.len = None;
                        self.bound = self.cap;
                    }
                    return self.setback(now, seq, next_seq, None);
                }
                Some(_) => {}
                None if said > self.bound => return Step::Failed(self.too_large),
                None => {
                    self.len = Some(said);
                    self.bound = said;
                }
            }
        }
        // Inside the representation, and not its end while it says more follow.
        if end > self.end() || (more && self.len.is_some_and(|l| end >= l)) {
            return if self.len.is_none() {
                Step::Failed(self.too_large)
            } else {
                self.setback(now, seq, next_seq, None)
            };
        }
        Step::Data {
            offset,
            bytes: payload,
        }
    }

    /// An error answer.
    fn on_error<'a>(
        &mut self,
        now: Instant,
        req: BlockReq,
        seq: u32,
        next_seq: u32,
        msg: &Message<'a>,
    ) -> Step<'a> {
        match msg.code {
            Code::NOT_FOUND | Code::BAD_REQUEST | Code::FORBIDDEN | Code::UNAUTHORIZED => {
                Step::Failed(UpdateResult::InvalidUri)
            }
            Code::UNSUPPORTED_CONTENT_FORMAT | Code::NOT_ACCEPTABLE => {
                Step::Failed(UpdateResult::UnsupportedPackage)
            }
            // Busy: come back after Max-Age (RFC 7252: 60 s when absent), at most MAX_SERVER_WAIT.
            Code::SERVICE_UNAVAILABLE => {
                let age = msg
                    .uint_option(option::MAX_AGE)
                    .ok()
                    .flatten()
                    .unwrap_or(60);
                let wait = Duration::from_secs(u64::from(age)).min(MAX_SERVER_WAIT);
                self.setback(now, seq, next_seq, Some(wait))
            }
            // A block past the end of a representation of unknown length: now its end is known
            // to lie before it (aiocoap's file server sends no Size2).
            Code::BAD_OPTION if self.len.is_none() && req.offset() > 0 => {
                self.bound = self.bound.min(req.offset());
                Step::Retry
            }
            _ => self.setback(now, seq, next_seq, None),
        }
    }

    /// New bytes were stored: the download makes progress.
    pub fn progressed(&mut self) {
        self.setbacks = 0;
    }

    /// A setback for the request started as `seq`: counted once per setback (requests started
    /// before the previous one share it), then a wait: none after the first, doubling from 2 s,
    /// or `wait`. Result 4 after `max_failures`.
    fn setback<'a>(
        &mut self,
        now: Instant,
        seq: u32,
        next_seq: u32,
        wait: Option<Duration>,
    ) -> Step<'a> {
        if before(seq, self.setback_seq) {
            return Step::Retry;
        }
        self.setback_seq = next_seq;
        self.setbacks = self.setbacks.saturating_add(1);
        if self.setbacks >= self.policy.max_failures {
            return Step::Failed(UpdateResult::ConnectionLost);
        }
        let backoff = match self.setbacks {
            0 | 1 => Duration(0),
            n => Duration::from_secs(1u64 << n.saturating_sub(1).min(16)),
        };
        let wait = wait.unwrap_or(backoff).min(self.policy.backoff_cap);
        self.retry_at = (wait.as_millis() > 0).then(|| now + wait);
        Step::Retry
    }

    /// The ETag changed: start over, unless it happened [`MAX_RESTARTS`] times already (two
    /// mirrors that disagree, or a server that changes the ETag on every block: Result 4, since
    /// no byte was shown to be wrong).
    fn restart<'a>(&mut self) -> Step<'a> {
        if self.restarts >= MAX_RESTARTS {
            return Step::Failed(UpdateResult::ConnectionLost);
        }
        self.restarts = self.restarts.saturating_add(1);
        self.etag.clear();
        self.partials.clear();
        if !self.fixed_len {
            self.len = None;
        }
        Step::Restart
    }

    /// A request started as `seq` gave up without an answer; `next_seq` as in
    /// [`Download::on_response`]. It counts if it was started after the last answer and after the
    /// last timeout counted (the requests of one window that time out together count once): from
    /// the second on, the download waits before asking again (2 s, doubling, at most the cap), so
    /// that a host gone for a while (a border router rebooting) is not hammered; Result 4 after
    /// `max_failures`, about 6 exchange lifetimes and 30 s of waits.
    pub fn on_timeout(&mut self, now: Instant, seq: u32, next_seq: u32) -> Option<UpdateResult> {
        if before(seq, self.answer_seq) || before(seq, self.timeout_seq) {
            return None;
        }
        self.timeout_seq = next_seq;
        self.timeouts = self.timeouts.saturating_add(1);
        self.pace.silent();
        if self.timeouts >= self.policy.max_failures {
            return Some(UpdateResult::ConnectionLost);
        }
        if self.timeouts >= 2 {
            let wait = Duration::from_secs(1u64 << self.timeouts.saturating_sub(1).min(16))
                .min(self.policy.backoff_cap);
            let until = now + wait;
            self.retry_at = Some(self.retry_at.map_or(until, |t| t.max(until)));
        }
        None
    }

    /// Whether the server answers: no request timed out unanswered since the last answer.
    pub fn answering(&self) -> bool {
        self.timeouts == 0
    }

    /// Whether the next request may go out at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }
}

/// An image download of `len` bytes at 64-byte blocks, a fixed size, for unit tests.
#[cfg(test)]
pub(crate) fn test_image(len: u32) -> Download {
    let asking = Asking {
        szx: 2,
        window: 16,
        adapt: false,
    };
    Download::new(
        Target::Image,
        "coap://10.0.0.1/i",
        asking,
        Some(len),
        len,
        UpdateResult::NotEnoughFlash,
        RetryPolicy::default(),
    )
    .unwrap_or_else(|_| unreachable!("a valid URI"))
}

/// Whether sequence number `a` comes before `b` (wrapping).
fn before(a: u32, b: u32) -> bool {
    b.wrapping_sub(a).wrapping_sub(1) < u32::MAX / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(
        code: Code,
        block: Option<(u32, bool, u8)>,
        etag: &[u8],
        size2: Option<u32>,
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
        if let Some(s) = size2 {
            w.uint_option(option::SIZE2, s).unwrap();
        }
        w.payload(payload).unwrap()
    }

    fn image(len: u32) -> Download {
        test_image(len)
    }

    /// What an answer meant, without its bytes.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Data(u32, usize),
        Restart,
        Retry,
        Failed(UpdateResult),
    }

    /// `d` reads a 2.05 with Block2 `block`, `etag`, `size2` and `payload` as the answer to
    /// `req`, started as `seq`.
    fn answer(
        d: &mut Download,
        req: BlockReq,
        seq: u32,
        block: (u32, bool, u8),
        (etag, size2): (&[u8], Option<u32>),
        payload: &[u8],
    ) -> Got {
        let mut buf = [0u8; 1200];
        let n = response(Code::CONTENT, Some(block), etag, size2, payload, &mut buf);
        let m = Message::decode(&buf[..n]).unwrap();
        match d.on_response(Instant(0), req, seq, seq + 1, &m) {
            Step::Data { offset, bytes } => Got::Data(offset, bytes.len()),
            Step::Restart => Got::Restart,
            Step::Retry => Got::Retry,
            Step::Failed(r) => Got::Failed(r),
        }
    }

    fn req(num: u32, szx: u8) -> BlockReq {
        BlockReq { num, szx }
    }

    #[test]
    fn requests_carry_the_uri_and_block2_and_size2_on_the_first() {
        let d = image(1000);
        let mut buf = [0u8; 64];
        let n = d.write_request(req(0, 2), &mut buf, 7, &[9]).unwrap();
        let m = Message::decode(&buf[..n]).unwrap();
        assert_eq!(m.code, Code::GET);
        // Block2 NUM 0, M 0, SZX 2 → 0x02; Size2 0 → empty value.
        assert_eq!(m.option(option::BLOCK2), Some(&[0x02][..]));
        assert_eq!(m.option(option::SIZE2), Some(&[][..]));
        let n = d.write_request(req(5, 6), &mut buf, 7, &[9]).unwrap();
        let m = Message::decode(&buf[..n]).unwrap();
        assert_eq!(m.option(option::BLOCK2), Some(&[0x56][..]));
        assert_eq!(m.option(option::SIZE2), None);
    }

    #[test]
    fn a_block_is_data_where_it_was_asked_and_late_negotiation_lowers_the_size() {
        let mut d = image(1000);
        let mut buf = [0u8; 1200];
        // Asked 256 bytes at 256, answered 64 bytes at 256 (block 4 of 64).
        let n = response(
            Code::CONTENT,
            Some((4, true, 2)),
            &[1],
            None,
            &[7; 64],
            &mut buf,
        );
        let m = Message::decode(&buf[..n]).unwrap();
        assert_eq!(
            d.on_response(Instant(0), req(1, 4), 0, 1, &m),
            Step::Data {
                offset: 256,
                bytes: &[7; 64]
            }
        );
        assert_eq!(d.server_szx, 2);
        // The last block ends where the image does.
        let n = response(
            Code::CONTENT,
            Some((15, false, 2)),
            &[1],
            None,
            &[8; 40],
            &mut buf,
        );
        let m = Message::decode(&buf[..n]).unwrap();
        assert!(matches!(
            d.on_response(Instant(0), req(15, 2), 1, 2, &m),
            Step::Data { offset: 960, .. }
        ));
    }

    #[test]
    fn wrong_answers_are_setbacks_that_wait_longer_and_then_fail() {
        let mut d = image(1000);
        let mut buf = [0u8; 200];
        // (Block2 NUM, M, SZX), Size2, payload length: answers to a request for block 2 of 64.
        type Case = ((u32, bool, u8), Option<u32>, usize);
        let cases: [Case; 5] = [
            ((3, true, 2), None, 64),    // block 3 for block 2
            ((2, true, 3), None, 128),   // a larger block than asked
            ((2, true, 2), Some(9), 64), // Size2 that is not the image's
            ((2, false, 2), None, 64),   // "last" block that does not end the image
            ((2, true, 2), None, 10),    // M=1 with a short payload
        ];
        for (k, (block, size2, len)) in cases.into_iter().enumerate() {
            let payload = [0u8; 128];
            let n = response(
                Code::CONTENT,
                Some(block),
                &[1],
                size2,
                &payload[..len],
                &mut buf,
            );
            let m = Message::decode(&buf[..n]).unwrap();
            let seq = 10 * k as u32;
            let step = d.on_response(Instant(1000), req(2, 2), seq, seq + 1, &m);
            assert_eq!(step, Step::Retry, "case {k}");
        }
        // Setbacks 1..5: at once, then 2, 4, 8, 16 s.
        assert_eq!(d.retry_at, Some(Instant(1000 + 16_000)));
        let n = response(
            Code::CONTENT,
            Some((9, true, 2)),
            &[1],
            None,
            &[0; 64],
            &mut buf,
        );
        let m = Message::decode(&buf[..n]).unwrap();
        assert_eq!(
            d.on_response(Instant(0), req(2, 2), 99, 100, &m),
            Step::Failed(UpdateResult::ConnectionLost),
            "the sixth"
        );
    }

    #[test]
    fn answers_to_requests_sent_before_a_setback_share_it_and_data_resets_the_count() {
        let mut d = image(1000);
        let mut buf = [0u8; 200];
        let n = response(Code::SERVICE_UNAVAILABLE, None, &[], None, &[], &mut buf);
        let m = Message::decode(&buf[..n]).unwrap();
        // A window of 16 answered 5.03: one setback, a wait of the default Max-Age (60 s).
        for seq in 0..16 {
            assert_eq!(
                d.on_response(Instant(0), req(seq, 2), seq, 16, &m),
                Step::Retry
            );
        }
        assert_eq!(d.setbacks, 1);
        assert_eq!(d.retry_at, Some(Instant(60_000)));
        assert!(!d.ready(Instant(59_999)) && d.ready(Instant(60_000)));
        // Max-Age 3600 is capped.
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::Acknowledgement,
            Code::SERVICE_UNAVAILABLE,
            1,
            &[1],
        )
        .unwrap();
        w.uint_option(option::MAX_AGE, 3600).unwrap();
        let n = w.finish();
        let m = Message::decode(&buf[..n]).unwrap();
        assert_eq!(
            d.on_response(Instant(0), req(0, 2), 16, 17, &m),
            Step::Retry
        );
        assert_eq!(d.retry_at, Some(Instant(0) + MAX_SERVER_WAIT));
        d.progressed();
        assert_eq!(d.setbacks, 0);
    }

    #[test]
    fn a_changed_etag_restarts_at_most_twice_then_fails_with_result_4() {
        let mut d = image(1000);
        let block = (1, true, 2);
        assert_eq!(
            answer(&mut d, req(1, 2), 0, block, (&[1], None), &[0; 64]),
            Got::Data(64, 64)
        );
        for (k, etag) in [[2u8], [3]].iter().enumerate() {
            let seq = 10 * (k as u32 + 1);
            assert_eq!(
                answer(&mut d, req(1, 2), seq, block, (etag, None), &[0; 64]),
                Got::Restart
            );
            assert!(d.etag.is_empty());
            // The next answer sets the new ETag.
            let next = answer(&mut d, req(1, 2), seq + 1, block, (etag, None), &[0; 64]);
            assert_eq!(next, Got::Data(64, 64));
        }
        assert_eq!(
            answer(&mut d, req(1, 2), 99, block, (&[4], None), &[0; 64]),
            Got::Failed(UpdateResult::ConnectionLost)
        );
    }

    #[test]
    fn errors_map_to_object5_results_and_timeouts_without_answers_give_up() {
        let mut d = image(1000);
        let mut buf = [0u8; 64];
        let n = response(Code::NOT_FOUND, None, &[], None, &[], &mut buf);
        assert_eq!(
            d.on_response(
                Instant(0),
                req(0, 2),
                0,
                1,
                &Message::decode(&buf[..n]).unwrap()
            ),
            Step::Failed(UpdateResult::InvalidUri)
        );
        // Requests started before the last answer do not count, nor those of a window started
        // before the last one counted; five in a row do not yet fail, but from the second on the
        // download waits 2, 4, 8, 16 s.
        assert_eq!(d.on_timeout(Instant(0), 0, 10), None);
        assert_eq!(d.timeouts, 0);
        assert_eq!(d.on_timeout(Instant(0), 1, 10), None);
        assert_eq!(d.on_timeout(Instant(0), 2, 10), None, "same window");
        assert_eq!((d.timeouts, d.retry_at), (1, None));
        for seq in 10..14 {
            assert_eq!(d.on_timeout(Instant(0), seq, seq + 1), None);
        }
        assert_eq!(d.retry_at, Some(Instant(16_000)));
        assert_eq!(
            d.on_timeout(Instant(0), 14, 15),
            Some(UpdateResult::ConnectionLost)
        );
        let asking = Asking {
            szx: 2,
            window: 1,
            adapt: false,
        };
        assert_eq!(
            Download::new(
                Target::Image,
                "http://10.0.0.1/i",
                asking,
                None,
                10,
                UpdateResult::NotEnoughFlash,
                RetryPolicy::default()
            )
            .err(),
            Some(UpdateResult::UnsupportedProtocol)
        );
    }

    #[test]
    fn an_unknown_length_is_learnt_and_a_longer_one_than_the_destination_fails() {
        let asking = Asking {
            szx: 2,
            window: 4,
            adapt: false,
        };
        let mut d = Download::new(
            Target::Manifest,
            "coap://10.0.0.1/m",
            asking,
            None,
            1024,
            UpdateResult::OutOfRam,
            RetryPolicy::default(),
        )
        .unwrap();
        let first = (0, true, 2);
        let got = answer(&mut d, req(0, 2), 0, first, (&[1], Some(300)), &[0; 64]);
        assert_eq!(got, Got::Data(0, 64));
        assert_eq!(d.len, Some(300));
        let mut d2 = d.clone();
        d2.len = None;
        d2.bound = 1024;
        assert_eq!(
            answer(&mut d2, req(0, 2), 0, first, (&[1], Some(5000)), &[0; 64]),
            Got::Failed(UpdateResult::OutOfRam)
        );
    }
}

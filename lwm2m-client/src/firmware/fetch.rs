//! One block-wise GET of a resource on its own (sans-IO): the device's downloader (the same
//! [`Download`], window of requests, reorder buffer and confirmable exchanges with the adaptive
//! RTO as a firmware update) without the LwM2M around it. The host tool `lwm2m-client fetch` and
//! the transfer benchmark use it to fetch from any CoAP server, ours or another.

use core::net::SocketAddr;

use heapless::Deque;
use lwm2m_core::coap::{self, Code, Message, MessageType};
use lwm2m_core::object5::UpdateResult;

use crate::engine::limits::OUTBOX;
use crate::exchange::{Exchanges, Purpose};
use crate::firmware::download::{Download, RetryPolicy, Step, Target};
use crate::firmware::window::{self, Reorder};
use crate::rto::RtoConfig;
use crate::time::{Instant, earliest};

/// How a fetch runs.
#[derive(Clone, Copy, Debug)]
pub struct FetchConfig {
    /// Block size asked for: 16..=1024, a power of two.
    pub block_size: u16,
    /// Block requests in flight at once (bounded by the reorder buffer, as on the device).
    pub window: u8,
    pub rto: RtoConfig,
    pub retry: RetryPolicy,
    /// Seed of message ids, tokens and jitter.
    pub seed: u32,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            block_size: 64,
            window: 4,
            rto: RtoConfig::default(),
            retry: RetryPolicy::default(),
            seed: 1,
        }
    }
}

/// Where the fetched bytes go failed: the fetch stops with this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkError;

/// A fetch in progress.
pub struct Fetch {
    download: Download,
    exchanges: Exchanges,
    reorder: Reorder,
    window: u8,
    retry: RetryPolicy,
    /// Empty ACKs to send for confirmable (separate) responses.
    acks: Deque<(SocketAddr, [u8; 4]), OUTBOX>,
    outcome: Option<Result<u32, UpdateResult>>,
    /// The first block number known to lie past the end (answered 4.02 Bad Option), for
    /// servers that do not say the size (aiocoap's file server sends no Size2).
    end_block: Option<u32>,
    /// Times the server's representation changed (a new ETag) and the fetch began again.
    pub restarts: u32,
}

impl Fetch {
    /// Starts fetching `uri` (coap://host:port/path).
    pub fn new(uri: &str, cfg: &FetchConfig, now: Instant) -> Result<Self, UpdateResult> {
        let szx = lwm2m_core::block::szx_for_size(usize::from(cfg.block_size))
            .map_err(|_| UpdateResult::UnsupportedPackage)?;
        let mut fetch = Fetch {
            download: Download::new(Target::Image, uri, szx, 0)?,
            exchanges: Exchanges::new(cfg.seed, cfg.rto),
            reorder: Reorder::new(),
            window: cfg.window,
            retry: cfg.retry,
            acks: Deque::new(),
            outcome: None,
            end_block: None,
            restarts: 0,
        };
        fetch.request_blocks(now);
        Ok(fetch)
    }

    /// `Some(Ok(size))` once every byte arrived, `Some(Err(result))` when the fetch gave up.
    pub fn outcome(&self) -> Option<Result<u32, UpdateResult>> {
        self.outcome
    }

    /// The block size in use (the server may have asked for a smaller one).
    pub fn block_size(&self) -> u16 {
        self.download.block_size() as u16
    }

    /// A datagram arrived; bytes in order go to `sink(offset, bytes)`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        sink: &mut impl FnMut(u32, &[u8]) -> Result<(), SinkError>,
    ) {
        let Ok(msg) = Message::decode(data) else {
            return;
        };
        if msg.code.is_request() || self.outcome.is_some() {
            return;
        }
        let mut reset = None;
        let purpose = self.exchanges.on_message(now, from, &msg, &mut reset);
        if let Some((Purpose::Block(num), _)) = reset {
            self.on_failure(now, num);
        }
        if msg.ty == MessageType::Confirmable && purpose.is_some() {
            let mut ack = [0u8; 4];
            if coap::empty_ack(&mut ack, msg.message_id) == Ok(4) {
                let _ = self.acks.push_back((from, ack));
            }
        }
        if let Some(Purpose::Block(num)) = purpose {
            // Other exchanges for the same block (see `window::fill`) are not needed now.
            self.exchanges.cancel(Purpose::Block(num));
            if msg.code == Code::BAD_OPTION && num > self.download.next_block() {
                // A block of the window past the end, not a shrunken representation.
                self.end_block = Some(self.end_block.map_or(num, |e| e.min(num)));
            } else {
                self.on_block(&msg, sink);
            }
        }
        self.request_blocks(now);
    }

    /// Time passed: retransmissions, and a retry after a failed block.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((purpose, _)) = self.exchanges.handle_timeout(now) {
            if let Purpose::Block(num) = purpose {
                self.on_failure(now, num);
            }
        }
        self.request_blocks(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Option<(SocketAddr, usize)> {
        if let Some((peer, ack)) = self.acks.pop_front() {
            out.get_mut(..4)?.copy_from_slice(&ack);
            return Some((peer, 4));
        }
        self.exchanges.poll_transmit(out)
    }

    /// When [`Fetch::handle_timeout`] is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        earliest(self.exchanges.poll_timeout(), self.download.retry_at)
    }

    fn request_blocks(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        // Only the first block until it came: a window past the end of a small resource would
        // be answered 4.02. Then the whole window, up to the size when the server said it
        // (Size2) or the first block it answered 4.02. The first block may still go out in
        // several exchanges (`window::fill`).
        let limit = window::window_limit(self.window, usize::from(self.block_size()));
        let shift = u32::from(self.download.szx) + 4;
        let (limit, total) = match (self.download.total, self.download.offset) {
            (Some(_), _) => (limit, None),
            (None, 0) => (usize::from(self.window), Some(1)),
            (None, _) => (limit, self.end_block.map(|b| b.saturating_mul(1 << shift))),
        };
        window::fill(
            &mut self.download,
            &mut self.exchanges,
            &self.reorder,
            limit,
            total,
            now,
        );
    }

    fn on_failure(&mut self, now: Instant, num: u32) {
        if self.exchanges.busy(Purpose::Block(num)) {
            return; // another exchange for the block is still trying
        }
        if let Some(result) = self.download.on_failure(now, num, &self.retry) {
            self.finish(Err(result));
        }
    }

    fn on_block(
        &mut self,
        msg: &Message<'_>,
        sink: &mut impl FnMut(u32, &[u8]) -> Result<(), SinkError>,
    ) {
        match self.download.on_response(msg) {
            Step::Ignore => {}
            Step::Failed(result) => self.finish(Err(result)),
            Step::Restart => {
                self.exchanges.cancel_blocks();
                self.reorder.clear();
                self.restarts = self.restarts.saturating_add(1);
            }
            step @ (Step::Ahead { .. } | Step::Data { .. }) => {
                let mut blocks = self.reorder.sort(&mut self.download, step);
                let mut done = false;
                while let Some((at, bytes, last)) =
                    blocks.next(&mut self.reorder, &mut self.download)
                {
                    if sink(at, bytes).is_err() {
                        return self.finish(Err(UpdateResult::NotEnoughFlash));
                    }
                    done = last;
                }
                if done {
                    self.finish(Ok(self.download.offset));
                }
            }
        }
    }

    fn finish(&mut self, outcome: Result<u32, UpdateResult>) {
        self.exchanges.cancel_blocks();
        self.outcome = Some(outcome);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use lwm2m_core::block::BlockValue;
    use lwm2m_core::coap::{Code, MessageWriter, option};

    use super::*;

    const SERVER: &str = "10.0.0.1:5683";

    /// A block server for `body` (ETag 0xe7, Size2 on every response unless `no_size2`, as
    /// aiocoap's file server), answering on the spot.
    fn serve(body: &[u8], request: &[u8], out: &mut [u8], no_size2: bool) -> usize {
        let req = Message::decode(request).unwrap();
        let block = BlockValue::decode(req.option(option::BLOCK2).unwrap()).unwrap();
        let size = block.size();
        let start = block.num() as usize * size;
        if start >= body.len() {
            let w = MessageWriter::new(
                out,
                MessageType::Acknowledgement,
                Code::BAD_OPTION,
                req.message_id,
                req.token(),
            )
            .unwrap();
            return w.finish();
        }
        let end = (start + size).min(body.len());
        let more = end < body.len();
        let mut w = MessageWriter::new(
            out,
            MessageType::Acknowledgement,
            Code::CONTENT,
            req.message_id,
            req.token(),
        )
        .unwrap();
        w.option(option::ETAG, &[0xe7]).unwrap();
        let (b, l) = BlockValue::new(block.num(), more, block.szx())
            .unwrap()
            .encode();
        w.option(option::BLOCK2, &b[..l]).unwrap();
        if !no_size2 {
            w.uint_option(option::SIZE2, body.len() as u32).unwrap();
        }
        w.payload(&body[start..end]).unwrap()
    }

    /// Runs a fetch against `serve` over a path that drops datagrams where `lost(n)` says (n
    /// counts datagrams in both directions) and delays each by `one_way` ms. Returns the bytes,
    /// the outcome and the virtual time it took.
    fn run(
        body: &[u8],
        cfg: &FetchConfig,
        one_way: u64,
        lost: impl Fn(u64) -> bool,
    ) -> (Vec<u8>, Option<Result<u32, UpdateResult>>, u64) {
        run_with(body, cfg, one_way, lost, false)
    }

    fn run_with(
        body: &[u8],
        cfg: &FetchConfig,
        one_way: u64,
        lost: impl Fn(u64) -> bool,
        no_size2: bool,
    ) -> (Vec<u8>, Option<Result<u32, UpdateResult>>, u64) {
        let uri = std::format!("coap://{SERVER}/fw/image");
        let mut now = Instant(0);
        let mut fetch = Fetch::new(&uri, cfg, now).unwrap();
        let mut got = std::vec![0u8; body.len()];
        // Datagrams on the way: (arrival, to the server?, bytes).
        let mut wire: Vec<(u64, bool, Vec<u8>)> = Vec::new();
        let mut n = 0u64;
        let server: SocketAddr = SERVER.parse().unwrap();
        for _ in 0..200_000 {
            let mut buf = [0u8; 1500];
            while let Some((peer, len)) = fetch.poll_transmit(&mut buf) {
                assert_eq!(peer, server);
                n += 1;
                if !lost(n) {
                    wire.push((now.0 + one_way, true, buf[..len].to_vec()));
                }
            }
            if fetch.outcome().is_some() {
                break;
            }
            let next_wire = wire.iter().map(|w| w.0).min();
            let next = match (next_wire, fetch.poll_timeout()) {
                (Some(a), Some(b)) => a.min(b.0),
                (Some(a), None) => a,
                (None, Some(b)) => b.0,
                (None, None) => break,
            };
            assert!(next >= now.0, "a deadline in the past");
            now = Instant(next);
            if let Some(i) = wire.iter().position(|w| w.0 == now.0) {
                let (_, to_server, bytes) = wire.remove(i);
                if to_server {
                    let mut out = [0u8; 1500];
                    let len = serve(body, &bytes, &mut out, no_size2);
                    n += 1;
                    if !lost(n) {
                        wire.push((now.0 + one_way, false, out[..len].to_vec()));
                    }
                } else {
                    fetch.handle_datagram(now, server, &bytes, &mut |offset, bytes| {
                        let at = offset as usize;
                        got.get_mut(at..at + bytes.len())
                            .ok_or(SinkError)?
                            .copy_from_slice(bytes);
                        Ok(())
                    });
                }
            } else {
                fetch.handle_timeout(now);
            }
        }
        (got, fetch.outcome(), now.0)
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn a_clean_path_delivers_every_byte_with_a_window() {
        let image = body(10_000);
        let cfg = FetchConfig {
            window: 8,
            ..FetchConfig::default()
        };
        let (got, outcome, ms) = run(&image, &cfg, 10, |_| false);
        assert_eq!(outcome, Some(Ok(10_000)));
        assert!(got == image);
        // 157 blocks of 64 bytes, 6 in flight (the exchange slots) after the first: far less
        // than 157 round trips of 20 ms.
        assert!(ms < 157 * 20 / 3, "{ms} ms");
    }

    #[test]
    fn a_lossy_path_still_delivers_every_byte() {
        let image = body(20_000);
        let cfg = FetchConfig {
            window: 8,
            ..FetchConfig::default()
        };
        // Every third datagram in either direction is lost.
        let (got, outcome, ms) = run(&image, &cfg, 30, |n| n % 3 == 0);
        assert_eq!(outcome, Some(Ok(20_000)), "after {ms} ms");
        assert!(got == image);
        // A deterministic pseudo-random 30 % too.
        let (got, outcome, _) = run(&image, &cfg, 30, |n| {
            (n.wrapping_mul(2_654_435_761) >> 7) % 10 < 3
        });
        assert_eq!(outcome, Some(Ok(20_000)));
        assert!(got == image);
    }

    #[test]
    fn without_size2_the_window_still_opens_and_blocks_past_the_end_change_nothing() {
        // 10 000 bytes: block 156 is the last; a window of 16 asks past it and gets 4.02s.
        let image = body(10_000);
        let cfg = FetchConfig {
            window: 16,
            ..FetchConfig::default()
        };
        let (got, outcome, ms) = run_with(&image, &cfg, 10, |_| false, true);
        assert_eq!(outcome, Some(Ok(10_000)));
        assert!(got == image);
        assert!(
            ms < 157 * 20 / 3,
            "a window, not one block per round trip: {ms} ms"
        );
        // Lossy too.
        let (got, outcome, _) = run_with(&image, &cfg, 30, |n| n % 4 == 0, true);
        assert_eq!(outcome, Some(Ok(10_000)));
        assert!(got == image);
    }
}

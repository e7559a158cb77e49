//! One block-wise GET of a resource on its own (sans-IO): the device's downloader (the same
//! [`Download`], map of received units, adaptive window and block size, and confirmable
//! exchanges with the adaptive RTO as a firmware update) without the LwM2M around it. The host
//! tool `lwm2m-client fetch` and the transfer benchmark use it to fetch from any CoAP server,
//! ours or another. Blocks arrive in any order; each new byte goes to the sink at its offset.

use core::net::SocketAddr;

use heapless::Deque;
use lwm2m_core::coap::{self, Message, MessageType};
use lwm2m_core::object5::UpdateResult;

use crate::engine::limits::{BLOCK_SLOTS, OUTBOX};
use crate::exchange::{Exchanges, Purpose, Timed};
use crate::firmware::blocks::{self, BlockMap};
use crate::firmware::download::{Asking, Download, RetryPolicy, Step, Target};
use crate::firmware::window;
use crate::rto::RtoConfig;
use crate::time::{Instant, earliest};
use crate::uri::CoapUri;

/// Words of a fetch's map: 131072 units, so up to 2 MiB in 16-byte units and 128 MiB in
/// 1 KiB ones (a host tool: no RAM to save).
pub const FETCH_MAP_WORDS: usize = 4096;

/// How a fetch runs.
#[derive(Clone, Copy, Debug)]
pub struct FetchConfig {
    /// Block size asked for first: 16..=1024, a power of two.
    pub block_size: u16,
    /// Whether the block size adapts to the link (as the device's downloads do).
    pub adapt_block_size: bool,
    /// Most block requests in flight at once (as the device, at most its block slots).
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
            adapt_block_size: true,
            window: BLOCK_SLOTS as u8,
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
    /// Which bytes are in; laid out at the first answer (when the length may become known).
    map: BlockMap<FETCH_MAP_WORDS>,
    exchanges: Exchanges,
    /// Empty ACKs to send for confirmable (separate) responses.
    acks: Deque<(SocketAddr, [u8; 4]), OUTBOX>,
    outcome: Option<Result<u32, UpdateResult>>,
}

impl Fetch {
    /// Starts fetching `uri` (coap://host:port/path; plain CoAP only).
    pub fn new(uri: &str, cfg: &FetchConfig, now: Instant) -> Result<Self, UpdateResult> {
        CoapUri::parse(uri)?.reachable(None)?;
        let szx = lwm2m_core::block::szx_for_size(usize::from(cfg.block_size))
            .map_err(|_| UpdateResult::UnsupportedPackage)?;
        let asking = Asking {
            szx,
            window: cfg.window.min(BLOCK_SLOTS as u8),
            adapt: cfg.adapt_block_size,
        };
        let largest = BlockMap::<FETCH_MAP_WORDS>::CAPACITY.saturating_mul(1024);
        let download = Download::new(
            Target::Image,
            uri,
            asking,
            None,
            largest,
            UpdateResult::NotEnoughFlash,
            cfg.retry,
        )?;
        let mut fetch = Fetch {
            download,
            map: BlockMap::new(),
            exchanges: Exchanges::new(cfg.seed, cfg.rto),
            acks: Deque::new(),
            outcome: None,
        };
        fetch.request_blocks(now);
        Ok(fetch)
    }

    /// `Some(Ok(size))` once every byte arrived, `Some(Err(result))` when the fetch gave up.
    pub fn outcome(&self) -> Option<Result<u32, UpdateResult>> {
        self.outcome
    }

    /// The block size of new requests (it adapts, and the server may serve smaller blocks).
    pub fn block_size(&self) -> u16 {
        16 << self.download.pace.next_szx(self.download.server_szx)
    }

    /// Times the server's representation changed (a new ETag) and the fetch began again.
    pub fn restarts(&self) -> u8 {
        self.download.restarts
    }

    /// A datagram arrived; new bytes go to `sink(offset, bytes)`, in any order.
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
        let answer = self.exchanges.on_message(now, from, &msg, &mut reset);
        if let Some((Purpose::Block(_), _, seq)) = reset {
            self.on_failure(now, seq);
        }
        if msg.ty == MessageType::Confirmable && answer.is_some() {
            let mut ack = [0u8; 4];
            if coap::empty_ack(&mut ack, msg.message_id) == Ok(4) {
                let _ = self.acks.push_back((from, ack));
            }
        }
        if let Some(a) = answer {
            if let Purpose::Block(req) = a.purpose {
                self.exchanges.cancel(Purpose::Block(req));
                let next_seq = self.exchanges.next_seq();
                let d = &mut self.download;
                let rtt = a.rtt.as_millis();
                d.pace
                    .answered(req.szx, rtt, a.retransmits, a.lost, d.server_szx);
                match d.on_response(now, req, a.seq, next_seq, &msg) {
                    Step::Retry => {}
                    Step::Failed(result) => self.finish(Err(result)),
                    Step::Restart => {
                        self.exchanges.cancel_blocks();
                        // Laid out again at the next answer.
                        let _ = self.map.reset(0);
                    }
                    Step::Data { offset, bytes } => self.store(offset, bytes, sink),
                }
            }
        }
        self.request_blocks(now);
    }

    /// Time passed: retransmissions, and a retry after a setback.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timed) = self.exchanges.handle_timeout(now) {
            match timed {
                Timed::Failed(Purpose::Block(_), _, seq) => self.on_failure(now, seq),
                Timed::FirstRetransmission(Purpose::Block(req)) => {
                    self.download.pace.lost(now, req.szx)
                }
                _ => {}
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
        let d = &self.download;
        self.exchanges.poll_transmit(out, |req, buf, mid, token| {
            d.write_request(req, buf, mid, token)
        })
    }

    /// When [`Fetch::handle_timeout`] is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        earliest(self.exchanges.poll_timeout(), self.download.retry_at)
    }

    fn request_blocks(&mut self, now: Instant) {
        if self.outcome.is_none() {
            window::fill(&mut self.download, &self.map, &mut self.exchanges, now);
        }
    }

    fn on_failure(&mut self, now: Instant, seq: u32) {
        let next_seq = self.exchanges.next_seq();
        if let Some(result) = self.download.on_timeout(now, seq, next_seq) {
            self.finish(Err(result));
        }
    }

    /// The new bytes of a block to the sink; the map is laid out at the first.
    fn store(
        &mut self,
        offset: u32,
        bytes: &[u8],
        sink: &mut impl FnMut(u32, &[u8]) -> Result<(), SinkError>,
    ) {
        let d = &mut self.download;
        let laid_out = match d.len {
            // The length is known (Size2, or this was the last block).
            Some(len) if self.map.total() != len => {
                if self.map.none_stored() {
                    self.map.reset(len).is_ok()
                } else {
                    self.map.shrink(len)
                }
            }
            Some(_) => true,
            // Unknown (no Size2): as far as the map reaches in units of this block's size.
            None if self.map.total() == 0 => {
                let size = (bytes.len() as u32).next_power_of_two().clamp(16, 1024);
                let reach = BlockMap::<FETCH_MAP_WORDS>::CAPACITY.saturating_mul(size);
                self.map.reset(reach.min(d.bound)).is_ok()
            }
            None => true,
        };
        if !laid_out {
            return self.finish(Err(UpdateResult::NotEnoughFlash));
        }
        let stored = blocks::store(&mut self.map, &mut d.partials, offset, bytes, |at, part| {
            sink(at, part)
        });
        match stored {
            Err(SinkError) => return self.finish(Err(UpdateResult::NotEnoughFlash)),
            Ok(0) => {}
            Ok(_) => d.progressed(),
        }
        let map = &self.map;
        self.exchanges
            .cancel_blocks_where(|r| map.has_bytes(r.range()));
        if self.map.is_complete() {
            match self.download.len {
                Some(len) => self.finish(Ok(len)),
                // Every unit the map can hold, and still no end: too large to fetch.
                None => self.finish(Err(UpdateResult::NotEnoughFlash)),
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

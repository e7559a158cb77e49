//! Which blocks to ask for now: the lowest ones not stored and not in flight first (so that erase
//! pages complete), as many as the download's window ([`Pace`](super::pace::Pace)) and the
//! exchange slots allow. A request overtaken by [`DUP_AFTER`] answers to requests started after
//! its last transmission was probably lost: its block is asked again at once in a fresh exchange
//! instead of after its (doubling) retransmission timeout, which on a lossy mesh is most of the
//! time a download takes. Only answers prove the path alive, and the window still paces. Shared by the engine's
//! downloads and the standalone [`super::fetch::Fetch`].

use core::ops::Range;

use crate::exchange::{BlockReq, Exchanges, InFlight};
use crate::firmware::blocks::{BlockMap, MIN_UNIT_SHIFT};
use crate::firmware::download::Download;
use crate::time::Instant;

/// Answers to later requests after which a request counts as lost.
pub const DUP_AFTER: u8 = 2;

/// Starts block requests of `download` until its window is full, a retry wait is on, the slots
/// are full or every missing block is asked for. Requests whose answers are no longer needed
/// (their bytes are stored) should have been cancelled by the caller.
pub fn fill<const W: usize>(
    download: &mut Download,
    map: &BlockMap<W>,
    exchanges: &mut Exchanges,
    now: Instant,
) {
    // A wait that is over is forgotten, whether a request can go now or not: the driver must
    // not be woken again for it (a deadline in the past is a busy loop).
    if download.retry_at.is_some_and(|t| now >= t) {
        download.retry_at = None;
    }
    // The window counts the requests expected to be answered (TCP's "pipe"): while answers
    // come, one found lost by its retransmission timer waits in its slot but leaves the window,
    // so a lossy link stays busy; once requests time out unanswered, every one counts. One found
    // lost by overtaking is replaced, which a full window allows.
    while download.ready(now) {
        let Some((req, again)) = next_request(download, map, exchanges) else {
            return;
        };
        let answering = download.answering();
        let pipe = exchanges
            .blocks()
            .filter(|f| !(answering && f.lost))
            .count();
        let full = pipe >= download.pace.window();
        if again.is_none() && (full || !exchanges.has_block_slot()) {
            return;
        }
        if let Some(lost) = again {
            // The one in flight was overtaken: count it lost (once), and replace its exchange by a
            // fresh one, which starts from the RTO again instead of the lost one's doubled
            // back-off: the path is alive, later requests got through.
            if exchanges.flag_lost(lost) {
                download.pace.lost(now, lost.szx);
            }
            exchanges.cancel(crate::exchange::Purpose::Block(lost));
        }
        let floor = download.pace.timeout_floor(req.szx);
        if exchanges
            .start_block(now, download.peer, req, floor)
            .is_err()
        {
            return;
        }
        download.pace.sent(req.szx);
    }
}

/// The next block to ask for, and the request in flight for it that was overtaken (asked again).
fn next_request<const W: usize>(
    d: &Download,
    map: &BlockMap<W>,
    exchanges: &Exchanges,
) -> Option<(BlockReq, Option<BlockReq>)> {
    let in_flight = || exchanges.blocks();
    let want = d.pace.next_szx(d.server_szx);
    // Until the length is known, only the first block (it brings Size2).
    if d.len.is_none() && map.none_stored() {
        if in_flight().next().is_some() {
            return None;
        }
        if map.total() == 0 {
            // Not laid out yet (a fetch of unknown size): the first block lays it out.
            return Some((BlockReq { num: 0, szx: want }, None));
        }
    }
    let end = d.end().min(map.total());
    let mut u = map.first_missing_from(0)?;
    loop {
        let unit = map.unit_range(u);
        if unit.start >= end {
            return None;
        }
        match busy(in_flight(), &unit) {
            Busy::Yes(until) => {
                u = map.first_missing_from(map.unit_of(until.max(unit.end)))?;
                continue;
            }
            Busy::Lost(old) => {
                // Ask for the same block again: the range is known to be missing.
                return Some((old, Some(old)));
            }
            Busy::No => {}
        }
        if (16u32 << want) < map.unit() {
            if let Some(req) = sub_block(d, map, exchanges, u, want) {
                return Some((req, None));
            }
        } else {
            return Some((whole(map, exchanges, u, want, end), None));
        }
        u = map.first_missing_from(u.saturating_add(1))?;
    }
}

/// Whether a range has a request in flight.
enum Busy {
    /// Yes, up to this offset.
    Yes(u32),
    /// One request, overtaken since its last transmission: probably lost.
    Lost(BlockReq),
    No,
}

fn busy(in_flight: impl Iterator<Item = InFlight>, range: &Range<u32>) -> Busy {
    let mut covering = in_flight.filter(|f| overlaps(&f.req.range(), range));
    let Some(first) = covering.next() else {
        return Busy::No;
    };
    let others = covering.map(|f| f.req.range().end).max();
    let until = first.req.range().end.max(others.unwrap_or(0));
    let lost = first.overtaken >= DUP_AFTER;
    if others.is_none() && lost && first.req.range().start <= range.start {
        Busy::Lost(first.req)
    } else {
        Busy::Yes(until)
    }
}

fn overlaps(a: &Range<u32>, b: &Range<u32>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The largest block up to 2^(`want`+4) bytes that starts at unit `u` (aligned to its size) and
/// holds only units neither stored nor in flight, up to `end`. Unit `u` itself qualifies.
fn whole<const W: usize>(
    map: &BlockMap<W>,
    exchanges: &Exchanges,
    u: u32,
    want: u8,
    end: u32,
) -> BlockReq {
    let unit_szx = map.unit_shift().saturating_sub(MIN_UNIT_SHIFT);
    let start = map.unit_range(u).start;
    let mut szx = want;
    while szx > unit_szx {
        let req = BlockReq::at(start, szx);
        let bytes = req.range();
        let clipped = bytes.start..bytes.end.min(end);
        let units = map.unit_of(clipped.start)
            ..map.unit_of(clipped.end.saturating_sub(1)).saturating_add(1);
        if bytes.start == start
            && !map.any_in(units)
            && matches!(busy(exchanges.blocks(), &clipped), Busy::No)
        {
            return req;
        }
        szx = szx.saturating_sub(1);
    }
    BlockReq::at(start, unit_szx)
}

/// A block of 2^(`szx`+4) bytes (smaller than a unit) in unit `u` that is neither stored nor in
/// flight, if the unit can be filled in part.
fn sub_block<const W: usize>(
    d: &Download,
    map: &BlockMap<W>,
    exchanges: &Exchanges,
    u: u32,
    szx: u8,
) -> Option<BlockReq> {
    if !d.partials.has_room_for(u) {
        return None;
    }
    let unit = map.unit_range(u);
    let size = 16u32 << szx;
    let have = d.partials.chunks(u);
    let mut at = unit.start;
    while at < unit.end {
        let block = at..at.saturating_add(size).min(unit.end);
        let first_chunk = block.start.saturating_sub(unit.start) / 16;
        let chunks = block.len().div_ceil(16) as u32;
        let mask = (first_chunk..first_chunk.saturating_add(chunks))
            .fold(0u64, |m, i| m | (1u64.checked_shl(i).unwrap_or(0)));
        if have & mask != mask && matches!(busy(exchanges.blocks(), &block), Busy::No) {
            return Some(BlockReq::at(at, szx));
        }
        at = at.saturating_add(size);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rto::RtoConfig;

    fn download(len: u32) -> Download {
        crate::firmware::download::test_image(len)
    }

    #[test]
    fn the_lowest_missing_blocks_go_first_and_nothing_is_asked_twice() {
        let mut d = download(1000);
        let mut map = BlockMap::<8>::new();
        map.reset(1000).unwrap();
        for u in [0, 1, 2, 3, 8, 9] {
            map.set(u); // 16-byte units: bytes 0..64 and 128..160 are in
        }
        let mut ex = Exchanges::new(1, RtoConfig::default());
        fill(&mut d, &map, &mut ex, Instant(0));
        let asked: heapless::Vec<BlockReq, 16> = ex.blocks().map(|f| f.req).collect();
        // The initial window of 2: block 1 (64..128), then 160..192 (64-byte blocks must be
        // aligned; 160 is not a multiple of 64, so a 32-byte block).
        assert_eq!(
            asked.as_slice(),
            [BlockReq { num: 1, szx: 2 }, BlockReq { num: 5, szx: 1 }]
        );
    }

    #[test]
    fn a_wait_that_is_over_is_forgotten_even_when_nothing_can_be_asked() {
        let mut d = download(64);
        let mut map = BlockMap::<8>::new();
        map.reset(64).unwrap();
        for u in 0..4 {
            map.set(u);
        }
        let mut ex = Exchanges::new(1, RtoConfig::default());
        d.retry_at = Some(Instant(5));
        fill(&mut d, &map, &mut ex, Instant(4));
        assert_eq!(d.retry_at, Some(Instant(5)), "not over yet");
        fill(&mut d, &map, &mut ex, Instant(10));
        assert_eq!(d.retry_at, None, "else poll_timeout would stay in the past");
        assert_eq!(ex.blocks_in_flight(), 0);
    }
}

//! A window of block requests in flight (RFC 7959 allows a client to ask for several blocks
//! before the first answer; RFC 9177 does it by design): which requests to start now, and the
//! small reorder buffer that holds blocks that overtook the ones before them until their turn.
//! Shared by the engine's firmware download and the standalone [`super::fetch::Fetch`].

use crate::engine::limits::{REORDER_CAP, REORDER_SLOTS};
use crate::exchange::{Exchanges, Purpose};
use crate::firmware::download::{Download, Step};
use crate::time::Instant;

/// Blocks that arrived before the ones in front of them: fixed slots of one block size each.
pub struct Reorder {
    data: [u8; REORDER_CAP],
    /// Per slot: (offset, length, last) of the block it holds.
    slots: [Option<(u32, u16, bool)>; REORDER_SLOTS],
    /// The block size the slots are laid out for.
    block: usize,
}

impl Default for Reorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Reorder {
    pub const fn new() -> Self {
        Reorder {
            data: [0; REORDER_CAP],
            slots: [None; REORDER_SLOTS],
            block: 0,
        }
    }

    pub fn clear(&mut self) {
        self.slots = [None; REORDER_SLOTS];
    }

    /// How many blocks of `block` bytes fit.
    pub fn capacity(block: usize) -> usize {
        (REORDER_CAP.checked_div(block.max(1)).unwrap_or(0)).min(REORDER_SLOTS)
    }

    /// Keeps a block that came early; false when there is no room (ask for it again later).
    pub fn put(&mut self, block: usize, offset: u32, bytes: &[u8], last: bool) -> bool {
        if block != self.block {
            // The server changed the block size: what is held was laid out for the old one.
            self.clear();
            self.block = block;
        }
        if self.slots.iter().flatten().any(|s| s.0 == offset) {
            return true;
        }
        let cap = Self::capacity(block);
        let Some(i) = self.slots.iter().take(cap).position(Option::is_none) else {
            return false;
        };
        let at = i.saturating_mul(block);
        let Some(dst) = self.data.get_mut(at..at.saturating_add(bytes.len())) else {
            return false;
        };
        dst.copy_from_slice(bytes);
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some((offset, bytes.len() as u16, last));
        }
        true
    }

    /// Sorts a block step of `download` (from [`Download::on_response`]) into download order: a
    /// block ahead of its turn ([`Step::Ahead`]) is kept and nothing comes out yet; a block in
    /// order ([`Step::Data`]) comes out first, then the kept blocks whose turn it is then. Any
    /// other step gives nothing.
    ///
    /// The caller takes the blocks one at a time with [`InOrder::next`], so that what it does
    /// with each (write it to flash, hash it, end the download) may borrow anything but this
    /// buffer and the download.
    pub fn sort<'a>(&mut self, download: &mut Download, step: Step<'a>) -> InOrder<'a> {
        let first = match step {
            Step::Data {
                offset,
                bytes,
                last,
            } => Some((offset, bytes, last)),
            Step::Ahead {
                offset,
                bytes,
                last,
            } => {
                self.keep(download, offset, bytes, last);
                None
            }
            Step::Restart | Step::Ignore | Step::Failed(_) => None,
        };
        InOrder {
            done: first.is_none(),
            first,
            buf: [0; REORDER_CAP],
        }
    }

    /// Keeps a block of `download` that came early; without room, the download asks for it
    /// again when its turn comes.
    pub fn keep(&mut self, download: &mut Download, offset: u32, bytes: &[u8], last: bool) {
        let block = download.block_size() as usize;
        if !self.put(block, offset, bytes, last) {
            download.rewind();
        }
    }

    /// Whether the block at `offset` is held (no need to ask for it again).
    pub fn holds(&self, offset: u32) -> bool {
        self.slots.iter().flatten().any(|s| s.0 == offset)
    }

    /// Takes the block at `offset` out into `out`; returns its length and whether it is the last.
    fn take(&mut self, block: usize, offset: u32, out: &mut [u8]) -> Option<(usize, bool)> {
        let i = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|s| s.0 == offset))?;
        let (_, len, last) = self.slots.get_mut(i)?.take()?;
        let len = usize::from(len);
        out.get_mut(..len)?
            .copy_from_slice(self.data.get(i.saturating_mul(block)..)?.get(..len)?);
        Some((len, last))
    }

    /// The held block that comes next in order after the download's offset, if any: copied into
    /// `out`, and the download's offset moved past it. Returns (offset, length, last).
    pub fn take_next(
        &mut self,
        download: &mut Download,
        out: &mut [u8; REORDER_CAP],
    ) -> Option<(u32, usize, bool)> {
        if download.block_size() as usize != self.block {
            return None;
        }
        let offset = download.offset;
        let (len, last) = self.take(self.block, offset, out)?;
        download.offset = offset.saturating_add(len as u32);
        download.rewind_if_behind();
        Some((offset, len, last))
    }
}

/// The blocks of a download in order, from [`Reorder::sort`]: the block that was next in order,
/// then the held ones that follow it, until the last block or a gap.
pub struct InOrder<'a> {
    first: Option<(u32, &'a [u8], bool)>,
    /// The last block came out, or there is nothing to hand out.
    done: bool,
    /// The held block being handed out (copied, so that the reorder buffer is free again).
    buf: [u8; REORDER_CAP],
}

impl<'a> InOrder<'a> {
    /// The next block in order as (offset, bytes, last), moving `download`'s offset past it, or
    /// nothing once the last block came out or the next one is not held.
    pub fn next(
        &mut self,
        reorder: &mut Reorder,
        download: &mut Download,
    ) -> Option<(u32, &[u8], bool)> {
        if let Some((offset, bytes, last)) = self.first.take() {
            self.done = last;
            return Some((offset, bytes, last));
        }
        if self.done {
            return None;
        }
        let (offset, len, last) = reorder.take_next(download, &mut self.buf)?;
        self.done = last;
        Some((offset, self.buf.get(..len)?, last))
    }
}

/// Requests in flight that a window of `wanted` allows with blocks of `block` bytes: one more
/// than the reorder buffer can hold, since the block next in order needs no room.
pub fn window_limit(wanted: u8, block: usize) -> usize {
    usize::from(wanted.max(1)).min(Reorder::capacity(block).saturating_add(1))
}

/// Most exchanges at once for the block next in order (see [`fill`]).
const HEAD_ATTEMPTS: usize = 3;

/// Starts block requests of `download` until `window` are in flight, a retry wait is on, the
/// exchange slots are full or every block has been asked for. Blocks already held in `reorder`
/// or still in flight are skipped, so after a failed request only the gaps are asked for again.
///
/// When every other block of the window is in, the download waits on the block next in order
/// alone: rather than idle through that exchange's back-off (up to 4.8 s at a 300 ms RTO), ask
/// for it again in a further exchange for each retransmission it has needed, up to
/// `HEAD_ATTEMPTS`. The requests in flight never exceed the window, and each exchange keeps its
/// own RFC 7252 back-off.
pub fn fill(
    download: &mut Download,
    exchanges: &mut Exchanges,
    reorder: &Reorder,
    window: usize,
    total: Option<u32>,
    now: Instant,
) {
    // Whether the block may go out in one more exchange: one per retransmission so far.
    let may_repeat = |exchanges: &Exchanges, num: u32| {
        let (attempts, retransmits) = exchanges.attempts(Purpose::Block(num));
        attempts > 0 && attempts <= usize::from(retransmits) && attempts < HEAD_ATTEMPTS
    };
    while download.ready(now) && exchanges.blocks_in_flight() < window && exchanges.has_free_slot()
    {
        let head = download.next_block();
        let num = match download.take_request(total, window as u32) {
            Some(num) => num,
            None if may_repeat(exchanges, head) => head,
            None => return,
        };
        let offset = num.saturating_mul(download.block_size());
        let busy = exchanges.busy(Purpose::Block(num));
        if reorder.holds(offset) || (busy && !(num == head && may_repeat(exchanges, num))) {
            continue;
        }
        let request = &*download;
        let started = exchanges.start(now, request.peer, Purpose::Block(num), |buf, mid, token| {
            request.write_request(num, buf, mid, token)
        });
        if started.is_err() {
            download.rewind();
            return;
        }
        // The wait after a failure is over once the retry is on its way.
        download.retry_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::download::Target;

    #[test]
    fn early_blocks_come_out_in_order_and_the_buffer_is_bounded() {
        let mut r = Reorder::new();
        let mut d = Download::new(Target::Image, "coap://10.0.0.1/i", 2, 0).unwrap();
        assert_eq!(Reorder::capacity(64), 16);
        assert_eq!(Reorder::capacity(1024), 1);
        assert_eq!(
            (
                window_limit(16, 64),
                window_limit(8, 256),
                window_limit(8, 1024)
            ),
            (16, 5, 2)
        );
        // Blocks 2 and 1 arrive before 0.
        assert!(r.put(64, 128, &[2; 64], false));
        assert!(r.put(64, 64, &[1; 64], false));
        let mut out = [0u8; REORDER_CAP];
        assert_eq!(r.take_next(&mut d, &mut out), None, "block 0 is not there");
        d.offset = 64;
        assert_eq!(r.take_next(&mut d, &mut out), Some((64, 64, false)));
        assert_eq!(out[..64], [1; 64]);
        assert_eq!(r.take_next(&mut d, &mut out), Some((128, 64, false)));
        assert_eq!(d.offset, 192);
        assert_eq!(r.take_next(&mut d, &mut out), None);
        for i in 0..16 {
            assert!(r.put(64, 1024 + i * 64, &[0; 64], false));
        }
        assert!(
            !r.put(64, 5000, &[0; 64], false),
            "full: asked for again later"
        );
    }
}

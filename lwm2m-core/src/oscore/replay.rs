//! Sequence numbers: the receiver's replay window (RFC 8613 §7.4) and the sender's counter,
//! persisted in steps so that a restart never reuses a nonce (Appendix B.1.1).

/// Width of the replay window (RFC 8613 §7.4: "the default replay window is 32").
pub const WINDOW: u64 = 32;
/// Largest sequence number: the Partial IV has at most 5 bytes.
pub const MAX_SEQ: u64 = (1 << 40) - 1;

/// The sequence numbers received from one peer: the highest, and which of the 31 below it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest sequence number accepted (None: none yet).
    top: Option<u64>,
    /// Bit i set: `top - i` was accepted (bit 0 is `top` itself).
    seen: u32,
}

impl ReplayWindow {
    /// A window that has seen nothing (a new security context).
    pub fn new() -> Self {
        Self::default()
    }

    /// A window whose lowest acceptable number is above `seq` (after an Echo exchange
    /// re-established freshness, Appendix B.1.2: `seq` itself is taken).
    pub fn starting_at(seq: u64) -> Self {
        ReplayWindow {
            top: Some(seq),
            seen: u32::MAX,
        }
    }

    /// Whether `seq` may still be accepted: not seen, not below the window.
    pub fn is_fresh(&self, seq: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if seq > top => true,
            Some(top) => {
                let back = top.saturating_sub(seq);
                back < WINDOW && self.seen & 1u32.wrapping_shl(back as u32) == 0
            }
        }
    }

    /// Records `seq` as received (call only after the message proved authentic).
    pub fn accept(&mut self, seq: u64) {
        match self.top {
            None => {
                self.top = Some(seq);
                self.seen = 1;
            }
            Some(top) if seq > top => {
                let shift = seq.saturating_sub(top);
                self.seen = if shift >= WINDOW {
                    1
                } else {
                    self.seen.wrapping_shl(shift as u32) | 1
                };
                self.top = Some(seq);
            }
            Some(top) => {
                let back = top.saturating_sub(seq);
                if back < WINDOW {
                    self.seen |= 1u32.wrapping_shl(back as u32);
                }
            }
        }
    }
}

/// The sender's sequence number. Every number below `reserved` may have been used before a
/// crash, so the store keeps `reserved` and a restart continues from it; numbers are handed out
/// only after `reserved` passed them on disk (Appendix B.1.1: "persist in steps of K").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderSeq {
    next: u64,
    reserved: u64,
}

/// The sender's numbers ran out: the context must be re-provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl core::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the OSCORE sender sequence numbers are used up: provision new keys")
    }
}

impl SenderSeq {
    /// Continues after a start: `reserved` is what the store holds.
    pub fn resume(reserved: u64) -> Self {
        SenderSeq {
            next: reserved,
            reserved,
        }
    }

    /// The next number. When it reaches the reservation, `persist(new_reservation)` must make
    /// `new_reservation = seq + step` durable first; if it fails, no number is handed out.
    pub fn next<E>(
        &mut self,
        step: u64,
        persist: impl FnOnce(u64) -> Result<(), E>,
    ) -> Result<Result<u64, Exhausted>, E> {
        if self.next > MAX_SEQ {
            return Ok(Err(Exhausted));
        }
        if self.next >= self.reserved {
            let ahead = self.next.saturating_add(step.max(1)).min(MAX_SEQ + 1);
            persist(ahead)?;
            self.reserved = ahead;
        }
        let seq = self.next;
        self.next = self.next.saturating_add(1);
        Ok(Ok(seq))
    }

    /// What the store must hold (every number below it may have been used).
    pub fn reserved(&self) -> u64 {
        self.reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn the_window_takes_each_number_once_and_nothing_too_old() {
        let mut w = ReplayWindow::new();
        assert!(w.is_fresh(5));
        w.accept(5);
        assert!(!w.is_fresh(5));
        assert!(w.is_fresh(3));
        w.accept(3);
        assert!(!w.is_fresh(3));
        w.accept(40);
        assert!(!w.is_fresh(8), "32 or more below the top is too old");
        assert!(w.is_fresh(9));
        assert!(!w.is_fresh(40));
        w.accept(9);
        assert!(!w.is_fresh(9));
        let w = ReplayWindow::starting_at(100);
        assert!(!w.is_fresh(100) && !w.is_fresh(99) && !w.is_fresh(50));
        assert!(w.is_fresh(101));
    }

    #[test]
    fn the_sender_persists_ahead_and_a_restart_never_reuses_a_number() {
        let mut disk = 0u64;
        let mut writes = 0;
        let mut s = SenderSeq::resume(disk);
        let mut used = Vec::new();
        for _ in 0..10 {
            let seq = s
                .next(4, |r| {
                    disk = r;
                    writes += 1;
                    Ok::<_, ()>(())
                })
                .unwrap()
                .unwrap();
            assert!(seq < disk, "{seq} was handed out before {disk} was on disk");
            used.push(seq);
        }
        assert_eq!(used, (0..10).collect::<Vec<_>>());
        assert_eq!(writes, 3);
        // A crash now: the next run starts at what the disk holds, above every number used.
        let mut s = SenderSeq::resume(disk);
        let seq = s
            .next(4, |r| {
                disk = r;
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(seq, 12);
        // A failed write hands out nothing.
        let mut s = SenderSeq::resume(20);
        assert_eq!(s.next(4, |_| Err("disk full")), Err("disk full"));
        let mut s = SenderSeq::resume(MAX_SEQ + 1);
        assert_eq!(s.next(4, |_| Ok::<_, ()>(())), Ok(Err(Exhausted)));
    }
}

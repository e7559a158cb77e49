//! Which bytes of a representation have arrived, whatever order the blocks came in: one bit per
//! *unit* ([`BlockMap`]), and for the rare block smaller than a unit, the 16-byte chunks of a few
//! units in progress ([`Partials`]). [`store`] hands a block's new bytes to a writer in runs and
//! marks them only once written, so the map never claims a byte that is not stored: that is what
//! makes the map, persisted, the power-safe progress record of a download.
//!
//! The unit is the smallest power of two from 16 to 1024 bytes with which the representation fits
//! the map (a 488 KiB slot in 8192 bits: 64 bytes). Blocks of any size map onto it: a block of
//! several units sets each, a block smaller than a unit fills chunks of that unit until it is whole
//! (RFC 7959 lets the client change the block size between requests and the server answer a
//! smaller one).

use core::ops::Range;

/// The smallest unit and block: 16 bytes (SZX 0).
pub const MIN_UNIT_SHIFT: u8 = 4;
/// The largest unit and block: 1024 bytes (SZX 6).
pub const MAX_UNIT_SHIFT: u8 = 10;
/// Bytes of one chunk of a partly received unit.
const CHUNK: u32 = 1 << MIN_UNIT_SHIFT;
/// Units partly received at once (blocks smaller than the unit); more such blocks wait.
pub const PARTIALS: usize = 4;

/// The representation does not fit the map (it would need units above 1024 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge;

/// One bit per unit of a representation of `len` bytes: set once the unit is stored. `W` words
/// of bits; the engine holds two widths (the manifest's map and the image's).
pub type BlockMap<const W: usize> = BlockMapOf<[u32; W]>;

/// A [`BlockMap`] of any width: what its methods and [`store`] work on, so that they are compiled
/// once and not once per width (a `BlockMap<W>` derefs to it).
pub type AnyBlockMap = BlockMapOf<[u32]>;

/// The map over its bits `B`: `[u32; W]` ([`BlockMap`]) or `[u32]` ([`AnyBlockMap`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMapOf<B: ?Sized> {
    unit_shift: u8,
    len: u32,
    /// Bits set (kept, so that progress and completeness cost nothing).
    count: u32,
    bits: B,
}

impl<const W: usize> Default for BlockMap<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize> core::ops::Deref for BlockMap<W> {
    type Target = AnyBlockMap;
    fn deref(&self) -> &AnyBlockMap {
        self
    }
}

impl<const W: usize> core::ops::DerefMut for BlockMap<W> {
    fn deref_mut(&mut self) -> &mut AnyBlockMap {
        self
    }
}

/// The smallest unit (as a shift) with which `len` bytes fit `capacity` units.
fn unit_shift_for(len: u32, capacity: u32) -> Result<u8, TooLarge> {
    (MIN_UNIT_SHIFT..=MAX_UNIT_SHIFT)
        .find(|&s| u64::from(len).div_ceil(1u64 << s) <= u64::from(capacity))
        .ok_or(TooLarge)
}

impl<const W: usize> BlockMap<W> {
    /// Units the map can hold.
    pub const CAPACITY: u32 = (W as u32).saturating_mul(32);

    /// An empty map of an empty representation.
    pub const fn new() -> Self {
        BlockMapOf {
            bits: [0; W],
            unit_shift: MIN_UNIT_SHIFT,
            len: 0,
            count: 0,
        }
    }

    /// The smallest unit (as a shift) with which `len` bytes fit the map.
    pub fn unit_shift_for(len: u32) -> Result<u8, TooLarge> {
        unit_shift_for(len, Self::CAPACITY)
    }

    /// A map of `len` bytes in units of 2^`unit_shift` with these bits (from the persisted
    /// record); `None` unless the layout is the one [`reset`](Self::reset) would choose and no
    /// bit lies past the last unit.
    pub fn from_parts(len: u32, unit_shift: u8, bits: [u32; W]) -> Option<Self> {
        if Self::unit_shift_for(len).ok()? != unit_shift {
            return None;
        }
        let mut map = BlockMapOf {
            bits,
            unit_shift,
            len,
            count: 0,
        };
        let units = map.units();
        let stray = map
            .bits
            .iter()
            .enumerate()
            .any(|(w, &word)| word & !Self::valid_mask(w, units) != 0);
        if stray {
            return None;
        }
        map.count = map.bits.iter().map(|w| w.count_ones()).sum();
        Some(map)
    }

    /// The bits of word `w` that stand for units below `units`.
    fn valid_mask(w: usize, units: u32) -> u32 {
        let first = (w as u32).saturating_mul(32);
        match units.saturating_sub(first) {
            0 => 0,
            n if n >= 32 => u32::MAX,
            n => (1u32 << n).wrapping_sub(1),
        }
    }

    /// The words of the map (for the persisted record).
    pub fn words(&self) -> &[u32; W] {
        &self.bits
    }
}

impl AnyBlockMap {
    /// Units the map can hold.
    fn capacity(&self) -> u32 {
        (self.bits.len() as u32).saturating_mul(32)
    }

    /// Empties the map and lays it out for `len` bytes.
    pub fn reset(&mut self, len: u32) -> Result<(), TooLarge> {
        let shift = unit_shift_for(len, self.capacity())?;
        self.bits.fill(0);
        self.unit_shift = shift;
        self.len = len;
        self.count = 0;
        Ok(())
    }

    /// Shortens the representation to `len` bytes (its end became known); false if that drops
    /// a unit already stored or `len` is longer.
    pub fn shrink(&mut self, len: u32) -> bool {
        if len > self.len {
            return false;
        }
        let units = len.div_ceil(self.unit());
        if self.first_set_from(units).is_some() {
            return false;
        }
        self.len = len;
        true
    }

    pub fn unit_shift(&self) -> u8 {
        self.unit_shift
    }

    /// Bytes per unit.
    pub fn unit(&self) -> u32 {
        1 << self.unit_shift
    }

    /// The representation's length.
    pub fn total(&self) -> u32 {
        self.len
    }

    /// No unit is stored.
    pub fn none_stored(&self) -> bool {
        self.count == 0
    }

    /// Units of the representation (the last may be short).
    pub fn units(&self) -> u32 {
        self.len.div_ceil(self.unit())
    }

    /// The bytes of unit `u`.
    pub fn unit_range(&self, u: u32) -> Range<u32> {
        let start = u.saturating_mul(self.unit()).min(self.len);
        start..start.saturating_add(self.unit()).min(self.len)
    }

    /// The unit holding byte `offset`.
    pub fn unit_of(&self, offset: u32) -> u32 {
        offset >> self.unit_shift
    }

    pub fn has(&self, u: u32) -> bool {
        let (w, b) = (u / 32, u % 32);
        self.bits
            .get(w as usize)
            .is_some_and(|word| word & (1 << b) != 0)
    }

    /// Marks unit `u` stored.
    pub fn set(&mut self, u: u32) {
        if u >= self.units() || self.has(u) {
            return;
        }
        if let Some(word) = self.bits.get_mut((u / 32) as usize) {
            *word |= 1 << (u % 32);
            self.count = self.count.saturating_add(1);
        }
    }

    /// Forgets unit `u`.
    pub fn unset(&mut self, u: u32) {
        if !self.has(u) {
            return;
        }
        if let Some(word) = self.bits.get_mut((u / 32) as usize) {
            *word &= !(1 << (u % 32));
            self.count = self.count.saturating_sub(1);
        }
    }

    /// Units stored.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Every unit is stored.
    pub fn is_complete(&self) -> bool {
        self.count == self.units()
    }

    /// Bytes stored.
    pub fn bytes(&self) -> u32 {
        let units = self.units();
        let short_last = units > 0 && self.has(units.saturating_sub(1));
        let whole = self.count.saturating_sub(u32::from(short_last));
        let last = if short_last {
            self.unit_range(units.saturating_sub(1)).len() as u32
        } else {
            0
        };
        whole.saturating_mul(self.unit()).saturating_add(last)
    }

    /// The first unit at or after `from` that is not stored.
    pub fn first_missing_from(&self, from: u32) -> Option<u32> {
        self.scan(from, true)
    }

    /// The first unit at or after `from` that is stored.
    pub fn first_set_from(&self, from: u32) -> Option<u32> {
        self.scan(from, false)
    }

    /// The first unit at or after `from` (below `units()`) whose bit is clear (`missing`) or set.
    fn scan(&self, from: u32, missing: bool) -> Option<u32> {
        let units = self.units();
        let mut u = from;
        while u < units {
            let w = (u / 32) as usize;
            let word = *self.bits.get(w)?;
            let word = if missing { !word } else { word };
            let candidates = word & (u32::MAX << (u % 32));
            if candidates != 0 {
                let found = (w as u32)
                    .saturating_mul(32)
                    .saturating_add(candidates.trailing_zeros());
                return (found < units).then_some(found);
            }
            u = (w as u32).saturating_add(1).saturating_mul(32);
        }
        None
    }

    /// Whether any unit in `units` is stored.
    pub fn any_in(&self, units: Range<u32>) -> bool {
        self.first_set_from(units.start)
            .is_some_and(|u| u < units.end)
    }

    /// Whether every unit in `units` is stored.
    pub fn all_in(&self, units: Range<u32>) -> bool {
        self.first_missing_from(units.start)
            .is_none_or(|u| u >= units.end)
    }

    /// Whether every byte of `bytes` that lies inside the representation is stored (a block
    /// request whose answer is no longer needed).
    pub fn has_bytes(&self, bytes: Range<u32>) -> bool {
        let end = bytes.end.min(self.len);
        bytes.start >= end
            || self.all_in(
                self.unit_of(bytes.start)..self.unit_of(end.saturating_sub(1)).saturating_add(1),
            )
    }
}

/// Units partly received, by 16-byte chunk: what a block smaller than the unit left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partials {
    /// (unit, chunks stored: bit i for bytes 16i..16i+16 of the unit).
    slots: [Option<(u32, u64)>; PARTIALS],
}

impl Partials {
    pub const fn new() -> Self {
        Partials {
            slots: [None; PARTIALS],
        }
    }

    pub fn clear(&mut self) {
        self.slots = [None; PARTIALS];
    }

    /// The chunks of unit `u` stored so far (0: none, or not tracked).
    pub fn chunks(&self, u: u32) -> u64 {
        self.slots
            .iter()
            .flatten()
            .find(|s| s.0 == u)
            .map_or(0, |s| s.1)
    }

    /// Whether unit `u` is tracked, or could be (a free slot).
    pub fn has_room_for(&self, u: u32) -> bool {
        self.slots
            .iter()
            .any(|s| s.is_none() || s.is_some_and(|s| s.0 == u))
    }

    /// Whether any unit in `units` has chunks stored.
    pub fn any_in(&self, units: &Range<u32>) -> bool {
        self.slots.iter().flatten().any(|s| units.contains(&s.0))
    }

    /// Adds chunks to unit `u`; false without room.
    fn add(&mut self, u: u32, chunks: u64) -> bool {
        if let Some(s) = self.slots.iter_mut().flatten().find(|s| s.0 == u) {
            s.1 |= chunks;
            return true;
        }
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(free) => {
                *free = Some((u, chunks));
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, u: u32) {
        for s in self.slots.iter_mut() {
            if s.is_some_and(|s| s.0 == u) {
                *s = None;
            }
        }
    }
}

/// The chunks (bit i: bytes 16i..) of a unit spanning `unit` that `range` covers.
fn chunk_mask(unit: &Range<u32>, range: &Range<u32>) -> u64 {
    let first = range.start.saturating_sub(unit.start) / CHUNK;
    let end = range.end.saturating_sub(unit.start).div_ceil(CHUNK);
    (first..end.min(64)).fold(0u64, |m, i| m | (1u64 << i))
}

/// Hands the bytes of the block at `offset` that are not stored yet to `write(offset, bytes)` in
/// runs (whole units run together; a unit the block covers only in part, chunk by chunk), and
/// marks each run stored once `write` returned Ok. A part for which `partials` has no room is
/// skipped (asked for again later). Returns the bytes newly stored; stops at the first error.
///
/// The block must lie inside the representation and start on a 16-byte boundary (the caller
/// checked both). Runs start on 16-byte boundaries: distinct runs never share a flash word.
pub fn store<E>(
    map: &mut AnyBlockMap,
    partials: &mut Partials,
    offset: u32,
    bytes: &[u8],
    mut write: impl FnMut(u32, &[u8]) -> Result<(), E>,
) -> Result<u32, E> {
    // One copy of the walk for every map width and writer (the engine has two of each); the
    // writer is called through a pointer, once per run.
    store_runs(map, partials, offset, bytes, &mut write)
}

/// The writer [`store`] hands runs to, called through a pointer: `write(offset, bytes)`.
type Writer<'w, E> = dyn FnMut(u32, &[u8]) -> Result<(), E> + 'w;

#[inline(never)]
fn store_runs<E>(
    map: &mut AnyBlockMap,
    partials: &mut Partials,
    offset: u32,
    bytes: &[u8],
    write: &mut Writer<'_, E>,
) -> Result<u32, E> {
    let end = offset.saturating_add(bytes.len() as u32).min(map.total());
    let block = offset..end;
    let mut stored = 0u32;
    // A run of whole units waiting to be written: (first unit, end unit).
    let mut run: Option<(u32, u32)> = None;
    let mut u = map.unit_of(offset);
    while u < map.units() {
        let range = map.unit_range(u);
        if range.start >= end {
            break;
        }
        if map.has(u) {
            stored = stored.saturating_add(flush(map, &mut run, offset, bytes, write)?);
        } else if block.start <= range.start && range.end <= block.end {
            let first = run.map_or(u, |r| r.0);
            run = Some((first, u.saturating_add(1)));
        } else {
            stored = stored.saturating_add(flush(map, &mut run, offset, bytes, write)?);
            let chunks = store_chunks(map, partials, u, &block, bytes, write)?;
            stored = stored.saturating_add(chunks);
        }
        u = u.saturating_add(1);
    }
    stored = stored.saturating_add(flush(map, &mut run, offset, bytes, write)?);
    Ok(stored)
}

/// Writes the run of whole units `run` (if any) out of the block at `offset` and marks them.
fn flush<E>(
    map: &mut AnyBlockMap,
    run: &mut Option<(u32, u32)>,
    offset: u32,
    bytes: &[u8],
    write: &mut Writer<'_, E>,
) -> Result<u32, E> {
    let Some((first, last)) = run.take() else {
        return Ok(0);
    };
    let from = map.unit_range(first).start;
    let to = map.unit_range(last.saturating_sub(1)).end;
    write(from, slice(bytes, offset, from..to))?;
    for u in first..last {
        map.set(u);
    }
    Ok(to.saturating_sub(from))
}

/// The part of unit `u` that `block` covers, for a block smaller than the unit: its chunks not
/// stored yet, written one run of chunks at a time.
fn store_chunks<E>(
    map: &mut AnyBlockMap,
    partials: &mut Partials,
    u: u32,
    block: &Range<u32>,
    bytes: &[u8],
    write: &mut Writer<'_, E>,
) -> Result<u32, E> {
    let unit = map.unit_range(u);
    let part = block.start.max(unit.start)..block.end.min(unit.end);
    if !partials.has_room_for(u) {
        return Ok(0);
    }
    let have = partials.chunks(u);
    let want = chunk_mask(&unit, &part) & !have;
    if want == 0 {
        return Ok(0);
    }
    // Contiguous chunks of `want`, each written as one run.
    let mut stored = 0u32;
    let mut bits = want;
    while bits != 0 {
        let first = bits.trailing_zeros();
        let len = (bits >> first).trailing_ones();
        let from = unit
            .start
            .saturating_add(first.saturating_mul(CHUNK))
            .max(part.start);
        let to = unit
            .start
            .saturating_add(first.saturating_add(len).saturating_mul(CHUNK))
            .min(part.end);
        write(from, slice(bytes, block.start, from..to))?;
        let done = (first..first.saturating_add(len)).fold(0u64, |m, i| m | (1u64 << i));
        partials.add(u, done);
        stored = stored.saturating_add(to.saturating_sub(from));
        bits &= !done;
    }
    let all = chunk_mask(&unit, &unit);
    if partials.chunks(u) & all == all {
        partials.remove(u);
        map.set(u);
    }
    Ok(stored)
}

/// The bytes of `range` (absolute offsets) out of a block that starts at `offset`.
fn slice(bytes: &[u8], offset: u32, range: Range<u32>) -> &[u8] {
    let from = range.start.saturating_sub(offset) as usize;
    let to = range.end.saturating_sub(offset) as usize;
    bytes.get(from..to).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    type Map = BlockMap<256>;

    fn collect(map: &mut Map, p: &mut Partials, offset: u32, bytes: &[u8]) -> Vec<(u32, usize)> {
        let mut runs = Vec::new();
        store(map, p, offset, bytes, |at, b| {
            runs.push((at, b.len()));
            Ok::<(), ()>(())
        })
        .unwrap();
        runs
    }

    #[test]
    fn the_unit_is_the_smallest_that_fits_the_map() {
        // The nRF52840 slot, 488 KiB, in 8192 bits: 64-byte units (7808 of them, 976 bytes).
        let mut m = Map::new();
        m.reset(488 * 1024).unwrap();
        assert_eq!((m.unit(), m.units()), (64, 7808));
        m.reset(1000).unwrap();
        assert_eq!((m.unit(), m.units()), (16, 63));
        m.reset(8192 * 16 + 1).unwrap();
        assert_eq!(m.unit(), 32);
        assert_eq!(m.reset(8192 * 1024 + 1), Err(TooLarge));
    }

    #[test]
    fn blocks_in_any_order_and_size_are_written_once_and_counted() {
        let mut m = Map::new();
        let mut p = Partials::new();
        m.reset(488 * 1024).unwrap();
        // A 1024-byte block at 2048: 16 units in one run.
        assert_eq!(collect(&mut m, &mut p, 2048, &[1; 1024]), [(2048, 1024)]);
        assert_eq!(m.count(), 16);
        // A 256-byte block inside it again: nothing new to write.
        assert!(collect(&mut m, &mut p, 2304, &[1; 256]).is_empty());
        // A 1024-byte block at 1024 whose units 16..20 are there: two runs around them.
        let _ = collect(&mut m, &mut p, 1280, &[2; 64]);
        assert_eq!(
            collect(&mut m, &mut p, 1024, &[3; 1024]),
            [(1024, 256), (1344, 704)]
        );
        assert_eq!(m.first_missing_from(0), Some(0));
        assert_eq!(m.first_missing_from(16), Some(48));
        assert_eq!(m.bytes(), 2048);
    }

    #[test]
    fn blocks_smaller_than_the_unit_fill_it_chunk_by_chunk() {
        let mut m = Map::new();
        let mut p = Partials::new();
        m.reset(488 * 1024).unwrap(); // 64-byte units
        assert_eq!(collect(&mut m, &mut p, 64, &[1; 16]), [(64, 16)]);
        assert_eq!(collect(&mut m, &mut p, 96, &[1; 32]), [(96, 32)]);
        assert!(!m.has(1));
        assert!(
            collect(&mut m, &mut p, 64, &[1; 16]).is_empty(),
            "written once"
        );
        assert_eq!(collect(&mut m, &mut p, 80, &[1; 16]), [(80, 16)]);
        assert!(
            m.has(1) && p.chunks(1) == 0,
            "whole: the unit bit, no partial left"
        );
        // No room for a fifth unit in progress: its block is skipped, not written.
        for u in 10..14 {
            let _ = collect(&mut m, &mut p, u * 64, &[0; 16]);
        }
        assert!(collect(&mut m, &mut p, 20 * 64, &[0; 16]).is_empty());
        assert!(!p.has_room_for(20) && p.has_room_for(10));
    }

    #[test]
    fn the_short_last_unit_and_the_record_layout() {
        let mut m = Map::new();
        let mut p = Partials::new();
        m.reset(1000).unwrap(); // 16-byte units, the last one 8 bytes
        let runs = collect(&mut m, &mut p, 960, &[9; 40]);
        assert_eq!(runs, [(960, 40)]);
        assert_eq!(m.bytes(), 40);
        assert!(!m.is_complete());
        let again = Map::from_parts(1000, 4, *m.words()).unwrap();
        assert_eq!(again, m);
        assert!(
            Map::from_parts(1000, 5, *m.words()).is_none(),
            "not the layout"
        );
        let mut stray = *m.words();
        stray[1] |= 1 << 31; // unit 63 does not exist
        assert!(Map::from_parts(1000, 4, stray).is_none());
        assert!(m.shrink(1000) && !m.shrink(900) && !m.shrink(2000));
    }
}

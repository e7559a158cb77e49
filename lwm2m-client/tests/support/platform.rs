//! Flash in RAM: the staging slot and the persisted record (the pattern of engine_e2e.rs), with a
//! slot size a test can choose. The slot behaves as NOR flash (an erase sets a page to 0xFF, a
//! program can only clear bits) and counts what wears it: erases per page, and words programmed
//! more than once between two erases of their page.

use lwm2m_client::platform::{ActiveImage, FirmwareRecord, Platform};

#[derive(Clone)]
pub struct RamPlatform {
    pub slot: Vec<u8>,
    pub slot_size: u32,
    /// The last record the engine saved (what survives a reboot).
    pub record: Option<FirmwareRecord>,
    pub marked: bool,
    /// stage_write calls.
    pub writes: usize,
    pub saves: usize,
    /// Erases per page of the slot.
    pub erases: Vec<u32>,
    /// Programs per word since its page was last erased.
    pub programs: Vec<u8>,
    /// Words programmed a second (or later) time without an erase in between.
    pub reprogrammed_words: usize,
    /// The running image (the active slot), a delta's precursor; empty: not known.
    pub active: Vec<u8>,
}

/// The slot's erase unit (the nRF52840's page).
pub const PAGE: u32 = 4096;

impl Default for RamPlatform {
    fn default() -> Self {
        RamPlatform {
            slot: Vec::new(),
            slot_size: 64 * 1024,
            record: None,
            marked: false,
            writes: 0,
            saves: 0,
            erases: Vec::new(),
            programs: Vec::new(),
            reprogrammed_words: 0,
            active: Vec::new(),
        }
    }
}

impl RamPlatform {
    pub fn with_slot(slot_size: u32) -> Self {
        RamPlatform {
            slot_size,
            ..RamPlatform::default()
        }
    }

    pub fn with_record(record: FirmwareRecord) -> Self {
        RamPlatform {
            record: Some(record),
            ..RamPlatform::default()
        }
    }
}

impl RamPlatform {
    /// The slot as far as `len` bytes: flash never touched reads 0xFF (erased at the factory).
    fn grow(&mut self, len: usize) {
        let len = len.next_multiple_of(PAGE as usize);
        if self.slot.len() < len {
            self.slot.resize(len, 0xff);
            self.programs.resize(len / 4, 0);
        }
    }

    /// The first `len` bytes of the slot.
    pub fn staged(&self, len: usize) -> &[u8] {
        &self.slot[..len.min(self.slot.len())]
    }

    /// The most erases any page of the slot had.
    pub fn max_erases(&self) -> u32 {
        self.erases.iter().copied().max().unwrap_or(0)
    }
}

impl Platform for RamPlatform {
    type Error = ();
    fn slot_size(&self) -> u32 {
        self.slot_size
    }
    fn page_size(&self) -> u32 {
        PAGE
    }
    fn stage_erase(&mut self, page: u32) -> Result<(), ()> {
        let from = (page * PAGE) as usize;
        let to = from + PAGE as usize;
        if to > self.slot_size as usize {
            return Err(());
        }
        self.grow(to);
        self.slot[from..to].fill(0xff);
        self.programs[from / 4..to / 4].fill(0);
        if self.erases.len() <= page as usize {
            self.erases.resize(page as usize + 1, 0);
        }
        self.erases[page as usize] += 1;
        Ok(())
    }
    fn stage_write(&mut self, offset: u32, data: &[u8]) -> Result<(), ()> {
        let end = offset as usize + data.len();
        if end > self.slot_size as usize || offset % 4 != 0 {
            return Err(());
        }
        self.grow(end.next_multiple_of(4));
        // NOR: a program can only clear bits.
        for (cell, byte) in self.slot[offset as usize..end].iter_mut().zip(data) {
            *cell &= byte;
        }
        for word in offset as usize / 4..end.div_ceil(4) {
            self.programs[word] = self.programs[word].saturating_add(1);
            if self.programs[word] > 1 {
                self.reprogrammed_words += 1;
            }
        }
        self.writes += 1;
        Ok(())
    }
    fn stage_read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ()> {
        let end = offset as usize + buf.len();
        if end > self.slot_size as usize {
            return Err(());
        }
        self.grow(end);
        buf.copy_from_slice(&self.slot[offset as usize..end]);
        Ok(())
    }
    fn mark_for_test_boot(&mut self) -> Result<(), ()> {
        self.marked = true;
        Ok(())
    }
    fn save(&mut self, record: &FirmwareRecord) -> Result<(), ()> {
        self.record = Some(record.clone());
        self.saves += 1;
        Ok(())
    }
    fn active_image(&mut self) -> Option<ActiveImage> {
        use sha2::Digest;
        (!self.active.is_empty()).then(|| ActiveImage {
            digest: sha2::Sha256::digest(&self.active).into(),
            size: self.active.len() as u32,
        })
    }
    fn active_read(&mut self, offset: u32, buf: &mut [u8]) -> bool {
        let at = offset as usize;
        match self.active.get(at..at + buf.len()) {
            Some(from) => {
                buf.copy_from_slice(from);
                true
            }
            None => false,
        }
    }
}

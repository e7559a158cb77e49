//! Flash in RAM: the staging slot and the persisted record (the pattern of engine_e2e.rs), with a
//! slot size a test can choose.

use lwm2m_client::platform::{FirmwareRecord, Platform};

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
}

impl Default for RamPlatform {
    fn default() -> Self {
        RamPlatform {
            slot: Vec::new(),
            slot_size: 64 * 1024,
            record: None,
            marked: false,
            writes: 0,
            saves: 0,
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

impl Platform for RamPlatform {
    type Error = ();
    fn slot_size(&self) -> u32 {
        self.slot_size
    }
    fn stage_write(&mut self, offset: u32, data: &[u8]) -> Result<(), ()> {
        let end = offset as usize + data.len();
        if end > self.slot_size as usize {
            return Err(());
        }
        if self.slot.len() < end {
            self.slot.resize(end, 0xff);
        }
        self.slot[offset as usize..end].copy_from_slice(data);
        self.writes += 1;
        Ok(())
    }
    fn stage_read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), ()> {
        let src = self
            .slot
            .get(offset as usize..offset as usize + buf.len())
            .ok_or(())?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn resume_offset(&self, written: u32) -> u32 {
        written / 4096 * 4096
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
}

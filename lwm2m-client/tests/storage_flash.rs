//! RamFlash (and FileFlash with `std`): NOR semantics, alignment, bounds and the torn operation
//! at the power budget.

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use lwm2m_client::storage::flash::{FlashError, RamFlash, Tear};

type Small = RamFlash<{ 3 * 4096 }>;

fn small() -> Box<Small> {
    Box::new(Small::new())
}

fn read(f: &mut Small, offset: u32, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    f.read(offset, &mut buf).unwrap();
    buf
}

#[test]
fn geometry_is_the_nrf52840s() {
    assert_eq!(<Small as NorFlash>::ERASE_SIZE, 4096);
    assert_eq!(<Small as NorFlash>::WRITE_SIZE, 4);
    assert_eq!(<Small as ReadNorFlash>::READ_SIZE, 1);
    let f = small();
    assert_eq!(f.capacity(), 3 * 4096);
    assert!(
        f.as_bytes().iter().all(|&b| b == 0xFF),
        "a new flash is erased"
    );
}

#[test]
fn write_can_only_clear_bits() {
    let mut f = small();
    f.write(8, &[0xF0, 0x0F, 0xAA, 0xFF]).unwrap();
    assert_eq!(read(&mut f, 8, 4), [0xF0, 0x0F, 0xAA, 0xFF]);
    f.write(8, &[0x3C, 0xFF, 0x55, 0xFF]).unwrap();
    assert_eq!(read(&mut f, 8, 4), [0x30, 0x0F, 0x00, 0xFF], "old & new");
    // Neighbours untouched, byte-granular reads work at any offset.
    assert_eq!(read(&mut f, 7, 1), [0xFF]);
    assert_eq!(read(&mut f, 9, 2), [0x0F, 0x00]);
}

#[test]
fn erase_sets_whole_pages_to_ff_and_nothing_else() {
    let mut f = small();
    f.write(0, &[0; 3 * 4096]).unwrap();
    f.erase(4096, 8192).unwrap();
    let bytes = f.as_bytes();
    assert!(bytes[..4096].iter().all(|&b| b == 0));
    assert!(bytes[4096..8192].iter().all(|&b| b == 0xFF));
    assert!(bytes[8192..].iter().all(|&b| b == 0));
    // After an erase the page takes any data again.
    f.write(4096, &[0x12, 0x34, 0x56, 0x78]).unwrap();
    assert_eq!(read(&mut f, 4096, 4), [0x12, 0x34, 0x56, 0x78]);
}

#[test]
fn misaligned_operations_are_refused_untouched_and_uncounted() {
    let mut f = small();
    assert_eq!(f.write(2, &[0; 4]), Err(FlashError::NotAligned));
    assert_eq!(f.write(4, &[0; 3]), Err(FlashError::NotAligned));
    assert_eq!(f.erase(100, 4096), Err(FlashError::NotAligned));
    assert_eq!(f.erase(0, 4000), Err(FlashError::NotAligned));
    assert_eq!(FlashError::NotAligned.kind(), NorFlashErrorKind::NotAligned);
    assert!(f.as_bytes().iter().all(|&b| b == 0xFF));
    assert_eq!(f.ops(), 0);
}

#[test]
fn out_of_range_operations_are_refused() {
    let mut f = small();
    let end = 3 * 4096;
    let mut buf = [0; 8];
    assert_eq!(f.read(end - 4, &mut buf), Err(FlashError::OutOfBounds));
    assert_eq!(
        f.read(u32::MAX, &mut buf[..1]),
        Err(FlashError::OutOfBounds)
    );
    assert_eq!(f.write(end, &[0; 4]), Err(FlashError::OutOfBounds));
    assert_eq!(f.write(end - 4, &[0; 8]), Err(FlashError::OutOfBounds));
    assert_eq!(f.erase(0, end + 4096), Err(FlashError::OutOfBounds));
    assert_eq!(
        f.erase(8192, 4096),
        Err(FlashError::OutOfBounds),
        "from > to"
    );
    assert_eq!(
        FlashError::OutOfBounds.kind(),
        NorFlashErrorKind::OutOfBounds
    );
    // The last word and the last page are in range.
    f.write(end - 4, &[0; 4]).unwrap();
    f.erase(end - 4096, end).unwrap();
    assert_eq!(f.ops(), 2);
}

#[test]
fn ops_count_writes_and_erased_pages_not_reads() {
    let mut f = small();
    f.write(0, &[0; 64]).unwrap();
    f.write(64, &[0; 4]).unwrap();
    assert_eq!(f.ops(), 2);
    read(&mut f, 0, 100);
    assert_eq!(f.ops(), 2);
    f.erase(0, 3 * 4096).unwrap();
    assert_eq!(f.ops(), 5, "one op per erased page");
}

#[test]
fn the_write_that_hits_the_budget_lands_its_first_half_then_the_power_is_off() {
    let mut f = small();
    f.cut_power_after(1);
    f.write(0, &[0x00; 4]).unwrap();
    assert_eq!(f.write(16, &[0x00; 8]), Err(FlashError::PowerLoss));
    assert_eq!(FlashError::PowerLoss.kind(), NorFlashErrorKind::Other);
    assert_eq!(&f.as_bytes()[16..24], &[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert!(!f.is_powered());
    assert_eq!(f.ops(), 2, "the torn op is counted");

    // Everything fails and nothing changes until the power comes back.
    let before = f.as_bytes().to_vec();
    let mut buf = [0; 4];
    assert_eq!(f.read(0, &mut buf), Err(FlashError::PoweredDown));
    assert_eq!(f.write(32, &[0; 4]), Err(FlashError::PoweredDown));
    assert_eq!(f.erase(0, 4096), Err(FlashError::PoweredDown));
    assert_eq!(f.as_bytes(), &before[..]);
    assert_eq!(f.ops(), 2);

    f.power_cycle();
    assert!(f.is_powered());
    // The cut is disarmed: the rest of the word can be written now.
    f.write(20, &[0x00; 4]).unwrap();
    f.write(24, &[0x00; 4]).unwrap();
    assert_eq!(&f.as_bytes()[16..28], &[0; 12]);
}

#[test]
fn a_one_word_torn_write_splits_the_word() {
    let mut f = small();
    f.cut_power_after(0);
    assert_eq!(f.write(4, &[0xD0; 4]), Err(FlashError::PowerLoss));
    assert_eq!(&f.as_bytes()[4..8], &[0xD0, 0xD0, 0xFF, 0xFF]);
}

#[test]
fn the_erase_that_hits_the_budget_wipes_half_a_page() {
    let mut f = small();
    f.write(0, &[0; 3 * 4096]).unwrap();
    f.cut_power_after(1);
    // Pages 0 and 1: page 0 completes, page 1 is torn; page 2 is never reached.
    assert_eq!(f.erase(0, 3 * 4096), Err(FlashError::PowerLoss));
    let b = f.as_bytes();
    assert!(b[..4096].iter().all(|&x| x == 0xFF));
    assert!(b[4096..6144].iter().all(|&x| x == 0xFF), "first half wiped");
    assert!(b[6144..8192].iter().all(|&x| x == 0), "second half intact");
    assert!(b[8192..].iter().all(|&x| x == 0));
    assert_eq!(f.ops(), 1 + 2);
}

#[test]
fn tear_nothing_cuts_just_before_the_operation() {
    let mut f = small();
    f.write(0, &[0; 4096]).unwrap();
    f.cut_power_after_with(0, Tear::Nothing);
    assert_eq!(f.erase(0, 4096), Err(FlashError::PowerLoss));
    assert!(f.as_bytes()[..4096].iter().all(|&x| x == 0));
    f.power_cycle();
    f.cut_power_after_with(0, Tear::Nothing);
    assert_eq!(f.write(8192, &[0; 8]), Err(FlashError::PowerLoss));
    assert!(f.as_bytes()[8192..8200].iter().all(|&x| x == 0xFF));
}

#[test]
fn every_budget_tears_exactly_the_op_it_names() {
    // Eight one-word writes; for each budget k the first k land whole, write k lands half.
    for k in 0..8u64 {
        let mut f = small();
        f.cut_power_after(k);
        let mut failed_at = None;
        for i in 0..8u32 {
            if f.write(i * 4, &[0; 4]).is_err() {
                failed_at = Some(i);
                break;
            }
        }
        assert_eq!(failed_at, Some(k as u32));
        let b = f.as_bytes();
        assert!(b[..k as usize * 4].iter().all(|&x| x == 0));
        assert_eq!(&b[k as usize * 4..k as usize * 4 + 4], &[0, 0, 0xFF, 0xFF]);
        assert!(b[k as usize * 4 + 4..].iter().all(|&x| x == 0xFF));
    }
}

#[cfg(feature = "std")]
mod file {
    use super::*;
    use lwm2m_client::storage::file_flash::{FileFlash, FileFlashError};

    fn path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("otafleet-storage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn file_flash_is_created_erased_and_keeps_nor_semantics_across_reopen() {
        let p = path("semantics.bin");
        let mut f = FileFlash::<4096, 4>::create(&p, 2 * 4096).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 8192);
        assert!(std::fs::read(&p).unwrap().iter().all(|&b| b == 0xFF));
        f.write(8, &[0xF0, 0x0F, 0xFF, 0x00]).unwrap();
        f.write(8, &[0x3C, 0xFF, 0x55, 0xFF]).unwrap();
        assert_eq!(
            f.write(2, &[0; 4]),
            Err(FileFlashError::Flash(FlashError::NotAligned))
        );
        assert_eq!(
            f.write(8192, &[0; 4]),
            Err(FileFlashError::Flash(FlashError::OutOfBounds))
        );
        assert_eq!(
            f.erase(0, 100),
            Err(FileFlashError::Flash(FlashError::NotAligned))
        );
        f.write(4096, &[0; 16]).unwrap();
        f.erase(4096, 8192).unwrap();
        assert_eq!(f.ops(), 4);
        drop(f);

        let mut f = FileFlash::<4096, 4>::open(&p).unwrap();
        assert_eq!(f.capacity(), 8192);
        let mut buf = [0; 4];
        f.read(8, &mut buf).unwrap();
        assert_eq!(buf, [0x30, 0x0F, 0x55, 0x00]);
        f.read(4096, &mut buf).unwrap();
        assert_eq!(buf, [0xFF; 4]);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn file_flash_tears_at_the_budget() {
        let p = path("torn.bin");
        let mut f = FileFlash::<4096, 4>::create(&p, 2 * 4096).unwrap();
        f.write(0, &[0; 8192]).unwrap();
        f.cut_power_after_with(0, Tear::Half);
        assert_eq!(
            f.erase(0, 8192),
            Err(FileFlashError::Flash(FlashError::PowerLoss))
        );
        let mut buf = [0; 4];
        assert_eq!(
            f.read(0, &mut buf),
            Err(FileFlashError::Flash(FlashError::PoweredDown))
        );
        f.power_cycle();
        let bytes = std::fs::read(&p).unwrap();
        assert!(bytes[..2048].iter().all(|&b| b == 0xFF));
        assert!(bytes[2048..].iter().all(|&b| b == 0));
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn file_flash_open_or_create_checks_the_size() {
        let p = path("size.bin");
        assert!(
            FileFlash::<4096, 4>::create(&p, 1000).is_err(),
            "not a whole page"
        );
        FileFlash::<4096, 4>::open_or_create(&p, 4096).unwrap();
        FileFlash::<4096, 4>::open_or_create(&p, 4096).unwrap();
        assert!(FileFlash::<4096, 4>::open_or_create(&p, 8192).is_err());
        let _ = std::fs::remove_file(&p);
    }
}

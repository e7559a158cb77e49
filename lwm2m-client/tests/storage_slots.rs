//! embassy-boot on the host: layout, staging, trial boot, revert, confirm, and the resume rule.

/// Only the storage part of tests/support: these tests need no network. Each uses part of it.
#[allow(dead_code)]
mod support {
    pub mod storage;
}

use lwm2m_client::storage::flash::{RamFlash, Tear};
use lwm2m_client::storage::layout::{DeviceFlash, Layout, LayoutError};
use lwm2m_client::storage::slots::{self, BootOutcome, SlotError, Staging};
use support::storage::*;

fn fresh_with(old: &[u8]) -> Device {
    let dev = device(Flash::new());
    install(&dev, old);
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Normal));
    dev
}

#[test]
fn nrf52840_layout_numbers() {
    let l = Layout::NRF52840;
    assert_eq!(l.state(), 0x6000..0x7000);
    assert_eq!(l.active(), 0x7000..0x81000);
    assert_eq!(l.dfu(), 0x81000..0xFC000);
    assert_eq!(l.settings(), 0xFC000..0x100000);
    assert_eq!(l.slot_size(), 488 * 1024);
    assert_eq!(l.end(), 1024 * 1024, "fills the 1 MiB flash exactly");
    // It fits a 1 MiB nRF-geometry flash, and not one page less.
    assert_eq!(l.check::<RamFlash<{ 1024 * 1024 }>>(1024 * 1024), Ok(()));
    assert_eq!(
        l.check::<RamFlash<{ 1024 * 1024 }>>(1024 * 1024 - 4096),
        Err(LayoutError::BeyondFlash)
    );
}

#[test]
fn test_layout_numbers() {
    assert_eq!(LAYOUT.state(), 0..0x1000);
    assert_eq!(LAYOUT.active(), 0x1000..0x5000);
    assert_eq!(LAYOUT.dfu(), 0x5000..0xA000, "DFU = ACTIVE + one page");
    assert_eq!(LAYOUT.settings(), 0xA000..0xE000);
    assert_eq!(LAYOUT.end() as usize, FLASH_SIZE);
}

#[test]
fn layout_errors_are_typed() {
    assert_eq!(
        Layout::new(100, SLOT, SETTINGS),
        Err(LayoutError::Misaligned)
    );
    assert_eq!(
        Layout::new(0, SLOT + 1, SETTINGS),
        Err(LayoutError::Misaligned)
    );
    assert_eq!(Layout::new(0, 0, SETTINGS), Err(LayoutError::TooSmall));
    assert_eq!(
        Layout::new(0, SLOT, 4096),
        Err(LayoutError::TooSmall),
        "sequential-storage needs 2 pages"
    );
    assert_eq!(
        Layout::new(u32::MAX - 0xFFF, SLOT, SETTINGS),
        Err(LayoutError::Overflow)
    );
    // A big slot needs more than one STATE page (2 + 4N words).
    let big = Layout::new(0, 1024 * 4096, 2 * 4096).unwrap();
    assert_eq!(big.state(), 0..5 * 4096);
    // Geometry the boot buffer cannot serve, or a flash too small.
    assert_eq!(
        LAYOUT.check::<RamFlash<FLASH_SIZE, 4096, 64>>(FLASH_SIZE),
        Err(LayoutError::Geometry)
    );
    assert_eq!(
        LAYOUT.check::<RamFlash<FLASH_SIZE, 8192, 4>>(FLASH_SIZE),
        Err(LayoutError::Misaligned)
    );
    assert!(matches!(
        DeviceFlash::new(RamFlash::<{ 48 * 1024 }>::new(), LAYOUT),
        Err(LayoutError::BeyondFlash)
    ));
}

#[test]
fn trial_boot_swaps_and_an_unconfirmed_trial_reverts() {
    let old = image("1.0.0", 10_000, 1);
    let new = image("2.0.0", 14_001, 2);
    let dev = fresh_with(&old);

    stage(&dev, &new, 256).unwrap();
    assert_eq!(read_dfu(&dev, new.len()), new);
    assert!(active_is(&dev, &old), "staging leaves ACTIVE alone");
    assert_eq!(slots::is_trial(&dev), Ok(false));
    slots::mark_for_test_boot(&dev).unwrap();
    assert_eq!(slots::is_trial(&dev), Ok(true));

    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
    assert!(active_is(&dev, &new));
    assert_eq!(version_of(&read_active(&dev, HEADER)), "2.0.0");
    assert_eq!(slots::is_trial(&dev), Ok(true), "on trial until confirmed");

    // The trial image crashes before confirming: the next reset reverts.
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Reverted));
    assert!(active_is(&dev, &old));
    assert_eq!(slots::is_trial(&dev), Ok(false));
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Normal));
    assert!(active_is(&dev, &old));
}

#[test]
fn a_confirmed_trial_stays() {
    let old = image("1.0.0", 10_000, 1);
    let new = image("2.0.0", 14_001, 2);
    let dev = fresh_with(&old);
    stage(&dev, &new, 512).unwrap();
    slots::mark_for_test_boot(&dev).unwrap();
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
    slots::confirm(&dev).unwrap();
    assert_eq!(slots::is_trial(&dev), Ok(false));
    for _ in 0..3 {
        assert_eq!(slots::boot(&dev), Ok(BootOutcome::Normal));
        assert!(active_is(&dev, &new));
    }

    // And the next update goes through the same way, from the confirmed image.
    let third = image("3.0.0", 9_000, 3);
    stage(&dev, &third, 1024).unwrap();
    slots::mark_for_test_boot(&dev).unwrap();
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
    assert!(active_is(&dev, &third));
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Reverted));
    assert!(active_is(&dev, &new));
}

#[test]
fn staging_is_refused_while_an_update_is_marked_or_on_trial() {
    let old = image("1.0.0", 10_000, 1);
    let new = image("2.0.0", 8_000, 2);
    let dev = fresh_with(&old);
    stage(&dev, &new, 256).unwrap();
    slots::mark_for_test_boot(&dev).unwrap();
    assert_eq!(
        slots::mark_for_test_boot(&dev),
        Err(SlotError::TrialPending)
    );
    assert_eq!(stage(&dev, &new, 256), Err(SlotError::TrialPending));
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
    assert_eq!(stage(&dev, &old, 256), Err(SlotError::TrialPending));
    slots::confirm(&dev).unwrap();
    stage(&dev, &old, 256).unwrap();
}

#[test]
fn staging_checks_bounds_and_alignment_before_touching_flash() {
    let dev = fresh_with(&image("1.0.0", 1000, 1));
    let mut staging = Staging::new(&dev);
    staging.erase_page(0).unwrap();
    staging.write(0, &[0x11; 64]).unwrap();
    // DFU has one page more than ACTIVE, but an image may only use ACTIVE's size.
    let last = SLOT / PAGE as u32 - 1;
    assert_eq!(staging.erase_page(last + 1), Err(SlotError::OutsideSlot));
    assert_eq!(staging.erase_page(u32::MAX), Err(SlotError::OutsideSlot));
    staging.erase_page(last).unwrap();
    assert_eq!(
        staging.write(SLOT - 4, &[0; 8]),
        Err(SlotError::OutsideSlot)
    );
    assert_eq!(staging.write(SLOT, &[0; 4]), Err(SlotError::OutsideSlot));
    assert_eq!(
        staging.write(u32::MAX - 2, &[0; 4]),
        Err(SlotError::OutsideSlot)
    );
    staging.write(SLOT - 4, &[0x22; 4]).unwrap();
    assert_eq!(staging.write(4096 + 2, &[0; 4]), Err(SlotError::Misaligned));
    let mut buf = [0; 64];
    staging.read(0, &mut buf).unwrap();
    assert_eq!(buf, [0x11; 64]);
    assert_eq!(
        staging.read(SLOT - 2, &mut buf),
        Err(SlotError::OutsideSlot)
    );
}

#[test]
fn an_odd_final_chunk_is_padded_with_the_erased_value() {
    let dev = fresh_with(&image("1.0.0", 1000, 1));
    let new = image("2.0.0", 4097 + 2, 7);
    stage(&dev, &new, 1000).unwrap();
    let dfu = read_dfu(&dev, 4104);
    assert_eq!(&dfu[..new.len()], &new[..]);
    assert_eq!(&dfu[new.len()..4104], &[0xFF; 5]);
}

/// Equality without dumping 14 KB on failure.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

#[test]
fn blocks_written_out_of_order_into_erased_pages_land_exactly_and_boot() {
    // embassy-boot's write_firmware would erase page 0 again when a write comes back to it after
    // page 1 (the trap the staging writer avoids): here each page is erased once, before its first
    // block, and the blocks come in a scrambled order and in several sizes.
    let new = image("2.0.0", 14_001, 2);
    let dev = fresh_with(&image("1.0.0", 10_000, 1));
    let mut staging = Staging::new(&dev);
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    for (k, size) in [64usize, 256, 1024, 512, 16].iter().cycle().enumerate() {
        if at >= new.len() {
            break;
        }
        let size = if at % size == 0 { *size } else { 16 };
        blocks.push((at, (at + size).min(new.len())));
        at += size;
        let _ = k;
    }
    // A fixed scramble: every k-th block in turn, k coprime with the count (a permutation).
    let n = blocks.len();
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let k = (7..).find(|&k| gcd(k, n) == 1).unwrap();
    let order: Vec<usize> = (0..n).map(|i| (i * k) % n).collect();
    assert_eq!(
        order.iter().collect::<std::collections::HashSet<_>>().len(),
        n
    );
    let mut erased = [false; 4];
    for i in order {
        let (from, to) = blocks[i];
        let page = from / PAGE;
        if !erased[page] {
            staging.erase_page(page as u32).unwrap();
            erased[page] = true;
        }
        staging.write(from as u32, &new[from..to]).unwrap();
    }
    let dfu = read_dfu(&dev, new.len());
    assert_eq!(first_difference(&dfu, &new), None);
    slots::mark_for_test_boot(&dev).unwrap();
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
    assert!(active_is(&dev, &new));
}

#[test]
fn a_confirm_cut_after_invalidating_the_progress_keeps_the_new_image_and_boots_normal() {
    let old = image("1.0.0", 10_000, 1);
    let new = image("2.0.0", 14_001, 2);
    let mut dev = fresh_with(&old);
    stage(&dev, &new, 256).unwrap();
    slots::mark_for_test_boot(&dev).unwrap();
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
    // mark_booted = [invalidate progress, erase STATE, write magic]: power dies before the erase.
    dev.flash_mut().cut_power_after_with(1, Tear::Nothing);
    assert!(slots::confirm(&dev).is_err());
    dev.flash_mut().power_cycle();
    // prepare_boot "reverts" without copying (every page counts as done) and writes the Revert
    // magic; the image it keeps is the confirmed one, so this is not a revert.
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Normal));
    assert!(active_is(&dev, &new));
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Normal));
    assert!(active_is(&dev, &new));
    // And updating on from there works.
    stage(&dev, &old, 256).unwrap();
    slots::mark_for_test_boot(&dev).unwrap();
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
    assert!(active_is(&dev, &old));
}

#[test]
fn reads_are_bounded_by_the_slot() {
    let dev = fresh_with(&image("1.0.0", 1000, 1));
    let mut buf = [0; 8];
    assert_eq!(
        slots::read_active(&dev, SLOT - 4, &mut buf),
        Err(SlotError::OutsideSlot)
    );
    assert_eq!(
        slots::read_dfu(&dev, SLOT, &mut buf),
        Err(SlotError::OutsideSlot)
    );
    slots::read_active(&dev, SLOT - 8, &mut buf).unwrap();
}

#[cfg(feature = "std")]
#[test]
fn a_file_backed_device_keeps_slots_boot_state_and_record_across_a_process_restart() {
    use lwm2m_client::storage::file_flash::FileFlash;
    use lwm2m_client::storage::persist;

    let dir = std::env::temp_dir().join(format!("otafleet-storage-slots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("device-flash.bin");
    let _ = std::fs::remove_file(&path);
    let old = image("1.0.0", 10_000, 1);
    let new = image("2.0.0", 14_001, 2);
    let size = LAYOUT.end() as usize;

    {
        let dev =
            DeviceFlash::new(FileFlash::<4096, 4>::create(&path, size).unwrap(), LAYOUT).unwrap();
        let mut staging = Staging::new(&dev);
        for page in 0..4 {
            staging.erase_page(page).unwrap();
        }
        for (i, chunk) in new.chunks(512).enumerate() {
            staging.write((i * 512) as u32, chunk).unwrap();
        }
        let mut active = dev.active();
        embedded_storage::nor_flash::NorFlash::write(&mut active, 0, &old[..9996]).unwrap();
        slots::mark_for_test_boot(&dev).unwrap();
        persist::store(&dev, &updating(&installed("1.0.0", 1), "2.0.0", 2)).unwrap();
    } // the process exits

    let dev = DeviceFlash::new(FileFlash::<4096, 4>::open(&path).unwrap(), LAYOUT).unwrap();
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
    let mut header = [0; HEADER];
    slots::read_active(&dev, 0, &mut header).unwrap();
    assert_eq!(version_of(&header), "2.0.0");
    let mut active = vec![0; new.len()];
    slots::read_active(&dev, 0, &mut active).unwrap();
    assert_eq!(active, new);
    assert_eq!(
        persist::load(&dev)
            .unwrap()
            .unwrap()
            .pending
            .unwrap()
            .version
            .as_str(),
        "2.0.0"
    );
    slots::confirm(&dev).unwrap();
    drop(dev);

    let dev = DeviceFlash::new(FileFlash::<4096, 4>::open(&path).unwrap(), LAYOUT).unwrap();
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Normal));
    let mut again = vec![0; new.len()];
    slots::read_active(&dev, 0, &mut again).unwrap();
    assert!(again == new, "the confirmed image stays");
    let _ = std::fs::remove_file(&path);
}

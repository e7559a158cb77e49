//! Power cut at every flash operation: of a whole update (download with persisted progress,
//! executing it, the bootloader's swap, confirming), of a revert, of a swap cut twice, and of
//! persisting the state. After each cut the flash is powered up again and must recover to exactly
//! the old or exactly the new image, and to a record that was stored (never a mix of either).

/// Only the storage part of tests/support: these tests need no network. Each uses part of it.
#[allow(dead_code)]
mod support {
    pub mod storage;
}

use lwm2m_client::storage::flash::Tear;
use lwm2m_client::storage::persist;
use lwm2m_client::storage::record::FirmwareState;
use lwm2m_client::storage::slots::{self, BootOutcome, SlotError, Staging};
use support::storage::*;

const BLOCK: usize = 256;
/// Download progress is persisted every this many bytes (not a page multiple, so a resume finds
/// the page it stopped in part-recorded: blank after the recorded part, or written, then erased
/// again).
const PROGRESS_EVERY: usize = 1024;
const TEARS: [Tear; 2] = [Tear::Half, Tear::Nothing];

fn old_image() -> Vec<u8> {
    image("1.0.0", 10_000, 1)
}

fn new_image() -> Vec<u8> {
    image("2.0.0", 14_001, 2)
}

/// Every record the update stores, in order: R0 (installed 1.0.0), the download progress
/// records, R1 (Updating, pending 2.0.0), R2 (installed 2.0.0).
struct Records {
    list: Vec<FirmwareState>,
}

impl Records {
    fn new() -> Self {
        let r0 = installed("1.0.0", 1);
        let total = new_image().len();
        let mut list = vec![r0.clone()];
        for written in (PROGRESS_EVERY..total).step_by(PROGRESS_EVERY) {
            list.push(downloading(&r0, written as u32, total as u32));
        }
        list.push(updating(&r0, "2.0.0", 2));
        list.push(installed("2.0.0", 2));
        Self { list }
    }
    fn r0(&self) -> usize {
        0
    }
    fn progress(&self, written: usize) -> usize {
        written / PROGRESS_EVERY
    }
    fn r1(&self) -> usize {
        self.list.len() - 2
    }
    fn r2(&self) -> usize {
        self.list.len() - 1
    }
    fn index_of(&self, rec: &FirmwareState) -> Option<usize> {
        self.list.iter().position(|r| r == rec)
    }
}

/// What the run got through, and where (in flash operations) its phases began.
#[derive(Default, Debug, Clone)]
struct Journal {
    committed: usize,
    attempting: usize,
    ops_r1: Option<u64>,
    ops_confirm: Option<u64>,
    ops_confirm_end: Option<u64>,
}

#[derive(Debug)]
#[allow(dead_code)]
enum Stop {
    Slot(SlotError),
    Persist(persist::PersistError),
}

impl From<SlotError> for Stop {
    fn from(e: SlotError) -> Self {
        Stop::Slot(e)
    }
}

impl From<persist::PersistError> for Stop {
    fn from(e: persist::PersistError) -> Self {
        Stop::Persist(e)
    }
}

fn ops(dev: &Device) -> u64 {
    dev.with_flash(|f| f.ops()).unwrap()
}

fn store(dev: &Device, recs: &Records, j: &mut Journal, i: usize) -> Result<(), Stop> {
    j.attempting = i;
    persist::store(dev, &recs.list[i])?;
    j.committed = i;
    Ok(())
}

/// The update as the firmware layer runs it on the booted old image, from image offset `from`.
/// Each page is erased before its first block, except the page `from` lies inside: it holds
/// recorded bytes of this download, so it was erased in it, and the rest of it is blank.
fn update(dev: &Device, recs: &Records, j: &mut Journal, from: usize) -> Result<(), Stop> {
    let image = new_image();
    {
        let mut staging = Staging::new(dev);
        let mut offset = from;
        let mut erased = from.next_multiple_of(PAGE);
        while offset < image.len() {
            let end = (offset + BLOCK).min(image.len());
            while erased < end {
                staging.erase_page((erased / PAGE) as u32)?;
                erased += PAGE;
            }
            staging.write(offset as u32, &image[offset..end])?;
            offset = end;
            if offset % PROGRESS_EVERY == 0 && offset < image.len() {
                store(dev, recs, j, recs.progress(offset))?;
            }
        }
    }
    j.ops_r1 = Some(ops(dev));
    store(dev, recs, j, recs.r1())?;
    slots::mark_for_test_boot(dev)?;
    // The reset: the bootloader swaps, the new image self-tests and confirms.
    let outcome = slots::boot(dev)?;
    assert_eq!(outcome, BootOutcome::Swapped);
    j.ops_confirm = Some(ops(dev));
    slots::confirm(dev)?;
    j.ops_confirm_end = Some(ops(dev));
    store(dev, recs, j, recs.r2())?;
    Ok(())
}

/// The old image booted with its record, as the device left the factory.
fn factory(recs: &Records) -> Flash {
    let dev = device(Flash::new());
    install(&dev, &old_image());
    persist::store(&dev, &recs.list[recs.r0()]).unwrap();
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Normal));
    dev.into_inner()
}

fn running_version(dev: &Device) -> String {
    version_of(&read_active(dev, HEADER))
}

/// ACTIVE must be exactly one of the two images.
fn which_image(dev: &Device) -> &'static str {
    let old = old_image();
    let new = new_image();
    if active_is(dev, &new) {
        "new"
    } else if active_is(dev, &old) {
        "old"
    } else {
        panic!(
            "ACTIVE holds a mix of the images (header {:?})",
            running_version(dev)
        )
    }
}

/// Resets until the bootloader has nothing left to do, with no application confirming anything.
fn settle(dev: &Device) -> Vec<BootOutcome> {
    let mut seen = Vec::new();
    loop {
        let outcome = slots::boot(dev).expect("the bootloader recovers once powered");
        seen.push(outcome);
        if outcome == BootOutcome::Normal {
            return seen;
        }
        assert!(seen.len() < 4, "bootloader does not settle: {seen:?}");
    }
}

/// The device's restart logic: reset, reconcile the record with the running image, resume or
/// finish what was interrupted. Returns the final record index.
fn restart(dev: &Device, recs: &Records) -> usize {
    for _ in 0..6 {
        let outcome = slots::boot(dev).unwrap();
        let rec = persist::load(dev).unwrap().expect("a record survives");
        let mut j = Journal::default();
        match outcome {
            BootOutcome::Swapped => {
                // Only an executed update is ever marked, and R1 is stored before marking.
                assert_eq!(
                    recs.index_of(&rec),
                    Some(recs.r1()),
                    "trial boot without pending record"
                );
                assert_eq!(running_version(dev), "2.0.0");
                slots::confirm(dev).unwrap();
                store(dev, recs, &mut j, recs.r2()).unwrap();
            }
            BootOutcome::Normal | BootOutcome::Reverted => {
                if let Some(pending) = &rec.pending {
                    // The running image tells whether the update took.
                    if running_version(dev) == pending.version.as_str() {
                        store(dev, recs, &mut j, recs.r2()).unwrap();
                    } else {
                        persist::store(dev, &failed(&recs.list[recs.r0()])).unwrap();
                    }
                } else if let Some(download) = &rec.download {
                    // The engine's resume: after the recorded bytes, the rest of their page must
                    // be blank, else (written after the last record, or torn) the page starts over.
                    let done = download.received.bytes() as usize;
                    let page_end = done.next_multiple_of(PAGE).min(download.total as usize);
                    let dirty = read_dfu(dev, page_end)[done..].iter().any(|&b| b != 0xFF);
                    let from = if dirty { done / PAGE * PAGE } else { done };
                    update(dev, recs, &mut j, from).unwrap();
                } else {
                    return recs.index_of(&rec).unwrap_or(usize::MAX);
                }
            }
        }
    }
    panic!("device does not settle");
}

#[test]
fn power_cut_at_every_operation_of_an_update() {
    let recs = Records::new();
    let base = factory(&recs);

    // The uncut run: it gives the number of operations and where the phases start.
    let dev = device(base.clone());
    let start = ops(&dev);
    let mut reference = Journal::default();
    update(&dev, &recs, &mut reference, 0).unwrap();
    let total = ops(&dev) - start;
    let rel = |o: Option<u64>| o.unwrap() - start;
    let (ops_r1, ops_confirm, ops_confirm_end) = (
        rel(reference.ops_r1),
        rel(reference.ops_confirm),
        rel(reference.ops_confirm_end),
    );
    assert!(active_is(&dev, &new_image()));
    println!(
        "update: {total} flash ops (download + progress {ops_r1}, store R1 + mark + swap {}, confirm {}, store R2 {})",
        ops_confirm - ops_r1,
        ops_confirm_end - ops_confirm,
        total - ops_confirm_end
    );

    for tear in TEARS {
        let (mut finals_new, mut finals_failed, mut finals_idle) = (0, 0, 0);
        for cut in 0..total {
            let mut dev = device(base.clone());
            dev.flash_mut().cut_power_after_with(cut, tear);
            let mut j = Journal::default();
            let result = update(&dev, &recs, &mut j, 0);
            assert!(result.is_err(), "cut {cut}: the run must be interrupted");
            assert!(
                !dev.flash_mut().is_powered(),
                "cut {cut}: failed for another reason: {result:?}"
            );
            dev.flash_mut().power_cycle();
            let after_cut = dev.into_inner();

            // A: only the bootloader runs (the new image never confirms by itself).
            let dev = device(after_cut.clone());
            let rec = persist::load(&dev).unwrap().expect("a record survives");
            let idx = recs
                .index_of(&rec)
                .expect("the record is one that was stored");
            assert!(
                idx == j.committed || idx == j.attempting,
                "cut {cut} ({tear:?}): record {idx}, committed {}, attempting {}",
                j.committed,
                j.attempting
            );
            let outcomes = settle(&dev);
            if outcomes[0] == BootOutcome::Swapped {
                assert_eq!(
                    idx,
                    recs.r1(),
                    "cut {cut}: swapped without a pending record"
                );
            }
            let image = which_image(&dev);
            if outcomes.contains(&BootOutcome::Reverted) {
                assert_eq!(
                    image, "old",
                    "cut {cut} ({tear:?}): a reported revert must restore the old image"
                );
            }
            if cut < ops_confirm {
                assert_eq!(
                    image, "old",
                    "cut {cut} ({tear:?}) before confirming: {outcomes:?}"
                );
            }
            if cut >= ops_confirm_end {
                assert_eq!(image, "new", "cut {cut} ({tear:?}) after confirming");
            }

            // B: the device restarts and its firmware layer reconciles and carries on.
            let dev = device(after_cut);
            let final_rec = restart(&dev, &recs);
            let image = which_image(&dev);
            assert_eq!(
                slots::boot(&dev),
                Ok(BootOutcome::Normal),
                "cut {cut}: settled"
            );
            let rec = persist::load(&dev).unwrap().unwrap();
            match (image, final_rec) {
                ("new", r) if r == recs.r2() => finals_new += 1,
                ("old", usize::MAX) => {
                    assert_eq!(rec, failed(&recs.list[recs.r0()]), "cut {cut}");
                    assert_eq!(
                        idx,
                        recs.r1(),
                        "cut {cut}: only an executed update can fail"
                    );
                    assert!(
                        cut < ops_confirm_end,
                        "cut {cut}: a confirmed update cannot fail"
                    );
                    finals_failed += 1;
                }
                ("old", r) if r == recs.r0() => {
                    assert_eq!(idx, recs.r0(), "cut {cut}: no progress was stored");
                    finals_idle += 1;
                }
                other => panic!("cut {cut} ({tear:?}): inconsistent end state {other:?}"),
            }
        }
        println!(
            "update, tear {tear:?}: {total} cut points covered -> new+R2 {finals_new}, old+Result 8 {finals_failed}, \
             old+R0 (nothing stored yet) {finals_idle}"
        );
        assert_eq!(finals_new + finals_failed + finals_idle, total as usize);
    }
}

#[test]
fn power_cut_at_every_operation_of_a_revert() {
    let recs = Records::new();
    let dev = device(factory(&recs));
    update_until_trial(&dev);
    let base = dev.into_inner();

    let dev = device(base.clone());
    let start = ops(&dev);
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Reverted));
    let total = ops(&dev) - start;
    assert_eq!(which_image(&dev), "old");

    for tear in TEARS {
        for cut in 0..total {
            let mut dev = device(base.clone());
            dev.flash_mut().cut_power_after_with(cut, tear);
            assert!(slots::boot(&dev).is_err(), "cut {cut}");
            dev.flash_mut().power_cycle();
            let outcomes = settle(&dev);
            assert_eq!(
                which_image(&dev),
                "old",
                "cut {cut} ({tear:?}): {outcomes:?}"
            );
            // A new update can start from there.
            stage(&dev, &new_image(), BLOCK).unwrap();
        }
        println!("revert, tear {tear:?}: {total} cut points covered");
    }
}

/// Stage, mark, and reset into the trial boot of the new image (not confirmed).
fn update_until_trial(dev: &Device) {
    stage(dev, &new_image(), BLOCK).unwrap();
    slots::mark_for_test_boot(dev).unwrap();
    assert_eq!(slots::boot(dev), Ok(BootOutcome::Swapped));
}

#[test]
fn a_swap_cut_twice_still_ends_in_one_image() {
    let recs = Records::new();
    let dev = device(factory(&recs));
    stage(&dev, &new_image(), BLOCK).unwrap();
    slots::mark_for_test_boot(&dev).unwrap();
    let base = dev.into_inner();

    let dev = device(base.clone());
    let start = ops(&dev);
    assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
    let swap_ops = ops(&dev) - start;

    let mut covered = 0;
    for first in 0..swap_ops {
        let mut dev = device(base.clone());
        dev.flash_mut().cut_power_after(first);
        assert!(slots::boot(&dev).is_err());
        dev.flash_mut().power_cycle();
        let once = dev.into_inner();

        // How far the resumed swap has to go, then a second cut at every one of its operations.
        let dev = device(once.clone());
        let start = ops(&dev);
        assert_eq!(slots::boot(&dev), Ok(BootOutcome::Swapped));
        let resume_ops = ops(&dev) - start;
        for second in 0..resume_ops {
            for confirm_when_swapped in [false, true] {
                let mut dev = device(once.clone());
                dev.flash_mut().cut_power_after(second);
                assert!(slots::boot(&dev).is_err());
                dev.flash_mut().power_cycle();
                loop {
                    let outcome = slots::boot(&dev).unwrap();
                    if outcome == BootOutcome::Swapped && confirm_when_swapped {
                        assert_eq!(which_image(&dev), "new");
                        slots::confirm(&dev).unwrap();
                    }
                    if outcome == BootOutcome::Normal {
                        break;
                    }
                }
                let expected = if confirm_when_swapped { "new" } else { "old" };
                assert_eq!(which_image(&dev), expected, "cuts at {first} then {second}");
                covered += 1;
            }
        }
    }
    println!("swap cut twice: {swap_ops} first cut points, {covered} recoveries checked");
}

#[test]
fn power_cut_at_every_operation_of_a_store() {
    let base_rec = installed("1.0.0", 1);
    // Records of different sizes, so that stores fill and roll over the four settings pages.
    let record = |i: usize| -> FirmwareState {
        match i % 3 {
            0 => downloading(&base_rec, (i * 256) as u32, 14_001),
            1 => updating(&base_rec, "2.0.0", i as u64),
            _ => installed("1.0.0", i as u64),
        }
    };
    let mut history = device(Flash::new());
    let mut previous: Option<FirmwareState> = None;
    let mut covered = 0;
    for n in 0..60 {
        let next = record(n);
        let snapshot = history.flash_mut().clone();

        let dev = device(snapshot.clone());
        let start = ops(&dev);
        persist::store(&dev, &next).unwrap();
        let store_ops = ops(&dev) - start;

        for tear in TEARS {
            for cut in 0..store_ops {
                let mut dev = device(snapshot.clone());
                dev.flash_mut().cut_power_after_with(cut, tear);
                assert!(persist::store(&dev, &next).is_err(), "store {n}, cut {cut}");
                dev.flash_mut().power_cycle();
                let loaded = persist::load(&dev)
                    .unwrap_or_else(|e| panic!("store {n}, cut {cut} ({tear:?}): {e:?}"));
                assert!(
                    loaded == previous || loaded.as_ref() == Some(&next),
                    "store {n}, cut {cut} ({tear:?}): neither the old nor the new record: {loaded:?}"
                );
                // And the store can be done again.
                persist::store(&dev, &next).unwrap();
                assert_eq!(persist::load(&dev).unwrap().as_ref(), Some(&next));
                covered += 1;
            }
        }
        persist::store(&history, &next).unwrap();
        previous = Some(next);
    }
    println!("persist: 60 stores, {covered} cut points covered (both tears)");
}

//! Power cuts at random flash operations of a whole update (240 seeds): during the download, the
//! Update, the bootloader's swap, the self-test's confirm. The real server and device engine over
//! a lossy link in virtual time; the cut tears the flash operation it hits (half done or not at
//! all), the device powers on again through the bootloader. For every seed: the device ends on
//! the old or the new image byte for byte, reports the one it runs in /3/0/3, and the server's job
//! says the same (succeeded ⇔ new image). A failure names the seed that reproduces it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use lwm2m_client::storage::flash::Tear;
use lwm2m_server::jobs::JobDeviceStatus;
use sim_network::sim::device::PowerCut;
use sim_network::sim::world::{World, block_on, block_on_seeded, unit};
use support::scenario::*;

const IMAGE: usize = 12 * 1024;
const SEEDS: u64 = 240;
const LIMIT: Duration = Duration::from_secs(6 * 3600);

/// One device's update; `cut` armed from the start. Returns the world after the job ended.
async fn update_with(
    seed: u64,
    cut: Option<PowerCut>,
) -> (World, lwm2m_server::jobs::JobView, Vec<u8>, Vec<u8>) {
    let fw = Firmware::new(seed, IMAGE).unwrap();
    let new = fw.release("2.0.0", 2, IMAGE, None).unwrap();
    let old = fw.factory.clone();
    let cuts: Vec<_> = cut.map(|c| (0, c)).into_iter().collect();
    let world = World::start_with_cuts(config(1, lossy(0.05, 1), IMAGE, seed), fw, &cuts)
        .await
        .unwrap();
    let view = roll_out(&world, &new, LIMIT).await;
    (world, view, old, new.image)
}

#[test]
fn power_cuts_anywhere_in_an_update_never_leave_a_device_or_the_server_wrong() {
    // The uncut update: how many flash operations it takes, and where its phases begin.
    let (total, at_update, after_swap) = block_on(async {
        let (world, view, _, _) = update_with(1, None).await;
        assert_eq!(view.devices[0].status, JobDeviceStatus::Succeeded);
        let d = &world.devices[0].device;
        let v = d.view();
        (
            d.flash_ops(),
            v.ops_at_update.unwrap(),
            v.ops_after_swap.unwrap(),
        )
    })
    .unwrap();
    eprintln!(
        "uncut update: {total} flash operations; Update at {at_update}, swap+confirm done at {after_swap}"
    );
    assert!(at_update < after_swap && after_swap <= total);

    let mut by_phase: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for seed in 0..SEEDS {
        let n = (unit(seed, 7, 0) * after_swap as f64) as u64;
        let tear = if seed % 2 == 0 {
            Tear::Half
        } else {
            Tear::Nothing
        };
        let phase = if n < at_update {
            "download+update"
        } else {
            "swap+confirm"
        };
        let late = n as f64 > 0.9 * after_swap as f64;
        let succeeded = check_cut(seed, PowerCut::AtFlashOp { n, tear }, late);
        let e = by_phase.entry(phase).or_default();
        e.0 += 1;
        e.1 += u32::from(succeeded);
    }
    eprintln!("power cuts by phase (cuts, updates that still succeeded): {by_phase:?}");
    assert!(
        by_phase.get("download+update").is_some_and(|p| p.0 >= 50),
        "{by_phase:?}"
    );
    assert!(
        by_phase.get("swap+confirm").is_some_and(|p| p.0 >= 50),
        "{by_phase:?}"
    );
}

/// Runs one update with `cut` and checks the device, its report and the job agree; true if the
/// update still succeeded.
/// `late`: the cut comes near the end of the uncut update's count of flash operations, so this
/// seed's update may be over before it.
fn check_cut(seed: u64, cut: PowerCut, late: bool) -> bool {
    let _watchdog = watchdog(format!("seed {seed}"), Duration::from_secs(300));
    block_on_seeded(seed, async move {
        let (world, view, old, new) = update_with(seed, Some(cut)).await;
        let d = &world.devices[0].device;
        let rec = &view.devices[0];
        assert!(
            rec.status.is_final(),
            "seed {seed} ({cut:?}): the job did not end: {rec:?}"
        );
        // The number of flash operations depends on the seed's losses (blocks come out of
        // order, runs of units are written together, progress is stored after each 4 KiB): a
        // cut late in the uncut seed's count may lie past this seed's last operation.
        if late && d.view().power_cuts == 0 {
            assert_eq!(d.view().power_cuts, 0, "seed {seed}");
            assert_eq!(rec.status, JobDeviceStatus::Succeeded, "seed {seed}: uncut");
        } else {
            assert_eq!(
                d.view().power_cuts,
                1,
                "seed {seed}: {cut:?} did not happen"
            );
        }
        assert!(
            d.view().bricked.is_none(),
            "seed {seed}: {:?}",
            d.view().bricked
        );
        let running = running_image(&world, 0, &old, &new);
        let version = if running == "new" { "2.0.0" } else { "1.0.0" };
        assert_eq!(
            read_text(&world, 0, "/3/0/3").await.as_deref(),
            Some(version),
            "seed {seed} ({cut:?}): the device misreports its image"
        );
        assert_eq!(
            rec.status == JobDeviceStatus::Succeeded,
            running == "new",
            "seed {seed} ({cut:?}): the job says {} ({:?}) but the device runs the {running} image",
            rec.status,
            rec.error
        );
        if running == "old" {
            eprintln!(
                "seed {seed} ({cut:?}): stayed on the old image: {} {:?} Result {:?}",
                rec.status, rec.error, rec.fw_result
            );
            assert_ne!(
                rec.fw_result,
                Some(1),
                "seed {seed}: Result 1 on the old image"
            );
        }
        running == "new"
    })
    .unwrap()
}

#[test]
fn power_cuts_at_random_moments_never_leave_a_device_or_the_server_wrong() {
    // How long an uncut update runs from power-on (the device boots within the first 10 s).
    let end = block_on(async {
        let (world, _, _, _) = update_with(1, None).await;
        world.elapsed()
    })
    .unwrap();
    eprintln!("uncut update ends {end:?} after the start");
    let mut succeeded = 0;
    let seeds = 40;
    for seed in 1000..1000 + seeds {
        let at = (end - Duration::from_secs(12)).mul_f64(unit(seed, 8, 0));
        succeeded += u32::from(check_cut(seed, PowerCut::At(at), false));
    }
    eprintln!("timed power cuts: {succeeded}/{seeds} updates still succeeded");
}

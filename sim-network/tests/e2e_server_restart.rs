//! The server is killed (as `kill -9` would: every task stops, nothing more is written) in the
//! middle of a fleet update, stays down for a minute while the devices keep downloading and
//! retrying, and starts again on the same data dir: registrations and the job carry on from the
//! SQLite store to the end, and every device holds the new image byte for byte.

mod support;

use std::time::Duration;

use sim_network::sim::world::{World, block_on_seeded};
use support::scenario::*;

const IMAGE: usize = 32 * 1024;
const DEVICES: usize = 6;

#[test]
fn registrations_and_jobs_carry_on_after_the_server_is_killed_mid_update() {
    let seed = 31;
    let _watchdog = watchdog(format!("seed {seed}"), Duration::from_secs(300));
    block_on_seeded(seed, async move {
        let fw = Firmware::new(seed, IMAGE).unwrap();
        let release = fw.release("2.0.0", 2, IMAGE, None).unwrap();
        let mut world = World::start(config(DEVICES, lossy(0.1, 2), IMAGE, seed), fw)
            .await
            .unwrap();
        world
            .wait_registered(Duration::from_secs(1800))
            .await
            .unwrap();
        let id = world.add_release(&release, None).unwrap();
        let job = world.start_update(&id).unwrap();
        // Kill it when the fleet is about 40 % through the download.
        let total = (IMAGE * DEVICES) as u64;
        let mut polls = 0;
        loop {
            let view = world.job(job).unwrap();
            let done: u64 = view.devices.iter().map(|d| d.bytes_done).sum();
            if done * 10 >= total * 4 {
                assert!(
                    view.devices.iter().all(|d| !d.status.is_final()),
                    "seed {seed}: a device finished before the kill: the scenario kills too late"
                );
                break;
            }
            polls += 1;
            assert!(polls < 10_000, "seed {seed}: no download progress");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        world.restart_server(Duration::from_secs(60)).await.unwrap();
        let server = world.server().unwrap();
        for d in &world.devices {
            assert!(
                server.registry.get(&d.device.endpoint).is_some(),
                "seed {seed}: {} lost its registration across the restart",
                d.device.endpoint
            );
        }
        let view = world
            .wait_job(
                job,
                Duration::from_secs(6 * 3600),
                Duration::from_secs(10),
                |_, _| {},
            )
            .await
            .unwrap();
        assert_all_updated(&world, &view, &release).await;
        // The audit trail shows the job was picked up again, not started over by the test.
        assert_eq!(
            world.server().unwrap().jobs.list().unwrap().len(),
            1,
            "seed {seed}"
        );
    })
    .unwrap();
}

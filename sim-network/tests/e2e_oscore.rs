//! A fleet update over OSCORE (RFC 8613) in the simulator: every device has its own context
//! with the server (provisioned before power-on), registers, downloads and reboots with every
//! exchange with the server protected (the device's `oscore` filter under the real engine, the
//! server's `coap::oscore`), over a lossy two-hop mesh. After the reboot into the new image the
//! server's requests go through the device's Echo round (its replay window starts empty at
//! every boot). Every device ends on the new image byte for byte, lists Object 21 in its
//! registration, and keeps its sender sequence reservation in its settings flash.

mod support;

use std::time::Duration;

use sim_network::sim::world::{World, block_on_seeded};
use support::scenario::*;

const IMAGE: usize = 16 * 1024;
const DEVICES: usize = 4;

#[test]
fn a_fleet_updates_end_to_end_over_oscore() {
    let seed = 14;
    let _watchdog = watchdog(format!("seed {seed}"), Duration::from_secs(300));
    block_on_seeded(seed, async move {
        let fw = Firmware::new(seed, IMAGE).unwrap();
        let release = fw.release("2.0.0", 2, IMAGE, None).unwrap();
        let mut cfg = config(DEVICES, lossy(0.05, 2), IMAGE, seed);
        cfg.oscore = true;
        let world = World::start(cfg, fw).await.unwrap();
        world
            .wait_registered(Duration::from_secs(1800))
            .await
            .unwrap();
        let server = world.server().unwrap();
        for d in &world.devices {
            let reg = server.registry.get(&d.device.endpoint).unwrap();
            assert!(
                reg.objects.contains("</21/0>"),
                "seed {seed}: {}",
                reg.objects
            );
        }
        let id = world.add_release(&release, None).unwrap();
        let job = world.start_update(&id).unwrap();
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
        for d in &world.devices {
            assert!(
                d.device.oscore_reserved() > 0,
                "seed {seed}: {} persisted no sequence reservation",
                d.device.endpoint
            );
            assert!(d.device.view().boots >= 2, "seed {seed}: no reboot");
        }
    })
    .unwrap();
}

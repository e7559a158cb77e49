//! Updates complete over lossy meshes: without loss, at 10 % frame loss over 3 hops, at 30 %
//! frame loss, and with bursts of loss over 3 hops. The real server and device engines in virtual
//! time; every device must hold the new image byte for byte, say so itself, and the server's job
//! must say succeeded with Result 1. A failure names the seed that reproduces it.

mod support;

use std::time::Duration;

use sim_network::model::LossModel;
use sim_network::sim::world::{World, block_on_seeded};
use support::scenario::*;

const HOURS: Duration = Duration::from_secs(3600);

/// Updates `devices` devices over `link`; returns (frames lost, retransmissions) on the wire.
fn update_over(
    link: sim_network::model::LinkConfig,
    devices: usize,
    image: usize,
    seed: u64,
) -> (u64, u64) {
    let _watchdog = watchdog(format!("seed {seed}"), Duration::from_secs(300));
    block_on_seeded(seed, async move {
        let fw = Firmware::new(seed, image).unwrap();
        let release = fw.release("2.0.0", 2, image, None).unwrap();
        let world = World::start(config(devices, link, image, seed), fw)
            .await
            .unwrap();
        let view = roll_out(&world, &release, 12 * HOURS).await;
        assert_all_updated(&world, &view, &release).await;
        // Frames lost to the link's loss: collisions (the default contention) aside.
        let mut lost = 0;
        let mut retx = 0;
        for d in &world.devices {
            let t = world.net.traffic(d.addr).unwrap();
            for l in [t.path.up, t.path.down] {
                assert!(l.collisions <= l.frames_lost && l.collisions <= l.channel_busy);
                lost += l.frames_lost - l.collisions;
            }
            retx += t.retransmissions_up + t.retransmissions_down;
        }
        eprintln!(
            "seed {seed}: {devices} devices updated; {lost} frames lost, {retx} retransmissions"
        );
        (lost, retx)
    })
    .unwrap()
}

#[test]
fn updates_complete_without_loss() {
    let (lost, _) = update_over(lossy(0.0, 1), 10, 32 * 1024, 11);
    assert_eq!(lost, 0);
}

#[test]
fn updates_complete_at_10_percent_frame_loss_over_3_hops() {
    let (lost, retx) = update_over(lossy(0.1, 3), 10, 32 * 1024, 12);
    assert!(
        lost > 100 && retx > 50,
        "the scenario must exercise loss: {lost} lost, {retx} retransmissions"
    );
}

#[test]
fn updates_complete_at_30_percent_frame_loss() {
    let (lost, retx) = update_over(lossy(0.3, 1), 5, 16 * 1024, 13);
    assert!(
        lost > 100 && retx > 50,
        "the scenario must exercise loss: {lost} lost, {retx} retransmissions"
    );
}

#[test]
fn updates_complete_with_bursts_of_loss_over_3_hops() {
    let mut link = lossy(0.0, 3);
    link.loss = sim_network::proxy::bursty_loss(0.1, 4.0).unwrap();
    assert!(matches!(link.loss, LossModel::GilbertElliott { .. }));
    let (lost, retx) = update_over(link, 10, 32 * 1024, 14);
    assert!(
        lost > 100 && retx > 50,
        "the scenario must exercise loss: {lost} lost, {retx} retransmissions"
    );
}

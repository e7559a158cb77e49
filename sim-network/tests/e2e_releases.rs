//! Releases a device must refuse or roll back, rolled out by the real server to real device
//! engines over a lossy mesh in virtual time: each device ends Idle with the Update Result the
//! fault calls for, still runs the old image byte for byte, and, when the manifest is at fault,
//! never asked for one image block. An image whose self-test fails is swapped in, fails, is rolled
//! back by the bootloader, and the server sees Result 8.

mod support;

use std::time::Duration;

use lwm2m_server::jobs::JobDeviceStatus;
use sim_network::sim::release::Release;
use sim_network::sim::world::{World, block_on_seeded};
use support::scenario::*;

const LIMIT: Duration = Duration::from_secs(6 * 3600);
const IMAGE: usize = 12 * 1024;
const DEVICES: usize = 3;

/// Rolls out `bad` (after `first`, if given, which must succeed) and checks every device.
fn refused(fault: Fault, expected_result: i64, seed: u64) {
    let _watchdog = watchdog(format!("seed {seed}"), Duration::from_secs(300));
    block_on_seeded(seed, async move {
        let fw = Firmware::new(seed, IMAGE).unwrap();
        let good = fw.release("2.0.0", 2, IMAGE, None).unwrap();
        let world = World::start(config(DEVICES, lossy(0.05, 2), IMAGE, seed), fw)
            .await
            .unwrap();
        // A lower sequence number is only lower than something: update to sequence 2 first.
        let (old, bad): (Release, Release) = match fault {
            Fault::LowerSequence => {
                let view = roll_out(&world, &good, LIMIT).await;
                assert_all_updated(&world, &view, &good).await;
                (
                    good.clone(),
                    world.firmware.release("3.0.0", 1, IMAGE, None).unwrap(),
                )
            }
            Fault::TooLarge => {
                let slot = world.layout.slot_size() as usize;
                let bad = world
                    .firmware
                    .release("2.0.0", 2, slot + 4096, None)
                    .unwrap();
                (factory(&world), bad)
            }
            f => (
                factory(&world),
                world.firmware.release("2.0.0", 2, IMAGE, Some(f)).unwrap(),
            ),
        };
        world
            .wait_registered(Duration::from_secs(1800))
            .await
            .unwrap();
        let requests_before: Vec<u64> = world
            .devices
            .iter()
            .map(|d| world.net.traffic(d.addr).unwrap().image_requests)
            .collect();
        let id = world.add_release(&bad, Some(fault)).unwrap();
        let view = run_job(&world, &id, LIMIT).await;
        for (i, before) in requests_before.iter().enumerate() {
            let rec = job_device(&view, &world, i);
            let ep = &rec.endpoint;
            assert_eq!(
                rec.status,
                JobDeviceStatus::Failed,
                "seed {seed} {fault:?}: {ep} ended {}",
                rec.status
            );
            assert_eq!(
                rec.fw_result,
                Some(expected_result),
                "seed {seed} {fault:?}: {ep}: the server saw Result {:?} ({:?})",
                rec.fw_result,
                rec.error
            );
            // The device itself: Idle, the same Result, the old image running and reported.
            assert_eq!(
                read_text(&world, i, "/5/0/3").await.as_deref(),
                Some("0"),
                "seed {seed} {fault:?}: {ep} State"
            );
            assert_eq!(
                read_text(&world, i, "/5/0/5").await,
                Some(expected_result.to_string()),
                "seed {seed} {fault:?}: {ep} Update Result"
            );
            assert_eq!(
                running_image(&world, i, &old.image, &bad.image),
                "old",
                "seed {seed} {fault:?}: {ep}"
            );
            assert_eq!(
                read_text(&world, i, "/3/0/3").await.as_deref(),
                Some(old.version.as_str()),
                "seed {seed} {fault:?}: {ep} /3/0/3"
            );
            let image_requests = world
                .net
                .traffic(world.devices[i].addr)
                .unwrap()
                .image_requests
                - before;
            if fault.in_manifest() {
                assert_eq!(
                    image_requests, 0,
                    "seed {seed} {fault:?}: {ep} fetched image blocks of a refused manifest"
                );
            } else {
                assert!(
                    image_requests > 0,
                    "seed {seed} {fault:?}: {ep} refused before downloading"
                );
            }
        }
    })
    .unwrap();
}

/// The factory image as a release (for comparing flash contents).
fn factory(world: &World) -> Release {
    Release {
        version: "1.0.0".into(),
        sequence: 0,
        envelope: Vec::new(),
        image: world.firmware.factory.clone(),
    }
}

#[test]
fn a_release_signed_with_an_untrusted_key_is_refused_with_result_5() {
    refused(Fault::WrongKey, 5, 21);
}

#[test]
fn a_tampered_image_is_refused_after_download_with_result_5() {
    refused(Fault::TamperedImage, 5, 22);
}

#[test]
fn a_lower_sequence_number_is_refused_with_result_6() {
    refused(Fault::LowerSequence, 6, 23);
}

#[test]
fn a_release_for_another_class_is_refused_with_result_6() {
    refused(Fault::OtherClass, 6, 24);
}

#[test]
fn an_image_larger_than_the_slot_is_refused_with_result_2() {
    refused(Fault::TooLarge, 2, 25);
}

#[test]
fn a_truncated_manifest_is_refused_with_result_5() {
    refused(Fault::TruncatedManifest, 5, 26);
}

#[test]
fn an_image_that_fails_its_self_test_is_rolled_back_with_result_8() {
    refused(Fault::FailingSelfTest, 8, 27);
}

//! A fleet updated by a delta release (issue 15), end to end in virtual time: the devices run the
//! factory image 1.0.0, the server holds the full 1.0.0, the full 2.0.0 (a rebuild of 1.0.0) and
//! the delta from one to the other, and the job targets the full 2.0.0. The server sends every
//! device the delta by its reported version, the real engine applies the patch into its staging
//! slot, and every device ends on 2.0.0 byte for byte. The same fleet, seed and network updated by
//! the full image asks for many times the blocks and holds the air longer.

mod support;

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sim_network::sim::fleet::{self, FleetReport, FleetRun, Rollout, UpdateKind};
use sim_network::sim::world::{World, block_on_seeded};
use support::scenario::*;

const DEVICES: usize = 12;
const IMAGE: usize = 8 * 1024;

/// The fleet updated by `kind`; its report and the job's audit trail as (endpoint, event, detail).
fn update(kind: UpdateKind, seed: u64) -> (FleetReport, Vec<(String, String, String)>, Rollout) {
    let _watchdog = watchdog(format!("{kind:?} seed {seed}"), Duration::from_secs(300));
    block_on_seeded(seed, async move {
        let mut cfg = config(DEVICES, lossy(0.05, 3), IMAGE, seed);
        cfg.mesh_size = DEVICES / 2;
        let fw = Firmware::new(seed, IMAGE).unwrap();
        let rollout = Rollout::new(&fw, kind, IMAGE).unwrap();
        let world = World::start(cfg.clone(), fw).await.unwrap();
        let run = FleetRun {
            world: cfg,
            time_limit: Duration::from_secs(12 * 3600),
            progress: false,
            update: kind,
            per_mesh: 0,
        };
        let report = fleet::update(&world, &rollout, &run, Instant::now())
            .await
            .unwrap();
        // Every device's ACTIVE slot, read as a debugger would, holds the new image.
        let want: [u8; 32] = Sha256::digest(&rollout.target().image).into();
        for d in &world.devices {
            assert_eq!(
                d.device.active_sha256(IMAGE),
                Some(want),
                "{kind:?} seed {seed}: {} does not run 2.0.0 byte for byte",
                d.device.endpoint
            );
        }
        let server = world.server().unwrap();
        let jobs = server.jobs.list().unwrap();
        assert_eq!(jobs.len(), 1);
        let audit = server
            .store
            .job_audit(jobs[0].id)
            .unwrap()
            .into_iter()
            .map(|l| {
                (
                    l.endpoint.unwrap_or_default(),
                    l.event,
                    l.detail.unwrap_or_default(),
                )
            })
            .collect();
        (report, audit, rollout)
    })
    .unwrap()
}

#[test]
fn a_lossy_fleet_is_updated_by_delta_and_asks_for_a_fraction_of_the_blocks() {
    let seed = 5;
    let (delta, audit, rollout) = update(UpdateKind::Delta, seed);
    let Rollout::Delta(releases) = &rollout else {
        panic!("a delta rollout");
    };
    let patch = releases.delta.image.len();
    assert!(patch * 10 < IMAGE, "a {patch}-byte patch for a rebuild");
    assert_eq!(delta.updated, DEVICES, "seed {seed}: {delta}");
    assert_eq!(
        (delta.sent_delta, delta.fallbacks),
        (DEVICES, 0),
        "seed {seed}: {delta}"
    );
    // The server's audit: every device was sent the delta, none fell back to the full image.
    let sent = format!(
        "delta sent ({patch} bytes, saves {} bytes vs full)",
        IMAGE - patch
    );
    for d in &delta.devices {
        let lines: Vec<_> = audit.iter().filter(|l| l.0 == d.endpoint).collect();
        assert!(
            lines.iter().any(|l| l.1 == "delta-sent" && l.2 == sent),
            "seed {seed}: no {sent:?} for {}: {lines:?}",
            d.endpoint
        );
        assert!(
            !lines.iter().any(|l| l.1 == "delta-fallback"),
            "seed {seed}: {} fell back: {lines:?}",
            d.endpoint
        );
        assert_eq!(d.sent.as_deref(), Some("delta"));
    }

    let (full, audit_full, _) = update(UpdateKind::Full, seed);
    assert_eq!(full.updated, DEVICES, "seed {seed}: {full}");
    assert!(!audit_full.iter().any(|l| l.1.starts_with("delta")));
    eprintln!(
        "seed {seed}: block requests {} by delta, {} by full image; airtime {:.1} s, {:.1} s",
        delta.image_requests, full.image_requests, delta.airtime_s, full.airtime_s
    );
    // What crossed the air: a device that downloads the full image asks for at least
    // IMAGE / 1024 blocks (the largest block size); the delta's devices ask for a tenth of what
    // the full image's did.
    assert!(
        full.image_requests >= (DEVICES * IMAGE / 1024) as u64,
        "{full}"
    );
    assert!(
        delta.image_requests * 10 < full.image_requests,
        "seed {seed}: {} block requests by delta, {} by full image",
        delta.image_requests,
        full.image_requests
    );
    // Registration, the manifest and the reports cost the same either way, so the air saved
    // is less than the blocks saved, but still most of it.
    assert!(
        delta.airtime_s * 3.0 < full.airtime_s,
        "seed {seed}: airtime {:.1} s by delta, {:.1} s by full image",
        delta.airtime_s,
        full.airtime_s
    );
}

//! Update campaigns over 200 simulated devices on four Thread meshes (50 devices each, one /64
//! per border router), in virtual time: the real server runs each campaign's waves, one update
//! job per device, against the real device engines. A wave with devices that refuse the release
//! halts the campaign before the next wave touches anyone; a clean campaign reaches 100 % with
//! the planned wave sizes; pause, resume and abort do what they say; a server killed in the
//! middle carries on; and the recorded timings never show more downloads on a mesh at once than
//! the per-mesh limit allows.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use lwm2m_server::campaign::db::CampaignDeviceRecord;
use lwm2m_server::campaign::target::TargetSpec;
use lwm2m_server::campaign::{CampaignRequest, CampaignView};
use sim_network::model::LinkConfig;
use sim_network::sim::release::Release;
use sim_network::sim::world::{World, WorldConfig, block_on_seeded};
use support::scenario::*;

const DEVICES: usize = 200;
const MESH: usize = 50;
const IMAGE: usize = 4 * 1024;
const LIMIT: Duration = Duration::from_secs(12 * 3600);
const PER_MESH: u32 = 3;
const MAX_CONCURRENT: u32 = 10;

fn world_config(seed: u64, other_class: Vec<usize>) -> WorldConfig {
    WorldConfig {
        devices: DEVICES,
        mesh_size: MESH,
        link: LinkConfig {
            hops: 2,
            ..LinkConfig::default()
        },
        image_size: IMAGE,
        block_size: 256,
        seed,
        boot_spread: Duration::from_secs(20),
        // Devices re-register well within a long campaign.
        lifetime_s: 3600,
        other_class,
        ..WorldConfig::default()
    }
}

/// Every device (pattern `sim-*`), default waves 1,10,50,100. The meshes take turns, so the
/// device at index k of mesh m is at position 4k + m: wave 1 holds index 0 of meshes 0 and 1,
/// wave 2 index 0 of meshes 2 and 3 and indices 1..=4 of every mesh, wave 3 indices 5..=24,
/// wave 4 the rest.
fn request(release: &str) -> CampaignRequest {
    CampaignRequest {
        release: release.into(),
        name: Some("e2e".into()),
        target: TargetSpec {
            pattern: Some("sim-*".into()),
            ..TargetSpec::default()
        },
        failure_threshold: Some(0.1),
        soak_s: Some(120.0),
        max_concurrent: Some(MAX_CONCURRENT),
        max_per_mesh: Some(PER_MESH),
        ..CampaignRequest::default()
    }
}

async fn setup(world: &World, version: &str) -> (String, Release) {
    let seed = world.cfg.seed;
    world
        .wait_registered(Duration::from_secs(1800))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let release = world.firmware.release(version, 2, IMAGE, None).unwrap();
    let id = world.add_release(&release, None).unwrap();
    (id, release)
}

fn device<'v>(view: &'v CampaignView, ep: &str) -> &'v CampaignDeviceRecord {
    view.devices
        .as_ref()
        .and_then(|d| d.iter().find(|d| d.endpoint == ep))
        .unwrap_or_else(|| panic!("{ep} is not in the campaign"))
}

/// Polls the campaign every 2 s of virtual time until `pred` holds (bounded).
async fn wait_until(
    world: &World,
    id: i64,
    what: &str,
    mut pred: impl FnMut(&CampaignView) -> bool,
) -> CampaignView {
    let seed = world.cfg.seed;
    for _ in 0..(LIMIT.as_secs() / 2) {
        let v = world.campaign(id).unwrap();
        if pred(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    panic!("seed {seed}: campaign {id} never reached: {what}");
}

fn now_ms(world: &World) -> i64 {
    world.server().unwrap().clock.now_ms()
}

/// A device the campaign never touched: no job on the server, never started, not one image
/// block fetched, the factory image still running and Object 5 Idle with Result 0.
fn assert_untouched(world: &World, view: &CampaignView, i: usize) {
    let seed = world.cfg.seed;
    let ep = &world.devices[i].device.endpoint;
    let d = device(view, ep);
    assert_eq!(
        (d.job_id, d.started_at_ms),
        (None, None),
        "seed {seed}: {ep} was started: {d:?}"
    );
    let jobs = world.server().unwrap().jobs.list().unwrap();
    assert!(
        !jobs
            .iter()
            .any(|j| j.devices.iter().any(|jd| &jd.endpoint == ep)),
        "seed {seed}: the server has a job for {ep}"
    );
    assert_eq!(
        world
            .net
            .traffic(world.devices[i].addr)
            .unwrap()
            .image_requests,
        0,
        "seed {seed}: {ep} fetched image blocks"
    );
    let v = world.devices[i].device.view();
    assert_eq!((v.fw_state, v.fw_result), (0, 0), "seed {seed}: {ep}");
    assert_eq!(
        world.devices[i].device.active_version().as_deref(),
        Some("1.0.0"),
        "seed {seed}: {ep}"
    );
}

fn devices(view: &CampaignView) -> &[CampaignDeviceRecord] {
    view.devices.as_deref().unwrap_or_default()
}

/// Most devices in flight at once, overall and per mesh, from the recorded start and finish
/// times (a device still running counts until `now`).
fn peak_concurrency(view: &CampaignView, now: i64) -> (usize, HashMap<String, usize>) {
    let mut edges: Vec<(i64, i32, String)> = Vec::new();
    for d in devices(view) {
        if let Some(start) = d.started_at_ms {
            let mesh = d.mesh.clone().unwrap_or_default();
            edges.push((start, 1, mesh.clone()));
            edges.push((d.finished_at_ms.unwrap_or(now), -1, mesh));
        }
    }
    // Ends before starts at the same millisecond: a slot freed and taken in one pass.
    edges.sort_by_key(|(t, delta, _)| (*t, *delta));
    let (mut total, mut peak) = (0i64, 0usize);
    let mut cur: HashMap<String, i64> = HashMap::new();
    let mut peaks: HashMap<String, usize> = HashMap::new();
    for (_, delta, mesh) in edges {
        total += i64::from(delta);
        let c = cur.entry(mesh.clone()).or_default();
        *c += i64::from(delta);
        peak = peak.max(total as usize);
        let p = peaks.entry(mesh).or_default();
        *p = (*p).max(*c as usize);
    }
    (peak, peaks)
}

/// The limits the test asked for (not what the server says it stored) hold in the timings.
fn assert_limits(view: &CampaignView, now: i64, seed: u64) {
    let max = if view.campaign.name.as_deref() == Some("clean") {
        100
    } else {
        MAX_CONCURRENT as usize
    };
    let (peak, per_mesh) = peak_concurrency(view, now);
    assert!(
        peak <= max,
        "seed {seed}: {peak} devices in flight at once, limit {max}"
    );
    for (mesh, p) in &per_mesh {
        assert!(
            *p <= PER_MESH as usize,
            "seed {seed}: {p} devices of mesh {mesh} in flight at once, limit {PER_MESH}"
        );
    }
}

#[test]
fn a_clean_campaign_reaches_100_percent_in_waves_within_the_mesh_limits() {
    let seed = 71;
    let _watchdog = watchdog(format!("seed {seed}"), Duration::from_secs(600));
    block_on_seeded(seed, async move {
        let fw = Firmware::new(seed, IMAGE).unwrap();
        let world = World::start(world_config(seed, vec![]), fw).await.unwrap();
        let (rel, release) = setup(&world, "2.0.0").await;
        let mut req = request(&rel);
        req.soak_s = Some(60.0);
        // Here the per-mesh limit binds: 4 meshes x 3 < 100.
        req.max_concurrent = Some(100);
        req.name = Some("clean".into());
        let id = world.start_campaign(&req).await.unwrap();
        let view = world
            .wait_campaign(id, LIMIT, Duration::from_secs(20), |v, _| {
                assert_limits(v, i64::MAX, seed);
            })
            .await
            .unwrap();
        let c = &view.campaign;
        assert_eq!(c.state, "completed", "seed {seed}: {:?}", c.reason);
        let sizes: Vec<u64> = view.waves.iter().map(|w| w.wave.size).collect();
        assert_eq!(sizes, vec![2, 18, 80, 100], "seed {seed}");
        for w in &view.waves {
            assert_eq!(
                w.counts.succeeded, w.wave.size,
                "seed {seed}: wave {} {:?}",
                w.wave.wave, w.counts
            );
            assert!(w.wave.started_at_ms.is_some() && w.wave.finished_at_ms.is_some());
        }
        assert_eq!(view.totals.succeeded, DEVICES as u64);
        // Waves are sequential with a soak of 60 s between them.
        for pair in view.waves.windows(2) {
            let (a, b) = (&pair[0].wave, &pair[1].wave);
            assert!(
                b.started_at_ms.unwrap() >= a.finished_at_ms.unwrap() + 60_000,
                "seed {seed}: wave {} started before the soak after wave {} ended",
                b.wave,
                a.wave
            );
        }
        // Every device's start falls in its own wave.
        for d in devices(&view) {
            let w = &view.waves[d.wave as usize].wave;
            let started = d.started_at_ms.unwrap();
            assert!(started >= w.started_at_ms.unwrap() && started <= w.finished_at_ms.unwrap());
        }
        // The limits were met, and reached (else this test could not catch a breach).
        assert_limits(&view, i64::MAX, seed);
        let (peak, per_mesh) = peak_concurrency(&view, i64::MAX);
        assert_eq!(
            peak,
            (DEVICES / MESH) * PER_MESH as usize,
            "seed {seed}: every mesh at its limit at once was never reached"
        );
        assert!(
            per_mesh.values().all(|p| *p == PER_MESH as usize),
            "seed {seed}: a mesh never reached its limit: {per_mesh:?}"
        );
        assert_eq!(
            per_mesh.len(),
            DEVICES / MESH,
            "seed {seed}: meshes {per_mesh:?}"
        );
        // The devices themselves run the new image.
        for i in [0, 10, 99, 150, 199] {
            assert_eq!(
                running_image(&world, i, &world.firmware.factory, &release.image),
                "new",
                "seed {seed}: device {i}"
            );
        }
        eprintln!(
            "seed {seed}: 200 devices in {:?} of virtual time",
            world.elapsed()
        );
    })
    .unwrap();
}

#[test]
fn a_wave_with_failing_devices_halts_the_campaign_before_the_next_wave_touches_anyone() {
    let seed = 72;
    let _watchdog = watchdog(format!("seed {seed}"), Duration::from_secs(600));
    // Index 3 of every mesh is built for another board: positions 12..=15, all in wave 2.
    let foreign: Vec<usize> = (0..DEVICES / MESH).map(|m| m * MESH + 3).collect();
    block_on_seeded(seed, async move {
        let fw = Firmware::new(seed, IMAGE).unwrap();
        let world = World::start(world_config(seed, foreign.clone()), fw)
            .await
            .unwrap();
        let (rel, _) = setup(&world, "2.0.0").await;
        let id = world.start_campaign(&request(&rel)).await.unwrap();
        let view = world
            .wait_campaign(id, LIMIT, Duration::from_secs(10), |v, _| {
                assert_limits(v, i64::MAX, seed);
            })
            .await
            .unwrap();
        let c = &view.campaign;
        assert_eq!(c.state, "halted", "seed {seed}: {c:?}");
        assert_eq!(c.current_wave, 1, "seed {seed}: halted in another wave");
        let reason = c.reason.clone().unwrap_or_default();
        assert!(reason.contains("wave 2"), "seed {seed}: reason {reason:?}");
        assert_eq!(view.waves[0].counts.succeeded, 2, "seed {seed}");
        let w2 = &view.waves[1].counts;
        assert!(w2.failed >= 1, "seed {seed}: {w2:?}");
        assert_eq!(w2.running, 0, "seed {seed}: {w2:?}");
        for d in devices(&view).iter().filter(|d| d.status == "failed") {
            let i = world
                .devices
                .iter()
                .position(|x| x.device.endpoint == d.endpoint)
                .unwrap();
            assert!(
                foreign.contains(&i),
                "seed {seed}: {} failed: {:?}",
                d.endpoint,
                d.error
            );
            assert!(
                d.error.as_deref().unwrap_or("").contains("Result 6"),
                "seed {seed}: {} failed with {:?}",
                d.endpoint,
                d.error
            );
        }
        // No later wave started, and none of its devices was touched.
        for w in &view.waves[2..] {
            assert_eq!(
                w.wave.started_at_ms, None,
                "seed {seed}: wave {} started",
                w.wave.wave
            );
            assert_eq!(w.counts.skipped, w.wave.size, "seed {seed}: {:?}", w.counts);
        }
        let later: Vec<usize> = (0..DEVICES)
            .filter(|i| {
                let ep = &world.devices[*i].device.endpoint;
                device(&view, ep).wave >= 2
            })
            .collect();
        assert_eq!(later.len(), 180, "seed {seed}");
        for i in later {
            assert_untouched(&world, &view, i);
        }
    })
    .unwrap();
}

#[test]
fn pause_stops_new_starts_resume_carries_on_and_abort_cancels_and_skips() {
    let seed = 73;
    let _watchdog = watchdog(format!("seed {seed}"), Duration::from_secs(600));
    block_on_seeded(seed, async move {
        let fw = Firmware::new(seed, IMAGE).unwrap();
        let world = World::start(world_config(seed, vec![]), fw).await.unwrap();
        let (rel, _) = setup(&world, "2.0.0").await;
        let id = world.start_campaign(&request(&rel)).await.unwrap();
        let server = world.server().unwrap().clone();

        // Pause in the middle of wave 3.
        wait_until(&world, id, "wave 3 running", |v| {
            v.campaign.current_wave == 2
                && v.waves[2].counts.running > 0
                && v.waves[2].counts.succeeded > 10
        })
        .await;
        server.campaigns.pause(id).unwrap();
        let paused_at = now_ms(&world);
        // The running ones finish; nothing new starts, however long the pause.
        let v = wait_until(&world, id, "nothing in flight", |v| v.totals.running == 0).await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        let v2 = world.campaign(id).unwrap();
        assert_eq!(v2.campaign.state, "paused", "seed {seed}");
        assert_eq!(v2.totals, v.totals, "seed {seed}: progress while paused");
        let queued = v2.waves[2].counts.queued;
        assert!(
            queued > 0,
            "seed {seed}: wave 3 finished before the pause took effect"
        );
        assert!(
            devices(&v2)
                .iter()
                .all(|d| d.started_at_ms.is_none_or(|t| t <= paused_at)),
            "seed {seed}: a device started after the pause"
        );
        assert!(
            server.campaigns.pause(id).is_err(),
            "a paused campaign cannot be paused again"
        );

        // Resume: wave 3 completes and wave 4 starts; abort in the middle of it.
        server.campaigns.resume(id).unwrap();
        wait_until(&world, id, "wave 4 running", |v| {
            v.campaign.current_wave == 3
                && v.waves[3].counts.running > 0
                && v.waves[3].counts.succeeded > 5
        })
        .await;
        assert_eq!(
            world.campaign(id).unwrap().waves[2].counts.succeeded,
            80,
            "seed {seed}"
        );
        server.campaigns.abort(id).unwrap();
        let aborted_at = now_ms(&world);
        let view = world
            .wait_campaign(id, LIMIT, Duration::from_secs(5), |_, _| {})
            .await
            .unwrap();
        assert_eq!(view.campaign.state, "aborted", "seed {seed}");
        assert!(
            server.campaigns.resume(id).is_err(),
            "an aborted campaign cannot be resumed"
        );
        let w4 = &view.waves[3].counts;
        assert_eq!(w4.queued + w4.running, 0, "seed {seed}: {w4:?}");
        assert!(w4.skipped > 0, "seed {seed}: {w4:?}");
        assert_eq!(
            w4.succeeded + w4.cancelled + w4.skipped,
            100,
            "seed {seed}: {w4:?}"
        );
        for d in devices(&view) {
            assert!(
                d.started_at_ms.is_none_or(|t| t <= aborted_at),
                "seed {seed}: {} started after the abort",
                d.endpoint
            );
        }
        // A cancelled device keeps its old image; a skipped one was never touched.
        for (i, sd) in world.devices.iter().enumerate() {
            let d = device(&view, &sd.device.endpoint);
            match d.status.as_str() {
                "skipped" => assert_untouched(&world, &view, i),
                "cancelled" => assert_eq!(
                    sd.device.active_version().as_deref(),
                    Some("1.0.0"),
                    "seed {seed}: {}",
                    d.endpoint
                ),
                _ => {}
            }
        }
        assert_limits(&view, i64::MAX, seed);
    })
    .unwrap();
}

#[test]
fn a_server_killed_mid_campaign_keeps_the_soak_deadline_and_finishes_the_campaign() {
    let seed = 74;
    let _watchdog = watchdog(format!("seed {seed}"), Duration::from_secs(600));
    block_on_seeded(seed, async move {
        let fw = Firmware::new(seed, IMAGE).unwrap();
        let mut world = World::start(world_config(seed, vec![]), fw).await.unwrap();
        let (rel, release) = setup(&world, "2.0.0").await;
        let mut req = request(&rel);
        req.soak_s = Some(600.0);
        let id = world.start_campaign(&req).await.unwrap();

        // Killed during the soak after wave 2: the soak keeps its deadline.
        let v = wait_until(&world, id, "soaking after wave 2", |v| {
            v.campaign.current_wave == 1 && v.campaign.state == "soaking"
        })
        .await;
        let until = v.campaign.soak_until_ms.unwrap();
        world.restart_server(Duration::from_secs(30)).await.unwrap();
        let v = world.campaign(id).unwrap();
        assert_eq!(
            (v.campaign.state.as_str(), v.campaign.soak_until_ms),
            ("soaking", Some(until)),
            "seed {seed}"
        );

        // Killed in the middle of wave 3, with devices in flight: they carry on.
        let v = wait_until(&world, id, "wave 3 half done", |v| {
            v.campaign.current_wave == 2
                && v.waves[2].counts.succeeded >= 40
                && v.waves[2].counts.running > 0
        })
        .await;
        let in_flight_before: Vec<String> = devices(&v)
            .iter()
            .filter(|d| d.status == "running")
            .map(|d| d.endpoint.clone())
            .collect();
        world.restart_server(Duration::from_secs(30)).await.unwrap();

        let view = world
            .wait_campaign(id, LIMIT, Duration::from_secs(10), |_, _| {})
            .await
            .unwrap();
        assert_eq!(
            view.campaign.state, "completed",
            "seed {seed}: {:?}",
            view.campaign.reason
        );
        assert_eq!(
            view.totals.succeeded, DEVICES as u64,
            "seed {seed}: {:?}",
            view.totals
        );
        let w3 = &view.waves[2].wave;
        assert!(
            w3.started_at_ms.unwrap() >= until,
            "seed {seed}: wave 3 started before the soak deadline"
        );
        // The devices in flight at the kill kept their jobs (no second job, no restart).
        for ep in &in_flight_before {
            let d = device(&view, ep);
            assert_eq!(d.status, "succeeded", "seed {seed}: {ep}: {d:?}");
            let jobs = world.server().unwrap().jobs.list().unwrap();
            let n = jobs
                .iter()
                .filter(|j| j.devices.iter().any(|jd| &jd.endpoint == ep))
                .count();
            assert_eq!(n, 1, "seed {seed}: {ep} has {n} jobs");
        }
        assert_limits(&view, i64::MAX, seed);
        for i in 0..DEVICES {
            assert_eq!(
                running_image(&world, i, &world.firmware.factory, &release.image),
                "new",
                "seed {seed}: device {i}"
            );
        }
    })
    .unwrap();
}

//! The update on real OpenThread nodes (feature `openthread`): 10 devices three radio hops from
//! the border router, 10 % frame loss on every link, updated 1.0.0 → 2.0.0 through the real
//! lwm2m-server, every device's flash checked byte for byte. The mesh forms itself (MLE attach,
//! router promotion), OpenThread's MAC recovers lost frames, and the routers forward over hops.
#![cfg(feature = "openthread")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sim_network::model::LossModel;
use sim_network::sim::release::Firmware;
use sim_network::sim::world::block_on_seeded;
use sim_network::thread::{ThreadConfig, run_update};

fn config(dir: PathBuf, devices: usize, hops: u32, loss: f64, image_size: usize) -> ThreadConfig {
    ThreadConfig {
        dir,
        node_exe: PathBuf::from(env!("CARGO_BIN_EXE_sim-network")),
        devices,
        hops,
        loss: LossModel::Bernoulli { p: loss },
        image_size,
        block_size: 64,
        window: 4,
        seed: 3,
        time_limit: Duration::from_secs(4 * 3600),
        progress: false,
    }
}

#[test]
fn ten_devices_three_hops_ten_percent_loss_all_updated_on_openthread() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path().to_path_buf(), 10, 3, 0.1, 8 * 1024);
    let firmware = Firmware::new(cfg.seed, cfg.image_size).unwrap();
    let release = firmware.release("2.0.0", 2, cfg.image_size, None).unwrap();
    let out = block_on_seeded(cfg.seed, async {
        run_update(&cfg, &firmware, &release, Instant::now()).await
    })
    .unwrap()
    .unwrap();
    let r = &out.report;
    for d in &r.devices {
        assert_eq!(d.outcome, "updated", "{d:?}");
        assert_eq!(d.running_version, "2.0.0");
        assert!(
            d.image_verified,
            "{}: flash differs from the release",
            d.endpoint
        );
        assert_eq!(d.update_result, Some(1));
    }
    assert_eq!(r.updated, 10);
    // The mesh formed itself: the border router leads, the routers were promoted, the devices
    // are children (of the routers in ring 2: nothing else is in their range).
    assert_eq!(out.roles.first().map(String::as_str), Some("leader"));
    let routers = &out.roles[1..out.roles.len() - 10];
    assert!(!routers.is_empty());
    assert!(routers.iter().all(|r| r == "router"), "{routers:?}");
    assert!(
        out.roles[out.roles.len() - 10..]
            .iter()
            .all(|r| r == "child")
    );
    // At 10 % loss OpenThread's MAC retransmitted, and CCA, ACKs and retries all ran.
    assert!(out.mac.tx_retry > 0, "{:?}", out.mac);
    assert!(out.medium.lost > 0);
    // Every block crossed three hops each way, so there is far more on the air than datagrams.
    assert!(out.medium.frames > 3 * (r.datagrams_up + r.datagrams_down));
}

#[test]
fn a_missing_node_binary_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path().to_path_buf(), 1, 1, 0.0, 4096);
    cfg.node_exe = tmp.path().join("no-such-binary");
    let firmware = Firmware::new(cfg.seed, cfg.image_size).unwrap();
    let release = firmware.release("2.0.0", 2, cfg.image_size, None).unwrap();
    let err = block_on_seeded(cfg.seed, async {
        run_update(&cfg, &firmware, &release, Instant::now()).await
    })
    .unwrap()
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot start node 1"),
        "{err:#}"
    );
}

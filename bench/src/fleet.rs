//! Table 5: a fleet update in the simulator: 1000 devices at 10 % frame loss over 3 hops.

use std::time::Duration;

use anyhow::Result;
use sim_network::model::{LinkConfig, LossModel};
use sim_network::sim::fleet::{self, FleetRun};
use sim_network::sim::world::WorldConfig;

use crate::report::{Table, num};

/// `(devices, image bytes)` per scale.
pub fn run(devices: usize, image_size: usize, seeds: &[u64], strict: bool) -> Result<Table> {
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for &seed in seeds {
        let run = FleetRun {
            world: WorldConfig {
                devices,
                mesh_size: 50,
                link: LinkConfig {
                    loss: LossModel::Bernoulli { p: 0.1 },
                    hops: 3,
                    ..LinkConfig::default()
                },
                image_size,
                seed,
                ..WorldConfig::default()
            },
            time_limit: Duration::from_secs(24 * 3600),
            progress: false,
        };
        eprintln!("fleet: {devices} devices, {image_size} B, seed {seed}");
        let r = fleet::run(&run)?;
        anyhow::ensure!(
            !strict || r.all_updated(),
            "fleet seed {seed}: {}/{} updated",
            r.updated,
            r.device_count
        );
        rows.push(vec![
            seed.to_string(),
            format!("{}/{}", r.updated, r.device_count),
            num(r.virtual_time_s / 60.0),
            num(r.airtime_s / 3600.0),
            format!("{:.1}", r.datagrams_up as f64 / 1e6),
            format!("{:.1}", r.datagrams_down as f64 / 1e6),
            format!("{:.2}", r.retransmissions as f64 / 1e6),
            num(r.wall_time_s),
        ]);
        let mut v = serde_json::to_value(&r)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("devices"); // one line per device is in `sim-network fleet --json`
        }
        raw.push(v);
    }
    Ok(Table {
        id: "fleet".into(),
        title: format!(
            "5. Fleet: {devices} devices, 10 % frame loss per hop, 3 hops, {} KiB image",
            image_size / 1024
        ),
        columns: [
            "seed",
            "updated",
            "virtual time to 100 % (min)",
            "airtime, all media (h)",
            "datagrams up (M)",
            "datagrams down (M)",
            "CoAP retransmissions (M)",
            "wall time (s)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![
            "`sim-network fleet`: the real lwm2m-server and device engines in one process in virtual \
             time, meshes of 50 devices (one border router and one airtime each), 64-byte blocks, \
             window 4. Virtual time counts from the start of the job to the last device's result. \
             One simulation runs on one core."
                .into(),
        ],
        raw: serde_json::Value::Array(raw),
    })
}

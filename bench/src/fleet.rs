//! Table 5: a fleet update in the simulator, `sim-network fleet` run as a process: 1000 devices at
//! 10 % frame loss per hop over 3 hops, on the raw radio and with MAC acknowledgements, per seed,
//! by the full image and by a delta release (issue 15: `--update delta`, a rebuild of the factory
//! image).
//! Several labelled builds of `sim-network` (each with its own device engine) can run side by
//! side, to compare the downloader before and after on the same model.

use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::report::{Table, num};

/// A build of `sim-network` (with its device engine) to measure.
pub type Sim = crate::procs::Build;

/// The MAC options the table runs, as `--mac` takes them, with their column text.
const MACS: [(&str, &str); 2] = [("raw", "raw"), ("ack", "ACK")];

/// The update kinds the table runs, as `--update` takes them.
const UPDATES: [&str; 2] = ["full", "delta"];

/// Runs `sim fleet` with `mac`, `update` and `seed`; its JSON report without the per-device
/// lines.
fn fleet(
    sim: &Sim,
    devices: usize,
    image: usize,
    (mac, update): (&str, &str),
    seed: u64,
) -> Result<serde_json::Value> {
    let out = Command::new(&sim.path)
        .args([
            "fleet",
            "--devices",
            &devices.to_string(),
            "--mesh-size",
            "50",
        ])
        .args([
            "--loss", "0.1", "--hops", "3", "--mac", mac, "--update", update,
        ])
        .args([
            "--image-size",
            &image.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .args(["--time-limit-h", "24", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", sim.path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} fleet --mac {mac} --update {update} --seed {seed} printed no report (exit {:?})",
            sim.path.display(),
            out.status.code()
        )
    })?;
    if let Some(o) = v.as_object_mut() {
        o.remove("devices"); // one line per device is in `sim-network fleet --json`
    }
    Ok(v)
}

/// What table 5 runs besides the builds.
pub struct FleetRun<'a> {
    pub devices: usize,
    pub image: usize,
    pub seeds: &'a [u64],
    /// MAC options by `--mac` name (`raw`, `ack`).
    pub macs: &'a [String],
    /// Update kinds by `--update` name (`full`, `delta`).
    pub updates: &'a [String],
    /// Simulations at a time (each uses one core).
    pub jobs: usize,
    /// Every device must update (the smoke run's check).
    pub strict: bool,
}

/// Runs every build × MAC × seed.
pub fn run(sims: &[Sim], fr: &FleetRun) -> Result<Table> {
    let FleetRun {
        devices,
        image,
        seeds,
        jobs,
        strict,
        ..
    } = *fr;
    for m in fr.macs {
        anyhow::ensure!(
            MACS.iter().any(|&(name, _)| name == m),
            "--fleet-mac {m:?}: give raw, ack or both"
        );
    }
    for u in fr.updates {
        anyhow::ensure!(
            UPDATES.contains(&u.as_str()),
            "--fleet-update {u:?}: give full, delta or both"
        );
    }
    let macs: Vec<(&str, &str)> = MACS
        .into_iter()
        .filter(|(name, _)| fr.macs.iter().any(|m| m == name))
        .collect();
    let updates: Vec<&str> = UPDATES
        .into_iter()
        .filter(|u| fr.updates.iter().any(|x| x == u))
        .collect();
    let labelled = sims.len() > 1;
    let plan: Vec<(&Sim, &str, &str, &str, u64)> = sims
        .iter()
        .flat_map(|sim| {
            let updates = &updates;
            macs.iter().flat_map(move |&(mac, column)| {
                updates.iter().flat_map(move |&update| {
                    seeds
                        .iter()
                        .map(move |&seed| (sim, mac, column, update, seed))
                })
            })
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<serde_json::Value>>>> =
        plan.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, plan.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&(sim, mac, _, update, seed)) = plan.get(i) else {
                        return;
                    };
                    eprintln!(
                        "fleet{}: {devices} devices, {image} B by {update}, MAC {mac}, seed {seed}",
                        if labelled {
                            format!(" {}", sim.label)
                        } else {
                            String::new()
                        }
                    );
                    let r = fleet(sim, devices, image, (mac, update), seed);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for (&(sim, mac, mac_column, update, seed), slot) in plan.iter().zip(results) {
        let r = slot
            .into_inner()
            .ok()
            .flatten()
            .context("a fleet run did not report")??;
        let int = |k: &str| r[k].as_u64().unwrap_or(0);
        let float = |k: &str| r[k].as_f64().unwrap_or(0.0);
        anyhow::ensure!(
            !strict || int("updated") == devices as u64,
            "fleet MAC {mac} {update} seed {seed}: {}/{devices} updated",
            int("updated")
        );
        anyhow::ensure!(
            !strict || update != "delta" || int("sent_delta") == devices as u64,
            "fleet MAC {mac} delta seed {seed}: the delta went to {}/{devices} devices",
            int("sent_delta")
        );
        let mut row = Vec::new();
        if labelled {
            row.push(sim.label.clone());
        }
        let sent = if update == "delta" {
            format!(
                "delta ({} B, {} fell back)",
                int("payload_size"),
                int("fallbacks")
            )
        } else {
            "full".to_string()
        };
        row.extend([
            mac_column.to_string(),
            sent,
            seed.to_string(),
            format!("{}/{}", int("updated"), int("device_count")),
            num(float("virtual_time_s") / 60.0),
            num(float("airtime_s") / 3600.0),
            format!("{:.2}", int("datagrams_up") as f64 / 1e6),
            format!("{:.2}", int("datagrams_down") as f64 / 1e6),
            format!("{:.2}", int("retransmissions") as f64 / 1e6),
            format!("{:.2}", int("mac_retries") as f64 / 1e6),
            num(float("wall_time_s")),
        ]);
        rows.push(row);
        let mut r = r;
        if let Some(o) = r.as_object_mut() {
            o.insert("build".into(), sim.label.clone().into());
            o.insert("mac".into(), mac.into());
            o.insert("update".into(), update.into());
        }
        raw.push(r);
    }
    let mut columns: Vec<String> = if labelled {
        vec!["build".into()]
    } else {
        vec![]
    };
    columns.extend(
        [
            "MAC",
            "update (bytes sent per device)",
            "seed",
            "updated",
            "virtual time to the last result (min)",
            "airtime, all media (h)",
            "datagrams up (M)",
            "datagrams down (M)",
            "CoAP retransmissions (M)",
            "MAC retries (M)",
            "wall time (s)",
        ]
        .map(String::from),
    );
    let mut notes = vec![
        "`sim-network fleet --loss 0.1 --hops 3 --mac raw|ack` with its default block size and \
         window: the real lwm2m-server and device engines in one process in virtual time, meshes \
         of 50 devices (one border router each; the 3 hops of a mesh hear each other, so they take \
         turns on the air). Virtual time counts from the start of the job to the last device's \
         result (a device's job ends at the latest after 3 download attempts of 4 h, the \
         server's defaults); airtime is what frames (and acknowledgements) held on all media. One \
         simulation runs on one core; with `--fleet-jobs` above 1 they share the machine's cores, \
         and the wall times say so."
            .to_string(),
    ];
    if jobs > 1 {
        notes.push(format!("This run: {jobs} simulations at a time."));
    }
    if updates.len() > 1 {
        notes.push(delta_note(&macs, seeds, &raw));
    }
    if labelled {
        notes.push(speedups(sims, seeds, &macs, &raw));
    }
    Ok(Table {
        id: "fleet".into(),
        title: format!(
            "5. Fleet: {devices} devices, 10 % frame loss per hop, 3 hops, {} KiB image",
            image / 1024
        ),
        columns,
        rows,
        notes,
        raw: serde_json::Value::Array(raw),
    })
}

/// Airtime and virtual time of the full image over the delta's, per MAC and seed (first build).
fn delta_note(macs: &[(&str, &str)], seeds: &[u64], raw: &[serde_json::Value]) -> String {
    let find = |mac: &str, update: &str, seed: u64| {
        raw.iter()
            .find(|r| r["mac"] == mac && r["update"] == update && r["seed"] == seed)
    };
    let mut parts = Vec::new();
    for &(mac, column) in macs {
        for &seed in seeds {
            if let (Some(f), Some(d)) = (find(mac, "full", seed), find(mac, "delta", seed)) {
                let ratio =
                    |k: &str| f[k].as_f64().unwrap_or(0.0) / d[k].as_f64().unwrap_or(0.0).max(1e-9);
                parts.push(format!(
                    "{column} seed {seed}: {:.1}× the airtime, {:.1}× the virtual time",
                    ratio("airtime_s"),
                    ratio("virtual_time_s")
                ));
            }
        }
    }
    format!(
        "Delta rows (`--update delta`): 2.0.0 is a rebuild of the factory image (its header and one \
         60-byte region differ) and the server holds the full 1.0.0, the full 2.0.0 (the job's \
         target) and the delta from 1.0.0 (a detools patch, heatshrink); it sends each device \
         the delta by the version the device reports, and the engine applies it. The full image \
         over the delta, same seed and network: {}.",
        parts.join("; ")
    )
}

/// Virtual time of the first build over each other build's, per MAC, over the seeds.
fn speedups(
    sims: &[Sim],
    seeds: &[u64],
    macs: &[(&str, &str)],
    raw: &[serde_json::Value],
) -> String {
    let total = |label: &str, mac: &str| -> f64 {
        raw.iter()
            .filter(|r| r["build"] == label && r["mac"] == mac)
            .map(|r| r["virtual_time_s"].as_f64().unwrap_or(0.0))
            .sum()
    };
    let mut parts = Vec::new();
    for &(mac, column) in macs {
        let base = total(&sims[0].label, mac);
        for sim in &sims[1..] {
            let t = total(&sim.label, mac);
            parts.push(format!(
                "{column}: {} is {:.2}× as fast as {} in virtual time",
                sim.label,
                base / t.max(1e-9),
                sims[0].label
            ));
        }
    }
    format!("Over seeds {seeds:?}: {}.", parts.join("; "))
}

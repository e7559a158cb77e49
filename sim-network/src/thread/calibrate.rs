//! `sim-network calibrate`: one scenario on the model and on real OpenThread nodes, side by side,
//! to tell where the model's defaults are off. Both runs use the same devices, image, block size,
//! window, hops, loss per frame and seed, and the real lwm2m-server and device engine.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant as WallInstant};

use anyhow::Result;
use serde::Serialize;

use super::world::{ThreadConfig, ThreadOutcome, run_update};
use crate::model::{Contention, LinkConfig, LossModel};
use crate::sim::fleet::{self, FleetReport, FleetRun};
use crate::sim::release::Firmware;
use crate::sim::world::WorldConfig;

/// The scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub devices: usize,
    pub hops: u32,
    pub loss: f64,
    pub image_size: usize,
    pub seed: u64,
    /// The model's contention (the OpenThread run has its own).
    pub contention: Contention,
    pub dir: PathBuf,
    pub node_exe: PathBuf,
}

/// One figure on both stacks.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub figure: &'static str,
    pub model: Option<f64>,
    pub openthread: f64,
}

impl Row {
    /// The model's error relative to OpenThread, when both have the figure.
    pub fn model_off_by(&self) -> Option<f64> {
        let m = self.model?;
        (self.openthread != 0.0).then(|| (m - self.openthread) / self.openthread)
    }
}

/// Both runs and the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    pub devices: usize,
    pub hops: u32,
    pub loss: f64,
    pub image_size: usize,
    pub seed: u64,
    /// The model's contention, in words.
    pub contention: String,
    pub rows: Vec<Row>,
    pub model: FleetReport,
    pub openthread: ThreadOutcome,
}

fn loss_model(p: f64) -> LossModel {
    if p == 0.0 {
        LossModel::None
    } else {
        LossModel::Bernoulli { p }
    }
}

/// Runs the scenario on both stacks.
pub fn run(s: &Scenario) -> Result<Calibration> {
    let link = LinkConfig {
        loss: loss_model(s.loss),
        hops: s.hops,
        contention: s.contention,
        ..LinkConfig::default()
    };
    let model = fleet::run(&FleetRun {
        world: WorldConfig {
            devices: s.devices,
            mesh_size: s.devices.max(1),
            link,
            image_size: s.image_size,
            block_size: 64,
            window: 4,
            seed: s.seed,
            ..WorldConfig::default()
        },
        time_limit: Duration::from_secs(12 * 3600),
        progress: false,
        update: fleet::UpdateKind::Full,
        per_mesh: 0,
    })?;
    let wall = WallInstant::now();
    let firmware = Firmware::new(s.seed, s.image_size)?;
    let release = firmware.release("2.0.0", 2, s.image_size, None)?;
    let cfg = ThreadConfig {
        dir: s.dir.clone(),
        node_exe: s.node_exe.clone(),
        devices: s.devices,
        hops: s.hops,
        loss: loss_model(s.loss),
        image_size: s.image_size,
        block_size: 64,
        window: 4,
        seed: s.seed,
        time_limit: Duration::from_secs(12 * 3600),
        progress: false,
    };
    let ot = crate::sim::world::block_on_seeded(s.seed, async {
        run_update(&cfg, &firmware, &release, wall).await
    })??;
    let r = &ot.report;
    let rows = vec![
        Row {
            figure: "time to update every device (s)",
            model: Some(model.virtual_time_s),
            openthread: r.virtual_time_s,
        },
        Row {
            figure: "CoAP datagrams up",
            model: Some(model.datagrams_up as f64),
            openthread: r.datagrams_up as f64,
        },
        Row {
            figure: "CoAP datagrams down",
            model: Some(model.datagrams_down as f64),
            openthread: r.datagrams_down as f64,
        },
        Row {
            figure: "CoAP retransmissions",
            model: Some(model.retransmissions as f64),
            openthread: r.retransmissions as f64,
        },
        Row {
            figure: "frames on air, ACKs included (whole run)",
            model: Some((model.frames + model.acks) as f64),
            openthread: ot.medium.frames as f64,
        },
        Row {
            figure: "MAC ACKs on air",
            model: Some(model.acks as f64),
            openthread: ot.medium.acks as f64,
        },
        Row {
            figure: "frame attempts, retries included",
            model: Some(model.frames as f64),
            openthread: (ot.mac.tx_total + ot.mac.tx_retry) as f64,
        },
        Row {
            figure: "airtime, frames and ACKs only (s, whole run)",
            model: Some(model.signal_airtime_s),
            openthread: ot.medium.airtime_us as f64 / 1e6,
        },
        Row {
            figure: "MAC retransmissions",
            model: Some(model.mac_retries as f64),
            openthread: ot.mac.tx_retry as f64,
        },
        Row {
            figure: "MAC frames given up after all retries",
            model: Some(model.mac_failures as f64),
            openthread: ot.mac.tx_max_retry_expiry as f64,
        },
        Row {
            figure: "channel found busy (OpenThread: CCA failures)",
            model: Some(model.channel_busy as f64),
            openthread: ot.mac.tx_err_cca as f64,
        },
    ];
    Ok(Calibration {
        devices: s.devices,
        hops: s.hops,
        loss: s.loss,
        image_size: s.image_size,
        seed: s.seed,
        contention: format!(
            "collision {} for an attempt that waited, busy back-off {:.1} ms",
            s.contention.collision,
            s.contention.busy_backoff.as_secs_f64() * 1e3
        ),
        rows,
        model,
        openthread: ot,
    })
}

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} devices, {} hop(s), {:.0} % frame loss, {} B image in 64 B blocks, window 4, seed {}",
            self.devices,
            self.hops,
            self.loss * 100.0,
            self.image_size,
            self.seed
        )?;
        writeln!(
            f,
            "updated: model {}/{}, openthread {}/{} (mesh formed and registered in {:.0} s)",
            self.model.updated,
            self.model.device_count,
            self.openthread.report.updated,
            self.openthread.report.device_count,
            self.openthread.formed_s
        )?;
        let (m, mac) = (
            &self.openthread.medium_before_update,
            &self.openthread.mac_before_update,
        );
        writeln!(
            f,
            "OpenThread before the update (forming the mesh, registering): {} frames on air ({} ACKs), {} attempts, {} MAC retransmissions, {} CCA failures, {:.1} s of airtime",
            m.frames,
            m.acks,
            mac.tx_total + mac.tx_retry,
            mac.tx_retry,
            mac.tx_err_cca,
            m.airtime_us as f64 / 1e6
        )?;
        writeln!(
            f,
            "model ({}): {} collisions; {:.0} s of medium time held (frames with their back-off, CCA, gaps and ACKs)",
            self.contention, self.model.collisions, self.model.airtime_s
        )?;
        writeln!(
            f,
            "| figure | model | OpenThread | model off by |\n|---|---:|---:|---:|"
        )?;
        for r in &self.rows {
            let model = r.model.map_or("–".into(), |m| format!("{m:.0}"));
            let off = r.model_off_by().map_or("–".into(), |o| {
                let flag = if o.abs() > 0.25 { " **" } else { "" };
                format!("{:+.0} %{flag}", o * 100.0)
            });
            writeln!(
                f,
                "| {} | {model} | {:.0} | {off} |",
                r.figure, r.openthread
            )?;
        }
        writeln!(f, "(** : off by more than 25 %)")
    }
}

//! A deployment on OpenThread: the border router (the leader, ring 0), rings of routers, the
//! devices in the outermost ring (so `hops` radio hops from the border router), lwm2m-server
//! behind the border router; then one update of every device and its report, in the same shape
//! as the model's (`FleetReport`), every device's flash checked byte for byte.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use anyhow::{Context, Result, anyhow, bail};
use lwm2m_server::jobs::JobDeviceStatus;
use lwm2m_server::server::{Server, ServerConfig};
use sha2::{Digest, Sha256};
use sim_thread::dataset::Network;
use sim_thread::spec::{DeviceSpec, NodeSpec, Role};
use sim_thread::status::Status;
use suit_manifest::TrustAnchor;
use tokio::sync::{mpsc, oneshot};

use super::medium::{Layout, Medium, MediumStats};
use super::mesh::{Backbone, BackboneTransport, Command, Mesh};
use super::node::NodeProc;
use crate::model::LossModel;
use crate::sim::fleet::{self, DeviceOutcome, FleetReport, hms, progress_bar};
use crate::sim::release::{Firmware, Release};
use crate::sim::world::{VirtualClock, endpoint_name, server_addr};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct ThreadConfig {
    /// Where node specs, logs and the server's data go.
    pub dir: PathBuf,
    /// The binary whose `thread-node` subcommand runs a node (sim-network itself).
    pub node_exe: PathBuf,
    pub devices: usize,
    /// Radio hops from a device to the border router.
    pub hops: u32,
    /// Loss per frame and receiver.
    pub loss: LossModel,
    pub image_size: usize,
    pub block_size: u16,
    pub window: u8,
    pub seed: u64,
    /// Virtual time the update may take.
    pub time_limit: Duration,
    pub progress: bool,
}

/// Virtual time between the starts of two rings: enough for a node to attach and be promoted.
const RING_START: Duration = Duration::from_secs(30);
/// Children per router in the ring next to the devices (OpenThread allows 10).
const CHILDREN_PER_ROUTER: usize = 6;

/// The rings: the border router, `hops - 1` rings of routers, the devices.
fn layout(devices: usize, hops: u32) -> (Vec<u32>, Vec<Role>) {
    let mut ring = vec![0];
    let mut roles = vec![Role::BorderRouter];
    for r in 1..hops {
        let routers = if r + 1 == hops {
            devices.div_ceil(CHILDREN_PER_ROUTER).max(2)
        } else {
            2
        };
        ring.extend(std::iter::repeat_n(r, routers));
        roles.extend(std::iter::repeat_n(Role::Router, routers));
    }
    ring.extend(std::iter::repeat_n(hops, devices));
    roles.extend(std::iter::repeat_n(Role::EndDevice, devices));
    (ring, roles)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The running deployment.
struct Deployment {
    server: Arc<Server>,
    commands: mpsc::UnboundedSender<Command>,
    mesh: tokio::task::JoinHandle<Result<()>>,
    /// Node index and endpoint of each device.
    devices: Vec<(usize, String)>,
    clock: Arc<VirtualClock>,
}

impl Deployment {
    async fn query(&self) -> Result<Vec<Status>> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Query(tx))
            .map_err(|_| anyhow!("the mesh stopped"))?;
        rx.await.map_err(|_| anyhow!("the mesh stopped"))?
    }

    async fn stats(
        &self,
    ) -> Result<(
        MediumStats,
        std::collections::HashMap<std::net::Ipv6Addr, super::mesh::CoapStats>,
    )> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats(tx))
            .map_err(|_| anyhow!("the mesh stopped"))?;
        rx.await.map_err(|_| anyhow!("the mesh stopped"))
    }

    fn check_alive(&self) -> Result<()> {
        if self.mesh.is_finished() {
            bail!("the mesh stopped (a node failed: see the node logs)");
        }
        Ok(())
    }
}

async fn start(cfg: &ThreadConfig, firmware: &Firmware, check_len: usize) -> Result<Deployment> {
    if cfg.devices == 0 || cfg.hops == 0 {
        bail!("a Thread simulation needs at least one device and one hop");
    }
    let nodes_dir = cfg.dir.join("nodes");
    std::fs::create_dir_all(&nodes_dir)
        .with_context(|| format!("cannot create {}", nodes_dir.display()))?;
    let factory = nodes_dir.join("factory-1.0.0.bin");
    std::fs::write(&factory, &firmware.factory)?;
    let dataset = Network::simulated(cfg.seed).active_dataset_tlvs();
    let trust_hex = hex(firmware
        .vendor_key
        .verifying_key()
        .to_sec1_point(false)
        .as_bytes());
    let slot = u32::try_from(cfg.image_size.max(firmware.factory.len()))?;

    let (ring, roles) = layout(cfg.devices, cfg.hops);
    let mut nodes = Vec::with_capacity(ring.len());
    let mut devices = Vec::new();
    for (i, (&r, &role)) in ring.iter().zip(&roles).enumerate() {
        let id = u16::try_from(i + 1)?;
        let device = role.is_device().then(|| {
            let endpoint = endpoint_name(devices.len());
            devices.push((i, endpoint.clone()));
            DeviceSpec {
                endpoint,
                factory_image: factory.clone(),
                slot_size: slot,
                trust_sec1_hex: trust_hex.clone(),
                vendor_id: firmware.vendor_id,
                class_id: firmware.class_id,
                block_size: cfg.block_size,
                window: cfg.window,
                lifetime_s: 300,
                check_len,
            }
        });
        // Each ring starts once the one inside it has routers; nodes of a ring a second apart.
        let start_ms = RING_START.as_millis() as u64 * u64::from(r) + 1000 * (i as u64 % 16);
        let spec = NodeSpec {
            id,
            role,
            start_ms: if r == 0 { 0 } else { start_ms },
            seed: cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(id),
            dataset: dataset.clone(),
            device,
        };
        let spec_path = nodes_dir.join(format!("node-{id:03}.json"));
        std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
        let log = nodes_dir.join(format!("node-{id:03}.log"));
        nodes.push(NodeProc::spawn(&cfg.node_exe, id, &spec_path, &log)?);
    }

    let backbone = Backbone::new(server_addr(), crate::model::Backhaul::default().delay);
    let mut server_config = ServerConfig::new(
        cfg.dir.join("server-data"),
        format!("coap://{}", server_addr()),
    );
    server_config.trust = vec![TrustAnchor::from_key(*firmware.vendor_key.verifying_key())];
    server_config.seed = cfg.seed;
    let clock = Arc::new(VirtualClock::starting_now());
    let server = Server::start(
        BackboneTransport(backbone.clone()),
        server_config,
        clock.clone(),
    )
    .await
    .context("starting lwm2m-server")?;
    let medium = Medium::new(Layout { ring }, cfg.loss, cfg.seed);
    let mesh = Mesh::new(nodes, medium, 0, backbone, clock.start);
    let (commands, rx) = mpsc::unbounded_channel();
    let mesh = tokio::task::spawn_local(mesh.run(rx));
    Ok(Deployment {
        server,
        commands,
        mesh,
        devices,
        clock,
    })
}

/// OpenThread's MAC counters, summed over every node.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MacTotals {
    /// Frames sent, each counted once however many attempts it took (ACKs are sent by the radio
    /// and not counted): attempts are `tx_total + tx_retry`.
    pub tx_total: u64,
    /// MAC retransmissions (no ACK came back).
    pub tx_retry: u64,
    /// Frames given up after every retry.
    pub tx_max_retry_expiry: u64,
    /// Transmissions that found the channel busy.
    pub tx_err_cca: u64,
}

/// A run on OpenThread: the model's report, plus what only a real MAC can tell.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ThreadOutcome {
    pub report: FleetReport,
    pub medium: MediumStats,
    pub mac: MacTotals,
    /// Virtual time until every device had registered (the mesh formed).
    pub formed_s: f64,
    /// The medium's and the MAC's counters when the update started: what forming the mesh and
    /// registering cost (MLE, address queries, registration), which the model does not simulate.
    pub medium_before_update: MediumStats,
    pub mac_before_update: MacTotals,
    /// Every node's role at the end, in node order (the border router first, the devices last).
    pub roles: Vec<String>,
}

/// Brings the mesh up, updates every device to `release`, and reports.
pub async fn run_update(
    cfg: &ThreadConfig,
    firmware: &Firmware,
    release: &Release,
    wall: WallInstant,
) -> Result<ThreadOutcome> {
    let dep = start(cfg, firmware, release.image.len()).await?;
    let bar = progress_bar(cfg.progress, dep.devices.len());
    let lines = cfg.progress && bar.is_hidden();
    bar.set_message("the mesh forms, devices attach and register");
    // Registration: the mesh forms ring by ring first.
    let limit = RING_START * (cfg.hops + 1) + Duration::from_secs(900);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        dep.check_alive()?;
        let missing = dep
            .devices
            .iter()
            .filter(|(_, e)| dep.server.registry.get(e).is_none())
            .count();
        if missing == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let roles: Vec<String> = dep.query().await?.into_iter().map(|s| s.role).collect();
            bail!("{missing} devices did not register within {limit:?} (node roles: {roles:?})");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let formed = dep.clock.start.elapsed();
    if lines {
        eprintln!("  mesh formed, every device registered at {}", hms(formed));
    }
    let now = lwm2m_server::clock::Clock::now_ms(&*dep.clock);
    let (record, _) = dep
        .server
        .repo
        .add_suit(&release.envelope, &release.image, now)
        .map_err(|e| anyhow!("adding release {}: {e}", release.version))?;
    let endpoints: Vec<String> = dep.devices.iter().map(|(_, e)| e.clone()).collect();
    let (medium_before_update, _) = dep.stats().await?;
    let mac_before_update = mac_totals(&dep.query().await?);
    let job = dep.server.jobs.start(&record.id, &endpoints)?;
    let started = dep.clock.start.elapsed();
    let deadline = tokio::time::Instant::now() + cfg.time_limit;
    let mut next_line = Duration::ZERO;
    let view = loop {
        dep.check_alive()?;
        let view = dep
            .server
            .jobs
            .view(job)?
            .ok_or_else(|| anyhow!("job {job} is gone"))?;
        let done = view.devices.iter().filter(|d| d.status.is_final()).count();
        let t = dep.clock.start.elapsed().saturating_sub(started);
        let bytes: u64 = view.devices.iter().map(|d| d.bytes_done).sum();
        let msg = format!(
            "virtual {} | downloaded {:.0} %",
            hms(t),
            100.0 * bytes as f64 / (release.image.len() * dep.devices.len()).max(1) as f64
        );
        if lines && t >= next_line {
            eprintln!("  {done}/{} devices done | {msg}", view.devices.len());
            next_line = t + Duration::from_secs(300);
        }
        bar.set_position(done as u64);
        bar.set_message(msg);
        if done == view.devices.len() || tokio::time::Instant::now() >= deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    bar.finish_and_clear();
    // Let the last devices finish their reboot before their flash is read.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let statuses = dep.query().await?;
    let (medium, coap) = dep.stats().await?;
    let mac = mac_totals(&statuses);
    let mut report = report(
        cfg, &dep, release, &view, &statuses, medium, &coap, started, wall,
    );
    // The frames a real MAC knows it lost: those it had to send again.
    report.frames_lost = mac.tx_retry;
    report.mac_retries = mac.tx_retry;
    report.mac_failures = mac.tx_max_retry_expiry;
    dep.server.kill();
    drop(dep.commands);
    let _ = dep.mesh.await;
    Ok(ThreadOutcome {
        report,
        medium,
        mac,
        formed_s: formed.as_secs_f64(),
        medium_before_update,
        mac_before_update,
        roles: statuses.iter().map(|s| s.role.clone()).collect(),
    })
}

/// OpenThread's MAC counters summed over every node.
fn mac_totals(statuses: &[Status]) -> MacTotals {
    let mut mac = MacTotals::default();
    for s in statuses {
        mac.tx_total += u64::from(s.mac_tx_total);
        mac.tx_retry += u64::from(s.mac_tx_retry);
        mac.tx_max_retry_expiry += u64::from(s.mac_tx_max_retry_expiry);
        mac.tx_err_cca += u64::from(s.mac_tx_err_cca);
    }
    mac
}

/// The model's report shape, from what the server, the medium and every node say.
#[allow(clippy::too_many_arguments)]
fn report(
    cfg: &ThreadConfig,
    dep: &Deployment,
    release: &Release,
    view: &lwm2m_server::jobs::JobView,
    statuses: &[Status],
    medium: MediumStats,
    coap: &std::collections::HashMap<std::net::Ipv6Addr, super::mesh::CoapStats>,
    started: Duration,
    wall: WallInstant,
) -> FleetReport {
    let want = hex(&Sha256::digest(&release.image));
    let mut devices = Vec::new();
    let mut last_final = 0.0f64;
    for (node, endpoint) in &dep.devices {
        let rec = view.devices.iter().find(|r| &r.endpoint == endpoint);
        let st = statuses.get(*node).cloned().unwrap_or_default();
        let addr = dep
            .server
            .registry
            .get(endpoint)
            .and_then(|r| match r.address {
                std::net::SocketAddr::V6(a) => Some(*a.ip()),
                std::net::SocketAddr::V4(_) => None,
            });
        let c = addr.and_then(|a| coap.get(&a).copied()).unwrap_or_default();
        let running = st.running_version.clone().unwrap_or_default();
        let image_verified = st.active_sha256.as_deref() == Some(want.as_str());
        let job_status = rec.map(|r| r.status);
        let finished_at_s = rec.filter(|r| r.status.is_final()).map(|r| {
            started.as_secs_f64() + (r.updated_at_ms - view.created_at_ms) as f64 / 1000.0
        });
        let started_at_s = rec
            .and_then(|r| r.started_at_ms)
            .map(|t| started.as_secs_f64() + (t - view.created_at_ms) as f64 / 1000.0);
        if let Some(t) = finished_at_s {
            last_final = last_final.max(t - started.as_secs_f64());
        }
        let outcome = if job_status == Some(JobDeviceStatus::Succeeded)
            && running == release.version
            && image_verified
        {
            "updated"
        } else if job_status.is_some_and(JobDeviceStatus::is_final) {
            "failed"
        } else {
            "unfinished"
        };
        devices.push(DeviceOutcome {
            endpoint: endpoint.clone(),
            mesh: 0,
            outcome: outcome.into(),
            running_version: running,
            job_status: job_status.map(|s| s.to_string()).unwrap_or_default(),
            update_result: rec.and_then(|r| r.fw_result),
            error: rec.and_then(|r| r.error.clone()),
            started_at_s,
            finished_at_s,
            image_verified,
            sent: rec.and_then(fleet::sent_kind).map(String::from),
            // The OpenThread run does not look into CoAP requests.
            image_requests: 0,
            boots: st.boots,
            datagrams_up: c.datagrams_up,
            datagrams_down: c.datagrams_down,
            retransmissions: c.retransmissions,
            airtime_s: 0.0,
        });
    }
    let count = |o: &str| devices.iter().filter(|d| d.outcome == o).count();
    let sum = |f: fn(&DeviceOutcome) -> u64| devices.iter().map(f).sum::<u64>();
    FleetReport {
        device_count: devices.len(),
        updated: count("updated"),
        failed: count("failed"),
        unfinished: count("unfinished"),
        seed: cfg.seed,
        loss: format!("{:?}", cfg.loss),
        hops: cfg.hops,
        model: format!(
            "{} hops, {:?} per frame, OpenThread's own MAC (ACKs, retries, CSMA/CA)",
            cfg.hops, cfg.loss
        ),
        meshes: 1,
        // One job for every device at once.
        per_mesh: 0,
        image_size: release.image.len(),
        update: fleet::UpdateKind::Full,
        payload_size: release.image.len(),
        sent_delta: 0,
        fallbacks: 0,
        image_requests: 0,
        block_size: cfg.block_size,
        virtual_time_s: last_final,
        wall_time_s: wall.elapsed().as_secs_f64(),
        airtime_s: medium.airtime_us as f64 / 1e6,
        datagrams_up: sum(|d| d.datagrams_up),
        datagrams_down: sum(|d| d.datagrams_down),
        frames: medium.frames,
        frames_lost: 0,
        // OpenThread retries inside its own MAC; its retries are among `frames`. Filled in from
        // the MAC counters by the caller.
        mac_retries: 0,
        acks: medium.acks,
        mac_failures: 0,
        channel_busy: medium.cca_busy,
        // The medium counts collided receptions (every node in range), not attempts.
        collisions: 0,
        signal_airtime_s: medium.airtime_us as f64 / 1e6,
        retransmissions: sum(|d| d.retransmissions),
        devices,
    }
}

/// `sim-network demo --stack openthread`: the model demo's steps on real OpenThread nodes.
pub fn demo(cfg: &crate::sim::demo::DemoConfig, node_exe: PathBuf) -> Result<FleetReport> {
    demo_outcome(cfg, node_exe).map(|o| o.report)
}

/// The demo's run, with the OpenThread-only figures.
pub fn demo_outcome(
    cfg: &crate::sim::demo::DemoConfig,
    node_exe: PathBuf,
) -> Result<ThreadOutcome> {
    let wall = WallInstant::now();
    let (firmware, release) = crate::sim::demo::prepare(cfg)?;
    let tcfg = ThreadConfig {
        dir: cfg.dir.clone(),
        node_exe,
        devices: cfg.devices,
        hops: cfg.link.hops,
        loss: cfg.link.loss,
        image_size: cfg.image_size,
        block_size: 64,
        window: 4,
        seed: cfg.seed,
        time_limit: Duration::from_secs(12 * 3600),
        progress: true,
    };
    println!(
        "3. lwm2m-server with its embedded store in {} (SQLite + firmware files), behind the border router",
        cfg.dir.join("server-data").display()
    );
    println!(
        "4. {} devices running 1.0.0 on a Thread mesh of OpenThread nodes (one process each: border router, routers, end devices): {} hop(s) to the border router, {:.0} % frame loss per link; virtual time",
        cfg.devices,
        cfg.link.hops,
        cfg.link.loss.stationary_loss() * 100.0
    );
    crate::sim::world::block_on_seeded(cfg.seed, async {
        println!("5. forming the mesh, then updating every device to 2.0.0");
        run_update(&tcfg, &firmware, &release, wall).await
    })?
}

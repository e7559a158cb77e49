//! A simulated deployment: the real lwm2m-server (its CoAP transport on the simulated network, its
//! store in SQLite on disk) and N devices spread over Thread meshes, all in one tokio runtime whose
//! clock is paused, so time only moves when every task waits. Scenarios drive it: add a release,
//! start an update, kill and restart the server, cut a device's power, then look at what the
//! server and every device's flash say.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use heapless::String as HString;
use lwm2m_client::engine::Config as EngineConfig;
use lwm2m_client::firmware::suit::Identity;
use lwm2m_client::storage::layout::{Layout, PAGE_SIZE};
use lwm2m_server::campaign::{CampaignRequest, CampaignView, DevicePage};
use lwm2m_server::jobs::JobView;
use lwm2m_server::server::{Server, ServerConfig};
use suit_manifest::TrustAnchor;
use tokio::task::JoinHandle;

use super::device::{Device, PowerCut, address};
use super::net::SimNet;
use super::release::{Fault, Firmware, Release};
use crate::model::{Backhaul, LinkConfig, Mesh};

/// The shape of a simulated deployment.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub devices: usize,
    /// Devices per Thread mesh (one border router each); each mesh has its own airtime.
    pub mesh_size: usize,
    pub link: LinkConfig,
    pub backhaul: Backhaul,
    /// Size of the images rolled out; the devices' slots are this, rounded up to whole pages.
    pub image_size: usize,
    /// The devices' download block size and window of block requests.
    pub block_size: u16,
    pub window: u8,
    pub seed: u64,
    /// Devices power on at random moments over this span (no registration storm).
    pub boot_spread: Duration,
    /// Where the server keeps its data; `None`: a temporary directory, removed at the end.
    pub data_dir: Option<PathBuf>,
    /// Registration lifetime of the devices.
    pub lifetime_s: u32,
    /// Devices (by index) built for another class of board: they refuse every release of the
    /// simulation's class with Update Result 6, as a mixed fleet would.
    pub other_class: Vec<usize>,
    /// Every device speaks OSCORE (RFC 8613) with the server: each gets its own context (Sender
    /// ID `d0` and its index, the server's Sender ID empty, a Master Secret from the seed),
    /// provisioned on the server before the devices power on.
    pub oscore: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            devices: 10,
            mesh_size: 50,
            link: LinkConfig::default(),
            backhaul: Backhaul::default(),
            image_size: 16 * 1024,
            block_size: 64,
            window: 4,
            seed: 1,
            boot_spread: Duration::from_secs(30),
            data_dir: None,
            lifetime_s: 300,
            other_class: Vec::new(),
            oscore: false,
        }
    }
}

/// The server's wall clock in a simulation: a fixed epoch plus virtual time.
pub(crate) struct VirtualClock {
    epoch_ms: i64,
    pub(crate) start: tokio::time::Instant,
}

impl VirtualClock {
    /// 2027-01-01T00:00:00Z now: runs do not depend on the host's date.
    pub(crate) fn starting_now() -> VirtualClock {
        VirtualClock {
            epoch_ms: 1_798_761_600_000,
            start: tokio::time::Instant::now(),
        }
    }
}

impl lwm2m_server::clock::Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.epoch_ms + self.start.elapsed().as_millis() as i64
    }
}

/// One device and where it sits.
pub struct SimDevice {
    pub device: Rc<Device>,
    pub addr: SocketAddr,
    pub mesh: usize,
    task: JoinHandle<()>,
}

/// A running simulation.
pub struct World {
    pub cfg: WorldConfig,
    pub net: Arc<SimNet>,
    pub firmware: Firmware,
    pub devices: Vec<SimDevice>,
    pub meshes: Vec<Mesh>,
    pub layout: Layout,
    server: Option<Arc<Server>>,
    server_config: ServerConfig,
    clock: Arc<VirtualClock>,
    _tmp: Option<tempfile::TempDir>,
}

/// Device `i`'s OSCORE context (the device's side): Sender ID `d0 hi lo`, Recipient ID empty
/// (the server's Sender ID), a 16-byte Master Secret drawn from the seed.
pub fn oscore_keys(seed: u64, i: usize) -> super::device::OscoreKeys {
    let master_secret = (0..16u64)
        .map(|b| (unit(seed, 3, (i as u64) << 8 | b) * 256.0) as u8)
        .collect();
    super::device::OscoreKeys {
        sender_id: vec![0xd0, (i >> 8) as u8, i as u8],
        recipient_id: Vec::new(),
        master_secret,
    }
}

/// The server's address on the simulated network.
pub fn server_addr() -> SocketAddr {
    SocketAddr::new(
        std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(),
        5683,
    )
}

/// A deterministic draw in [0, 1) for (seed, label, index): device boot times and the like.
pub fn unit(seed: u64, label: u64, index: u64) -> f64 {
    // SplitMix64 of the three: well spread and the same on every platform.
    let mut z = seed
        ^ label.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl World {
    /// Starts the server and powers the devices on. Must run inside [`block_on`].
    pub async fn start(cfg: WorldConfig, firmware: Firmware) -> Result<World> {
        Self::start_with_cuts(cfg, firmware, &[]).await
    }

    /// The same, with power cuts armed on some devices: `(device index, cut)`.
    pub async fn start_with_cuts(
        cfg: WorldConfig,
        firmware: Firmware,
        cuts: &[(usize, PowerCut)],
    ) -> Result<World> {
        if cfg.devices == 0 || cfg.mesh_size == 0 {
            bail!("a simulation needs at least one device and one device per mesh");
        }
        cfg.link.validate()?;
        let (tmp, data_dir) = match &cfg.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().context("cannot create a temporary data dir")?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let slot = (cfg.image_size as u32).next_multiple_of(PAGE_SIZE);
        let layout = Layout::new(0, slot, 4 * PAGE_SIZE)
            .map_err(|e| anyhow!("no flash layout for a {slot}-byte slot: {e}"))?;
        let net = SimNet::new(server_addr());
        let mut server_config = ServerConfig::new(data_dir, format!("coap://{}", server_addr()));
        // The server trusts the rogue key as well, so that a WrongKey release reaches the devices
        // and their own check is what a scenario tests (a compromised server).
        server_config.trust = vec![
            TrustAnchor::from_key(*firmware.vendor_key.verifying_key()),
            TrustAnchor::from_key(*firmware.rogue_key.verifying_key()),
        ];
        server_config.seed = cfg.seed;
        let clock = Arc::new(VirtualClock::starting_now());
        let server = Server::start(net.server_transport(), server_config.clone(), clock.clone())
            .await
            .context("starting lwm2m-server")?;
        let meshes: Vec<Mesh> = (0..cfg.devices.div_ceil(cfg.mesh_size))
            .map(|m| {
                Mesh::new(
                    cfg.link,
                    cfg.backhaul,
                    cfg.seed ^ (m as u64).wrapping_mul(0x100_0001),
                )
            })
            .collect();
        let trust = TrustAnchor::from_key(*firmware.vendor_key.verifying_key());
        let mut devices = Vec::with_capacity(cfg.devices);
        for i in 0..cfg.devices {
            let mesh = i / cfg.mesh_size;
            let addr = address(mesh, i);
            let socket = net.attach(addr, meshes[mesh].path((i % cfg.mesh_size) as u64));
            let endpoint = endpoint_name(i);
            let mut device = Device::new(endpoint.clone(), layout.clone(), &firmware.factory)?;
            if cfg.oscore {
                let keys = oscore_keys(cfg.seed, i);
                let params = lwm2m_server::security::OscoreParams {
                    sender_id: keys.recipient_id.clone(),
                    recipient_id: keys.sender_id.clone(),
                    master_secret: keys.master_secret.clone(),
                    master_salt: Vec::new(),
                };
                server
                    .credentials
                    .add_oscore(&endpoint, &params, 0)
                    .map_err(|e| anyhow!("provisioning {endpoint}'s OSCORE context: {e:?}"))?;
                device = device.with_oscore(keys);
            }
            let device = Rc::new(device);
            let identity = Identity {
                vendor_id: firmware.vendor_id,
                class_id: if cfg.other_class.contains(&i) {
                    suit_manifest::builder::uuid_for("another-board", Some(&firmware.vendor_id))
                } else {
                    firmware.class_id
                },
            };
            let name = HString::try_from(endpoint.as_str()).map_err(|_| anyhow!("endpoint"))?;
            let mut engine = EngineConfig::new(name, server_addr(), identity, trust.clone());
            engine.lifetime_s = cfg.lifetime_s;
            engine.oscore = cfg.oscore;
            engine.block_size = cfg.block_size;
            engine.window = cfg.window;
            engine.model = HString::try_from("sim-board").unwrap_or_default();
            engine.serial = HString::try_from(endpoint.as_str()).unwrap_or_default();
            let delay = cfg.boot_spread.mul_f64(unit(cfg.seed, 1, i as u64));
            let cut = cuts.iter().find(|(d, _)| *d == i).map(|(_, c)| *c);
            let seed = (unit(cfg.seed, 2, i as u64) * f64::from(u32::MAX)) as u32;
            let dev = device.clone();
            let task = tokio::task::spawn_local(async move {
                tokio::time::sleep(delay).await;
                dev.run(engine, socket, cut, Duration::from_secs(1), seed)
                    .await;
            });
            devices.push(SimDevice {
                device,
                addr,
                mesh,
                task,
            });
        }
        Ok(World {
            cfg,
            net,
            firmware,
            devices,
            meshes,
            layout,
            server: Some(server),
            server_config,
            clock,
            _tmp: tmp,
        })
    }

    /// The running server.
    pub fn server(&self) -> Result<&Arc<Server>> {
        self.server
            .as_ref()
            .ok_or_else(|| anyhow!("the server is down"))
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock.start.elapsed()
    }

    /// Waits until every device is registered, at most `limit` of virtual time.
    pub async fn wait_registered(&self, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let server = self.server()?;
            let missing = self
                .devices
                .iter()
                .filter(|d| server.registry.get(&d.device.endpoint).is_none())
                .count();
            if missing == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{missing} devices did not register within {limit:?}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Adds a release to the server's repository, then applies a server-side fault (a tampered
    /// image, a truncated manifest) to its files as an attacker or a failing disk would.
    pub fn add_release(&self, release: &Release, fault: Option<Fault>) -> Result<String> {
        let server = self.server()?;
        let now = lwm2m_server::clock::Clock::now_ms(&*self.clock);
        let (record, _) = server
            .repo
            .add_suit(&release.envelope, &release.image, now)
            .map_err(|e| anyhow!("adding release {}: {e}", release.version))?;
        let dir = self
            .server_config
            .data_dir
            .join("firmware")
            .join(&record.id);
        match fault {
            Some(Fault::TamperedImage) => {
                use std::io::{Seek, SeekFrom, Write};
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join("image"))?;
                let at = release.image.len() as u64 / 2;
                f.seek(SeekFrom::Start(at))?;
                f.write_all(&[release.image[at as usize] ^ 0x01])?;
            }
            Some(Fault::TruncatedManifest) => {
                let len = release.envelope.len() / 2;
                std::fs::write(dir.join("manifest"), &release.envelope[..len])?;
            }
            _ => {}
        }
        Ok(record.id)
    }

    /// Starts updating every device to `release_id`; returns the job id.
    pub fn start_update(&self, release_id: &str) -> Result<i64> {
        let endpoints: Vec<String> = self
            .devices
            .iter()
            .map(|d| d.device.endpoint.clone())
            .collect();
        Ok(self.server()?.jobs.start(release_id, &endpoints)?)
    }

    /// The job as the server sees it.
    pub fn job(&self, job_id: i64) -> Result<JobView> {
        self.server()?
            .jobs
            .view(job_id)?
            .ok_or_else(|| anyhow!("job {job_id} is gone"))
    }

    /// Waits until every device of the job is final or `limit` passes; `on_tick` sees the job
    /// every `every` of virtual time. Returns the job as it ended.
    pub async fn wait_job(
        &self,
        job_id: i64,
        limit: Duration,
        every: Duration,
        mut on_tick: impl FnMut(&JobView, Duration),
    ) -> Result<JobView> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let view = self.job(job_id)?;
            on_tick(&view, self.elapsed());
            if view.devices.iter().all(|d| d.status.is_final())
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(view);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Creates (and starts) a campaign on the server; returns its id.
    pub async fn start_campaign(&self, req: &CampaignRequest) -> Result<i64> {
        let server = self.server()?.clone();
        Ok(server.campaigns.create(req).await?)
    }

    /// The campaign as the server sees it, with every device.
    pub fn campaign(&self, id: i64) -> Result<CampaignView> {
        self.server()?
            .campaigns
            .view(id, Some(&DevicePage::default()))?
            .ok_or_else(|| anyhow!("campaign {id} is gone"))
    }

    /// Waits until the campaign is final with nothing in flight, or `limit` passes; `on_tick`
    /// sees it every `every` of virtual time. Returns the campaign as it ended.
    pub async fn wait_campaign(
        &self,
        id: i64,
        limit: Duration,
        every: Duration,
        mut on_tick: impl FnMut(&CampaignView, Duration),
    ) -> Result<CampaignView> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let view = self.campaign(id)?;
            on_tick(&view, self.elapsed());
            let settled = view.campaign.state.is_final() && view.totals.running == 0;
            if settled || tokio::time::Instant::now() >= deadline {
                return Ok(view);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Kills the server as `kill -9` would, keeps it down for `down`, and starts it again on the
    /// same data dir: it resumes its jobs from the store.
    pub async fn restart_server(&mut self, down: Duration) -> Result<()> {
        if let Some(s) = self.server.take() {
            s.kill();
        }
        self.net.set_server_up(false);
        tokio::time::sleep(down).await;
        self.net.set_server_up(true);
        let server = Server::start(
            self.net.server_transport(),
            self.server_config.clone(),
            self.clock.clone(),
        )
        .await
        .context("restarting lwm2m-server")?;
        self.server = Some(server);
        Ok(())
    }

    /// Stops every task (the end of a scenario).
    pub fn shutdown(&mut self) {
        for d in &self.devices {
            d.task.abort();
        }
        if let Some(s) = self.server.take() {
            s.kill();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The endpoint name of device `i`.
pub fn endpoint_name(i: usize) -> String {
    format!("sim-{i:04}")
}

/// Runs `f` on a current-thread runtime with tokio's clock paused (the simulation's virtual
/// time) inside a `LocalSet`: a device's flash is not `Sync`, so devices are local tasks.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    block_on_seeded(0, f)
}

/// [`block_on`] with tokio's own randomness (the order in which `select!` polls its branches)
/// drawn from `seed` where tokio allows it (`--cfg tokio_unstable`, set in .cargo/config.toml).
pub fn block_on_seeded<F: std::future::Future>(seed: u64, f: F) -> Result<F::Output> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    #[cfg(not(tokio_unstable))]
    let _ = seed;
    let rt = builder
        .build()
        .context("cannot start the simulation runtime")?;
    Ok(tokio::task::LocalSet::new().block_on(&rt, f))
}

//! `sim-network`: the command line of the network simulator.

use clap::{Args, Parser, Subcommand, ValueEnum};
use sim_network::model::{Backhaul, Contention, LinkConfig, LossModel, LossUnit, Mac};
use sim_network::proxy::{Proxy, ProxyConfig, bursty_loss};
use sim_network::sim::demo::DemoConfig;
use sim_network::sim::fleet::{self, FleetReport, FleetRun, UpdateKind};
use sim_network::sim::world::WorldConfig;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sim-network",
    version,
    about = "A lossy 802.15.4 / Thread-like network simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Relay UDP between real devices and a real server through the link model, on the real clock.
    /// Stops on Ctrl-C (SIGINT) or SIGTERM, or after --duration, and prints its counters.
    Proxy(ProxyArgs),
    /// Update a fleet of simulated devices with the real lwm2m-server, in one process and in
    /// virtual time, and print every device's outcome. Exits 0 only if all were updated.
    Fleet(FleetArgs),
    /// The end-to-end demo: a signing key, a signed release, lwm2m-server on its embedded store,
    /// 50 simulated devices on a lossy 3-hop mesh updated to the release. Exits 0 only if every
    /// device runs the new image.
    Demo(DemoArgs),
    /// Run one scenario on the link model and on real OpenThread nodes and print the figures side
    /// by side (time to update, frames on air, retransmissions at MAC and CoAP level).
    #[cfg(feature = "openthread")]
    Calibrate(CalibrateArgs),
    /// One OpenThread node of `demo --stack openthread` (started by the simulator, not by hand).
    #[cfg(feature = "openthread")]
    #[command(hide = true)]
    ThreadNode {
        /// The node's spec (JSON) written by the simulator.
        spec: std::path::PathBuf,
    },
}

/// The network the demo runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Stack {
    /// sim-network's link model (fast; the real engines, a modelled mesh).
    Model,
    /// Real OpenThread nodes, one process each, on a simulated radio medium.
    Openthread,
}

#[derive(Args)]
struct DemoArgs {
    /// Where the key, the release and the server's data go (cleared first).
    #[arg(long, default_value = "target/demo")]
    dir: std::path::PathBuf,
    #[arg(long, default_value_t = 50)]
    devices: usize,
    /// Frame loss on each hop.
    #[arg(long, default_value_t = 0.1)]
    loss: f64,
    #[arg(long, default_value_t = 3)]
    hops: u32,
    /// 802.15.4 MAC: `ack` acknowledges and retries every unicast frame as Thread does, `raw`
    /// sends each frame once.
    #[arg(long, value_enum, default_value_t = MacArg::model_default())]
    mac: MacArg,
    #[arg(long, default_value = "128KiB", value_parser = parse_size)]
    image_size: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The network: the link model, or real OpenThread nodes.
    #[arg(long, value_enum, default_value_t = Stack::Model)]
    stack: Stack,
}

#[cfg(feature = "openthread")]
#[derive(Args)]
struct CalibrateArgs {
    #[arg(long, default_value_t = 10)]
    devices: usize,
    #[arg(long, default_value_t = 3)]
    hops: u32,
    /// Frame loss per hop (model) and per link (OpenThread).
    #[arg(long, default_value_t = 0.1)]
    loss: f64,
    #[arg(long, default_value = "32KiB", value_parser = parse_size)]
    image_size: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The model's contention (see `fleet --collision`): 0 with --busy-backoff-ms 0 runs the
    /// model as it was before calibration.
    #[arg(long, default_value_t = Contention::THREAD.collision)]
    collision: f64,
    #[arg(long, default_value_t = Contention::THREAD.busy_backoff.as_secs_f64() * 1e3, value_name = "MS")]
    busy_backoff_ms: f64,
    /// Where the OpenThread run keeps its node logs and server data (cleared first).
    #[arg(long, default_value = "target/calibrate")]
    dir: std::path::PathBuf,
    /// Print the figures and both reports as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FleetArgs {
    /// Devices in the fleet.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Devices per Thread mesh (one border router each, its own airtime).
    #[arg(long, default_value_t = 50)]
    mesh_size: usize,
    #[command(flatten)]
    link: LinkArgs,
    /// Image size: bytes, or with a KiB/MiB suffix.
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    image_size: usize,
    /// Download block size (16..1024, a power of two; 64 fits one 802.15.4 frame).
    #[arg(long, default_value_t = 64)]
    block_size: u16,
    /// Block requests each device keeps in flight.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=8))]
    window: u8,
    /// Give up after this much virtual time, in hours.
    #[arg(long, default_value_t = 24.0)]
    time_limit_h: f64,
    /// How 2.0.0 reaches the devices: `full` downloads the whole image; `delta` makes 2.0.0 a
    /// rebuild of the factory image and hosts the delta from 1.0.0 beside it (the server picks
    /// the delta for each device that reports 1.0.0).
    #[arg(long, value_enum, default_value_t = UpdateArg::Full)]
    update: UpdateArg,
    /// Downloads at once per mesh: the update runs as a campaign with this per-mesh limit (4 is
    /// the server's campaign default); 0 starts one job for every device at once, and a mesh's
    /// 50 devices then saturate its air.
    #[arg(long, default_value_t = fleet::DEFAULT_PER_MESH)]
    per_mesh: u32,
    /// Print the report as JSON on stdout (with every device).
    #[arg(long)]
    json: bool,
}

/// `sim-network fleet --update`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum UpdateArg {
    Full,
    Delta,
}

/// `256KiB`, `1MiB`, `4096`.
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("{text:?}: give a size such as 4096, 64KiB or 1MiB"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1024,
        "m" | "mib" | "mb" => 1024 * 1024,
        _ => return Err(format!("{text:?}: the unit must be KiB or MiB")),
    };
    n.checked_mul(scale)
        .filter(|&n| n >= 64)
        .ok_or_else(|| format!("{text:?}: the image needs at least 64 bytes (its header)"))
}

/// What `--loss` applies to.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LossModelArg {
    /// Each 802.15.4 frame on each hop: a datagram is lost if one of its fragments is, and MAC
    /// retries recover frames.
    Frame,
    /// Each datagram as a whole on each hop, whatever its size, beyond the MAC's reach.
    Datagram,
}

/// How the 802.15.4 MAC sends unicast frames.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum MacArg {
    /// Acknowledged and retried up to --mac-retries times, as Thread does.
    Ack,
    /// Sent once, no acknowledgement (a radio without MAC): the harsher model.
    Raw,
}

impl MacArg {
    /// The model's own default (`LinkConfig::default().mac`): one place decides it.
    fn model_default() -> Self {
        match LinkConfig::default().mac {
            Mac::Raw => MacArg::Raw,
            Mac::Acked { .. } => MacArg::Ack,
        }
    }

    fn mac(self, retries: u8) -> Mac {
        match self {
            MacArg::Ack => Mac::Acked {
                max_frame_retries: retries,
            },
            MacArg::Raw => Mac::Raw,
        }
    }
}

/// The link every device has towards the server.
#[derive(Args, Clone, Debug)]
struct LinkArgs {
    /// Loss on each hop, 0..1: per 802.15.4 frame (a datagram is lost if one of its fragments
    /// is), or per datagram with --loss-model datagram.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// What --loss applies to: every frame, or every datagram whatever its size.
    #[arg(long, value_enum, default_value = "frame")]
    loss_model: LossModelArg,
    /// Lose in bursts of this mean length (Gilbert-Elliott) instead of independently; the
    /// long-run loss stays --loss.
    #[arg(long, value_name = "FRAMES")]
    burst: Option<f64>,
    /// 802.15.4 MAC: `ack` acknowledges every unicast frame and retries it as Thread does, `raw`
    /// sends each frame once and leaves recovery to CoAP (harsher per frame).
    #[arg(long, value_enum, default_value_t = MacArg::model_default())]
    mac: MacArg,
    /// Retries of an unacknowledged frame with --mac ack (OpenThread's default for unicast).
    #[arg(long, default_value_t = Mac::OPENTHREAD_MAX_FRAME_RETRIES, value_name = "N")]
    mac_retries: u8,
    /// Frames take no time on the air: with --loss-model datagram, --delay-ms 0 and --jitter-ms 0
    /// the proxy is a plain lossy UDP relay.
    #[arg(long)]
    no_airtime: bool,
    /// Radio hops from a device to the border router.
    #[arg(long, default_value_t = 1)]
    hops: u32,
    /// Processing delay per hop, in milliseconds.
    #[arg(long, default_value_t = 2.0, value_name = "MS")]
    delay_ms: f64,
    /// Extra uniform delay per hop, in milliseconds.
    #[arg(long, default_value_t = 1.0, value_name = "MS")]
    jitter_ms: f64,
    /// Probability that a frame attempt which found the channel busy collides when it goes (see
    /// `model::Contention`); 0 with --busy-backoff-ms 0 makes the medium a perfect scheduler.
    #[arg(long, default_value_t = Contention::THREAD.collision)]
    collision: f64,
    /// Extra back-off of an attempt that found the channel busy, in milliseconds.
    #[arg(long, default_value_t = Contention::THREAD.busy_backoff.as_secs_f64() * 1e3, value_name = "MS")]
    busy_backoff_ms: f64,
    /// Probability that a delivered datagram arrives twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability that a delivered datagram is held back so later ones overtake it.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Datagram loss on the border router's leg to the server, 0..1.
    #[arg(long, default_value_t = 0.0)]
    backhaul_loss: f64,
    /// One-way delay of the border router's leg to the server, in milliseconds.
    #[arg(long, default_value_t = 1.0, value_name = "MS")]
    backhaul_delay_ms: f64,
    /// Seed of every random choice: the same seed gives the same drops for the same traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `v` milliseconds as a duration, or an error naming `--name`.
fn millis(name: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(Duration::from_secs_f64(v / 1e3))
    } else {
        Err(format!(
            "--{name} {v}: give a non-negative number of milliseconds"
        ))
    }
}

impl LinkArgs {
    fn link(&self) -> Result<LinkConfig, String> {
        let loss = match self.burst {
            Some(burst) => bursty_loss(self.loss, burst)?,
            None if self.loss == 0.0 => LossModel::None,
            None => LossModel::Bernoulli { p: self.loss },
        };
        if self.hops == 0 {
            return Err(
                "--hops 0: a device is at least one radio hop from the border router".into(),
            );
        }
        let cfg = LinkConfig {
            loss,
            loss_unit: match self.loss_model {
                LossModelArg::Frame => LossUnit::Frame,
                LossModelArg::Datagram => LossUnit::Datagram,
            },
            mac: self.mac.mac(self.mac_retries),
            on_air: !self.no_airtime,
            delay: millis("delay-ms", self.delay_ms)?,
            jitter: millis("jitter-ms", self.jitter_ms)?,
            contention: Contention {
                collision: self.collision,
                busy_backoff: millis("busy-backoff-ms", self.busy_backoff_ms)?,
            },
            duplicate: self.duplicate,
            reorder: self.reorder,
            hops: self.hops,
            ..LinkConfig::default()
        };
        cfg.validate()
            .map_err(|e| format!("{e}: probabilities are between 0 and 1"))?;
        Ok(cfg)
    }

    fn backhaul(&self) -> Result<Backhaul, String> {
        Ok(Backhaul {
            loss: self.backhaul_loss,
            delay: millis("backhaul-delay-ms", self.backhaul_delay_ms)?,
        })
    }
}

#[derive(Args)]
struct ProxyArgs {
    /// Address devices send to (the server's public URI should name it).
    #[arg(long)]
    listen: SocketAddr,
    /// The real server's address.
    #[arg(long)]
    upstream: SocketAddr,
    #[command(flatten)]
    link: LinkArgs,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Most device addresses tracked at once.
    #[arg(long, default_value_t = 10_000)]
    max_devices: usize,
    /// Print the counters as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // RUST_LOG=info (or lwm2m_server=debug, ...) shows what the server does; off by default.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let cli = match cli.command {
        Command::Fleet(args) => return fleet(args),
        Command::Demo(args) => return demo(args),
        #[cfg(feature = "openthread")]
        Command::ThreadNode { spec } => {
            return match sim_thread::run_node(&spec) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        #[cfg(feature = "openthread")]
        Command::Calibrate(args) => return calibrate(args),
        other => Cli { command: other },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Proxy(args) => runtime.block_on(proxy(args)),
        _ => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fleet(args: FleetArgs) -> ExitCode {
    let run = || -> Result<FleetReport, String> {
        let link = args.link.link()?;
        if lwm2m_core::block::szx_for_size(usize::from(args.block_size)).is_err() {
            return Err("--block-size must be a power of two from 16 to 1024".into());
        }
        let run = FleetRun {
            world: WorldConfig {
                devices: args.devices,
                mesh_size: args.mesh_size,
                link,
                backhaul: args.link.backhaul()?,
                image_size: args.image_size,
                block_size: args.block_size,
                window: args.window,
                seed: args.link.seed,
                ..WorldConfig::default()
            },
            time_limit: Duration::from_secs_f64(args.time_limit_h.max(0.0) * 3600.0),
            progress: !args.json || std::io::IsTerminal::is_terminal(&std::io::stderr()),
            update: match args.update {
                UpdateArg::Full => UpdateKind::Full,
                UpdateArg::Delta => UpdateKind::Delta,
            },
            per_mesh: args.per_mesh,
        };
        eprintln!(
            "sim-network fleet: {} devices, {} per mesh ({}), {}, {} B image ({:?}), seed {}",
            args.devices,
            args.mesh_size,
            match args.per_mesh {
                0 => "all at once, one job".to_string(),
                n => format!("a campaign, {n} downloading at once per mesh"),
            },
            link.summary(),
            args.image_size,
            args.update,
            args.link.seed
        );
        fleet::run(&run).map_err(|e| format!("{e:#}"))
    };
    match run() {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(j) => println!("{j}"),
                    Err(e) => eprintln!("error: {e}"),
                }
                eprintln!(
                    "updated: {}/{} devices in {:.0} s virtual, {:.1} s wall",
                    report.updated, report.device_count, report.virtual_time_s, report.wall_time_s
                );
            } else {
                print!("{report}");
            }
            if report.all_updated() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "not every device was updated: see the outcome column (seed {} reproduces this run)",
                    report.seed
                );
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(args: DemoArgs) -> ExitCode {
    if !(0.0..=1.0).contains(&args.loss) || args.hops == 0 || args.devices == 0 {
        eprintln!("error: --loss is between 0 and 1, --hops and --devices at least 1");
        return ExitCode::FAILURE;
    }
    let cfg = DemoConfig {
        dir: args.dir,
        devices: args.devices,
        link: LinkConfig {
            loss: if args.loss == 0.0 {
                LossModel::None
            } else {
                LossModel::Bernoulli { p: args.loss }
            },
            hops: args.hops,
            mac: args.mac.mac(Mac::OPENTHREAD_MAX_FRAME_RETRIES),
            ..LinkConfig::default()
        },
        image_size: args.image_size,
        seed: args.seed,
    };
    let result = match args.stack {
        Stack::Model => sim_network::sim::demo::run(&cfg),
        Stack::Openthread => openthread_demo(&cfg),
    };
    match result {
        Ok(report) => {
            print!("{report}");
            if report.all_updated() {
                println!(
                    "demo ok: {}/{} devices run 2.0.0 (verified byte for byte in their flash)",
                    report.updated, report.device_count
                );
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "demo FAILED: {}/{} devices updated (seed {} reproduces this run)",
                    report.updated, report.device_count, report.seed
                );
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "openthread")]
fn calibrate(args: CalibrateArgs) -> ExitCode {
    if !(0.0..1.0).contains(&args.loss) || args.hops == 0 || args.devices == 0 {
        eprintln!("error: --loss is between 0 and 1, --hops and --devices at least 1");
        return ExitCode::FAILURE;
    }
    let run = || -> anyhow::Result<_> {
        if args.dir.exists() {
            std::fs::remove_dir_all(&args.dir)?;
        }
        let node_exe = std::env::current_exe()?;
        eprintln!(
            "sim-network calibrate: {} devices, {} hop(s), loss {}: the model first, then OpenThread",
            args.devices, args.hops, args.loss
        );
        sim_network::thread::calibrate::run(&sim_network::thread::calibrate::Scenario {
            devices: args.devices,
            hops: args.hops,
            loss: args.loss,
            image_size: args.image_size,
            seed: args.seed,
            contention: Contention {
                collision: args.collision,
                busy_backoff: millis("busy-backoff-ms", args.busy_backoff_ms)
                    .map_err(anyhow::Error::msg)?,
            },
            dir: args.dir.clone(),
            node_exe,
        })
    };
    match run() {
        Ok(c) => {
            if args.json {
                match serde_json::to_string_pretty(&c) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{c}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "openthread")]
fn openthread_demo(cfg: &DemoConfig) -> anyhow::Result<FleetReport> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find this binary to start the nodes: {e}"))?;
    sim_network::thread::world::demo(cfg, exe)
}

#[cfg(not(feature = "openthread"))]
fn openthread_demo(_cfg: &DemoConfig) -> anyhow::Result<FleetReport> {
    anyhow::bail!("this sim-network was built without the `openthread` feature: rebuild with it")
}

async fn proxy(args: ProxyArgs) -> Result<(), String> {
    let link = args.link.link()?;
    let cfg = ProxyConfig {
        listen: args.listen,
        upstream: args.upstream,
        link,
        backhaul: args.link.backhaul()?,
        seed: args.link.seed,
        max_devices: args.max_devices,
    };
    let proxy = Proxy::bind(cfg).await.map_err(|e| e.to_string())?;
    eprintln!(
        "sim-network proxy: {} -> {} ({}, seed {}); Ctrl-C prints the counters",
        args.listen,
        args.upstream,
        link.summary(),
        args.link.seed
    );
    let duration = args.duration;
    let stop = async move {
        let timer = async {
            match duration {
                Some(s) if s.is_finite() && s >= 0.0 => {
                    tokio::time::sleep(Duration::from_secs_f64(s)).await
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated() => {}
            _ = timer => {}
        }
    };
    let report = proxy.run(stop).await.map_err(|e| e.to_string())?;
    if args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{json}");
    } else {
        print!("{report}");
    }
    Ok(())
}

#[cfg(unix)]
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminated() {
    std::future::pending().await
}

//! `lwm2m-client`: a simulated device on a file-backed flash that holds both slots, the boot state
//! and the persisted Object 5 record. It runs the same engine as the board: it registers, takes
//! firmware updates, and "reboots" by running the bootloader on the flash file and starting the
//! engine again, so an update really changes the running image. Kill it at any moment and start
//! it again on the same file: it comes back as the flash says.
//!
//! `lwm2m-client make-image --version V [--size N] [--fail-self-test] -o FILE` writes an image such
//! a device can boot (its header carries the version and the self-test outcome).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use heapless::String as HString;
use lwm2m_client::engine::{Config, Engine, Event};
use lwm2m_client::firmware::download::RetryPolicy;
use lwm2m_client::firmware::fetch::{Fetch, FetchConfig, SinkError};
use lwm2m_client::firmware::suit::Identity;
use lwm2m_client::flash_platform::FlashPlatform;
use lwm2m_client::host::{self, Clock, Exit};
use lwm2m_client::image::make_image;
use lwm2m_client::platform::BootOutcome;
use lwm2m_client::power_on::{PowerOn, PowerOnError, install_factory, power_on};
use lwm2m_client::rto::RtoConfig;
use lwm2m_client::storage::file_flash::FileFlash;
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use lwm2m_client::storage::slots;
use lwm2m_client::swarm::{self, ClassRule};
use lwm2m_client::uri::CoapUri;

#[derive(Parser)]
#[command(
    name = "lwm2m-client",
    version,
    about = "A simulated otafleet device on a file-backed flash",
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Endpoint client name.
    #[arg(long, required = true)]
    endpoint: Option<String>,
    /// The flash file (created with a factory image when missing).
    #[arg(long, required = true)]
    flash: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// What every device is given, alone (`lwm2m-client --endpoint ...`) or in a swarm.
#[derive(Args)]
struct DeviceArgs {
    /// The LwM2M server, e.g. coap://127.0.0.1:5683.
    #[arg(long, required = true)]
    server: Option<String>,
    /// Public key (SPKI PEM) that manifests must be signed with: the trust anchor, outside the
    /// updatable image.
    #[arg(long, required = true)]
    trust: Option<PathBuf>,
    /// Vendor id (UUID or name, as `suit create` takes it).
    #[arg(long, required = true)]
    vendor_id: Option<String>,
    /// Class id (UUID or name).
    #[arg(long, required = true)]
    class_id: Option<String>,
    /// Block size for downloads (16..1024; 64 fits one 802.15.4 frame).
    #[arg(long, default_value_t = 64)]
    block_size: u16,
    /// Image block requests in flight at once (1..16; limited further by the 1024-byte reorder
    /// buffer: 8 blocks of 64 bytes, 1 of 1024). More hides lost blocks behind others on a lossy mesh.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=16))]
    window: u8,
    /// Register in queue mode.
    #[arg(long)]
    queue_mode: bool,
    /// Registration lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    lifetime: u32,
    /// The user postpones updates (Update Result 11) until Maximum Defer Period (/5/0/13, set by
    /// the server) runs out; never a Critical one (Severity 0).
    #[arg(long)]
    defer_updates: bool,
    /// Version of the factory image a new flash file starts with.
    #[arg(long, default_value = "1.0.0")]
    factory_version: String,
}

/// `lwm2m-client swarm`: many devices in one process.
#[derive(Args)]
struct SwarmArgs {
    /// How many devices (1..=10000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    count: u32,
    /// Endpoint names are this prefix and the index from 0, zero-padded to the width of the
    /// largest index (`sw-000` .. `sw-199` for 200), so name order is index order.
    #[arg(long, default_value = "sw-")]
    endpoint_prefix: String,
    /// Directory of the flash files, `<endpoint>.img` each (created when missing; existing files
    /// are booted as they are, like `--flash`).
    #[arg(long)]
    dir: PathBuf,
    /// Devices whose endpoint name matches the glob PATTERN (`*`, `?`) are built for CLASS instead
    /// of --class-id (so a release for --class-id fails on them with Update Result 6). Repeatable;
    /// the first match wins.
    #[arg(long = "class-id-for", value_name = "PATTERN=CLASS", value_parser = ClassRule::parse)]
    class_id_for: Vec<ClassRule>,
    /// Device i starts i times this many milliseconds after the first (spreads the registrations).
    #[arg(long, default_value_t = 5)]
    start_interval_ms: u64,
    /// Threads the devices are shared over (each runs its devices as tasks of one event loop).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Write a firmware image this device can boot.
    MakeImage {
        #[arg(long)]
        version: String,
        /// Image size in bytes, header included.
        #[arg(long, default_value_t = 32 * 1024)]
        size: usize,
        /// Build an image whose self-test fails (it will be rolled back).
        #[arg(long)]
        fail_self_test: bool,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run many simulated devices in this one process over real UDP: each has its own socket, its
    /// own flash file under --dir and its own engine, booted and rebooted as `lwm2m-client` alone
    /// boots one.
    Swarm(SwarmArgs),
    /// Fetch one resource block by block with the device's downloader (window of requests,
    /// adaptive retransmission timeout), from any CoAP server: for measurements and checks.
    Fetch(FetchArgs),
}

#[derive(Args)]
struct FetchArgs {
    /// coap://IP:PORT/path
    uri: String,
    /// Where the bytes go.
    #[arg(short, long)]
    output: PathBuf,
    /// Block size asked for (16..1024).
    #[arg(long, default_value_t = 64)]
    block_size: u16,
    /// Block requests in flight at once (1..16; bounded by the 1024-byte reorder buffer and the
    /// 12 exchange slots, as on the device).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=16))]
    window: u8,
    /// Block exchanges in a row that may fail (each after RFC 7252's 4 retransmissions) before
    /// the fetch gives up.
    #[arg(long, default_value_t = 6)]
    max_failures: u8,
    /// Print one JSON object with the outcome instead of a progress bar and a line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::MakeImage {
            version,
            size,
            fail_self_test,
            output,
        }) => make_image(&version, size, !fail_self_test)
            .ok_or_else(|| anyhow!("version {version:?} is longer than 32 bytes"))
            .and_then(|img| {
                std::fs::write(&output, img)
                    .with_context(|| format!("cannot write {}", output.display()))
            })
            .map(|()| {
                println!(
                    "wrote {} ({size} bytes, version {version})",
                    output.display()
                )
            }),
        Some(Command::Fetch(args)) => fetch(args),
        Some(Command::Swarm(args)) => swarm(args),
        None => run(cli.run),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lwm2m-client: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn fetch(args: FetchArgs) -> Result<()> {
    use sha2::Digest;
    use std::io::{Seek, SeekFrom, Write};

    let config = FetchConfig {
        block_size: args.block_size,
        window: args.window,
        rto: RtoConfig::default(),
        retry: RetryPolicy {
            max_failures: args.max_failures.max(1),
            ..RetryPolicy::default()
        },
        seed: std::process::id() ^ 0xfe7c_0000,
    };
    let peer = CoapUri::parse(&args.uri)
        .map_err(|_| anyhow!("the URI must be coap://IP:PORT/path, not {}", args.uri))?
        .peer;
    if lwm2m_core::block::szx_for_size(usize::from(args.block_size)).is_err() {
        bail!("--block-size must be a power of two from 16 to 1024");
    }
    let mut file = std::fs::File::create(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        // The size is known only from the first response: count bytes and rate.
        indicatif::ProgressBar::new_spinner().with_style(indicatif::ProgressStyle::with_template(
            "{spinner} {bytes} in {elapsed} ({bytes_per_sec})",
        )?)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let (outcome, restarts) = runtime.block_on(async {
        let socket = tokio::net::UdpSocket::bind(if peer.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })
        .await?;
        let clock = Clock::new();
        let mut fetch = Fetch::new(&args.uri, &config, clock.now())
            .map_err(|r| anyhow!("cannot fetch {}: {r:?}", args.uri))?;
        let outcome = host::fetch(&mut fetch, &socket, &clock, |offset, bytes| {
            bar.set_position(u64::from(offset) + bytes.len() as u64);
            file.seek(SeekFrom::Start(u64::from(offset)))
                .and_then(|_| file.write_all(bytes))
                .map_err(|_| SinkError)
        })
        .await;
        anyhow::Ok((outcome, fetch.restarts))
    })?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let size = match outcome {
        Ok(size) => size,
        Err(result) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "result": format!("{result:?}"), "elapsed_s": elapsed})
                );
            }
            bail!(
                "the fetch of {} failed after {elapsed:.1} s: {}",
                args.uri,
                fetch_failure(result)
            );
        }
    };
    file.set_len(u64::from(size))?;
    drop(file);
    let bytes = std::fs::read(&args.output)?;
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "bytes": size, "sha256": digest, "elapsed_s": elapsed,
                "restarts": restarts, "block_size": args.block_size, "window": args.window})
        );
    } else {
        println!(
            "fetched {size} bytes in {elapsed:.2} s to {} (sha256 {digest})",
            args.output.display()
        );
    }
    Ok(())
}

/// What a failed fetch means, and what to try.
fn fetch_failure(result: lwm2m_core::object5::UpdateResult) -> &'static str {
    use lwm2m_core::object5::UpdateResult as R;
    match result {
        R::InvalidUri => {
            "the server refused the request (4.00, 4.01, 4.03 or 4.04): check the path"
        }
        R::ConnectionLost => {
            "no answer to the block requests; check the address, or give a lossy path a larger --max-failures"
        }
        R::NotEnoughFlash => "the output file could not be written",
        R::UnsupportedPackage => "the server cannot send this representation (4.06 or 4.15)",
        _ => "the server's answers made no sense as a block-wise transfer",
    }
}

/// The settings every device shares, parsed once: where the server is, the trust anchor, the
/// vendor, and the flags.
struct Common {
    server: std::net::SocketAddr,
    trust: suit_manifest::TrustAnchor,
    vendor: [u8; 16],
    class: String,
    args: DeviceArgs,
}

fn missing(what: &str) -> anyhow::Error {
    anyhow!("--{what} is required")
}

impl Common {
    fn new(args: DeviceArgs) -> Result<Common> {
        let server_uri = args.server.clone().ok_or_else(|| missing("server"))?;
        let server = CoapUri::parse(&server_uri)
            .map_err(|_| anyhow!("--server must be coap://IP:PORT, not {server_uri}"))?
            .peer;
        let trust_path = args.trust.clone().ok_or_else(|| missing("trust"))?;
        let key_text = std::fs::read_to_string(&trust_path)
            .with_context(|| format!("cannot read {}", trust_path.display()))?;
        let key = suit_manifest::keyfile::verifying_key_from_text(&key_text)
            .with_context(|| format!("{}", trust_path.display()))?;
        let vendor = suit_manifest::builder::uuid_for(
            args.vendor_id
                .as_deref()
                .ok_or_else(|| missing("vendor-id"))?,
            None,
        );
        let class = args.class_id.clone().ok_or_else(|| missing("class-id"))?;
        if lwm2m_core::block::szx_for_size(usize::from(args.block_size)).is_err() {
            bail!("--block-size must be a power of two from 16 to 1024");
        }
        Ok(Common {
            server,
            trust: suit_manifest::TrustAnchor::from_key(key),
            vendor,
            class,
            args,
        })
    }

    /// The engine's configuration for one device: its endpoint name, its class id (UUID or name)
    /// and its flash file (whose name is the serial number).
    fn config(&self, endpoint: &str, class: &str, flash: &std::path::Path) -> Result<Config> {
        let a = &self.args;
        let endpoint = HString::try_from(endpoint)
            .map_err(|_| anyhow!("the endpoint name {endpoint:?} is longer than 64 bytes"))?;
        let identity = Identity {
            vendor_id: self.vendor,
            class_id: suit_manifest::builder::uuid_for(class, Some(&self.vendor)),
        };
        let mut cfg = Config::new(endpoint, self.server, identity, self.trust.clone());
        cfg.lifetime_s = a.lifetime.max(1);
        cfg.queue_mode = a.queue_mode;
        cfg.block_size = a.block_size;
        cfg.window = a.window;
        cfg.model = HString::try_from("simulated-device").unwrap_or_default();
        cfg.serial = serial(flash);
        cfg.defer_updates = a.defer_updates;
        cfg.seed = std::process::id() ^ 0x5eed_0000;
        Ok(cfg)
    }
}

fn run(args: RunArgs) -> Result<()> {
    let flash_path = args.flash.ok_or_else(|| missing("flash"))?;
    let endpoint = args.endpoint.ok_or_else(|| missing("endpoint"))?;
    let common = Common::new(args.device)?;
    let config = common.config(&endpoint, &common.class, &flash_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_device(
        config,
        &flash_path,
        &common.args.factory_version,
    ))
}

/// One device for as long as it runs: its own UDP socket, then power-on after power-on on its
/// flash file (every update reboots it). Returns only with the error that stopped it.
async fn run_device(config: Config, flash_path: &std::path::Path, factory: &str) -> Result<()> {
    let server = config.server;
    let socket = tokio::net::UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await?;
    loop {
        match boot_once(&config, flash_path, factory, &socket).await? {
            Exit::Reboot => println!("{}: rebooting", config.endpoint),
            Exit::Socket => bail!("the UDP socket failed"),
            Exit::Halted => bail!("the engine stopped"),
        }
    }
}

/// `lwm2m-client swarm`: `--count` devices, each exactly what `run` runs (its own socket, flash
/// file, engine and reboots), as tasks on `--threads` event loops. Runs until every device has
/// stopped, which only an error does: then it fails naming how many.
fn swarm(args: SwarmArgs) -> Result<()> {
    let count = usize::try_from(args.count)?;
    let threads = usize::from(args.threads);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let common = std::sync::Arc::new(Common::new(args.device)?);
    let mut shares: Vec<Vec<(usize, Config, PathBuf)>> = (0..threads).map(|_| Vec::new()).collect();
    let mut other = 0usize;
    let names = swarm::endpoint_names(&args.endpoint_prefix, count);
    for (i, endpoint) in names.iter().enumerate() {
        let class = swarm::class_for(&args.class_id_for, endpoint, &common.class);
        other += usize::from(class != common.class);
        let flash = args.dir.join(format!("{endpoint}.img"));
        let config = common.config(endpoint, class, &flash)?;
        if let Some(share) = shares.get_mut(swarm::thread_of(i, threads)) {
            share.push((i, config, flash));
        }
    }
    println!(
        "swarm: {count} devices ({} .. {}, {other} of another class) on {threads} threads, flash files in {}",
        names.first().map_or("", String::as_str),
        names.last().map_or("", String::as_str),
        args.dir.display()
    );
    let interval = std::time::Duration::from_millis(args.start_interval_ms);
    let handles: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(t, share)| {
            let common = std::sync::Arc::clone(&common);
            std::thread::Builder::new()
                .name(format!("swarm-{t}"))
                .spawn(move || swarm_thread(share, &common.args.factory_version, interval))
        })
        .collect::<std::io::Result<_>>()?;
    let mut stopped = 0usize;
    for h in handles {
        stopped += match h.join() {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("a swarm thread panicked"),
        };
    }
    bail!("{stopped} of {count} devices stopped (see their lines above)")
}

/// One thread of the swarm: its devices as tasks of one event loop. Returns how many stopped
/// (all of them, when it returns).
fn swarm_thread(
    devices: Vec<(usize, Config, PathBuf)>,
    factory: &str,
    interval: std::time::Duration,
) -> Result<usize> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let factory: std::rc::Rc<str> = factory.into();
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|(i, config, flash)| {
            let factory = std::rc::Rc::clone(&factory);
            let delay = interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            local.spawn_local(async move {
                tokio::time::sleep(delay).await;
                let ep = config.endpoint.clone();
                if let Err(e) = run_device(config, &flash, &factory).await {
                    eprintln!("{ep}: stopped: {}", format!("{e:#}").replace('\n', " "));
                }
            })
        })
        .collect();
    let n = tasks.len();
    runtime.block_on(local.run_until(async move {
        for t in tasks {
            let _ = t.await;
        }
    }));
    Ok(n)
}

/// The serial number: the flash file's name, cut to 32 bytes.
fn serial(path: &std::path::Path) -> HString<32> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut s = HString::new();
    for c in name.chars() {
        if s.push(c).is_err() {
            break;
        }
    }
    s
}

fn layout() -> Layout {
    Layout::NRF52840
}

/// One power-on: the bootloader, the self-test, then the engine until it asks for a reboot.
async fn boot_once(
    config: &Config,
    path: &std::path::Path,
    factory: &str,
    socket: &tokio::net::UdpSocket,
) -> Result<Exit> {
    let l = layout();
    // Only a new flash file gets the factory image: an ACTIVE without a header on an existing
    // file is a swap that a power cut interrupted, which the bootloader must finish first.
    let new_file = !path.exists();
    let file: FileFlash = FileFlash::open_or_create(path, l.end() as usize)
        .with_context(|| format!("cannot open the flash file {}", path.display()))?;
    let device = DeviceFlash::new(file, l).map_err(|e| anyhow!("flash layout: {e:?}"))?;
    let ep = &config.endpoint;
    if new_file {
        let image = make_image(factory, 32 * 1024, true)
            .ok_or_else(|| anyhow!("--factory-version is longer than 32 bytes"))?;
        install_factory(&device, &image).map_err(|e| anyhow!("factory image: {e:?}"))?;
        println!("{ep}: new flash file: factory image {factory} installed");
    }
    let info = match power_on(&device) {
        Ok(PowerOn::Run(info)) => info,
        Ok(PowerOn::SelfTestFailed(version)) => {
            println!("{ep}: booted {version} on trial; self-test FAILED; resetting to roll back");
            return Ok(Exit::Reboot);
        }
        Err(PowerOnError::NoImage) => bail!(
            "no bootable image in {} (delete the file to start from the factory image)",
            path.display()
        ),
        Err(e) => bail!("power-on: {e:?}"),
    };
    match info.outcome {
        BootOutcome::Confirmed => println!("{ep}: {} confirmed", info.running_version),
        BootOutcome::RolledBack => println!("{ep}: rolled back to {}", info.running_version),
        BootOutcome::Normal => {}
    }
    println!("{ep}: running {}", info.running_version);
    // Message ids and tokens must not repeat those of the previous boot (the server deduplicates
    // by message id for EXCHANGE_LIFETIME): a fresh seed at every boot, as a device's RNG would.
    let mut config = config.clone();
    config.seed = boot_seed(ep.as_str());
    let mut word = slots::StateWord::new();
    let platform = FlashPlatform::new(&device, &mut word).map_err(|e| anyhow!("staging: {e:?}"))?;
    let clock = Clock::new();
    let mut engine = Engine::new(config, platform, info, clock.now());
    let exit = host::run(&mut engine, socket, &clock, |e| {
        match e {
            Event::Registered => println!("{ep}: registered"),
            Event::Firmware { state, result } => println!(
                "{ep}: firmware state {state:?}, result {result:?} ({})",
                *result as u8
            ),
            Event::Reboot => println!("{ep}: update executed"),
            Event::PlatformError => eprintln!("{ep}: flash error"),
            Event::Progress { .. } => {}
        }
        std::ops::ControlFlow::Continue(())
    })
    .await;
    Ok(exit)
}

/// A fresh seed for each boot; the endpoint name is mixed in, so the devices of a swarm, which
/// boot in the same process at nearly the same moment, do not share one.
fn boot_seed(endpoint: &str) -> u32 {
    let salt = endpoint.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u32) ^ ((nanos >> 32) as u32) ^ std::process::id().rotate_left(16) ^ salt
}

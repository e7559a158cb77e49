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
use lwm2m_client::time::Duration;
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
    /// The LwM2M server, e.g. coap://127.0.0.1:5683.
    #[arg(long, required = true)]
    server: Option<String>,
    /// Endpoint client name.
    #[arg(long, required = true)]
    endpoint: Option<String>,
    /// The flash file (created with a factory image when missing).
    #[arg(long, required = true)]
    flash: Option<PathBuf>,
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

fn run(args: RunArgs) -> Result<()> {
    let missing = |what: &str| anyhow!("--{what} is required");
    let server_uri = args.server.ok_or_else(|| missing("server"))?;
    let server = CoapUri::parse(&server_uri)
        .map_err(|_| anyhow!("--server must be coap://IP:PORT, not {server_uri}"))?
        .peer;
    let flash_path = args.flash.ok_or_else(|| missing("flash"))?;
    let trust_path = args.trust.ok_or_else(|| missing("trust"))?;
    let key_text = std::fs::read_to_string(&trust_path)
        .with_context(|| format!("cannot read {}", trust_path.display()))?;
    let key = suit_manifest::keyfile::verifying_key_from_text(&key_text)
        .with_context(|| format!("{}", trust_path.display()))?;
    let vendor = suit_manifest::builder::uuid_for(
        &args.vendor_id.ok_or_else(|| missing("vendor-id"))?,
        None,
    );
    let class = suit_manifest::builder::uuid_for(
        &args.class_id.ok_or_else(|| missing("class-id"))?,
        Some(&vendor),
    );
    if lwm2m_core::block::szx_for_size(usize::from(args.block_size)).is_err() {
        bail!("--block-size must be a power of two from 16 to 1024");
    }
    let config = Config {
        endpoint: HString::try_from(args.endpoint.ok_or_else(|| missing("endpoint"))?.as_str())
            .map_err(|_| anyhow!("--endpoint is longer than 64 bytes"))?,
        server,
        lifetime_s: args.lifetime.max(1),
        queue_mode: args.queue_mode,
        awake_window: Duration::from_secs(93),
        block_size: args.block_size,
        window: args.window,
        identity: Identity {
            vendor_id: vendor,
            class_id: class,
        },
        trust: suit_manifest::TrustAnchor::from_key(key),
        manufacturer: HString::try_from("otafleet").unwrap_or_default(),
        model: HString::try_from("simulated-device").unwrap_or_default(),
        serial: serial(&flash_path),
        rto: RtoConfig::default(),
        retry: RetryPolicy::default(),
        defer_updates: args.defer_updates,
        seed: std::process::id() ^ 0x5eed_0000,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let socket = tokio::net::UdpSocket::bind(if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })
        .await?;
        loop {
            match boot_once(&config, &flash_path, &args.factory_version, &socket).await? {
                Exit::Reboot => println!("{}: rebooting", config.endpoint),
                Exit::Socket => bail!("the UDP socket failed"),
                Exit::Halted => bail!("the engine stopped"),
            }
        }
    })
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
    // by message id for 247 s): a fresh seed at every boot, as a device's RNG would give.
    let mut config = config.clone();
    config.seed = boot_seed();
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

fn boot_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u32) ^ ((nanos >> 32) as u32) ^ std::process::id().rotate_left(16)
}

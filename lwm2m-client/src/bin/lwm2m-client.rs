//! `lwm2m-client`: a simulated device on a file-backed flash that holds both slots, the boot state
//! and the persisted Object 5 record. It runs the same engine as the board: it registers, takes
//! firmware updates, and "reboots" by running the bootloader on the flash file and starting the
//! engine again, so an update really changes the running image. Kill it at any moment and start
//! it again on the same file: it comes back as the flash says.
//!
//! `lwm2m-client make-image --version V [--size N | --payload FIRMWARE] [--fail-self-test] -o FILE`
//! writes an image such a device can boot (its header carries the version and the self-test
//! outcome), of filler bytes or of a real firmware binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use heapless::String as HString;
use lwm2m_client::dtls::{DtlsSocket, Psk};
use lwm2m_client::engine::{Config, Engine, Event};
use lwm2m_client::firmware::download::RetryPolicy;
use lwm2m_client::firmware::fetch::{Fetch, FetchConfig, SinkError};
use lwm2m_client::firmware::suit::Identity;
use lwm2m_client::flash_platform::FlashPlatform;
use lwm2m_client::host::{self, Clock, Exit, OscoreSocket};
use lwm2m_client::image::{ImageHeader, make_image, wrap_payload};
use lwm2m_client::oscore::{FlashSeqStore, Oscore};
use lwm2m_client::platform::BootOutcome;
use lwm2m_client::power_on::{PowerOn, PowerOnError, install_factory, power_on};
use lwm2m_client::rto::RtoConfig;
use lwm2m_client::storage::file_flash::FileFlash;
use lwm2m_client::storage::layout::{DeviceFlash, Layout};
use lwm2m_client::storage::persist;
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
    /// The LwM2M server, e.g. coap://127.0.0.1:5683, or coaps://127.0.0.1:5684 with
    /// --psk-identity and --psk-key.
    #[arg(long, required = true)]
    server: Option<String>,
    /// DTLS PSK identity for a coaps:// server (as provisioned with `lwm2m-server device add`).
    #[arg(long, requires = "psk_key")]
    psk_identity: Option<String>,
    /// DTLS PSK key in hex, for a coaps:// server.
    #[arg(long, requires = "psk_identity")]
    psk_key: Option<String>,
    /// OSCORE (RFC 8613) with a coap:// server: the device's Sender ID in hex (the kid of its
    /// requests; the server's `--oscore-recipient-id`), at most 7 bytes.
    #[arg(long, requires_all = ["oscore_recipient_id", "oscore_master_secret"])]
    oscore_sender_id: Option<String>,
    /// The device's OSCORE Recipient ID in hex (the server's `--oscore-sender-id`).
    #[arg(long, requires_all = ["oscore_sender_id", "oscore_master_secret"])]
    oscore_recipient_id: Option<String>,
    /// The OSCORE Master Secret in hex, as provisioned with `lwm2m-server device add`.
    #[arg(long, requires_all = ["oscore_sender_id", "oscore_recipient_id"])]
    oscore_master_secret: Option<String>,
    /// The OSCORE Master Salt in hex (default: empty).
    #[arg(long, requires = "oscore_master_secret")]
    oscore_master_salt: Option<String>,
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
    /// Block size downloads start with (16..1024; 64 fits one 802.15.4 frame). It adapts to
    /// the link up to 1024 unless --fixed-block-size.
    #[arg(long, default_value_t = 64)]
    block_size: u16,
    /// Keep --block-size for the whole download instead of adapting it.
    #[arg(long)]
    fixed_block_size: bool,
    /// Most block requests in flight at once (1..16); the window adapts below it.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=16))]
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
    /// Start a new flash file with this image (one `make-image` wrote, e.g. with --payload)
    /// instead of a generated one of --factory-version.
    #[arg(long, conflicts_with = "factory_version")]
    factory_image: Option<PathBuf>,
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
        /// Image size in bytes, header included, of deterministic filler (default 32768). Not
        /// with --payload, whose image is exactly the header and the payload.
        #[arg(long)]
        size: Option<usize>,
        /// A real firmware binary (raw, e.g. `objcopy -O binary`) to carry byte for byte after
        /// the 64-byte header, instead of filler. The image must fit the device's slot.
        #[arg(long, value_name = "FILE")]
        payload: Option<PathBuf>,
        /// Build an image whose self-test fails (it will be rolled back).
        #[arg(long)]
        fail_self_test: bool,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write the nRF52840's SETTINGS partition with the factory's records for the Thread board
    /// (feature `thread` of boards/nrf52840), to be flashed at the partition's start (0xFC000).
    /// It replaces the whole partition: a factory step, before the device has any state.
    SettingsImage {
        /// The network's active operational dataset, hex TLVs (as `ot-ctl dataset active -x`
        /// prints it on the border router).
        #[arg(long, value_name = "HEX")]
        thread_dataset: Option<String>,
        /// The Joiner's PSKd, for a board built with `thread-joiner` and no dataset.
        #[arg(long, value_name = "PSKD")]
        thread_pskd: Option<String>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run many simulated devices in this one process over real UDP: each has its own socket, its
    /// own flash file under --dir and its own engine, booted and rebooted as `lwm2m-client` alone
    /// boots one.
    Swarm(Box<SwarmArgs>),
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
    /// Block size asked for first (16..1024); it adapts to the link as on the device unless
    /// --fixed-block-size.
    #[arg(long, default_value_t = 64)]
    block_size: u16,
    /// Keep --block-size for the whole fetch.
    #[arg(long)]
    fixed_block_size: bool,
    /// Most block requests in flight at once (1..16, the device's block slots); the window
    /// adapts below it.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=16))]
    window: u8,
    /// Setbacks (wrong answers, server errors, 5.03) without new data, or requests timing out
    /// (each after RFC 7252's 4 retransmissions) without any answer, before the fetch gives up.
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
            payload,
            fail_self_test,
            output,
        }) => make_image_file(&version, size, payload, !fail_self_test, &output),
        Some(Command::SettingsImage {
            thread_dataset,
            thread_pskd,
            output,
        }) => settings_image(thread_dataset.as_deref(), thread_pskd.as_deref(), &output),
        Some(Command::Fetch(args)) => fetch(args),
        Some(Command::Swarm(args)) => swarm(*args),
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

/// `make-image`: filler of `--size` bytes, or the header and a `--payload` file; never both (a
/// padded payload would make the image's length, and so its digest, something the build did not
/// produce).
fn make_image_file(
    version: &str,
    size: Option<usize>,
    payload: Option<PathBuf>,
    self_test_passes: bool,
    output: &std::path::Path,
) -> Result<()> {
    let img = match (size, payload) {
        (Some(_), Some(_)) => bail!(
            "--size and --payload exclude each other: with --payload the image is exactly the \
             64-byte header and the payload (pad the payload file itself for a fixed size)"
        ),
        (size, None) => make_image(version, size.unwrap_or(32 * 1024), self_test_passes)
            .ok_or_else(|| anyhow!("version {version:?} is longer than 32 bytes"))?,
        (None, Some(path)) => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let max = layout().slot_size() as usize;
            wrap_payload(version, &bytes, self_test_passes, max)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
    };
    std::fs::write(output, &img).with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "wrote {} ({} bytes, version {version})",
        output.display(),
        img.len()
    );
    Ok(())
}

fn fetch(args: FetchArgs) -> Result<()> {
    use sha2::Digest;
    use std::io::{Seek, SeekFrom, Write};

    let config = FetchConfig {
        block_size: args.block_size,
        adapt_block_size: !args.fixed_block_size,
        window: args.window,
        rto: RtoConfig::default(),
        retry: RetryPolicy {
            max_failures: args.max_failures.max(1),
            ..RetryPolicy::default()
        },
        seed: std::process::id() ^ 0xfe7c_0000,
    };
    let uri = CoapUri::parse(&args.uri)
        .map_err(|_| anyhow!("the URI must be coap://IP:PORT/path, not {}", args.uri))?;
    if uri.secure {
        bail!("fetch speaks plain coap:// only; coaps:// is for the device (--server)");
    }
    let peer = uri.peer;
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
            bar.inc(bytes.len() as u64);
            file.seek(SeekFrom::Start(u64::from(offset)))
                .and_then(|_| file.write_all(bytes))
                .map_err(|_| SinkError)
        })
        .await;
        anyhow::Ok((outcome, fetch.restarts()))
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
                "restarts": restarts, "block_size": args.block_size,
                "adapt_block_size": !args.fixed_block_size, "window": args.window})
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
    /// The DTLS credentials, for a coaps:// server.
    psk: Option<Psk>,
    /// The OSCORE context's inputs, for a coap:// server.
    oscore: Option<OscoreKeys>,
    trust: suit_manifest::TrustAnchor,
    vendor: [u8; 16],
    class: String,
    args: DeviceArgs,
}

/// How long a boot waits for its DTLS handshake.
const DTLS_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `settings-image`: the records in a sequential-storage map on an erased SETTINGS partition of
/// `Layout::NRF52840`, as the board's `persist::load_blob` reads them.
fn settings_image(
    dataset: Option<&str>,
    pskd: Option<&str>,
    output: &std::path::Path,
) -> Result<()> {
    use lwm2m_client::storage::flash::HeapFlash;
    use persist::board_key;
    if dataset.is_none() && pskd.is_none() {
        bail!("give --thread-dataset, --thread-pskd or both");
    }
    let layout = Layout::NRF52840;
    let range = layout.settings();
    let flash = DeviceFlash::new(HeapFlash::new(layout.end() as usize), layout)
        .map_err(|e| anyhow!("flash layout: {e:?}"))?;
    if let Some(hex) = dataset {
        let tlvs = hex_arg("thread-dataset", hex, false)?;
        if tlvs.len() > 254 {
            bail!(
                "--thread-dataset is {} bytes, a dataset has at most 254",
                tlvs.len()
            );
        }
        persist::store_blob(&flash, board_key::THREAD_DATASET, &tlvs)
            .map_err(|e| anyhow!("dataset: {e}"))?;
    }
    if let Some(pskd) = pskd {
        let ok = (6..=32).contains(&pskd.len())
            && pskd
                .bytes()
                .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"IOQZ".contains(&b)));
        if !ok {
            bail!("--thread-pskd must be 6 to 32 of 0-9 and A-Z without I, O, Q, Z");
        }
        persist::store_blob(&flash, board_key::THREAD_PSKD, pskd.as_bytes())
            .map_err(|e| anyhow!("PSKd: {e}"))?;
    }
    let flash = flash.into_inner();
    let bytes = flash
        .as_bytes()
        .get(range.start as usize..range.end as usize)
        .ok_or_else(|| anyhow!("the settings partition is outside the flash"))?;
    std::fs::write(output, bytes).with_context(|| format!("{}", output.display()))?;
    Ok(())
}

/// A PSK key given in hex.
fn hex_key(hex: &str) -> Result<Vec<u8>> {
    hex_arg("psk-key", hex, false)
}

/// The bytes of `--{flag}` given in hex (`empty`: may be empty, as an OSCORE ID may).
fn hex_arg(flag: &str, hex: &str, empty: bool) -> Result<Vec<u8>> {
    let hex = hex.trim();
    let pairs = hex.as_bytes().chunks(2);
    if hex.len() % 2 != 0
        || (hex.is_empty() && !empty)
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        bail!("--{flag} must be hex digits, two per byte, not {hex:?}");
    }
    pairs
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| anyhow!("--{flag} must be hex digits, two per byte"))
        })
        .collect()
}

/// What an OSCORE context is derived from (device side: Sender ID = the server's Recipient ID).
#[derive(Clone)]
struct OscoreKeys {
    sender_id: Vec<u8>,
    recipient_id: Vec<u8>,
    secret: Vec<u8>,
    salt: Vec<u8>,
}

impl OscoreKeys {
    fn from_args(a: &DeviceArgs, secure: bool) -> Result<Option<OscoreKeys>> {
        let (Some(sid), Some(rid), Some(secret)) = (
            &a.oscore_sender_id,
            &a.oscore_recipient_id,
            &a.oscore_master_secret,
        ) else {
            return Ok(None);
        };
        if secure {
            bail!(
                "OSCORE runs on a coap:// server; --oscore-* and a coaps:// --server (DTLS) exclude each other"
            );
        }
        let keys = OscoreKeys {
            sender_id: hex_arg("oscore-sender-id", sid, true)?,
            recipient_id: hex_arg("oscore-recipient-id", rid, true)?,
            secret: hex_arg("oscore-master-secret", secret, false)?,
            salt: match &a.oscore_master_salt {
                Some(salt) => hex_arg("oscore-master-salt", salt, true)?,
                None => Vec::new(),
            },
        };
        for (flag, id) in [
            ("oscore-sender-id", &keys.sender_id),
            ("oscore-recipient-id", &keys.recipient_id),
        ] {
            if id.len() > 7 {
                bail!(
                    "--{flag} has {} bytes; an OSCORE ID has at most 7",
                    id.len()
                );
            }
        }
        if keys.sender_id == keys.recipient_id {
            bail!("--oscore-sender-id and --oscore-recipient-id must differ");
        }
        Ok(Some(keys))
    }
}

fn missing(what: &str) -> anyhow::Error {
    anyhow!("--{what} is required")
}

impl Common {
    /// The image a new flash file starts with: --factory-image's file, checked to be an image
    /// this device boots and fits its slot, or one generated for --factory-version.
    fn factory_image(&self) -> Result<Vec<u8>> {
        let Some(path) = &self.args.factory_image else {
            let version = &self.args.factory_version;
            return make_image(version, 32 * 1024, true)
                .ok_or_else(|| anyhow!("--factory-version is longer than 32 bytes"));
        };
        let image = std::fs::read(path)
            .with_context(|| format!("cannot read the factory image {}", path.display()))?;
        let header = ImageHeader::parse(&image).ok_or_else(|| {
            anyhow!(
                "{} is not a device image: make one with `lwm2m-client make-image --version V --payload FILE -o IMAGE`",
                path.display()
            )
        })?;
        if header.len as usize != image.len() {
            bail!(
                "{}: its header says {} bytes, the file has {}: the image is cut or padded; make it again with `lwm2m-client make-image`",
                path.display(),
                header.len,
                image.len()
            );
        }
        let slot = layout().slot_size() as usize;
        if image.len() > slot {
            bail!(
                "{}: {} bytes do not fit the device's {slot}-byte slot",
                path.display(),
                image.len()
            );
        }
        Ok(image)
    }

    fn new(args: DeviceArgs) -> Result<Common> {
        let server_uri = args.server.clone().ok_or_else(|| missing("server"))?;
        let server = CoapUri::parse(&server_uri).map_err(|_| {
            anyhow!("--server must be coap://IP:PORT or coaps://IP:PORT, not {server_uri}")
        })?;
        let psk = match (server.secure, &args.psk_identity, &args.psk_key) {
            (true, Some(identity), Some(key)) => Some(Psk {
                identity: identity.clone(),
                key: hex_key(key)?,
            }),
            (true, _, _) => bail!("a coaps:// server needs --psk-identity and --psk-key"),
            (false, None, None) => None,
            (false, _, _) => bail!("--psk-identity and --psk-key need a coaps:// --server"),
        };
        let oscore = OscoreKeys::from_args(&args, server.secure)?;
        let server = server.peer;
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
            psk,
            oscore,
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
        cfg.secure = self.psk.is_some();
        cfg.oscore = self.oscore.is_some();
        cfg.lifetime_s = a.lifetime.max(1);
        cfg.queue_mode = a.queue_mode;
        cfg.block_size = a.block_size;
        cfg.adapt_block_size = !a.fixed_block_size;
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
        common.psk.as_ref(),
        common.oscore.as_ref(),
        &flash_path,
        &common.factory_image()?,
    ))
}

/// One device for as long as it runs: its own UDP socket, then power-on after power-on on its
/// flash file (every update reboots it). Returns only with the error that stopped it.
async fn run_device(
    config: Config,
    psk: Option<&Psk>,
    oscore: Option<&OscoreKeys>,
    flash_path: &std::path::Path,
    factory: &[u8],
) -> Result<()> {
    let server = config.server;
    let socket = std::sync::Arc::new(
        tokio::net::UdpSocket::bind(if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })
        .await?,
    );
    loop {
        // Like a real device, a new DTLS handshake at every boot.
        let exit = match psk {
            Some(psk) => {
                let dtls =
                    DtlsSocket::connect(socket.clone(), server, psk, DTLS_CONNECT_TIMEOUT).await?;
                println!(
                    "{}: DTLS session with {server} as {:?}",
                    config.endpoint, psk.identity
                );
                boot_once(&config, flash_path, factory, &dtls, None).await?
            }
            None => boot_once(&config, flash_path, factory, socket.as_ref(), oscore).await?,
        };
        match exit {
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
    if common.psk.is_some() || common.oscore.is_some() {
        bail!("a swarm speaks plain CoAP only: its devices would share one PSK or OSCORE context");
    }
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
    let factory: std::sync::Arc<[u8]> = common.factory_image()?.into();
    let handles: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(t, share)| {
            let factory = std::sync::Arc::clone(&factory);
            std::thread::Builder::new()
                .name(format!("swarm-{t}"))
                .spawn(move || swarm_thread(share, &factory, interval))
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
    factory: &[u8],
    interval: std::time::Duration,
) -> Result<usize> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let factory: std::rc::Rc<[u8]> = factory.into();
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|(i, config, flash)| {
            let factory = std::rc::Rc::clone(&factory);
            let delay = interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            local.spawn_local(async move {
                tokio::time::sleep(delay).await;
                let ep = config.endpoint.clone();
                if let Err(e) = run_device(config, None, None, &flash, &factory).await {
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
async fn boot_once<S: host::Socket>(
    config: &Config,
    path: &std::path::Path,
    factory: &[u8],
    socket: &S,
    oscore: Option<&OscoreKeys>,
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
        install_factory(&device, factory).map_err(|e| anyhow!("factory image: {e:?}"))?;
        let version = ImageHeader::parse(factory)
            .map(|h| h.version)
            .unwrap_or_default();
        println!("{ep}: new flash file: factory image {version} installed");
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
    let server = config.server;
    let mut engine = Engine::new(config, platform, info, clock.now());
    let Some(keys) = oscore else {
        return Ok(run_engine(&mut engine, socket, &clock, ep).await);
    };
    // A new context state at every boot, as on a device: the sender continues from the
    // reservation in the flash's settings, the replay window waits for an Echo round.
    let reserved = persist::load_oscore_seq(&device)
        .map_err(|e| anyhow!("the OSCORE sequence number in the flash: {e}"))?
        .unwrap_or(0);
    let context = Oscore::new(
        server,
        &keys.secret,
        &keys.salt,
        &keys.sender_id,
        &keys.recipient_id,
        reserved,
        u64::from(boot_seed(ep.as_str())) << 32 | u64::from(boot_seed("echo")),
    )
    .map_err(|e| anyhow!("OSCORE: {e}"))?;
    println!(
        "{ep}: OSCORE with {} (sequence numbers from {reserved})",
        context.server()
    );
    let secured = OscoreSocket::new(socket, context, FlashSeqStore(&device)).logging(ep);
    Ok(run_engine(&mut engine, &secured, &clock, ep).await)
}

/// Runs the engine of one boot, printing its events.
async fn run_engine<P: lwm2m_client::platform::Platform, S: host::Socket>(
    engine: &mut Engine<P>,
    socket: &S,
    clock: &Clock,
    ep: &str,
) -> Exit {
    host::run(engine, socket, clock, |e| {
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
    .await
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

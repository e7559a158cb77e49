//! `lwm2m-server`: `serve` runs the LwM2M server; the other subcommands are admin commands that
//! talk to a running server's REST API (at `OTAFLEET_URL` with the token in `OTAFLEET_TOKEN`).
//!
//! `serve` and what only it needs (the default Package URI base, the admin token, the shutdown
//! signal) live in this file; the admin commands are the library's [`lwm2m_server::cli`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use lwm2m_core::coap::params;
use lwm2m_server::cli::{self, AdminClient};
use lwm2m_server::clock::SystemClock;
use lwm2m_server::device_info::ReadDeviceInfo;
use lwm2m_server::security::SecurityMode;
use lwm2m_server::server::{Server, ServerConfig};
use lwm2m_server::store::Store;

/// mimalloc instead of glibc's malloc: the CoAP codec (coap-lite) allocates a few dozen small
/// buffers per message, and malloc/free were a quarter of the user-space instructions per block
/// served (callgrind); mimalloc's small-object path is several times shorter.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `0.1.0 (commit 1a2b3c4d5e6f)`: the crate version and the git commit built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OTAFLEET_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "lwm2m-server",
    version = VERSION,
    about = "LwM2M server with signed firmware hosting and update jobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The server's admin API, for the admin subcommands.
    #[arg(
        long,
        global = true,
        env = "OTAFLEET_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// The admin token (printed by `serve` at its first start), for the admin subcommands.
    #[arg(long, global = true, env = "OTAFLEET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// List registered clients.
    Clients,
    /// Read a path of a client (e.g. /3/0/3), shown with the resources' names and units.
    Read {
        endpoint: String,
        path: String,
        /// tlv, senml-cbor, text or opaque (default: the client's choice).
        #[arg(long)]
        format: Option<String>,
    },
    /// Write a value to a path of a client, encoded by the resource's type from its model
    /// (Integer, Float, Boolean true/false/1/0, Time as seconds or 2024-05-01T12:00:00Z, Objlnk
    /// as 3:0, Opaque as hex); a value that does not fit is refused.
    Write {
        endpoint: String,
        path: String,
        value: String,
        /// text, opaque, tlv or senml-cbor (default: plain text, opaque bytes for Opaque).
        #[arg(long)]
        format: Option<String>,
    },
    /// Execute a resource of a client, with optional arguments.
    Exec {
        endpoint: String,
        path: String,
        args: Option<String>,
    },
    /// Discover what a client has under a path: each object and resource by name, with its
    /// type, operations and units.
    Discover { endpoint: String, path: String },
    /// Object models (LwM2M object definitions): the shipped ones and those added.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Print a shell completion script (e.g. `lwm2m-server completions bash > /etc/bash_completion.d/lwm2m-server`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Firmware releases.
    #[command(subcommand)]
    Firmware(FirmwareCommand),
    /// Update jobs.
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Update campaigns: a release rolled out in waves with a failure threshold.
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Device credentials: DTLS pre-shared keys (coaps://) and OSCORE contexts.
    #[command(subcommand)]
    Device(DeviceCommand),
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Give an endpoint a DTLS PSK identity and key, an OSCORE context, or both; from then on
    /// it registers over coaps:// or OSCORE only, and a registration it holds over plain CoAP
    /// ends.
    #[command(group(clap::ArgGroup::new("credential").required(true).multiple(true)
        .args(["psk_identity", "oscore_master_secret"])))]
    Add {
        endpoint: String,
        /// The PSK identity the device names in its handshake.
        #[arg(long, requires = "psk_key")]
        psk_identity: Option<String>,
        /// The key, 16 to 64 bytes in hex (e.g. from `openssl rand -hex 16`).
        #[arg(long, requires = "psk_identity")]
        psk_key: Option<String>,
        /// The server's OSCORE Sender ID in hex (the device's Recipient ID), at most 7 bytes;
        /// may be empty ("").
        #[arg(long, requires_all = ["oscore_recipient_id", "oscore_master_secret"])]
        oscore_sender_id: Option<String>,
        /// The server's OSCORE Recipient ID in hex: the kid of the device's requests (the
        /// device's Sender ID).
        #[arg(long, requires_all = ["oscore_sender_id", "oscore_master_secret"])]
        oscore_recipient_id: Option<String>,
        /// The OSCORE Master Secret, 16 to 64 bytes in hex. AES-CCM-16-64-128, HKDF-SHA-256.
        #[arg(long, requires_all = ["oscore_sender_id", "oscore_recipient_id"])]
        oscore_master_secret: Option<String>,
        /// The OSCORE Master Salt in hex (default: empty).
        #[arg(long, requires = "oscore_master_secret")]
        oscore_master_salt: Option<String>,
    },
    /// List the endpoints with credentials (never their keys).
    List,
    /// Remove an endpoint's credentials.
    Remove { endpoint: String },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Add an object definition (the OMA registry's XML, one object per file); kept by the
    /// server, it replaces a shipped one of the same id.
    Add { file: PathBuf },
    /// List the objects the server has a model of.
    List,
    /// Show an object's resources: id, name, type, operations, units.
    Show { id: u16 },
}

#[derive(Subcommand)]
enum CampaignCommand {
    /// Create (and start) a campaign. Target: ENDPOINTS, or --pattern and/or --model/--firmware-version.
    Create(Box<CreateCampaign>),
    /// List campaigns.
    List,
    /// Show a campaign: waves, counts, devices; --watch refreshes until it is final.
    Show {
        id: i64,
        #[arg(long, alias = "live")]
        watch: bool,
    },
    /// Pause: no new device starts; the running ones finish.
    Pause { id: i64 },
    /// Resume a paused campaign (or start one created with --paused).
    Resume { id: i64 },
    /// Abort: cancel running jobs, skip every queued device.
    Abort { id: i64 },
}

#[derive(Args)]
struct CreateCampaign {
    /// The release id, or the version of one full release (`firmware list`); each device gets
    /// a delta of it when one applies to the image it runs.
    #[arg(long)]
    release: String,
    /// Exactly these endpoints.
    #[arg(conflicts_with_all = ["pattern", "model", "firmware_version"])]
    endpoints: Vec<String>,
    /// Endpoint name glob, e.g. 'sensor-*'.
    #[arg(long)]
    pattern: Option<String>,
    /// Devices whose model (/3/0/1) matches this glob.
    #[arg(long)]
    model: Option<String>,
    /// Devices whose firmware version (/3/0/3, else /5/0/7) matches this glob.
    #[arg(long)]
    firmware_version: Option<String>,
    /// Cumulative percentages of the target set [default: 1,10,50,100].
    #[arg(long)]
    waves: Option<String>,
    /// Fraction of a wave's decided devices that may fail before the campaign halts [default: 0.1].
    #[arg(long, value_parser = cli::parse_finite)]
    threshold: Option<f64>,
    /// Soak time between waves: seconds, or with s/m/h [default: 10m].
    #[arg(long)]
    soak: Option<String>,
    /// Concurrent downloads overall [default: 100].
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// Concurrent downloads per mesh (address prefix) [default: 4].
    #[arg(long)]
    max_per_mesh: Option<u32>,
    /// IPv6 prefix length that makes a mesh [default: 64].
    #[arg(long)]
    mesh_prefix_v6: Option<u8>,
    /// IPv4 prefix length that makes a mesh [default: 24].
    #[arg(long)]
    mesh_prefix_v4: Option<u8>,
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// Create it without starting (start it with `campaign resume`).
    #[arg(long)]
    paused: bool,
}

#[derive(Subcommand)]
enum FirmwareCommand {
    /// Add a release: a SUIT envelope and its image (a delta manifest and its patch), or
    /// `--plain IMAGE --version V`. Prints its id.
    Add {
        envelope: Option<PathBuf>,
        image: Option<PathBuf>,
        /// A plain image without SUIT, for clients that do not speak SUIT.
        #[arg(long, conflicts_with = "envelope")]
        plain: Option<PathBuf>,
        /// The version of a plain image.
        #[arg(long, requires = "plain")]
        version: Option<String>,
        /// Serve this release in blocks of at most this many bytes (16..1024, a power of two),
        /// whatever a client asks for (RFC 7959 late negotiation). Given for a release that
        /// exists, it changes its cap.
        #[arg(long, value_name = "BYTES")]
        max_block_size: Option<u16>,
    },
    /// List releases.
    List,
}

#[derive(Subcommand)]
enum UpdateCommand {
    /// Start updating endpoints to a release. Prints the job id.
    Start {
        /// The release id, or the version of one full release (`firmware list`); each device
        /// gets a delta of it when one applies to the image it runs.
        #[arg(long)]
        release: String,
        #[arg(required = true)]
        endpoints: Vec<String>,
    },
    /// Show a job (or all jobs); --watch shows live progress until the job ends.
    Status {
        job: Option<i64>,
        #[arg(long, requires = "job")]
        watch: bool,
    },
    /// Cancel a job.
    Cancel { job: i64 },
}

#[derive(Args)]
struct ServeArgs {
    /// UDP address for CoAP (IPv4 or IPv6, e.g. [::]:5683).
    #[arg(long, default_value = "0.0.0.0:5683")]
    coap: String,
    /// Bind the CoAP socket with SO_REUSEPORT, so that several `serve --reuse-port` processes
    /// share one --coap address (the kernel spreads devices among them by a hash of their
    /// address). With one --store postgres:// database, a node that hears a device another
    /// node held takes it over (see the README, "Running more than one server").
    #[arg(long)]
    reuse_port: bool,
    /// This node's name, stored as the owner of the devices it hears (default: host name,
    /// process id and a random suffix).
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,
    /// The URL other nodes on the same --store reach this node's admin API at, to forward
    /// device-management requests for the devices it holds (default: http:// and the --http
    /// address, with 127.0.0.1 for a wildcard address).
    #[arg(long, value_name = "URL")]
    api_url: Option<String>,
    /// TCP address for the admin API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Data directory (database and firmware files).
    #[arg(long, default_value = "./otafleet-data")]
    data: PathBuf,
    /// Keep the store in PostgreSQL (postgres://USER@HOST:PORT/DB) instead of SQLite in --data.
    /// Release files stay in --data: every node using the database must see the same dir.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Public key (SPKI PEM) that SUIT releases must be signed with; may be repeated.
    #[arg(long = "trust-key")]
    trust_keys: Vec<PathBuf>,
    /// Base of the Package URIs written to devices, when they reach the server through a NAT,
    /// border router or proxy (default: the --coap address).
    #[arg(long)]
    public_uri: Option<String>,
    /// Admin token (default: OTAFLEET_TOKEN, else one generated at the first start and kept in
    /// the data dir).
    #[arg(long, env = "OTAFLEET_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Most registrations held at once.
    #[arg(long, default_value_t = 200_000)]
    max_registrations: usize,
    /// Longest registration lifetime accepted, in seconds; a Register or Update asking for
    /// more is refused (4.00).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u32).range(1..))]
    max_lifetime: u32,
    /// Registers accepted per second from one source address, in bursts of up to 5 seconds'
    /// worth; more get 4.29 Too Many Requests. 0 turns the limit off.
    #[arg(long, default_value_t = 50)]
    register_rate: u32,
    /// Largest Block1 body accepted (registration payloads), in bytes.
    #[arg(long, default_value_t = 4096)]
    max_block1: usize,
    /// Requests to one sleeping (queue-mode) client that may wait at once.
    #[arg(long, default_value_t = 16)]
    queue_length: usize,
    /// CON requests in flight to one client at once (NSTART).
    #[arg(long, default_value_t = 1)]
    max_in_flight: usize,
    /// Seconds a device-management request may take once sent.
    #[arg(long, default_value_t = 120)]
    request_timeout: u64,
    /// Seconds between polls of a device's Object 5 when notifications stop.
    #[arg(long, default_value_t = 30)]
    poll_interval: u64,
    /// Download attempts per device before a job fails.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// CoAP ACK_TIMEOUT in milliseconds.
    #[arg(long, default_value_t = params::ACK_TIMEOUT.as_millis() as u64)]
    ack_timeout_ms: u64,
    /// CoAP MAX_RETRANSMIT.
    #[arg(long, default_value_t = u32::from(params::MAX_RETRANSMIT))]
    max_retransmit: u32,
    /// Serve blocks of at most SIZE bytes to clients in PREFIX/LEN (a 6LoWPAN mesh's /64 behind
    /// its border router, say), whatever they ask for (RFC 7959 late negotiation), e.g.
    /// `fd00:1::/64=64`. Repeatable; the longest prefix that holds a client wins.
    #[arg(long = "block-size-for", value_name = "PREFIX=SIZE")]
    block_size_for: Vec<lwm2m_server::coap::block::cap::PrefixCap>,
    /// Largest upload to the admin API (releases), in MiB.
    #[arg(long, default_value_t = 64)]
    max_upload_mib: usize,
    // ---- operator experience (issue 19) ----
    /// Read each device's model (/3/0/1) and firmware version (/3/0/3) once when it registers,
    /// for the fleet view: on-register, or off for sleepy meshes.
    #[arg(long, default_value = "on-register", value_parser = ["on-register", "off"])]
    read_device_info: String,
    /// Log lines as text (colour only on a terminal) or as JSON, one object a line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    // ---- security (issue 14) ----
    /// Also serve coaps:// (DTLS 1.2 PSK) on this UDP address; `--coaps` alone: 0.0.0.0:5684.
    #[arg(long, num_args = 0..=1, default_missing_value = "0.0.0.0:5684")]
    coaps: Option<String>,
    /// optional: devices without credentials register over plain CoAP; required: only DTLS
    /// (needs --coaps). Devices with credentials register over DTLS only, either way.
    #[arg(long, default_value = "optional", value_parser = ["optional", "required"])]
    security: String,
    /// Base of the Package URIs written to devices with credentials (default: the --coaps
    /// address).
    #[arg(long)]
    public_coaps_uri: Option<String>,
    /// Most DTLS sessions held at once (the least recently heard one makes room).
    #[arg(long, default_value_t = 10_000)]
    max_dtls_sessions: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Completions { shell } => completions(shell),
        command => admin(command, &cli.url, cli.token, cli.json),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lwm2m-server: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Prints the completion script of `shell`. Written whole into memory first: the generator
/// panics on a write error, and a closed pipe (`| head`) is not one worth reporting.
fn completions(shell: clap_complete::Shell) -> Result<()> {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "lwm2m-server", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the completion script")
        }
        _ => Ok(()),
    }
}

/// Logs to stderr: text with colour only on a terminal (and without `NO_COLOR`), or JSON.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    init_logs(args.log_format);
    if let Some(url) = &args.store
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        bail!(
            "--store takes postgres://USER@HOST:PORT/DB, not {url:?} (SQLite, the default, lives in --data)"
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let socket = lwm2m_server::coap::driver::bind_udp_with(&args.coap, args.reuse_port)
            .await
            .with_context(|| match args.reuse_port {
                true => format!("cannot bind UDP {} for CoAP with SO_REUSEPORT (in use by a process started without --reuse-port, or by another user?)", args.coap),
                false => format!("cannot bind UDP {} for CoAP (in use? pick another with --coap, or start every server sharing it with --reuse-port)", args.coap),
            })?;
        let coap_addr = socket.local_addr()?;
        let public_uri = match args.public_uri {
            Some(u) => u,
            None => default_public_uri(coap_addr),
        };
        let mut config = ServerConfig::new(args.data.clone(), public_uri.clone());
        config.store_url = args.store.clone();
        if let Some(id) = &args.node_id {
            if id.is_empty() || id.len() > 128 || !id.chars().all(lwm2m_server::registry::is_printable) {
                bail!("--node-id must be 1..128 printable characters, not {id:?}");
            }
            config.node_id = id.clone();
        }
        for path in &args.trust_keys {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the trust key {}", path.display()))?;
            let key = suit_manifest::keyfile::verifying_key_from_text(&text).with_context(|| format!("{}", path.display()))?;
            config.trust.push(suit_manifest::TrustAnchor::from_key(key));
        }
        config.registry.max_registrations = args.max_registrations;
        config.registry.max_lifetime_s = args.max_lifetime;
        config.registry.register_rate = args.register_rate;
        config.registry.register_burst = args.register_rate.saturating_mul(5);
        config.block1.max_body = args.max_block1;
        config.dm.max_queued_per_client = args.queue_length;
        config.dm.request_timeout = Duration::from_secs(args.request_timeout);
        config.coap.max_in_flight_per_peer = args.max_in_flight.max(1);
        config.coap.ack_timeout = Duration::from_millis(args.ack_timeout_ms);
        config.coap.max_retransmit = args.max_retransmit;
        config.coap.exchange_lifetime = config.coap.derived_exchange_lifetime();
        config.jobs.poll_interval = Duration::from_secs(args.poll_interval.max(1));
        config.jobs.max_attempts = args.max_attempts.max(1);
        config.read_device_info = args.read_device_info.parse::<ReadDeviceInfo>().map_err(anyhow::Error::msg)?;
        config.block_size_for = args.block_size_for.clone();
        config.security = args.security.parse().map_err(anyhow::Error::msg)?;
        config.dtls.max_sessions = args.max_dtls_sessions.max(1);
        let server = match &args.coaps {
            Some(addr) => {
                let dtls = lwm2m_server::coap::driver::bind_udp(addr)
                    .await
                    .with_context(|| format!("cannot bind UDP {addr} for coaps:// (in use? pick another with --coaps)"))?;
                let base = match args.public_coaps_uri.clone() {
                    Some(u) => u,
                    None => default_public_uri(dtls.local_addr()?).replacen("coap://", "coaps://", 1),
                };
                tracing::info!("serving coaps:// (DTLS 1.2 PSK) on udp://{}, Package URIs for secured devices under {base}", dtls.local_addr()?);
                config.jobs.public_coaps_uri = Some(base);
                Server::start_secure(socket, dtls, config, Arc::new(SystemClock)).await?
            }
            None if config.security == SecurityMode::Required => bail!("--security required needs a coaps:// listener: add --coaps"),
            None => Server::start(socket, config, Arc::new(SystemClock)).await?,
        };
        if server.coaps.is_none() && !server.credentials.list()?.is_empty() {
            tracing::warn!("some devices have DTLS credentials but there is no --coaps listener: they cannot register");
        }
        let token = admin_token(&server.store, args.admin_token, &args.data, args.store.as_deref())?;
        let app = lwm2m_server::api::router(server.clone(), &token, args.max_upload_mib << 20);
        let listener = tokio::net::TcpListener::bind(args.http)
            .await
            .with_context(|| format!("cannot bind {} for the admin API (in use? pick another with --http)", args.http))?;
        tracing::info!(
            "serving CoAP on udp://{coap_addr}, admin API on http://{}, Package URIs under {public_uri}, data in {}, store {}, node {}",
            listener.local_addr()?,
            args.data.display(),
            server.store.backend(),
            server.config.node_id
        );
        let api_url = args.api_url.clone().unwrap_or_else(|| {
            let mut addr = listener.local_addr().unwrap_or(args.http);
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        });
        server.advertise_api(api_url);
        if server.config.trust.is_empty() {
            tracing::warn!("no --trust-key: SUIT releases will be refused; plain releases still work");
        }
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("admin API failed")?;
        tracing::info!("shutting down");
        Ok(())
    })
}

/// The base of Package URIs when none is given: the CoAP address, with a wildcard address
/// replaced by loopback (devices cannot be sent to 0.0.0.0).
fn default_public_uri(coap: SocketAddr) -> String {
    let mut addr = coap;
    if addr.ip().is_unspecified() {
        if addr.is_ipv4() {
            addr.set_ip([127, 0, 0, 1].into());
        } else {
            addr.set_ip(std::net::Ipv6Addr::LOCALHOST.into());
        }
        tracing::warn!(
            "--coap is a wildcard address: Package URIs will use {addr}; set --public-uri to an address devices can reach"
        );
    }
    format!("coap://{addr}")
}

/// The admin token: given (flag or OTAFLEET_TOKEN), or the one kept in the store, or a new one
/// generated, stored and printed once.
fn admin_token(
    store: &Store,
    given: Option<String>,
    data: &Path,
    url: Option<&str>,
) -> Result<String> {
    if let Some(t) = given.filter(|t| !t.is_empty()) {
        return Ok(t);
    }
    if let Some(t) = store.setting("admin_token")? {
        return Ok(t);
    }
    let token = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    store.set_setting("admin_token", &token)?;
    match url {
        Some(url) => cli::print_line(format_args!(
            "admin token (kept in the PostgreSQL store at {url}; shown only now): {token}"
        )),
        None => cli::print_line(format_args!(
            "admin token (kept in {}, readable by this user only; shown only now): {token}",
            data.join("otafleet.db").display()
        )),
    }
    cli::print_line(format_args!("use it with: export OTAFLEET_TOKEN={token}"));
    Ok(token)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn admin(command: Command, url: &str, token: Option<String>, json: bool) -> Result<()> {
    let client = AdminClient::new(url, token);
    match command {
        Command::Serve(_) | Command::Completions { .. } => bail!("not an admin command"),
        Command::Clients => cli::clients(&client, json),
        Command::Device(DeviceCommand::Add {
            endpoint,
            psk_identity,
            psk_key,
            oscore_sender_id,
            oscore_recipient_id,
            oscore_master_secret,
            oscore_master_salt,
        }) => {
            let device = cli::NewDevice {
                endpoint: &endpoint,
                psk: psk_identity.as_deref().zip(psk_key.as_deref()),
                oscore: match (
                    &oscore_sender_id,
                    &oscore_recipient_id,
                    &oscore_master_secret,
                ) {
                    (Some(s), Some(r), Some(m)) => Some((s, r, m, oscore_master_salt.as_deref())),
                    _ => None,
                },
            };
            cli::add_device(&client, &device, json)
        }
        Command::Device(DeviceCommand::List) => cli::devices(&client, json),
        Command::Device(DeviceCommand::Remove { endpoint }) => {
            cli::remove_device(&client, &endpoint, json)
        }
        Command::Read {
            endpoint,
            path,
            format,
        } => cli::read(&client, &endpoint, &path, format.as_deref(), json),
        Command::Write {
            endpoint,
            path,
            value,
            format,
        } => cli::write(&client, &endpoint, &path, &value, format.as_deref(), json),
        Command::Exec {
            endpoint,
            path,
            args,
        } => cli::exec(&client, &endpoint, &path, args.as_deref(), json),
        Command::Discover { endpoint, path } => cli::discover(&client, &endpoint, &path, json),
        Command::Models(ModelsCommand::Add { file }) => cli::add_model(&client, &file, json),
        Command::Models(ModelsCommand::List) => cli::models(&client, json),
        Command::Models(ModelsCommand::Show { id }) => cli::show_model(&client, id, json),
        Command::Firmware(FirmwareCommand::Add {
            envelope,
            image,
            plain,
            version,
            max_block_size,
        }) => match (envelope, image, plain, version) {
            (Some(env), Some(img), None, None) => {
                cli::add_suit(&client, &env, &img, max_block_size, json)
            }
            (None, None, Some(img), Some(v)) => {
                cli::add_plain(&client, &img, &v, max_block_size, json)
            }
            (None, None, Some(_), None) => bail!("a plain image needs --version"),
            _ => bail!("give ENVELOPE IMAGE, or --plain IMAGE --version V"),
        },
        Command::Firmware(FirmwareCommand::List) => cli::releases(&client, json),
        Command::Update(UpdateCommand::Start { release, endpoints }) => {
            cli::start_job(&client, &release, &endpoints, json)
        }
        Command::Update(UpdateCommand::Status { job, watch }) => {
            cli::job_status(&client, job, watch, json)
        }
        Command::Update(UpdateCommand::Cancel { job }) => cli::cancel_job(&client, job, json),
        Command::Campaign(CampaignCommand::Create(a)) => {
            let a = *a;
            let args = cli::CampaignArgs {
                release: a.release,
                name: a.name,
                endpoints: a.endpoints,
                pattern: a.pattern,
                model: a.model,
                firmware_version: a.firmware_version,
                waves: a.waves,
                threshold: a.threshold,
                soak: a.soak,
                max_concurrent: a.max_concurrent,
                max_per_mesh: a.max_per_mesh,
                mesh_prefix_v6: a.mesh_prefix_v6,
                mesh_prefix_v4: a.mesh_prefix_v4,
                paused: a.paused,
            };
            cli::create_campaign(&client, &args, json)
        }
        Command::Campaign(CampaignCommand::List) => cli::campaigns(&client, json),
        Command::Campaign(CampaignCommand::Show { id, watch }) => {
            cli::show_campaign(&client, id, watch, json)
        }
        Command::Campaign(CampaignCommand::Pause { id }) => {
            cli::campaign_command(&client, id, "pause", json)
        }
        Command::Campaign(CampaignCommand::Resume { id }) => {
            cli::campaign_command(&client, id, "resume", json)
        }
        Command::Campaign(CampaignCommand::Abort { id }) => {
            cli::campaign_command(&client, id, "abort", json)
        }
    }
}

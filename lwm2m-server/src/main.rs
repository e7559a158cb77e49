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
use clap::{Args, Parser, Subcommand};
use lwm2m_core::coap::params;
use lwm2m_server::cli::{self, AdminClient};
use lwm2m_server::clock::SystemClock;
use lwm2m_server::server::{Server, ServerConfig};
use lwm2m_server::store::Store;

#[derive(Parser)]
#[command(
    name = "lwm2m-server",
    version,
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
    Serve(ServeArgs),
    /// List registered clients.
    Clients,
    /// Read a path of a client (e.g. /3/0/3).
    Read {
        endpoint: String,
        path: String,
        /// tlv, senml-cbor, text or opaque (default: the client's choice).
        #[arg(long)]
        format: Option<String>,
    },
    /// Write a value to a path of a client (a string, a number, true/false; hex for opaque).
    Write {
        endpoint: String,
        path: String,
        value: String,
    },
    /// Execute a resource of a client, with optional arguments.
    Exec {
        endpoint: String,
        path: String,
        args: Option<String>,
    },
    /// Discover what a client has under a path.
    Discover { endpoint: String, path: String },
    /// Firmware releases.
    #[command(subcommand)]
    Firmware(FirmwareCommand),
    /// Update jobs.
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Update campaigns: a release rolled out in waves with a failure threshold.
    #[command(subcommand)]
    Campaign(CampaignCommand),
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
    /// The release id (`firmware list`).
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
    #[arg(long)]
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
    /// Add a release: a SUIT envelope and its image, or `--plain IMAGE --version V`. Prints its id.
    Add {
        envelope: Option<PathBuf>,
        image: Option<PathBuf>,
        /// A plain image without SUIT, for clients that do not speak SUIT.
        #[arg(long, conflicts_with = "envelope")]
        plain: Option<PathBuf>,
        /// The version of a plain image.
        #[arg(long, requires = "plain")]
        version: Option<String>,
    },
    /// List releases.
    List,
}

#[derive(Subcommand)]
enum UpdateCommand {
    /// Start updating endpoints to a release. Prints the job id.
    Start {
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
    /// TCP address for the admin API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Data directory (database and firmware files).
    #[arg(long, default_value = "./otafleet-data")]
    data: PathBuf,
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
    /// Largest upload to the admin API (releases), in MiB.
    #[arg(long, default_value_t = 64)]
    max_upload_mib: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve(args),
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

fn serve(args: ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let socket = lwm2m_server::coap::driver::bind_udp(&args.coap)
            .await
            .with_context(|| format!("cannot bind UDP {} for CoAP (in use? pick another with --coap)", args.coap))?;
        let coap_addr = socket.local_addr()?;
        let public_uri = match args.public_uri {
            Some(u) => u,
            None => default_public_uri(coap_addr),
        };
        let mut config = ServerConfig::new(args.data.clone(), public_uri.clone());
        for path in &args.trust_keys {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the trust key {}", path.display()))?;
            let key = suit_manifest::keyfile::verifying_key_from_text(&text).with_context(|| format!("{}", path.display()))?;
            config.trust.push(suit_manifest::TrustAnchor::from_key(key));
        }
        config.registry.max_registrations = args.max_registrations;
        config.block1.max_body = args.max_block1;
        config.dm.max_queued_per_client = args.queue_length;
        config.dm.request_timeout = Duration::from_secs(args.request_timeout);
        config.coap.max_in_flight_per_peer = args.max_in_flight.max(1);
        config.coap.ack_timeout = Duration::from_millis(args.ack_timeout_ms);
        config.coap.max_retransmit = args.max_retransmit;
        config.coap.exchange_lifetime = config.coap.derived_exchange_lifetime();
        config.jobs.poll_interval = Duration::from_secs(args.poll_interval.max(1));
        config.jobs.max_attempts = args.max_attempts.max(1);
        let server = Server::start(socket, config, Arc::new(SystemClock)).await?;
        let token = admin_token(&server.store, args.admin_token, &args.data)?;
        let app = lwm2m_server::api::router(server.clone(), &token, args.max_upload_mib << 20);
        let listener = tokio::net::TcpListener::bind(args.http)
            .await
            .with_context(|| format!("cannot bind {} for the admin API (in use? pick another with --http)", args.http))?;
        tracing::info!(
            "serving CoAP on udp://{coap_addr}, admin API on http://{}, Package URIs under {public_uri}, data in {}",
            listener.local_addr()?,
            args.data.display()
        );
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
fn admin_token(store: &Store, given: Option<String>, data: &Path) -> Result<String> {
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
    println!(
        "admin token (kept in {}; shown only now): {token}",
        data.join("otafleet.db").display()
    );
    println!("use it with: export OTAFLEET_TOKEN={token}");
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
        Command::Serve(_) => bail!("serve is not an admin command"),
        Command::Clients => cli::clients(&client, json),
        Command::Read {
            endpoint,
            path,
            format,
        } => cli::read(&client, &endpoint, &path, format.as_deref(), json),
        Command::Write {
            endpoint,
            path,
            value,
        } => cli::write(&client, &endpoint, &path, &value, json),
        Command::Exec {
            endpoint,
            path,
            args,
        } => cli::exec(&client, &endpoint, &path, args.as_deref(), json),
        Command::Discover { endpoint, path } => cli::discover(&client, &endpoint, &path, json),
        Command::Firmware(FirmwareCommand::Add {
            envelope,
            image,
            plain,
            version,
        }) => match (envelope, image, plain, version) {
            (Some(env), Some(img), None, None) => cli::add_suit(&client, &env, &img, json),
            (None, None, Some(img), Some(v)) => cli::add_plain(&client, &img, &v, json),
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

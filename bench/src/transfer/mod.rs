//! Table 1: a 256 KiB image through `sim-network proxy`, fetched by our downloader
//! (`lwm2m-client fetch`: its default settings and a few chosen ones, of one build or of several
//! labelled builds to compare before and after), libcoap's `coap-client-notls` and aiocoap's
//! client from our server, and by our downloader from aiocoap's file server. The links: 1 and 3
//! hops; 0, 10 and 30 % loss per 802.15.4 frame or per datagram; the raw radio and MAC
//! acknowledgements with retries; and the headline case, 10 % of datagrams lost each way
//! on loopback with nothing else. A fetch counts as complete only when the bytes' SHA-256 is the
//! image's (libcoap 4.3.1 exits 0 on failure). Every run has its own proxy, so its own mesh; runs
//! go side by side, since the time they take is the model's airtime and delays, not CPU.

mod bound;
mod matrix;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub use matrix::{Client, OurSetting};
use matrix::{Condition, Fetcher, Setup, Source};

use crate::procs::{Proc, free_udp_port};
use crate::report::Table;
use crate::serving;

/// One fetch through one proxy.
#[derive(Clone, Debug)]
struct Run {
    setup: usize,
    condition: usize,
    seed: u64,
    complete: bool,
    wall_s: f64,
    /// Bytes the client had written when it stopped (in order, for ours before issue 13; what it
    /// saved, for the peers).
    received: u64,
    datagrams: u64,
    bytes_on_air: u64,
    airtime_s: f64,
    mac_retries: u64,
    /// The client's last line on stderr when the fetch did not complete.
    error: Option<String>,
}

/// The binaries this table runs (beside the bench binary unless given), and the peers'
/// interpreter.
pub struct Tools {
    pub server: PathBuf,
    /// Our client's builds, one row each per setting.
    pub clients: Vec<Client>,
    pub sim: PathBuf,
    pub python: PathBuf,
}

/// What to run besides the tools.
pub struct Plan {
    pub seeds: Vec<u64>,
    /// Our downloader's settings, in the order of the rows.
    pub ours: Vec<OurSetting>,
    /// Fetches side by side.
    pub jobs: usize,
    /// Whether libcoap and aiocoap take part (as clients and as a server).
    pub peers: bool,
    pub smoke: bool,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Starts a proxy in front of `upstream`; returns it and the address devices send to.
fn proxy(
    tools: &Tools,
    upstream: SocketAddr,
    c: &Condition,
    seed: u64,
) -> Result<(Proc, SocketAddr)> {
    let port = free_udp_port()?;
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(&tools.sim)
        .args(["proxy", "--listen", &listen.to_string()])
        .args(["--upstream", &upstream.to_string()])
        .args(c.proxy_args())
        .args(["--seed", &seed.to_string(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start sim-network proxy")?;
    // The proxy binds at once; give it a moment before the first datagram.
    std::thread::sleep(Duration::from_millis(300));
    Ok((Proc(child), listen))
}

/// Stops the proxy (SIGTERM) and reads its counters.
fn proxy_report(mut p: Proc) -> Result<serde_json::Value> {
    let pid = p.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status()?;
    let mut out = String::new();
    if let Some(mut stdout) = p.0.stdout.take() {
        std::io::Read::read_to_string(&mut stdout, &mut out)?;
    }
    let _ = p.0.wait();
    serde_json::from_str(&out).context("no counters from the proxy")
}

/// Runs `cmd` until it exits or `cap` passes (then kills it), its stderr into `log`.
fn run_capped(cmd: &mut Command, cap: Duration, log: &Path) -> Result<()> {
    let mut child = Proc(
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?,
    );
    let until = Instant::now() + cap;
    while Instant::now() < until {
        if child.0.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(()) // dropped: killed
}

/// aiocoap's client: one GET, blockwise as aiocoap does it by default (Python's indentation
/// spelled out: a Rust string continuation would strip it).
const AIOCOAP_CLIENT: &str = concat!(
    "import asyncio, sys, aiocoap\n",
    "async def main():\n",
    "    ctx = await aiocoap.Context.create_client_context()\n",
    "    msg = aiocoap.Message(code=aiocoap.GET, uri=sys.argv[1])\n",
    "    r = await ctx.request(msg).response\n",
    "    if not r.code.is_successful():\n",
    "        sys.exit(1)\n",
    "    open(sys.argv[2], 'wb').write(r.payload)\n",
    "asyncio.run(main())\n",
);

/// Where one fetch goes and how long it may take.
struct Target<'a> {
    upstream: SocketAddr,
    path: &'a str,
    digest: &'a [u8; 32],
    scratch: &'a Path,
    cap: Duration,
}

/// One counter of the proxy's JSON report, summed over both directions.
fn both_ways(v: &serde_json::Value, key: &str) -> f64 {
    ["up", "down"]
        .iter()
        .map(|dir| v[dir][key].as_f64().unwrap_or(0.0))
        .sum()
}

fn one_run(
    tools: &Tools,
    setup: &Setup,
    condition: &Condition,
    seed: u64,
    to: &Target,
) -> Result<Run> {
    let (proxy_proc, listen) = proxy(tools, to.upstream, condition, seed)?;
    let uri = format!("coap://{listen}/{}", to.path);
    let tag = format!("{}-{}", std::process::id(), free_udp_port()?);
    let out = to.scratch.join(format!("out-{tag}"));
    let log = to.scratch.join(format!("err-{tag}"));
    let mut cmd = match setup.fetcher {
        Fetcher::Ours { client, setting } => {
            let mut c = Command::new(&tools.clients[client].path);
            c.args(["fetch", &uri, "--json", "--max-failures", "12"])
                .args(setting.args())
                .arg("-o")
                .arg(&out);
            c
        }
        Fetcher::Libcoap { block } => {
            let mut c = Command::new("coap-client-notls");
            c.args(["-m", "get", "-b", &block.to_string()])
                .args(["-B", &to.cap.as_secs().to_string(), "-o"])
                .arg(&out)
                .arg(&uri);
            c
        }
        Fetcher::Aiocoap => {
            let mut c = Command::new(&tools.python);
            c.args(["-c", AIOCOAP_CLIENT, &uri]).arg(&out);
            c
        }
    };
    let started = Instant::now();
    run_capped(&mut cmd, to.cap, &log)?;
    let wall_s = started.elapsed().as_secs_f64();
    let report = proxy_report(proxy_proc)?;
    let saved = std::fs::read(&out).unwrap_or_default();
    let complete = sha256(&saved) == *to.digest;
    let error = (!complete)
        .then(|| std::fs::read_to_string(&log).ok())
        .flatten()
        .and_then(|e| {
            e.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(String::from)
        });
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&log);
    Ok(Run {
        setup: 0,
        condition: 0,
        seed,
        complete,
        wall_s,
        received: saved.len() as u64,
        datagrams: both_ways(&report, "datagrams") as u64,
        bytes_on_air: both_ways(&report, "bytes_on_air") as u64,
        airtime_s: report["mesh_airtime_ms"].as_f64().unwrap_or(0.0) / 1e3,
        mac_retries: both_ways(&report, "mac_retries") as u64,
        error,
    })
}

/// The image every run fetches: `size` bytes of a fixed pattern.
fn image(size: usize) -> Vec<u8> {
    (0..size as u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 23) as u8)
        .collect()
}

pub fn run(tools: &Tools, plan: &Plan) -> Result<Table> {
    let dir = tempfile::tempdir()?;
    let size = if plan.smoke { 16 * 1024 } else { 256 * 1024 };
    let image = image(size);
    let image_path = dir.path().join("image.bin");
    std::fs::write(&image_path, &image)?;
    let digest = sha256(&image);
    let (our_proc, our_addr, our_path) = serving::ours(&tools.server, dir.path(), &image_path)?;
    let (aio_proc, aio_addr, aio_path) = serving::aiocoap(&tools.python, dir.path(), &image_path)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serving::wait_up(our_addr, &our_path))?;
    rt.block_on(serving::wait_up(aio_addr, &aio_path))
        .context("aiocoap's file server")?;

    let (conditions, peers, seeds, cap) = if plan.smoke {
        (
            matrix::smoke_conditions(),
            vec![Fetcher::Libcoap { block: 1024 }],
            plan.seeds.iter().take(1).copied().collect::<Vec<_>>(),
            Duration::from_secs(60),
        )
    } else {
        (
            matrix::full_conditions(),
            vec![
                Fetcher::Libcoap { block: 64 },
                Fetcher::Libcoap { block: 1024 },
                Fetcher::Aiocoap,
            ],
            plan.seeds.clone(),
            Duration::from_secs(900),
        )
    };
    let mut setups = matrix::setups(&tools.clients, &plan.ours, &peers);
    setups.retain(|s| plan.peers || (s.is_ours() && s.source == Source::Ours));
    let mut queue = Vec::new();
    for (ci, c) in conditions.iter().enumerate() {
        for (si, s) in setups.iter().enumerate() {
            if matrix::runs(s, c) {
                queue.extend(seeds.iter().map(|&seed| (si, ci, seed)));
            }
        }
    }
    // Longest last in the vector (high loss, many hops), since workers pop from its end: the
    // longest runs start first and the tail is short.
    queue.sort_by_key(|q| {
        let c = conditions[q.1];
        (c.loss * 10.0) as u32 * 10 + c.hops
    });
    let total = queue.len();
    let queue = Arc::new(Mutex::new(queue));
    let runs = Arc::new(Mutex::new(Vec::<Run>::new()));
    let (our_path, aio_path) = (our_path.join("/"), aio_path.join("/"));
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.max(1) {
            let (queue, runs) = (queue.clone(), runs.clone());
            let (setups, conditions) = (&setups, &conditions);
            let (our_path, aio_path, dir, digest) = (&our_path, &aio_path, dir.path(), &digest);
            scope.spawn(move || {
                while let Some((si, ci, seed)) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    let (setup, c) = (&setups[si], &conditions[ci]);
                    let (upstream, path) = match setup.source {
                        Source::Ours => (our_addr, our_path.as_str()),
                        Source::Aiocoap => (aio_addr, aio_path.as_str()),
                    };
                    // Peers give up or stall long before (libcoap 4.3.1 stalls beyond 93 s).
                    let cap = if setup.is_ours() {
                        cap
                    } else {
                        cap.min(Duration::from_secs(600))
                    };
                    let to = Target {
                        upstream,
                        path,
                        digest,
                        scratch: dir,
                        cap,
                    };
                    match one_run(tools, setup, c, seed, &to) {
                        Ok(run) => {
                            let run = Run {
                                setup: si,
                                condition: ci,
                                ..run
                            };
                            if let Ok(mut r) = runs.lock() {
                                eprintln!(
                                    "transfer {}/{total}: {}, {}, seed {seed}: {} in {:.1} s{}",
                                    r.len() + 1,
                                    setup.name,
                                    c.label(),
                                    if run.complete { "complete" } else { "FAILED" },
                                    run.wall_s,
                                    run.error
                                        .as_deref()
                                        .map(|e| format!(" ({e})"))
                                        .unwrap_or_default()
                                );
                                r.push(run);
                            }
                        }
                        Err(e) => eprintln!("transfer: {}: {e:#}", setup.name),
                    }
                }
            });
        }
    });
    drop((our_proc, aio_proc));
    let runs = runs.lock().map(|r| r.clone()).unwrap_or_default();
    let mut t = table::table(&table::Inputs {
        setups: &setups,
        conditions: &conditions,
        clients: &tools.clients,
        seeds: &seeds,
        runs: &runs,
        size,
        cap,
    });
    if !plan.peers {
        t.notes.insert(
            1,
            "This run: our builds only (`--no-peers`), no libcoap or aiocoap.".into(),
        );
    }
    Ok(t)
}

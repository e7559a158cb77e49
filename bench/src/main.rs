//! `otafleet-bench`: measures, side by side in one run, and writes the figures as JSON under
//! `bench-results/` and the tables into `docs/BENCHMARKS.md` with the machine, the date and the
//! seeds. Tables left out with `--only` keep their figures from the earlier run's JSON. `--smoke`
//! runs a seconds-long version into target/ (CI checks that it works).

mod device;
mod fleet;
mod procs;
mod registry;
mod report;
mod security;
mod serving;
mod transfer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use report::Table;

#[derive(Parser)]
#[command(name = "otafleet-bench", about = "otafleet's benchmarks")]
struct Cli {
    /// Internal: verify the sample SUIT envelope N times (what callgrind counts).
    #[arg(long, hide = true)]
    verify_loop: Option<usize>,
    /// A seconds-long run at small sizes, written under target/bench-smoke (for CI).
    #[arg(long)]
    smoke: bool,
    /// Only these tables (transfer, serving, registry, device, security, fleet); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the JSON goes (default bench-results, or target/bench-smoke with --smoke).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The Markdown report (default docs/BENCHMARKS.md, or target/bench-smoke/BENCHMARKS.md).
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Registry sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    clients: Vec<usize>,
    /// Stores and node counts of the registry and serving tables: sqlite, pg1, pg3 (N nodes on
    /// one PostgreSQL database).
    #[arg(long, value_delimiter = ',', default_value = "sqlite,pg1,pg3")]
    registry_stores: Vec<registry::Backend>,
    /// Seeds of the simulated runs.
    #[arg(long, value_delimiter = ',', default_value = "7,8")]
    seeds: Vec<u64>,
    /// A build of our client for table 1, as LABEL=PATH (repeat to compare builds, e.g.
    /// before=/tmp/old/lwm2m-client after=target/release/lwm2m-client); default: the
    /// lwm2m-client beside this binary, unlabelled.
    #[arg(long = "client", value_name = "LABEL=PATH")]
    client_builds: Vec<String>,
    /// A build of sim-network for table 5 (its device engine is the downloader measured), as
    /// LABEL=PATH, repeatable; default: the sim-network beside this binary.
    #[arg(long = "sim", value_name = "LABEL=PATH")]
    sim_builds: Vec<String>,
    /// Our downloader's settings in table 1: `default` (the binary's own), a block size (`256`)
    /// or block × window (`64x16`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "default,64x16,256x5,1024x2"
    )]
    ours: Vec<String>,
    /// Table 1 with our builds only: no libcoap or aiocoap client, no fetch from aiocoap's
    /// server (a shorter run, e.g. to compare builds before and after).
    #[arg(long)]
    no_peers: bool,
    /// Table 1's fetches side by side (each is mostly waiting for the model's airtime).
    #[arg(long, default_value_t = 16)]
    jobs: usize,
    /// The MAC options table 5 runs (`raw`, `ack`).
    #[arg(long = "fleet-mac", value_delimiter = ',', default_value = "raw,ack")]
    fleet_macs: Vec<String>,
    /// The updates table 5 runs (`full`, `delta`: a delta release of a rebuild).
    #[arg(
        long = "fleet-update",
        value_delimiter = ',',
        default_value = "full,delta"
    )]
    fleet_updates: Vec<String>,
    /// Table 5's simulations at a time (each takes a core: more make its wall times less
    /// comparable, not its virtual times).
    #[arg(long, default_value_t = 1)]
    fleet_jobs: usize,
}

/// Hand-kept parts of docs/BENCHMARKS.md, appended in this order after the tables.
const APPENDED_DOCS: [&str; 3] = [
    "docs/benchmarks-limits.md",
    "docs/benchmarks-calibrate.md",
    "docs/benchmarks-delta.md",
];

/// The machine, as the report states it.
fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let output = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": output("uname", &["-sr"]),
        "rustc": output("rustc", &["--version"]),
        "date": output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
    })
}

/// A binary of the workspace beside this one (scripts/bench.sh builds them).
fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("no directory for the bench binary")?;
    let bin = dir.join(name);
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release -p {name}` (scripts/bench.sh does)",
        bin.display()
    );
    Ok(bin)
}

/// The builds of binary `name` from `LABEL=PATH` arguments; none: the one beside this binary,
/// unlabelled.
fn builds(args: &[String], name: &str) -> Result<Vec<procs::Build>> {
    if args.is_empty() {
        let path = sibling(name)?;
        return Ok(vec![procs::Build {
            label: String::new(),
            path,
        }]);
    }
    args.iter()
        .map(|arg| {
            let (label, path) = arg.split_once('=').with_context(|| {
                format!("{arg:?}: give LABEL=PATH, e.g. before=/tmp/old/{name}")
            })?;
            let path = PathBuf::from(path);
            anyhow::ensure!(path.is_file(), "{}: no such binary", path.display());
            Ok(procs::Build {
                label: label.to_string(),
                path,
            })
        })
        .collect()
}

fn server_binary() -> Result<PathBuf> {
    sibling("lwm2m-server")
}

/// A table of an earlier run, from its JSON under `out`, with its date noted.
fn earlier(out: &Path, id: &str) -> Option<Table> {
    let text = std::fs::read_to_string(out.join(format!("{id}.json"))).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut t: Table = serde_json::from_value(v["table"].clone()).ok()?;
    t.notes.insert(
        0,
        format!(
            "*Kept from an earlier run ({}, seeds {}): not measured in this one.*",
            v["machine"]["date"].as_str().unwrap_or("date unknown"),
            v["seeds"]
        ),
    );
    Some(t)
}

fn render(machine: &serde_json::Value, seeds: &[u64], tables: &[Table], smoke: bool) -> String {
    let mut s = String::from("# Benchmarks\n\n");
    s += "Written by `scripts/bench.sh` (`otafleet-bench`) from one run; the raw figures are in \
          `bench-results/`. Machines like this one are noisy: compare within a run.\n\n";
    if smoke {
        s += "**Smoke run: small sizes, figures meaningless.**\n\n";
    }
    s += &format!(
        "- machine: {} ({} cores, {} GiB), {}\n- toolchain: {}\n- date: {}\n- seeds: {:?}\n\n",
        machine["cpu"].as_str().unwrap_or(""),
        machine["cores"],
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or(""),
        machine["rustc"].as_str().unwrap_or(""),
        machine["date"].as_str().unwrap_or(""),
        seeds
    );
    for t in tables {
        s += &t.markdown();
    }
    let done: Vec<&str> = tables.iter().map(|t| t.id.as_str()).collect();
    let missing: Vec<&str> = [
        (
            "transfer",
            "1. Transfer on a lossy link (ours, libcoap, aiocoap through `sim-network proxy`)",
        ),
        (
            "serving",
            "2. Serving blocks (1/10/100 clients; ours, libcoap, aiocoap)",
        ),
        ("registry", "3. Registry scale"),
        (
            "device",
            "4. Device: flash and RAM by part, SUIT verification cost",
        ),
        ("fleet", "5. Fleet"),
        ("security", "6. Security on the air"),
    ]
    .iter()
    .filter(|(id, _)| !done.contains(id))
    .map(|(_, t)| *t)
    .collect();
    // Kept beside the generated report and appended to it: the hand-written reading of the gaps,
    // then the figures other tools measure (`sim-network calibrate`, the delta patch sizes).
    if !smoke {
        for part in APPENDED_DOCS {
            if let Ok(text) = std::fs::read_to_string(part) {
                s += &text;
                s += "\n";
            }
        }
    }
    if !missing.is_empty() {
        s += "## Not measured in this run\n\n";
        for m in missing {
            s += &format!("- {m}\n");
        }
    }
    s
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otafleet-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    if let Some(n) = cli.verify_loop {
        return device::verify_loop(n);
    }
    let want = |id: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == id);
    let smoke_dir = PathBuf::from("target/bench-smoke");
    let out = cli.out.clone().unwrap_or_else(|| {
        if cli.smoke {
            smoke_dir.clone()
        } else {
            "bench-results".into()
        }
    });
    let doc = cli.doc.clone().unwrap_or_else(|| {
        if cli.smoke {
            smoke_dir.join("BENCHMARKS.md")
        } else {
            "docs/BENCHMARKS.md".into()
        }
    });
    let machine = machine();
    // Each table's JSON is written as soon as it is measured: a later table that fails does not
    // lose an hour of the earlier ones.
    let save = |t: &Table| -> Result<()> {
        let json = serde_json::json!({ "machine": machine, "seeds": cli.seeds, "table": t });
        write(
            &out.join(format!("{}.json", t.id)),
            &serde_json::to_string_pretty(&json)?,
        )
    };
    let mut tables: Vec<Table> = Vec::new();
    let measured = |t: Table, tables: &mut Vec<Table>| -> Result<()> {
        save(&t)?;
        tables.push(t);
        Ok(())
    };
    if want("registry") {
        let scales: Vec<usize> = if cli.smoke {
            vec![500]
        } else {
            cli.clients.clone()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        measured(
            rt.block_on(registry::run(
                &server_binary()?,
                &scales,
                &cli.registry_stores,
                cli.smoke,
            ))?,
            &mut tables,
        )?;
    }
    if want("serving") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let python = PathBuf::from("target/venv/bin/python");
        measured(
            rt.block_on(serving::run(
                &server_binary()?,
                &python,
                &cli.registry_stores,
                cli.smoke,
            ))?,
            &mut tables,
        )?;
    }
    if want("device") {
        measured(device::run(Path::new("."), cli.smoke)?, &mut tables)?;
    }
    if want("security") {
        measured(security::run()?, &mut tables)?;
    }
    // The transfer table runs after the ones that measure CPU: its time is the model's airtime.
    if want("transfer") {
        let clients = builds(&cli.client_builds, "lwm2m-client")?;
        let tools = transfer::Tools {
            server: server_binary()?,
            clients,
            sim: sibling("sim-network")?,
            python: PathBuf::from("target/venv/bin/python"),
        };
        let plan = transfer::Plan {
            seeds: cli.seeds.clone(),
            ours: cli.ours.iter().map(|s| s.parse()).collect::<Result<_>>()?,
            jobs: if cli.smoke { 6 } else { cli.jobs },
            peers: !cli.no_peers,
            smoke: cli.smoke,
        };
        measured(transfer::run(&tools, &plan)?, &mut tables)?;
    }
    if want("fleet") {
        let (devices, image) = if cli.smoke {
            (20, 8 * 1024)
        } else {
            (1000, 256 * 1024)
        };
        let sims = builds(&cli.sim_builds, "sim-network")?;
        let seeds = if cli.smoke {
            &cli.seeds[..1.min(cli.seeds.len())]
        } else {
            &cli.seeds[..]
        };
        let jobs = if cli.smoke { 2 } else { cli.fleet_jobs };
        let run = fleet::FleetRun {
            devices,
            image,
            seeds,
            macs: &cli.fleet_macs,
            updates: &cli.fleet_updates,
            jobs,
            strict: cli.smoke,
        };
        let table = fleet::run(&sims, &run)?;
        measured(table, &mut tables)?;
    }
    // Tables not measured this time keep the earlier run's figures (not in a smoke run).
    if !cli.smoke {
        for id in [
            "transfer", "serving", "registry", "device", "fleet", "security",
        ] {
            if !tables.iter().any(|t| t.id == id) {
                tables.extend(earlier(&out, id));
            }
        }
    }
    // In the report's order (the titles are numbered), whatever order they ran in.
    tables.sort_by(|a, b| a.title.cmp(&b.title));
    write(&doc, &render(&machine, &cli.seeds, &tables, cli.smoke))?;
    eprintln!("wrote {} and {}", doc.display(), out.display());
    Ok(())
}

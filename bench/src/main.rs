//! `otafleet-bench`: measures, side by side in one run, and writes the figures as JSON under
//! `bench-results/` and the tables into `docs/BENCHMARKS.md` with the machine, the date and the
//! seeds. `--smoke` runs a seconds-long version into target/ (CI checks that it works).

mod device;
mod fleet;
mod procs;
mod registry;
mod report;
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
    /// Only these tables (transfer, serving, registry, device, fleet); all by default.
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
    /// Seeds of the simulated runs.
    #[arg(long, value_delimiter = ',', default_value = "7,8")]
    seeds: Vec<u64>,
}

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

fn server_binary() -> Result<PathBuf> {
    sibling("lwm2m-server")
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
    ]
    .iter()
    .filter(|(id, _)| !done.contains(id))
    .map(|(_, t)| *t)
    .collect();
    // The hand-written reading of the gaps, kept beside the generated report.
    if !smoke {
        if let Ok(limits) = std::fs::read_to_string("docs/benchmarks-limits.md") {
            s += &limits;
            s += "\n";
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
    let mut tables = Vec::new();
    if want("registry") {
        let scales: Vec<usize> = if cli.smoke {
            vec![500]
        } else {
            cli.clients.clone()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        tables.push(rt.block_on(registry::run(&server_binary()?, &scales, cli.smoke))?);
    }
    if want("serving") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let python = PathBuf::from("target/venv/bin/python");
        tables.push(rt.block_on(serving::run(&server_binary()?, &python, cli.smoke))?);
    }
    if want("device") {
        tables.push(device::run(Path::new("."), cli.smoke)?);
    }
    // The transfer table runs after the ones that measure CPU: its time is the model's airtime.
    if want("transfer") {
        let tools = transfer::Tools {
            server: server_binary()?,
            client: sibling("lwm2m-client")?,
            sim: sibling("sim-network")?,
            python: PathBuf::from("target/venv/bin/python"),
        };
        tables.push(transfer::run(&tools, &cli.seeds, cli.smoke)?);
    }
    if want("fleet") {
        let (devices, image) = if cli.smoke {
            (20, 8 * 1024)
        } else {
            (1000, 256 * 1024)
        };
        tables.push(fleet::run(devices, image, &cli.seeds, cli.smoke)?);
    }
    // In the report's order (the titles are numbered), whatever order they ran in.
    tables.sort_by(|a, b| a.title.cmp(&b.title));
    for t in &tables {
        let json = serde_json::json!({ "machine": machine, "seeds": cli.seeds, "table": t });
        write(
            &out.join(format!("{}.json", t.id)),
            &serde_json::to_string_pretty(&json)?,
        )?;
    }
    write(&doc, &render(&machine, &cli.seeds, &tables, cli.smoke))?;
    eprintln!("wrote {} and {}", doc.display(), out.display());
    Ok(())
}

//! Table 2: serving blocks. The same load generator (C clients, each fetching the same 256 KiB
//! image block by block, 1024-byte Block2, one request in flight per client, for a fixed time)
//! against three servers on loopback without loss: lwm2m-server's firmware repository, libcoap's
//! `coap-server-notls` (the file PUT into it), and aiocoap's file server. Blocks per second, and
//! the server process's CPU time per block (utime + stime from /proc).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use tokio::net::UdpSocket;

use crate::procs::{Proc, free_udp_port, spawn_quiet, start_server};
use crate::report::{Table, num};

const IMAGE: usize = 256 * 1024;
const SZX: u8 = 6; // 1024-byte blocks

/// utime + stime of a process, in seconds (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

fn get(path: &[String], block: u32, mid: u16, token: u16) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(token.to_be_bytes().to_vec());
    for s in path {
        p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
    }
    let v = (block << 4) | u32::from(SZX);
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    p.add_option(CoapOption::Block2, bytes[first..].to_vec());
    p.to_bytes().unwrap_or_default()
}

/// One client: fetches the image again and again until `until`; blocks received.
async fn client(server: SocketAddr, path: Vec<String>, until: Instant, seed: u16) -> Result<u64> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let mut buf = vec![0u8; 2048];
    let mut mid = seed.wrapping_mul(7919);
    let mut blocks = 0u64;
    let mut block = 0u32;
    while Instant::now() < until {
        mid = mid.wrapping_add(1);
        let req = get(&path, block, mid, mid);
        sock.send_to(&req, server).await?;
        let answered = loop {
            match tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => {
                    let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                        continue;
                    };
                    if p.header.message_id != mid {
                        continue;
                    }
                    break Some(p);
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break None, // lost (or slow): ask again with a new message id
            }
        };
        let Some(p) = answered else { continue };
        if u8::from(p.header.code) == 0xa3 {
            // 5.03 Service Unavailable: the server is full; come back after Max-Age, as a
            // well-behaved device does.
            let max_age = p
                .get_option(CoapOption::MaxAge)
                .and_then(|v| v.front().cloned())
                .map(|b| b.iter().fold(0u64, |a, x| a << 8 | u64::from(*x)))
                .unwrap_or(60);
            tokio::time::sleep(Duration::from_secs(max_age)).await;
            continue;
        }
        if u8::from(p.header.code) != 0x45 {
            bail!("{server}: answered {} to block {block}", p.header.code);
        }
        blocks += 1;
        let more = p
            .get_option(CoapOption::Block2)
            .and_then(|v| v.front().and_then(|b| b.last().copied()))
            .is_some_and(|last| last & 0x08 != 0);
        block = if more { block + 1 } else { 0 };
    }
    Ok(blocks)
}

/// Runs `clients` clients for `secs` against `server`; (blocks/s, server CPU µs per block, load
/// generator CPU µs per block).
async fn load(
    server: SocketAddr,
    path: &[String],
    pid: u32,
    clients: usize,
    secs: f64,
) -> Result<(f64, f64, f64)> {
    let cpu0 = cpu_seconds(pid)?;
    let own0 = cpu_seconds(std::process::id())?;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(server, path.to_vec(), until, i as u16)))
        .collect();
    let mut blocks = 0;
    for t in tasks {
        blocks += t.await??;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu0;
    let own = cpu_seconds(std::process::id())? - own0;
    let per_block = |s: f64| s * 1e6 / blocks.max(1) as f64;
    Ok((blocks as f64 / wall, per_block(cpu), per_block(own)))
}

pub async fn wait_up(server: SocketAddr, path: &[String]) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let mut buf = vec![0u8; 2048];
    for i in 0..100u16 {
        sock.send_to(&get(path, 0, 40_000 + i, i), server).await?;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await
        {
            if Packet::from_bytes(&buf[..n]).is_ok_and(|p| u8::from(p.header.code) == 0x45) {
                return Ok(());
            }
        }
    }
    bail!("{server} does not serve {}", path.join("/"))
}

/// Our server with the image added as a plain release; (process, address, path).
pub fn ours(bin: &Path, dir: &Path, image: &Path) -> Result<(Proc, SocketAddr, Vec<String>)> {
    let local = start_server(bin, &dir.join("ours"), &[])?;
    let url = local.url.clone();
    let mut id = None;
    for _ in 0..50 {
        let out = Command::new(bin)
            .args([
                "--url", &url, "--token", "bench", "--json", "firmware", "add", "--plain",
            ])
            .arg(image)
            .args(["--version", "2.0.0"])
            .output()?;
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            id = v["id"]
                .as_str()
                .or(v["release"]["id"].as_str())
                .map(String::from);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = id.context("could not add the image to lwm2m-server")?;
    Ok((
        local.proc,
        local.coap,
        vec!["fw".into(), id, "image".into()],
    ))
}

fn libcoap(image: &Path) -> Result<(Proc, SocketAddr, Vec<String>)> {
    let port = free_udp_port()?;
    let p = spawn_quiet(Command::new("coap-server-notls").args([
        "-A",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-d",
        "20",
    ]))?;
    std::thread::sleep(Duration::from_millis(300));
    let ok = Command::new("coap-client-notls")
        .args(["-m", "put", "-b", "1024", "-B", "20", "-f"])
        .arg(image)
        .arg(format!("coap://127.0.0.1:{port}/fw/image"))
        .status()?;
    if !ok.success() {
        bail!("coap-client PUT to coap-server-notls failed");
    }
    Ok((
        p,
        ([127, 0, 0, 1], port).into(),
        vec!["fw".into(), "image".into()],
    ))
}

pub fn aiocoap(python: &Path, dir: &Path, image: &Path) -> Result<(Proc, SocketAddr, Vec<String>)> {
    let port = free_udp_port()?;
    let serve = dir.join("aiocoap");
    std::fs::create_dir_all(&serve)?;
    std::fs::copy(image, serve.join("image"))?;
    let p = spawn_quiet(
        Command::new(python)
            .arg("-c")
            .arg("import sys\nfrom aiocoap.cli.fileserver import FileServerProgram\nsys.argv[0] = 'aiocoap-fileserver'\nsys.exit(FileServerProgram.sync_main())")
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .arg(&serve),
    )?;
    Ok((p, ([127, 0, 0, 1], port).into(), vec!["image".into()]))
}

pub async fn run(server_bin: &Path, venv_python: &Path, smoke: bool) -> Result<Table> {
    let dir = tempfile::tempdir()?;
    let image_path: PathBuf = dir.path().join("image.bin");
    let image: Vec<u8> = (0..IMAGE as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&image_path, &image)?;
    let (clients, secs): (&[usize], f64) = if smoke {
        (&[1, 10], 0.5)
    } else {
        (&[1, 10, 100], 5.0)
    };
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    let mut at_100 = Vec::new();
    type Start<'a> = Box<dyn Fn() -> Result<(Proc, SocketAddr, Vec<String>)> + 'a>;
    let servers: Vec<(&str, Start)> = vec![
        (
            "lwm2m-server (ours)",
            Box::new(|| ours(server_bin, dir.path(), &image_path)),
        ),
        (
            "libcoap coap-server-notls",
            Box::new(|| libcoap(&image_path)),
        ),
        (
            "aiocoap fileserver",
            Box::new(|| aiocoap(venv_python, dir.path(), &image_path)),
        ),
    ];
    for (name, start) in &servers {
        let (proc_, addr, path) = match start() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("serving: {name}: {e:#}");
                rows.push(vec![
                    name.to_string(),
                    "-".into(),
                    format!("not run: {e}"),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                continue;
            }
        };
        wait_up(addr, &path)
            .await
            .with_context(|| name.to_string())?;
        for &c in clients {
            eprintln!("serving: {name}, {c} clients");
            let (rate, cpu_us, gen_us) = load(addr, &path, proc_.0.id(), c, secs).await?;
            rows.push(vec![
                name.to_string(),
                c.to_string(),
                num(rate),
                num(cpu_us),
                num(rate * 1024.0 / 1e6),
                num(gen_us),
            ]);
            raw.push(serde_json::json!({"server": name, "clients": c, "blocks_per_s": rate, "cpu_us_per_block": cpu_us, "generator_cpu_us_per_block": gen_us}));
            if c == 100 {
                at_100.push((name.to_string(), rate, cpu_us, gen_us));
            }
        }
    }
    let ours_100 = at_100.iter().find(|r| r.0.contains("ours"));
    let libcoap_100 = at_100.iter().find(|r| r.0.contains("libcoap"));
    let ratio = match (ours_100, libcoap_100) {
        (Some(o), Some(l)) if l.1 > 0.0 => Some(o.1 / l.1),
        _ => None,
    };
    let cpu_ratio = match (ours_100, libcoap_100) {
        (Some(o), Some(l)) if o.2 > 0.0 => Some(l.2 / o.2),
        _ => None,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // CPU seconds per second that server and generator together used at 100 clients.
    let busy = |r: Option<&(String, f64, f64, f64)>| {
        r.map_or("-".to_string(), |r| {
            format!("{:.2}", r.1 * (r.2 + r.3) / 1e6)
        })
    };
    Ok(Table {
        id: "serving".into(),
        title: "2. Serving blocks: the same 256 KiB image, 1024-byte Block2, loopback, no loss"
            .into(),
        columns: [
            "server",
            "clients",
            "blocks/s",
            "server CPU µs per block",
            "MB/s",
            "load generator CPU µs per block",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![format!(
            "One load generator for all three (`bench/src/serving.rs`): each client a UDP socket \
             fetching the image block after block, one confirmable request in flight, {secs} s per \
             row. The generator shares the machine's cores with the server under test, so from 10 \
             clients on the blocks/s measure the machine as much as the server; the CPU time per \
             block is the fairer comparison. The last column is the load generator's own CPU \
             time per block: blocks/s × (server + generator µs per block) is the CPU the two \
             used together: at 100 clients {} s/s with ours and {} s/s with libcoap, on a machine \
             of {cores} cores that may be shared with other work. Near {cores} s/s the cores, not \
             the server, set the blocks/s; well below it, other work took the rest. Targets at 100 clients: at least 2× libcoap's blocks/s: {}; server CPU \
             per block at most half of libcoap's: {}.",
            busy(ours_100),
            busy(libcoap_100),
            match ratio {
                Some(r) if r >= 2.0 => format!("met ({r:.2}×)"),
                Some(r) => format!("NOT met ({r:.2}×)"),
                None => "not measured".into(),
            },
            match cpu_ratio {
                Some(r) if r >= 2.0 => format!("met (libcoap's is {r:.2}× ours)"),
                Some(r) => format!("NOT met (libcoap's is {r:.2}× ours)"),
                None => "not measured".into(),
            }
        )],
        raw: serde_json::Value::Array(raw),
    })
}

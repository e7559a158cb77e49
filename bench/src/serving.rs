//! Table 2: serving blocks. The same load generator (C clients, each fetching the same 256 KiB
//! image block by block, 1024-byte Block2, one request in flight per client, for a fixed time)
//! against servers on loopback without loss: lwm2m-server's firmware repository on each store
//! asked for (SQLite; PostgreSQL with one node or several sharing the CoAP address), libcoap's
//! `coap-server-notls` (the file PUT into it), and aiocoap's file server. Blocks per second, and
//! the server processes' CPU time per block (utime + stime from /proc, summed over the nodes).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use tokio::net::UdpSocket;

use crate::procs::{Proc, free_udp_port, spawn_quiet, start_server};
use crate::registry::{Backend, Nodes};
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

fn get(path: &[String], block: u32, mid: u16, token: u32) -> Vec<u8> {
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

/// A server under test: where it listens, the image's path, and the processes whose CPU counts.
struct UnderTest {
    addr: SocketAddr,
    path: Vec<String>,
    pids: Vec<u32>,
    /// The clients register as LwM2M devices first (lwm2m-server): on a shared store a node
    /// answers blocks on its fast path only to devices it holds, as a fleet's downloads are.
    register: bool,
    /// Keeps the processes (and a PostgreSQL cluster) alive while the rows run.
    _running: Box<dyn std::any::Any>,
}

/// Registers endpoint `ep` from `sock` (CON POST /rd, link format); message id `mid`. Its token
/// is one byte longer than any block request's, so a block request that reuses the message id
/// later (the ids wrap within seconds at full speed) is not taken for its retransmission.
async fn register(sock: &UdpSocket, server: SocketAddr, ep: &str, mid: u16) -> Result<()> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    let mut token = vec![0xee];
    token.extend(mid.to_be_bytes());
    p.set_token(token);
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    p.set_content_format(coap_lite::ContentFormat::ApplicationLinkFormat);
    for q in [format!("ep={ep}"), "lt=86400".into(), "lwm2m=1.1".into()] {
        p.add_option(CoapOption::UriQuery, q.into_bytes());
    }
    p.payload = b"</1/0>,</3/0>,</5/0>".to_vec();
    let req = p.to_bytes()?;
    let mut buf = vec![0u8; 2048];
    for _ in 0..20 {
        sock.send_to(&req, server).await?;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await
        {
            let Ok(a) = Packet::from_bytes(&buf[..n]) else {
                continue;
            };
            if a.header.message_id == mid {
                if u8::from(a.header.code) != 0x41 {
                    bail!("{server}: Register of {ep} answered {}", a.header.code);
                }
                return Ok(());
            }
        }
    }
    bail!("{server}: no answer to the Register of {ep}")
}

/// One client on `sock`: fetches the image again and again until `until`; blocks received.
async fn client(
    sock: UdpSocket,
    server: SocketAddr,
    path: Vec<String>,
    until: Instant,
    seed: u16,
) -> Result<u64> {
    let mut buf = vec![0u8; 2048];
    let mut mid = seed.wrapping_mul(7919);
    let mut sent = 0u32;
    let mut blocks = 0u64;
    let mut block = 0u32;
    while Instant::now() < until {
        mid = mid.wrapping_add(1);
        // The message id wraps within seconds at full speed; the token (a counter that does
        // not) tells a new request from a retransmission of an old one with the same id.
        sent = sent.wrapping_add(1);
        let req = get(&path, block, mid, sent);
        sock.send_to(&req, server).await?;
        let answered = loop {
            match tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => {
                    let Ok(p) = Packet::from_bytes(&buf[..n]) else {
                        continue;
                    };
                    if p.header.message_id != mid || p.get_token() != sent.to_be_bytes() {
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

/// The CPU seconds of several processes together.
fn cpu_seconds_of(pids: &[u32]) -> Result<f64> {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

/// Runs `clients` clients for `secs` against `server`; (blocks/s, server CPU µs per block, load
/// generator CPU µs per block). Registering (when the server wants it) is not measured.
async fn load(server: &UnderTest, clients: usize, secs: f64) -> Result<(f64, f64, f64)> {
    let mut socks = Vec::with_capacity(clients);
    for i in 0..clients {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        if server.register {
            let ep = format!("serving-{clients}-{i}");
            register(&sock, server.addr, &ep, 60_000u16.wrapping_add(i as u16)).await?;
        }
        socks.push(sock);
    }
    let cpu0 = cpu_seconds_of(&server.pids)?;
    let own0 = cpu_seconds(std::process::id())?;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = socks
        .into_iter()
        .enumerate()
        .map(|(i, sock)| {
            let c = client(sock, server.addr, server.path.clone(), until, i as u16);
            tokio::spawn(c)
        })
        .collect();
    let mut blocks = 0;
    for t in tasks {
        blocks += t.await??;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds_of(&server.pids)? - cpu0;
    let own = cpu_seconds(std::process::id())? - own0;
    let per_block = |s: f64| s * 1e6 / blocks.max(1) as f64;
    Ok((blocks as f64 / wall, per_block(cpu), per_block(own)))
}

pub async fn wait_up(server: SocketAddr, path: &[String]) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let mut buf = vec![0u8; 2048];
    for i in 0..100u16 {
        sock.send_to(&get(path, 0, 40_000 + i, u32::from(i)), server)
            .await?;
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

/// Adds `image` as a plain release through the admin API at `url` (waiting for it to come up);
/// the image's CoAP path.
fn add_release(bin: &Path, url: &str, image: &Path) -> Result<Vec<String>> {
    for _ in 0..50 {
        let out = Command::new(bin)
            .args([
                "--url", url, "--token", "bench", "--json", "firmware", "add", "--plain",
            ])
            .arg(image)
            .args(["--version", "2.0.0"])
            .output()?;
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let id = v["id"]
                .as_str()
                .or(v["release"]["id"].as_str())
                .context("`firmware add` printed no id")?;
            return Ok(vec!["fw".into(), id.into(), "image".into()]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("could not add the image to lwm2m-server at {url}")
}

/// Our server with the image added as a plain release; (process, address, path).
pub fn ours(bin: &Path, dir: &Path, image: &Path) -> Result<(Proc, SocketAddr, Vec<String>)> {
    let local = start_server(bin, &dir.join("ours"), &[])?;
    let path = add_release(bin, &local.url, image)?;
    Ok((local.proc, local.coap, path))
}

/// Our server on `backend` (one node or several on one address), the image added through the
/// first node; the clients register first.
fn ours_on(bin: &Path, backend: Backend, image: &Path) -> Result<UnderTest> {
    let nodes = Nodes::start(bin, backend)?;
    let first = nodes.nodes.first().context("no node started")?;
    let path = add_release(bin, &first.url, image)?;
    Ok(UnderTest {
        addr: nodes.coap,
        path,
        pids: nodes.pids(),
        register: true,
        _running: Box::new(nodes),
    })
}

/// A third-party server: its one process, no registration.
fn peer(started: (Proc, SocketAddr, Vec<String>)) -> UnderTest {
    let (proc_, addr, path) = started;
    UnderTest {
        addr,
        path,
        pids: vec![proc_.0.id()],
        register: false,
        _running: Box::new(proc_),
    }
}

fn libcoap(image: &Path) -> Result<UnderTest> {
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
    Ok(peer((
        p,
        ([127, 0, 0, 1], port).into(),
        vec!["fw".into(), "image".into()],
    )))
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

pub async fn run(
    server_bin: &Path,
    venv_python: &Path,
    stores: &[Backend],
    smoke: bool,
) -> Result<Table> {
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
    type Start<'a> = Box<dyn Fn() -> Result<UnderTest> + 'a>;
    let mut servers: Vec<(String, Start)> = Vec::new();
    let image_path = image_path.as_path();
    for &backend in stores {
        servers.push((
            format!("lwm2m-server (ours), {backend}"),
            Box::new(move || ours_on(server_bin, backend, image_path)),
        ));
    }
    servers.push((
        "libcoap coap-server-notls".into(),
        Box::new(|| libcoap(image_path)),
    ));
    servers.push((
        "aiocoap fileserver".into(),
        Box::new(|| aiocoap(venv_python, dir.path(), image_path).map(peer)),
    ));
    for (name, start) in &servers {
        let server = match start() {
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
        wait_up(server.addr, &server.path)
            .await
            .with_context(|| name.to_string())?;
        for &c in clients {
            eprintln!("serving: {name}, {c} clients");
            let (rate, cpu_us, gen_us) = load(&server, c, secs).await?;
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
    let libcoap_100 = at_100.iter().find(|r| r.0.contains("libcoap"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // CPU seconds per second that server and generator together used at 100 clients.
    let busy = |r: &(String, f64, f64, f64)| format!("{:.2}", r.1 * (r.2 + r.3) / 1e6);
    // Each of our rows at 100 clients against libcoap's: blocks/s and CPU per block.
    let targets: Vec<String> = at_100
        .iter()
        .filter(|r| r.0.contains("ours"))
        .map(|o| {
            let Some(l) = libcoap_100.filter(|l| l.1 > 0.0 && o.2 > 0.0) else {
                return format!("{}: not measured against libcoap", o.0);
            };
            let (rate, cpu) = (o.1 / l.1, l.2 / o.2);
            let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
            format!(
                "{}: {} ({rate:.2}× libcoap's blocks/s), {} (libcoap's CPU per block is {cpu:.2}× \
                 ours), {} CPU s/s with the generator",
                o.0,
                verdict(rate >= 2.0),
                verdict(cpu >= 2.0),
                busy(o)
            )
        })
        .collect();
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
            "One load generator for all (`bench/src/serving.rs`): each client a UDP socket \
             fetching the image block after block, one confirmable request in flight, {secs} s per \
             row. Our server runs on each store measured: SQLite (the default), PostgreSQL with \
             one node, and with several nodes sharing the CoAP address (`--reuse-port`; the kernel \
             spreads the clients' sockets among them by a hash of their address, and the CPU is \
             summed over the nodes). Against ours each client first registers as an LwM2M device \
             from its socket (not timed), since a node on a shared store answers blocks on its \
             fast path only to the devices it holds. The generator shares the machine's cores \
             with the server under test, so from 10 clients on the blocks/s measure the machine \
             as much as the server; the CPU time per block is the fairer comparison. The last \
             column is the load generator's own CPU time per block: blocks/s × (server + \
             generator µs per block) is the CPU the two used together ({} s/s with libcoap at 100 \
             clients), on a machine of {cores} cores that may be shared with other work. Near \
             {cores} s/s the cores, not the server, set the blocks/s; well below it, other work \
             took the rest. Targets at 100 clients, at least 2× libcoap's blocks/s and at most \
             half its server CPU per block: {}.",
            libcoap_100.map_or("-".to_string(), busy),
            if targets.is_empty() {
                "not measured".to_string()
            } else {
                targets.join("; ")
            }
        )],
        raw: serde_json::Value::Array(raw),
    })
}

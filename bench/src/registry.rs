//! Table 3: how many devices the server holds. A load generator registers N clients with the
//! `lwm2m-server` binary over real UDP on loopback (CoAP POST /rd, as a device does), then sends
//! every client's registration Update once; registrations per second, latency percentiles, and the
//! server's resident memory per registered client (from /proc). On the embedded SQLite store (one
//! node) and on PostgreSQL with one node or several (`--reuse-port` on one CoAP address, the
//! kernel spreading the generator's sockets among them), on a throw-away PostgreSQL cluster.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::procs::{LocalServer, free_udp_port, start_server, start_server_at};

// The server's tests' throw-away PostgreSQL cluster (initdb in a temp dir, pg_ctl on a free port).
#[path = "../../lwm2m-server/tests/support/pg.rs"]
#[allow(dead_code)]
mod pg;
use coap_lite::{CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType};
use tokio::net::UdpSocket;

use crate::report::{Table, num};

/// Sockets the generator sends from, and requests in flight on each: 64 in all, the depth of the
/// server's request queue (more are answered 5.03 and asked again).
const SOCKETS: usize = 16;
const WINDOW: usize = 4;
const RETRANSMIT_AFTER: Duration = Duration::from_secs(2);
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// One phase's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Phase {
    pub requests: usize,
    pub ok: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub retransmissions: usize,
    /// 5.03 answers (the server's request queue full), asked again after 2 s.
    pub busy: usize,
}

/// Where the registrations go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Backend {
    /// The embedded default: one node, SQLite on disk.
    Sqlite,
    /// `nodes` nodes on one PostgreSQL database.
    Postgres { nodes: usize },
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "sqlite" => Ok(Backend::Sqlite),
            _ => s
                .strip_prefix("pg")
                .and_then(|n| n.parse().ok())
                .filter(|n| (1..=16).contains(n))
                .map(|nodes| Backend::Postgres { nodes })
                .ok_or_else(|| format!("{s:?}: give sqlite or pgN (N nodes on PostgreSQL, 1-16)")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite => write!(f, "SQLite, 1 node"),
            Backend::Postgres { nodes: 1 } => write!(f, "PostgreSQL, 1 node"),
            Backend::Postgres { nodes } => write!(f, "PostgreSQL, {nodes} nodes"),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Scale {
    pub backend: Backend,
    pub clients: usize,
    pub register: Phase,
    pub update: Phase,
    /// Summed over the nodes.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// All nodes' RSS growth over the clients registered.
    pub bytes_per_client: f64,
    /// The worst node's RSS growth over the clients it holds (on SQLite: the same figure).
    pub bytes_per_client_per_node: f64,
    /// Clients held by each node (PostgreSQL's `owner_node`), in node order.
    pub held: Vec<usize>,
    /// The clients whose Update failed, and how.
    pub update_failures: Vec<String>,
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc")
}

fn request(path: &[&str], query: &[String], payload: &[u8], mid: u16, token: u32) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    p.set_token(token.to_be_bytes().to_vec());
    for seg in path {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    if !payload.is_empty() {
        p.set_content_format(ContentFormat::ApplicationLinkFormat);
        p.payload = payload.to_vec();
    }
    p.to_bytes().unwrap_or_default()
}

struct InFlight {
    client: usize,
    bytes: Vec<u8>,
    first_sent: Instant,
    last_sent: Instant,
}

/// Sends one request per client (`make(client, mid, token)`) with `SOCKETS × WINDOW` in flight;
/// returns the phase's figures and each client's response (for Location-Path).
async fn phase(
    server: SocketAddr,
    clients: usize,
    make: impl Fn(usize, u16, u32) -> Vec<u8> + Clone + Send + 'static,
) -> Result<(Phase, Vec<Option<Packet>>)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SOCKETS {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await?;
            let mine: Vec<usize> = (s..clients).step_by(SOCKETS).collect();
            let mut next = 0;
            let mut mid: u16 = (s as u16).wrapping_mul(997);
            let mut token: u32 = (s as u32) << 24;
            let mut flying: HashMap<u32, InFlight> = HashMap::new();
            let mut done: Vec<(usize, Duration, Packet)> = Vec::new();
            let mut retx = 0usize;
            let mut busy_count = 0usize;
            let mut buf = vec![0u8; 2048];
            while next < mine.len() || !flying.is_empty() {
                while flying.len() < WINDOW && next < mine.len() {
                    mid = mid.wrapping_add(1);
                    token = token.wrapping_add(1);
                    let bytes = make(mine[next], mid, token);
                    sock.send_to(&bytes, server).await?;
                    let now = Instant::now();
                    flying.insert(
                        token,
                        InFlight {
                            client: mine[next],
                            bytes,
                            first_sent: now,
                            last_sent: now,
                        },
                    );
                    next += 1;
                }
                match tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf))
                    .await
                {
                    Ok(Ok((n, _))) => {
                        if let Ok(p) = Packet::from_bytes(&buf[..n]) {
                            let t = p.get_token();
                            if t.len() == 4 {
                                let t = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
                                let busy = u8::from(p.header.code) == 0xa3; // 5.03
                                if busy {
                                    // The server's queue is full: ask again later with a new
                                    // message id (the old one is answered 5.03 from its cache).
                                    if let Some(f) = flying.get_mut(&t) {
                                        mid = mid.wrapping_add(1);
                                        f.bytes = make(f.client, mid, t);
                                        f.last_sent = Instant::now();
                                        busy_count += 1;
                                    }
                                } else if let Some(f) = flying.remove(&t) {
                                    done.push((f.client, f.first_sent.elapsed(), p));
                                }
                            }
                        }
                    }
                    Ok(Err(e)) => return Err(anyhow::Error::from(e)),
                    Err(_) => {}
                }
                let now = Instant::now();
                let mut gone = Vec::new();
                for (t, f) in flying.iter_mut() {
                    if now - f.first_sent > GIVE_UP_AFTER {
                        gone.push(*t);
                    } else if now - f.last_sent > RETRANSMIT_AFTER {
                        sock.send_to(&f.bytes, server).await?;
                        f.last_sent = now;
                        retx += 1;
                    }
                }
                for t in gone {
                    flying.remove(&t);
                }
            }
            anyhow::Ok((done, retx, busy_count))
        }));
    }
    let mut latencies = Vec::with_capacity(clients);
    let mut responses: Vec<Option<Packet>> = vec![None; clients];
    let mut retransmissions = 0;
    let mut busy = 0;
    for t in tasks {
        let (done, retx, b) = t.await??;
        retransmissions += retx;
        busy += b;
        for (client, latency, p) in done {
            latencies.push(latency);
            responses[client] = Some(p);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round().max(0.0) as usize)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(f64::NAN)
    };
    let ok = responses
        .iter()
        .filter(|r| {
            r.as_ref().is_some_and(|p| {
                matches!(p.header.code, MessageClass::Response(_))
                    && u8::from(p.header.code) >> 5 == 2
            })
        })
        .count();
    Ok((
        Phase {
            requests: clients,
            ok,
            seconds,
            per_second: ok as f64 / seconds,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            retransmissions,
            busy,
        },
        responses,
    ))
}

/// Registers `clients` clients with a fresh `lwm2m-server` (`binary`), then updates each once.
/// The nodes under test, and the PostgreSQL cluster and database behind them.
pub(crate) struct Nodes {
    pub(crate) nodes: Vec<LocalServer>,
    /// The CoAP address every node listens on.
    pub(crate) coap: SocketAddr,
    pg: Option<(pg::PgCluster, String)>,
    _data: Vec<tempfile::TempDir>,
}

impl Nodes {
    pub(crate) fn start(binary: &Path, backend: Backend) -> Result<Nodes> {
        // Every simulated client sends from 127.0.0.1: the per-source Register limit is off here.
        let limits = [
            "--max-registrations",
            "2000000",
            "--register-rate",
            "0",
            // The generator's clients answer nothing: a read of /3/0/1 and /3/0/3 per
            // registration would stay outstanding, retransmitted, for the whole run.
            "--read-device-info",
            "off",
        ];
        match backend {
            Backend::Sqlite => {
                let data = tempfile::tempdir()?;
                let node = start_server(binary, data.path(), &limits)?;
                Ok(Nodes {
                    coap: node.coap,
                    nodes: vec![node],
                    pg: None,
                    _data: vec![data],
                })
            }
            Backend::Postgres { nodes } => {
                let cluster = pg::PgCluster::start()
                    .context("PostgreSQL's initdb/pg_ctl not found: run scripts/setup.sh")?;
                let url = cluster.new_database();
                let port = free_udp_port()?;
                let mut started = Vec::new();
                // One data dir for all: the release files are on a path every node reads.
                let dir = tempfile::tempdir()?;
                for i in 1..=nodes {
                    let name = format!("n{i}");
                    let mut args = limits.to_vec();
                    args.extend(["--store", &url, "--reuse-port", "--node-id", &name]);
                    started.push(start_server_at(binary, dir.path(), port, &args)?);
                    // One at a time: the first creates the schema.
                    wait_for_api(started.last().map(|n| n.url.as_str()).unwrap_or(""))?;
                }
                Ok(Nodes {
                    coap: ([127, 0, 0, 1], port).into(),
                    nodes: started,
                    pg: Some((cluster, url)),
                    _data: vec![dir],
                })
            }
        }
    }

    /// The nodes' process ids.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.proc.0.id()).collect()
    }

    fn rss_kib(&self) -> Result<Vec<u64>> {
        self.nodes.iter().map(|n| rss_kib(n.proc.0.id())).collect()
    }

    /// Registrations held by each node, from PostgreSQL (SQLite: the one node holds them all).
    fn held(&self, registered: usize) -> Result<Vec<usize>> {
        let Some((_, url)) = &self.pg else {
            return Ok(vec![registered]);
        };
        let url = url.clone();
        let counts: Vec<(String, i64)> = std::thread::spawn(move || -> Result<_> {
            let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
            let rows = c.query(
                "SELECT COALESCE(owner_node, ''), count(*) FROM registrations GROUP BY 1",
                &[],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the PostgreSQL query thread panicked"))??;
        Ok((1..=self.nodes.len())
            .map(|i| {
                let name = format!("n{i}");
                counts
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, c)| usize::try_from(*c).unwrap_or(0))
            })
            .collect())
    }
}

/// Waits (at most 30 s) until the admin API at `url` accepts connections.
fn wait_for_api(url: &str) -> Result<()> {
    let addr = url.trim_start_matches("http://");
    for _ in 0..300 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("lwm2m-server's admin API at {url} did not come up")
}

pub async fn scale(binary: &Path, clients: usize, backend: Backend) -> Result<Scale> {
    let nodes = Nodes::start(binary, backend)?;
    let server = nodes.coap;
    // Wait until it answers.
    let probe = UdpSocket::bind("127.0.0.1:0").await?;
    let mut up = false;
    for _ in 0..100 {
        let ping = request(
            &["rd"],
            &["ep=probe".into(), "lt=3600".into()],
            b"</1/0>",
            1,
            1,
        );
        probe.send_to(&ping, server).await?;
        let mut b = [0u8; 512];
        if tokio::time::timeout(Duration::from_millis(100), probe.recv_from(&mut b))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
    }
    if !up {
        bail!("lwm2m-server did not answer on {server}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = nodes.rss_kib()?;
    let payload = b"</1/0>,</3/0>,</5/0>".to_vec();
    let (register, responses) = phase(server, clients, move |c, mid, token| {
        let q = [
            format!("ep=bench-{c:06}"),
            "lt=86400".into(),
            "lwm2m=1.1".into(),
            "b=U".into(),
        ];
        request(&["rd"], &q, &payload, mid, token)
    })
    .await?;
    let locations: Vec<Vec<String>> = responses
        .iter()
        .map(|r| {
            r.as_ref()
                .and_then(|p| p.get_option(CoapOption::LocationPath))
                .map(|segs| {
                    segs.iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = nodes.rss_kib()?;
    // The probe's registration too.
    let held = nodes.held(register.ok + 1)?;
    let locations = std::sync::Arc::new(locations);
    let (update, update_responses) = phase(server, clients, move |c, mid, token| {
        let path: Vec<&str> = locations[c].iter().map(String::as_str).collect();
        request(&path, &[], &[], mid, token)
    })
    .await?;
    let update_failures = failures(&update_responses);
    let growth: Vec<u64> = rss_after
        .iter()
        .zip(&rss_before)
        .map(|(a, b)| a.saturating_sub(*b) * 1024)
        .collect();
    let bytes_per_client = growth.iter().sum::<u64>() as f64 / register.ok.max(1) as f64;
    let bytes_per_client_per_node = growth
        .iter()
        .zip(&held)
        .map(|(g, h)| *g as f64 / (*h).max(1) as f64)
        .fold(0.0, f64::max);
    Ok(Scale {
        backend,
        clients,
        register,
        update,
        rss_before_kib: rss_before.iter().sum(),
        rss_after_kib: rss_after.iter().sum(),
        bytes_per_client,
        bytes_per_client_per_node,
        held,
        update_failures,
    })
}

/// The clients whose request was not answered with a success, and how it was answered (so that a
/// failed run says what went wrong).
fn failures(responses: &[Option<Packet>]) -> Vec<String> {
    responses
        .iter()
        .enumerate()
        .filter_map(|(client, r)| match r {
            None => Some(format!("bench-{client:06}: no answer")),
            Some(p) if u8::from(p.header.code) >> 5 != 2 => {
                Some(format!("bench-{client:06}: {}", p.header.get_code()))
            }
            Some(_) => None,
        })
        .collect()
}

pub async fn run(
    binary: &Path,
    scales: &[usize],
    backends: &[Backend],
    strict: bool,
) -> Result<Table> {
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for (&backend, &n) in backends
        .iter()
        .flat_map(|b| scales.iter().map(move |n| (b, n)))
    {
        eprintln!("registry: {backend}, {n} clients");
        let s = scale(binary, n, backend).await?;
        anyhow::ensure!(
            !strict || (s.register.ok == n && s.update.ok == n),
            "registry: {}/{n} registered, {}/{n} updated ({})",
            s.register.ok,
            s.update.ok,
            s.update_failures.join(", ")
        );
        rows.push(vec![
            backend.to_string(),
            n.to_string(),
            format!("{}/{}", s.register.ok, n),
            num(s.register.per_second),
            num(s.register.p50_ms),
            num(s.register.p99_ms),
            format!("{}/{}", s.update.ok, n),
            num(s.update.per_second),
            num(s.update.p99_ms),
            num(s.bytes_per_client),
            num(s.bytes_per_client_per_node),
            s.held
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" / "),
            num(s.rss_after_kib as f64 / 1024.0),
        ]);
        raw.push(serde_json::to_value(&s)?);
    }
    // At the largest size: at 10 000 a node's fixed costs (allocator arenas, connections)
    // spread over a few thousand clients swamp the per-client figure.
    let largest = scales.iter().copied().max().unwrap_or(0);
    let worst = raw
        .iter()
        .filter(|v| v["clients"].as_u64() == Some(largest as u64))
        .filter_map(|v| v["bytes_per_client_per_node"].as_f64())
        .fold(0.0f64, f64::max);
    Ok(Table {
        id: "registry".into(),
        title: "3. Registry scale: registrations and Updates over UDP on loopback".into(),
        columns: [
            "store and nodes",
            "clients",
            "registered",
            "registrations/s",
            "p50 (ms)",
            "p99 (ms)",
            "updated",
            "Updates/s",
            "Update p99 (ms)",
            "RSS per client, all nodes (B)",
            "RSS per client held, worst node (B)",
            "clients held per node",
            "servers' RSS (MiB)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![format!(
            "The `lwm2m-server` binary on its defaults (one transaction per registration and per \
             Update), on SQLite on disk or on a throw-away PostgreSQL cluster (initdb in a temp \
             dir, fsync and synchronous_commit off, as the tests run it) with one node or several \
             sharing one CoAP address (`--reuse-port`), driven by {SOCKETS} UDP sockets with \
             {WINDOW} confirmable requests in flight each (retransmitted after \
             {RETRANSMIT_AFTER:?}); with several nodes the kernel spreads the sockets among them \
             by a hash of their address, so the nodes' shares are uneven. RSS per client = growth \
             of the servers' VmRSS during registration / clients registered (all nodes), and each \
             node's growth / the clients it holds (PostgreSQL's owner_node), worst node. Target: \
             at most 2 KiB per client held per node at {largest} clients: {} (worst {} B).",
            if worst <= 2048.0 { "met" } else { "NOT met" },
            num(worst)
        )],
        raw: serde_json::Value::Array(raw),
    })
}

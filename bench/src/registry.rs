//! Table 3: how many devices one server holds. A load generator registers N clients with the
//! `lwm2m-server` binary over real UDP on loopback (CoAP POST /rd, as a device does), then sends
//! every client's registration Update once; registrations per second, latency percentiles, and the
//! server's resident memory per registered client (from /proc).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::procs::start_server;
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

#[derive(Clone, Debug, serde::Serialize)]
pub struct Scale {
    pub clients: usize,
    pub register: Phase,
    pub update: Phase,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_client: f64,
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
pub async fn scale(binary: &Path, clients: usize) -> Result<Scale> {
    let data = tempfile::tempdir()?;
    // Every simulated client sends from 127.0.0.1: the per-source Register limit is off here.
    let local = start_server(
        binary,
        data.path(),
        &["--max-registrations", "1000000", "--register-rate", "0"],
    )?;
    let pid = local.proc.0.id();
    let server = local.coap;
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
    let rss_before_kib = rss_kib(pid)?;
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
    let rss_after_kib = rss_kib(pid)?;
    let locations = std::sync::Arc::new(locations);
    let (update, _) = phase(server, clients, move |c, mid, token| {
        let path: Vec<&str> = locations[c].iter().map(String::as_str).collect();
        request(&path, &[], &[], mid, token)
    })
    .await?;
    let bytes_per_client =
        (rss_after_kib.saturating_sub(rss_before_kib) * 1024) as f64 / register.ok.max(1) as f64;
    Ok(Scale {
        clients,
        register,
        update,
        rss_before_kib,
        rss_after_kib,
        bytes_per_client,
    })
}

pub async fn run(binary: &Path, scales: &[usize], strict: bool) -> Result<Table> {
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for &n in scales {
        eprintln!("registry: {n} clients");
        let s = scale(binary, n).await?;
        anyhow::ensure!(
            !strict || (s.register.ok == n && s.update.ok == n),
            "registry: {}/{n} registered, {}/{n} updated",
            s.register.ok,
            s.update.ok
        );
        rows.push(vec![
            n.to_string(),
            format!("{}/{}", s.register.ok, n),
            num(s.register.per_second),
            num(s.register.p50_ms),
            num(s.register.p99_ms),
            format!("{}/{}", s.update.ok, n),
            num(s.update.per_second),
            num(s.update.p99_ms),
            num(s.bytes_per_client),
            num(s.rss_after_kib as f64 / 1024.0),
        ]);
        raw.push(serde_json::to_value(&s)?);
    }
    let worst = raw
        .iter()
        .filter_map(|v| v["bytes_per_client"].as_f64())
        .fold(0.0f64, f64::max);
    Ok(Table {
        id: "registry".into(),
        title: "3. Registry scale: registrations and Updates over UDP on loopback".into(),
        columns: [
            "clients",
            "registered",
            "registrations/s",
            "p50 (ms)",
            "p99 (ms)",
            "updated",
            "Updates/s",
            "Update p99 (ms)",
            "RSS per client (B)",
            "server RSS (MiB)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![format!(
            "The `lwm2m-server` binary on its defaults (SQLite store on disk, one transaction per \
             registration and per Update), driven by {SOCKETS} UDP sockets with {WINDOW} confirmable \
             requests in flight each (retransmitted after {RETRANSMIT_AFTER:?}). RSS per client = \
             growth of the server's VmRSS during registration / clients registered. Target: at most \
             2 KiB per client at 100 k: {} (worst {} B).",
            if worst <= 2048.0 { "met" } else { "NOT met" },
            num(worst)
        )],
        raw: serde_json::Value::Array(raw),
    })
}

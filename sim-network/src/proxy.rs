//! The UDP proxy: puts the link model between real processes on loopback.
//!
//! Devices talk to `listen`; for each device address the proxy opens its own socket towards
//! `upstream` (as a border router's NAT would), so the server sees one address per device and can
//! send requests back (Write, Execute, notifications). Every datagram goes through that device's
//! [`Path`] of the shared [`Mesh`]: dropped, delayed, duplicated as the model says, on the real
//! clock.
//!
//! One task owns the model and decides every delivery, so model time never runs backwards; socket
//! readers only forward what they receive to it, and each delivery is a small timer task.

use crate::model::{Backhaul, Instant, LinkConfig, LinkStats, Mesh, Path};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Largest datagram relayed: CoAP over UDP on loopback never needs more.
const MAX_DATAGRAM: usize = 64 * 1024;

/// What the proxy needs to run.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where devices send to (the address the server's public URI names).
    pub listen: SocketAddr,
    /// The real server.
    pub upstream: SocketAddr,
    /// Each device's radio route.
    pub link: LinkConfig,
    /// The border router's leg to the server.
    pub backhaul: Backhaul,
    /// Seed of every random choice.
    pub seed: u64,
    /// Most devices tracked at once; datagrams from further addresses are dropped and counted.
    pub max_devices: usize,
}

/// Counters of one direction, summed over all devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct DirectionReport {
    pub datagrams: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub frames: u64,
    pub frames_lost: u64,
    /// Bytes on the air (frames and MAC acknowledgements, MAC header to FCS, on every hop).
    pub bytes_on_air: u64,
    pub airtime_ms: f64,
    /// MAC retransmissions (frames sent again for want of an acknowledgement).
    pub mac_retries: u64,
    /// Retransmitted frames the receiver already had (their acknowledgement was lost): dropped by
    /// its sequence-number check.
    pub mac_duplicates: u64,
    /// Frames given up after every retry.
    pub mac_failures: u64,
}

impl DirectionReport {
    fn add(&mut self, s: &LinkStats) {
        self.datagrams += s.datagrams_sent;
        self.delivered += s.datagrams_delivered;
        self.dropped += s.datagrams_dropped;
        self.duplicated += s.datagrams_duplicated;
        self.reordered += s.datagrams_reordered;
        self.frames += s.frames_sent;
        self.frames_lost += s.frames_lost;
        self.bytes_on_air += s.frame_bytes;
        self.airtime_ms += s.airtime.as_secs_f64() * 1e3;
        self.mac_retries += s.mac_retries;
        self.mac_duplicates += s.mac_duplicates;
        self.mac_failures += s.mac_failures;
    }
}

/// What the proxy saw, printed when it stops.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProxyReport {
    /// The link model every device's route follows, in one line.
    pub model: String,
    /// Distinct device addresses seen.
    pub devices: usize,
    /// Device → server.
    pub up: DirectionReport,
    /// Server → device.
    pub down: DirectionReport,
    /// Datagrams from device addresses beyond `max_devices`, dropped unmodelled.
    pub refused: u64,
    /// Airtime used on the shared mesh, all hops and both directions.
    pub mesh_airtime_ms: f64,
    /// Wall time the proxy ran.
    pub ran_s: f64,
}

impl std::fmt::Display for ProxyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} device(s), {:.1} s, mesh airtime {:.1} ms ({})",
            self.devices, self.ran_s, self.mesh_airtime_ms, self.model
        )?;
        for (name, d) in [
            ("up (device -> server)", &self.up),
            ("down (server -> device)", &self.down),
        ] {
            writeln!(
                f,
                "{name}: {} datagrams, {} delivered, {} dropped, {} duplicated, {} reordered; \
                 {} frames, {} lost, {} bytes on air; airtime {:.1} ms; \
                 MAC retries {}, duplicates dropped {}, frames given up {}",
                d.datagrams,
                d.delivered,
                d.dropped,
                d.duplicated,
                d.reordered,
                d.frames,
                d.frames_lost,
                d.bytes_on_air,
                d.airtime_ms,
                d.mac_retries,
                d.mac_duplicates,
                d.mac_failures
            )?;
        }
        if self.refused > 0 {
            writeln!(f, "refused (too many devices): {}", self.refused)?;
        }
        Ok(())
    }
}

enum Received {
    FromDevice(SocketAddr, Vec<u8>),
    FromServer(SocketAddr, Vec<u8>),
}

struct Device {
    upstream: Arc<UdpSocket>,
    path: Path,
}

/// A bound proxy, not yet running: lets a caller learn the listening address first.
pub struct Proxy {
    cfg: ProxyConfig,
    listen: Arc<UdpSocket>,
}

impl Proxy {
    /// Checks the configuration and binds `cfg.listen`.
    pub async fn bind(cfg: ProxyConfig) -> io::Result<Self> {
        cfg.link
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if !(0.0..=1.0).contains(&cfg.backhaul.loss) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "backhaul loss is out of range [0, 1]",
            ));
        }
        let listen = UdpSocket::bind(cfg.listen).await.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cfg.listen))
        })?;
        Ok(Proxy {
            cfg,
            listen: Arc::new(listen),
        })
    }

    /// The address devices send to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listen.local_addr()
    }

    /// Relays until `shutdown` completes, then returns the counters.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<ProxyReport> {
        let Proxy { cfg, listen } = self;
        let start = tokio::time::Instant::now();
        let mesh = Mesh::new(cfg.link, cfg.backhaul, cfg.seed);
        let mut devices: HashMap<SocketAddr, Device> = HashMap::new();
        let mut refused = 0u64;
        let (tx, mut rx) = mpsc::channel::<Received>(1024);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        tokio::pin!(shutdown);

        loop {
            let received = tokio::select! {
                _ = &mut shutdown => break,
                r = listen.recv_from(&mut buf) => match r {
                    Ok((n, from)) => Received::FromDevice(from, buf.get(..n).unwrap_or_default().to_vec()),
                    // ICMP port unreachable from an earlier send surfaces here on some systems.
                    Err(_) => continue,
                },
                Some(r) = rx.recv() => r,
            };
            let now = Instant::from_start(start.elapsed());
            match received {
                Received::FromDevice(from, bytes) => {
                    if !devices.contains_key(&from) {
                        if devices.len() >= cfg.max_devices {
                            refused += 1;
                            continue;
                        }
                        let index = devices.len() as u64;
                        let upstream = open_upstream(cfg.upstream, from, tx.clone()).await?;
                        devices.insert(
                            from,
                            Device {
                                upstream,
                                path: mesh.path(index),
                            },
                        );
                    }
                    let Some(device) = devices.get_mut(&from) else {
                        continue;
                    };
                    for delivery in device.path.send_up(now, bytes.len()) {
                        let target = Target::Server(device.upstream.clone());
                        deliver_later(start, delivery.at, delivery.copies, target, bytes.clone());
                    }
                }
                Received::FromServer(device_addr, bytes) => {
                    let Some(device) = devices.get_mut(&device_addr) else {
                        continue;
                    };
                    for delivery in device.path.send_down(now, bytes.len()) {
                        let target = Target::Device(listen.clone(), device_addr);
                        deliver_later(start, delivery.at, delivery.copies, target, bytes.clone());
                    }
                }
            }
        }

        let mut report = ProxyReport {
            model: cfg.link.summary(),
            devices: devices.len(),
            refused,
            mesh_airtime_ms: mesh.airtime_used().as_secs_f64() * 1e3,
            ran_s: start.elapsed().as_secs_f64(),
            ..ProxyReport::default()
        };
        for device in devices.values() {
            let stats = device.path.stats();
            report.up.add(&stats.up);
            report.down.add(&stats.down);
        }
        Ok(report)
    }
}

/// A socket towards the server for one device, with a task that hands what the server sends back
/// to the model task.
async fn open_upstream(
    upstream: SocketAddr,
    device: SocketAddr,
    tx: mpsc::Sender<Received>,
) -> io::Result<Arc<UdpSocket>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    let socket = Arc::new(socket);
    let reader = socket.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match reader.recv(&mut buf).await {
                Ok(n) => {
                    let bytes = buf.get(..n).unwrap_or_default().to_vec();
                    if tx.send(Received::FromServer(device, bytes)).await.is_err() {
                        return; // the proxy stopped
                    }
                }
                // The server is not (yet) listening: ICMP unreachable. Keep the mapping.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => return,
            }
        }
    });
    Ok(socket)
}

/// Where a delivery goes: the server (over the device's own socket) or a device.
enum Target {
    Server(Arc<UdpSocket>),
    Device(Arc<UdpSocket>, SocketAddr),
}

/// Sends `copies` copies of `bytes` when the model says the datagram arrives. A send error is a
/// lost datagram, as on the air.
fn deliver_later(
    start: tokio::time::Instant,
    at: Instant,
    copies: u32,
    target: Target,
    bytes: Vec<u8>,
) {
    let when = start + at.since_start();
    tokio::spawn(async move {
        tokio::time::sleep_until(when).await;
        for _ in 0..copies {
            let _ = match &target {
                Target::Server(socket) => socket.send(&bytes).await,
                Target::Device(socket, addr) => socket.send_to(&bytes, *addr).await,
            };
        }
    });
}

/// Gilbert-Elliott parameters for a long-run frame loss `loss` in bursts of `mean_burst` frames.
pub fn bursty_loss(loss: f64, mean_burst: f64) -> Result<crate::model::LossModel, String> {
    if !(0.0..1.0).contains(&loss) {
        return Err(format!("--loss {loss}: bursts need a loss in [0, 1)"));
    }
    if mean_burst < 1.0 {
        return Err(format!(
            "--burst {mean_burst}: a burst lasts at least 1 frame"
        ));
    }
    let p_bad_to_good = 1.0 / mean_burst;
    // Stationary bad fraction p_gb / (p_gb + p_bg) = loss.
    let p_good_to_bad = (loss * p_bad_to_good / (1.0 - loss)).min(1.0);
    Ok(crate::model::LossModel::GilbertElliott {
        p_good_to_bad,
        p_bad_to_good,
        loss_good: 0.0,
        loss_bad: 1.0,
    })
}

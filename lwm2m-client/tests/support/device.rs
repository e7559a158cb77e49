//! The device under test: the real engine, driven by the crate's host driver (`host::run`, tokio
//! UDP and tokio's clock) or by the same loop on an in-memory network (for tests on a paused
//! clock), in a task that the test can stop to get the engine (and its platform) back. Events are
//! forwarded to the test. An Update makes the driver return `Exit::Reboot`; the task then keeps
//! running the engine, which models the window between Update and the reset (State Updating).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use heapless::String;
use lwm2m_client::engine::{Config, Engine, Event};
use lwm2m_client::host::{self, Clock, Exit};
use lwm2m_client::platform::{BootInfo, BootOutcome};
use lwm2m_client::time::Instant;
use lwm2m_core::object5::{State, UpdateResult};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::net::{Link, MemSock};
use super::platform::RamPlatform;

pub type TestEngine = Engine<RamPlatform>;

/// The device set-up the tests use (testkit's, as `otafleet-test`): 64-byte blocks, one block in
/// flight.
pub fn config(server: SocketAddr, trust: &p256::ecdsa::VerifyingKey) -> Config {
    testkit::device::config("otafleet-test", server, trust)
}

/// A stopped device: its engine (with the platform) and what it did.
pub struct Stopped {
    pub engine: TestEngine,
    pub exits: Vec<Exit>,
    pub events: Vec<Event>,
}

impl Stopped {
    /// The platform, out of the engine (the flash that survives a reboot).
    pub fn platform(&mut self) -> RamPlatform {
        std::mem::take(self.engine.platform())
    }
}

pub struct Device {
    pub addr: SocketAddr,
    events: mpsc::UnboundedReceiver<Event>,
    /// Every event seen so far, in order.
    pub seen: Vec<Event>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<(TestEngine, Vec<Exit>)>>,
    /// How often the engine's deadline was already past right after `handle_timeout` (in-memory
    /// driver only; see [`run_mem`]).
    pub spins: Arc<AtomicU64>,
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Boots the engine on `platform` (whose persisted record is the boot record) and runs it: over
/// UDP with the crate's host driver (`host::run`), or on an in-memory network with
/// [`run_mem`], the same loop over a [`MemSock`] (see net.rs for why).
pub async fn boot(
    link: &Link,
    cfg: Config,
    platform: RamPlatform,
    outcome: BootOutcome,
    version: &str,
) -> Device {
    let record = platform.record.clone();
    let boot_info = BootInfo {
        record,
        outcome,
        running_version: String::try_from(version).unwrap(),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let spins = Arc::new(AtomicU64::new(0));
    let (addr, task) = match link {
        Link::Udp => {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            let clock = Clock::new();
            let mut engine = Engine::new(cfg, platform, boot_info, clock.now());
            let task = tokio::spawn(async move {
                let mut exits = Vec::new();
                loop {
                    let run = host::run(&mut engine, &socket, &clock, |e| {
                        let _ = tx.send(e.clone());
                        std::ops::ControlFlow::Continue(())
                    });
                    tokio::select! {
                        biased;
                        _ = &mut stop_rx => break,
                        exit = run => {
                            exits.push(exit);
                            if exit == Exit::Socket {
                                break;
                            }
                            // Exit::Reboot: the device has not reset yet; keep serving.
                        }
                    }
                }
                (engine, exits)
            });
            (addr, task)
        }
        Link::Mem(net) => {
            let socket = net.bind();
            let addr = socket.addr;
            let clock = MemClock::new();
            let mut engine = Engine::new(cfg, platform, boot_info, clock.now());
            let spins = spins.clone();
            let task = tokio::spawn(async move {
                let mut exits = Vec::new();
                loop {
                    let run = run_mem(&mut engine, &socket, &clock, &spins, |e| {
                        let _ = tx.send(e.clone());
                    });
                    tokio::select! {
                        biased;
                        _ = &mut stop_rx => break,
                        exit = run => {
                            exits.push(exit);
                            if exit == Exit::Socket {
                                break;
                            }
                        }
                    }
                }
                (engine, exits)
            });
            (addr, task)
        }
    };
    Device {
        addr,
        events: rx,
        seen: Vec::new(),
        stop: Some(stop_tx),
        task: Some(task),
        spins,
    }
}

/// The engine's clock: milliseconds since boot on tokio's (pausable) clock.
#[derive(Clone, Copy)]
pub struct MemClock {
    start: tokio::time::Instant,
}

impl MemClock {
    pub fn new() -> Self {
        MemClock {
            start: tokio::time::Instant::now(),
        }
    }
    pub fn now(&self) -> Instant {
        Instant(self.start.elapsed().as_millis() as u64)
    }
    fn at(&self, t: Instant) -> tokio::time::Instant {
        self.start + Duration::from_millis(t.0)
    }
}

/// Used instead of a deadline that is already past right after `handle_timeout`.
pub const SPIN_STEP: Duration = Duration::from_millis(50);

/// `host::run`'s loop on a [`MemSock`]: flush what the engine queued, then wait for a datagram
/// or the engine's deadline. One addition: the sans-IO contract is that after
/// `handle_timeout(now)` the next deadline lies in the future; a deadline at or before `now`
/// makes a driver spin without sleeping (a busy loop on the device; under a paused clock, time
/// never advances and the test hangs). Such a deadline is counted in `spins` and replaced by
/// `now + SPIN_STEP`, so the test goes on and can report it.
pub async fn run_mem(
    engine: &mut TestEngine,
    socket: &MemSock,
    clock: &MemClock,
    spins: &AtomicU64,
    mut on_event: impl FnMut(&Event),
) -> Exit {
    let mut tx = vec![0u8; 1500];
    let mut timed_out_at = Some(clock.now());
    engine.handle_timeout(clock.now());
    loop {
        let mut reboot = false;
        while let Some(e) = engine.poll_event() {
            on_event(&e);
            reboot |= e == Event::Reboot;
        }
        while let Some((peer, n)) = engine.poll_transmit(clock.now(), &mut tx) {
            socket.send_to(&tx[..n], peer);
        }
        if reboot {
            return Exit::Reboot;
        }
        let now = clock.now();
        let deadline = match engine.poll_timeout() {
            Some(d) if d <= now && timed_out_at == Some(now) => {
                spins.fetch_add(1, Ordering::Relaxed);
                Some(clock.at(now) + SPIN_STEP)
            }
            d => d.map(|d| clock.at(d)),
        };
        tokio::select! {
            received = socket.recv_from() => match received {
                Some((bytes, from)) => {
                    timed_out_at = None;
                    engine.handle_datagram(clock.now(), from, &bytes);
                }
                None => return Exit::Socket,
            },
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                let now = clock.now();
                timed_out_at = Some(now);
                engine.handle_timeout(now);
            }
        }
    }
}

impl Device {
    /// Stops the driver ("power off") and returns the engine with its platform.
    pub async fn stop(mut self) -> Stopped {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = self.task.take().unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("device task did not stop")
            .expect("device task panicked");
        self.drain();
        Stopped {
            engine: out.0,
            exits: out.1,
            events: std::mem::take(&mut self.seen),
        }
    }

    /// Moves the events received so far into `seen`.
    pub fn drain(&mut self) -> &[Event] {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        &self.seen
    }

    /// Waits until an event matching `pred` arrives (events already seen count too); returns
    /// it, or None after `limit`.
    pub async fn wait_event(
        &mut self,
        limit: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        self.drain();
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return Some(e.clone());
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()??;
            self.seen.push(e.clone());
            if pred(&e) {
                return Some(e);
            }
        }
    }

    /// Waits for the first Object 5 change (among those not cleared) that ends a download: State
    /// Idle or Downloaded.
    pub async fn wait_download_end(&mut self, limit: Duration) -> Option<(State, UpdateResult)> {
        let e = self
            .wait_event(limit, |e| {
                matches!(
                    e,
                    Event::Firmware {
                        state: State::Idle | State::Downloaded,
                        ..
                    }
                )
            })
            .await?;
        match e {
            Event::Firmware { state, result } => Some((state, result)),
            _ => None,
        }
    }

    /// The Object 5 (state, result) events seen so far.
    pub fn firmware_events(&mut self) -> Vec<(State, UpdateResult)> {
        self.drain();
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::Firmware { state, result } => Some((*state, *result)),
                _ => None,
            })
            .collect()
    }

    /// Forgets the events seen so far (the next waits look at new ones only).
    pub fn clear(&mut self) {
        self.drain();
        self.seen.clear();
    }
}

/// A fresh device on UDP (RAM platform, factory 1.0.0, trusting `key`) registered with a new
/// scripted LwM2M server, which has written `uri` to its Package URI (answered 2.04). Returns
/// the server, the device and the address it registered from.
pub async fn udp_device_told_to_pull(
    key: &p256::ecdsa::SigningKey,
    uri: &str,
) -> (super::lwm2m::LwServer, Device, SocketAddr) {
    let link = super::net::Link::Udp;
    let mut lw = super::lwm2m::LwServer::start(&link).await;
    let dev = boot(
        &link,
        config(lw.addr, key.verifying_key()),
        RamPlatform::default(),
        BootOutcome::Normal,
        "1.0.0",
    )
    .await;
    let at = lw.registered(1, Duration::from_secs(10)).await;
    assert_eq!(at, dev.addr);
    assert_eq!(lw.object5(at).await, (0, 0), "Idle before");
    let r = lw.write_text(at, "5/0/1", uri).await;
    assert_eq!(super::coap::code_str(r.code), "2.04", "write /5/0/1: {r:?}");
    (lw, dev, at)
}

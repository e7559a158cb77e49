//! The UDP proxy on real loopback sockets: what it relays, to whom, and what it counts.

use sim_network::model::{Backhaul, Contention, LinkConfig, LossModel, LossUnit, Mac};
use sim_network::proxy::{Proxy, ProxyConfig, ProxyReport, bursty_loss};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// An upstream that echoes every datagram back to its sender and reports who sent what.
async fn echo_server() -> (
    SocketAddr,
    JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = socket.local_addr().expect("echo addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let bytes = buf[..n].to_vec();
            let _ = socket.send_to(&bytes, from).await;
            let _ = tx.send((from, bytes));
        }
    });
    (addr, task, rx)
}

fn config(upstream: SocketAddr, link: LinkConfig, seed: u64) -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstream,
        link,
        backhaul: Backhaul::default(),
        seed,
        max_devices: 16,
    }
}

async fn start(cfg: ProxyConfig) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<ProxyReport>) {
    let proxy = Proxy::bind(cfg).await.expect("bind proxy");
    let addr = proxy.local_addr().expect("proxy addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        proxy
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("proxy run")
    });
    (addr, stop, run)
}

/// Receives datagrams until none has come for `quiet` (at most 400).
async fn drain(socket: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    while got.len() < 400 {
        match timeout(quiet, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => got.push(buf[..n].to_vec()),
            _ => break,
        }
    }
    got
}

fn datagram(device: u8, i: usize) -> Vec<u8> {
    // Sizes from 1 to 4 frames, content naming the device and the index.
    let len = 8 + (i * 37) % 300;
    (0..len).map(|k| (k as u8) ^ device ^ (i as u8)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossless_relays_every_datagram_byte_exact_and_maps_each_device_to_its_own_address() {
    let (upstream, _echo, mut seen) = echo_server().await;
    let (proxy, stop, run) = start(config(upstream, LinkConfig::default(), 7)).await;

    let a = UdpSocket::bind("127.0.0.1:0").await.expect("a");
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("b");
    let mut sent_a = Vec::new();
    let mut sent_b = Vec::new();
    for i in 0..40 {
        let (da, db) = (datagram(1, i), datagram(2, i));
        a.send_to(&da, proxy).await.expect("send a");
        b.send_to(&db, proxy).await.expect("send b");
        sent_a.push(da);
        sent_b.push(db);
        // Pace below the mesh's capacity so the test is about relaying, not queueing.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let got_a = drain(&a, Duration::from_millis(800)).await;
    let got_b = drain(&b, Duration::from_millis(300)).await;
    let _ = stop.send(());
    let report = run.await.expect("join");

    // Compared as multisets: each delivery is its own timer task, and a loaded machine may run two
    // timers that expired together in either order.
    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v
    };
    assert_eq!(sorted(got_a), sorted(sent_a), "device a's echoes");
    assert_eq!(sorted(got_b), sorted(sent_b), "device b's echoes");

    // The server saw exactly two source addresses, neither of them a device's own.
    let mut sources = HashSet::new();
    while let Ok((from, _)) = seen.try_recv() {
        sources.insert(from);
    }
    assert_eq!(
        sources.len(),
        2,
        "one upstream address per device: {sources:?}"
    );
    let own: HashSet<_> = [a.local_addr().expect("a"), b.local_addr().expect("b")].into();
    assert!(sources.is_disjoint(&own));

    assert_eq!(report.devices, 2);
    assert_eq!(report.up.datagrams, 80);
    assert_eq!(report.up.delivered, 80);
    assert_eq!(report.up.dropped, 0);
    assert_eq!(report.down.datagrams, 80);
    assert_eq!(report.down.delivered, 80);
    // Datagrams of up to 307 bytes take several 127-byte frames: more frames than datagrams.
    assert!(report.up.frames > report.up.datagrams, "{report:?}");
    assert!(report.up.airtime_ms > 0.0 && report.mesh_airtime_ms >= report.up.airtime_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_loss_drops_datagrams_and_the_counters_match_what_arrived() {
    let (upstream, _echo, mut seen) = echo_server().await;
    // The raw radio: no MAC retries recover the frames.
    let link = LinkConfig {
        loss: LossModel::Bernoulli { p: 0.3 },
        mac: Mac::Raw,
        ..LinkConfig::default()
    };
    let (proxy, stop, run) = start(config(upstream, link, 11)).await;
    let device = UdpSocket::bind("127.0.0.1:0").await.expect("device");
    for i in 0..200u8 {
        // 20 bytes: one frame each, so a datagram is lost with p = 0.3 per hop.
        device.send_to(&[i; 20], proxy).await.expect("send");
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    let echoes = drain(&device, Duration::from_millis(800)).await;
    let _ = stop.send(());
    let report = run.await.expect("join");
    let mut arrived_upstream = 0u64;
    while seen.try_recv().is_ok() {
        arrived_upstream += 1;
    }

    assert_eq!(report.up.datagrams, 200);
    assert_eq!(report.up.delivered + report.up.dropped, 200);
    assert_eq!(report.up.delivered, arrived_upstream, "{report:?}");
    assert_eq!(report.down.datagrams, arrived_upstream);
    assert_eq!(report.down.delivered, echoes.len() as u64, "{report:?}");
    // 200 draws at p = 0.3: 60 expected, far outside [20, 100] only when loss is broken.
    assert!((20..=100).contains(&report.up.dropped), "{report:?}");
    assert_eq!(
        report.up.frames_lost, report.up.dropped,
        "one frame per datagram"
    );
}

/// Sends 100 datagrams of `len` bytes through a proxy with `link`, one every 40 ms (slower than
/// the link carries them and their echoes, retries included); returns which of them reached the
/// server (by index) and the proxy's counters.
async fn through(link: LinkConfig, seed: u64, len: usize) -> (Vec<u8>, ProxyReport) {
    let (upstream, _echo, mut seen) = echo_server().await;
    let (proxy, stop, run) = start(config(upstream, link, seed)).await;
    let device = UdpSocket::bind("127.0.0.1:0").await.expect("device");
    for i in 0..100u8 {
        device.send_to(&vec![i; len], proxy).await.expect("send");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    drain(&device, Duration::from_millis(800)).await;
    let _ = stop.send(());
    let report = run.await.expect("join");
    let mut arrived = Vec::new();
    while let Ok((_, bytes)) = seen.try_recv() {
        arrived.push(bytes[0]);
    }
    arrived.sort_unstable();
    (arrived, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagram_loss_takes_whole_datagrams_the_same_way_for_the_same_seed() {
    let link = LinkConfig {
        loss: LossModel::Bernoulli { p: 0.3 },
        loss_unit: LossUnit::Datagram,
        // No collisions either: every frame must go exactly once, so the count below checks that
        // a datagram lost as a whole still sends its frames.
        contention: Contention::NONE,
        ..LinkConfig::default()
    };
    // 300 bytes: 4 frames each.
    let (a, report) = through(link, 21, 300).await;
    // 100 draws at p = 0.3: 30 expected, far outside [10, 50] only when loss is broken. Per frame
    // (no MAC) it would be 1 − 0.7^4 = 76 % lost, per frame with MAC retries about none.
    assert!((10..=50).contains(&report.up.dropped), "{report:?}");
    assert_eq!(report.up.delivered, a.len() as u64);
    assert_eq!(
        report.up.frames,
        4 * 100,
        "every frame is sent, lost datagram or not"
    );
    assert_eq!((report.up.frames_lost, report.up.mac_retries), (0, 0));
    assert!(report.model.contains("per datagram"), "{}", report.model);
    // The same seed drops the same datagrams; another seed others.
    let (b, _) = through(link, 21, 300).await;
    assert_eq!(a, b, "seed 21 twice");
    let (c, _) = through(link, 22, 300).await;
    assert_ne!(a, c, "seeds 21 and 22");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mac_acknowledgements_recover_frame_loss_and_count_their_retries() {
    let link = LinkConfig {
        loss: LossModel::Bernoulli { p: 0.3 },
        ..LinkConfig::default()
    };
    // 60 bytes: one frame each.
    let (arrived, report) = through(link, 23, 60).await;
    // A frame is lost for good only if 16 attempts in a row fail (0.51^16 ≈ 2e-5).
    assert_eq!(arrived.len(), 100, "{report:?}");
    assert!(report.up.frames_lost > 15, "{report:?}");
    assert!(report.up.mac_retries >= report.up.frames_lost, "{report:?}");
    assert!(report.up.mac_duplicates > 0, "{report:?}");
    assert_eq!(report.up.frames, 100 + report.up.mac_retries);
}

#[tokio::test]
async fn out_of_range_settings_are_refused_before_binding() {
    let upstream: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let link = LinkConfig {
        loss: LossModel::Bernoulli { p: 1.5 },
        ..LinkConfig::default()
    };
    let err = Proxy::bind(config(upstream, link, 1))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("loss"), "{err}");

    let mut cfg = config(upstream, LinkConfig::default(), 1);
    cfg.backhaul.loss = -0.1;
    let err = Proxy::bind(cfg).await.err().expect("refused");
    assert!(err.to_string().contains("backhaul"), "{err}");
}

#[test]
fn bursty_loss_keeps_the_long_run_loss_and_the_burst_length() {
    let model = bursty_loss(0.1, 4.0).expect("valid");
    assert!((model.stationary_loss() - 0.1).abs() < 1e-12, "{model:?}");
    match model {
        LossModel::GilbertElliott {
            p_bad_to_good,
            loss_bad,
            ..
        } => {
            assert!((p_bad_to_good - 0.25).abs() < 1e-12);
            assert_eq!(loss_bad, 1.0);
        }
        other => panic!("not Gilbert-Elliott: {other:?}"),
    }
    assert!(bursty_loss(1.0, 4.0).is_err());
    assert!(bursty_loss(0.1, 0.5).is_err());
}

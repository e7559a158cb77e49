//! Observations shared between nodes (issue 18): two servers on one throw-away PostgreSQL
//! (`support::pg`), a device spoken by hand (`support::raw_peer`). Node a observes the device's
//! Object 5 State, as an update job does, and is killed as a crash would (`Server::kill`); the
//! device's next notification reaches node b (as the kernel's `SO_REUSEPORT` hash or a balancer
//! would send it), which takes the device over, finds the observation in the database and
//! handles the notification as a would have: an ACK, a `notification` event, and the later
//! notifications on the same token without another lookup. A token nobody stored gets a Reset.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwm2m_core::Path;
use lwm2m_server::events::ServerEvent;
use lwm2m_server::server::ServerConfig;
use lwm2m_server::store::token_hex;
use support::pg::PgCluster;
use support::raw_peer::Peer;
use testkit::server::TestServer;
use tokio::sync::broadcast;

/// The configuration of a node named `name` on the shared database at `url`.
fn on_shared_store(name: &str, url: &str) -> impl FnOnce(&mut ServerConfig) + use<> {
    let (name, url) = (name.to_string(), url.to_string());
    move |c| {
        c.store_url = Some(url);
        c.node_id = name;
    }
}

/// A node named `name` on the shared database at `url`.
async fn node(name: &str, url: &str) -> TestServer {
    TestServer::start(on_shared_store(name, url)).await
}

/// A notification of State `value` (text/plain) on `token`.
fn notification(ty: MessageType, mid: u16, token: &[u8], seq: u32, value: &str) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(ty);
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p.set_observe_value(seq);
    p.add_option(CoapOption::ContentFormat, vec![]); // 0: text/plain
    p.payload = value.as_bytes().to_vec();
    p.to_bytes().unwrap()
}

/// Waits (at most 10 s) for a notification event of the device's State with `value`.
async fn notified(events: &mut broadcast::Receiver<ServerEvent>, value: i64) {
    let wait = async {
        loop {
            if let Ok(ServerEvent::Notification {
                endpoint,
                path,
                value: v,
            }) = events.recv().await
                && endpoint == "dev"
                && path == "/5/0/3"
            {
                assert_eq!(v[0]["value"], value, "{v}");
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no notification event of State {value} within 10 s"));
}

async fn send(dev: &Peer, to: SocketAddr, bytes: &[u8]) {
    dev.socket.send_to(bytes, to).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_on_the_observation_a_dead_node_made_of_a_device_that_moved_to_it() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.new_database();
    let (a, b) = (node("a", &url).await, node("b", &url).await);

    // The device registers with a, and a observes its State.
    let mut dev = Peer::new(a.coap_addr()).await;
    register_dev(&mut dev).await;
    let dm = a.server.dm.clone();
    let state = Path::parse("/5/0/3").unwrap();
    let observing = tokio::spawn(async move { dm.observe("dev", &state).await });
    let get = dev.recv().await.expect("a's Observe request");
    assert!(matches!(get.get_observe_value(), Some(Ok(0))));
    let token = get.get_token().to_vec();
    let first = notification(
        MessageType::Acknowledgement,
        get.header.message_id,
        &token,
        1,
        "1",
    );
    send(&dev, a.coap_addr(), &first).await;
    let answer = observing.await.unwrap().expect("a observes State");
    assert_eq!(answer.values[0].value.as_i64(), Some(1));
    // The observation is in the database, with its node, for any node to read.
    let stored = b.server.store.observation(&token_hex(&token)).unwrap();
    assert_eq!(
        stored
            .as_ref()
            .map(|o| (o.endpoint.as_str(), o.path.as_str(), o.node.as_str())),
        Some(("dev", "/5/0/3", "a"))
    );

    // a dies; the device's next notification (State 2, Downloaded) reaches b.
    a.server.kill();
    let mut events = b.server.events.subscribe();
    let n = notification(MessageType::Confirmable, 0x7001, &token, 2, "2");
    send(&dev, b.coap_addr(), &n).await;
    let ack = dev.recv().await.expect("b answers the notification");
    assert_eq!(
        (ack.header.get_type(), ack.header.message_id),
        (MessageType::Acknowledgement, 0x7001),
        "an ACK, not a Reset"
    );
    notified(&mut events, 2).await;
    assert_eq!(b.server.dm.observations_taken_on(), 1);
    assert_eq!(
        b.server.registry.get("dev").unwrap().owner_node.as_deref(),
        Some("b")
    );
    let stored = b.server.store.observation(&token_hex(&token)).unwrap();
    assert_eq!(stored.map(|o| o.node).as_deref(), Some("b"));
    // A repeat of the same message is ACKed again and not handled twice; the next one is.
    send(&dev, b.coap_addr(), &n).await;
    let again = dev.recv().await.expect("the repeat's ACK");
    assert_eq!(again.header.message_id, 0x7001);
    let next = notification(MessageType::NonConfirmable, 0x7002, &token, 3, "3");
    send(&dev, b.coap_addr(), &next).await;
    notified(&mut events, 3).await;

    // A token no node stored: a Reset, as before.
    let stray = notification(MessageType::Confirmable, 0x7003, b"nobody", 1, "9");
    send(&dev, b.coap_addr(), &stray).await;
    let rst = dev.recv().await.expect("b answers the stray notification");
    assert_eq!(
        (rst.header.get_type(), rst.header.message_id),
        (MessageType::Reset, 0x7003)
    );

    // Cancelled through b (b asks the device with Observe=1): the row goes, and the next
    // notification gets a Reset.
    let dm = b.server.dm.clone();
    let cancel = tokio::spawn(async move {
        dm.cancel_observe("dev", &Path::parse("/5/0/3").unwrap())
            .await
    });
    let get = dev.recv().await.expect("b's cancelling GET");
    assert!(matches!(get.get_observe_value(), Some(Ok(1))));
    let mut done = Packet::from_bytes(&notification(
        MessageType::Acknowledgement,
        get.header.message_id,
        get.get_token(),
        0,
        "3",
    ))
    .unwrap();
    done.clear_option(CoapOption::Observe);
    send(&dev, b.coap_addr(), &done.to_bytes().unwrap()).await;
    assert!(cancel.await.unwrap().unwrap(), "b held the observation");
    assert_eq!(
        b.server.store.observation(&token_hex(&token)).unwrap(),
        None
    );
    let late = notification(MessageType::Confirmable, 0x7004, &token, 4, "4");
    send(&dev, b.coap_addr(), &late).await;
    let rst = dev.recv().await.expect("b answers the late notification");
    assert_eq!(
        (rst.header.get_type(), rst.header.message_id),
        (MessageType::Reset, 0x7004)
    );

    // Another stored observation of dev, after dev was given a DTLS key (straight to the
    // credentials: the admin API would end its plain registration, and its observations with
    // it): a plain datagram from its address is not its notification (a Reset).
    let secured = lwm2m_server::store::ObservationRecord {
        token: "cc01".into(),
        endpoint: "dev".into(),
        path: "/5/0/5".into(),
        node: "a".into(),
        created_at_ms: 1,
    };
    b.server.store.put_observation(&secured).unwrap();
    b.server
        .credentials
        .add("dev", "dev-id", &[7; 16], 1)
        .unwrap();
    assert!(b.server.registry.get("dev").is_some());
    let spoofed = notification(MessageType::Confirmable, 0x7005, &[0xcc, 0x01], 2, "0");
    send(&dev, b.coap_addr(), &spoofed).await;
    let rst = dev.recv().await.expect("b answers the plain notification");
    assert_eq!(
        (rst.header.get_type(), rst.header.message_id),
        (MessageType::Reset, 0x7005)
    );
    assert_eq!(b.server.dm.observations_taken_on(), 1);
}

/// Two nodes on one `SO_REUSEPORT` address, polling out of the picture (once an hour). An update
/// job runs on the node that holds the device, which observes the device's State and Update
/// Result when it delivers the Package URI, and dies while the device downloads; the device's
/// blocks and then its Downloaded notification reach the other node, which takes the device
/// over, resumes the job at the stored step and takes the dead node's observation on, so the job
/// moves on with the notification (not at a poll, not by a retry after the download timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_carries_on_by_the_notifications_of_a_dead_nodes_observation() {
    use lwm2m_server::coap::driver::bind_udp_with;
    use suit_manifest::TrustAnchor;
    use testkit::device::{self, Device, Spec};
    use testkit::release::firmware;

    let Some(pg) = PgCluster::start() else { return };
    let url = pg.new_database();
    let addr = format!("127.0.0.1:{}", support::process::free_udp_port());
    let shared = tempfile::tempdir().unwrap();
    let data = shared.path().join("data");
    let config = |name: &str, url: &str| {
        let (shared, data) = (on_shared_store(name, url), data.clone());
        move |c: &mut ServerConfig| {
            shared(c);
            // One data dir, as nodes on a shared file system: the release files for both.
            c.data_dir = data;
            c.jobs.poll_interval = Duration::from_secs(3600);
            c.jobs.download_timeout = Duration::from_secs(60);
        }
    };
    let a =
        TestServer::start_on(bind_udp_with(&addr, true).await.unwrap(), config("a", &url)).await;
    // In 16-byte blocks (3 500 of them), so that the download is under way when its node dies
    // (the test device's slot holds 64 KiB).
    let rel = a.add_release(&firmware("2.0.0", 56_000), 2, "2.0.0");
    a.server.repo.set_max_block_size(&rel, Some(16)).unwrap();
    let trust = a.trust();
    let b_config = config("b", &url);
    let b = TestServer::start_on(bind_udp_with(&addr, true).await.unwrap(), move |c| {
        b_config(c);
        c.trust.push(TrustAnchor::from_key(trust));
    })
    .await;
    // The kernel's hash gives the device to a or to b: that one runs the job and dies.
    let dev = Device::start(Spec::new(device::config("dev", a.coap_addr(), &trust))).await;
    let first_is_a =
        testkit::wait::until("dev to register", Duration::from_secs(10), async || match (
            a.server.registry.get("dev"),
            b.server.registry.get("dev"),
        ) {
            (Some(_), _) => Some(true),
            (_, Some(_)) => Some(false),
            _ => None,
        })
        .await;
    let (first, second) = if first_is_a { (a, b) } else { (b, a) };
    let job = first.server.jobs.start(&rel, &["dev".into()]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dev.staged_bytes() < 2048 {
        assert!(
            std::time::Instant::now() < deadline,
            "the download did not start: {:?} {:?}",
            first.server.jobs.view(job),
            dev.requests()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.shutdown();
    drop(first);
    // Killed before it saw the download end: the step the survivor resumes is the wait for
    // the Downloaded notification (else this run proves nothing, and says so).
    let at_kill = second.server.jobs.view(job).unwrap().unwrap();
    assert_eq!(
        at_kill.devices[0].step.as_str(),
        "downloading",
        "{at_kill:?} (staged {} bytes)",
        dev.staged_bytes()
    );
    let killed = std::time::Instant::now();
    let v = second.finished(job).await;
    let took = killed.elapsed();
    eprintln!(
        "the job finished {took:?} after the kill, attempts {}",
        v.devices[0].attempts
    );
    let d = &v.devices[0];
    assert_eq!(
        (v.status.as_str(), d.status.as_str()),
        ("succeeded", "succeeded"),
        "{v:?}\n{:?}",
        second
            .server
            .store
            .job_audit(job)
            .unwrap()
            .into_iter()
            .map(|a| (a.event, a.detail))
            .collect::<Vec<_>>()
    );
    assert_eq!(dev.installed_version(), "2.0.0");
    // The survivor took the dead node's observation on, and the job did not wait for the
    // download timeout (60 s) to try again: without the notification it would have.
    assert!(
        second.server.dm.observations_taken_on() >= 1,
        "no observation taken on: {:?}\n{:?}",
        second.server.store.job_audit(job).unwrap(),
        dev.requests()
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

/// A device moves between two live nodes: a node that takes a device over says so
/// (`ServerEvent::Moved`, relayed to every node), and the node that held it releases it at once,
/// not at its next sweep (60 s apart here, so only the message can explain the release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_releases_a_device_another_node_took_over_without_waiting_for_its_sweep() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.new_database();
    let slow_sweep = |name: &str| {
        let shared = on_shared_store(name, &url);
        move |c: &mut ServerConfig| {
            shared(c);
            c.expiry_sweep = Duration::from_secs(60);
        }
    };
    let a = TestServer::start(slow_sweep("a")).await;
    let b = TestServer::start(slow_sweep("b")).await;
    let mut heard_by_a = a.server.events.subscribe_remote();
    let mut heard_by_b = b.server.events.subscribe_remote();

    let mut dev = Peer::new(a.coap_addr()).await;
    let created = register_dev(&mut dev).await;
    let location = created.get_option(CoapOption::LocationPath).unwrap();
    let reg_id = String::from_utf8(location.back().unwrap().clone()).unwrap();
    assert!(a.server.registry.get("dev").is_some());

    // The device's next Update reaches b from another port (a NAT rebinding, or the kernel's
    // SO_REUSEPORT hash of its new address): b takes it over.
    let mut moved = Peer::new(b.coap_addr()).await;
    let update = moved.request(RequestType::Post, &format!("/rd/{reg_id}"), &[]);
    let changed = moved.exchange(&update).await;
    assert_eq!(
        changed.header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    assert_eq!(
        b.server.registry.get("dev").unwrap().owner_node.as_deref(),
        Some("b")
    );
    // a hears it, and lets the device go long before its sweep would.
    moved_and_released(&mut heard_by_a, &a, "a", "b").await;
    assert!(b.server.registry.get("dev").is_some());

    // The device registers anew, through a from a third port (a reboot behind a NAT): b, which
    // held it, hears that from a and lets it go as well.
    let mut rebooted = Peer::new(a.coap_addr()).await;
    register_dev(&mut rebooted).await;
    moved_and_released(&mut heard_by_b, &b, "b", "a").await;
    assert!(a.server.registry.get("dev").is_some());
}

/// Registers endpoint `dev` (lifetime 300 s, Object 5) from `peer`; the 2.01 Created.
async fn register_dev(peer: &mut Peer) -> Packet {
    let mut r = peer.request(RequestType::Post, "/rd", &["ep=dev", "lt=300"]);
    r.payload = b"</5/0>".to_vec();
    let created = peer.exchange(&r).await;
    assert_eq!(
        created.header.code,
        MessageClass::Response(ResponseType::Created)
    );
    created
}

/// Waits (at most 10 s) until node `from` hears another node's `moved` event of `dev` from
/// `from` to `to` on `heard`, and then (at most 10 s more) until `from` lets the device go.
async fn moved_and_released(
    heard: &mut broadcast::Receiver<std::sync::Arc<str>>,
    from_server: &TestServer,
    from: &str,
    to: &str,
) {
    let json = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let json = heard.recv().await.unwrap();
            if json.contains(r#""type":"moved""#) {
                return json;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{from} hears of the move within 10 s"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (&v["endpoint"], &v["from_node"], &v["to_node"]),
        (&"dev".into(), &from.into(), &to.into())
    );
    for _ in 0..100 {
        if from_server.server.registry.get("dev").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{from} still holds the device 10 s after the move");
}

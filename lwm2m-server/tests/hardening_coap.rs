//! The attacks of issue 14 that need no DTLS or OSCORE to refuse, played over real UDP on
//! loopback against a real server (an attacker is another host: `127.0.0.2`):
//!
//! - an impostor re-registers a device's endpoint while its update is in flight: the audit trail
//!   records it and the job does not succeed on the impostor's word;
//! - a forged Result 1 without a download never counts: only the server's own record of the
//!   image's last block served (or a push taken) does;
//! - registration ids cannot be guessed (the old counter formula predicts nothing), so forged
//!   Updates and De-registers find nothing;
//! - the registry cannot be filled for good: lifetimes are capped, each source may register only
//!   so fast, and expiry is one log line per sweep;
//! - endpoint names are printable UTF-8.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use support::liar::Liar;
use support::raw_peer::Peer;
use testkit::device::{self, Device, Faults, Spec};
use testkit::release::firmware;
use testkit::{TestServer, wait};

/// The attacker's host, as the server sees it.
const ELSEWHERE: &str = "127.0.0.2";

fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn payload(p: &Packet) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

/// Registers `ep` from `peer` with `query` beyond `ep=`: the answer.
async fn register(peer: &mut Peer, ep: &str, query: &[&str]) -> Packet {
    let ep = format!("ep={ep}");
    let mut q = vec![ep.as_str()];
    q.extend_from_slice(query);
    let mut r = peer.request(RequestType::Post, "/rd", &q);
    r.payload = b"</1/0>,</3/0>,</5/0>".to_vec();
    peer.exchange(&r).await
}

/// The registration id of a 2.01 answer.
fn location_id(p: &Packet) -> String {
    assert_eq!(code(p), ResponseType::Created, "{}", payload(p));
    let segs: Vec<&Vec<u8>> = p
        .get_option(CoapOption::LocationPath)
        .unwrap()
        .iter()
        .collect();
    String::from_utf8(segs[1].clone()).unwrap()
}

fn events(s: &TestServer, job: i64) -> Vec<(String, String)> {
    s.server
        .store
        .job_audit(job)
        .unwrap()
        .into_iter()
        .map(|a| (a.event, a.detail.unwrap_or_default()))
        .collect()
}

// ---- lying devices ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_result_1_without_a_download_never_counts() {
    let s = TestServer::start(|_| {}).await;
    let rel = s.add_release(&firmware("2.0.0", 3000), 2, "2.0.0");
    let liar = Liar::start(ELSEWHERE, "liar-1", s.coap_addr(), "2.0.0").await;
    s.registered("liar-1").await;
    let job = s.server.jobs.start(&rel, &["liar-1".into()]).unwrap();
    let v = s.finished(job).await;
    let d = &v.devices[0];
    assert_eq!(d.status.as_str(), "failed", "{v:?}");
    assert!(!d.image_served && d.bytes_done == 0, "{d:?}");
    let error = d.error.clone().unwrap_or_default();
    assert!(error.contains("never served"), "{error}");
    // The impostor was told to download each attempt, and claimed Downloaded each time; the
    // server never executed Update on its word.
    let trail = events(&s, job);
    assert!(liar.claims().uris.iter().any(|u| u.ends_with("/manifest")));
    for never in ["downloaded", "update-executed", "succeeded", "image-served"] {
        assert!(trail.iter().all(|(e, _)| e != never), "{never}: {trail:?}");
    }
    assert!(s.server.downloads.all().is_empty(), "nothing was fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_re_registering_during_an_update_is_audited_and_cannot_finish_it() {
    let s = TestServer::start(|_| {}).await;
    let rel = s.add_release(&firmware("2.0.0", 3000), 2, "2.0.0");
    // The real device's download never gets anywhere (its firmware requests are lost), so the
    // job is in flight for as long as the test needs.
    let real = Device::start(Spec {
        faults: Faults {
            silent_firmware_host: true,
            ..Faults::default()
        },
        ..Spec::new(device::config("victim", s.coap_addr(), &s.trust()))
    })
    .await;
    s.registered("victim").await;
    let real_addr = s.server.registry.get("victim").unwrap().address;
    let job = s.server.jobs.start(&rel, &["victim".into()]).unwrap();
    wait::until(
        "the download to start",
        Duration::from_secs(10),
        async || {
            events(&s, job)
                .iter()
                .any(|(e, _)| e == "download-started")
                .then_some(())
        },
    )
    .await;
    // The impostor takes over the endpoint from another host.
    let liar = Liar::start(ELSEWHERE, "victim", s.coap_addr(), "2.0.0").await;
    wait::until(
        "the impostor to register",
        Duration::from_secs(10),
        async || (s.server.registry.get("victim")?.address == liar.addr).then_some(()),
    )
    .await;
    let v = s.finished(job).await;
    let d = &v.devices[0];
    assert_eq!(d.status.as_str(), "failed", "{v:?}");
    assert!(!d.image_served, "{d:?}");
    let trail = events(&s, job);
    let moved: Vec<&String> = trail
        .iter()
        .filter(|(e, _)| e == "re-registered")
        .map(|(_, d)| d)
        .collect();
    assert!(
        moved
            .iter()
            .any(|d| d.contains(&liar.addr.to_string()) && d.contains(&real_addr.to_string())),
        "{trail:?}"
    );
    assert!(
        trail
            .iter()
            .all(|(e, _)| e != "succeeded" && e != "update-executed"),
        "{trail:?}"
    );
    // The audit API shows it too, in words.
    let (code, audit) = s.api("GET", &format!("/jobs/{job}/audit"), None).await;
    assert_eq!(code, 200);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["event"] == "re-registered" && a["what"] != "Event"),
        "{audit}"
    );
    assert_eq!(real.installed_version(), "1.0.0");
}

// ---- registration ids ----

/// The old scheme: `(n * 0x9E3779B97F4A7C15) >> 16` of a counter, as 12 hex digits. The id that
/// follows `id` under it (the multiplication distributes over `n + 1`).
fn old_formula_next(id: &str) -> Option<String> {
    let v = u64::from_str_radix(id, 16).ok()?;
    let step = 0x9E37_79B9_7F4A_7C15u64 >> 16;
    Some(format!("{:012x}", (v + step) & 0xFFFF_FFFF_FFFF))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_ids_cannot_be_guessed_and_forged_updates_and_deletes_fail() {
    let s = TestServer::start(|_| {}).await;
    let other = TestServer::start(|_| {}).await;
    let mut device = Peer::new(s.coap_addr()).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(location_id(
            &register(&mut device, &format!("d-{i}"), &[]).await,
        ));
    }
    let mut elsewhere = Peer::new(other.coap_addr()).await;
    let other_id = location_id(&register(&mut elsewhere, "d-0", &[]).await);
    assert!(!ids.contains(&other_id), "two servers gave the same id");
    for id in &ids {
        assert_eq!(id.len(), 12, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
    // Consecutive ids are not related by the old formula (nor would a guess from it land).
    for pair in ids.windows(2) {
        assert_ne!(
            old_formula_next(&pair[0]),
            Some(pair[1].clone()),
            "{pair:?}"
        );
    }
    // Ids use the whole alphabet, not only hex digits.
    assert!(
        ids.iter()
            .any(|id| id.chars().any(|c| !c.is_ascii_hexdigit())),
        "{ids:?}"
    );

    // The attacker saw the last id and guesses the next ones (and neighbours) from another host.
    let last = s.server.registry.get("d-19").unwrap();
    let mut attacker = Peer::bind(ELSEWHERE, s.coap_addr()).await;
    let mut guesses: Vec<String> = Vec::new();
    let mut g = last.reg_id.clone();
    for _ in 0..5 {
        if let Some(next) = old_formula_next(&g) {
            guesses.push(next.clone());
            g = next;
        }
    }
    guesses.extend(["000000000001", "aaaaaaaaaaaa", "rd"].map(String::from));
    for guess in &guesses {
        let update = attacker.request(RequestType::Post, &format!("/rd/{guess}"), &[]);
        let answer = attacker.exchange(&update).await;
        assert_eq!(code(&answer), ResponseType::NotFound, "Update of {guess:?}");
        let delete = attacker.request(RequestType::Delete, &format!("/rd/{guess}"), &[]);
        let answer = attacker.exchange(&delete).await;
        assert!(
            matches!(
                code(&answer),
                ResponseType::NotFound | ResponseType::MethodNotAllowed
            ),
            "De-register of {guess:?}: {:?}",
            code(&answer)
        );
    }
    // Every device is still registered, at its own address.
    assert_eq!(s.server.registry.len(), 20);
    let mine = device.socket.local_addr().unwrap();
    assert!(s.server.registry.all().iter().all(|r| r.address == mine));
    // And the real id still works for the real device.
    let update = device.request(RequestType::Post, &format!("/rd/{}", last.reg_id), &[]);
    assert_eq!(code(&device.exchange(&update).await), ResponseType::Changed);
}

// ---- filling the registry ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetimes_are_capped() {
    let s = TestServer::start(|c| c.registry.max_lifetime_s = 3600).await;
    let mut peer = Peer::new(s.coap_addr()).await;
    for lt in ["4294967295", "3601"] {
        let answer = register(&mut peer, "long", &[&format!("lt={lt}")]).await;
        assert_eq!(code(&answer), ResponseType::BadRequest, "lt={lt}");
        assert!(
            payload(&answer).contains("maximum, 3600 s"),
            "{}",
            payload(&answer)
        );
    }
    assert!(s.server.registry.get("long").is_none());
    let id = location_id(&register(&mut peer, "long", &["lt=3600"]).await);
    // Without `lt` the LwM2M default (86400 s) is more than this server keeps: capped.
    let id2 = location_id(&register(&mut peer, "default-lt", &[]).await);
    assert_eq!(
        s.server.registry.get("default-lt").unwrap().lifetime_s,
        3600
    );
    // An Update cannot stretch it either.
    let up = peer.request(RequestType::Post, &format!("/rd/{id}"), &["lt=86400"]);
    assert_eq!(code(&peer.exchange(&up).await), ResponseType::BadRequest);
    assert_eq!(s.server.registry.get("long").unwrap().lifetime_s, 3600);
    let up = peer.request(RequestType::Post, &format!("/rd/{id2}"), &["lt=60"]);
    assert_eq!(code(&peer.exchange(&up).await), ResponseType::Changed);
    // The default cap is one day.
    assert_eq!(
        lwm2m_server::registry::RegistryLimits::default().max_lifetime_s,
        86_400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_registers_only_so_fast_and_others_are_not_held_back() {
    let s = TestServer::start(|c| {
        c.registry.register_rate = 2;
        c.registry.register_burst = 4;
    })
    .await;
    let mut flooder = Peer::bind(ELSEWHERE, s.coap_addr()).await;
    for i in 0..4 {
        location_id(&register(&mut flooder, &format!("flood-{i}"), &[]).await);
    }
    let refused = register(&mut flooder, "flood-4", &[]).await;
    assert_eq!(code(&refused), ResponseType::TooManyRequests);
    let max_age = refused
        .get_option(CoapOption::MaxAge)
        .and_then(|v| v.front().cloned())
        .expect("Max-Age says when to try again");
    assert!(
        !max_age.is_empty() && max_age.iter().any(|b| *b > 0),
        "{max_age:?}"
    );
    assert!(s.server.registry.get("flood-4").is_none());
    // Another host registers as usual meanwhile.
    let mut device = Peer::new(s.coap_addr()).await;
    location_id(&register(&mut device, "real-1", &[]).await);
    // A new token arrives after half a second at 2/s; the flooder gets one more, not a burst.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    location_id(&register(&mut flooder, "flood-5", &[]).await);
    assert_eq!(s.server.registry.len(), 6);
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn expiry_is_logged_as_one_count_per_sweep() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = TestServer::start(|_| {}).await;
    for i in 0..40u16 {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 30_000 + i));
        s.server
            .registry
            .register(peer, &[format!("ep=exp-{i}"), "lt=1".into()], b"")
            .unwrap();
    }
    // Lifetime 1 s + 30 s grace, then a sweep (every 5 s).
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(s.server.registry.is_empty());
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("expired")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("40 registrations expired"), "{text}");
    assert!(
        !text.contains("exp-7"),
        "no line per device at INFO: {text}"
    );
}

// ---- endpoint names ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_names_must_be_printable_utf8() {
    let s = TestServer::start(|_| {}).await;
    let mut peer = Peer::new(s.coap_addr()).await;
    for bad in [
        "esc\u{1b}[2J",
        "nul\0",
        "cr\rlf\n",
        "bell\u{7}",
        "del\u{7f}",
        "c1\u{9b}",
        "rtl\u{202e}txt",
        "zero\u{200b}width",
    ] {
        let answer = register(&mut peer, bad, &[]).await;
        assert_eq!(code(&answer), ResponseType::BadRequest, "{bad:?}");
        assert!(
            payload(&answer).contains("unprintable"),
            "{}",
            payload(&answer)
        );
    }
    // Not UTF-8 at all: refused, not patched up with U+FFFD.
    let mut r = peer.request(RequestType::Post, "/rd", &[]);
    r.add_option(CoapOption::UriQuery, b"ep=bad\xff\xfe".to_vec());
    let answer = peer.exchange(&r).await;
    assert_eq!(code(&answer), ResponseType::BadRequest);
    assert!(
        payload(&answer).contains("not UTF-8"),
        "{}",
        payload(&answer)
    );
    assert!(s.server.registry.is_empty());
    // Printable names in any script are fine.
    location_id(&register(&mut peer, "capteur-été-雪-1", &[]).await);
}

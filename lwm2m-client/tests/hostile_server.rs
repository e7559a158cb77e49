//! The downloader against a broken or hostile CoAP server, over real UDP on loopback: a small
//! Block2 server in this file answers 5.03 Service Unavailable, another block number than asked,
//! a block past the end, a Size2 that is not the representation's, a Block2 option that does not
//! decode, or a new ETag on every block. Each used to hang a download for good or loop without
//! end (a 5.03 or a wrong block number left the block never asked again; an ETag changing on every
//! block restarted the download hundreds of thousands of times).
//!
//! Checked: a download that meets a fault a few times asks again and completes byte-exact (a 5.03
//! not before its Max-Age); one that meets it on every answer ends with Result 4 in bounded time
//! and requests; and, on the engine, an ETag that changes on every block restarts the download
//! at most twice, erases no page of the staging slot more than three times and programs no flash
//! word twice.
#![cfg(feature = "std")]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lwm2m_client::firmware::download::RetryPolicy;
use lwm2m_client::firmware::fetch::{Fetch, FetchConfig};
use lwm2m_client::host::{self, Clock};
use lwm2m_core::object5::UpdateResult;
use support::coap::{self, Msg, opt};
use support::device;
use support::platform::RamPlatform;
use testkit::release;
use tokio::net::UdpSocket;

const MAX_AGE: u16 = 14;
const SERVICE_UNAVAILABLE: u8 = coap::code(5, 3);

/// What the server does wrong.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// 5.03 Service Unavailable with Max-Age 1 s.
    Busy,
    /// The block after the one asked for.
    WrongNumber,
    /// A block that starts past the end of the representation.
    PastEnd,
    /// Size2 one byte longer than the representation.
    Size2Change,
    /// A Block2 option of 4 bytes (at most 3 are legal), the right token.
    Garbage,
    /// A new ETag on every answer.
    NewEtag,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    mid: u16,
    num: u32,
    szx: u8,
    faulted: bool,
    at: Instant,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    /// Per path: the fault and how many answers get it (None: all).
    faults: HashMap<String, (Fault, Option<usize>)>,
    faulted: HashMap<String, usize>,
    /// Answers given per path (an ETag counter for NewEtag).
    answers: HashMap<String, u32>,
    log: Vec<Seen>,
}

struct Hostile {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    async fn start(files: &[(&str, &[u8])]) -> Hostile {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let mut state = State::default();
        for (path, body) in files {
            state.files.insert((*path).into(), body.to_vec());
        }
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Msg::decode(&buf[..n]) else {
                    continue;
                };
                if req.code != coap::GET {
                    continue;
                }
                let reply = answer(&mut shared.lock().unwrap(), &req);
                let _ = sock.send_to(&reply, from).await;
            }
        });
        Hostile { addr, state, task }
    }

    fn fault(&self, path: &str, fault: Fault, times: Option<usize>) {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert(path.into(), (fault, times));
    }

    fn uri(&self, path: &str) -> String {
        format!("coap://{}/{path}", self.addr)
    }

    fn log(&self, path: &str) -> Vec<Seen> {
        let s = self.state.lock().unwrap();
        s.log.iter().filter(|q| q.path == path).cloned().collect()
    }

    /// Exchanges (distinct message ids) for `path`.
    fn exchanges(&self, path: &str) -> usize {
        let mut mids: Vec<u16> = self.log(path).iter().map(|q| q.mid).collect();
        mids.sort();
        mids.dedup();
        mids.len()
    }
}

fn answer(s: &mut State, req: &Msg) -> Vec<u8> {
    let path = req.path();
    let (num, _, szx) = req
        .opt(opt::BLOCK2)
        .map_or((0, false, 6), coap::parse_block);
    let body = s.files.get(&path).cloned().unwrap_or_default();
    let done = s.faulted.get(&path).copied().unwrap_or(0);
    let fault = s
        .faults
        .get(&path)
        .copied()
        .filter(|(_, times)| times.is_none_or(|t| done < t))
        .map(|(f, _)| f);
    if fault.is_some() {
        *s.faulted.entry(path.clone()).or_default() += 1;
    }
    let count = s.answers.entry(path.clone()).or_default();
    *count += 1;
    let etag = if fault == Some(Fault::NewEtag) {
        count.to_be_bytes().to_vec()
    } else {
        vec![0xe7]
    };
    s.log.push(Seen {
        path,
        mid: req.mid,
        num,
        szx,
        faulted: fault.is_some(),
        at: Instant::now(),
    });
    if fault == Some(Fault::Busy) {
        return Msg::new(coap::ACK, SERVICE_UNAVAILABLE, req.mid, &req.token)
            .with_uint(MAX_AGE, 1)
            .encode();
    }
    let size = 16usize << szx;
    let served = match fault {
        Some(Fault::WrongNumber) => num + 1,
        Some(Fault::PastEnd) => (body.len() / size + 1) as u32,
        _ => num,
    };
    let start = (served as usize * size).min(body.len());
    let end = (start + size).min(body.len());
    let more = end < body.len() || fault == Some(Fault::PastEnd);
    let block = if fault == Some(Fault::Garbage) {
        vec![0xff, 0xff, 0xff, 0xff]
    } else {
        coap::block(served, more, szx)
    };
    let mut r = Msg::new(coap::ACK, coap::CONTENT, req.mid, &req.token)
        .with_opt(opt::ETAG, &etag)
        .with_opt(opt::BLOCK2, &block);
    let size2 = body.len() as u32 + u32::from(fault == Some(Fault::Size2Change));
    if req.opt(opt::SIZE2).is_some() || fault == Some(Fault::Size2Change) {
        r = r.with_uint(opt::SIZE2, size2);
    }
    let payload = if fault == Some(Fault::PastEnd) {
        vec![0u8; size]
    } else {
        body[start..end].to_vec()
    };
    r.with_payload(&payload).encode()
}

/// Fetches `uri` with the device's downloader over UDP; (outcome, bytes, wall time).
async fn fetch(uri: &str, retry: RetryPolicy) -> (Result<u32, UpdateResult>, Vec<u8>, Duration) {
    let cfg = FetchConfig {
        retry,
        ..FetchConfig::default()
    };
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let clock = Clock::new();
    let started = Instant::now();
    let mut f = Fetch::new(uri, &cfg, clock.now()).unwrap();
    let mut got = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        host::fetch(&mut f, &socket, &clock, |offset, bytes| {
            let end = offset as usize + bytes.len();
            if got.len() < end {
                got.resize(end, 0);
            }
            got[offset as usize..end].copy_from_slice(bytes);
            Ok(())
        }),
    )
    .await
    .expect("the fetch ends: no download hangs");
    (outcome, got, started.elapsed())
}

/// Setbacks wait at most 1 s, so that a server that never gets it right ends a test soon.
fn short_waits() -> RetryPolicy {
    RetryPolicy {
        backoff_cap: lwm2m_client::time::Duration::from_secs(1),
        ..RetryPolicy::default()
    }
}

const FAULTS: [Fault; 5] = [
    Fault::Busy,
    Fault::WrongNumber,
    Fault::PastEnd,
    Fault::Size2Change,
    Fault::Garbage,
];

#[tokio::test]
async fn a_fault_met_a_few_times_is_asked_again_and_the_fetch_completes_byte_exact() {
    let image = release::image(5000, 41);
    for fault in FAULTS {
        let server = Hostile::start(&[("fw/image", &image)]).await;
        server.fault("fw/image", fault, Some(3));
        let (outcome, got, took) = fetch(&server.uri("fw/image"), short_waits()).await;
        assert_eq!(outcome, Ok(5000), "{fault:?}");
        assert!(got == image, "{fault:?}: byte-exact");
        let log = server.log("fw/image");
        // Every faulted block was asked for again afterwards (but for a wrong Size2 before the
        // length was known: the fetch learns it, and learns again when the last block disagrees).
        let checked = log.iter().enumerate().filter(|(_, q)| q.faulted);
        for (i, q) in checked.filter(|_| fault != Fault::Size2Change) {
            let (from, to) = (q.num * (16 << q.szx), (q.num + 1) * (16 << q.szx));
            assert!(
                log[i + 1..].iter().any(|later| {
                    let start = later.num * (16 << later.szx);
                    !later.faulted && start < to && from < start + (16 << later.szx)
                }),
                "{fault:?}: block {} asked again",
                q.num
            );
        }
        if fault == Fault::Busy {
            // Not before Max-Age (1 s) after the first 5.03.
            let first = log.iter().position(|q| q.faulted).unwrap();
            let next = log.iter().skip(first).find(|q| !q.faulted).unwrap();
            assert!(
                next.at - log[first].at >= Duration::from_millis(950),
                "asked again after {:?}",
                next.at - log[first].at
            );
            assert!(took >= Duration::from_millis(950));
        }
    }
}

#[tokio::test]
async fn a_server_that_never_gets_it_right_ends_the_fetch_with_result_4_in_bounded_time() {
    let image = release::image(5000, 42);
    for fault in FAULTS.into_iter().chain([Fault::NewEtag]) {
        let server = Hostile::start(&[("fw/image", &image)]).await;
        server.fault("fw/image", fault, None);
        let (outcome, _, took) = fetch(&server.uri("fw/image"), short_waits()).await;
        assert_eq!(
            outcome,
            Err(UpdateResult::ConnectionLost),
            "{fault:?} on every answer"
        );
        let exchanges = server.exchanges("fw/image");
        assert!(
            exchanges < 120,
            "{fault:?}: {exchanges} requests before giving up"
        );
        assert!(took < Duration::from_secs(30), "{fault:?}: {took:?}");
    }
}

/// The engine, over UDP, pulls the release from `server` (manifest at fw/m, image at fw/i):
/// the scripted LwM2M server writes the Package URI and polls until the download ends.
async fn engine_pull(server: &Hostile, key: &p256::ecdsa::SigningKey) -> ((u8, u8), RamPlatform) {
    let (mut lw, dev, at) = device::udp_device_told_to_pull(key, &server.uri("fw/m")).await;
    // Polls until State is no longer Downloading (1).
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let status = lw.object5(at).await;
        if status.0 != 1 || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stopped = dev.stop().await;
    (status, stopped.platform())
}

/// The signed envelope of `image` at `i`, next to the manifest.
fn envelope(key: &p256::ecdsa::SigningKey, image: &[u8]) -> Vec<u8> {
    release::envelope(key, image, 2, "i")
}

#[tokio::test]
async fn the_engine_rides_out_a_5_03_and_wrong_block_numbers() {
    let image = release::image(9000, 43);
    let key = release::key();
    let envelope = envelope(&key, &image);
    for fault in [Fault::Busy, Fault::WrongNumber] {
        let server = Hostile::start(&[("fw/m", &envelope), ("fw/i", &image)]).await;
        server.fault("fw/i", fault, Some(3));
        let ((state, result), platform) = engine_pull(&server, &key).await;
        assert_eq!((state, result), (2, 0), "{fault:?}: Downloaded");
        assert!(platform.staged(image.len()) == image, "{fault:?}");
        assert_eq!(platform.reprogrammed_words, 0);
        assert_eq!(platform.max_erases(), 1, "{fault:?}: {:?}", platform.erases);
    }
}

#[tokio::test]
async fn an_etag_that_changes_on_every_block_ends_with_result_4_and_bounded_flash_wear() {
    let image = release::image(20_000, 44);
    let key = release::key();
    let envelope = envelope(&key, &image);
    let server = Hostile::start(&[("fw/m", &envelope), ("fw/i", &image)]).await;
    server.fault("fw/i", Fault::NewEtag, None);
    let started = Instant::now();
    let ((state, result), platform) = engine_pull(&server, &key).await;
    assert_eq!(
        (state, result),
        (0, UpdateResult::ConnectionLost as u8),
        "Idle, Result 4"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The first ETag, then two restarts: every page erased at most once per start.
    assert!(
        platform.max_erases() <= 3,
        "erases per page: {:?}",
        platform.erases
    );
    assert_eq!(platform.reprogrammed_words, 0);
    let exchanges = server.exchanges("fw/i");
    assert!(exchanges < 100, "{exchanges} image requests");
    // And the record no longer holds the download.
    assert!(platform.record.unwrap().download.is_none());
}

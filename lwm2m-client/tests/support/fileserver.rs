//! A scripted CoAP file server with Block2 (RFC 7959) that the test can steer while it runs:
//! per-path bodies and ETags, an ETag that changes after N answered blocks, smaller blocks than
//! asked (late negotiation), an error code for a path, or silence (a host that stops answering).
//! Every request is logged.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::coap::{self, Msg, opt};
use super::net::{Link, Transport};

/// One GET as the server saw it.
#[derive(Clone, Debug)]
pub struct Req {
    pub path: String,
    pub mid: u16,
    pub token: Vec<u8>,
    /// Block2 NUM and SZX asked for (0 and None without Block2).
    pub num: u32,
    pub szx: Option<u8>,
    /// Size2 was in the request.
    pub size2: bool,
    /// Whether it was answered, and with which ETag.
    pub answered: bool,
    pub etag: Vec<u8>,
    pub at: Instant,
}

impl Req {
    /// Byte offset asked for.
    pub fn offset(&self) -> u64 {
        u64::from(self.num) * (16u64 << self.szx.unwrap_or(6))
    }

    /// The bytes asked for.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset()..self.offset() + (16u64 << self.szx.unwrap_or(6))
    }
}

#[derive(Default)]
pub struct Behaviour {
    pub files: HashMap<String, Vec<u8>>,
    /// ETag per path (default: none).
    pub etags: HashMap<String, Vec<u8>>,
    /// (path, after this many answered requests of the path, the new ETag).
    pub etag_switch: Option<(String, usize, Vec<u8>)>,
    /// Answer with this code instead (e.g. 4.04).
    pub status: HashMap<String, u8>,
    /// Paths that get no answer at all.
    pub silent: HashSet<String>,
    /// Answer at most this many requests of the path, then fall silent.
    pub answer_limit: HashMap<String, usize>,
    /// Leave every n-th request of the path unanswered (a deterministic lossy link: the blocks
    /// after it arrive first, and the hole is filled later).
    pub drop_every: HashMap<String, usize>,
    /// Requests received so far per path.
    pub received: HashMap<String, usize>,
    /// Serve blocks of at most 2^(szx+4) bytes, whatever the client asked.
    pub max_szx: Option<u8>,
    /// Requests answered so far per path.
    pub answered: HashMap<String, usize>,
}

pub struct FileServer {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Req>>>,
    pub ctl: Arc<Mutex<Behaviour>>,
    task: JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    pub async fn start(link: &Link, files: &[(&str, &[u8])]) -> FileServer {
        let sock = link.bind().await;
        let addr = sock.local_addr();
        let mut b = Behaviour::default();
        for (p, body) in files {
            b.files.insert((*p).to_string(), body.to_vec());
            b.etags.insert((*p).to_string(), vec![0xe1, p.len() as u8]);
        }
        let ctl = Arc::new(Mutex::new(b));
        let log = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(sock, ctl.clone(), log.clone()));
        FileServer {
            addr,
            log,
            ctl,
            task,
        }
    }

    pub fn uri(&self, path: &str) -> String {
        format!("coap://{}/{path}", self.addr)
    }

    /// The logged requests for `path`.
    pub fn requests(&self, path: &str) -> Vec<Req> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Block numbers asked for `path`, one per exchange (retransmissions, same message id, once).
    pub fn blocks(&self, path: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut last_mid = None;
        for r in self.requests(path) {
            if last_mid != Some(r.mid) {
                out.push(r.num);
            }
            last_mid = Some(r.mid);
        }
        out
    }

    /// One request per exchange for `path` (its first transmission), in order.
    pub fn exchanges(&self, path: &str) -> Vec<Req> {
        let mut seen = HashSet::new();
        self.requests(path)
            .into_iter()
            .filter(|r| seen.insert(r.mid))
            .collect()
    }

    /// Whether the requests in `reqs` asked, together, for every byte of `0..len`.
    pub fn cover(reqs: &[Req], len: u64) -> bool {
        let mut ranges: Vec<_> = reqs.iter().map(Req::range).collect();
        ranges.sort_by_key(|r| r.start);
        let mut reached = 0;
        for r in ranges {
            if r.start > reached {
                return false;
            }
            reached = reached.max(r.end);
        }
        reached >= len
    }

    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.ctl.lock().unwrap());
    }
}

async fn serve(sock: Transport, ctl: Arc<Mutex<Behaviour>>, log: Arc<Mutex<Vec<Req>>>) {
    loop {
        let Some((raw, from)) = sock.recv_from().await else {
            return;
        };
        let Ok(m) = Msg::decode(&raw) else {
            continue;
        };
        if m.code != coap::GET {
            continue;
        }
        let path = m.path();
        let (num, szx) = match m.opt(opt::BLOCK2) {
            Some(v) => {
                let (num, _, szx) = coap::parse_block(v);
                (num, Some(szx))
            }
            None => (0, None),
        };
        let mut req = Req {
            path: path.clone(),
            mid: m.mid,
            token: m.token.clone(),
            num,
            szx,
            size2: m.opt(opt::SIZE2).is_some(),
            answered: false,
            etag: Vec::new(),
            at: Instant::now(),
        };
        let reply = {
            let mut b = ctl.lock().unwrap();
            answer(&mut b, &m, &mut req)
        };
        log.lock().unwrap().push(req);
        if let Some(r) = reply {
            sock.send_to(&r.encode(), from).await;
        }
    }
}

fn answer(b: &mut Behaviour, m: &Msg, req: &mut Req) -> Option<Msg> {
    let path = &req.path;
    if b.silent.contains(path) {
        return None;
    }
    let received = b.received.entry(path.clone()).or_default();
    *received += 1;
    if b.drop_every.get(path).is_some_and(|&n| *received % n == 0) {
        return None;
    }
    let answered = b.answered.get(path).copied().unwrap_or(0);
    if b.answer_limit.get(path).is_some_and(|&l| answered >= l) {
        return None;
    }
    let ty = if m.ty == coap::CON {
        coap::ACK
    } else {
        coap::NON
    };
    let reply = Msg::new(ty, coap::CONTENT, m.mid, &m.token);
    req.answered = true;
    *b.answered.entry(path.clone()).or_default() += 1;
    if let Some(&code) = b.status.get(path) {
        return Some(Msg::new(ty, code, m.mid, &m.token));
    }
    let Some(body) = b.files.get(path) else {
        return Some(Msg::new(ty, coap::NOT_FOUND, m.mid, &m.token));
    };
    let mut etag = b.etags.get(path).cloned().unwrap_or_default();
    if let Some((p, after, new)) = &b.etag_switch {
        if p == path && answered >= *after {
            etag = new.clone();
        }
    }
    let asked = req.szx.unwrap_or(6);
    let szx = asked.min(b.max_szx.unwrap_or(7)).min(6);
    let size = 16usize << szx;
    let offset = req.num as usize * (16usize << asked);
    if offset > body.len() || (offset == body.len() && offset > 0) {
        return Some(Msg::new(ty, coap::BAD_OPTION, m.mid, &m.token));
    }
    let end = (offset + size).min(body.len());
    let more = end < body.len();
    let mut r = reply;
    if !etag.is_empty() {
        r = r.with_opt(opt::ETAG, &etag);
    }
    r = r
        .with_uint(opt::CONTENT_FORMAT, 42)
        .with_opt(opt::BLOCK2, &coap::block((offset / size) as u32, more, szx));
    if req.size2 {
        r = r.with_uint(opt::SIZE2, body.len() as u32);
    }
    req.etag = etag;
    Some(r.with_payload(&body[offset..end]))
}

//! A small CoAP codec (RFC 7252 §3) for the test peers, written independently of lwm2m-core's so
//! that the engine's encoder and decoder are checked against a second reading of the RFC rather
//! than against themselves.

use std::fmt;

pub const CON: u8 = 0;
pub const NON: u8 = 1;
pub const ACK: u8 = 2;
pub const RST: u8 = 3;

pub const fn code(class: u8, detail: u8) -> u8 {
    (class << 5) | detail
}

pub const EMPTY: u8 = 0;
pub const GET: u8 = code(0, 1);
pub const POST: u8 = code(0, 2);
pub const PUT: u8 = code(0, 3);
pub const CREATED: u8 = code(2, 1);
pub const CHANGED: u8 = code(2, 4);
pub const CONTENT: u8 = code(2, 5);
pub const BAD_REQUEST: u8 = code(4, 0);
pub const BAD_OPTION: u8 = code(4, 2);
pub const NOT_FOUND: u8 = code(4, 4);
pub const METHOD_NOT_ALLOWED: u8 = code(4, 5);

pub mod opt {
    pub const ETAG: u16 = 4;
    pub const OBSERVE: u16 = 6;
    pub const LOCATION_PATH: u16 = 8;
    pub const URI_PATH: u16 = 11;
    pub const CONTENT_FORMAT: u16 = 12;
    pub const URI_QUERY: u16 = 15;
    pub const BLOCK2: u16 = 23;
    pub const SIZE2: u16 = 28;
}

/// "2.05" for 0x45.
pub fn code_str(c: u8) -> String {
    format!("{}.{:02}", c >> 5, c & 0x1f)
}

/// A decoded (owned) message.
#[derive(Clone, PartialEq, Eq)]
pub struct Msg {
    pub ty: u8,
    pub code: u8,
    pub mid: u16,
    pub token: Vec<u8>,
    /// Options in the order of the datagram (ascending numbers).
    pub opts: Vec<(u16, Vec<u8>)>,
    pub payload: Vec<u8>,
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = ["CON", "NON", "ACK", "RST"][usize::from(self.ty & 3)];
        write!(
            f,
            "{ty} {} mid={:#06x} tok={:02x?} path={:?}",
            code_str(self.code),
            self.mid,
            self.token,
            self.path()
        )?;
        for (n, v) in &self.opts {
            if *n != opt::URI_PATH {
                write!(f, " o{n}={v:02x?}")?;
            }
        }
        if !self.payload.is_empty() {
            write!(f, " payload[{}]", self.payload.len())?;
            if let Ok(s) = std::str::from_utf8(&self.payload) {
                if self.payload.len() <= 64 {
                    write!(f, "={s:?}")?;
                }
            }
        }
        Ok(())
    }
}

/// The shortest big-endian encoding of an unsigned option value (0 is the empty string).
pub fn uint_bytes(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count();
    b[skip..].to_vec()
}

pub fn uint_of(v: &[u8]) -> u32 {
    v.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
}

/// A Block1/Block2 value (RFC 7959 §2.2).
pub fn block(num: u32, more: bool, szx: u8) -> Vec<u8> {
    uint_bytes((num << 4) | (u32::from(more) << 3) | u32::from(szx))
}

/// (NUM, M, SZX) of a block option value.
pub fn parse_block(v: &[u8]) -> (u32, bool, u8) {
    let x = uint_of(v);
    (x >> 4, x & 8 != 0, (x & 7) as u8)
}

fn ext(v: usize) -> (u8, Vec<u8>) {
    if v < 13 {
        (v as u8, vec![])
    } else if v < 269 {
        (13, vec![(v - 13) as u8])
    } else {
        (14, ((v - 269) as u16).to_be_bytes().to_vec())
    }
}

impl Msg {
    pub fn new(ty: u8, code: u8, mid: u16, token: &[u8]) -> Msg {
        Msg {
            ty,
            code,
            mid,
            token: token.to_vec(),
            opts: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// An empty ACK or RST for `mid`.
    pub fn empty(ty: u8, mid: u16) -> Msg {
        Msg::new(ty, EMPTY, mid, &[])
    }

    pub fn with_opt(mut self, n: u16, v: &[u8]) -> Msg {
        self.opts.push((n, v.to_vec()));
        self
    }

    pub fn with_uint(self, n: u16, v: u32) -> Msg {
        self.with_opt(n, &uint_bytes(v))
    }

    /// Uri-Path options from "a/b/c".
    pub fn with_path(mut self, path: &str) -> Msg {
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            self = self.with_opt(opt::URI_PATH, seg.as_bytes());
        }
        self
    }

    pub fn with_payload(mut self, p: &[u8]) -> Msg {
        self.payload = p.to_vec();
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        assert!(self.token.len() <= 8);
        let mut out = vec![
            (1 << 6) | (self.ty << 4) | self.token.len() as u8,
            self.code,
            (self.mid >> 8) as u8,
            self.mid as u8,
        ];
        out.extend_from_slice(&self.token);
        let mut opts = self.opts.clone();
        opts.sort_by_key(|(n, _)| *n); // stable: repeated options keep their order
        let mut last = 0u16;
        for (n, v) in &opts {
            let (dn, dx) = ext(usize::from(n - last));
            let (ln, lx) = ext(v.len());
            out.push((dn << 4) | ln);
            out.extend(dx);
            out.extend(lx);
            out.extend_from_slice(v);
            last = *n;
        }
        if !self.payload.is_empty() {
            out.push(0xff);
            out.extend_from_slice(&self.payload);
        }
        out
    }

    pub fn decode(d: &[u8]) -> Result<Msg, String> {
        if d.len() < 4 {
            return Err("short".into());
        }
        if d[0] >> 6 != 1 {
            return Err("version".into());
        }
        let tkl = usize::from(d[0] & 0xf);
        if tkl > 8 || d.len() < 4 + tkl {
            return Err("token".into());
        }
        let mut m = Msg::new(
            (d[0] >> 4) & 3,
            d[1],
            u16::from_be_bytes([d[2], d[3]]),
            &d[4..4 + tkl],
        );
        let mut i = 4 + tkl;
        let mut number = 0u32;
        while i < d.len() {
            if d[i] == 0xff {
                if i + 1 >= d.len() {
                    return Err("marker without payload".into());
                }
                m.payload = d[i + 1..].to_vec();
                break;
            }
            let (dn, ln) = (d[i] >> 4, d[i] & 0xf);
            i += 1;
            let mut read = |nib: u8| -> Result<usize, String> {
                Ok(match nib {
                    13 => {
                        let v = *d.get(i).ok_or("ext")? as usize + 13;
                        i += 1;
                        v
                    }
                    14 => {
                        let b = d.get(i..i + 2).ok_or("ext")?;
                        i += 2;
                        u16::from_be_bytes([b[0], b[1]]) as usize + 269
                    }
                    15 => return Err("reserved nibble".into()),
                    n => n as usize,
                })
            };
            let delta = read(dn)?;
            let len = read(ln)?;
            number += delta as u32;
            let v = d.get(i..i + len).ok_or("option value")?;
            i += len;
            m.opts
                .push((u16::try_from(number).map_err(|_| "number")?, v.to_vec()));
        }
        Ok(m)
    }

    pub fn opt(&self, n: u16) -> Option<&[u8]> {
        self.opts
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_slice())
    }

    pub fn opt_all(&self, n: u16) -> Vec<&[u8]> {
        self.opts
            .iter()
            .filter(|(k, _)| *k == n)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    pub fn uint(&self, n: u16) -> Option<u32> {
        self.opt(n).map(uint_of)
    }

    /// Uri-Path joined with '/'.
    pub fn path(&self) -> String {
        self.opt_all(opt::URI_PATH)
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }

    pub fn is_request(&self) -> bool {
        self.code != 0 && self.code >> 5 == 0
    }

    pub fn is_response(&self) -> bool {
        self.code >> 5 >= 2
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

#[test]
fn the_test_codec_round_trips() {
    let m = Msg::new(CON, GET, 0x1234, &[1, 2, 3])
        .with_path("fw/0123456789abcdef/image")
        .with_opt(opt::BLOCK2, &block(1000, true, 2))
        .with_uint(opt::SIZE2, 0)
        .with_opt(300, &[7; 20])
        .with_payload(b"x");
    let d = Msg::decode(&m.encode()).unwrap();
    assert_eq!(d, m);
    assert_eq!(parse_block(d.opt(opt::BLOCK2).unwrap()), (1000, true, 2));
    assert_eq!(d.uint(opt::SIZE2), Some(0));
}

//! The messages between the simulator (the medium and the clock) and one node process, framed on
//! the node's stdin and stdout: a little-endian `u32` length, then the message. The simulator owns
//! time: a node runs only between an [`ToNode::Go`] and its [`FromNode::Idle`] answer, so every
//! node sees the same virtual clock and a run is the same every time.

use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, SocketAddrV6};

/// Largest message either way (an 802.15.4 frame, or a UDP datagram with its addresses).
pub const MAX_MESSAGE: usize = 4096;

/// From the simulator to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToNode {
    /// The clock reads this many microseconds since the start; timers due fire.
    Advance(u64),
    /// A frame (PSDU, FCS included) arrives on the node's radio now.
    Frame(Vec<u8>),
    /// The border router's uplink delivers a datagram from the server to send into the mesh.
    Downlink(Datagram),
    /// Answer with a [`FromNode::Status`] (between two batches).
    Query,
    /// The answer to a [`FromNode::Tx`]: whether the channel was clear, and the frame's airtime.
    TxResult { clear: bool, airtime_us: u32 },
    /// End of the batch: run until idle, then answer [`FromNode::Idle`].
    Go,
    /// Exit now.
    Quit,
}

/// From a node to the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromNode {
    /// Put this frame on the air now (after a clear channel assessment if `cca`); the node waits
    /// for the [`ToNode::TxResult`].
    Tx { cca: bool, psdu: Vec<u8> },
    /// The border router received a datagram for the server from the mesh.
    Uplink(Datagram),
    /// The node's state, as JSON (see `status.rs`).
    Status(String),
    /// Nothing to do until this time (microseconds since the start), or until a frame arrives.
    Idle { next: Option<u64> },
}

/// A UDP datagram crossing the border router.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Datagram {
    pub from: SocketAddrV6,
    pub to: SocketAddrV6,
    pub payload: Vec<u8>,
}

fn put_addr(out: &mut Vec<u8>, a: &SocketAddrV6) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_le_bytes());
}

fn put_datagram(out: &mut Vec<u8>, d: &Datagram) {
    put_addr(out, &d.from);
    put_addr(out, &d.to);
    out.extend_from_slice(&d.payload);
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed {what} message"),
    )
}

fn take_addr(body: &[u8]) -> Option<(SocketAddrV6, &[u8])> {
    let ip: [u8; 16] = body.get(..16)?.try_into().ok()?;
    let port = u16::from_le_bytes(body.get(16..18)?.try_into().ok()?);
    Some((
        SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0),
        body.get(18..)?,
    ))
}

fn take_datagram(body: &[u8]) -> io::Result<Datagram> {
    let (from, rest) = take_addr(body).ok_or_else(|| bad("datagram"))?;
    let (to, payload) = take_addr(rest).ok_or_else(|| bad("datagram"))?;
    Ok(Datagram {
        from,
        to,
        payload: payload.to_vec(),
    })
}

fn take_u64(body: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(..8)?.try_into().ok()?))
}

impl ToNode {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ToNode::Advance(t) => {
                out.push(0);
                out.extend_from_slice(&t.to_le_bytes());
            }
            ToNode::Frame(psdu) => {
                out.push(1);
                out.extend_from_slice(psdu);
            }
            ToNode::Downlink(d) => {
                out.push(2);
                put_datagram(&mut out, d);
            }
            ToNode::Query => out.push(3),
            ToNode::TxResult { clear, airtime_us } => {
                out.push(4);
                out.push(u8::from(*clear));
                out.extend_from_slice(&airtime_us.to_le_bytes());
            }
            ToNode::Go => out.push(5),
            ToNode::Quit => out.push(6),
        }
        out
    }

    fn decode(body: &[u8]) -> io::Result<ToNode> {
        let (&kind, rest) = body.split_first().ok_or_else(|| bad("empty"))?;
        Ok(match kind {
            0 => ToNode::Advance(take_u64(rest).ok_or_else(|| bad("advance"))?),
            1 => ToNode::Frame(rest.to_vec()),
            2 => ToNode::Downlink(take_datagram(rest)?),
            3 => ToNode::Query,
            4 => {
                let clear = *rest.first().ok_or_else(|| bad("tx result"))? != 0;
                let airtime = rest.get(1..5).ok_or_else(|| bad("tx result"))?;
                ToNode::TxResult {
                    clear,
                    airtime_us: u32::from_le_bytes(airtime.try_into().map_err(|_| bad("tx"))?),
                }
            }
            5 => ToNode::Go,
            6 => ToNode::Quit,
            _ => return Err(bad("unknown")),
        })
    }
}

impl FromNode {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            FromNode::Tx { cca, psdu } => {
                out.push(0);
                out.push(u8::from(*cca));
                out.extend_from_slice(psdu);
            }
            FromNode::Uplink(d) => {
                out.push(1);
                put_datagram(&mut out, d);
            }
            FromNode::Status(json) => {
                out.push(2);
                out.extend_from_slice(json.as_bytes());
            }
            FromNode::Idle { next } => {
                out.push(3);
                out.extend_from_slice(&next.unwrap_or(u64::MAX).to_le_bytes());
            }
        }
        out
    }

    fn decode(body: &[u8]) -> io::Result<FromNode> {
        let (&kind, rest) = body.split_first().ok_or_else(|| bad("empty"))?;
        Ok(match kind {
            0 => {
                let (&cca, psdu) = rest.split_first().ok_or_else(|| bad("tx"))?;
                FromNode::Tx {
                    cca: cca != 0,
                    psdu: psdu.to_vec(),
                }
            }
            1 => FromNode::Uplink(take_datagram(rest)?),
            2 => FromNode::Status(String::from_utf8(rest.to_vec()).map_err(|_| bad("status"))?),
            3 => {
                let t = take_u64(rest).ok_or_else(|| bad("idle"))?;
                FromNode::Idle {
                    next: (t != u64::MAX).then_some(t),
                }
            }
            _ => return Err(bad("unknown")),
        })
    }
}

fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| bad("oversized"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn read_frame(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(bad("oversized"));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Writes a message to a node.
pub fn send_to_node(w: &mut impl Write, m: &ToNode) -> io::Result<()> {
    write_frame(w, &m.encode())
}

/// Reads a message from the simulator.
pub fn recv_to_node(r: &mut impl Read) -> io::Result<ToNode> {
    ToNode::decode(&read_frame(r)?)
}

/// Writes a message to the simulator.
pub fn send_from_node(w: &mut impl Write, m: &FromNode) -> io::Result<()> {
    write_frame(w, &m.encode())
}

/// Reads a message from a node.
pub fn recv_from_node(r: &mut impl Read) -> io::Result<FromNode> {
    FromNode::decode(&read_frame(r)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u16, port: u16) -> SocketAddrV6 {
        SocketAddrV6::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last), port, 0, 0)
    }

    #[test]
    fn every_message_round_trips() {
        let d = Datagram {
            from: addr(7, 5683),
            to: addr(1, 5683),
            payload: vec![0x40, 1, 2, 3],
        };
        let to = [
            ToNode::Advance(123_456_789),
            ToNode::Frame(vec![0x41, 0x88, 1]),
            ToNode::Downlink(d.clone()),
            ToNode::Query,
            ToNode::TxResult {
                clear: true,
                airtime_us: 4064,
            },
            ToNode::Go,
            ToNode::Quit,
        ];
        for m in to {
            let mut buf = Vec::new();
            send_to_node(&mut buf, &m).unwrap();
            assert_eq!(recv_to_node(&mut buf.as_slice()).unwrap(), m);
        }
        let from = [
            FromNode::Tx {
                cca: true,
                psdu: vec![1, 2, 3],
            },
            FromNode::Uplink(d),
            FromNode::Status("{\"role\":\"child\"}".into()),
            FromNode::Idle { next: Some(42) },
            FromNode::Idle { next: None },
        ];
        for m in from {
            let mut buf = Vec::new();
            send_from_node(&mut buf, &m).unwrap();
            assert_eq!(recv_from_node(&mut buf.as_slice()).unwrap(), m);
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for body in [&[][..], &[0, 1, 2][..], &[2, 0, 0][..], &[4][..], &[9][..]] {
            let mut framed = (body.len() as u32).to_le_bytes().to_vec();
            framed.extend_from_slice(body);
            assert!(recv_to_node(&mut framed.as_slice()).is_err(), "{body:?}");
        }
        // A length beyond any message is refused before reading it.
        let huge = (MAX_MESSAGE as u32 + 1).to_le_bytes();
        assert!(recv_from_node(&mut huge.as_slice()).is_err());
        // A truncated frame.
        assert!(recv_from_node(&mut [5, 0, 0, 0, 3].as_slice()).is_err());
    }
}

//! Block1 reassembly for small request bodies in the server role (RFC 7959 §2.5), such as a
//! registration payload. Keyed by peer, method and URI (path + query), not by token: clients
//! may use a new token for every block.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, Packet, ResponseType};
use lwm2m_core::block::BlockValue;
use lwm2m_core::coap::params;

use super::{block1, set_block1, set_uint_option, uint_option};
use crate::coap::wire::{self, new_response};

#[derive(Debug, Clone)]
pub struct Block1ReceiverConfig {
    /// Largest body accepted; beyond it 4.13 with Size1 = this limit.
    pub max_body: usize,
    /// Concurrent reassemblies per peer; a new one evicts that peer's oldest.
    pub max_per_peer: usize,
    /// Concurrent reassemblies overall; a new one beyond it is answered 5.03.
    pub max_total: usize,
    /// An idle reassembly is dropped after this long (default EXCHANGE_LIFETIME: a client's
    /// retransmissions of a block have stopped by then).
    pub lifetime: Duration,
}

impl Default for Block1ReceiverConfig {
    fn default() -> Self {
        Self {
            max_body: 16 * 1024,
            max_per_peer: 2,
            max_total: 256,
            lifetime: params::EXCHANGE_LIFETIME,
        }
    }
}

/// What to do with a request after [`Block1Receiver::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Block1Step {
    /// The body is complete (the request had no Block1 option, or this was the last block).
    /// Process it; when `block1` is Some, echo it in the final response (RFC 7959 §2.3).
    Complete {
        body: Vec<u8>,
        block1: Option<BlockValue>,
    },
    /// Answer with this response: 2.31 Continue with Block1 echoed, or an error (4.13 + Size1,
    /// 4.08, 4.02, 4.00, 5.03).
    Reply(Packet),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    peer: SocketAddr,
    method: u8,
    path: Vec<Vec<u8>>,
    query: Vec<Vec<u8>>,
}

struct Assembly {
    body: Vec<u8>,
    started: u64,
    last_seen: Instant,
}

pub struct Block1Receiver {
    config: Block1ReceiverConfig,
    assemblies: HashMap<Key, Assembly>,
    next_start: u64,
}

impl Block1Receiver {
    pub fn new(config: Block1ReceiverConfig) -> Self {
        Self {
            config,
            assemblies: HashMap::new(),
            next_start: 0,
        }
    }

    /// Transfers in progress.
    pub fn len(&self) -> usize {
        self.assemblies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.assemblies.is_empty()
    }

    pub fn handle(&mut self, now: Instant, peer: SocketAddr, request: &Packet) -> Block1Step {
        let lifetime = self.config.lifetime;
        self.assemblies.retain(|_, a| a.last_seen + lifetime > now);
        let max = self.config.max_body;
        let block = match block1(request) {
            Ok(Some(b)) => b,
            Ok(None) => {
                if request.payload.len() > max {
                    return self.too_large();
                }
                return Block1Step::Complete {
                    body: request.payload.clone(),
                    block1: None,
                };
            }
            Err(_) => return Block1Step::Reply(new_response(ResponseType::BadOption)),
        };
        let payload = &request.payload;
        // With M set the payload is exactly one block; the last block is at most one (§2.3).
        let size_ok = if block.more() {
            payload.len() == block.size()
        } else {
            payload.len() <= block.size()
        };
        if !size_ok {
            return Block1Step::Reply(new_response(ResponseType::BadRequest));
        }
        let key = Key {
            peer,
            method: wire::code(request).0,
            path: options(request, CoapOption::UriPath),
            query: options(request, CoapOption::UriQuery),
        };
        if block.num() == 0 {
            self.assemblies.remove(&key);
            let announced = uint_option(request, CoapOption::Size1).map_or(0, |s| s as usize);
            if announced > max || payload.len() > max {
                return self.too_large();
            }
            if !block.more() {
                return Block1Step::Complete {
                    body: payload.clone(),
                    block1: Some(block),
                };
            }
            if !self.make_room(peer) {
                let mut busy = new_response(ResponseType::ServiceUnavailable);
                set_uint_option(&mut busy, CoapOption::MaxAge, 5);
                return Block1Step::Reply(busy);
            }
            let started = self.next_start;
            self.next_start += 1;
            self.assemblies.insert(
                key,
                Assembly {
                    body: payload.clone(),
                    started,
                    last_seen: now,
                },
            );
            return continue_reply(block);
        }
        let Some(assembly) = self.assemblies.get_mut(&key) else {
            return Block1Step::Reply(new_response(ResponseType::RequestEntityIncomplete));
        };
        if block.offset() != assembly.body.len() as u64 {
            self.assemblies.remove(&key);
            return Block1Step::Reply(new_response(ResponseType::RequestEntityIncomplete));
        }
        if assembly.body.len() + payload.len() > max {
            self.assemblies.remove(&key);
            return self.too_large();
        }
        assembly.body.extend_from_slice(payload);
        assembly.last_seen = now;
        if block.more() {
            return continue_reply(block);
        }
        let body = self
            .assemblies
            .remove(&key)
            .map(|a| a.body)
            .unwrap_or_default();
        Block1Step::Complete {
            body,
            block1: Some(block),
        }
    }

    /// Evicts the peer's oldest transfer if it has too many; false if the overall bound is hit.
    fn make_room(&mut self, peer: SocketAddr) -> bool {
        let mine: Vec<(u64, Key)> = self
            .assemblies
            .iter()
            .filter(|(k, _)| k.peer == peer)
            .map(|(k, a)| (a.started, k.clone()))
            .collect();
        if mine.len() >= self.config.max_per_peer.max(1)
            && let Some((_, oldest)) = mine.into_iter().min_by_key(|(started, _)| *started)
        {
            self.assemblies.remove(&oldest);
        }
        self.assemblies.len() < self.config.max_total
    }

    fn too_large(&self) -> Block1Step {
        let mut reply = new_response(ResponseType::RequestEntityTooLarge);
        set_uint_option(
            &mut reply,
            CoapOption::Size1,
            u32::try_from(self.config.max_body).unwrap_or(u32::MAX),
        );
        Block1Step::Reply(reply)
    }
}

fn options(packet: &Packet, which: CoapOption) -> Vec<Vec<u8>> {
    packet
        .get_option(which)
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default()
}

fn continue_reply(block: BlockValue) -> Block1Step {
    let mut reply = new_response(ResponseType::Continue);
    set_block1(&mut reply, block);
    Block1Step::Reply(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{MessageClass, RequestType};

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn post(path: &str, num: u32, more: bool, szx: u8, payload: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Post);
        p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
        set_block1(&mut p, BlockValue::new(num, more, szx).unwrap());
        p.payload = payload.to_vec();
        p
    }

    fn code(step: &Block1Step) -> Option<ResponseType> {
        match step {
            Block1Step::Reply(p) => match p.header.code {
                MessageClass::Response(r) => Some(r),
                _ => None,
            },
            Block1Step::Complete { .. } => None,
        }
    }

    fn cfg() -> Block1ReceiverConfig {
        Block1ReceiverConfig {
            max_body: 100,
            max_per_peer: 2,
            max_total: 3,
            lifetime: Duration::from_secs(10),
        }
    }

    #[test]
    fn blocks_in_order_are_continued_then_completed_with_block1_echoed() {
        let t = Instant::now();
        let mut rx = Block1Receiver::new(cfg());
        let s = rx.handle(t, peer(1), &post("rd", 0, true, 0, &[1; 16]));
        assert_eq!(code(&s), Some(ResponseType::Continue));
        let Block1Step::Reply(p) = &s else {
            unreachable!()
        };
        assert_eq!(
            p.get_first_option(CoapOption::Block1),
            Some(&vec![0x08]),
            "1:0/1/16 echoed"
        );
        let s = rx.handle(t, peer(1), &post("rd", 1, true, 0, &[2; 16]));
        let Block1Step::Reply(p) = &s else {
            panic!("expected 2.31")
        };
        assert_eq!(p.get_first_option(CoapOption::Block1), Some(&vec![0x18]));
        let s = rx.handle(t, peer(1), &post("rd", 2, false, 0, &[3; 5]));
        let mut want = vec![1; 16];
        want.extend([2; 16]);
        want.extend([3; 5]);
        assert_eq!(
            s,
            Block1Step::Complete {
                body: want,
                block1: Some(BlockValue::new(2, false, 0).unwrap())
            }
        );
        assert!(rx.is_empty());
    }

    #[test]
    fn a_missing_or_out_of_order_block_is_4_08() {
        let t = Instant::now();
        let mut rx = Block1Receiver::new(cfg());
        assert_eq!(
            code(&rx.handle(t, peer(1), &post("rd", 1, true, 0, &[0; 16]))),
            Some(ResponseType::RequestEntityIncomplete)
        );
        rx.handle(t, peer(1), &post("rd", 0, true, 0, &[0; 16]));
        assert_eq!(
            code(&rx.handle(t, peer(1), &post("rd", 2, false, 0, &[0; 3]))),
            Some(ResponseType::RequestEntityIncomplete)
        );
        // the broken transfer is gone: even the right next block is now incomplete
        assert_eq!(
            code(&rx.handle(t, peer(1), &post("rd", 1, false, 0, &[0; 3]))),
            Some(ResponseType::RequestEntityIncomplete)
        );
    }

    #[test]
    fn a_body_over_the_limit_is_4_13_with_size1() {
        let t = Instant::now();
        let mut rx = Block1Receiver::new(cfg());
        for num in 0..6 {
            let s = rx.handle(t, peer(1), &post("rd", num, true, 0, &[0; 16]));
            assert_eq!(code(&s), Some(ResponseType::Continue), "block {num}");
        }
        // 96 bytes so far; 16 more would make 112 > 100
        let s = rx.handle(t, peer(1), &post("rd", 6, true, 0, &[0; 16]));
        let Block1Step::Reply(p) = &s else { panic!() };
        assert_eq!(code(&s), Some(ResponseType::RequestEntityTooLarge));
        assert_eq!(p.get_first_option(CoapOption::Size1), Some(&vec![100]));
        assert!(rx.is_empty());
        // an announced Size1 over the limit is refused at block 0
        let mut first = post("rd", 0, true, 0, &[0; 16]);
        set_uint_option(&mut first, CoapOption::Size1, 5000);
        assert_eq!(
            code(&rx.handle(t, peer(1), &first)),
            Some(ResponseType::RequestEntityTooLarge)
        );
        // and so is a plain request with a big body
        let mut plain = Packet::new();
        plain.payload = vec![0; 101];
        assert_eq!(
            code(&rx.handle(t, peer(1), &plain)),
            Some(ResponseType::RequestEntityTooLarge)
        );
    }

    #[test]
    fn a_wrong_payload_size_is_4_00_and_bert_is_4_02() {
        let t = Instant::now();
        let mut rx = Block1Receiver::new(cfg());
        assert_eq!(
            code(&rx.handle(t, peer(1), &post("rd", 0, true, 0, &[0; 15]))),
            Some(ResponseType::BadRequest)
        );
        let mut p = post("rd", 0, true, 0, &[0; 16]);
        p.clear_option(CoapOption::Block1);
        p.add_option(CoapOption::Block1, vec![0x0f]);
        assert_eq!(
            code(&rx.handle(t, peer(1), &p)),
            Some(ResponseType::BadOption)
        );
    }

    #[test]
    fn reassemblies_are_bounded_per_peer_and_overall_and_expire() {
        let t = Instant::now();
        let mut rx = Block1Receiver::new(cfg());
        for path in ["a", "b", "c"] {
            rx.handle(t, peer(1), &post(path, 0, true, 0, &[0; 16]));
        }
        assert_eq!(rx.len(), 2, "third transfer of peer 1 evicted its oldest");
        assert_eq!(
            code(&rx.handle(t, peer(1), &post("a", 1, false, 0, &[0; 1]))),
            Some(ResponseType::RequestEntityIncomplete)
        );
        rx.handle(t, peer(2), &post("a", 0, true, 0, &[0; 16]));
        assert_eq!(rx.len(), 3);
        let s = rx.handle(t, peer(3), &post("a", 0, true, 0, &[0; 16]));
        assert_eq!(
            code(&s),
            Some(ResponseType::ServiceUnavailable),
            "overall bound of 3"
        );
        let Block1Step::Reply(p) = &s else {
            unreachable!()
        };
        assert_eq!(p.get_first_option(CoapOption::MaxAge), Some(&vec![5]));
        // after the lifetime everything is gone
        let later = t + Duration::from_secs(10);
        assert_eq!(
            code(&rx.handle(later, peer(4), &post("a", 0, true, 0, &[0; 16]))),
            Some(ResponseType::Continue)
        );
        assert_eq!(rx.len(), 1);
    }
}

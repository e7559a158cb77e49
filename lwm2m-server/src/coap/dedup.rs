//! The message deduplication cache (RFC 7252 §4.5): remembers (peer, message ID) for
//! EXCHANGE_LIFETIME together with the reply we sent, so a retransmission gets the same bytes.
//! Bounded: when full, the oldest entry goes, so a flood cannot grow memory without limit.
//!
//! A retransmission repeats the message byte for byte, token included. A message with a known
//! (peer, message ID) but another token is a new message from a peer that lost its count (a
//! rebooted device that starts its IDs where its last boot had been): it is taken as new, not
//! answered with the reply to someone else's request, which would lock that device out for the
//! whole EXCHANGE_LIFETIME.

use std::collections::VecDeque;
use std::collections::hash_map::Entry as Slot;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use super::Datagram;

pub(crate) type MsgKey = (SocketAddr, u16);

/// A message's token, inline (RFC 7252: at most 8 bytes; longer ones never reach the cache).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Token {
    len: u8,
    bytes: [u8; 8],
}

impl Token {
    pub(crate) fn new(token: &[u8]) -> Token {
        let mut bytes = [0; 8];
        let len = token.len().min(8);
        bytes[..len].copy_from_slice(&token[..len]);
        Token {
            len: len as u8,
            bytes,
        }
    }
}

struct Entry {
    generation: u64,
    token: Token,
    reply: Option<Datagram>,
}

pub(crate) struct DedupCache {
    map: HashMap<MsgKey, Entry>,
    /// Insertion order = expiry order, because every entry lives equally long. A generation
    /// number tells a stale slot (its key was removed and inserted again) from the live one.
    order: VecDeque<(MsgKey, u64, Instant)>,
    next_generation: u64,
    capacity: usize,
    lifetime: Duration,
}

impl DedupCache {
    pub(crate) fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            capacity,
            lifetime,
        }
    }

    /// `Some(reply)` when the message (key and token) was seen within the lifetime; the reply
    /// may still be unknown. The same key with another token is a new message: `None`.
    pub(crate) fn get(&self, key: &MsgKey, token: Token) -> Option<Option<&Datagram>> {
        self.map
            .get(key)
            .filter(|e| e.token == token)
            .map(|e| e.reply.as_ref())
    }

    /// Remembers a message; an entry with the same key (an older message) is replaced.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        key: MsgKey,
        token: Token,
        reply: Option<Datagram>,
    ) {
        if self.capacity == 0 {
            return;
        }
        while self.map.len() >= self.capacity {
            if !self.pop_oldest() {
                break;
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.map.insert(
            key,
            Entry {
                generation,
                token,
                reply,
            },
        );
        self.order.push_back((key, generation, now + self.lifetime));
    }

    /// Records the reply for a message that is already in the cache (no-op if it was evicted).
    pub(crate) fn set_reply(&mut self, key: &MsgKey, reply: Datagram) {
        if let Some(entry) = self.map.get_mut(key) {
            entry.reply = Some(reply);
        }
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(_, _, expires)) = self.order.front() {
            if expires > now {
                break;
            }
            self.pop_oldest();
        }
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|&(_, _, at)| at)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((key, generation, _)) = self.order.pop_front() else {
            return false;
        };
        // One probe of the (cold) slot, not a lookup and then a removal.
        if let Slot::Occupied(slot) = self.map.entry(key)
            && slot.get().generation == generation
        {
            slot.remove();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(mid: u16) -> MsgKey {
        ("127.0.0.1:5683".parse().unwrap(), mid)
    }

    #[test]
    fn entries_expire_after_the_lifetime_and_the_oldest_is_evicted_when_full() {
        let t0 = Instant::now();
        let mut cache = DedupCache::new(2, Duration::from_secs(10));
        let t = Token::new(&[7]);
        cache.insert(t0, key(1), t, None);
        cache.insert(t0 + Duration::from_secs(1), key(2), t, Some(vec![9].into()));
        cache.insert(t0 + Duration::from_secs(2), key(3), t, None);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key(1), t).is_none(), "oldest evicted");
        assert_eq!(
            cache.get(&key(2), t).flatten().map(Datagram::to_vec),
            Some(vec![9u8])
        );
        cache.expire(t0 + Duration::from_secs(11));
        assert!(cache.get(&key(2), t).is_none());
        assert!(cache.get(&key(3), t).is_some());
        assert_eq!(cache.next_expiry(), Some(t0 + Duration::from_secs(12)));
    }

    #[test]
    fn the_same_message_id_with_another_token_is_a_new_message_that_replaces_the_old() {
        let t0 = Instant::now();
        let mut cache = DedupCache::new(8, Duration::from_secs(10));
        let (old, new) = (Token::new(&[1, 2, 3]), Token::new(&[1, 2, 4]));
        cache.insert(t0, key(5), old, Some(vec![1].into()));
        assert!(
            cache.get(&key(5), new).is_none(),
            "another token: not a duplicate"
        );
        assert!(
            cache.get(&key(5), Token::new(&[1, 2])).is_none(),
            "a prefix is another token"
        );
        cache.insert(
            t0 + Duration::from_secs(1),
            key(5),
            new,
            Some(vec![2].into()),
        );
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.get(&key(5), new).flatten().map(Datagram::to_vec),
            Some(vec![2u8])
        );
        assert!(cache.get(&key(5), old).is_none());
        // The replaced entry's expiry slot is stale: the new one lives its own lifetime.
        cache.expire(t0 + Duration::from_secs(10));
        assert!(cache.get(&key(5), new).is_some());
        cache.expire(t0 + Duration::from_secs(11));
        assert!(cache.get(&key(5), new).is_none());
    }
}

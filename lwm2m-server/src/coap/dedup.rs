//! The message deduplication cache (RFC 7252 §4.5): remembers (peer, message ID) for
//! EXCHANGE_LIFETIME together with the reply we sent, so a retransmission gets the same bytes.
//! Bounded: when full, the oldest entry goes, so a flood cannot grow memory without limit.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Datagram;

pub(crate) type MsgKey = (SocketAddr, u16);

struct Entry {
    generation: u64,
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

    /// `Some(reply)` when the key was seen within the lifetime; the reply may still be unknown.
    pub(crate) fn get(&self, key: &MsgKey) -> Option<Option<&Datagram>> {
        self.map.get(key).map(|e| e.reply.as_ref())
    }

    pub(crate) fn insert(&mut self, now: Instant, key: MsgKey, reply: Option<Datagram>) {
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
        self.map.insert(key, Entry { generation, reply });
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
        if self
            .map
            .get(&key)
            .is_some_and(|e| e.generation == generation)
        {
            self.map.remove(&key);
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
        cache.insert(t0, key(1), None);
        cache.insert(t0 + Duration::from_secs(1), key(2), Some(vec![9].into()));
        cache.insert(t0 + Duration::from_secs(2), key(3), None);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key(1)).is_none(), "oldest evicted");
        assert_eq!(
            cache.get(&key(2)).flatten().map(Datagram::to_vec),
            Some(vec![9u8])
        );
        cache.expire(t0 + Duration::from_secs(11));
        assert!(cache.get(&key(2)).is_none());
        assert!(cache.get(&key(3)).is_some());
        assert_eq!(cache.next_expiry(), Some(t0 + Duration::from_secs(12)));
    }
}

//! Who fetched which block of which release, recorded by the firmware server as it answers, so an
//! admin sees a pull download's progress without any message from the device.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// The last block a peer fetched of a release's image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockFetched {
    pub block: u32,
    pub block_size: u32,
    pub image_len: u64,
}

impl BlockFetched {
    /// Bytes the peer has received when this block arrives.
    pub fn bytes_done(&self) -> u64 {
        ((u64::from(self.block) + 1) * u64::from(self.block_size)).min(self.image_len)
    }
}

/// The tracker: bounded by the number of peers downloading at once.
#[derive(Default)]
pub struct DownloadTracker {
    by_peer: Mutex<HashMap<(SocketAddr, String), BlockFetched>>,
}

impl DownloadTracker {
    pub fn record(&self, peer: SocketAddr, release: &str, fetched: BlockFetched) {
        self.by_peer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((peer, release.to_string()), fetched);
    }

    /// Progress of `release` fetched from `peer`; if nothing came from that exact address (a
    /// client may download from another port than it registered from), the only transfer of
    /// that release from the same IP address.
    pub fn progress(&self, peer: SocketAddr, release: &str) -> Option<BlockFetched> {
        let map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(&(peer, release.to_string())) {
            return Some(*f);
        }
        let mut same_ip = map
            .iter()
            .filter(|((a, r), _)| a.ip() == peer.ip() && r == release);
        match (same_ip.next(), same_ip.next()) {
            (Some((_, f)), None) => Some(*f),
            _ => None,
        }
    }

    /// Forgets the transfers of `release` from `peer`'s IP (when a job ends).
    pub fn forget(&self, peer: SocketAddr, release: &str) {
        self.by_peer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(a, r), _| !(a.ip() == peer.ip() && r == release));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_by_exact_address_then_by_unique_ip() {
        let t = DownloadTracker::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        t.record(
            b,
            "r1",
            BlockFetched {
                block: 9,
                block_size: 64,
                image_len: 1000,
            },
        );
        assert_eq!(t.progress(a, "r1").unwrap().bytes_done(), 640);
        assert_eq!(t.progress(a, "r2"), None);
        t.record(
            c,
            "r1",
            BlockFetched {
                block: 15,
                block_size: 64,
                image_len: 1000,
            },
        );
        assert_eq!(
            t.progress(a, "r1"),
            None,
            "two transfers from the same IP: ambiguous"
        );
        assert_eq!(t.progress(c, "r1").unwrap().bytes_done(), 1000);
        t.forget(a, "r1");
        assert_eq!(t.progress(c, "r1"), None);
    }
}

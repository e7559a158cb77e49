//! The largest Block2 size a client gets, by where it is: `serve --block-size-for PREFIX=SIZE`
//! caps the blocks served to addresses in an IP prefix (the /64 of a 6LoWPAN mesh behind its
//! border router, say), so a client that asks for 1024-byte blocks gets what the mesh carries
//! (RFC 7959 late negotiation: the server answers with a smaller SZX at the asked offset).
//! Stateless: the cap is looked up per request.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use lwm2m_core::block::szx_for_size;

/// `PREFIX/LEN=SIZE`: blocks of at most SIZE bytes to the addresses in PREFIX/LEN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixCap {
    net: IpAddr,
    len: u8,
    /// The cap as SZX.
    pub szx: u8,
}

/// Why a `PREFIX/LEN=SIZE` does not parse; the text says what to give.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?}: give PREFIX/LEN=SIZE, e.g. fd00:1::/64=64 or 10.0.0.0/8=256 (SIZE a power of two from 16 to 1024)"
)]
pub struct BadPrefixCap(String);

impl FromStr for PrefixCap {
    type Err = BadPrefixCap;

    fn from_str(text: &str) -> Result<Self, BadPrefixCap> {
        let bad = || BadPrefixCap(text.to_string());
        let (prefix, size) = text.split_once('=').ok_or_else(bad)?;
        let (net, len) = prefix.trim().split_once('/').ok_or_else(bad)?;
        let net: IpAddr = net.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let size: usize = size.trim().parse().map_err(|_| bad())?;
        let szx = szx_for_size(size).map_err(|_| bad())?;
        if len > max {
            return Err(bad());
        }
        Ok(PrefixCap {
            net: masked(net, len),
            len,
            szx,
        })
    }
}

impl fmt::Display for PrefixCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.net, self.len, 16u32 << self.szx)
    }
}

impl PrefixCap {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        ip.is_ipv4() == self.net.is_ipv4() && masked(ip, self.len) == self.net
    }
}

/// The cap for a client at `ip`: the longest prefix that holds it wins.
pub fn szx_for(caps: &[PrefixCap], ip: IpAddr) -> Option<u8> {
    caps.iter()
        .filter(|c| c.contains(ip))
        .max_by_key(|c| c.len)
        .map(|c| c.szx)
}

/// An IPv4 address in IPv6 clothes (a dual-stack socket) as the IPv4 address it is.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn masked(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_parse_and_the_longest_match_wins() {
        let caps: Vec<PrefixCap> = ["fd00:1::/64=64", "fd00::/16=256", "10.0.0.0/8=512"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(caps[0].to_string(), "fd00:1::/64=64");
        assert_eq!(szx_for(&caps, ip("fd00:1::abcd")), Some(2));
        assert_eq!(szx_for(&caps, ip("fd00:2::1")), Some(4));
        assert_eq!(szx_for(&caps, ip("10.1.2.3")), Some(5));
        assert_eq!(szx_for(&caps, ip("::ffff:10.1.2.3")), Some(5), "v4-mapped");
        assert_eq!(szx_for(&caps, ip("192.0.2.1")), None);
        // Host bits in the prefix are dropped; /0 holds everything of its family.
        let any: PrefixCap = "10.9.9.9/0=32".parse().unwrap();
        assert!(any.contains(ip("192.0.2.1")) && !any.contains(ip("fd00::1")));
    }

    #[test]
    fn bad_caps_say_what_to_give() {
        for bad in [
            "fd00::/64",
            "fd00::=64",
            "fd00::/129=64",
            "10.0.0.0/8=100",
            "x/8=64",
            "10.0.0.0/8=2048",
        ] {
            let e = bad.parse::<PrefixCap>().unwrap_err();
            assert!(e.to_string().contains("PREFIX/LEN=SIZE"), "{bad}: {e}");
        }
    }
}

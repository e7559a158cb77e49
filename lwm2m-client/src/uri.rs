//! Package URIs on the device: parse a `coap://` or `coaps://` URI into the peer address and the
//! Uri-Path and Uri-Query parts, decide whether the device can fetch from it
//! ([`CoapUri::reachable`]), and resolve a manifest's relative image reference against the manifest's URI
//! (RFC 3986 §5.2), all without allocation. The device has no DNS: hosts are IP literals.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use heapless::String;
use lwm2m_core::ascii;
use lwm2m_core::object5::{Scheme, UpdateResult};

use crate::engine::limits::{MAX_PACKAGE_URI_LEN, URI_SEGMENTS};
use crate::ip_literal;

/// A URI string that fits the device's buffers: Object 5's Package URI, at most 255 characters.
pub type UriString = String<MAX_PACKAGE_URI_LEN>;

/// A parsed `coap://` or `coaps://` URI, borrowing the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoapUri<'a> {
    pub peer: SocketAddr,
    /// `coaps`: the resource is reached over DTLS.
    pub secure: bool,
    /// The path without its leading `/` (segments separated by `/`).
    pub path: &'a str,
    /// The query without its `?` (parameters separated by `&`).
    pub query: &'a str,
}

impl<'a> CoapUri<'a> {
    /// Parses `coap[s]://HOST[:PORT][/PATH][?QUERY]`. Another scheme gives Result 9 (unsupported
    /// protocol), anything else unusable Result 7 (invalid URI).
    pub fn parse(uri: &'a str) -> Result<CoapUri<'a>, UpdateResult> {
        if uri.len() > MAX_PACKAGE_URI_LEN {
            return Err(UpdateResult::InvalidUri);
        }
        let (scheme, rest) = split_scheme(uri)?;
        let secure = scheme.eq_ignore_ascii_case("coaps");
        if !secure && !scheme.eq_ignore_ascii_case("coap") {
            let known = [
                "http",
                "https",
                "coap+tcp",
                "coaps+tcp",
                "coap+ws",
                "coaps+ws",
            ];
            return Err(if known.iter().any(|k| scheme.eq_ignore_ascii_case(k)) {
                UpdateResult::UnsupportedProtocol
            } else {
                UpdateResult::InvalidUri
            });
        }
        let rest = ascii::split_once(rest, b'#').map_or(rest, |(r, _)| r);
        let (authority, path_query) = match ascii::find(rest, b'/') {
            Some(i) => rest.split_at_checked(i).ok_or(UpdateResult::InvalidUri)?,
            None => match ascii::find(rest, b'?') {
                Some(i) => rest.split_at_checked(i).ok_or(UpdateResult::InvalidUri)?,
                None => (rest, ""),
            },
        };
        let (path, query) = ascii::split_once(path_query, b'?').unwrap_or((path_query, ""));
        let path = path.strip_prefix('/').unwrap_or(path);
        let default_port = if secure { Scheme::Coaps } else { Scheme::Coap }.default_port();
        Ok(CoapUri {
            peer: authority_addr(authority, default_port)?,
            secure,
            path,
            query,
        })
    }

    /// Whether the device can fetch from here, given the server it has a DTLS channel with (the
    /// host driver's; None: the device speaks plain CoAP only). A secured device fetches only
    /// `coaps://` from that server and sends nothing in plain text; a plain one cannot do DTLS.
    /// Otherwise Result 9 (unsupported protocol).
    pub fn reachable(&self, secure_server: Option<SocketAddr>) -> Result<(), UpdateResult> {
        match secure_server {
            None if !self.secure => Ok(()),
            Some(server) if self.secure && server == self.peer => Ok(()),
            _ => Err(UpdateResult::UnsupportedProtocol),
        }
    }

    /// Uri-Path segments.
    pub fn segments(&self) -> impl Iterator<Item = &'a str> {
        ascii::split(self.path, b'/').filter(|s| !s.is_empty())
    }

    /// Uri-Query parameters.
    pub fn queries(&self) -> impl Iterator<Item = &'a str> {
        ascii::split(self.query, b'&').filter(|s| !s.is_empty())
    }
}

/// Splits `SCHEME://REST` at the first `://`: what `str::split_once("://")` does, without core's
/// substring searcher (Two-Way, about 1.1 KB of flash on the MCU) for a three-byte needle.
fn split_scheme(uri: &str) -> Result<(&str, &str), UpdateResult> {
    let at = uri
        .as_bytes()
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(UpdateResult::InvalidUri)?;
    let scheme = uri.get(..at).ok_or(UpdateResult::InvalidUri)?;
    let rest = uri
        .get(at.saturating_add(3)..)
        .ok_or(UpdateResult::InvalidUri)?;
    Ok((scheme, rest))
}

fn authority_addr(authority: &str, default_port: u16) -> Result<SocketAddr, UpdateResult> {
    if ascii::find(authority, b'@').is_some() || authority.is_empty() {
        return Err(UpdateResult::InvalidUri);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = ascii::split_once(v6, b']').ok_or(UpdateResult::InvalidUri)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UpdateResult::InvalidUri)?),
        };
        let ip = ip_literal::parse_ipv6(h).ok_or(UpdateResult::InvalidUri)?;
        (IpAddr::V6(ip), port)
    } else {
        let (h, port) = match ascii::rsplit_once(authority, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ip: Ipv4Addr = if h.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            // No DNS on the device: a host name cannot be reached.
            ip_literal::parse_ipv4(h).ok_or(UpdateResult::InvalidUri)?
        };
        (IpAddr::V4(ip), port)
    };
    let port = match port {
        None | Some("") => default_port,
        Some(p) => ip_literal::parse_port(p).ok_or(UpdateResult::InvalidUri)?,
    };
    Ok(SocketAddr::new(host, port))
}

/// Resolves `reference` against `base` (RFC 3986 §5.2.2, with the merge and dot-segment removal
/// of §5.2.3 and §5.2.4). An absolute reference is returned as it is.
pub fn resolve(base: &str, reference: &str) -> Result<UriString, UpdateResult> {
    let mut out = UriString::new();
    let push = |out: &mut UriString, s: &str| out.push_str(s).map_err(|_| UpdateResult::InvalidUri);
    if has_scheme(reference) {
        push(&mut out, reference)?;
        return Ok(out);
    }
    let (scheme, rest) = split_scheme(base)?;
    let rest = ascii::split_once(rest, b'#').map_or(rest, |(r, _)| r);
    let auth_end = rest
        .bytes()
        .position(|b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, base_pq) = rest
        .split_at_checked(auth_end)
        .ok_or(UpdateResult::InvalidUri)?;
    let (base_path, base_query) = ascii::split_once(base_pq, b'?').unwrap_or((base_pq, ""));
    push(&mut out, scheme)?;
    push(&mut out, "://")?;
    if let Some(net) = reference.strip_prefix("//") {
        push(&mut out, net)?;
        return Ok(out);
    }
    push(&mut out, authority)?;
    let (ref_path, ref_query) = match ascii::split_once(reference, b'?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    let ref_path = ascii::split_once(ref_path, b'#').map_or(ref_path, |(p, _)| p);
    // The target path before dot-segment removal, built in a scratch buffer.
    let mut merged = UriString::new();
    if ref_path.is_empty() {
        push(&mut merged, base_path)?;
    } else if ref_path.starts_with('/') {
        push(&mut merged, ref_path)?;
    } else {
        // Up to and with the last '/' of the base path.
        let dir = match ascii::rsplit_once(base_path, b'/') {
            Some((d, _)) => base_path.get(..=d.len()).unwrap_or(""),
            None => "/",
        };
        push(&mut merged, if dir.is_empty() { "/" } else { dir })?;
        push(&mut merged, ref_path)?;
    }
    remove_dot_segments(&merged, &mut out)?;
    match ref_query {
        Some(q) => {
            push(&mut out, "?")?;
            push(&mut out, q)?;
        }
        None if ref_path.is_empty() && !base_query.is_empty() => {
            push(&mut out, "?")?;
            push(&mut out, base_query)?;
        }
        None => {}
    }
    Ok(out)
}

/// Whether a reference starts with a scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"`).
fn has_scheme(reference: &str) -> bool {
    let Some((scheme, _)) = ascii::split_once(reference, b':') else {
        return false;
    };
    // Bytes, not chars: a non-ASCII char fails the test either way.
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// RFC 3986 §5.2.4 on an absolute path, appended to `out`.
fn remove_dot_segments(path: &str, out: &mut UriString) -> Result<(), UpdateResult> {
    // Segments kept so far, as (start, end) byte ranges into `path`; paths here are short.
    let mut kept: heapless::Vec<(usize, usize), URI_SEGMENTS> = heapless::Vec::new();
    let mut trailing_slash = false;
    let mut pos = 0usize;
    for seg in ascii::split(path, b'/').skip(1) {
        let start = pos.saturating_add(1);
        pos = start.saturating_add(seg.len());
        trailing_slash = false;
        match seg {
            "." => trailing_slash = true,
            ".." => {
                kept.pop();
                trailing_slash = true;
            }
            _ => kept
                .push((start, pos))
                .map_err(|_| UpdateResult::InvalidUri)?,
        }
    }
    for (s, e) in &kept {
        out.push('/').map_err(|_| UpdateResult::InvalidUri)?;
        out.push_str(path.get(*s..*e).unwrap_or(""))
            .map_err(|_| UpdateResult::InvalidUri)?;
    }
    if trailing_slash || kept.is_empty() {
        out.push('/').map_err(|_| UpdateResult::InvalidUri)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coap_uris_parse_into_peer_path_and_query() {
        let u = CoapUri::parse("coap://192.0.2.7:5783/fw/0123456789abcdef/manifest?x=1").unwrap();
        assert_eq!(u.peer, "192.0.2.7:5783".parse().unwrap());
        assert_eq!(
            u.segments().collect::<heapless::Vec<_, 4>>().as_slice(),
            ["fw", "0123456789abcdef", "manifest"]
        );
        assert_eq!(u.queries().next(), Some("x=1"));
        let u = CoapUri::parse("coap://[2001:db8::1]/fw/a/image").unwrap();
        assert_eq!(u.peer, "[2001:db8::1]:5683".parse().unwrap());
        assert_eq!(
            CoapUri::parse("coap://localhost").unwrap().peer,
            "127.0.0.1:5683".parse().unwrap()
        );
    }

    #[test]
    fn coaps_uris_default_to_5684_and_are_fetched_only_from_the_secured_server() {
        let server: SocketAddr = "192.0.2.7:5684".parse().unwrap();
        let secure = CoapUri::parse("coaps://192.0.2.7/fw/a/manifest").unwrap();
        assert!(secure.secure);
        assert_eq!(secure.peer, server);
        let plain = CoapUri::parse("coap://192.0.2.7/fw/a/manifest").unwrap();
        assert!(!plain.secure);
        assert_eq!(plain.reachable(None), Ok(()));
        assert_eq!(secure.reachable(Some(server)), Ok(()));
        // No DTLS on a plain device; no plain text, nor another host, on a secured one.
        let nine = Err(UpdateResult::UnsupportedProtocol);
        assert_eq!(secure.reachable(None), nine);
        assert_eq!(plain.reachable(Some(server)), nine);
        let other = CoapUri::parse("coaps://192.0.2.8/fw").unwrap();
        assert_eq!(other.reachable(Some(server)), nine);
    }

    #[test]
    fn bad_uris_give_result_7_and_other_schemes_9() {
        for bad in [
            "",
            "coap:/x",
            "coap://",
            "coap://example.com/fw",
            "coap://1.2.3.4:99999/",
            "coap://u@1.2.3.4/",
            "nonsense",
        ] {
            assert_eq!(CoapUri::parse(bad), Err(UpdateResult::InvalidUri), "{bad}");
        }
        for other in [
            "http://1.2.3.4/fw",
            "https://[::1]/x",
            "coap+tcp://1.2.3.4/",
        ] {
            assert_eq!(
                CoapUri::parse(other),
                Err(UpdateResult::UnsupportedProtocol),
                "{other}"
            );
        }
    }

    #[test]
    fn relative_references_resolve_as_rfc3986_section_5_4_1_says() {
        // RFC 3986 §5.4.1 with base http://a/b/c/d;p?q (a coap base behaves the same).
        let base = "coap://a/b/c/d;p?q";
        for (reference, want) in [
            ("g", "coap://a/b/c/g"),
            ("./g", "coap://a/b/c/g"),
            ("g/", "coap://a/b/c/g/"),
            ("/g", "coap://a/g"),
            ("//g", "coap://g"),
            ("?y", "coap://a/b/c/d;p?y"),
            ("g?y", "coap://a/b/c/g?y"),
            ("", "coap://a/b/c/d;p?q"),
            (".", "coap://a/b/c/"),
            ("..", "coap://a/b/"),
            ("../g", "coap://a/b/g"),
            ("../..", "coap://a/"),
            ("../../g", "coap://a/g"),
            ("../../../g", "coap://a/g"),
            ("g:h", "g:h"),
        ] {
            assert_eq!(
                resolve(base, reference).unwrap().as_str(),
                want,
                "{reference:?}"
            );
        }
        // The manifest → image case DESIGN.md describes.
        assert_eq!(
            resolve(
                "coap://[2001:db8::1]:5683/fw/0123456789abcdef/manifest",
                "image"
            )
            .unwrap()
            .as_str(),
            "coap://[2001:db8::1]:5683/fw/0123456789abcdef/image"
        );
    }
}

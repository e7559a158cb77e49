//! The Package URI (/5/0/1) check: which Update Result a bad URI gets, and which download protocol
//! a good one asks for.
//!
//! The URI must be an absolute RFC 3986 URI with an authority (`scheme://host[:port]/path`), at
//! most 255 characters (the resource's range). A URI that cannot be parsed is Invalid URI (7); a
//! well-formed scheme that is not a download protocol LwM2M names is Unsupported Protocol (9).
//! Fragments and user info are refused on the CoAP schemes, whose URI grammar (RFC 7252 §6,
//! RFC 8323 §8) has neither.

use super::{ProtocolSupport, UpdateResult};
use core::fmt;

/// Longest Package URI the resource allows.
pub const MAX_PACKAGE_URI_LEN: usize = 255;

/// A download protocol named by a Package URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `coap`
    Coap,
    /// `coaps`
    Coaps,
    /// `http`
    Http,
    /// `https`
    Https,
    /// `coap+tcp`
    CoapTcp,
    /// `coaps+tcp`
    CoapsTcp,
}

impl Scheme {
    /// Every scheme.
    pub const ALL: &'static [Scheme] = &[
        Scheme::Coap,
        Scheme::Coaps,
        Scheme::Http,
        Scheme::Https,
        Scheme::CoapTcp,
        Scheme::CoapsTcp,
    ];

    /// The scheme as written in a URI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Coap => "coap",
            Scheme::Coaps => "coaps",
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::CoapTcp => "coap+tcp",
            Scheme::CoapsTcp => "coaps+tcp",
        }
    }

    /// The scheme named `name`, ignoring ASCII case (RFC 3986 §3.1).
    pub fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL
            .iter()
            .copied()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    /// The Firmware Update Protocol Support value (/5/0/8) this scheme needs.
    pub const fn protocol(self) -> ProtocolSupport {
        match self {
            Scheme::Coap => ProtocolSupport::Coap,
            Scheme::Coaps => ProtocolSupport::Coaps,
            Scheme::Http => ProtocolSupport::Http,
            Scheme::Https => ProtocolSupport::Https,
            Scheme::CoapTcp => ProtocolSupport::CoapTcp,
            Scheme::CoapsTcp => ProtocolSupport::CoapTls,
        }
    }

    /// The port used when the URI names none.
    pub const fn default_port(self) -> u16 {
        match self {
            Scheme::Coap | Scheme::CoapTcp => 5683,
            Scheme::Coaps | Scheme::CoapsTcp => 5684,
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    const fn is_coap(self) -> bool {
        !matches!(self, Scheme::Http | Scheme::Https)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a non-empty Package URI and returns its scheme, or the Update Result the device reports.
///
/// The empty URI is a reset, which the caller handles before calling this (here it is Invalid
/// URI). The caller still decides which schemes it supports: map the scheme with
/// [`Scheme::protocol`] and answer Unsupported Protocol (9) for the others.
pub fn validate_package_uri(uri: &str) -> Result<Scheme, UpdateResult> {
    const INVALID: UpdateResult = UpdateResult::InvalidUri;
    if uri.is_empty() || uri.len() > MAX_PACKAGE_URI_LEN {
        return Err(INVALID);
    }
    let (name, rest) = crate::ascii::split_once(uri, b':').ok_or(INVALID)?;
    if !is_scheme_syntax(name) {
        return Err(INVALID);
    }
    let scheme = Scheme::from_name(name).ok_or(UpdateResult::UnsupportedProtocol)?;
    let rest = rest.strip_prefix("//").ok_or(INVALID)?;

    let authority_end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, rest) = rest.split_at_checked(authority_end).ok_or(INVALID)?;
    check_authority(authority, scheme).ok_or(INVALID)?;

    let (rest, fragment) = match crate::ascii::split_once(rest, b'#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (rest, None),
    };
    let (path, query) = match crate::ascii::split_once(rest, b'?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path_ok = all_chars(path, |b| is_pchar(b) || b == b'/');
    let query_ok = query.is_none_or(|q| all_chars(q, |b| is_pchar(b) || b == b'/' || b == b'?'));
    let fragment_ok = match fragment {
        None => true,
        Some(_) if scheme.is_coap() => false,
        Some(f) => all_chars(f, |b| is_pchar(b) || b == b'/' || b == b'?'),
    };
    if path_ok && query_ok && fragment_ok {
        Ok(scheme)
    } else {
        Err(INVALID)
    }
}

/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`
fn is_scheme_syntax(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `[ userinfo "@" ] host [ ":" port ]` with a non-empty host.
fn check_authority(authority: &str, scheme: Scheme) -> Option<()> {
    let host_port = match crate::ascii::rsplit_once(authority, b'@') {
        Some(_) if scheme.is_coap() => return None,
        Some((userinfo, host_port)) => all_chars(userinfo, |b| {
            is_unreserved(b) || is_sub_delim(b) || b == b':'
        })
        .then_some(host_port)?,
        None => authority,
    };
    let (host, port) = if host_port.starts_with('[') {
        let close = crate::ascii::find(host_port, b']')?;
        let (literal, after) = host_port.split_at_checked(close.checked_add(1)?)?;
        let inner = literal.get(1..close)?;
        let ip_ok = crate::ascii::find(inner, b':').is_some()
            && all_chars(inner, |b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ip_ok {
            return None;
        }
        match after {
            "" => (literal, None),
            _ => (literal, Some(after.strip_prefix(':')?)),
        }
    } else {
        let (host, port) = match crate::ascii::split_once(host_port, b':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        };
        all_chars(host, |b| is_unreserved(b) || is_sub_delim(b)).then_some(())?;
        (host, port)
    };
    if host.is_empty() {
        return None;
    }
    match port {
        None | Some("") => Some(()),
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) && port.len() <= 5 => {
            crate::ascii::parse_u16(port).map(|_| ())
        }
        Some(_) => None,
    }
}

/// True when every byte passes `allowed`, with `%` only as the start of `%XX`.
fn all_chars(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_hexdigit());
            if !(hex(bytes.next()) && hex(bytes.next())) {
                return false;
            }
        } else if !allowed(b) {
            return false;
        }
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@')
}

//! The query parameters of Register (`ep`, `lt`, `lwm2m`, `b`, `sms`, `Q`) and Update (`lt`, `b`,
//! `sms`, `Q`), LwM2M TS Core 1.1 §6.2, as CoAP Uri-Query option values (`key=value` or `key`).
//!
//! Queue mode is spelled two ways: LwM2M 1.0 puts `Q` in the binding (`b=UQ`), LwM2M 1.1 sends a
//! bare `Q` parameter. Both are accepted; [`RegisterParams::queue_mode`] answers for either.
//! Parameters this module does not know are ignored, so later LwM2M versions still register.

use crate::content::text;
use core::fmt::{self, Write};

/// Lifetime a client gets when Register carries no `lt` (seconds).
pub const DEFAULT_LIFETIME: u32 = 86_400;

/// A query parameter this module knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// `ep`: endpoint client name.
    Endpoint,
    /// `lt`: lifetime in seconds.
    Lifetime,
    /// `lwm2m`: LwM2M version.
    Version,
    /// `b`: binding mode.
    Binding,
    /// `sms`: MSISDN.
    Sms,
    /// `Q`: queue mode (1.1).
    Queue,
}

impl Key {
    /// The key as written in the query.
    pub const fn as_str(self) -> &'static str {
        match self {
            Key::Endpoint => "ep",
            Key::Lifetime => "lt",
            Key::Version => "lwm2m",
            Key::Binding => "b",
            Key::Sms => "sms",
            Key::Queue => "Q",
        }
    }

    fn from_name(name: &[u8]) -> Option<Key> {
        [
            Key::Endpoint,
            Key::Lifetime,
            Key::Version,
            Key::Binding,
            Key::Sms,
            Key::Queue,
        ]
        .into_iter()
        .find(|k| k.as_str().as_bytes() == name)
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Why registration parameters were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationError {
    /// Register without `ep`.
    MissingEndpoint,
    /// `ep=` with an empty name.
    EmptyEndpoint,
    /// `lt` is not a decimal number that fits in 32 bits.
    InvalidLifetime,
    /// `lt=0`.
    ZeroLifetime,
    /// `lwm2m` is not `major.minor`.
    InvalidVersion,
    /// `b=` with no letters.
    EmptyBinding,
    /// A binding letter other than U, Q, S, T, N.
    UnknownBindingLetter(u8),
    /// A binding letter given twice.
    DuplicateBindingLetter(u8),
    /// A parameter given twice.
    DuplicateKey(Key),
    /// A parameter that needs a value came without `=value`.
    MissingValue(Key),
    /// `Q` came with a value.
    UnexpectedValue(Key),
    /// An option value that is not UTF-8.
    NotUtf8,
}

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrationError::MissingEndpoint => f.write_str("missing endpoint name (ep)"),
            RegistrationError::EmptyEndpoint => f.write_str("empty endpoint name (ep)"),
            RegistrationError::InvalidLifetime => f.write_str("lifetime (lt) is not a number"),
            RegistrationError::ZeroLifetime => f.write_str("lifetime (lt) is 0"),
            RegistrationError::InvalidVersion => f.write_str("lwm2m version is not major.minor"),
            RegistrationError::EmptyBinding => f.write_str("empty binding (b)"),
            RegistrationError::UnknownBindingLetter(b) => {
                write!(f, "unknown binding letter {:?}", char::from(*b))
            }
            RegistrationError::DuplicateBindingLetter(b) => {
                write!(f, "binding letter {:?} given twice", char::from(*b))
            }
            RegistrationError::DuplicateKey(k) => write!(f, "parameter {} given twice", k.as_str()),
            RegistrationError::MissingValue(k) => {
                write!(f, "parameter {} needs a value", k.as_str())
            }
            RegistrationError::UnexpectedValue(k) => {
                write!(f, "parameter {} takes no value", k.as_str())
            }
            RegistrationError::NotUtf8 => f.write_str("query option is not UTF-8"),
        }
    }
}

/// Binding letters: U (UDP), Q (queue, 1.0 style), S (SMS), T (TCP), N (Non-IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Binding(u8);

impl Binding {
    /// UDP.
    pub const U: Binding = Binding(1);
    /// Queue mode, as LwM2M 1.0 spells it inside the binding.
    pub const Q: Binding = Binding(1 << 1);
    /// SMS.
    pub const S: Binding = Binding(1 << 2);
    /// TCP.
    pub const T: Binding = Binding(1 << 3);
    /// Non-IP.
    pub const N: Binding = Binding(1 << 4);

    const LETTERS: [(u8, Binding); 5] = [
        (b'U', Binding::U),
        (b'Q', Binding::Q),
        (b'S', Binding::S),
        (b'T', Binding::T),
        (b'N', Binding::N),
    ];

    /// Parses the letters of `b=` in any order; each at most once.
    pub fn parse(letters: &[u8]) -> Result<Binding, RegistrationError> {
        if letters.is_empty() {
            return Err(RegistrationError::EmptyBinding);
        }
        letters.iter().try_fold(Binding(0), |acc, &letter| {
            let (_, flag) = Binding::LETTERS
                .iter()
                .find(|(l, _)| *l == letter)
                .ok_or(RegistrationError::UnknownBindingLetter(letter))?;
            if acc.contains(*flag) {
                return Err(RegistrationError::DuplicateBindingLetter(letter));
            }
            Ok(acc | *flag)
        })
    }

    /// True when every flag of `other` is set.
    pub const fn contains(self, other: Binding) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for Binding {
    type Output = Binding;
    fn bitor(self, rhs: Binding) -> Binding {
        Binding(self.0 | rhs.0)
    }
}

impl fmt::Display for Binding {
    /// Letters in the LwM2M 1.0 order (`UQS`, `SQ`): Q follows the transport it applies to.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has = |flag| self.contains(flag);
        let queue_after_u = has(Binding::U) && has(Binding::Q);
        let queue_after_s = !has(Binding::U) && has(Binding::Q);
        let letters = [
            (has(Binding::U), 'U'),
            (queue_after_u, 'Q'),
            (has(Binding::S), 'S'),
            (queue_after_s, 'Q'),
            (has(Binding::T), 'T'),
            (has(Binding::N), 'N'),
        ];
        for (set, letter) in letters {
            if set {
                f.write_char(letter)?;
            }
        }
        Ok(())
    }
}

/// An LwM2M version (`lwm2m=1.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
}

impl Version {
    /// LwM2M 1.0.
    pub const V1_0: Version = Version { major: 1, minor: 0 };
    /// LwM2M 1.1.
    pub const V1_1: Version = Version { major: 1, minor: 1 };

    /// Parses `major.minor` (decimal, each below 256).
    pub fn parse(text: &[u8]) -> Result<Version, RegistrationError> {
        let dot = text
            .iter()
            .position(|&b| b == b'.')
            .ok_or(RegistrationError::InvalidVersion)?;
        let (major, minor) = text
            .split_at_checked(dot)
            .ok_or(RegistrationError::InvalidVersion)?;
        let number = |part: &[u8]| {
            text::parse_unsigned(part)
                .ok()
                .and_then(|v| u8::try_from(v).ok())
                .ok_or(RegistrationError::InvalidVersion)
        };
        Ok(Version {
            major: number(major)?,
            minor: number(minor.get(1..).unwrap_or(&[]))?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Register parameters, borrowed from the Uri-Query options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegisterParams<'a> {
    /// `ep`: the endpoint client name.
    pub endpoint: &'a str,
    /// `lt`: lifetime in seconds (absent: [`DEFAULT_LIFETIME`]).
    pub lifetime: Option<u32>,
    /// `lwm2m`: the client's LwM2M version (absent: 1.0).
    pub version: Option<Version>,
    /// `b`: binding (absent: U).
    pub binding: Option<Binding>,
    /// `sms`: MSISDN.
    pub sms: Option<&'a str>,
    /// A bare `Q` parameter (LwM2M 1.1 queue mode).
    pub queue: bool,
}

/// Update parameters, borrowed from the Uri-Query options; all optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UpdateParams<'a> {
    /// `lt`: new lifetime in seconds.
    pub lifetime: Option<u32>,
    /// `b`: new binding.
    pub binding: Option<Binding>,
    /// `sms`: new MSISDN.
    pub sms: Option<&'a str>,
    /// A bare `Q` parameter.
    pub queue: bool,
}

/// One query parameter, formatted as a Uri-Query option value by `Display` (`lt=300`, `Q`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryParam<'a> {
    /// `ep=...`
    Endpoint(&'a str),
    /// `lt=...`
    Lifetime(u32),
    /// `lwm2m=...`
    Version(Version),
    /// `b=...`
    Binding(Binding),
    /// `sms=...`
    Sms(&'a str),
    /// `Q`
    Queue,
}

impl fmt::Display for QueryParam<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryParam::Endpoint(ep) => write!(f, "ep={ep}"),
            QueryParam::Lifetime(lt) => write!(f, "lt={lt}"),
            QueryParam::Version(v) => write!(f, "lwm2m={v}"),
            QueryParam::Binding(b) => write!(f, "b={b}"),
            QueryParam::Sms(sms) => write!(f, "sms={sms}"),
            QueryParam::Queue => f.write_str("Q"),
        }
    }
}

impl<'a> RegisterParams<'a> {
    /// Parses the Uri-Query option values of a Register request.
    pub fn parse<I, T>(options: I) -> Result<RegisterParams<'a>, RegistrationError>
    where
        I: IntoIterator<Item = &'a T>,
        T: AsRef<[u8]> + ?Sized + 'a,
    {
        let fields = Fields::parse(options, true)?;
        let endpoint = fields.endpoint.ok_or(RegistrationError::MissingEndpoint)?;
        Ok(RegisterParams {
            endpoint,
            lifetime: fields.lifetime,
            version: fields.version,
            binding: fields.binding,
            sms: fields.sms,
            queue: fields.queue,
        })
    }

    /// Parses a query string joined with `&` (`ep=node&lt=300`), as logs and tools show it.
    pub fn parse_query(query: &'a str) -> Result<RegisterParams<'a>, RegistrationError> {
        RegisterParams::parse(query.split('&').filter(|s| !s.is_empty()))
    }

    /// Queue mode, whichever way the client asked for it (`b=UQ` or `Q`).
    pub fn queue_mode(&self) -> bool {
        self.queue || self.binding.is_some_and(|b| b.contains(Binding::Q))
    }

    /// The lifetime, or the default when `lt` was absent.
    pub fn lifetime_or_default(&self) -> u32 {
        self.lifetime.unwrap_or(DEFAULT_LIFETIME)
    }

    /// The parameters to send, in the order `ep`, `lt`, `lwm2m`, `b`, `sms`, `Q`.
    pub fn options(&self) -> impl Iterator<Item = QueryParam<'a>> + use<'a> {
        [
            Some(QueryParam::Endpoint(self.endpoint)),
            self.lifetime.map(QueryParam::Lifetime),
            self.version.map(QueryParam::Version),
            self.binding.map(QueryParam::Binding),
            self.sms.map(QueryParam::Sms),
            self.queue.then_some(QueryParam::Queue),
        ]
        .into_iter()
        .flatten()
    }

    /// Writes the parameters as one `&`-joined query string.
    pub fn write_query<W: Write>(&self, out: &mut W) -> fmt::Result {
        write_joined(out, self.options())
    }
}

impl<'a> UpdateParams<'a> {
    /// Parses the Uri-Query option values of an Update request.
    pub fn parse<I, T>(options: I) -> Result<UpdateParams<'a>, RegistrationError>
    where
        I: IntoIterator<Item = &'a T>,
        T: AsRef<[u8]> + ?Sized + 'a,
    {
        let fields = Fields::parse(options, false)?;
        Ok(UpdateParams {
            lifetime: fields.lifetime,
            binding: fields.binding,
            sms: fields.sms,
            queue: fields.queue,
        })
    }

    /// Parses a query string joined with `&`.
    pub fn parse_query(query: &'a str) -> Result<UpdateParams<'a>, RegistrationError> {
        UpdateParams::parse(query.split('&').filter(|s| !s.is_empty()))
    }

    /// Queue mode, whichever way the client asked for it.
    pub fn queue_mode(&self) -> bool {
        self.queue || self.binding.is_some_and(|b| b.contains(Binding::Q))
    }

    /// The parameters to send, in the order `lt`, `b`, `sms`, `Q`.
    pub fn options(&self) -> impl Iterator<Item = QueryParam<'a>> + use<'a> {
        [
            self.lifetime.map(QueryParam::Lifetime),
            self.binding.map(QueryParam::Binding),
            self.sms.map(QueryParam::Sms),
            self.queue.then_some(QueryParam::Queue),
        ]
        .into_iter()
        .flatten()
    }

    /// Writes the parameters as one `&`-joined query string.
    pub fn write_query<W: Write>(&self, out: &mut W) -> fmt::Result {
        write_joined(out, self.options())
    }
}

fn write_joined<'a, W: Write>(
    out: &mut W,
    params: impl Iterator<Item = QueryParam<'a>>,
) -> fmt::Result {
    for (i, param) in params.enumerate() {
        if i > 0 {
            out.write_char('&')?;
        }
        write!(out, "{param}")?;
    }
    Ok(())
}

/// Everything either request may carry.
#[derive(Default)]
struct Fields<'a> {
    endpoint: Option<&'a str>,
    lifetime: Option<u32>,
    version: Option<Version>,
    binding: Option<Binding>,
    sms: Option<&'a str>,
    queue: bool,
}

impl<'a> Fields<'a> {
    fn parse<I, T>(options: I, register: bool) -> Result<Fields<'a>, RegistrationError>
    where
        I: IntoIterator<Item = &'a T>,
        T: AsRef<[u8]> + ?Sized + 'a,
    {
        let mut fields = Fields::default();
        let mut seen = 0u8;
        for option in options {
            let option = option.as_ref();
            let (name, value) = match option.iter().position(|&b| b == b'=') {
                Some(eq) => {
                    let (name, value) = option.split_at_checked(eq).unwrap_or((option, &[]));
                    (name, Some(value.get(1..).unwrap_or(&[])))
                }
                None => (option, None),
            };
            let Some(key) = Key::from_name(name) else {
                continue;
            };
            if !register && matches!(key, Key::Endpoint | Key::Version) {
                continue;
            }
            if seen & key.bit() != 0 {
                return Err(RegistrationError::DuplicateKey(key));
            }
            seen |= key.bit();
            if key == Key::Queue {
                if value.is_some() {
                    return Err(RegistrationError::UnexpectedValue(key));
                }
                fields.queue = true;
                continue;
            }
            let value = value.ok_or(RegistrationError::MissingValue(key))?;
            match key {
                Key::Endpoint => {
                    let ep = utf8(value)?;
                    if ep.is_empty() {
                        return Err(RegistrationError::EmptyEndpoint);
                    }
                    fields.endpoint = Some(ep);
                }
                Key::Lifetime => {
                    let lt = text::parse_unsigned(value)
                        .ok()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or(RegistrationError::InvalidLifetime)?;
                    if lt == 0 {
                        return Err(RegistrationError::ZeroLifetime);
                    }
                    fields.lifetime = Some(lt);
                }
                Key::Version => fields.version = Some(Version::parse(value)?),
                Key::Binding => fields.binding = Some(Binding::parse(value)?),
                Key::Sms => {
                    let sms = utf8(value)?;
                    if sms.is_empty() {
                        return Err(RegistrationError::MissingValue(key));
                    }
                    fields.sms = Some(sms);
                }
                Key::Queue => {}
            }
        }
        Ok(fields)
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, RegistrationError> {
    core::str::from_utf8(bytes).map_err(|_| RegistrationError::NotUtf8)
}

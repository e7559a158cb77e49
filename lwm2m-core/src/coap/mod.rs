//! CoAP messages over UDP (RFC 7252 §3): a zero-copy decoder and a writer into a caller's buffer,
//! with no allocation and no panic, so the device (which cannot use coap-lite) and the tests that
//! speak to it share one codec.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver| T |  TKL  |      Code     |          Message ID           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Token (if any, TKL bytes) ...
//! |   Options (if any) ...
//! |1 1 1 1 1 1 1 1|    Payload (if any) ...
//! ```
//!
//! [`Message::decode`] validates the whole datagram once; afterwards the accessors cannot fail
//! (except [`Message::uint_option`], whose value may be too long). [`MessageWriter`] only produces
//! datagrams that [`Message::decode`] accepts.
//!
//! The option header encoding is canonical: the extended forms are biased (13 + byte,
//! 269 + u16), so every delta and length has exactly one encoding. Hence decoding a datagram and
//! writing the same fields back with [`MessageWriter`] gives back the same bytes.

use core::fmt;
use core::iter::FusedIterator;

use crate::block::encode_uint_option;

pub mod params;

/// The only CoAP version (RFC 7252 §3: "Implementations of this specification MUST set this
/// field to 1").
pub const VERSION: u8 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 4;
/// Longest token (TKL 9 to 15 are reserved).
pub const MAX_TOKEN_LEN: usize = 8;
/// The byte that ends the options and starts a non-empty payload.
pub const PAYLOAD_MARKER: u8 = 0xFF;
/// Longest option value the 14 extended length form can express: 65535 + 269.
pub const MAX_OPTION_LEN: usize = 65_804;

/// Why a datagram was refused, or a message could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoapError {
    /// The datagram ends inside the header, the token, an option header or an option value.
    Truncated,
    /// The version field is not 1 (such a datagram must be silently ignored, RFC 7252 §3).
    BadVersion,
    /// TKL is 9 to 15 (reserved), or a token longer than 8 bytes was given to the writer.
    TokenTooLong,
    /// An option delta or length nibble is 15 outside the payload marker.
    ReservedOptionNibble,
    /// The option number went past 65535.
    OptionNumberOverflow,
    /// A payload marker with no payload after it (RFC 7252 §3: a format error).
    EmptyPayload,
    /// A message with code 0.00 that has a token, options or a payload (RFC 7252 §4.1).
    EmptyMessageNotEmpty,
    /// A uint option value longer than 4 bytes.
    BadUint,
    /// The writer's buffer is too small.
    BufferFull,
    /// An option was written after an option with a higher number.
    OptionsOutOfOrder,
    /// An option value longer than 65804 bytes, which no option header can express.
    OptionTooLong,
}

impl fmt::Display for CoapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CoapError::Truncated => "CoAP message truncated",
            CoapError::BadVersion => "CoAP version is not 1",
            CoapError::TokenTooLong => "CoAP token longer than 8 bytes",
            CoapError::ReservedOptionNibble => "CoAP option delta or length nibble 15",
            CoapError::OptionNumberOverflow => "CoAP option number above 65535",
            CoapError::EmptyPayload => "CoAP payload marker without payload",
            CoapError::EmptyMessageNotEmpty => {
                "CoAP Empty message (0.00) with token, options or payload"
            }
            CoapError::BadUint => "CoAP uint option longer than 4 bytes",
            CoapError::BufferFull => "CoAP message does not fit the buffer",
            CoapError::OptionsOutOfOrder => "CoAP options not in ascending number order",
            CoapError::OptionTooLong => "CoAP option value longer than 65804 bytes",
        })
    }
}

/// The message type (the T field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// CON (0): needs an acknowledgement.
    Confirmable,
    /// NON (1).
    NonConfirmable,
    /// ACK (2).
    Acknowledgement,
    /// RST (3).
    Reset,
}

impl MessageType {
    /// The type from the two low bits of `bits` (higher bits are ignored).
    pub fn from_bits(bits: u8) -> MessageType {
        match bits & 0x03 {
            0 => MessageType::Confirmable,
            1 => MessageType::NonConfirmable,
            2 => MessageType::Acknowledgement,
            _ => MessageType::Reset,
        }
    }

    /// The 2-bit value of the T field.
    pub fn bits(self) -> u8 {
        match self {
            MessageType::Confirmable => 0,
            MessageType::NonConfirmable => 1,
            MessageType::Acknowledgement => 2,
            MessageType::Reset => 3,
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageType::Confirmable => "CON",
            MessageType::NonConfirmable => "NON",
            MessageType::Acknowledgement => "ACK",
            MessageType::Reset => "RST",
        })
    }
}

/// A message code: `class << 5 | detail`, printed as `c.dd` (2.05).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

const fn code(class: u8, detail: u8) -> Code {
    Code((class & 0x07).wrapping_shl(5) | (detail & 0x1F))
}

impl Code {
    /// 0.00: an Empty message (ACK, RST, or a CON ping).
    pub const EMPTY: Code = code(0, 0);
    /// 0.01 GET.
    pub const GET: Code = code(0, 1);
    /// 0.02 POST.
    pub const POST: Code = code(0, 2);
    /// 0.03 PUT.
    pub const PUT: Code = code(0, 3);
    /// 0.04 DELETE.
    pub const DELETE: Code = code(0, 4);
    /// 0.05 FETCH (RFC 8132).
    pub const FETCH: Code = code(0, 5);
    /// 0.06 PATCH (RFC 8132).
    pub const PATCH: Code = code(0, 6);
    /// 0.07 iPATCH (RFC 8132).
    pub const IPATCH: Code = code(0, 7);
    /// 2.01 Created.
    pub const CREATED: Code = code(2, 1);
    /// 2.02 Deleted.
    pub const DELETED: Code = code(2, 2);
    /// 2.03 Valid.
    pub const VALID: Code = code(2, 3);
    /// 2.04 Changed.
    pub const CHANGED: Code = code(2, 4);
    /// 2.05 Content.
    pub const CONTENT: Code = code(2, 5);
    /// 2.31 Continue (RFC 7959).
    pub const CONTINUE: Code = code(2, 31);
    /// 4.00 Bad Request.
    pub const BAD_REQUEST: Code = code(4, 0);
    /// 4.01 Unauthorized.
    pub const UNAUTHORIZED: Code = code(4, 1);
    /// 4.02 Bad Option.
    pub const BAD_OPTION: Code = code(4, 2);
    /// 4.03 Forbidden.
    pub const FORBIDDEN: Code = code(4, 3);
    /// 4.04 Not Found.
    pub const NOT_FOUND: Code = code(4, 4);
    /// 4.05 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Code = code(4, 5);
    /// 4.06 Not Acceptable.
    pub const NOT_ACCEPTABLE: Code = code(4, 6);
    /// 4.08 Request Entity Incomplete (RFC 7959).
    pub const REQUEST_ENTITY_INCOMPLETE: Code = code(4, 8);
    /// 4.12 Precondition Failed.
    pub const PRECONDITION_FAILED: Code = code(4, 12);
    /// 4.13 Request Entity Too Large.
    pub const REQUEST_ENTITY_TOO_LARGE: Code = code(4, 13);
    /// 4.15 Unsupported Content-Format.
    pub const UNSUPPORTED_CONTENT_FORMAT: Code = code(4, 15);
    /// 4.29 Too Many Requests (RFC 8516): try again after Max-Age seconds.
    pub const TOO_MANY_REQUESTS: Code = code(4, 29);
    /// 5.00 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Code = code(5, 0);
    /// 5.01 Not Implemented.
    pub const NOT_IMPLEMENTED: Code = code(5, 1);
    /// 5.03 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Code = code(5, 3);

    /// The code `class.detail`; `None` when class > 7 or detail > 31.
    pub const fn from_parts(class: u8, detail: u8) -> Option<Code> {
        if class > 7 || detail > 31 {
            None
        } else {
            Some(code(class, detail))
        }
    }

    /// The class (0 request, 2 success, 4 client error, 5 server error; 1, 6, 7 reserved).
    pub const fn class(self) -> u8 {
        self.0.wrapping_shr(5)
    }

    /// The detail (0 to 31).
    pub const fn detail(self) -> u8 {
        self.0 & 0x1F
    }

    /// 0.00.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// A method: class 0 other than 0.00.
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.detail() != 0
    }

    /// Class 2, 4 or 5.
    pub const fn is_response(self) -> bool {
        matches!(self.class(), 2 | 4 | 5)
    }

    /// Class 2.
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }

    /// Class 1, 6 or 7: a message with such a code is rejected (RFC 7252 §4.2, §4.3).
    pub const fn is_reserved_class(self) -> bool {
        matches!(self.class(), 1 | 6 | 7)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

/// Option numbers (RFC 7252 §5.10, RFC 7641, RFC 7959, RFC 7967) and their number-encoded
/// properties (RFC 7252 §5.4.6).
pub mod option {
    /// If-Match.
    pub const IF_MATCH: u16 = 1;
    /// Uri-Host.
    pub const URI_HOST: u16 = 3;
    /// ETag.
    pub const ETAG: u16 = 4;
    /// If-None-Match.
    pub const IF_NONE_MATCH: u16 = 5;
    /// Observe (RFC 7641).
    pub const OBSERVE: u16 = 6;
    /// Uri-Port.
    pub const URI_PORT: u16 = 7;
    /// Location-Path.
    pub const LOCATION_PATH: u16 = 8;
    /// Uri-Path.
    pub const URI_PATH: u16 = 11;
    /// Content-Format.
    pub const CONTENT_FORMAT: u16 = 12;
    /// Max-Age.
    pub const MAX_AGE: u16 = 14;
    /// Uri-Query.
    pub const URI_QUERY: u16 = 15;
    /// Accept.
    pub const ACCEPT: u16 = 17;
    /// Location-Query.
    pub const LOCATION_QUERY: u16 = 20;
    /// Block2 (RFC 7959).
    pub const BLOCK2: u16 = 23;
    /// Block1 (RFC 7959).
    pub const BLOCK1: u16 = 27;
    /// Size2 (RFC 7959).
    pub const SIZE2: u16 = 28;
    /// Proxy-Uri.
    pub const PROXY_URI: u16 = 35;
    /// Proxy-Scheme.
    pub const PROXY_SCHEME: u16 = 39;
    /// Size1.
    pub const SIZE1: u16 = 60;
    /// No-Response (RFC 7967).
    pub const NO_RESPONSE: u16 = 258;

    /// Every option named here, ascending: what an endpoint that implements all of them
    /// recognises (RFC 7252 §5.4.1). OSCORE (9, RFC 8613) is not among them.
    pub const ALL: [u16; 20] = [
        IF_MATCH,
        URI_HOST,
        ETAG,
        IF_NONE_MATCH,
        OBSERVE,
        URI_PORT,
        LOCATION_PATH,
        URI_PATH,
        CONTENT_FORMAT,
        MAX_AGE,
        URI_QUERY,
        ACCEPT,
        LOCATION_QUERY,
        BLOCK2,
        BLOCK1,
        SIZE2,
        PROXY_URI,
        PROXY_SCHEME,
        SIZE1,
        NO_RESPONSE,
    ];

    /// Critical options (odd numbers) must be understood or the message rejected.
    pub const fn is_critical(number: u16) -> bool {
        number & 1 == 1
    }

    /// Unsafe-to-forward options (bit 1 set).
    pub const fn is_unsafe(number: u16) -> bool {
        number & 2 == 2
    }

    /// Safe-to-forward options that are not part of the cache key (bits 2-4 all set).
    pub const fn is_no_cache_key(number: u16) -> bool {
        number & 0x1E == 0x1C
    }
}

/// A decoded message: a view into the datagram it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Message<'a> {
    /// The message type.
    pub ty: MessageType,
    /// The code.
    pub code: Code,
    /// The message id.
    pub message_id: u16,
    token: &'a [u8],
    /// The option bytes, already validated.
    options: &'a [u8],
    /// The payload (never the marker; empty when there is none).
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// Validates the whole datagram and returns a view into it: version 1, TKL at most 8, every
    /// option header well formed (nibble 15 is reserved, the extended bytes and the value are
    /// present, the number stays within u16), a payload marker followed by at least one byte,
    /// and an Empty message (0.00) that is exactly the 4-byte header.
    ///
    /// Checks are made in that order, so a datagram with several faults reports the first.
    /// Reserved code classes (1, 6, 7) decode; see [`Code::is_reserved_class`].
    pub fn decode(datagram: &'a [u8]) -> Result<Message<'a>, CoapError> {
        let (&[first, code, id_hi, id_lo], rest) = datagram
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(CoapError::Truncated)?;
        if first.wrapping_shr(6) != VERSION {
            return Err(CoapError::BadVersion);
        }
        let tkl = usize::from(first & 0x0F);
        if tkl > MAX_TOKEN_LEN {
            return Err(CoapError::TokenTooLong);
        }
        let code = Code(code);
        if code.is_empty() && (tkl != 0 || !rest.is_empty()) {
            return Err(CoapError::EmptyMessageNotEmpty);
        }
        let (token, options_start) = rest.split_at_checked(tkl).ok_or(CoapError::Truncated)?;

        let mut rest = options_start;
        let mut number = 0u16;
        let payload = loop {
            match rest.split_first() {
                None => break rest,
                Some((&PAYLOAD_MARKER, after)) => {
                    if after.is_empty() {
                        return Err(CoapError::EmptyPayload);
                    }
                    break after;
                }
                Some(_) => {
                    let (n, _value, after) = read_option(rest, number)?;
                    number = n;
                    rest = after;
                }
            }
        };
        let options_len = options_start.len().saturating_sub(rest.len());
        let options = options_start.get(..options_len).unwrap_or(&[]);

        Ok(Message {
            ty: MessageType::from_bits(first.wrapping_shr(4)),
            code,
            message_id: u16::from_be_bytes([id_hi, id_lo]),
            token,
            options,
            payload,
        })
    }

    /// The message id of a Confirmable datagram that does not decode, so the caller can reject
    /// it with a Reset (RFC 7252 §4.2). `None` when the datagram decodes, is shorter than the
    /// header, is not CON, or has a version other than 1 (silently ignored, RFC 7252 §3).
    ///
    /// A CON that decodes may still need a Reset (a ping, a reserved code class, an unknown
    /// critical option in a non-request); that is the caller's decision.
    pub fn rejectable_con_id(datagram: &[u8]) -> Option<u16> {
        let &[first, _, id_hi, id_lo] = datagram.first_chunk::<HEADER_LEN>()?;
        let con = MessageType::from_bits(first.wrapping_shr(4)) == MessageType::Confirmable;
        if first.wrapping_shr(6) != VERSION || !con {
            return None;
        }
        match Message::decode(datagram) {
            Ok(_) => None,
            Err(_) => Some(u16::from_be_bytes([id_hi, id_lo])),
        }
    }

    /// The token (0 to 8 bytes).
    pub fn token(&self) -> &'a [u8] {
        self.token
    }

    /// Every option as `(number, value)`, in the order of the datagram (ascending numbers;
    /// repeated options in their order).
    pub fn options(&self) -> Options<'a> {
        Options {
            rest: self.options,
            number: 0,
        }
    }

    /// Every value of option `number`, in order.
    pub fn option_values(&self, number: u16) -> OptionValues<'a> {
        OptionValues {
            options: self.options(),
            number,
        }
    }

    /// The first value of option `number`.
    pub fn option(&self, number: u16) -> Option<&'a [u8]> {
        self.option_values(number).next()
    }

    /// The first value of option `number` as a uint (0 to 4 bytes, big-endian, leading zeros
    /// allowed); `Ok(None)` when absent.
    pub fn uint_option(&self, number: u16) -> Result<Option<u32>, CoapError> {
        match self.option(number) {
            None => Ok(None),
            Some(value) if value.len() > 4 => Err(CoapError::BadUint),
            Some(value) => Ok(Some(
                value
                    .iter()
                    .fold(0u32, |acc, &b| acc.wrapping_shl(8) | u32::from(b)),
            )),
        }
    }

    /// The Uri-Path segments.
    pub fn path(&self) -> OptionValues<'a> {
        self.option_values(option::URI_PATH)
    }

    /// The Uri-Query values.
    pub fn queries(&self) -> OptionValues<'a> {
        self.option_values(option::URI_QUERY)
    }

    /// The first critical option whose number is not in `known` (the caller then answers 4.02
    /// Bad Option to a request, or rejects a response, RFC 7252 §5.4.1).
    pub fn unknown_critical_option(&self, known: &[u16]) -> Option<u16> {
        self.options()
            .map(|(number, _)| number)
            .find(|number| option::is_critical(*number) && !known.contains(number))
    }
}

/// Decodes one option header and value at the start of `bytes` (which must not start with the
/// payload marker), after the option numbered `previous`; returns the number, the value and
/// what follows.
fn read_option(bytes: &[u8], previous: u16) -> Result<(u16, &[u8], &[u8]), CoapError> {
    let (&head, rest) = bytes.split_first().ok_or(CoapError::Truncated)?;
    let delta_nibble = head.wrapping_shr(4);
    let length_nibble = head & 0x0F;
    if delta_nibble == 15 || length_nibble == 15 {
        return Err(CoapError::ReservedOptionNibble);
    }
    let (delta, rest) = read_extended(delta_nibble, rest)?;
    let (length, rest) = read_extended(length_nibble, rest)?;
    let number = u32::from(previous)
        .checked_add(delta)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(CoapError::OptionNumberOverflow)?;
    let length = usize::try_from(length).map_err(|_| CoapError::Truncated)?;
    let (value, rest) = rest.split_at_checked(length).ok_or(CoapError::Truncated)?;
    Ok((number, value, rest))
}

/// The value of a delta or length nibble (0 to 14) with its extended bytes.
fn read_extended(nibble: u8, rest: &[u8]) -> Result<(u32, &[u8]), CoapError> {
    match nibble {
        0..=12 => Ok((u32::from(nibble), rest)),
        13 => {
            let (&b, rest) = rest.split_first().ok_or(CoapError::Truncated)?;
            Ok((u32::from(b).wrapping_add(13), rest))
        }
        14 => {
            let (&[hi, lo], rest) = rest.split_first_chunk::<2>().ok_or(CoapError::Truncated)?;
            Ok((
                u32::from(u16::from_be_bytes([hi, lo])).wrapping_add(269),
                rest,
            ))
        }
        _ => Err(CoapError::ReservedOptionNibble),
    }
}

/// The nibble and extended bytes (0, 1 or 2 of them) for a delta or length; `None` above 65804.
fn write_extended(value: usize) -> Option<(u8, [u8; 2], usize)> {
    match value {
        0..=12 => Some((u8::try_from(value).ok()?, [0, 0], 0)),
        13..=268 => Some((13, [u8::try_from(value.checked_sub(13)?).ok()?, 0], 1)),
        _ => {
            let v = u16::try_from(value.checked_sub(269)?).ok()?;
            Some((14, v.to_be_bytes(), 2))
        }
    }
}

/// Iterator over a message's options as `(number, value)`.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
    number: u16,
}

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        if self.rest.is_empty() {
            return None;
        }
        match read_option(self.rest, self.number) {
            Ok((number, value, rest)) => {
                self.number = number;
                self.rest = rest;
                Some((number, value))
            }
            // Unreachable after `Message::decode`; stop rather than panic.
            Err(_) => {
                self.rest = &[];
                None
            }
        }
    }
}

impl FusedIterator for Options<'_> {}

/// Iterator over the values of one option number.
#[derive(Debug, Clone)]
pub struct OptionValues<'a> {
    options: Options<'a>,
    number: u16,
}

impl<'a> Iterator for OptionValues<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        for (number, value) in self.options.by_ref() {
            if number == self.number {
                return Some(value);
            }
            if number > self.number {
                // Options ascend: none of this number can follow.
                self.options.rest = &[];
                return None;
            }
        }
        None
    }
}

impl FusedIterator for OptionValues<'_> {}

/// Writes a message into a caller's buffer: header and token first, then options in ascending
/// number order, then the payload. Every method either writes its whole part or leaves the
/// message as it was, and only datagrams that [`Message::decode`] accepts can be produced.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    last_option: u16,
    empty: bool,
}

impl<'b> MessageWriter<'b> {
    /// Writes the header and the token.
    pub fn new(
        buf: &'b mut [u8],
        ty: MessageType,
        code: Code,
        message_id: u16,
        token: &[u8],
    ) -> Result<Self, CoapError> {
        let tkl = u8::try_from(token.len())
            .ok()
            .filter(|&tkl| usize::from(tkl) <= MAX_TOKEN_LEN)
            .ok_or(CoapError::TokenTooLong)?;
        if code.is_empty() && tkl != 0 {
            return Err(CoapError::EmptyMessageNotEmpty);
        }
        let len = HEADER_LEN
            .checked_add(token.len())
            .ok_or(CoapError::BufferFull)?;
        let dst = buf.get_mut(..len).ok_or(CoapError::BufferFull)?;
        let [id_hi, id_lo] = message_id.to_be_bytes();
        let first = VERSION.wrapping_shl(6) | ty.bits().wrapping_shl(4) | tkl;
        let bytes = [first, code.0, id_hi, id_lo]
            .into_iter()
            .chain(token.iter().copied());
        for (slot, b) in dst.iter_mut().zip(bytes) {
            *slot = b;
        }
        Ok(MessageWriter {
            buf,
            len,
            last_option: 0,
            empty: code.is_empty(),
        })
    }

    /// Appends an option; `number` must not be lower than the previous option's. Delta and
    /// length take their shortest form (the only one: the extended forms are biased).
    pub fn option(&mut self, number: u16, value: &[u8]) -> Result<&mut Self, CoapError> {
        if self.empty {
            return Err(CoapError::EmptyMessageNotEmpty);
        }
        let delta = number
            .checked_sub(self.last_option)
            .ok_or(CoapError::OptionsOutOfOrder)?;
        let (delta_nibble, delta_ext, delta_ext_len) =
            write_extended(usize::from(delta)).ok_or(CoapError::OptionNumberOverflow)?;
        let (length_nibble, length_ext, length_ext_len) =
            write_extended(value.len()).ok_or(CoapError::OptionTooLong)?;
        let total = 1usize
            .checked_add(delta_ext_len)
            .and_then(|n| n.checked_add(length_ext_len))
            .and_then(|n| n.checked_add(value.len()))
            .ok_or(CoapError::BufferFull)?;
        let end = self.len.checked_add(total).ok_or(CoapError::BufferFull)?;
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(CoapError::BufferFull)?;
        let head = delta_nibble.wrapping_shl(4) | length_nibble;
        let bytes = core::iter::once(head)
            .chain(delta_ext.into_iter().take(delta_ext_len))
            .chain(length_ext.into_iter().take(length_ext_len))
            .chain(value.iter().copied());
        for (slot, b) in dst.iter_mut().zip(bytes) {
            *slot = b;
        }
        self.len = end;
        self.last_option = number;
        Ok(self)
    }

    /// Appends a uint option in its shortest form (0 is the empty value).
    pub fn uint_option(&mut self, number: u16, value: u32) -> Result<&mut Self, CoapError> {
        let (bytes, len) = encode_uint_option(value);
        self.option(number, bytes.get(..len).unwrap_or(&[]))
    }

    /// Appends `path` as Uri-Path options, one per segment, as RFC 7252 §6.4 step 8 does:
    /// `""` and `"/"` add nothing, `"/5/0/3"` adds `5`, `0`, `3`, and empty segments
    /// (`"/a//b"`, `"/a/"`) are kept. Segments are written as given (no percent-decoding).
    /// All segments or none are written.
    pub fn path(&mut self, path: &str) -> Result<&mut Self, CoapError> {
        self.path_options(option::URI_PATH, path)
    }

    /// Appends `path` as Location-Path options, split like [`MessageWriter::path`].
    pub fn location_path(&mut self, path: &str) -> Result<&mut Self, CoapError> {
        self.path_options(option::LOCATION_PATH, path)
    }

    fn path_options(&mut self, number: u16, path: &str) -> Result<&mut Self, CoapError> {
        let path = path.strip_prefix('/').unwrap_or(path);
        if path.is_empty() {
            return Ok(self);
        }
        let (len, last_option) = (self.len, self.last_option);
        for segment in crate::ascii::split(path, b'/') {
            if let Err(e) = self.option(number, segment.as_bytes()) {
                self.len = len;
                self.last_option = last_option;
                return Err(e);
            }
        }
        Ok(self)
    }

    /// Appends the payload marker and `payload` (nothing when empty); returns the datagram's
    /// length.
    pub fn payload(self, payload: &[u8]) -> Result<usize, CoapError> {
        if payload.is_empty() {
            return Ok(self.finish());
        }
        if self.empty {
            return Err(CoapError::EmptyMessageNotEmpty);
        }
        let end = self
            .len
            .checked_add(1)
            .and_then(|n| n.checked_add(payload.len()))
            .ok_or(CoapError::BufferFull)?;
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(CoapError::BufferFull)?;
        let bytes = core::iter::once(PAYLOAD_MARKER).chain(payload.iter().copied());
        for (slot, b) in dst.iter_mut().zip(bytes) {
            *slot = b;
        }
        Ok(end)
    }

    /// Lets `f` encode the payload straight into the rest of the buffer (after room for the
    /// marker) and return how many bytes it wrote; the marker is placed only when that is more
    /// than 0. Returns the datagram's length. `f`'s error is passed through; a count larger
    /// than the space given is [`CoapError::BufferFull`].
    pub fn payload_with<E>(self, f: impl FnOnce(&mut [u8]) -> Result<usize, E>) -> Result<usize, E>
    where
        E: From<CoapError>,
    {
        let MessageWriter {
            buf, len, empty, ..
        } = self;
        let body_start = len.saturating_add(1);
        let mut no_room: [u8; 0] = [];
        let (marker, body) = match buf.split_at_mut_checked(body_start) {
            Some((head, body)) => (head.last_mut(), body),
            None => (None, &mut no_room[..]),
        };
        let written = f(body)?;
        if written == 0 {
            return Ok(len);
        }
        if written > body.len() {
            return Err(E::from(CoapError::BufferFull));
        }
        if empty {
            return Err(E::from(CoapError::EmptyMessageNotEmpty));
        }
        let marker = marker.ok_or(E::from(CoapError::BufferFull))?;
        *marker = PAYLOAD_MARKER;
        body_start
            .checked_add(written)
            .ok_or(E::from(CoapError::BufferFull))
    }

    /// Ends the message without a payload; returns the datagram's length.
    pub fn finish(self) -> usize {
        self.len
    }
}

/// Writes an Empty ACK (`0x60 0x00` + message id): the acknowledgement of a CON whose response
/// comes later, or of a CON response. Returns 4.
pub fn empty_ack(buf: &mut [u8], message_id: u16) -> Result<usize, CoapError> {
    MessageWriter::new(
        buf,
        MessageType::Acknowledgement,
        Code::EMPTY,
        message_id,
        &[],
    )
    .map(MessageWriter::finish)
}

/// Writes a Reset (`0x70 0x00` + message id): the rejection of a message. Returns 4.
pub fn reset(buf: &mut [u8], message_id: u16) -> Result<usize, CoapError> {
    MessageWriter::new(buf, MessageType::Reset, Code::EMPTY, message_id, &[])
        .map(MessageWriter::finish)
}

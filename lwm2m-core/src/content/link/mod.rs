//! CoRE Link Format (RFC 6690, Content-Format 40): the Register payload (`</1/0>,</3/0>,</5/0>`)
//! and Discover answers (`</5/0/3>;dim=1`).
//!
//! The parser is strict RFC 6690: no whitespace, `<target>` then `;name`, `;name=token` or
//! `;name="quoted string"` (which may hold `,` and `;`), links separated by `,`. Values are
//! returned as written (zero copy); [`ParamValue::unescaped`] resolves `\"` and `\\`.

mod parse;
mod write;

pub use parse::{Link, LinkParser, ParamValue, Params};
pub use write::LinkWriter;

use core::fmt;

/// Why link format was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkError {
    /// A link does not start with `<` (also: an empty link between commas, a trailing comma).
    ExpectedTarget,
    /// No `>` closes the target.
    UnterminatedTarget,
    /// A character a target may not hold (space, `<`, `"`, control characters).
    InvalidTargetChar,
    /// An empty parameter name or one with a character outside RFC 5987 `attr-char`.
    InvalidParamName,
    /// An empty or invalid unquoted value (RFC 6690 `ptoken`).
    InvalidToken,
    /// A quoted string without its closing `"`.
    UnterminatedQuote,
    /// Something other than `;`, `,` or the end after a target or parameter.
    ExpectedSeparator,
    /// The payload is not UTF-8.
    NotUtf8,
    /// The writer's output is full.
    BufferFull,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkError::ExpectedTarget => "expected '<' starting a link",
            LinkError::UnterminatedTarget => "link target without '>'",
            LinkError::InvalidTargetChar => "character not allowed in a link target",
            LinkError::InvalidParamName => "invalid link parameter name",
            LinkError::InvalidToken => "invalid link parameter value",
            LinkError::UnterminatedQuote => "quoted string without closing '\"'",
            LinkError::ExpectedSeparator => "expected ';', ',' or the end",
            LinkError::NotUtf8 => "link format is not UTF-8",
            LinkError::BufferFull => "output buffer full",
        })
    }
}

/// RFC 5987 `attr-char`, the characters of a parameter name.
fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// RFC 6690 `ptokenchar`, the characters of an unquoted value.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'/'
                | b':'
                | b'<'
                | b'='
                | b'>'
                | b'?'
                | b'@'
                | b'['
                | b']'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
        )
}

/// Characters allowed in a target: visible ASCII except `<`, `>` and `"`.
fn is_target_char(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"')
}

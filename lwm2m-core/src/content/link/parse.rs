//! Zero-copy link-format parsing.

use super::{LinkError, is_name_char, is_target_char, is_token_char};
use crate::{Path, PathError};

/// One link: its target and its (already validated) parameters, borrowed from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link<'a> {
    /// The text between `<` and `>`.
    pub target: &'a str,
    /// The parameter section, starting with `;` (or empty).
    params: &'a str,
}

/// A parameter value as written: a token, or the inside of a quoted string with escapes kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamValue<'a> {
    raw: &'a str,
    quoted: bool,
}

/// Iterates over the links of a payload; stops after the first error.
#[derive(Debug, Clone)]
pub struct LinkParser<'a> {
    rest: &'a str,
    first: bool,
    failed: bool,
}

/// Iterates over a link's parameters as `(name, value)`.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    rest: &'a str,
}

impl<'a> LinkParser<'a> {
    /// Parses `payload` (empty: no links).
    pub fn new(payload: &'a str) -> LinkParser<'a> {
        LinkParser {
            rest: payload,
            first: true,
            failed: false,
        }
    }

    /// Parses a payload given as bytes.
    pub fn from_bytes(payload: &'a [u8]) -> Result<LinkParser<'a>, LinkError> {
        core::str::from_utf8(payload)
            .map(LinkParser::new)
            .map_err(|_| LinkError::NotUtf8)
    }

    fn link(&mut self) -> Result<Link<'a>, LinkError> {
        let rest = if self.first {
            self.rest
        } else {
            // The previous link ended at a ',' (checked when it was parsed).
            self.rest.get(1..).ok_or(LinkError::ExpectedTarget)?
        };
        let rest = rest.strip_prefix('<').ok_or(LinkError::ExpectedTarget)?;
        let close = rest.find('>').ok_or(LinkError::UnterminatedTarget)?;
        let (target, rest) = rest
            .split_at_checked(close)
            .ok_or(LinkError::UnterminatedTarget)?;
        if !target.bytes().all(is_target_char) {
            return Err(LinkError::InvalidTargetChar);
        }
        let params_and_rest = rest.get(1..).unwrap_or("");
        let mut after = params_and_rest;
        while let Some(param) = after.strip_prefix(';') {
            let (_, _, next) = parse_param(param)?;
            after = next;
        }
        if !(after.is_empty() || after.starts_with(',')) {
            return Err(LinkError::ExpectedSeparator);
        }
        let params_len = params_and_rest.len().saturating_sub(after.len());
        let params = params_and_rest.get(..params_len).unwrap_or("");
        self.rest = after;
        self.first = false;
        Ok(Link { target, params })
    }
}

impl<'a> Iterator for LinkParser<'a> {
    type Item = Result<Link<'a>, LinkError>;

    fn next(&mut self) -> Option<Self::Item> {
        // After a link the rest is empty or starts with ','.
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let link = self.link();
        if link.is_err() {
            self.failed = true;
        }
        Some(link)
    }
}

impl<'a> Link<'a> {
    /// The parameters in order.
    pub fn params(&self) -> Params<'a> {
        Params { rest: self.params }
    }

    /// The first parameter called `name`: `Some(None)` when it has no value.
    pub fn param(&self, name: &str) -> Option<Option<ParamValue<'a>>> {
        self.params()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value)
    }

    /// The target as an LwM2M path (`</5/0>` is `/5/0`).
    pub fn path(&self) -> Result<Path, PathError> {
        Path::parse(self.target)
    }

    /// The target as a path below an alternate root such as `/lwm2m` (`</lwm2m/5/0>`).
    pub fn path_under(&self, root: &str) -> Result<Path, PathError> {
        let root = root.strip_suffix('/').unwrap_or(root);
        let rest = self
            .target
            .strip_prefix(root)
            .ok_or(PathError::MissingLeadingSlash)?;
        Path::parse(if rest.is_empty() { "/" } else { rest })
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a str, Option<ParamValue<'a>>);

    fn next(&mut self) -> Option<Self::Item> {
        let param = self.rest.strip_prefix(';')?;
        match parse_param(param) {
            Ok((name, value, rest)) => {
                self.rest = rest;
                Some((name, value))
            }
            Err(_) => {
                self.rest = "";
                None
            }
        }
    }
}

impl<'a> ParamValue<'a> {
    /// The value as written (inside the quotes for a quoted string, escapes kept).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// True when the value was a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// The value with `\x` escapes resolved to `x`.
    pub fn unescaped(&self) -> impl Iterator<Item = char> + 'a {
        let mut chars = self.raw.chars();
        let quoted = self.quoted;
        core::iter::from_fn(move || match chars.next()? {
            '\\' if quoted => chars.next(),
            c => Some(c),
        })
    }

    /// The value as an unsigned number, if it is one (`pmin=10`, `ct=11542`).
    pub fn as_u64(&self) -> Option<u64> {
        crate::content::text::parse_unsigned(self.raw.as_bytes()).ok()
    }
}

/// Parses `name[=value]` at the start of `s` (just after the `;`); returns the rest.
fn parse_param(s: &str) -> Result<(&str, Option<ParamValue<'_>>, &str), LinkError> {
    let name_len = s.bytes().take_while(|&b| is_name_char(b)).count();
    if name_len == 0 {
        return Err(LinkError::InvalidParamName);
    }
    let (name, rest) = s
        .split_at_checked(name_len)
        .ok_or(LinkError::InvalidParamName)?;
    let Some(value) = rest.strip_prefix('=') else {
        return Ok((name, None, rest));
    };
    if let Some(quoted) = value.strip_prefix('"') {
        let mut escaped = false;
        let close = quoted
            .char_indices()
            .find(|&(_, c)| {
                let done = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                done
            })
            .map(|(i, _)| i)
            .ok_or(LinkError::UnterminatedQuote)?;
        let raw = quoted.get(..close).ok_or(LinkError::UnterminatedQuote)?;
        let rest = quoted.get(close.saturating_add(1)..).unwrap_or("");
        return Ok((name, Some(ParamValue { raw, quoted: true }), rest));
    }
    let token_len = value.bytes().take_while(|&b| is_token_char(b)).count();
    if token_len == 0 {
        return Err(LinkError::InvalidToken);
    }
    let (raw, rest) = value
        .split_at_checked(token_len)
        .ok_or(LinkError::InvalidToken)?;
    Ok((name, Some(ParamValue { raw, quoted: false }), rest))
}

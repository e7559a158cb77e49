//! Link-format writing into any `core::fmt::Write` (a `String` on the server, a
//! [`SliceWriter`](crate::SliceWriter) on the device).

use super::{LinkError, is_name_char, is_target_char, is_token_char};
use crate::Path;
use core::fmt::Write;

/// Writes links and their parameters, inserting the `,` and `;` separators.
#[derive(Debug)]
pub struct LinkWriter<W> {
    out: W,
    links: usize,
}

impl<W: Write> LinkWriter<W> {
    /// Writes into `out`.
    pub fn new(out: W) -> LinkWriter<W> {
        LinkWriter { out, links: 0 }
    }

    /// Starts a link to `target` (`<target>`).
    pub fn target(&mut self, target: &str) -> Result<&mut Self, LinkError> {
        if !target.bytes().all(is_target_char) {
            return Err(LinkError::InvalidTargetChar);
        }
        let sep = if self.links == 0 { "" } else { "," };
        write!(self.out, "{sep}<{target}>").map_err(|_| LinkError::BufferFull)?;
        self.links = self.links.saturating_add(1);
        Ok(self)
    }

    /// Starts a link to an LwM2M path (`</5/0>`).
    pub fn path(&mut self, path: &Path) -> Result<&mut Self, LinkError> {
        let sep = if self.links == 0 { "" } else { "," };
        write!(self.out, "{sep}<{path}>").map_err(|_| LinkError::BufferFull)?;
        self.links = self.links.saturating_add(1);
        Ok(self)
    }

    /// The LwM2M root entry of a Register payload: `</>;rt="oma.lwm2m"`, with `;ct=N` if given.
    pub fn lwm2m_root(&mut self, content_format: Option<u16>) -> Result<&mut Self, LinkError> {
        self.target("/")?.param_quoted("rt", "oma.lwm2m")?;
        if let Some(ct) = content_format {
            self.param_uint("ct", u64::from(ct))?;
        }
        Ok(self)
    }

    /// A parameter without value (`;name`).
    pub fn param(&mut self, name: &str) -> Result<&mut Self, LinkError> {
        self.name(name)?;
        Ok(self)
    }

    /// A parameter with an unquoted value (`;name=value`); the value must be an RFC 6690 ptoken.
    pub fn param_token(&mut self, name: &str, value: &str) -> Result<&mut Self, LinkError> {
        if value.is_empty() || !value.bytes().all(is_token_char) {
            return Err(LinkError::InvalidToken);
        }
        self.name(name)?;
        write!(self.out, "={value}").map_err(|_| LinkError::BufferFull)?;
        Ok(self)
    }

    /// A parameter with a number (`;pmin=10`, `;ver=1.1` goes through [`Self::param_token`]).
    pub fn param_uint(&mut self, name: &str, value: u64) -> Result<&mut Self, LinkError> {
        self.name(name)?;
        write!(self.out, "={value}").map_err(|_| LinkError::BufferFull)?;
        Ok(self)
    }

    /// A parameter with a quoted value (`;rt="oma.lwm2m"`); `"` and `\` are escaped.
    pub fn param_quoted(&mut self, name: &str, value: &str) -> Result<&mut Self, LinkError> {
        self.name(name)?;
        let full = |_| LinkError::BufferFull;
        self.out.write_str("=\"").map_err(full)?;
        for part in value.split_inclusive(['"', '\\']) {
            match part.char_indices().last() {
                Some((i, c @ ('"' | '\\'))) => {
                    self.out
                        .write_str(part.get(..i).unwrap_or(""))
                        .map_err(full)?;
                    self.out.write_char('\\').map_err(full)?;
                    self.out.write_char(c).map_err(full)?;
                }
                _ => self.out.write_str(part).map_err(full)?,
            }
        }
        self.out.write_char('"').map_err(full)?;
        Ok(self)
    }

    /// Gives back the output.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn name(&mut self, name: &str) -> Result<(), LinkError> {
        if self.links == 0 {
            return Err(LinkError::ExpectedTarget);
        }
        if name.is_empty() || !name.bytes().all(is_name_char) {
            return Err(LinkError::InvalidParamName);
        }
        write!(self.out, ";{name}").map_err(|_| LinkError::BufferFull)
    }
}

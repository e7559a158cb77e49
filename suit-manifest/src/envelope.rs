//! The SUIT envelope (tag 107): its authentication wrapper, the bstr-wrapped manifest, severed
//! elements and integrated payloads, taken apart without decoding the manifest. Nothing in the
//! manifest is looked at before [`Envelope::authenticate`] has checked the signature and digest.

use crate::cbor::{KeySet, Reader, Wrapped};
use crate::cose::{self, TrustAnchor};
use crate::error::{Error, Feature, Part};
use crate::keys;
use crate::limits::{MAX_ENVELOPE_LEN, MAX_INTEGRATED_PAYLOADS};
use crate::manifest::Manifest;

/// Envelope keys that may hold a severed element, in the order [`Envelope`] stores them.
pub(crate) const SEVERABLE_KEYS: [u64; 4] = [
    keys::manifest::COSWID,
    keys::manifest::PAYLOAD_FETCH,
    keys::manifest::INSTALL,
    keys::manifest::TEXT,
];

/// A payload carried inside the envelope under a text key such as `"#image"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntegratedPayload<'a> {
    /// The key, e.g. `#image`; the manifest's URI parameter names it.
    pub name: &'a str,
    /// The payload bytes.
    pub bytes: &'a [u8],
}

/// Where an integrated payload that extends past the decoded prefix starts (streamed push).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadHead<'a> {
    /// The payload's key, e.g. `#image`.
    pub name: &'a str,
    /// Offset of the payload's first byte from the start of the envelope.
    pub offset: usize,
    /// Length of the payload in bytes.
    pub len: u64,
}

/// A structurally valid, not yet authenticated SUIT envelope.
#[derive(Clone, Debug)]
pub struct Envelope<'a> {
    auth: &'a [u8],
    manifest: Wrapped<'a>,
    severed: [Option<Wrapped<'a>>; SEVERABLE_KEYS.len()],
    payloads: [Option<IntegratedPayload<'a>>; MAX_INTEGRATED_PAYLOADS],
}

impl<'a> Envelope<'a> {
    /// Takes a complete envelope apart. Fails on anything but a tagged envelope with an
    /// authentication wrapper and a manifest and no bytes after it.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        match Self::decode_inner(bytes, false)? {
            (env, None) => Ok(env),
            (_, Some(_)) => Err(Error::Truncated),
        }
    }

    /// Takes apart the first bytes of an envelope whose last entry is an integrated payload that
    /// may extend past `prefix` (a package pushed block by block): returns the envelope and, when
    /// the payload is not complete in `prefix`, where it starts. Everything before the payload
    /// must be in `prefix`.
    pub fn decode_head(prefix: &'a [u8]) -> Result<(Self, Option<PayloadHead<'a>>), Error> {
        Self::decode_inner(prefix, true)
    }

    fn decode_inner(
        bytes: &'a [u8],
        allow_open_payload: bool,
    ) -> Result<(Self, Option<PayloadHead<'a>>), Error> {
        let mut r = Reader::new(bytes, Part::Envelope);
        if r.datatype()? != crate::cbor::Type::Tag || r.tag()? != keys::TAG_ENVELOPE {
            return Err(Error::WrongTag(Part::Envelope));
        }
        let entries = r.map()?;
        let mut keys_seen = KeySet::new(Part::Envelope);
        let mut auth = None;
        let mut manifest = None;
        let mut severed = [None; SEVERABLE_KEYS.len()];
        let mut payloads = [None; MAX_INTEGRATED_PAYLOADS];
        let mut payload_count = 0usize;
        let mut payload_bytes = 0usize;
        let mut open = None;
        for i in 0..entries {
            if r.datatype()? == crate::cbor::Type::String {
                let name = r.str()?;
                if payloads
                    .iter()
                    .flatten()
                    .any(|p: &IntegratedPayload<'_>| p.name == name)
                {
                    return Err(Error::DuplicateKey(Part::Envelope));
                }
                // The header of the payload's bstr tells its length before its bytes arrive.
                let start = r.position();
                let mut probe = r.clone();
                match probe.bytes() {
                    Ok(payload) => {
                        r = probe;
                        let slot = payloads
                            .get_mut(payload_count)
                            .ok_or(Error::TooManyPayloads)?;
                        *slot = Some(IntegratedPayload {
                            name,
                            bytes: payload,
                        });
                        payload_count += 1;
                        payload_bytes = payload_bytes.saturating_add(payload.len());
                    }
                    Err(Error::Truncated) if allow_open_payload && i + 1 == entries => {
                        let (offset, len) = bstr_extent(bytes, start)?;
                        open = Some(PayloadHead { name, offset, len });
                        break;
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            let key = r.u64().map_err(|e| match e {
                Error::WrongType(_) => Error::UnknownKey(Part::Envelope),
                e => e,
            })?;
            keys_seen.insert(i64::try_from(key).map_err(|_| Error::UnknownKey(Part::Envelope))?)?;
            match key {
                keys::envelope::AUTHENTICATION_WRAPPER => auth = Some(r.bytes()?),
                keys::envelope::MANIFEST => manifest = Some(r.wrapped()?),
                keys::envelope::DELEGATION => return Err(Error::Unsupported(Feature::Delegation)),
                keys::manifest::DEPENDENCY_RESOLUTION => {
                    return Err(Error::Unsupported(Feature::Dependencies));
                }
                keys::manifest::CANDIDATE_VERIFICATION => {
                    return Err(Error::Unsupported(Feature::ManifestExtension));
                }
                k => {
                    let idx = SEVERABLE_KEYS
                        .iter()
                        .position(|s| *s == k)
                        .ok_or(Error::UnknownKey(Part::Envelope))?;
                    let slot = severed
                        .get_mut(idx)
                        .ok_or(Error::UnknownKey(Part::Envelope))?;
                    *slot = Some(r.wrapped()?);
                }
            }
        }
        if open.is_none() {
            r.finish()?;
        }
        let structure_len = match open {
            Some(head) => head.offset,
            None => bytes.len().saturating_sub(payload_bytes),
        };
        if structure_len > MAX_ENVELOPE_LEN {
            return Err(Error::EnvelopeTooLarge);
        }
        let auth = auth.ok_or(Error::Missing(Part::AuthenticationWrapper))?;
        let manifest = manifest.ok_or(Error::Missing(Part::Manifest))?;
        Ok((
            Envelope {
                auth,
                manifest,
                severed,
                payloads,
            },
            open,
        ))
    }

    /// Checks the manifest digest and the signature against the trust anchors and only then
    /// decodes the manifest.
    pub fn authenticate(&self, anchors: &[TrustAnchor]) -> Result<Manifest<'a>, Error> {
        cose::authenticate(self.auth, self.manifest.whole, anchors)?;
        Manifest::decode(self.clone(), self.manifest.content)
    }

    /// The manifest bytes as they sit at envelope key 3, bstr header included: what the digest covers.
    pub fn manifest_bstr(&self) -> &'a [u8] {
        self.manifest.whole
    }

    /// The manifest's encoding (the content of the bstr at key 3).
    pub fn manifest_content(&self) -> &'a [u8] {
        self.manifest.content
    }

    /// The content of the authentication wrapper's bstr.
    pub fn authentication_wrapper(&self) -> &'a [u8] {
        self.auth
    }

    /// The integrated payload stored under `name` (for example `#image`).
    pub fn integrated_payload(&self, name: &str) -> Option<&'a [u8]> {
        self.payloads
            .iter()
            .flatten()
            .find(|p| p.name == name)
            .map(|p| p.bytes)
    }

    /// All integrated payloads.
    pub fn integrated_payloads(&self) -> impl Iterator<Item = IntegratedPayload<'a>> + '_ {
        self.payloads.iter().flatten().copied()
    }

    pub(crate) fn severed_element(&self, key: u64) -> Option<Wrapped<'a>> {
        let idx = SEVERABLE_KEYS.iter().position(|k| *k == key)?;
        self.severed.get(idx).copied().flatten()
    }

    pub(crate) fn severed_keys(&self) -> impl Iterator<Item = u64> + '_ {
        SEVERABLE_KEYS
            .iter()
            .zip(self.severed.iter())
            .filter(|(_, w)| w.is_some())
            .map(|(k, _)| *k)
    }
}

/// Offset and length of the content of the bstr whose header starts at `start`.
fn bstr_extent(bytes: &[u8], start: usize) -> Result<(usize, u64), Error> {
    let rest = bytes.get(start..).ok_or(Error::Truncated)?;
    let (&first, tail) = rest.split_first().ok_or(Error::Truncated)?;
    if first >> 5 != 2 {
        return Err(Error::WrongType(Part::Envelope));
    }
    let info = first & 0x1f;
    let (len, header) = match info {
        0..=23 => (u64::from(info), 1usize),
        24..=27 => {
            let n = 1usize << (info - 24);
            let field = tail.get(..n).ok_or(Error::Truncated)?;
            (
                field.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
                1 + n,
            )
        }
        31 => return Err(Error::IndefiniteLength),
        _ => return Err(Error::MalformedCbor),
    };
    Ok((
        start.checked_add(header).ok_or(Error::IntegerOverflow)?,
        len,
    ))
}

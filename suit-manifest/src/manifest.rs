//! The authenticated manifest: sequence number, components, command sequences and text, each
//! a zero-copy view into the envelope. Severed elements are checked against their digest when
//! they are used, never before, so an envelope stripped of its text still works.

use crate::cbor::{KeySet, Reader, Wrapped};
use crate::cose::Sha256Digest;
use crate::envelope::Envelope;
use crate::error::{Error, Feature, Part};
use crate::keys;
use crate::limits::{MAX_COMPONENT_ID_PARTS, MAX_COMPONENTS};
use crate::text::TextMap;

/// A component identifier: `[* bstr]`, kept as its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentId<'a> {
    encoded: &'a [u8],
}

impl<'a> ComponentId<'a> {
    /// The CBOR encoding of the identifier.
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// The bstr parts of the identifier, e.g. `[h'00']` yields one part `00`.
    pub fn parts(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut r = Reader::new(self.encoded, Part::Components);
        let n = r.array().unwrap_or(0);
        (0..n).map_while(move |_| r.bytes().ok())
    }
}

/// An element that may be severed: present in the manifest, or only its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severable<'a> {
    Inline(&'a [u8]),
    Severed(Sha256Digest),
}

/// What a severable element's state is, for reports such as `suit show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeverableStatus {
    /// The manifest does not have this element.
    Absent,
    /// The manifest holds the element itself.
    Inline,
    /// The manifest holds a digest and the envelope the matching element.
    SeveredPresent,
    /// The manifest holds a digest and the envelope does not carry the element.
    SeveredAbsent,
    /// The envelope's element does not match the manifest's digest.
    SeveredMismatch,
}

/// A decoded manifest whose signature and digest have been verified.
#[derive(Clone, Debug)]
pub struct Manifest<'a> {
    envelope: Envelope<'a>,
    sequence_number: u64,
    reference_uri: Option<&'a str>,
    components: [Option<ComponentId<'a>>; MAX_COMPONENTS],
    component_count: usize,
    shared_sequence: Option<&'a [u8]>,
    validate: Option<&'a [u8]>,
    load: Option<&'a [u8]>,
    invoke: Option<&'a [u8]>,
    payload_fetch: Option<Severable<'a>>,
    install: Option<Severable<'a>>,
    text: Option<Severable<'a>>,
    coswid: Option<Severable<'a>>,
}

/// The command sequences a manifest may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceKind {
    Shared,
    PayloadFetch,
    Install,
    Validate,
    Load,
    Invoke,
}

impl<'a> Manifest<'a> {
    // Not inlined into Envelope::authenticate: its state would sit above the signature check.
    #[inline(never)]
    pub(crate) fn decode(envelope: Envelope<'a>, bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, Part::Manifest);
        let n = r.map()?;
        let mut seen = KeySet::new(Part::Manifest);
        let mut version = None;
        let mut sequence_number = None;
        let mut common = None;
        let mut m = Manifest {
            envelope,
            sequence_number: 0,
            reference_uri: None,
            components: [None; MAX_COMPONENTS],
            component_count: 0,
            shared_sequence: None,
            validate: None,
            load: None,
            invoke: None,
            payload_fetch: None,
            install: None,
            text: None,
            coswid: None,
        };
        for _ in 0..n {
            let key = r.u64().map_err(|_| Error::UnknownKey(Part::Manifest))?;
            seen.insert(i64::try_from(key).map_err(|_| Error::UnknownKey(Part::Manifest))?)?;
            // Entries of one type through one read each (as the parameters).
            let bytes_slot = match key {
                keys::manifest::COMMON => Some(&mut common),
                keys::manifest::VALIDATE => Some(&mut m.validate),
                keys::manifest::LOAD => Some(&mut m.load),
                keys::manifest::INVOKE => Some(&mut m.invoke),
                _ => None,
            };
            if let Some(slot) = bytes_slot {
                *slot = Some(r.bytes()?);
                continue;
            }
            let severable_slot = match key {
                keys::manifest::PAYLOAD_FETCH => Some(&mut m.payload_fetch),
                keys::manifest::INSTALL => Some(&mut m.install),
                keys::manifest::TEXT => Some(&mut m.text),
                keys::manifest::COSWID => Some(&mut m.coswid),
                _ => None,
            };
            if let Some(slot) = severable_slot {
                *slot = Some(severable(&mut r)?);
                continue;
            }
            match key {
                keys::manifest::VERSION => version = Some(r.u64()?),
                keys::manifest::SEQUENCE_NUMBER => sequence_number = Some(r.u64()?),
                keys::manifest::REFERENCE_URI => m.reference_uri = Some(r.str()?),
                keys::manifest::DEPENDENCY_RESOLUTION => {
                    return Err(Error::Unsupported(Feature::Dependencies));
                }
                keys::manifest::COMPONENT_ID
                | keys::manifest::SET_VERSION
                | keys::manifest::CANDIDATE_VERIFICATION
                | keys::manifest::UNINSTALL => {
                    return Err(Error::Unsupported(Feature::ManifestExtension));
                }
                _ => return Err(Error::UnknownKey(Part::Manifest)),
            }
        }
        r.finish()?;
        if version.ok_or(Error::Missing(Part::Manifest))? != 1 {
            return Err(Error::UnsupportedManifestVersion);
        }
        m.sequence_number = sequence_number.ok_or(Error::Missing(Part::Manifest))?;
        m.decode_common(common.ok_or(Error::Missing(Part::Common))?)?;
        // Every element in the envelope must be one the manifest references by digest.
        for key in m.envelope.severed_keys() {
            if !matches!(m.severable(key), Some(Severable::Severed(_))) {
                return Err(Error::UnexpectedSeveredElement(key));
            }
        }
        Ok(m)
    }

    /// Decodes the manifest WITHOUT checking its signature or digest, for inspection tools that
    /// say so to their user. Host builds only: a device must use [`Envelope::authenticate`].
    #[cfg(feature = "std")]
    pub fn decode_unauthenticated(envelope: &Envelope<'a>) -> Result<Self, Error> {
        Manifest::decode(envelope.clone(), envelope.manifest_content())
    }

    fn decode_common(&mut self, bytes: &'a [u8]) -> Result<(), Error> {
        let mut r = Reader::new(bytes, Part::Common);
        let n = r.map()?;
        let mut seen = KeySet::new(Part::Common);
        for _ in 0..n {
            let key = r.u64().map_err(|_| Error::UnknownKey(Part::Common))?;
            seen.insert(i64::try_from(key).map_err(|_| Error::UnknownKey(Part::Common))?)?;
            match key {
                keys::common::COMPONENTS => self.decode_components(&mut r)?,
                keys::common::SHARED_SEQUENCE => self.shared_sequence = Some(r.bytes()?),
                keys::common::DEPENDENCIES => {
                    return Err(Error::Unsupported(Feature::Dependencies));
                }
                _ => return Err(Error::UnknownKey(Part::Common)),
            }
        }
        r.finish()?;
        if self.component_count == 0 {
            return Err(Error::Missing(Part::Components));
        }
        Ok(())
    }

    fn decode_components(&mut self, r: &mut Reader<'a>) -> Result<(), Error> {
        let n = r.array()?;
        if n > MAX_COMPONENTS as u64 {
            return Err(Error::TooManyComponents);
        }
        for slot in self.components.iter_mut().take(n as usize) {
            let start = r.position();
            let parts = r.array()?;
            if parts > MAX_COMPONENT_ID_PARTS as u64 {
                return Err(Error::ComponentIdTooLong);
            }
            for _ in 0..parts {
                r.bytes()?;
            }
            let encoded = r.input().get(start..r.position()).ok_or(Error::Truncated)?;
            *slot = Some(ComponentId { encoded });
        }
        self.component_count = n as usize;
        Ok(())
    }

    fn severable(&self, key: u64) -> Option<Severable<'a>> {
        match key {
            keys::manifest::PAYLOAD_FETCH => self.payload_fetch,
            keys::manifest::INSTALL => self.install,
            keys::manifest::TEXT => self.text,
            keys::manifest::COSWID => self.coswid,
            _ => None,
        }
    }

    /// The element behind a severable key: inline, or from the envelope after its digest check.
    fn resolve(&self, key: u64) -> Result<Option<&'a [u8]>, Error> {
        match self.severable(key) {
            None => Ok(None),
            Some(Severable::Inline(bytes)) => Ok(Some(bytes)),
            Some(Severable::Severed(digest)) => {
                let Wrapped { whole, content } = self
                    .envelope
                    .severed_element(key)
                    .ok_or(Error::SeveredElementMissing(key))?;
                if digest.matches(whole) {
                    Ok(Some(content))
                } else {
                    Err(Error::SeveredDigestMismatch(key))
                }
            }
        }
    }

    /// The state of a severable element (keys 14, 16, 20, 23).
    pub fn severable_status(&self, key: u64) -> SeverableStatus {
        match self.severable(key) {
            None => SeverableStatus::Absent,
            Some(Severable::Inline(_)) => SeverableStatus::Inline,
            Some(Severable::Severed(_)) => match self.resolve(key) {
                Ok(_) => SeverableStatus::SeveredPresent,
                Err(Error::SeveredElementMissing(_)) => SeverableStatus::SeveredAbsent,
                Err(_) => SeverableStatus::SeveredMismatch,
            },
        }
    }

    /// Checks every severed element the envelope carries against its digest.
    pub fn check_severed_elements(&self) -> Result<(), Error> {
        for key in self.envelope.severed_keys() {
            self.resolve(key)?;
        }
        Ok(())
    }

    /// suit-manifest-sequence-number: the anti-rollback counter.
    pub fn sequence_number(&self) -> u64 {
        self.sequence_number
    }

    /// suit-reference-uri, when present.
    pub fn reference_uri(&self) -> Option<&'a str> {
        self.reference_uri
    }

    /// The number of components.
    pub fn component_count(&self) -> usize {
        self.component_count
    }

    /// The component identifiers, in manifest order (their index is the component index).
    pub fn components(&self) -> impl Iterator<Item = ComponentId<'a>> + '_ {
        self.components
            .iter()
            .take(self.component_count)
            .flatten()
            .copied()
    }

    /// The identifier of component `index`.
    pub fn component(&self, index: usize) -> Option<ComponentId<'a>> {
        if index < self.component_count {
            self.components.get(index).copied().flatten()
        } else {
            None
        }
    }

    /// A command sequence's bytes (the content of its bstr), resolving severed ones.
    pub fn sequence(&self, kind: SequenceKind) -> Result<Option<&'a [u8]>, Error> {
        match kind {
            SequenceKind::Shared => Ok(self.shared_sequence),
            SequenceKind::Validate => Ok(self.validate),
            SequenceKind::Load => Ok(self.load),
            SequenceKind::Invoke => Ok(self.invoke),
            SequenceKind::PayloadFetch => self.resolve(keys::manifest::PAYLOAD_FETCH),
            SequenceKind::Install => self.resolve(keys::manifest::INSTALL),
        }
    }

    /// The text map, when the manifest has one and it is present (and intact) in the envelope.
    pub fn text(&self) -> Result<Option<TextMap<'a>>, Error> {
        match self.resolve(keys::manifest::TEXT) {
            Ok(Some(bytes)) => TextMap::new(bytes).map(Some),
            Ok(None) | Err(Error::SeveredElementMissing(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The envelope this manifest came from (for integrated payloads).
    pub fn envelope(&self) -> &Envelope<'a> {
        &self.envelope
    }
}

fn severable<'a>(r: &mut Reader<'a>) -> Result<Severable<'a>, Error> {
    match r.datatype()? {
        crate::cbor::Type::Bytes => Ok(Severable::Inline(r.bytes()?)),
        crate::cbor::Type::Array => Ok(Severable::Severed(Sha256Digest::decode(r)?)),
        _ => Err(Error::WrongType(Part::Manifest)),
    }
}

//! SUIT parameters: the per-component values that override-parameters sets and that conditions
//! and directives read.

use crate::cbor::{KeySet, Reader};
use crate::cose::Sha256Digest;
use crate::error::{Error, Feature, Part};
use crate::keys::parameter as p;

/// The parameters of one component. Borrowed from the manifest; `None` means never set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parameters<'a> {
    /// vendor-identifier (1): a 16-byte UUID.
    pub vendor_id: Option<&'a [u8]>,
    /// class-identifier (2): a 16-byte UUID.
    pub class_id: Option<&'a [u8]>,
    /// image-digest (3).
    pub image_digest: Option<Sha256Digest>,
    /// component-slot (5).
    pub component_slot: Option<u64>,
    /// strict-order (12).
    pub strict_order: Option<bool>,
    /// image-size (14).
    pub image_size: Option<u64>,
    /// content (18): inline data for write and check-content.
    pub content: Option<&'a [u8]>,
    /// uri (21): where fetch gets the payload; `#name` means an integrated payload.
    pub uri: Option<&'a str>,
    /// source-component (22): a component index for copy and swap.
    pub source_component: Option<u64>,
    /// invoke-args (23).
    pub invoke_args: Option<&'a [u8]>,
    /// device-identifier (24).
    pub device_id: Option<&'a [u8]>,
    /// fetch-arguments (25).
    pub fetch_arguments: Option<&'a [u8]>,
    /// otafleet's payload-format (-257): how the fetched payload becomes the image. `None`: the
    /// payload is the image.
    pub payload_format: Option<PayloadFormat>,
}

/// What the payload is when it is not the image itself (parameter -257, a text string).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormat {
    /// A detools sequential patch (heatshrink or no compression) that turns the precursor (the
    /// active image) into the image this component's digest names.
    DetoolsSequential,
}

impl PayloadFormat {
    /// The parameter's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DetoolsSequential => "detools-sequential",
        }
    }

    /// Parses the value; one this device cannot apply is refused, never ignored.
    pub fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "detools-sequential" => Ok(Self::DetoolsSequential),
            _ => Err(Error::Unsupported(Feature::PayloadFormat)),
        }
    }
}

/// How a parameter map is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// override-parameters: replace.
    Override,
    /// set-parameters: only fill what is unset.
    Set,
}

fn put<T>(slot: &mut Option<T>, value: T, mode: Mode) {
    if mode == Mode::Override || slot.is_none() {
        *slot = Some(value);
    }
}

impl<'a> Parameters<'a> {
    /// Applies one parameter map to `self`. Returns the soft-failure value when the map sets it,
    /// since soft-failure belongs to the running sequence, not to a component.
    pub(crate) fn apply(&mut self, r: &mut Reader<'a>, mode: Mode) -> Result<Option<bool>, Error> {
        let n = r.map()?;
        let mut seen = KeySet::new(Part::Parameters);
        let mut soft_failure = None;
        for _ in 0..n {
            let key = r.i64()?;
            seen.insert(key)?;
            // The byte-string and integer parameters through one read and one `put` each.
            let bytes_slot = match key {
                p::VENDOR_IDENTIFIER => Some(&mut self.vendor_id),
                p::CLASS_IDENTIFIER => Some(&mut self.class_id),
                p::CONTENT => Some(&mut self.content),
                p::INVOKE_ARGS => Some(&mut self.invoke_args),
                p::DEVICE_IDENTIFIER => Some(&mut self.device_id),
                p::FETCH_ARGUMENTS => Some(&mut self.fetch_arguments),
                _ => None,
            };
            if let Some(slot) = bytes_slot {
                put(slot, r.bytes()?, mode);
                continue;
            }
            let u64_slot = match key {
                p::COMPONENT_SLOT => Some(&mut self.component_slot),
                p::IMAGE_SIZE => Some(&mut self.image_size),
                p::SOURCE_COMPONENT => Some(&mut self.source_component),
                _ => None,
            };
            if let Some(slot) = u64_slot {
                put(slot, r.u64()?, mode);
                continue;
            }
            match key {
                p::IMAGE_DIGEST => put(
                    &mut self.image_digest,
                    Sha256Digest::decode_exact(r.bytes()?)?,
                    mode,
                ),
                p::STRICT_ORDER => put(&mut self.strict_order, r.bool()?, mode),
                p::SOFT_FAILURE => soft_failure = Some(r.bool()?),
                p::URI => put(&mut self.uri, r.str()?, mode),
                p::ENCRYPTION_INFO => return Err(Error::Unsupported(Feature::Encryption)),
                p::PAYLOAD_FORMAT => put(
                    &mut self.payload_format,
                    PayloadFormat::parse(r.str()?)?,
                    mode,
                ),
                // Critical private-use parameters change what the device must do: refuse one
                // not known rather than do the wrong thing.
                k if k <= p::CRITICAL_CUSTOM => {
                    return Err(Error::Unsupported(Feature::CriticalParameter));
                }
                // Other custom parameters (-1 to -256) are hints this device does not use.
                k if k < 0 => r.skip()?,
                _ => return Err(Error::UnknownKey(Part::Parameters)),
            }
        }
        Ok(soft_failure)
    }
}

//! What a manifest says about each component (vendor, class, digest, size, URI, version), found by
//! running the shared, payload-fetch and install sequences against a device that accepts every
//! condition and records every fetch. Used by `suit show`, the server's release checks and the
//! device's pre-download checks. A delta manifest's precursor is its `["active"]` component.

use crate::cose::Sha256Digest;
use crate::error::Error;
use crate::interpreter::{Component, Device, Interpreter, RunError};
use crate::keys::text::COMPONENT_VERSION;
use crate::limits::MAX_COMPONENTS;
use crate::manifest::{ComponentId, Manifest, SequenceKind};
use crate::params::{Parameters, PayloadFormat};

/// One component as the manifest describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentInfo<'a> {
    pub id: ComponentId<'a>,
    pub vendor_id: Option<&'a [u8]>,
    pub class_id: Option<&'a [u8]>,
    pub image_digest: Option<Sha256Digest>,
    pub image_size: Option<u64>,
    /// The URI the first fetch of this component uses.
    pub uri: Option<&'a str>,
    /// component-version from the text map, when the manifest carries one.
    pub version: Option<&'a str>,
    /// What the fetched payload is, when it is not the image itself (a delta patch).
    pub payload_format: Option<PayloadFormat>,
}

/// The identifier of the component that stands for the device's active image in a delta
/// manifest (DESIGN.md "Delta"): its digest and size are the precursor a patch applies to.
pub const ACTIVE_COMPONENT_ID: &[u8] = b"active";

impl ComponentInfo<'_> {
    /// Whether this component is the active image (`["active"]`).
    pub fn is_active_image(&self) -> bool {
        let mut parts = self.id.parts();
        parts.next() == Some(ACTIVE_COMPONENT_ID) && parts.next().is_none()
    }
}

/// The precursor of a delta manifest: the active-image component, when the manifest has one.
pub fn precursor<'a>(components: &[Option<ComponentInfo<'a>>]) -> Option<ComponentInfo<'a>> {
    components
        .iter()
        .flatten()
        .find(|c| c.is_active_image())
        .copied()
}

/// Describes every component of `manifest`. With try-each, the first alternative is described; a
/// sequence severed from the envelope is passed over (its URI is then unknown).
pub fn describe<'a>(
    manifest: &Manifest<'a>,
) -> Result<[Option<ComponentInfo<'a>>; MAX_COMPONENTS], Error> {
    let mut out = [None; MAX_COMPONENTS];
    let mut probe = Probe {
        uris: [None; MAX_COMPONENTS],
    };
    let mut interp = Interpreter::new(manifest);
    let run = |interp: &mut Interpreter<'_, 'a>, kind, probe: &mut Probe<'a>| match interp
        .run(kind, probe)
    {
        Ok(()) | Err(RunError::Suit(Error::SeveredElementMissing(_))) => Ok(()),
        Err(RunError::Suit(e)) => Err(e),
        Err(RunError::Device(never)) => match never {},
    };
    run(&mut interp, SequenceKind::Shared, &mut probe)?;
    let mut after_shared = [Parameters::default(); MAX_COMPONENTS];
    for (i, slot) in after_shared.iter_mut().enumerate() {
        if let Some(p) = interp.parameters(i) {
            *slot = *p;
        }
    }
    run(&mut interp, SequenceKind::PayloadFetch, &mut probe)?;
    run(&mut interp, SequenceKind::Install, &mut probe)?;
    let text = manifest.text()?;
    for (i, slot) in out.iter_mut().enumerate() {
        let Some(id) = manifest.component(i) else {
            continue;
        };
        let shared = after_shared.get(i).copied().unwrap_or_default();
        let last = interp.parameters(i).copied().unwrap_or_default();
        *slot = Some(ComponentInfo {
            id,
            vendor_id: shared.vendor_id.or(last.vendor_id),
            class_id: shared.class_id.or(last.class_id),
            image_digest: shared.image_digest.or(last.image_digest),
            image_size: shared.image_size.or(last.image_size),
            uri: probe.uris.get(i).copied().flatten(),
            version: text.and_then(|t| t.component_text(id, COMPONENT_VERSION)),
            payload_format: last.payload_format,
        });
    }
    Ok(out)
}

/// A device that says yes to everything and remembers the URI of each fetch.
struct Probe<'a> {
    uris: [Option<&'a str>; MAX_COMPONENTS],
}

/// The probe cannot fail.
enum Never {}

impl<'a> Device<'a> for Probe<'a> {
    type Error = Never;
    fn check_vendor(&mut self, _: Component<'a>, _: &'a [u8]) -> Result<bool, Never> {
        Ok(true)
    }
    fn check_class(&mut self, _: Component<'a>, _: &'a [u8]) -> Result<bool, Never> {
        Ok(true)
    }
    fn check_device(&mut self, _: Component<'a>, _: &'a [u8]) -> Result<bool, Never> {
        Ok(true)
    }
    fn check_slot(&mut self, _: Component<'a>, _: u64) -> Result<bool, Never> {
        Ok(true)
    }
    fn check_image(
        &mut self,
        _: Component<'a>,
        _: &Sha256Digest,
        _: Option<u64>,
    ) -> Result<bool, Never> {
        Ok(true)
    }
    fn check_content(&mut self, _: Component<'a>, _: &'a [u8]) -> Result<bool, Never> {
        Ok(true)
    }
    fn fetch(&mut self, component: Component<'a>, params: &Parameters<'a>) -> Result<(), Never> {
        if let Some(slot) = self.uris.get_mut(component.index) {
            *slot = slot.or(params.uri);
        }
        Ok(())
    }
    fn copy(
        &mut self,
        _: Component<'a>,
        _: Component<'a>,
        _: &Parameters<'a>,
    ) -> Result<(), Never> {
        Ok(())
    }
    fn swap(&mut self, _: Component<'a>, _: Component<'a>) -> Result<(), Never> {
        Ok(())
    }
    fn write(&mut self, _: Component<'a>, _: &'a [u8]) -> Result<(), Never> {
        Ok(())
    }
    fn invoke(&mut self, _: Component<'a>, _: Option<&'a [u8]>) -> Result<(), Never> {
        Ok(())
    }
}

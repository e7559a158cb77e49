//! The SUIT checks of a pull update, run between the manifest's download and the image's: the
//! envelope must verify with the trust anchor, its sequence number must be higher than the one
//! the device holds (anti-rollback), the manifest's conditions (vendor, class) must hold for this
//! device, and the image it fetches must fit the slot. The manifest's own install sequence runs
//! through suit-manifest's interpreter; its `fetch` tells where the image is.

use heapless::String;
use lwm2m_core::object5::UpdateResult;
use suit_manifest::inspect::ACTIVE_COMPONENT_ID;
use suit_manifest::keys::text::COMPONENT_VERSION;
use suit_manifest::{
    Component, Device, Error, Interpreter, Manifest, Parameters, PayloadFormat, RunError,
    Sha256Digest, TrustAnchor,
};

use crate::engine::limits::MAX_PKG_LEN;
use crate::uri::{CoapUri, UriString, resolve};

/// Who this device is, as manifests name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub vendor_id: [u8; 16],
    pub class_id: [u8; 16],
}

/// What an accepted manifest says about the image to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub sequence: u64,
    /// Where the image is, resolved against the manifest's URI.
    pub image_uri: UriString,
    pub digest: [u8; 32],
    pub size: u32,
    /// The version from the manifest's text, when it has one.
    pub version: String<MAX_PKG_LEN>,
    /// Set when the payload at `image_uri` is a patch against the running image (a delta
    /// release), not the image itself; its precursor matched the running image.
    pub payload_format: Option<PayloadFormat>,
}

/// The running image as a delta manifest's precursor (`["active"]`) is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveImage {
    pub digest: [u8; 32],
    pub size: u32,
}

/// Whether `c` is the delta convention's `["active"]` component.
fn is_active(c: &Component<'_>) -> bool {
    let mut parts = c.id.parts();
    parts.next() == Some(ACTIVE_COMPONENT_ID) && parts.next().is_none()
}

/// The device as the interpreter sees it during the update procedure.
struct Checks<'i> {
    identity: &'i Identity,
    /// The digest of the image in the staging slot, once it is complete.
    staged: Option<[u8; 32]>,
    /// The running image, asked for (a read of the active slot) only when the manifest
    /// names a precursor; cached then.
    active_of: &'i mut dyn FnMut() -> Option<ActiveImage>,
    active: Option<Option<ActiveImage>>,
    fetch: Option<Fetch>,
}

/// What the manifest's fetch asks for: URI, digest and size of the image, payload format.
type Fetch = (UriString, [u8; 32], Option<u64>, Option<PayloadFormat>);

/// The interpreter stops at `fetch` until the image is in the slot.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    FetchPending,
}

impl<'a> Device<'a> for Checks<'_> {
    type Error = Stop;
    fn check_vendor(&mut self, _: Component<'a>, v: &'a [u8]) -> Result<bool, Stop> {
        Ok(v == self.identity.vendor_id)
    }
    fn check_class(&mut self, _: Component<'a>, c: &'a [u8]) -> Result<bool, Stop> {
        Ok(c == self.identity.class_id)
    }
    fn check_slot(&mut self, _: Component<'a>, slot: u64) -> Result<bool, Stop> {
        // One staging slot: the manifest's slot 0 alternative is this device's.
        Ok(slot == 0)
    }
    fn check_image(
        &mut self,
        c: Component<'a>,
        digest: &Sha256Digest,
        size: Option<u64>,
    ) -> Result<bool, Stop> {
        if is_active(&c) {
            // A delta's precursor: the running image, digest and size. A device that does not
            // know its running image answers no, so the delta is refused (Result 6).
            let active = *self.active.get_or_insert_with(|| (self.active_of)());
            return Ok(active.is_some_and(|a| {
                a.digest == digest.0 && size.is_none_or(|s| s == u64::from(a.size))
            }));
        }
        Ok(self.staged == Some(digest.0))
    }
    // Not inlined into the interpreter's recursion: the URI it copies is on the stack only here.
    #[inline(never)]
    fn fetch(&mut self, _: Component<'a>, p: &Parameters<'a>) -> Result<(), Stop> {
        let digest = p.image_digest.map(|d| d.0);
        if let (Some(staged), Some(want)) = (self.staged, digest) {
            if staged == want {
                // The draft lets fetch skip a payload that is already in place.
                return Ok(());
            }
        }
        let mut uri = UriString::new();
        let _ = uri.push_str(p.uri.unwrap_or(""));
        self.fetch = Some((
            uri,
            digest.unwrap_or([0; 32]),
            p.image_size,
            p.payload_format,
        ));
        Err(Stop::FetchPending)
    }
    fn copy(&mut self, _: Component<'a>, _: Component<'a>, _: &Parameters<'a>) -> Result<(), Stop> {
        Ok(())
    }
    fn swap(&mut self, _: Component<'a>, _: Component<'a>) -> Result<(), Stop> {
        Ok(())
    }
    fn write(&mut self, _: Component<'a>, _: &'a [u8]) -> Result<(), Stop> {
        Ok(())
    }
    fn invoke(&mut self, _: Component<'a>, _: Option<&'a [u8]>) -> Result<(), Stop> {
        // Booting is the bootloader's business, after Update.
        Ok(())
    }
}

/// The Object 5 result for a manifest that is refused.
fn result_for(e: Error) -> UpdateResult {
    match e {
        // Authentic but not for this device or not supported by it.
        Error::Unsupported(_)
        | Error::UnknownCommand
        | Error::UnknownKey(_)
        | Error::ConditionFailed(_)
        | Error::TryEachFailed
        | Error::Aborted
        | Error::TooManyComponents
        | Error::UnsupportedManifestVersion => UpdateResult::UnsupportedPackage,
        // Everything else means it cannot be trusted: bad signature, digest, structure.
        _ => UpdateResult::IntegrityFailure,
    }
}

/// Checks a downloaded envelope before one image byte is fetched, on a device that does not
/// know its running image (a delta release is refused, Result 6).
pub fn check_manifest(
    envelope: &[u8],
    manifest_uri: &str,
    anchors: &[TrustAnchor],
    identity: &Identity,
    accepted_sequence: u64,
    slot_size: u32,
) -> Result<Release, UpdateResult> {
    check_release(
        envelope,
        manifest_uri,
        anchors,
        identity,
        accepted_sequence,
        slot_size,
        &mut || None,
    )
}

/// Checks a downloaded envelope before one image or patch byte is fetched. A delta's precursor
/// is checked against `active()`, the running image (called only for a delta): a patch for another image is refused with
/// Result 6 (OMA Object 5 "unsupported package type": the package is authentic and intact, so
/// not 5, but it is not one this device can use), and nothing of it is fetched.
pub fn check_release(
    envelope: &[u8],
    manifest_uri: &str,
    anchors: &[TrustAnchor],
    identity: &Identity,
    accepted_sequence: u64,
    slot_size: u32,
    active: &mut dyn FnMut() -> Option<ActiveImage>,
) -> Result<Release, UpdateResult> {
    let mut checks = Checks {
        identity,
        staged: None,
        active_of: active,
        active: None,
        fetch: None,
    };
    let (sequence, version) = accept(envelope, anchors, accepted_sequence, &mut checks)?;
    // A manifest that fetches nothing has no image for this device.
    let fetch = checks
        .fetch
        .as_ref()
        .ok_or(UpdateResult::UnsupportedPackage)?;
    release(manifest_uri, fetch, slot_size, sequence, version)
}

// The steps below run in frames of their own (not inlined): the deepest one, the signature
// check, then starts below the interpreter's result only, not below the release's strings and
// the URI resolution too, which keeps the manifest path within the device's stack budget
// (README "Footprint").

/// Authenticates the envelope, refuses a replay and runs the update procedure with `checks` up
/// to its fetch. Ok with the sequence number and the version the manifest gives.
#[inline(never)]
fn accept(
    envelope: &[u8],
    anchors: &[TrustAnchor],
    accepted_sequence: u64,
    checks: &mut Checks<'_>,
) -> Result<(u64, String<MAX_PKG_LEN>), UpdateResult> {
    let manifest = suit_manifest::verify(envelope, anchors).map_err(result_for)?;
    if manifest.sequence_number() <= accepted_sequence {
        return Err(UpdateResult::UnsupportedPackage);
    }
    run_update(&manifest, checks)?;
    Ok((manifest.sequence_number(), version(&manifest)))
}

/// The release to download: the image must fit the slot and its URI, resolved against the
/// manifest's, must be a CoAP URI.
#[inline(never)]
fn release(
    manifest_uri: &str,
    (uri, digest, size, payload_format): &Fetch,
    slot_size: u32,
    sequence: u64,
    version: String<MAX_PKG_LEN>,
) -> Result<Release, UpdateResult> {
    let size = size.ok_or(UpdateResult::UnsupportedPackage)?;
    if size > u64::from(slot_size) {
        return Err(UpdateResult::NotEnoughFlash);
    }
    let image_uri = resolve(manifest_uri, uri)?;
    CoapUri::parse(&image_uri)?;
    Ok(Release {
        sequence,
        image_uri,
        digest: *digest,
        size: size as u32,
        version,
        payload_format: *payload_format,
    })
}

/// Runs the manifest's update procedure again with the staged image's digest: `fetch` finds the
/// image in place and `image-match` checks it. Ok when the manifest accepts the staged image.
pub fn confirm_staged(
    envelope: &[u8],
    anchors: &[TrustAnchor],
    identity: &Identity,
    staged: [u8; 32],
    active: Option<ActiveImage>,
) -> Result<(), UpdateResult> {
    let manifest = suit_manifest::verify(envelope, anchors).map_err(result_for)?;
    let mut active_of = move || active;
    let mut checks = Checks {
        identity,
        staged: Some(staged),
        active_of: &mut active_of,
        active: None,
        fetch: None,
    };
    run_update(&manifest, &mut checks)?;
    match checks.fetch {
        None => Ok(()),
        // Still fetching: the staged image is not the manifest's.
        Some(_) => Err(UpdateResult::IntegrityFailure),
    }
}

/// Runs the manifest's update procedure with `checks`; Ok also when it stopped at a fetch (then
/// `checks.fetch` says which). With a staged image, a failed condition means the image is not the
/// manifest's.
#[inline(never)]
fn run_update(manifest: &Manifest<'_>, checks: &mut Checks<'_>) -> Result<(), UpdateResult> {
    match Interpreter::new(manifest).update(checks) {
        Ok(()) | Err(RunError::Device(Stop::FetchPending)) => Ok(()),
        Err(RunError::Suit(Error::ConditionFailed(_))) if checks.staged.is_some() => {
            Err(UpdateResult::IntegrityFailure)
        }
        Err(RunError::Suit(e)) => Err(result_for(e)),
    }
}

/// The version the manifest's text gives its first component, when it has one (at most 32 bytes).
fn version(manifest: &Manifest<'_>) -> String<MAX_PKG_LEN> {
    let mut version = String::new();
    let text = manifest.text().ok().flatten();
    let v = manifest
        .component(0)
        .and_then(|id| text?.component_text(id, COMPONENT_VERSION));
    if let Some(v) = v {
        let _ = version.push_str(v.get(..v.len().min(32)).unwrap_or(""));
    }
    version
}

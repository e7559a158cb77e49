//! The SUIT checks of a pull update, run between the manifest's download and the image's: the
//! envelope must verify with the trust anchor, its sequence number must be higher than the one
//! the device holds (anti-rollback), the manifest's conditions (vendor, class) must hold for this
//! device, and the image it fetches must fit the slot. The manifest's own install sequence runs
//! through suit-manifest's interpreter; its `fetch` tells where the image is.

use heapless::String;
use lwm2m_core::object5::UpdateResult;
use suit_manifest::{
    Component, Device, Error, Interpreter, Parameters, RunError, Sha256Digest, TrustAnchor,
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
}

/// The device as the interpreter sees it during the update procedure.
struct Checks<'i> {
    identity: &'i Identity,
    /// The digest of the image in the staging slot, once it is complete.
    staged: Option<[u8; 32]>,
    fetch: Option<(UriString, [u8; 32], Option<u64>)>,
}

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
        _: Component<'a>,
        digest: &Sha256Digest,
        _: Option<u64>,
    ) -> Result<bool, Stop> {
        Ok(self.staged == Some(digest.0))
    }
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
        self.fetch = Some((uri, digest.unwrap_or([0; 32]), p.image_size));
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

/// Checks a downloaded envelope before one image byte is fetched.
pub fn check_manifest(
    envelope: &[u8],
    manifest_uri: &str,
    anchors: &[TrustAnchor],
    identity: &Identity,
    accepted_sequence: u64,
    slot_size: u32,
) -> Result<Release, UpdateResult> {
    let manifest = suit_manifest::verify(envelope, anchors).map_err(result_for)?;
    if manifest.sequence_number() <= accepted_sequence {
        return Err(UpdateResult::UnsupportedPackage);
    }
    let mut checks = Checks {
        identity,
        staged: None,
        fetch: None,
    };
    match Interpreter::new(&manifest).update(&mut checks) {
        Err(RunError::Device(Stop::FetchPending)) => {}
        Err(RunError::Suit(e)) => return Err(result_for(e)),
        // A manifest that fetches nothing has no image for this device.
        Ok(()) => return Err(UpdateResult::UnsupportedPackage),
    }
    let (uri, digest, size) = checks.fetch.ok_or(UpdateResult::UnsupportedPackage)?;
    let size = size.ok_or(UpdateResult::UnsupportedPackage)?;
    if size > u64::from(slot_size) {
        return Err(UpdateResult::NotEnoughFlash);
    }
    let image_uri = resolve(manifest_uri, &uri)?;
    CoapUri::parse(&image_uri)?;
    let mut version = String::new();
    if let Ok(info) = suit_manifest::describe(&manifest) {
        if let Some(v) = info.first().copied().flatten().and_then(|c| c.version) {
            let _ = version.push_str(v.get(..v.len().min(32)).unwrap_or(""));
        }
    }
    Ok(Release {
        sequence: manifest.sequence_number(),
        image_uri,
        digest,
        size: size as u32,
        version,
    })
}

/// Runs the manifest's update procedure again with the staged image's digest: `fetch` finds the
/// image in place and `image-match` checks it. Ok when the manifest accepts the staged image.
pub fn confirm_staged(
    envelope: &[u8],
    anchors: &[TrustAnchor],
    identity: &Identity,
    staged: [u8; 32],
) -> Result<(), UpdateResult> {
    let manifest = suit_manifest::verify(envelope, anchors).map_err(result_for)?;
    let mut checks = Checks {
        identity,
        staged: Some(staged),
        fetch: None,
    };
    match Interpreter::new(&manifest).update(&mut checks) {
        Ok(()) => Ok(()),
        // Still fetching: the staged image is not the manifest's.
        Err(RunError::Device(Stop::FetchPending)) => Err(UpdateResult::IntegrityFailure),
        Err(RunError::Suit(Error::ConditionFailed(_))) => Err(UpdateResult::IntegrityFailure),
        Err(RunError::Suit(e)) => Err(result_for(e)),
    }
}

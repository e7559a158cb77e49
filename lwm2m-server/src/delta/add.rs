//! A delta manifest and its patch, checked before the server hosts them (`firmware add M PATCH`).
//! The signature was checked by the repository; here: the manifest declares the new image and
//! the precursor (digest and size), the file given is a patch and not an image, the patch is a
//! detools sequential patch that makes an image of the declared size, and, when the server holds
//! the precursor's image (a full release with that digest), applying the patch to it gives
//! exactly the declared new image. Each refusal is one line that says what to do.

use std::path::Path;

use sha2::{Digest, Sha256};
use suit_manifest::{ComponentInfo, Manifest};

use super::check;
use crate::repository::{hex, image_path, release_id};
use crate::store::{KIND_DELTA, ReleaseRecord, Store};

/// A delta that passed the checks.
pub struct DeltaRelease {
    new_sha256: [u8; 32],
    new_size: u64,
    precursor_sha256: [u8; 32],
    precursor_size: u64,
}

impl DeltaRelease {
    /// Checks `patch` against the manifest's new image `comp` and its precursor `pre`.
    pub fn check(
        store: &Store,
        firmware_dir: &Path,
        comp: &ComponentInfo<'_>,
        pre: &ComponentInfo<'_>,
        patch: &[u8],
    ) -> Result<Self, String> {
        let (Some(new), Some(new_size)) = (comp.image_digest, comp.image_size) else {
            return Err("the manifest does not declare the new image's digest and size".into());
        };
        let (Some(old), Some(old_size)) = (pre.image_digest, pre.image_size) else {
            return Err("the manifest does not declare the precursor's digest and size".into());
        };
        if patch.is_empty() {
            return Err("the patch is empty: give the file `suit create --patch-out` wrote".into());
        }
        if new.matches(patch) {
            return Err("the file given is the new image itself, not a patch: give the file `suit create --patch-out` wrote".into());
        }
        let old_hex = hex(&old.0);
        let made = match precursor_image(store, firmware_dir, &old_hex)? {
            Some((id, image)) => {
                let got = check::apply(patch, &image, new_size)?;
                if got.sha256 != new.0 || got.size != new_size {
                    return Err(format!(
                        "applied to the precursor (release {id}), the patch does not give the manifest's new image: make the patch from that image (`suit create --delta-from`)"
                    ));
                }
                got.size
            }
            // Not held: the framing is all that can be checked; the device checks the rest.
            None => check::check_framing(patch, old_size, new_size)?,
        };
        if made != new_size {
            return Err(format!(
                "the patch makes {made} bytes, the manifest's new image has {new_size}: give the patch made for this manifest"
            ));
        }
        Ok(DeltaRelease {
            new_sha256: new.0,
            new_size,
            precursor_sha256: old.0,
            precursor_size: old_size,
        })
    }

    /// The release record: its id and `image_*` are the patch's (the bytes served), the new
    /// image and precursor ride beside them.
    pub fn record(
        &self,
        manifest: &Manifest<'_>,
        comp: &ComponentInfo<'_>,
        envelope: &[u8],
        patch: &[u8],
        now_ms: i64,
    ) -> ReleaseRecord {
        let patch_sha: [u8; 32] = Sha256::digest(patch).into();
        let manifest_sha: [u8; 32] = Sha256::digest(envelope).into();
        ReleaseRecord {
            id: release_id(&patch_sha),
            kind: KIND_DELTA.into(),
            version: comp.version.map(Into::into),
            sequence_number: Some(manifest.sequence_number()),
            image_sha256: hex(&patch_sha),
            image_size: patch.len() as u64,
            manifest_sha256: Some(hex(&manifest_sha)),
            manifest_size: Some(envelope.len() as u64),
            vendor_id: comp.vendor_id.map(hex),
            class_id: comp.class_id.map(hex),
            image_uri: comp.uri.map(Into::into),
            added_at_ms: now_ms,
            max_block_size: None,
            precursor_sha256: Some(hex(&self.precursor_sha256)),
            precursor_size: Some(self.precursor_size),
            new_image_sha256: Some(hex(&self.new_sha256)),
            new_image_size: Some(self.new_size),
        }
    }
}

/// The image of a full release whose digest is `sha256_hex`, if the server holds one.
fn precursor_image(
    store: &Store,
    firmware_dir: &Path,
    sha256_hex: &str,
) -> Result<Option<(String, Vec<u8>)>, String> {
    let releases = store
        .releases()
        .map_err(|e| format!("cannot look for the precursor: {e}"))?;
    let Some(full) = releases
        .into_iter()
        .find(|r| !r.is_delta() && r.image_sha256 == sha256_hex)
    else {
        return Ok(None);
    };
    let image = std::fs::read(image_path(firmware_dir, &full.id))
        .map_err(|e| format!("cannot read the precursor release {}: {e}", full.id))?;
    Ok(Some((full.id, image)))
}

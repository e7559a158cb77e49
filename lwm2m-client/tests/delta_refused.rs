//! What a device that applies deltas still refuses at the manifest, with Update Result 6
//! (unsupported package) and before any payload byte is fetched: a payload format it does not
//! know (parameter -257), and a delta whose precursor is not its running image. A delta whose
//! precursor is the running image is accepted, and says it is a patch.

use lwm2m_client::firmware::suit::{ActiveImage, Identity, check_manifest, check_release};
use lwm2m_core::object5::UpdateResult;
use sha2::{Digest, Sha256};
use suit_manifest::builder::{self, ComponentSpec, DeltaSpec, ManifestSpec};
use suit_manifest::{Algorithm, PayloadFormat, TrustAnchor, keyfile};

const ID: Identity = Identity {
    vendor_id: [1; 16],
    class_id: [2; 16],
};

fn active(image: &[u8]) -> Option<ActiveImage> {
    Some(ActiveImage {
        digest: Sha256::digest(image).into(),
        size: image.len() as u32,
    })
}

#[test]
fn a_delta_is_accepted_only_for_the_running_image() {
    let key = keyfile::generate().unwrap();
    let anchors = [TrustAnchor::from_key(*key.verifying_key())];
    let (old, new) = (vec![7u8; 1000], vec![8u8; 1200]);
    let mut comp = ComponentSpec::for_image(&new, ID.vendor_id, ID.class_id);
    comp.uri = Some("patch".into());
    let mut spec = ManifestSpec::new(2, comp);
    spec.delta = Some(DeltaSpec::detools_from(&old));
    let delta = builder::signed_envelope(&spec, &key, Algorithm::Es256).unwrap();
    let uri = "coap://[::1]/fw/1/manifest";
    let check = |active: Option<ActiveImage>| {
        check_release(&delta, uri, &anchors, &ID, 1, 4096, &mut || active)
    };
    let release = check(active(&old)).unwrap();
    assert_eq!(
        release.payload_format,
        Some(PayloadFormat::DetoolsSequential)
    );
    assert_eq!(
        (release.size, release.image_uri.as_str()),
        (1200, "coap://[::1]/fw/1/patch")
    );
    // Another running image, one of another size only, or none known: Result 6.
    assert_eq!(check(active(&new)), Err(UpdateResult::UnsupportedPackage));
    let mut shorter = active(&old);
    if let Some(a) = shorter.as_mut() {
        a.size -= 1;
    }
    assert_eq!(check(shorter), Err(UpdateResult::UnsupportedPackage));
    assert_eq!(check(None), Err(UpdateResult::UnsupportedPackage));
    assert_eq!(
        check_manifest(&delta, uri, &anchors, &ID, 1, 4096),
        Err(UpdateResult::UnsupportedPackage)
    );
}

/// The signed delta manifest with its parameter -257 ("detools-sequential") rewritten by
/// `edit`, signed again.
fn edited(edit: impl Fn(&mut [u8])) -> Vec<u8> {
    let key = keyfile::generate().unwrap();
    let (old, new) = (vec![7u8; 1000], vec![8u8; 1200]);
    let mut comp = ComponentSpec::for_image(&new, ID.vendor_id, ID.class_id);
    comp.uri = Some("patch".into());
    let mut spec = ManifestSpec::new(2, comp);
    spec.delta = Some(DeltaSpec::detools_from(&old));
    let mut manifest = builder::manifest(&spec).unwrap();
    // -257 is CBOR 39 01 00, then the text (0x72: 18 bytes).
    let at = manifest
        .windows(22)
        .position(|w| w == b"\x39\x01\x00\x72detools-sequential")
        .expect("the format parameter is in the manifest");
    edit(&mut manifest[at..at + 22]);
    let env = builder::envelope(
        &manifest,
        builder::Signing::Sign(&key, Algorithm::Es256),
        &[],
    )
    .unwrap();
    let anchors = [TrustAnchor::from_key(*key.verifying_key())];
    assert_eq!(
        check_release(&env, "coap://[::1]/m", &anchors, &ID, 1, 4096, &mut || {
            active(&old)
        }),
        Err(UpdateResult::UnsupportedPackage)
    );
    env
}

#[test]
fn an_unknown_payload_format_is_refused() {
    edited(|p| p[4..].copy_from_slice(b"bsdiff-sequential!"));
}

#[test]
fn an_unknown_critical_parameter_is_refused() {
    // -258: critical (below -256) and unknown to this device.
    edited(|p| p[2] = 0x01);
}

#[test]
fn the_unedited_delta_is_accepted() {
    // The edit helper itself: with nothing changed the check must pass, so it would panic here.
    let r = std::panic::catch_unwind(|| edited(|_| {}));
    assert!(
        r.is_err(),
        "the unedited manifest is accepted (the refusal assert fails)"
    );
}

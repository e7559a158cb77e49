//! The builder reproduces the draft's examples byte for byte from their input descriptions, and
//! what it builds verifies and describes itself correctly.
#![cfg(feature = "std")]

mod support;

use suit_manifest::builder::{self, ComponentSpec, ManifestSpec, Signing};
use suit_manifest::{Algorithm, keyfile};

fn example_component(uri: Option<&str>, bootable: bool) -> ComponentSpec {
    // Values from spec/example0.input.json and example1.input.json.
    let digest: [u8; 32] =
        support::hex("00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210")
            .try_into()
            .unwrap();
    ComponentSpec {
        id: vec![vec![0x00]],
        vendor_id: builder::uuid_for("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe", None),
        class_id: builder::uuid_for("1492af14-2569-5e48-bf42-9b2d51f2ab45", None),
        image_digest: digest,
        image_size: 34768,
        uri: uri.map(Into::into),
        bootable,
        version: None,
    }
}

#[test]
fn example0_input_gives_exactly_the_derived_rfc6979_envelope() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let key = keyfile::signing_key_from_pem(
        &String::from_utf8(support::read(&dir, "spec/private_key.pem")).unwrap(),
    )
    .unwrap();
    let spec = ManifestSpec::new(0, example_component(None, true));
    let built = builder::signed_envelope(&spec, &key, Algorithm::Es256).unwrap();
    assert_eq!(
        built,
        support::read(&dir, "derived/example0.es256-rfc6979.cbor")
    );
    // The same manifest signed with ESP256 is libcsuit's deterministic vector.
    let built = builder::signed_envelope(&spec, &key, Algorithm::Esp256).unwrap();
    assert_eq!(
        built,
        support::read(&dir, "libcsuit-esp256/example0.esp256.cbor")
    );
}

#[test]
fn example1_input_gives_exactly_the_derived_envelope_and_the_unsigned_one() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let key = keyfile::signing_key_from_pem(
        &String::from_utf8(support::read(&dir, "spec/private_key.pem")).unwrap(),
    )
    .unwrap();
    let spec = ManifestSpec::new(
        1,
        example_component(Some("http://example.com/file.bin"), false),
    );
    let built = builder::signed_envelope(&spec, &key, Algorithm::Es256).unwrap();
    assert_eq!(
        built,
        support::read(&dir, "derived/example1.es256-rfc6979.cbor")
    );
    let manifest = builder::manifest(&spec).unwrap();
    let unsigned = builder::envelope(&manifest, Signing::Unsigned, &[]).unwrap();
    assert_eq!(unsigned, support::read(&dir, "spec/example1.unsigned.cbor"));
}

#[test]
fn uuid5_names_give_the_drafts_vendor_and_class_ids() {
    // Draft §8.4.8.2 and its examples: vendor = UUID5(DNS, "arm.com"), class = UUID5(vendor, "suit").
    let vendor = builder::uuid_for("arm.com", None);
    assert_eq!(
        vendor.to_vec(),
        support::hex("fa6b4a53d5ad5fdfbe9de663e4d41ffe")
    );
    let class = builder::uuid_for("suit", Some(&vendor));
    assert_eq!(
        class.to_vec(),
        support::hex("1492af1425695e48bf429b2d51f2ab45")
    );
}

#[test]
fn built_release_verifies_and_describes_itself() {
    let key = keyfile::generate().unwrap();
    let image: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let mut comp = ComponentSpec::for_image(&image, [1; 16], [2; 16]);
    comp.uri = Some("coap://[::1]/fw/0123456789abcdef/image".into());
    comp.version = Some("1.2.0".into());
    let env =
        builder::signed_envelope(&ManifestSpec::new(42, comp), &key, Algorithm::Es256).unwrap();
    let anchor = suit_manifest::TrustAnchor::from_key(*key.verifying_key());
    let m = suit_manifest::verify(&env, &[anchor]).unwrap();
    assert_eq!(m.sequence_number(), 42);
    let info = suit_manifest::describe(&m).unwrap()[0].unwrap();
    assert_eq!(info.vendor_id, Some(&[1u8; 16][..]));
    assert_eq!(info.class_id, Some(&[2u8; 16][..]));
    assert_eq!(info.image_size, Some(5000));
    assert!(info.image_digest.unwrap().matches(&image));
    assert_eq!(info.uri, Some("coap://[::1]/fw/0123456789abcdef/image"));
    assert_eq!(info.version, Some("1.2.0"));
}

#[test]
fn integrated_payload_sits_after_the_manifest_and_can_be_decoded_from_a_prefix() {
    let key = keyfile::generate().unwrap();
    let image = vec![0xa5u8; 3000];
    let mut comp = ComponentSpec::for_image(&image, [1; 16], [2; 16]);
    comp.uri = Some("#image".into());
    let manifest = builder::manifest(&ManifestSpec::new(3, comp)).unwrap();
    let env = builder::envelope(
        &manifest,
        Signing::Sign(&key, Algorithm::Es256),
        &[("#image", &image)],
    )
    .unwrap();
    let anchor = suit_manifest::TrustAnchor::from_key(*key.verifying_key());
    let m = suit_manifest::verify(&env, std::slice::from_ref(&anchor)).unwrap();
    assert_eq!(m.envelope().integrated_payload("#image"), Some(&image[..]));
    // A pushed package: the first 400 bytes hold everything before the payload.
    let (head_env, head) = suit_manifest::Envelope::decode_head(&env[..400]).unwrap();
    let head = head.unwrap();
    assert_eq!(head.name, "#image");
    assert_eq!(head.len, 3000);
    assert_eq!(&env[head.offset..], &image[..]);
    assert_eq!(
        head_env.authenticate(&[anchor]).unwrap().sequence_number(),
        3
    );
}

#[test]
fn pem_keys_round_trip() {
    let key = keyfile::generate().unwrap();
    let pem = keyfile::signing_key_to_pem(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(keyfile::signing_key_from_pem(&pem).unwrap(), key);
    let pubpem = keyfile::verifying_key_to_pem(key.verifying_key()).unwrap();
    assert!(pubpem.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(
        &keyfile::verifying_key_from_text(&pubpem).unwrap(),
        key.verifying_key()
    );
    assert!(keyfile::signing_key_from_pem("not a key").is_err());
}

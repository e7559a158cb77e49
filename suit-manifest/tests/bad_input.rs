//! Bad input: every malformed, truncated, oversized or hostile envelope gets its own typed error,
//! and nothing panics.
#![cfg(feature = "std")]

mod support;

use minicbor::Encoder;
use proptest::prelude::*;
use suit_manifest::builder::{self, ComponentSpec, ManifestSpec, Signing};
use suit_manifest::{Algorithm, Envelope, Error, Feature, Part, TrustAnchor, keyfile, verify};

type E = Encoder<Vec<u8>>;
type R = Result<(), minicbor::encode::Error<std::convert::Infallible>>;

fn cbor(f: impl FnOnce(&mut E) -> R) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    f(&mut e).unwrap();
    e.into_writer()
}

fn key() -> p256::ecdsa::SigningKey {
    // A fixed key keeps failures reproducible.
    p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap()
}

fn anchor() -> TrustAnchor {
    TrustAnchor::from_key(*key().verifying_key())
}

fn good_manifest() -> Vec<u8> {
    let mut comp = ComponentSpec::for_image(b"firmware", [1; 16], [2; 16]);
    comp.uri = Some("coap://h/fw/1/image".into());
    comp.version = Some("1.0.0".into());
    builder::manifest(&ManifestSpec::new(5, comp)).unwrap()
}

fn sign(manifest: &[u8]) -> Vec<u8> {
    builder::envelope(manifest, Signing::Sign(&key(), Algorithm::Es256), &[]).unwrap()
}

/// An envelope from raw parts: `auth` and `manifest` are the contents of keys 2 and 3.
fn raw_envelope(auth: &[u8], manifest: &[u8]) -> Vec<u8> {
    cbor(|e| {
        e.tag(minicbor::data::Tag::new(107))?
            .map(2)?
            .u8(2)?
            .bytes(auth)?
            .u8(3)?
            .bytes(manifest)?;
        Ok(())
    })
}

/// The authentication wrapper for `manifest` with one COSE block built by `cose`.
fn auth_with(manifest: &[u8], cose: Vec<u8>) -> Vec<u8> {
    use sha2::Digest;
    let wrapped = cbor(|e| {
        e.bytes(manifest)?;
        Ok(())
    });
    let digest = cbor(|e| {
        e.array(2)?
            .i8(-16)?
            .bytes(&sha2::Sha256::digest(&wrapped))?;
        Ok(())
    });
    cbor(|e| {
        e.array(2)?.bytes(&digest)?.bytes(&cose)?;
        Ok(())
    })
}

#[test]
fn a_valid_envelope_verifies() {
    assert_eq!(
        verify(&sign(&good_manifest()), &[anchor()])
            .unwrap()
            .sequence_number(),
        5
    );
}

#[test]
fn every_truncation_fails_with_truncated() {
    let env = sign(&good_manifest());
    let mut truncated = 0;
    for len in 0..env.len() {
        let r = verify(&env[..len], &[anchor()]);
        assert!(r.is_err(), "prefix of {len} bytes verified");
        if r.err() == Some(Error::Truncated) {
            truncated += 1;
        }
    }
    // Every cut lands inside the tagged top-level map, so each prefix is incomplete CBOR.
    assert_eq!(truncated, env.len());
}

#[test]
fn trailing_bytes_are_refused() {
    let mut env = sign(&good_manifest());
    env.push(0x00);
    assert_eq!(
        verify(&env, &[anchor()]).err(),
        Some(Error::TrailingBytes(Part::Envelope))
    );
}

#[test]
fn untagged_or_wrongly_tagged_envelopes_are_refused() {
    let env = sign(&good_manifest());
    assert_eq!(
        Envelope::decode(&env[2..]).err(),
        Some(Error::WrongTag(Part::Envelope))
    );
    let mut other = env.clone();
    other[1] = 106;
    assert_eq!(
        Envelope::decode(&other).err(),
        Some(Error::WrongTag(Part::Envelope))
    );
}

#[test]
fn wrong_types_are_refused() {
    // 107([...]) instead of 107({...})
    let arr = cbor(|e| {
        e.tag(minicbor::data::Tag::new(107))?.array(0)?;
        Ok(())
    });
    assert_eq!(
        Envelope::decode(&arr).err(),
        Some(Error::WrongType(Part::Envelope))
    );
    // The manifest as a text string.
    let bad = cbor(|e| {
        e.tag(minicbor::data::Tag::new(107))?
            .map(2)?
            .u8(2)?
            .bytes(&[0x80])?
            .u8(3)?
            .str("m")?;
        Ok(())
    });
    assert_eq!(
        Envelope::decode(&bad).err(),
        Some(Error::WrongType(Part::Envelope))
    );
}

#[test]
fn indefinite_lengths_are_refused() {
    // 107({_ 2: h'', 3: h''}) with an indefinite-length map.
    let env = [0xd8, 0x6b, 0xbf, 0x02, 0x40, 0x03, 0x40, 0xff];
    assert_eq!(Envelope::decode(&env).err(), Some(Error::IndefiniteLength));
    // An indefinite-length bstr for the manifest.
    let env = [0xd8, 0x6b, 0xa2, 0x02, 0x40, 0x03, 0x5f, 0x41, 0x00, 0xff];
    assert_eq!(Envelope::decode(&env).err(), Some(Error::IndefiniteLength));
}

#[test]
fn lengths_past_the_end_are_truncation() {
    // key 3 claims a 1000-byte bstr with 3 bytes present.
    let env = [
        0xd8, 0x6b, 0xa2, 0x02, 0x40, 0x03, 0x59, 0x03, 0xe8, 1, 2, 3,
    ];
    assert_eq!(Envelope::decode(&env).err(), Some(Error::Truncated));
}

#[test]
fn duplicate_keys_are_refused_in_envelope_manifest_and_headers() {
    let env = [0xd8, 0x6b, 0xa3, 0x02, 0x40, 0x03, 0x40, 0x02, 0x40];
    assert_eq!(
        Envelope::decode(&env).err(),
        Some(Error::DuplicateKey(Part::Envelope))
    );
    // A signed manifest with key 2 (sequence number) twice.
    let m = cbor(|e| {
        e.map(3)?.u8(1)?.u8(1)?.u8(2)?.u8(1)?.u8(2)?.u8(9)?;
        Ok(())
    });
    assert_eq!(
        verify(&sign(&m), &[anchor()]).err(),
        Some(Error::DuplicateKey(Part::Manifest))
    );
    // A protected header {1: -7, 1: -7}.
    let m = good_manifest();
    let cose = cbor(|e| {
        e.tag(minicbor::data::Tag::new(18))?
            .array(4)?
            .bytes(&[0xa2, 0x01, 0x26, 0x01, 0x26])?
            .map(0)?
            .null()?
            .bytes(&[1; 64])?;
        Ok(())
    });
    assert_eq!(
        verify(&raw_envelope(&auth_with(&m, cose), &m), &[anchor()]).err(),
        Some(Error::DuplicateKey(Part::ProtectedHeader))
    );
}

#[test]
fn oversized_integers_are_refused() {
    // Digest algorithm -2^64 (a CBOR negative integer beyond i64).
    let m = good_manifest();
    let digest = [
        0x82, 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x40,
    ];
    let auth = cbor(|e| {
        e.array(2)?.bytes(&digest)?.bytes(&[0xd2, 0x80])?;
        Ok(())
    });
    assert_eq!(
        verify(&raw_envelope(&auth, &m), &[anchor()]).err(),
        Some(Error::IntegerOverflow)
    );
    // A parameter key 2^63 (beyond i64) in override-parameters.
    let shared = cbor(|e| {
        e.array(2)?.u8(20)?.map(1)?.u64(1 << 63)?.u8(0)?;
        Ok(())
    });
    let m = manifest_with_shared(&shared);
    let env = sign(&m);
    let manifest = verify(&env, &[anchor()]).unwrap();
    assert_eq!(
        suit_manifest::describe(&manifest).err(),
        Some(Error::IntegerOverflow)
    );
}

fn manifest_with_shared(shared: &[u8]) -> Vec<u8> {
    let common = cbor(|e| {
        e.map(2)?
            .u8(2)?
            .array(1)?
            .array(1)?
            .bytes(&[0])?
            .u8(4)?
            .bytes(shared)?;
        Ok(())
    });
    cbor(|e| {
        e.map(3)?
            .u8(1)?
            .u8(1)?
            .u8(2)?
            .u8(1)?
            .u8(3)?
            .bytes(&common)?;
        Ok(())
    })
}

#[test]
fn deep_nesting_is_refused() {
    // An unprotected header holding arrays nested 40 deep.
    let m = good_manifest();
    let mut deep = vec![0xa1, 0x04];
    deep.extend(std::iter::repeat_n(0x81, 40));
    deep.push(0x00);
    let cose = cbor(|e| {
        e.tag(minicbor::data::Tag::new(18))?
            .array(4)?
            .bytes(&[0xa1, 0x01, 0x26])?;
        Ok(())
    });
    let mut cose = cose;
    cose.extend(&deep);
    cose.extend(cbor(|e| {
        e.null()?.bytes(&[1; 64])?;
        Ok(())
    }));
    assert_eq!(
        verify(&raw_envelope(&auth_with(&m, cose), &m), &[anchor()]).err(),
        Some(Error::TooDeep)
    );
}

#[test]
fn cose_structure_errors_have_their_own_variants() {
    let m = good_manifest();
    let attached = cbor(|e| {
        e.tag(minicbor::data::Tag::new(18))?
            .array(4)?
            .bytes(&[0xa1, 0x01, 0x26])?
            .map(0)?
            .bytes(b"payload")?
            .bytes(&[1; 64])?;
        Ok(())
    });
    assert_eq!(
        verify(&raw_envelope(&auth_with(&m, attached), &m), &[anchor()]).err(),
        Some(Error::AttachedPayload)
    );
    let cose_sign = cbor(|e| {
        e.tag(minicbor::data::Tag::new(98))?
            .array(4)?
            .bytes(&[])?
            .map(0)?
            .null()?
            .array(0)?;
        Ok(())
    });
    assert_eq!(
        verify(&raw_envelope(&auth_with(&m, cose_sign), &m), &[anchor()]).err(),
        Some(Error::Unsupported(Feature::MultiSignerOrMac))
    );
    let no_alg = cbor(|e| {
        e.tag(minicbor::data::Tag::new(18))?
            .array(4)?
            .bytes(&[0xa0])?
            .map(0)?
            .null()?
            .bytes(&[1; 64])?;
        Ok(())
    });
    assert_eq!(
        verify(&raw_envelope(&auth_with(&m, no_alg), &m), &[anchor()]).err(),
        Some(Error::Missing(Part::ProtectedHeader))
    );
    let short_sig = cbor(|e| {
        e.tag(minicbor::data::Tag::new(18))?
            .array(4)?
            .bytes(&[0xa1, 0x01, 0x26])?
            .map(0)?
            .null()?
            .bytes(&[1; 63])?;
        Ok(())
    });
    assert_eq!(
        verify(&raw_envelope(&auth_with(&m, short_sig), &m), &[anchor()]).err(),
        Some(Error::BadSignature)
    );
}

#[test]
fn refused_features_are_named() {
    // Delegation (envelope key 1).
    let env = [0xd8, 0x6b, 0xa1, 0x01, 0x40];
    assert_eq!(
        Envelope::decode(&env).err(),
        Some(Error::Unsupported(Feature::Delegation))
    );
    // Dependencies in common.
    let common = cbor(|e| {
        e.map(2)?.u8(1)?.map(0)?.u8(2)?.array(1)?.array(0)?;
        Ok(())
    });
    let m = cbor(|e| {
        e.map(3)?
            .u8(1)?
            .u8(1)?
            .u8(2)?
            .u8(1)?
            .u8(3)?
            .bytes(&common)?;
        Ok(())
    });
    assert_eq!(
        verify(&sign(&m), &[anchor()]).err(),
        Some(Error::Unsupported(Feature::Dependencies))
    );
    // Manifest version 2.
    let m = cbor(|e| {
        e.map(3)?
            .u8(1)?
            .u8(2)?
            .u8(2)?
            .u8(1)?
            .u8(3)?
            .bytes(&[0xa0])?;
        Ok(())
    });
    assert_eq!(
        verify(&sign(&m), &[anchor()]).err(),
        Some(Error::UnsupportedManifestVersion)
    );
    // An unknown manifest key.
    let m = cbor(|e| {
        e.map(2)?.u8(1)?.u8(1)?.u8(99)?.u8(0)?;
        Ok(())
    });
    assert_eq!(
        verify(&sign(&m), &[anchor()]).err(),
        Some(Error::UnknownKey(Part::Manifest))
    );
}

#[test]
fn limits_are_enforced_with_their_own_errors() {
    let common = cbor(|e| {
        e.map(1)?.u8(2)?.array(5)?;
        for i in 0..5u8 {
            e.array(1)?.bytes(&[i])?;
        }
        Ok(())
    });
    let m = cbor(|e| {
        e.map(3)?
            .u8(1)?
            .u8(1)?
            .u8(2)?
            .u8(1)?
            .u8(3)?
            .bytes(&common)?;
        Ok(())
    });
    assert_eq!(
        verify(&sign(&m), &[anchor()]).err(),
        Some(Error::TooManyComponents)
    );
    // A 5000-byte envelope.
    let big = vec![0u8; 5000];
    let env = cbor(|e| {
        e.tag(minicbor::data::Tag::new(107))?
            .map(3)?
            .u8(2)?
            .bytes(&[0x80])?
            .u8(3)?
            .bytes(&[0xa0])?
            .u8(23)?
            .bytes(&big)?;
        Ok(())
    });
    assert_eq!(Envelope::decode(&env).err(), Some(Error::EnvelopeTooLarge));
    // Five signatures.
    let m = good_manifest();
    let digest_auth = auth_with(&m, vec![0xf6]);
    let mut auth = vec![0x86];
    auth.extend(&digest_auth[1..digest_auth.len() - 2]);
    for _ in 0..5 {
        auth.extend([0x41, 0xf6]);
    }
    assert_eq!(
        verify(&raw_envelope(&auth, &m), &[anchor()]).err(),
        Some(Error::TooManySignatures)
    );
}

#[test]
fn a_second_trusted_key_is_enough_and_an_untrusted_one_is_not() {
    let env = sign(&good_manifest());
    let stranger = TrustAnchor::from_key(*keyfile::generate().unwrap().verifying_key());
    assert!(verify(&env, &[stranger.clone(), anchor()]).is_ok());
    assert_eq!(verify(&env, &[stranger]).err(), Some(Error::BadSignature));
    assert_eq!(TrustAnchor::from_sec1(&[4; 65]).err(), Some(Error::BadKey));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = verify(&bytes, &[anchor()]);
        let _ = Envelope::decode_head(&bytes);
        if let Ok(env) = Envelope::decode(&bytes) {
            if let Ok(m) = suit_manifest::manifest::Manifest::decode_unauthenticated(&env) {
                let _ = suit_manifest::describe(&m);
            }
        }
    }

    #[test]
    fn mutated_envelopes_never_panic_and_never_verify(pos in 0usize..400, byte in any::<u8>()) {
        let mut env = sign(&good_manifest());
        let pos = pos % env.len();
        prop_assume!(env[pos] != byte);
        env[pos] = byte;
        prop_assert!(verify(&env, &[anchor()]).is_err());
    }
}

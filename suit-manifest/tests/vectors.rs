//! Every public SUIT vector gives the verdict `expected.json` names, and the negative ones fail for
//! the reason they were made for.

mod support;

use suit_manifest::{Envelope, Error, SeverableStatus, verify};

#[test]
fn every_vector_is_judged_as_expected_json_says() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let anchor = support::spec_anchor(&dir);
    let expected: serde_json::Value =
        serde_json::from_slice(&support::read(&dir, "expected.json")).unwrap();
    let mut checked = 0;
    for (file, want) in expected.as_object().unwrap() {
        if file.starts_with('_') {
            continue;
        }
        let bytes = support::read(&dir, file);
        let sigs = want["signatures"].as_array().unwrap();
        let severable_ok = want["severable_digest_ok"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v != false);
        let should_verify = want["valid"] == true
            && !sigs.is_empty()
            && sigs.iter().all(|s| s["signature_ok"] == true)
            && want["manifest_digest_ok"] == true
            && severable_ok;
        let result = verify(&bytes, std::slice::from_ref(&anchor)).and_then(|m| {
            m.check_severed_elements()?;
            Ok(m)
        });
        match (&result, should_verify) {
            (Ok(m), true) => {
                assert_eq!(
                    m.sequence_number(),
                    want["sequence_number"].as_u64().unwrap(),
                    "{file}"
                );
                let ids: Vec<Vec<String>> = m
                    .components()
                    .map(|c| {
                        c.parts()
                            .map(|p| p.iter().map(|b| format!("{b:02x}")).collect())
                            .collect()
                    })
                    .collect();
                let want_ids: Vec<Vec<String>> =
                    serde_json::from_value(want["components"].clone()).unwrap();
                assert_eq!(ids, want_ids, "{file}");
            }
            (Err(_), false) => {}
            _ => panic!("{file}: got {result:?}, expected valid={should_verify}"),
        }
        checked += 1;
    }
    // Every .cbor file in the folder is covered by expected.json.
    let mut files = 0;
    for sub in ["spec", "derived", "libcsuit-esp256"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".cbor") {
                files += 1;
                assert!(
                    expected.get(format!("{sub}/{name}")).is_some(),
                    "{sub}/{name} not in expected.json"
                );
            }
        }
    }
    assert_eq!(checked, files);
    println!("{checked} vectors judged as expected");
}

fn verdict(dir: &std::path::Path, file: &str) -> Result<(), Error> {
    let bytes = support::read(dir, file);
    let anchor = support::spec_anchor(dir);
    let m = verify(&bytes, &[anchor])?;
    m.check_severed_elements()
}

#[test]
fn negative_vectors_fail_for_their_own_reason() {
    let Some(dir) = support::vectors() else {
        return;
    };
    assert_eq!(
        verdict(&dir, "derived/neg-bad-signature.cbor"),
        Err(Error::BadSignature)
    );
    assert_eq!(
        verdict(&dir, "derived/neg-manifest-digest-mismatch.cbor"),
        Err(Error::ManifestDigestMismatch)
    );
    assert_eq!(
        verdict(&dir, "derived/neg-digest-recomputed-signature-stale.cbor"),
        Err(Error::BadSignature)
    );
    assert_eq!(
        verdict(&dir, "derived/neg-unsupported-alg.cbor"),
        Err(Error::UnsupportedAlgorithm)
    );
    assert_eq!(
        verdict(&dir, "derived/neg-example2-severed-install-tampered.cbor"),
        Err(Error::SeveredDigestMismatch(20))
    );
    for unsigned in [
        "spec/example0.unsigned.cbor",
        "spec/example2.severed.unsigned.cbor",
    ] {
        assert_eq!(verdict(&dir, unsigned), Err(Error::Unsigned), "{unsigned}");
    }
}

#[test]
fn a_wrong_key_is_refused() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let bytes = support::read(&dir, "spec/example0.cbor");
    // Any other valid point: the generator of P-256.
    let other = support::hex(
        "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\
         4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
    );
    let anchor = suit_manifest::TrustAnchor::from_sec1(&other).unwrap();
    assert_eq!(verify(&bytes, &[anchor]).err(), Some(Error::BadSignature));
}

#[test]
fn manifest_digest_covers_the_bstr_header() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let bytes = support::read(&dir, "spec/example0.cbor");
    let env = Envelope::decode(&bytes).unwrap();
    // From the draft (Appendix B, Example 0): the digest is over the 115 bytes `5871a5...`.
    assert_eq!(env.manifest_bstr().len(), 115);
    assert_eq!(&env.manifest_bstr()[..3], &[0x58, 0x71, 0xa5]);
    let want = support::hex("6658ea560262696dd1f13b782239a064da7c6c5cbaf52fded428a6fc83c7e5af");
    let d: [u8; 32] = want.try_into().unwrap();
    assert!(suit_manifest::Sha256Digest(d).matches(env.manifest_bstr()));
}

#[test]
fn severed_example_reports_its_elements() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let anchor = support::spec_anchor(&dir);
    let full = support::read(&dir, "spec/example2.cbor");
    let m = verify(&full, std::slice::from_ref(&anchor)).unwrap();
    assert_eq!(m.severable_status(20), SeverableStatus::SeveredPresent);
    assert_eq!(m.severable_status(23), SeverableStatus::SeveredPresent);
    assert_eq!(m.reference_uri(), Some("https://git.io/JJYoj"));
    let text = m.text().unwrap().unwrap();
    let comp = m.component(0).unwrap();
    assert_eq!(
        text.component_text(comp, suit_manifest::keys::text::VENDOR_DOMAIN),
        Some("arm.com")
    );
    assert!(text.manifest_text(1).unwrap().starts_with("## Example 2"));

    let severed = support::read(&dir, "spec/example2.severed.cbor");
    let m = verify(&severed, &[anchor]).unwrap();
    assert_eq!(m.severable_status(20), SeverableStatus::SeveredAbsent);
    assert_eq!(
        m.sequence(suit_manifest::SequenceKind::Install),
        Err(Error::SeveredElementMissing(20))
    );
    assert_eq!(m.text().unwrap().map(|_| ()), None);
}

#[test]
fn one_flipped_byte_anywhere_makes_verification_fail() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let anchor = support::spec_anchor(&dir);
    // Example 2 has every part: signature, protected header, manifest and severed elements.
    for file in [
        "spec/example2.cbor",
        "spec/example0.cbor",
        "libcsuit-esp256/example3.esp256.cbor",
    ] {
        let good = support::read(&dir, file);
        assert!(verdict(&dir, file).is_ok());
        for i in 0..good.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= mask;
                let r = verify(&bad, std::slice::from_ref(&anchor))
                    .and_then(|m| m.check_severed_elements());
                assert!(
                    r.is_err(),
                    "{file}: flipping byte {i} with {mask:#x} still verifies"
                );
            }
        }
    }
}

//! The ES256 policy on the host's P-256 backend: every conformance case of
//! `suit_manifest::es256_cases` gets the verdict the policy gives it (the QEMU firmware
//! `suit-verify` runs the same cases on the Cortex-M4 assembly).

use suit_manifest::es256_cases::{Verdict, cases};

#[test]
fn every_policy_case_gets_its_verdict() {
    let all = cases();
    assert!(all.len() >= 20, "{} cases", all.len());
    for case in &all {
        assert_eq!(
            Verdict::of(&case.key, &case.prehash, &case.signature),
            case.expected,
            "{}",
            case.name
        );
    }
    // The cases cover all three verdicts, and the high-S one is really high: s > n/2.
    for v in [Verdict::Valid, Verdict::Invalid, Verdict::BadKey] {
        assert!(all.iter().any(|c| c.expected == v), "{v:?}");
    }
    let high = all.iter().find(|c| c.name.starts_with("high S")).unwrap();
    assert!(
        high.signature[32] >= 0x80,
        "s of the high-S case is not above n/2"
    );
    assert!(
        all.iter()
            .any(|c| c.name == "compressed x not on the curve")
    );
}

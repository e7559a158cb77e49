//! The command interpreter on the draft's examples and on hand-made manifests that hit each rule:
//! conditions, soft failure, try-each, run-sequence, component indices, directives, limits.
#![cfg(feature = "std")]

mod support;

use minicbor::Encoder;
use sha2::{Digest as _, Sha256};
use suit_manifest::builder::{self, ComponentSpec, DeltaSpec, ManifestSpec, Signing};
use suit_manifest::{
    Algorithm, Component, Device, Error, Feature, Interpreter, Parameters, PayloadFormat, RunError,
    SequenceKind, Sha256Digest, TrustAnchor, describe, keyfile, precursor,
};

const VENDOR: [u8; 16] = [
    0xfa, 0x6b, 0x4a, 0x53, 0xd5, 0xad, 0x5f, 0xdf, 0xbe, 0x9d, 0xe6, 0x63, 0xe4, 0xd4, 0x1f, 0xfe,
];
const CLASS: [u8; 16] = [
    0x14, 0x92, 0xaf, 0x14, 0x25, 0x69, 0x5e, 0x48, 0xbf, 0x42, 0x9b, 0x2d, 0x51, 0xf2, 0xab, 0x45,
];

/// A device with a log: it matches the examples' vendor and class, has `slot` as its free slot,
/// and holds images whose digests it knows.
#[derive(Default)]
struct TestDevice {
    vendor: Vec<u8>,
    class: Vec<u8>,
    slot: u64,
    images: Vec<(usize, [u8; 32])>,
    log: Vec<String>,
    fail_fetch: bool,
    /// The payload format of each fetch.
    formats: Vec<Option<PayloadFormat>>,
}

impl TestDevice {
    fn examples() -> Self {
        TestDevice {
            vendor: VENDOR.to_vec(),
            class: CLASS.to_vec(),
            ..Default::default()
        }
    }
}

impl<'a> Device<'a> for TestDevice {
    type Error = &'static str;
    fn check_vendor(&mut self, c: Component<'a>, v: &'a [u8]) -> Result<bool, Self::Error> {
        self.log.push(format!("vendor {}", c.index));
        Ok(v == self.vendor.as_slice())
    }
    fn check_class(&mut self, c: Component<'a>, v: &'a [u8]) -> Result<bool, Self::Error> {
        self.log.push(format!("class {}", c.index));
        Ok(v == self.class.as_slice())
    }
    fn check_slot(&mut self, c: Component<'a>, slot: u64) -> Result<bool, Self::Error> {
        self.log.push(format!("slot {} {slot}", c.index));
        Ok(slot == self.slot)
    }
    fn check_image(
        &mut self,
        c: Component<'a>,
        d: &Sha256Digest,
        size: Option<u64>,
    ) -> Result<bool, Self::Error> {
        self.log.push(format!(
            "image-match {} {:02x}{:02x} {size:?}",
            c.index, d.0[0], d.0[1]
        ));
        Ok(self.images.iter().any(|(i, h)| *i == c.index && *h == d.0))
    }
    fn fetch(&mut self, c: Component<'a>, p: &Parameters<'a>) -> Result<(), Self::Error> {
        self.log
            .push(format!("fetch {} {}", c.index, p.uri.unwrap_or("")));
        self.formats.push(p.payload_format);
        if self.fail_fetch {
            return Err("no network");
        }
        if let Some(d) = p.image_digest {
            self.images.push((c.index, d.0));
        }
        Ok(())
    }
    fn copy(
        &mut self,
        c: Component<'a>,
        src: Component<'a>,
        p: &Parameters<'a>,
    ) -> Result<(), Self::Error> {
        self.log.push(format!("copy {} <- {}", c.index, src.index));
        if let Some(d) = p.image_digest {
            self.images.push((c.index, d.0));
        }
        Ok(())
    }
    fn swap(&mut self, c: Component<'a>, src: Component<'a>) -> Result<(), Self::Error> {
        self.log.push(format!("swap {} {}", c.index, src.index));
        Ok(())
    }
    fn write(&mut self, c: Component<'a>, content: &'a [u8]) -> Result<(), Self::Error> {
        self.log
            .push(format!("write {} {}", c.index, content.len()));
        Ok(())
    }
    fn invoke(&mut self, c: Component<'a>, _args: Option<&'a [u8]>) -> Result<(), Self::Error> {
        self.log.push(format!("invoke {}", c.index));
        Ok(())
    }
}

const DIGEST_A: [u8; 32] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
];

#[test]
fn example0_secure_boot_invokes_only_a_matching_image() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let bytes = support::read(&dir, "spec/example0.cbor");
    let m = suit_manifest::verify(&bytes, &[support::spec_anchor(&dir)]).unwrap();
    let mut dev = TestDevice::examples();
    assert_eq!(
        Interpreter::new(&m).invoke(&mut dev),
        Err(RunError::Suit(Error::ConditionFailed(3))),
        "no image stored: image-match fails"
    );
    dev.images.push((0, DIGEST_A));
    dev.log.clear();
    Interpreter::new(&m).invoke(&mut dev).unwrap();
    assert_eq!(
        dev.log,
        [
            "vendor 0",
            "class 0",
            "image-match 0 0011 Some(34768)",
            "vendor 0",
            "class 0",
            "invoke 0"
        ]
    );
    // Another vendor: refused at the first condition, nothing invoked.
    let mut other = TestDevice {
        vendor: vec![0; 16],
        ..TestDevice::examples()
    };
    other.images.push((0, DIGEST_A));
    assert_eq!(
        Interpreter::new(&m).invoke(&mut other),
        Err(RunError::Suit(Error::ConditionFailed(1)))
    );
    assert!(!other.log.iter().any(|l| l.starts_with("invoke")));
}

#[test]
fn example1_install_fetches_then_matches() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let bytes = support::read(&dir, "spec/example1.cbor");
    let m = suit_manifest::verify(&bytes, &[support::spec_anchor(&dir)]).unwrap();
    let mut dev = TestDevice::examples();
    Interpreter::new(&m).update(&mut dev).unwrap();
    assert!(
        dev.log
            .contains(&"fetch 0 http://example.com/file.bin".to_string()),
        "{:?}",
        dev.log
    );
    // A failing fetch is the device's error, passed through.
    let mut dev = TestDevice {
        fail_fetch: true,
        ..TestDevice::examples()
    };
    assert_eq!(
        Interpreter::new(&m).update(&mut dev),
        Err(RunError::Device("no network"))
    );
}

#[test]
fn example3_try_each_picks_the_branch_of_the_free_slot() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let bytes = support::read(&dir, "spec/example3.cbor");
    let m = suit_manifest::verify(&bytes, &[support::spec_anchor(&dir)]).unwrap();
    for (slot, uri, size) in [
        (0, "http://example.com/file1.bin", 34768),
        (1, "http://example.com/file2.bin", 76834),
    ] {
        let mut dev = TestDevice {
            slot,
            ..TestDevice::examples()
        };
        let mut interp = Interpreter::new(&m);
        interp.update(&mut dev).unwrap();
        assert!(
            dev.log.contains(&format!("fetch 0 {uri}")),
            "slot {slot}: {:?}",
            dev.log
        );
        assert_eq!(interp.parameters(0).unwrap().image_size, Some(size));
    }
    // A device whose free slot is 2 matches neither branch.
    let mut dev = TestDevice {
        slot: 2,
        ..TestDevice::examples()
    };
    assert_eq!(
        Interpreter::new(&m).update(&mut dev),
        Err(RunError::Suit(Error::TryEachFailed))
    );
}

#[test]
fn example4_copies_between_three_components() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let bytes = support::read(&dir, "spec/example4.cbor");
    let m = suit_manifest::verify(&bytes, &[support::spec_anchor(&dir)]).unwrap();
    assert_eq!(m.component_count(), 3);
    let mut dev = TestDevice::examples();
    Interpreter::new(&m).update(&mut dev).unwrap();
    assert!(
        dev.log
            .contains(&"fetch 1 http://example.com/file.bin".to_string()),
        "{:?}",
        dev.log
    );
    assert!(
        dev.log.contains(&"copy 0 <- 1".to_string()),
        "{:?}",
        dev.log
    );
    dev.log.clear();
    Interpreter::new(&m).invoke(&mut dev).unwrap();
    assert!(
        dev.log.contains(&"copy 2 <- 0".to_string()),
        "{:?}",
        dev.log
    );
    assert_eq!(dev.log.last().unwrap(), "invoke 2");
}

#[test]
fn example5_fetches_both_images() {
    let Some(dir) = support::vectors() else {
        return;
    };
    let bytes = support::read(&dir, "spec/example5.cbor");
    let m = suit_manifest::verify(&bytes, &[support::spec_anchor(&dir)]).unwrap();
    let mut dev = TestDevice::examples();
    Interpreter::new(&m).update(&mut dev).unwrap();
    let fetches: Vec<_> = dev.log.iter().filter(|l| l.starts_with("fetch")).collect();
    assert_eq!(fetches.len(), 2, "{:?}", dev.log);
    assert!(fetches[0].starts_with("fetch 0 ") && fetches[1].starts_with("fetch 1 "));
}

// ---- hand-made manifests ----

type E = Encoder<Vec<u8>>;
type R = Result<(), minicbor::encode::Error<std::convert::Infallible>>;

fn cbor(f: impl FnOnce(&mut E) -> R) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    f(&mut e).unwrap();
    e.into_writer()
}

/// A signed manifest with `n_components` components `[h'0i']`, the given shared sequence and
/// install sequence (raw CBOR arrays).
fn signed(n_components: u8, shared: &[u8], install: &[u8]) -> (Vec<u8>, TrustAnchor) {
    let key = keyfile::generate().unwrap();
    let common = cbor(|e| {
        e.map(2)?.u8(2)?.array(n_components as u64)?;
        for i in 0..n_components {
            e.array(1)?.bytes(&[i])?;
        }
        e.u8(4)?.bytes(shared)?;
        Ok(())
    });
    let manifest = cbor(|e| {
        e.map(4)?
            .u8(1)?
            .u8(1)?
            .u8(2)?
            .u8(7)?
            .u8(3)?
            .bytes(&common)?
            .u8(20)?
            .bytes(install)?;
        Ok(())
    });
    let env = builder::envelope(&manifest, Signing::Sign(&key, Algorithm::Es256), &[]).unwrap();
    (env, TrustAnchor::from_key(*key.verifying_key()))
}

fn run_install(
    shared: &[u8],
    install: &[u8],
    dev: &mut TestDevice,
) -> Result<(), RunError<&'static str>> {
    run_install_n(1, shared, install, dev)
}

fn run_install_n(
    n: u8,
    shared: &[u8],
    install: &[u8],
    dev: &mut TestDevice,
) -> Result<(), RunError<&'static str>> {
    let (env, anchor) = signed(n, shared, install);
    let m = suit_manifest::verify(&env, &[anchor]).unwrap();
    Interpreter::new(&m).run(SequenceKind::Install, dev)
}

fn ids() -> Vec<u8> {
    cbor(|e| {
        e.array(6)?
            .i8(20)?
            .map(2)?
            .u8(1)?
            .bytes(&VENDOR)?
            .u8(2)?
            .bytes(&CLASS)?;
        e.u8(1)?.u8(15)?.u8(2)?.u8(15)?;
        Ok(())
    })
}

#[test]
fn soft_failure_may_only_be_set_inside_try_each_or_run_sequence() {
    let install = cbor(|e| {
        e.array(2)?.u8(20)?.map(1)?.u8(13)?.bool(true)?;
        Ok(())
    });
    let mut dev = TestDevice::examples();
    assert_eq!(
        run_install(&ids(), &install, &mut dev),
        Err(RunError::Suit(Error::SoftFailureOutsideTryEach))
    );
}

#[test]
fn run_sequence_with_soft_failure_swallows_a_failed_condition() {
    // run-sequence [ override {soft-failure: true, slot: 9}, condition-slot, write ] then invoke.
    let inner = cbor(|e| {
        e.array(6)?
            .u8(20)?
            .map(3)?
            .u8(5)?
            .u8(9)?
            .u8(13)?
            .bool(true)?
            .u8(18)?
            .bytes(b"x")?;
        e.u8(5)?.u8(15)?.u8(18)?.u8(2)?;
        Ok(())
    });
    let install = cbor(|e| {
        e.array(4)?.u8(32)?.bytes(&inner)?.u8(23)?.u8(2)?;
        Ok(())
    });
    let mut dev = TestDevice::examples();
    run_install(&ids(), &install, &mut dev).unwrap();
    assert!(
        !dev.log.iter().any(|l| l.starts_with("write")),
        "the write after the failed condition ran"
    );
    assert_eq!(dev.log.last().unwrap(), "invoke 0");
    // Without soft-failure, the same failed condition aborts the whole run.
    let inner = cbor(|e| {
        e.array(4)?.u8(20)?.map(1)?.u8(5)?.u8(9)?;
        e.u8(5)?.u8(15)?;
        Ok(())
    });
    let install = cbor(|e| {
        e.array(4)?.u8(32)?.bytes(&inner)?.u8(23)?.u8(2)?;
        Ok(())
    });
    let mut dev = TestDevice::examples();
    assert_eq!(
        run_install(&ids(), &install, &mut dev),
        Err(RunError::Suit(Error::ConditionFailed(5)))
    );
}

#[test]
fn try_each_with_a_trailing_nil_lets_every_branch_fail() {
    let failing = cbor(|e| {
        e.array(4)?.u8(20)?.map(1)?.u8(5)?.u8(7)?.u8(5)?.u8(15)?;
        Ok(())
    });
    let with_nil = cbor(|e| {
        e.array(4)?
            .u8(15)?
            .array(3)?
            .bytes(&failing)?
            .bytes(&failing)?
            .null()?
            .u8(23)?
            .u8(2)?;
        Ok(())
    });
    let mut dev = TestDevice::examples();
    run_install(&ids(), &with_nil, &mut dev).unwrap();
    assert_eq!(dev.log.last().unwrap(), "invoke 0");
    let without = cbor(|e| {
        e.array(2)?
            .u8(15)?
            .array(2)?
            .bytes(&failing)?
            .bytes(&failing)?;
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &without, &mut dev),
        Err(RunError::Suit(Error::TryEachFailed))
    );
    // nil anywhere but last is malformed.
    let nil_first = cbor(|e| {
        e.array(2)?.u8(15)?.array(2)?.null()?.bytes(&failing)?;
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &nil_first, &mut dev),
        Err(RunError::Suit(Error::MalformedCommand))
    );
}

#[test]
fn set_component_index_selects_one_all_or_a_list_and_checks_range() {
    let install_all = cbor(|e| {
        e.array(4)?.u8(12)?.bool(true)?.u8(23)?.u8(2)?;
        Ok(())
    });
    let mut dev = TestDevice::examples();
    run_install_n(3, &ids(), &install_all, &mut dev).unwrap();
    let invokes: Vec<_> = dev
        .log
        .iter()
        .filter(|l| l.starts_with("invoke"))
        .cloned()
        .collect();
    assert_eq!(invokes, ["invoke 0", "invoke 1", "invoke 2"]);
    let install_list = cbor(|e| {
        e.array(4)?.u8(12)?.array(2)?.u8(0)?.u8(2)?.u8(23)?.u8(2)?;
        Ok(())
    });
    let mut dev = TestDevice::examples();
    run_install_n(3, &ids(), &install_list, &mut dev).unwrap();
    let invokes: Vec<_> = dev
        .log
        .iter()
        .filter(|l| l.starts_with("invoke"))
        .cloned()
        .collect();
    assert_eq!(invokes, ["invoke 0", "invoke 2"]);
    let out_of_range = cbor(|e| {
        e.array(2)?.u8(12)?.u8(3)?;
        Ok(())
    });
    assert_eq!(
        run_install_n(3, &ids(), &out_of_range, &mut dev),
        Err(RunError::Suit(Error::ComponentIndexOutOfRange))
    );
}

#[test]
fn directives_are_refused_in_the_shared_sequence() {
    let shared = cbor(|e| {
        e.array(4)?
            .i8(20)?
            .map(1)?
            .u8(21)?
            .str("coap://x/y")?
            .u8(21)?
            .u8(2)?;
        Ok(())
    });
    let install = cbor(|e| {
        e.array(2)?.u8(23)?.u8(2)?;
        Ok(())
    });
    let mut dev = TestDevice::examples();
    assert_eq!(
        run_install(&shared, &install, &mut dev),
        Err(RunError::Suit(Error::CommandNotAllowedInSharedSequence))
    );
    assert!(!dev.log.iter().any(|l| l.starts_with("fetch")));
}

#[test]
fn missing_parameters_unknown_and_unsupported_commands_are_typed_errors() {
    let mut dev = TestDevice::examples();
    let fetch_without_uri = cbor(|e| {
        e.array(2)?.u8(21)?.u8(2)?;
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &fetch_without_uri, &mut dev),
        Err(RunError::Suit(Error::MissingParameter(21)))
    );
    let match_without_digest = cbor(|e| {
        e.array(2)?.u8(3)?.u8(15)?;
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &match_without_digest, &mut dev),
        Err(RunError::Suit(Error::MissingParameter(3)))
    );
    let unknown = cbor(|e| {
        e.array(2)?.u8(99)?.u8(0)?;
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &unknown, &mut dev),
        Err(RunError::Suit(Error::UnknownCommand))
    );
    let process_dependency = cbor(|e| {
        e.array(2)?.u8(11)?.u8(0)?;
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &process_dependency, &mut dev),
        Err(RunError::Suit(Error::Unsupported(
            suit_manifest::Feature::Command
        )))
    );
    let encrypted = cbor(|e| {
        e.array(2)?.u8(20)?.map(1)?.u8(19)?.bytes(&[0xd8, 0x60])?;
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &encrypted, &mut dev),
        Err(RunError::Suit(Error::Unsupported(
            suit_manifest::Feature::Encryption
        )))
    );
    let odd = cbor(|e| {
        e.array(3)?.u8(23)?.u8(2)?.u8(23)?;
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &odd, &mut dev),
        Err(RunError::Suit(Error::MalformedCommand))
    );
    let abort = cbor(|e| {
        e.array(2)?.u8(14)?.u8(0)?;
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &abort, &mut dev),
        Err(RunError::Suit(Error::Aborted))
    );
}

#[test]
fn limits_on_sequence_length_and_nesting() {
    let mut dev = TestDevice::examples();
    let long = cbor(|e| {
        e.array(2 * 33)?;
        for _ in 0..33 {
            e.u8(23)?.u8(2)?;
        }
        Ok(())
    });
    assert_eq!(
        run_install(&ids(), &long, &mut dev),
        Err(RunError::Suit(Error::TooManyCommands))
    );
    // run-sequence nested five deep.
    let mut seq = cbor(|e| {
        e.array(2)?.u8(23)?.u8(2)?;
        Ok(())
    });
    for _ in 0..5 {
        let inner = seq.clone();
        seq = cbor(|e| {
            e.array(2)?.u8(32)?.bytes(&inner)?;
            Ok(())
        });
    }
    assert_eq!(
        run_install(&ids(), &seq, &mut dev),
        Err(RunError::Suit(Error::TooDeep))
    );
}

// ---- delta releases (DESIGN.md "Delta") ----

fn release(new: &[u8], delta_from: Option<&[u8]>) -> (Vec<u8>, TrustAnchor) {
    let key = keyfile::generate().unwrap();
    let mut comp = ComponentSpec::for_image(new, VENDOR, CLASS);
    comp.uri = Some("image".into());
    let mut spec = ManifestSpec::new(5, comp);
    spec.delta = delta_from.map(DeltaSpec::detools_from);
    let env = builder::signed_envelope(&spec, &key, Algorithm::Es256).unwrap();
    (env, TrustAnchor::from_key(*key.verifying_key()))
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[test]
fn a_delta_release_names_its_precursor_and_payload_format() {
    let (old, new) = (b"the old image".as_slice(), b"the new image!".as_slice());
    let (env, anchor) = release(new, Some(old));
    let m = suit_manifest::verify(&env, &[anchor]).unwrap();
    let info = describe(&m).unwrap();
    let image = info[0].unwrap();
    assert_eq!(image.payload_format, Some(PayloadFormat::DetoolsSequential));
    assert_eq!(image.image_digest.map(|d| d.0), Some(sha(new)));
    assert_eq!(image.image_size, Some(new.len() as u64));
    let pre = precursor(&info).expect("a precursor");
    assert_eq!(pre.id.parts().collect::<Vec<_>>(), [b"active".as_slice()]);
    assert_eq!(pre.image_digest.map(|d| d.0), Some(sha(old)));
    assert_eq!(pre.image_size, Some(old.len() as u64));
    // A full release has neither.
    let (env, anchor) = release(new, None);
    let m = suit_manifest::verify(&env, &[anchor]).unwrap();
    let info = describe(&m).unwrap();
    assert_eq!(info[0].unwrap().payload_format, None);
    assert!(precursor(&info).is_none());
}

#[test]
fn a_delta_release_checks_the_precursor_before_it_fetches() {
    let (old, new) = (b"the old image".as_slice(), b"the new image!".as_slice());
    let (env, anchor) = release(new, Some(old));
    let m = suit_manifest::verify(&env, &[anchor]).unwrap();
    // Another active image: refused at the precursor's image-match, nothing fetched.
    let mut dev = TestDevice::examples();
    dev.images.push((1, sha(b"another image")));
    assert_eq!(
        Interpreter::new(&m).update(&mut dev),
        Err(RunError::Suit(Error::ConditionFailed(3)))
    );
    assert!(
        !dev.log.iter().any(|l| l.starts_with("fetch")),
        "{:?}",
        dev.log
    );
    // The precursor: the fetch (of component 0) learns the payload is a patch.
    let mut dev = TestDevice::examples();
    dev.images.push((1, sha(old)));
    Interpreter::new(&m).update(&mut dev).unwrap();
    assert_eq!(dev.formats, [Some(PayloadFormat::DetoolsSequential)]);
    let first_match = dev.log.iter().position(|l| l.starts_with("image-match 1"));
    let fetch = dev.log.iter().position(|l| l == "fetch 0 image");
    assert!(first_match < fetch && fetch.is_some(), "{:?}", dev.log);
    // Validate and invoke (after the swap, when the active image is the new one) do not check
    // the precursor.
    let mut dev = TestDevice::examples();
    dev.images.push((0, sha(new)));
    Interpreter::new(&m).invoke(&mut dev).unwrap();
    assert!(!dev.log.iter().any(|l| l.starts_with("image-match 1")));
}

#[test]
fn unknown_critical_parameters_and_payload_formats_are_refused() {
    let install = |key: i64, value: &str| {
        cbor(|e| {
            e.array(2)?.u8(20)?.map(1)?.i64(key)?.str(value)?;
            Ok(())
        })
    };
    let mut dev = TestDevice::examples();
    assert_eq!(
        run_install(&ids(), &install(-258, "x"), &mut dev),
        Err(RunError::Suit(Error::Unsupported(
            Feature::CriticalParameter
        )))
    );
    assert_eq!(
        run_install(&ids(), &install(-257, "bsdiff-raw"), &mut dev),
        Err(RunError::Suit(Error::Unsupported(Feature::PayloadFormat)))
    );
    // Keys -1 to -256 stay hints.
    assert_eq!(run_install(&ids(), &install(-256, "x"), &mut dev), Ok(()));
}

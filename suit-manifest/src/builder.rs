//! Building and signing envelopes on the host (feature `std`). The output is deterministic CBOR
//! (shortest forms, map keys in ascending order) laid out the way the draft's examples are, so the
//! same input gives the same bytes as the reference tool; signatures are RFC 6979 deterministic.

use std::string::String;
use std::vec::Vec;

use minicbor::Encoder;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest as _, Sha256};

use crate::cose::Algorithm;
use crate::inspect::ACTIVE_COMPONENT_ID;
use crate::keys::{self, command as c, parameter as p};
use crate::params::PayloadFormat;

/// One image to describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentSpec {
    /// The component identifier's parts, e.g. `vec![vec![0]]` for `[h'00']`.
    pub id: Vec<Vec<u8>>,
    pub vendor_id: [u8; 16],
    pub class_id: [u8; 16],
    /// SHA-256 of the image.
    pub image_digest: [u8; 32],
    pub image_size: u64,
    /// Where the device fetches the image: absolute, relative to the manifest's URI, or `#name`
    /// for a payload integrated in the envelope. `None`: no install sequence (secure boot only).
    pub uri: Option<String>,
    /// Add an invoke sequence (the image is booted).
    pub bootable: bool,
    /// component-version in the text map.
    pub version: Option<String>,
}

impl ComponentSpec {
    /// A single component `[h'00']` for an image, as `suit create` makes it.
    pub fn for_image(image: &[u8], vendor_id: [u8; 16], class_id: [u8; 16]) -> Self {
        ComponentSpec {
            id: vec![vec![0]],
            vendor_id,
            class_id,
            image_digest: Sha256::digest(image).into(),
            image_size: image.len() as u64,
            uri: None,
            bootable: true,
            version: None,
        }
    }
}

/// A manifest to build. One component: what an A/B device updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestSpec {
    pub sequence_number: u64,
    pub component: ComponentSpec,
    /// Text language tag for the version string.
    pub language: String,
    /// Make it a delta release: the payload at the component's URI is a patch against this
    /// precursor.
    pub delta: Option<DeltaSpec>,
}

/// The precursor a delta release applies to, and the patch's format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaSpec {
    /// SHA-256 and size of the image the patch applies to (the device's active image).
    pub precursor_digest: [u8; 32],
    pub precursor_size: u64,
    pub format: PayloadFormat,
}

impl DeltaSpec {
    /// A detools sequential patch against `precursor`.
    pub fn detools_from(precursor: &[u8]) -> Self {
        DeltaSpec {
            precursor_digest: Sha256::digest(precursor).into(),
            precursor_size: precursor.len() as u64,
            format: PayloadFormat::DetoolsSequential,
        }
    }
}

impl ManifestSpec {
    pub fn new(sequence_number: u64, component: ComponentSpec) -> Self {
        ManifestSpec {
            sequence_number,
            component,
            language: "en-US".into(),
            delta: None,
        }
    }
}

/// Building failed: only an encoder or signer fault, so one variant carries the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub &'static str);

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BuildError {}

type Enc = Encoder<Vec<u8>>;

fn enc_err<E>(_: E) -> BuildError {
    BuildError("CBOR encoding failed")
}

fn encode(
    f: impl FnOnce(&mut Enc) -> Result<(), minicbor::encode::Error<core::convert::Infallible>>,
) -> Result<Vec<u8>, BuildError> {
    let mut e = Encoder::new(Vec::new());
    f(&mut e).map_err(enc_err)?;
    Ok(e.into_writer())
}

/// The encoded SUIT_Digest `[-16, h'...']`.
fn suit_digest(hash: &[u8; 32]) -> Result<Vec<u8>, BuildError> {
    encode(|e| {
        e.array(2)?.i64(keys::cose::ALG_SHA256)?.bytes(hash)?;
        Ok(())
    })
}

/// The manifest (the map, not yet bstr-wrapped).
pub fn manifest(spec: &ManifestSpec) -> Result<Vec<u8>, BuildError> {
    let comp = &spec.component;
    let digest = suit_digest(&comp.image_digest)?;
    let shared = encode(|e| {
        e.array(6)?;
        e.i64(c::OVERRIDE_PARAMETERS)?.map(4)?;
        e.i64(p::VENDOR_IDENTIFIER)?.bytes(&comp.vendor_id)?;
        e.i64(p::CLASS_IDENTIFIER)?.bytes(&comp.class_id)?;
        e.i64(p::IMAGE_DIGEST)?.bytes(&digest)?;
        e.i64(p::IMAGE_SIZE)?.u64(comp.image_size)?;
        e.i64(c::VENDOR_IDENTIFIER)?.u64(keys::report::ALL)?;
        e.i64(c::CLASS_IDENTIFIER)?.u64(keys::report::ALL)?;
        Ok(())
    })?;
    let common = encode(|e| {
        e.map(2)?.u64(keys::common::COMPONENTS)?;
        e.array(1 + u64::from(spec.delta.is_some()))?;
        component_id(e, &comp.id)?;
        if spec.delta.is_some() {
            component_id(e, &[ACTIVE_COMPONENT_ID.to_vec()])?;
        }
        e.u64(keys::common::SHARED_SEQUENCE)?.bytes(&shared)?;
        Ok(())
    })?;
    let validate = encode(|e| {
        e.array(2)?.i64(c::IMAGE_MATCH)?.u64(keys::report::ALL)?;
        Ok(())
    })?;
    let invoke = encode(|e| {
        e.array(2)?
            .i64(c::INVOKE)?
            .u64(keys::report::RECORD_ON_FAILURE)?;
        Ok(())
    })?;
    let install = match &comp.uri {
        None => None,
        Some(uri) => Some(encode(|e| {
            e.array(6 + if spec.delta.is_some() { 8 } else { 0 })?;
            if let Some(delta) = &spec.delta {
                precursor_check(e, delta)?;
            }
            e.i64(c::OVERRIDE_PARAMETERS)?
                .map(1 + u64::from(spec.delta.is_some()))?
                .i64(p::URI)?
                .str(uri)?;
            if let Some(delta) = &spec.delta {
                e.i64(p::PAYLOAD_FORMAT)?.str(delta.format.as_str())?;
            }
            e.i64(c::FETCH)?.u64(keys::report::RECORD_ON_FAILURE)?;
            e.i64(c::IMAGE_MATCH)?.u64(keys::report::ALL)?;
            Ok(())
        })?),
    };
    let text = match &comp.version {
        None => None,
        Some(version) => Some(encode(|e| {
            e.map(1)?.str(&spec.language)?.map(1)?;
            component_id(e, &comp.id)?;
            e.map(1)?.i64(keys::text::COMPONENT_VERSION)?.str(version)?;
            Ok(())
        })?),
    };
    let entries =
        4 + u64::from(comp.bootable) + u64::from(install.is_some()) + u64::from(text.is_some());
    encode(|e| {
        e.map(entries)?;
        e.u64(keys::manifest::VERSION)?.u64(1)?;
        e.u64(keys::manifest::SEQUENCE_NUMBER)?
            .u64(spec.sequence_number)?;
        e.u64(keys::manifest::COMMON)?.bytes(&common)?;
        e.u64(keys::manifest::VALIDATE)?.bytes(&validate)?;
        if comp.bootable {
            e.u64(keys::manifest::INVOKE)?.bytes(&invoke)?;
        }
        if let Some(install) = &install {
            e.u64(keys::manifest::INSTALL)?.bytes(install)?;
        }
        if let Some(text) = &text {
            e.u64(keys::manifest::TEXT)?.bytes(text)?;
        }
        Ok(())
    })
}

/// The start of a delta install sequence: component 1 (the active image) must have the
/// precursor's digest and size, then component 0 is selected again for the fetch. In install,
/// not in the shared sequence, because the shared sequence also runs before validate and invoke,
/// when the active image is already the new one.
fn precursor_check(
    e: &mut Enc,
    delta: &DeltaSpec,
) -> Result<(), minicbor::encode::Error<core::convert::Infallible>> {
    let digest = suit_digest(&delta.precursor_digest)
        .map_err(|_| minicbor::encode::Error::message("digest"))?;
    e.i64(c::SET_COMPONENT_INDEX)?.u64(1)?;
    e.i64(c::OVERRIDE_PARAMETERS)?.map(2)?;
    e.i64(p::IMAGE_DIGEST)?.bytes(&digest)?;
    e.i64(p::IMAGE_SIZE)?.u64(delta.precursor_size)?;
    e.i64(c::IMAGE_MATCH)?.u64(keys::report::ALL)?;
    e.i64(c::SET_COMPONENT_INDEX)?.u64(0)?;
    Ok(())
}

fn component_id(
    e: &mut Enc,
    id: &[Vec<u8>],
) -> Result<(), minicbor::encode::Error<core::convert::Infallible>> {
    e.array(id.len() as u64)?;
    for part in id {
        e.bytes(part)?;
    }
    Ok(())
}

/// How to authenticate an envelope.
pub enum Signing<'k> {
    /// COSE_Sign1 with this key and algorithm id.
    Sign(&'k SigningKey, Algorithm),
    /// No authentication block: an unsigned envelope (devices refuse it; for tests and tooling).
    Unsigned,
}

/// Wraps a manifest into a tagged envelope with its digest and signature; `payloads` are
/// integrated payloads (`("#image", bytes)`), placed after the manifest.
pub fn envelope(
    manifest: &[u8],
    signing: Signing<'_>,
    payloads: &[(&str, &[u8])],
) -> Result<Vec<u8>, BuildError> {
    let manifest_bstr = encode(|e| {
        e.bytes(manifest)?;
        Ok(())
    })?;
    let digest = suit_digest(&Sha256::digest(&manifest_bstr).into())?;
    let cose = match signing {
        Signing::Unsigned => None,
        Signing::Sign(key, alg) => Some(sign1(key, alg, &digest)?),
    };
    let auth = encode(|e| {
        e.array(1 + u64::from(cose.is_some()))?.bytes(&digest)?;
        if let Some(cose) = &cose {
            e.bytes(cose)?;
        }
        Ok(())
    })?;
    encode(|e| {
        e.tag(minicbor::data::Tag::new(keys::TAG_ENVELOPE))?;
        e.map(2 + payloads.len() as u64)?;
        e.u64(keys::envelope::AUTHENTICATION_WRAPPER)?
            .bytes(&auth)?;
        e.u64(keys::envelope::MANIFEST)?.bytes(manifest)?;
        for (name, bytes) in payloads {
            e.str(name)?.bytes(bytes)?;
        }
        Ok(())
    })
}

/// A COSE_Sign1 (tag 18) over the detached payload `digest`, signed deterministically (RFC 6979).
fn sign1(key: &SigningKey, alg: Algorithm, digest: &[u8]) -> Result<Vec<u8>, BuildError> {
    let protected = encode(|e| {
        e.map(1)?.i64(keys::cose::HEADER_ALG)?.i64(alg.cose_id())?;
        Ok(())
    })?;
    let sig_structure = encode(|e| {
        e.array(4)?
            .str("Signature1")?
            .bytes(&protected)?
            .bytes(&[])?
            .bytes(digest)?;
        Ok(())
    })?;
    let signature: Signature = key
        .try_sign(&sig_structure)
        .map_err(|_| BuildError("signing failed"))?;
    encode(|e| {
        e.tag(minicbor::data::Tag::new(keys::TAG_COSE_SIGN1))?;
        e.array(4)?
            .bytes(&protected)?
            .map(0)?
            .null()?
            .bytes(&signature.to_bytes())?;
        Ok(())
    })
}

/// Builds and signs the envelope for `spec` in one step.
pub fn signed_envelope(
    spec: &ManifestSpec,
    key: &SigningKey,
    alg: Algorithm,
) -> Result<Vec<u8>, BuildError> {
    envelope(&manifest(spec)?, Signing::Sign(key, alg), &[])
}

/// A vendor or class id: a UUID as written (`fa6b4a53-d5ad-...`), or else a name turned into a
/// UUIDv5 as the draft recommends: a vendor name under the DNS namespace, a class name under the
/// vendor id.
pub fn uuid_for(text: &str, namespace: Option<&[u8; 16]>) -> [u8; 16] {
    if let Ok(u) = uuid::Uuid::parse_str(text) {
        return *u.as_bytes();
    }
    let ns = match namespace {
        Some(ns) => uuid::Uuid::from_bytes(*ns),
        None => uuid::Uuid::NAMESPACE_DNS,
    };
    *uuid::Uuid::new_v5(&ns, text.as_bytes()).as_bytes()
}

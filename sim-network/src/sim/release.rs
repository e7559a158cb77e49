//! The firmware a simulation rolls out: a vendor key, the factory image the devices run, and
//! signed SUIT releases built with suit-manifest's builder, good ones and each kind of bad one a
//! device must refuse.

use anyhow::{Context, Result};
use lwm2m_client::image::make_image;
use p256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};
use suit_manifest::Algorithm;
use suit_manifest::builder::{self, ComponentSpec, ManifestSpec};

/// The vendor and class the simulated devices are built for (UUIDv5 of these names).
pub const VENDOR: &str = "otafleet.example";
pub const CLASS: &str = "sim-board";

/// What goes wrong with a release (see the scenarios of issue 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Signed by a key the devices do not trust.
    WrongKey,
    /// The image on the server differs from the manifest's digest (one byte flipped).
    TamperedImage,
    /// A sequence number no higher than the one the devices run.
    LowerSequence,
    /// Built for another class of device.
    OtherClass,
    /// An image larger than the staging slot.
    TooLarge,
    /// The manifest on the server is cut short.
    TruncatedManifest,
    /// The image's self-test fails after the swap (its header says so): rolled back.
    FailingSelfTest,
}

impl Fault {
    /// Whether the fault is in the manifest, so a device must refuse before any image block.
    pub fn in_manifest(self) -> bool {
        !matches!(self, Fault::TamperedImage | Fault::FailingSelfTest)
    }
}

/// A release ready for the repository: the envelope and the image bytes as the server will hold
/// them (a tampered image differs from what the envelope says only after it is added).
#[derive(Clone, Debug)]
pub struct Release {
    pub version: String,
    pub sequence: u64,
    pub envelope: Vec<u8>,
    pub image: Vec<u8>,
}

impl Release {
    pub fn image_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.image).into()
    }
}

/// The keys and images of one simulation.
pub struct Firmware {
    pub vendor_key: SigningKey,
    /// A key nobody trusts: what a `WrongKey` release is signed with.
    pub rogue_key: SigningKey,
    pub vendor_id: [u8; 16],
    pub class_id: [u8; 16],
    pub factory: Vec<u8>,
}

/// A key derived from a label and the seed: a scenario's key is the same in every run.
fn derived_key(label: &str, seed: u64) -> Result<SigningKey> {
    let mut counter = 0u32;
    loop {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update(seed.to_le_bytes());
        h.update(counter.to_le_bytes());
        let bytes: [u8; 32] = h.finalize().into();
        if let Ok(k) = SigningKey::from_slice(&bytes) {
            return Ok(k);
        }
        counter += 1;
        anyhow::ensure!(counter < 8, "cannot derive a P-256 key");
    }
}

impl Firmware {
    /// Keys derived from `seed`, and a factory image "1.0.0" of `image_size` bytes.
    pub fn new(seed: u64, image_size: usize) -> Result<Firmware> {
        Self::with_vendor_key(derived_key("otafleet-sim vendor", seed)?, seed, image_size)
    }

    /// The same with a given vendor key (the demo generates a fresh one).
    pub fn with_vendor_key(vendor_key: SigningKey, seed: u64, image_size: usize) -> Result<Self> {
        let vendor_id = builder::uuid_for(VENDOR, None);
        Ok(Firmware {
            vendor_key,
            rogue_key: derived_key("otafleet-sim rogue", seed)?,
            vendor_id,
            class_id: builder::uuid_for(CLASS, Some(&vendor_id)),
            factory: make_image("1.0.0", image_size, true).context("factory image")?,
        })
    }

    /// A release of `version` with `sequence`, `image_size` bytes, optionally with a fault.
    pub fn release(
        &self,
        version: &str,
        sequence: u64,
        image_size: usize,
        fault: Option<Fault>,
    ) -> Result<Release> {
        let self_test = fault != Some(Fault::FailingSelfTest);
        let image = make_image(version, image_size, self_test).context("version too long")?;
        let class_id = if fault == Some(Fault::OtherClass) {
            builder::uuid_for("another-board", Some(&self.vendor_id))
        } else {
            self.class_id
        };
        let key = if fault == Some(Fault::WrongKey) {
            &self.rogue_key
        } else {
            &self.vendor_key
        };
        let mut spec = self.manifest(&image, version, sequence);
        spec.component.class_id = class_id;
        let envelope = sign(&spec, key)?;
        Ok(Release {
            version: version.into(),
            sequence,
            envelope,
            image,
        })
    }

    /// The manifest of `image` as `version` for the simulation's board (no URI but `image`,
    /// next to the manifest), not yet signed.
    pub(crate) fn manifest(&self, image: &[u8], version: &str, sequence: u64) -> ManifestSpec {
        let mut component = ComponentSpec::for_image(image, self.vendor_id, self.class_id);
        component.uri = Some("image".into());
        component.version = Some(version.into());
        ManifestSpec::new(sequence, component)
    }
}

/// `spec` signed by `key` with ES256.
pub(crate) fn sign(spec: &ManifestSpec, key: &SigningKey) -> Result<Vec<u8>> {
    builder::signed_envelope(spec, key, Algorithm::Es256)
        .map_err(|e| anyhow::anyhow!("building the envelope: {}", e.0))
}

//! The firmware repository: releases stored content-addressed in the data dir, checked against the
//! trust key before they are accepted, and read block by block when served (an open file handle and
//! positioned reads: no copy of an image per request, no buffer per client).
//!
//! A release's id is the first 16 lower-case hex digits of its image's SHA-256 (DESIGN.md), so a
//! release engineer can name the image URI before any server has seen it.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use suit_manifest::{PayloadFormat, TrustAnchor};

use crate::store::{ReleaseRecord, Store, StoreError};

/// Why a release was refused. The text is meant for the operator: it says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(
        "the server has no trust key, so it cannot check SUIT releases: start it with --trust-key KEY.pub.pem"
    )]
    NoTrustKey,
    #[error("the envelope does not verify with the server's trust key: {0}")]
    Untrusted(suit_manifest::Error),
    #[error("the image does not match the manifest: {0}")]
    ImageMismatch(String),
    #[error(
        "release {id} already exists with another manifest; give the new release a different image"
    )]
    Collision { id: String },
    #[error("the version string is empty")]
    NoVersion,
    #[error("the image is empty")]
    EmptyImage,
    #[error("block size {0}: give a power of two from 16 to 1024")]
    BadBlockSize(u16),
    #[error("no release {0}")]
    NoRelease(String),
    /// A delta release that cannot be hosted; the text says why and what to do.
    #[error("delta release refused: {0}")]
    Delta(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the release files: {0}")]
    Io(#[from] std::io::Error),
}

/// Images up to this size are kept in memory while their release is open (firmware for
/// constrained devices is far smaller); larger ones are read from the file block by block.
pub const IMAGE_CACHE_MAX: u64 = 64 << 20;

/// An open release, ready to be served.
pub struct ReleaseFiles {
    image: File,
    /// The whole image in memory, when it is at most [`IMAGE_CACHE_MAX`] bytes: blocks are
    /// served as slices of it, shared by every client, without a read or a copy.
    image_bytes: Option<Bytes>,
    image_len: u64,
    image_etag: [u8; ETAG_LEN],
    manifest: Option<Bytes>,
    manifest_etag: [u8; ETAG_LEN],
    /// The largest Block2 size (as SZX) the release is served in, if it was capped.
    max_szx: Option<u8>,
}

impl ReleaseFiles {
    /// The release's cap on the Block2 size, as SZX (`firmware add --max-block-size`).
    pub fn max_szx(&self) -> Option<u8> {
        self.max_szx
    }

    /// `len` image bytes at `offset`: a slice of the cached image, else read from the file;
    /// None if the range is not in the image or cannot be read.
    pub fn image_slice(&self, offset: u64, len: usize) -> Option<Bytes> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        if let Some(image) = &self.image_bytes {
            return (end <= image.len()).then(|| image.slice(start..end));
        }
        let mut buf = vec![0u8; len];
        match self.read_image(offset, &mut buf) {
            Ok(n) if n == len => Some(buf.into()),
            _ => None,
        }
    }

    /// `len` manifest bytes at `offset`, as a slice of the shared manifest.
    pub fn manifest_slice(&self, offset: u64, len: usize) -> Option<Bytes> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?;
        let m = self.manifest.as_ref()?;
        (end <= m.len()).then(|| m.slice(start..end))
    }

    /// Reads image bytes at `offset` into `buf` (positioned read; the file is shared by all clients).
    pub fn read_image(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if let Some(image) = &self.image_bytes {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(image.len());
            let n = buf.len().min(image.len() - start);
            buf[..n].copy_from_slice(&image[start..start + n]);
            return Ok(n);
        }
        let mut done = 0;
        while done < buf.len() {
            let n = self.image.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    pub fn image_len(&self) -> u64 {
        self.image_len
    }

    /// A strong ETag for the image: the first 8 bytes of its SHA-256.
    pub fn image_etag(&self) -> [u8; ETAG_LEN] {
        self.image_etag
    }

    /// The SUIT envelope, for SUIT releases.
    pub fn manifest(&self) -> Option<&[u8]> {
        self.manifest.as_deref()
    }

    pub fn manifest_etag(&self) -> [u8; ETAG_LEN] {
        self.manifest_etag
    }

    /// Whether the SUIT envelope carries the image itself (for push delivery).
    pub fn is_integrated(&self) -> bool {
        self.manifest
            .as_deref()
            .and_then(|m| suit_manifest::Envelope::decode(m).ok())
            .is_some_and(|e| e.integrated_payloads().next().is_some())
    }
}

/// What a push (Block1 to /5/0/0) sends: the integrated envelope of a SUIT release, or the
/// image of a plain one, read block by block.
pub struct PushBody(pub Arc<ReleaseFiles>);

impl crate::coap::driver::BodySource for PushBody {
    fn total_len(&self) -> u64 {
        match &self.0.manifest {
            Some(m) => m.len() as u64,
            None => self.0.image_len,
        }
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        match &self.0.manifest {
            Some(m) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(m.len());
                let n = buf.len().min(m.len() - start);
                buf[..n].copy_from_slice(&m[start..start + n]);
                Ok(n)
            }
            None => self.0.read_image(offset, buf),
        }
    }
}

/// The repository of releases.
pub struct Repository {
    dir: PathBuf,
    store: Arc<Store>,
    trust: Vec<TrustAnchor>,
    open: Mutex<HashMap<String, Arc<ReleaseFiles>>>,
}

/// The id of a release: 16 hex digits of the image's SHA-256.
pub fn release_id(image_sha256: &[u8; 32]) -> String {
    hex(&image_sha256[..8])
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of the SHA-256 a strong ETag carries. The URI already names the release (its id is
/// content-derived), so the ETag only has to catch a file changed under it; 4 bytes do, and every
/// block answer is 4 bytes shorter than with 8: with them a 64-byte block's answer under OSCORE
/// (97 B) needed a second 802.15.4 frame, without them it fits one (93 of 95 B; bench table 6).
pub const ETAG_LEN: usize = 4;

fn etag(bytes_sha256: &[u8; 32]) -> [u8; ETAG_LEN] {
    let mut e = [0u8; ETAG_LEN];
    e.copy_from_slice(&bytes_sha256[..ETAG_LEN]);
    e
}

impl Repository {
    /// Opens the repository under `<data>/firmware`.
    pub fn open(
        data_dir: &Path,
        store: Arc<Store>,
        trust: Vec<TrustAnchor>,
    ) -> std::io::Result<Self> {
        let dir = data_dir.join("firmware");
        std::fs::create_dir_all(&dir)?;
        Ok(Repository {
            dir,
            store,
            trust,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a trust key is configured.
    pub fn has_trust_key(&self) -> bool {
        !self.trust.is_empty()
    }

    /// Adds a SUIT release: the envelope must verify with the trust key and describe exactly this
    /// image (digest and size). Adding the same release twice is harmless; returns whether it is new.
    pub fn add_suit(
        &self,
        envelope: &[u8],
        image: &[u8],
        now_ms: i64,
    ) -> Result<(ReleaseRecord, bool), AddError> {
        if self.trust.is_empty() {
            return Err(AddError::NoTrustKey);
        }
        let manifest = suit_manifest::verify(envelope, &self.trust).map_err(AddError::Untrusted)?;
        manifest
            .check_severed_elements()
            .map_err(AddError::Untrusted)?;
        let info = suit_manifest::describe(&manifest).map_err(AddError::Untrusted)?;
        let comp = info[0]
            .ok_or_else(|| AddError::ImageMismatch("the manifest has no component".into()))?;
        match (comp.payload_format, suit_manifest::precursor(&info)) {
            (None, None) => {}
            (Some(PayloadFormat::DetoolsSequential), Some(pre)) => {
                let delta = crate::delta::add::DeltaRelease::check(
                    &self.store,
                    &self.dir,
                    &comp,
                    &pre,
                    image,
                )
                .map_err(AddError::Delta)?;
                let record = delta.record(&manifest, &comp, envelope, image, now_ms);
                return self.add(record, image, Some(envelope));
            }
            (Some(_), None) => {
                return Err(AddError::Delta(
                    "the manifest marks its payload as a patch but names no precursor ([\"active\"] component): make it with `suit create --delta-from OLD`".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(AddError::Delta(
                    "the manifest names a precursor but not the patch format (parameter -257): make it with `suit create --delta-from OLD`".into(),
                ));
            }
        }
        let digest = comp
            .image_digest
            .ok_or_else(|| AddError::ImageMismatch("the manifest has no image digest".into()))?;
        if let Some(size) = comp.image_size {
            if size != image.len() as u64 {
                return Err(AddError::ImageMismatch(format!(
                    "the image has {} bytes, the manifest says {size}",
                    image.len()
                )));
            }
        }
        if !digest.matches(image) {
            return Err(AddError::ImageMismatch(
                "the image's SHA-256 differs from the manifest's image digest".into(),
            ));
        }
        if image.is_empty() {
            return Err(AddError::EmptyImage);
        }
        let image_sha: [u8; 32] = Sha256::digest(image).into();
        let manifest_sha: [u8; 32] = Sha256::digest(envelope).into();
        let uuid = |b: &[u8]| hex(b);
        let record = ReleaseRecord {
            id: release_id(&image_sha),
            kind: "suit".into(),
            version: comp.version.map(Into::into),
            sequence_number: Some(manifest.sequence_number()),
            image_sha256: hex(&image_sha),
            image_size: image.len() as u64,
            manifest_sha256: Some(hex(&manifest_sha)),
            manifest_size: Some(envelope.len() as u64),
            vendor_id: comp.vendor_id.map(uuid),
            class_id: comp.class_id.map(uuid),
            image_uri: comp.uri.map(Into::into),
            added_at_ms: now_ms,
            max_block_size: None,
            precursor_sha256: None,
            precursor_size: None,
            new_image_sha256: None,
            new_image_size: None,
        };
        self.add(record, image, Some(envelope))
    }

    /// Adds a plain image (no SUIT) for clients that do not speak SUIT; its job writes the image URI.
    pub fn add_plain(
        &self,
        image: &[u8],
        version: &str,
        now_ms: i64,
    ) -> Result<(ReleaseRecord, bool), AddError> {
        if version.trim().is_empty() {
            return Err(AddError::NoVersion);
        }
        if image.is_empty() {
            return Err(AddError::EmptyImage);
        }
        let image_sha: [u8; 32] = Sha256::digest(image).into();
        let record = ReleaseRecord {
            id: release_id(&image_sha),
            kind: "plain".into(),
            version: Some(version.into()),
            sequence_number: None,
            image_sha256: hex(&image_sha),
            image_size: image.len() as u64,
            manifest_sha256: None,
            manifest_size: None,
            vendor_id: None,
            class_id: None,
            image_uri: None,
            added_at_ms: now_ms,
            max_block_size: None,
            precursor_sha256: None,
            precursor_size: None,
            new_image_sha256: None,
            new_image_size: None,
        };
        self.add(record, image, None)
    }

    fn add(
        &self,
        record: ReleaseRecord,
        image: &[u8],
        envelope: Option<&[u8]>,
    ) -> Result<(ReleaseRecord, bool), AddError> {
        if let Some(existing) = self.store.release(&record.id)? {
            let same = existing.image_sha256 == record.image_sha256
                && existing.manifest_sha256 == record.manifest_sha256
                && existing.kind == record.kind;
            return if same {
                Ok((existing, false))
            } else {
                Err(AddError::Collision { id: record.id })
            };
        }
        let dir = self.dir.join(&record.id);
        std::fs::create_dir_all(&dir)?;
        write_atomically(&image_path(&self.dir, &record.id), image)?;
        if let Some(env) = envelope {
            write_atomically(&dir.join("manifest"), env)?;
        }
        match self.store.insert_release(&record) {
            // Not opened here but at its first use, so that what is served is what is on disk
            // then (the simulator's faults change the files after adding).
            Ok(()) => Ok((record, true)),
            Err(e) => {
                // Keep the data dir consistent with the database.
                let _ = std::fs::remove_dir_all(&dir);
                Err(e.into())
            }
        }
    }

    /// Caps (or uncaps) the Block2 size a release is served in: clients that ask for larger
    /// blocks get this size (RFC 7959 late negotiation).
    pub fn set_max_block_size(&self, id: &str, size: Option<u16>) -> Result<(), AddError> {
        if let Some(n) = size {
            lwm2m_core::block::szx_for_size(usize::from(n))
                .map_err(|_| AddError::BadBlockSize(n))?;
        }
        if !self.store.set_release_max_block_size(id, size)? {
            return Err(AddError::NoRelease(id.to_string()));
        }
        // Served from the new record from now on.
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// The files of a release already opened by [`Repository::files`], without the database
    /// or the disk (for the CoAP driver's fast path, which must not wait).
    pub fn files_if_open(&self, id: &str) -> Option<Arc<ReleaseFiles>> {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The open files of a release, opened on first use and shared afterwards.
    pub fn files(&self, id: &str) -> Option<Arc<ReleaseFiles>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = open.get(id) {
            return Some(f.clone());
        }
        let record = self.store.release(id).ok()??;
        let dir = self.dir.join(&record.id);
        let image = File::open(image_path(&self.dir, &record.id)).ok()?;
        let image_len = image.metadata().ok()?.len();
        let mut sha = [0u8; 32];
        for (i, b) in sha.iter_mut().enumerate() {
            *b = u8::from_str_radix(record.image_sha256.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let image_bytes = if image_len <= IMAGE_CACHE_MAX {
            Some(Bytes::from(
                std::fs::read(image_path(&self.dir, &record.id)).ok()?,
            ))
        } else {
            None
        };
        let manifest = if record.has_manifest() {
            Some(Bytes::from(std::fs::read(dir.join("manifest")).ok()?))
        } else {
            None
        };
        let manifest_etag = manifest
            .as_ref()
            .map(|m| etag(&Sha256::digest(m).into()))
            .unwrap_or_default();
        let max_szx = record
            .max_block_size
            .and_then(|n| lwm2m_core::block::szx_for_size(usize::from(n)).ok());
        let files = Arc::new(ReleaseFiles {
            image,
            image_bytes,
            image_len,
            image_etag: etag(&sha),
            manifest,
            manifest_etag,
            max_szx,
        });
        open.insert(id.to_string(), files.clone());
        Some(files)
    }
}

/// The path of a release's image (a delta's patch) in the data dir.
pub(crate) fn image_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(id).join("image")
}

/// Writes a file so that a crash leaves either nothing or the whole file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use suit_manifest::builder::{self, ComponentSpec, ManifestSpec};

    fn setup(trusted: bool) -> (tempfile::TempDir, Repository, p256::ecdsa::SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in_memory().unwrap());
        let key = suit_manifest::keyfile::generate().unwrap();
        let trust = if trusted {
            vec![TrustAnchor::from_key(*key.verifying_key())]
        } else {
            vec![]
        };
        let repo = Repository::open(dir.path(), store, trust).unwrap();
        (dir, repo, key)
    }

    fn release(key: &p256::ecdsa::SigningKey, image: &[u8], seq: u64) -> Vec<u8> {
        let mut comp = ComponentSpec::for_image(image, [1; 16], [2; 16]);
        comp.uri = Some("image".into());
        comp.version = Some(format!("1.{seq}.0"));
        builder::signed_envelope(
            &ManifestSpec::new(seq, comp),
            key,
            suit_manifest::Algorithm::Es256,
        )
        .unwrap()
    }

    #[test]
    fn a_verified_release_is_stored_content_addressed_and_served() {
        let (_d, repo, key) = setup(true);
        let image: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let env = release(&key, &image, 4);
        let (rec, new) = repo.add_suit(&env, &image, 7).unwrap();
        assert!(new);
        let sha: [u8; 32] = Sha256::digest(&image).into();
        assert_eq!(rec.id, hex(&sha[..8]));
        assert_eq!(rec.id.len(), 16);
        assert_eq!(rec.version.as_deref(), Some("1.4.0"));
        assert_eq!(rec.sequence_number, Some(4));
        let files = repo.files(&rec.id).unwrap();
        let mut buf = [0u8; 100];
        assert_eq!(files.read_image(2950, &mut buf).unwrap(), 50);
        assert_eq!(&buf[..50], &image[2950..]);
        assert_eq!(files.manifest().unwrap(), &env[..]);
        // Adding it again changes nothing.
        assert!(!repo.add_suit(&env, &image, 8).unwrap().1);
    }

    #[test]
    fn untrusted_mismatched_and_colliding_releases_are_refused() {
        let (_d, repo, _key) = setup(true);
        let stranger = suit_manifest::keyfile::generate().unwrap();
        let image = vec![7u8; 1000];
        assert!(matches!(
            repo.add_suit(&release(&stranger, &image, 1), &image, 1),
            Err(AddError::Untrusted(suit_manifest::Error::BadSignature))
        ));
        let (_d2, repo2, key2) = setup(true);
        let mut other = image.clone();
        other[10] ^= 1;
        assert!(matches!(
            repo2.add_suit(&release(&key2, &image, 1), &other, 1),
            Err(AddError::ImageMismatch(_))
        ));
        assert!(matches!(
            repo2.add_suit(&release(&key2, &image, 1), &image[..999], 1),
            Err(AddError::ImageMismatch(_))
        ));
        repo2
            .add_suit(&release(&key2, &image, 1), &image, 1)
            .unwrap();
        assert!(matches!(
            repo2.add_suit(&release(&key2, &image, 2), &image, 1),
            Err(AddError::Collision { .. })
        ));
        let (_d3, repo3, key3) = setup(false);
        assert!(matches!(
            repo3.add_suit(&release(&key3, &image, 1), &image, 1),
            Err(AddError::NoTrustKey)
        ));
    }

    #[test]
    fn plain_releases_need_a_version_and_bytes() {
        let (_d, repo, _key) = setup(false);
        assert!(matches!(
            repo.add_plain(b"abc", " ", 1),
            Err(AddError::NoVersion)
        ));
        assert!(matches!(
            repo.add_plain(b"", "1.0", 1),
            Err(AddError::EmptyImage)
        ));
        let (rec, _) = repo.add_plain(b"abc", "1.0", 1).unwrap();
        assert_eq!(rec.kind, "plain");
        assert!(repo.files(&rec.id).unwrap().manifest().is_none());
        assert!(repo.files("0000000000000000").is_none());
    }
}

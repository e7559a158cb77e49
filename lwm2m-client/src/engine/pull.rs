//! Pull: the Package URI written to /5/0/1 starts a download of the manifest, which is checked
//! against the trust anchor before the image is fetched block by block into the staging slot,
//! hashed as it goes and persisted so that a reboot resumes it.

use heapless::Vec;
use lwm2m_core::coap::{Code, Message};
use lwm2m_core::content::{self, Value};
use lwm2m_core::object5::{Event as FwEvent, UpdateResult};
use sha2::{Digest, Sha256};

use super::limits::{MANIFEST_CAP, MAX_PACKAGE_URI_LEN, PERSIST_EVERY, REHASH_CHUNK};
use super::{Engine, Event, refusal_code};
use crate::exchange::Purpose;
use crate::firmware::download::{Download, Step, Target};
use crate::firmware::suit;
use crate::firmware::window;
use crate::platform::{DownloadRecord, PendingUpdate, Platform};
use crate::time::Instant;
use crate::uri::{CoapUri, UriString};

/// The SZX of the configured block size; a size that is not one (Config says 16..=1024, a power
/// of two) falls back to 64 bytes.
fn block_szx(size: u16) -> u8 {
    lwm2m_core::block::szx_for_size(usize::from(size)).unwrap_or(2)
}

impl<P: Platform> Engine<P> {
    /// Write to Package URI (/5/0/1): an empty one resets, another starts a download.
    pub(super) fn write_package_uri(
        &mut self,
        now: Instant,
        payload: &[u8],
        cf: Option<u16>,
    ) -> Result<Code, Code> {
        let uri = match cf.unwrap_or(content::TEXT_PLAIN) {
            content::TEXT_PLAIN => core::str::from_utf8(payload).map_err(|_| Code::BAD_REQUEST)?,
            content::LWM2M_TLV => {
                let tlv = content::tlv::TlvReader::new(payload)
                    .next()
                    .ok_or(Code::BAD_REQUEST)?
                    .map_err(|_| Code::BAD_REQUEST)?;
                content::tlv::decode_string(tlv.value).map_err(|_| Code::BAD_REQUEST)?
            }
            content::SENML_CBOR => {
                let mut r = content::senml_cbor::SenmlReader::new(payload)
                    .map_err(|_| Code::BAD_REQUEST)?;
                match r.next() {
                    Some(Ok(rec)) => match rec.value {
                        Some(Value::String(s)) => s,
                        _ => return Err(Code::BAD_REQUEST),
                    },
                    _ => return Err(Code::BAD_REQUEST),
                }
            }
            _ => return Err(Code::UNSUPPORTED_CONTENT_FORMAT),
        };
        if uri.is_empty() {
            let changed = self
                .fw
                .apply(now, FwEvent::PackageUriReset)
                .map_err(refusal_code)?;
            self.drop_package();
            self.fw.package_uri.clear();
            self.fw_changed(changed);
            self.save();
            return Ok(Code::CHANGED);
        }
        let changed = self
            .fw
            .apply(now, FwEvent::PackageUriWritten)
            .map_err(refusal_code)?;
        self.fw.package_uri.clear();
        let _ = self
            .fw
            .package_uri
            .push_str(uri.get(..uri.len().min(MAX_PACKAGE_URI_LEN)).unwrap_or(""));
        let mut owned = UriString::new();
        let _ = owned.push_str(&self.fw.package_uri);
        self.record.download = Some(DownloadRecord {
            uri: owned.clone(),
            etag: Vec::new(),
            bytes_written: 0,
            block_size: self.cfg.block_size,
            total: 0,
            manifest_digest: [0; 32],
        });
        self.fw_changed(changed);
        match CoapUri::parse(uri) {
            Ok(_) => self.start_manifest(now, &owned),
            Err(result) => self.fail_download(now, result),
        }
        Ok(Code::CHANGED)
    }

    pub(super) fn start_manifest(&mut self, now: Instant, uri: &str) {
        self.manifest_len = 0;
        match Download::new(Target::Manifest, uri, block_szx(self.cfg.block_size), 0) {
            Ok(d) => {
                self.download = Some(d);
                self.request_blocks(now);
            }
            Err(result) => self.fail_download(now, result),
        }
    }

    pub(super) fn on_block(&mut self, now: Instant, msg: &Message<'_>) {
        let Some(d) = self.download.as_mut() else {
            return;
        };
        match d.on_response(msg) {
            Step::Ignore => {}
            Step::Failed(result) => self.fail_download(now, result),
            Step::Restart => {
                // Another representation now: start this stage over.
                self.exchanges.cancel_blocks();
                self.reorder.clear();
                let target = self.download.as_ref().map(|d| d.target);
                if target == Some(Target::Manifest) {
                    self.manifest_len = 0;
                } else {
                    self.hasher = Sha256::new();
                    self.last_persisted = 0;
                    self.persist_progress(0);
                }
            }
            step @ (Step::Ahead { .. } | Step::Data { .. }) => {
                // This block, then the ones that arrived early and whose turn it is now.
                let mut blocks = self.reorder.sort(d, step);
                while let Some(d) = self.download.as_mut() {
                    let Some((at, bytes, last)) = blocks.next(&mut self.reorder, d) else {
                        break;
                    };
                    self.consume(now, at, bytes, last);
                }
            }
        }
    }

    /// A block request went unanswered (or was reset). Only the gaps are asked for again: what
    /// arrived early stays. A block still tried in another exchange has not failed yet.
    pub(super) fn on_block_failure(&mut self, now: Instant, num: u32) {
        let policy = self.cfg.retry;
        if self.exchanges.busy(Purpose::Block(num)) {
            return;
        }
        if let Some(d) = self.download.as_mut() {
            if let Some(result) = d.on_failure(now, num, &policy) {
                self.fail_download(now, result);
            }
        }
    }

    /// Takes bytes of the download in order: into the manifest buffer or the staging slot.
    pub(super) fn consume(&mut self, now: Instant, offset: u32, bytes: &[u8], last: bool) {
        let Some(target) = self.download.as_ref().map(|d| d.target) else {
            return;
        };
        match target {
            Target::Manifest => {
                // The server said how big the envelope is (Size2): fail at once if it cannot fit.
                if self
                    .download
                    .as_ref()
                    .and_then(|d| d.total)
                    .is_some_and(|t| t as usize > MANIFEST_CAP)
                {
                    return self.fail_download(now, UpdateResult::OutOfRam);
                }
                let end = self.manifest_len.saturating_add(bytes.len());
                let Some(dst) = self.manifest.get_mut(self.manifest_len..end) else {
                    return self.fail_download(now, UpdateResult::OutOfRam);
                };
                dst.copy_from_slice(bytes);
                self.manifest_len = end;
                if last {
                    self.manifest_complete(now);
                }
            }
            Target::Image => {
                let total = self.release.as_ref().map_or(0, |r| r.size);
                if offset.saturating_add(bytes.len() as u32) > total {
                    return self.fail_download(now, UpdateResult::IntegrityFailure);
                }
                if self.platform.stage_write(offset, bytes).is_err() {
                    self.event(Event::PlatformError);
                    return self.fail_download(now, UpdateResult::NotEnoughFlash);
                }
                self.hasher.update(bytes);
                let written = offset.saturating_add(bytes.len() as u32);
                self.event(Event::Progress {
                    bytes: written,
                    total,
                });
                if written / PERSIST_EVERY != self.last_persisted / PERSIST_EVERY {
                    self.last_persisted = written;
                    self.persist_progress(written);
                }
                if last {
                    self.image_complete(now, written);
                }
            }
        }
    }

    pub(super) fn persist_progress(&mut self, written: u32) {
        if let (Some(rec), Some(d)) = (self.record.download.as_mut(), self.download.as_ref()) {
            rec.bytes_written = written;
            rec.etag = d.etag.clone();
            rec.block_size = d.block_size() as u16;
            self.save();
        }
    }

    pub(super) fn manifest_complete(&mut self, now: Instant) {
        let Some(d) = self.download.take() else {
            return;
        };
        let envelope = self.manifest.get(..self.manifest_len).unwrap_or(&[]);
        let digest: [u8; 32] = Sha256::digest(envelope).into();
        let checked = suit::check_manifest(
            envelope,
            &d.uri,
            core::slice::from_ref(&self.cfg.trust),
            &self.cfg.identity,
            self.record.accepted_sequence,
            self.platform.slot_size(),
        );
        let release = match checked {
            Ok(r) => r,
            Err(result) => return self.fail_download(now, result),
        };
        // Resume the image if this is the manifest whose image was being fetched.
        let mut offset = 0;
        let mut etag = Vec::new();
        if let Some(rec) = &self.record.download {
            if rec.manifest_digest == digest && rec.bytes_written > 0 {
                offset = self
                    .platform
                    .resume_offset(rec.bytes_written)
                    .min(rec.bytes_written);
                etag = rec.etag.clone();
            }
        }
        self.hasher = Sha256::new();
        if offset > 0 && !self.rehash(offset) {
            offset = 0;
            etag.clear();
            self.hasher = Sha256::new();
        }
        self.last_persisted = offset;
        let mut image = match Download::new(
            Target::Image,
            &release.image_uri,
            block_szx(self.cfg.block_size),
            offset,
        ) {
            Ok(i) => i,
            Err(result) => return self.fail_download(now, result),
        };
        image.etag = etag.clone();
        self.fw.pkg_version = release.version.clone();
        self.record.download = Some(DownloadRecord {
            uri: d.uri.clone(),
            manifest_digest: digest,
            etag,
            bytes_written: offset,
            block_size: image.block_size() as u16,
            total: release.size,
        });
        self.release = Some(release);
        self.reorder.clear();
        self.download = Some(image);
        self.save();
        self.request_blocks(now);
    }

    /// Feeds the first `upto` staged bytes to the hash again (a resumed download).
    pub(super) fn rehash(&mut self, upto: u32) -> bool {
        let mut buf = [0u8; REHASH_CHUNK];
        let mut at = 0u32;
        while at < upto {
            let n = upto.saturating_sub(at).min(buf.len() as u32) as usize;
            let Some(chunk) = buf.get_mut(..n) else {
                return false;
            };
            if self.platform.stage_read(at, chunk).is_err() {
                return false;
            }
            self.hasher.update(&*chunk);
            at = at.saturating_add(n as u32);
        }
        true
    }

    /// The last image byte is staged: the image is checked against the manifest and staged.
    pub(super) fn image_complete(&mut self, now: Instant, written: u32) {
        self.download = None;
        let Some(release) = self.release.clone() else {
            return;
        };
        self.record.download = None;
        let pending = PendingUpdate {
            sequence: release.sequence,
            version: release.version,
        };
        self.staged(
            now,
            written == release.size,
            release.digest,
            pending,
            |e, digest| {
                // The manifest's own check of the staged image, now that its digest is known.
                suit::confirm_staged(
                    e.manifest.get(..e.manifest_len).unwrap_or(&[]),
                    core::slice::from_ref(&e.cfg.trust),
                    &e.cfg.identity,
                    digest,
                )
            },
        );
    }

    /// Sends block requests up to the window: one at a time for the manifest, and up to
    /// `window` for the image (bounded by what the reorder buffer can hold).
    pub(super) fn request_blocks(&mut self, now: Instant) {
        let total = self.release.as_ref().map(|r| r.size);
        let Some(d) = self.download.as_mut() else {
            return;
        };
        let limit = match d.target {
            Target::Manifest => 1,
            Target::Image => window::window_limit(self.cfg.window, d.block_size() as usize),
        };
        window::fill(d, &mut self.exchanges, &self.reorder, limit, total, now);
    }
}

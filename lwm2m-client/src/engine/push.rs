//! Push: a package written to /5/0/0 with Block1, a SUIT envelope with the image integrated. The
//! envelope head is buffered and verified before the first image byte is streamed to the
//! staging slot. Block1 comes in order, so the image is hashed as it streams, and each page of
//! the slot is erased when the image first reaches it.

use heapless::String;
use lwm2m_core::block::BlockValue;
use lwm2m_core::coap::{Code, Message, MessageType, MessageWriter, option};
use lwm2m_core::object5::{Event as FwEvent, UpdateResult};
use sha2::{Digest, Sha256};

use super::limits::{MANIFEST_CAP, MAX_PKG_LEN};
use super::{Engine, refusal_code};
use crate::firmware::suit;
use crate::platform::{PendingUpdate, Platform};
use crate::time::Instant;
use crate::uri::UriString;

/// A push (Block1 writes to /5/0/0) in progress.
pub(super) struct Push {
    /// Bytes of the package received so far.
    received: u32,
    /// Where the integrated image starts in the package, once the envelope head is decoded.
    payload_start: Option<u32>,
    payload_len: u32,
    digest: [u8; 32],
    sequence: u64,
    version: String<MAX_PKG_LEN>,
    /// Slot pages below this one are erased for this push.
    erased_pages: u32,
}

impl<P: Platform> Engine<P> {
    /// Write to Package (/5/0/0): a package pushed with Block1, streamed to the staging slot.
    /// The package is a SUIT envelope with the image integrated; the envelope is verified
    /// before the first image byte is written.
    // A frame of its own, not inlined into the request handler: each request's locals stay
    // off the stack of the others (stack budget).
    #[inline(never)]
    pub(super) fn write_package(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        ty: MessageType,
        out: &mut [u8],
    ) -> Result<usize, Code> {
        let block = match msg.option(option::BLOCK1) {
            Some(raw) => Some(BlockValue::decode(raw).map_err(|_| Code::BAD_OPTION)?),
            None => None,
        };
        let (num, more, offset) = match block {
            Some(b) => (
                b.num(),
                b.more(),
                u32::try_from(b.offset()).map_err(|_| Code::REQUEST_ENTITY_TOO_LARGE)?,
            ),
            None => (0, false, 0),
        };
        if num == 0 && !more && lwm2m_core::object5::is_package_reset(msg.payload) {
            let changed = self
                .fw
                .apply(now, FwEvent::PackageReset)
                .map_err(refusal_code)?;
            self.drop_package();
            self.fw_changed(changed);
            return MessageWriter::new(out, ty, Code::CHANGED, msg.message_id, msg.token())
                .map(|w| w.finish())
                .map_err(|_| Code::INTERNAL_SERVER_ERROR);
        }
        if let Ok(Some(size1)) = msg.uint_option(option::SIZE1) {
            if size1
                > self
                    .platform
                    .slot_size()
                    .saturating_add(MANIFEST_CAP as u32)
            {
                return self.too_large(msg, ty, out);
            }
        }
        if num == 0 {
            let changed = self
                .fw
                .apply(now, FwEvent::PackageWriteStarted)
                .map_err(refusal_code)?;
            self.download = None;
            self.manifest_len = 0;
            self.hasher = Sha256::new();
            self.push = Some(Push {
                received: 0,
                payload_start: None,
                payload_len: 0,
                digest: [0; 32],
                sequence: 0,
                version: String::new(),
                erased_pages: 0,
            });
            self.fw_changed(changed);
        }
        let Some(push) = self.push.as_mut() else {
            return Err(Code::REQUEST_ENTITY_INCOMPLETE);
        };
        if offset != push.received {
            return Err(Code::REQUEST_ENTITY_INCOMPLETE);
        }
        push.received = push.received.saturating_add(msg.payload.len() as u32);
        let result = self.push_bytes(offset, msg.payload, !more);
        if let Err(r) = result {
            self.fail_download(now, r);
            let code = if r == UpdateResult::NotEnoughFlash {
                Code::REQUEST_ENTITY_TOO_LARGE
            } else {
                Code::CHANGED
            };
            if code == Code::REQUEST_ENTITY_TOO_LARGE {
                return self.too_large(msg, ty, out);
            }
            return MessageWriter::new(out, ty, code, msg.message_id, msg.token())
                .map(|w| w.finish())
                .map_err(|_| Code::INTERNAL_SERVER_ERROR);
        }
        if !more {
            self.push_complete(now);
        }
        let code = if more { Code::CONTINUE } else { Code::CHANGED };
        let mut w = MessageWriter::new(out, ty, code, msg.message_id, msg.token())
            .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
        if let Some(raw) = msg.option(option::BLOCK1) {
            w.option(option::BLOCK1, raw)
                .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
        }
        Ok(w.finish())
    }

    pub(super) fn too_large(
        &mut self,
        msg: &Message<'_>,
        ty: MessageType,
        out: &mut [u8],
    ) -> Result<usize, Code> {
        let mut w = MessageWriter::new(
            out,
            ty,
            Code::REQUEST_ENTITY_TOO_LARGE,
            msg.message_id,
            msg.token(),
        )
        .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
        w.uint_option(option::SIZE1, self.platform.slot_size())
            .map_err(|_| Code::INTERNAL_SERVER_ERROR)?;
        Ok(w.finish())
    }

    /// Takes the next bytes of a pushed package: the envelope head into the manifest buffer until
    /// it decodes and verifies, then the image into the staging slot.
    pub(super) fn push_bytes(
        &mut self,
        offset: u32,
        mut bytes: &[u8],
        last: bool,
    ) -> Result<(), UpdateResult> {
        let mut at = offset;
        let start = match self.push.as_ref().and_then(|p| p.payload_start) {
            Some(s) => s,
            None => {
                // Still in the envelope head: buffer it.
                let take = bytes
                    .len()
                    .min(MANIFEST_CAP.saturating_sub(self.manifest_len));
                let (head, rest) = bytes.split_at(take);
                if let Some(dst) = self
                    .manifest
                    .bytes_mut()
                    .get_mut(self.manifest_len..self.manifest_len.saturating_add(take))
                {
                    dst.copy_from_slice(head);
                }
                self.manifest_len = self.manifest_len.saturating_add(take);
                let buffered = self
                    .manifest
                    .bytes()
                    .get(..self.manifest_len)
                    .unwrap_or(&[]);
                let (head_offset, head_len) = match suit_manifest::Envelope::decode_head(buffered) {
                    Ok((_, Some(h))) => (h.offset, h.len),
                    Ok((_, None)) => return Err(UpdateResult::UnsupportedPackage),
                    Err(suit_manifest::Error::Truncated)
                        if self.manifest_len < MANIFEST_CAP && !last =>
                    {
                        return Ok(());
                    }
                    Err(suit_manifest::Error::Truncated) if !last => {
                        return Err(UpdateResult::OutOfRam);
                    }
                    Err(_) => return Err(UpdateResult::IntegrityFailure),
                };
                // Verify before writing a single image byte.
                let release = self.check_integrated(head_offset)?;
                if u64::from(release.size) != head_len {
                    return Err(UpdateResult::IntegrityFailure);
                }
                if let Some(p) = self.push.as_mut() {
                    p.payload_start = Some(head_offset as u32);
                    p.payload_len = release.size;
                    p.digest = release.digest;
                    p.sequence = release.sequence;
                    p.version = release.version;
                }
                // The image bytes already buffered after the head go to the slot now.
                let already = self
                    .manifest
                    .bytes()
                    .get(head_offset..self.manifest_len)
                    .unwrap_or(&[]);
                let mut tmp = [0u8; MANIFEST_CAP];
                let n = already.len();
                if let Some(dst) = tmp.get_mut(..n) {
                    dst.copy_from_slice(already);
                }
                self.manifest_len = head_offset;
                self.stage(0, tmp.get(..n).unwrap_or(&[]))?;
                at = offset.saturating_add(take as u32);
                bytes = rest;
                head_offset as u32
            }
        };
        let image_offset = at.saturating_sub(start);
        self.stage(image_offset, bytes)
    }

    pub(super) fn stage(&mut self, image_offset: u32, bytes: &[u8]) -> Result<(), UpdateResult> {
        if bytes.is_empty() {
            return Ok(());
        }
        let Some(push) = self.push.as_mut() else {
            return Err(UpdateResult::IntegrityFailure);
        };
        let end = image_offset.saturating_add(bytes.len() as u32);
        if end > push.payload_len {
            return Err(UpdateResult::IntegrityFailure);
        }
        // Erase the pages the bytes reach first (in order: a page is never erased twice).
        let page = self.platform.page_size().max(1);
        while push.erased_pages.saturating_mul(page) < end {
            self.platform
                .stage_erase(push.erased_pages)
                .map_err(|_| UpdateResult::NotEnoughFlash)?;
            push.erased_pages = push.erased_pages.saturating_add(1);
        }
        self.platform
            .stage_write(image_offset, bytes)
            .map_err(|_| UpdateResult::NotEnoughFlash)?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// The envelope head of a pushed package verified like a pulled manifest.
    pub(super) fn check_integrated(
        &mut self,
        head_len: usize,
    ) -> Result<suit::Release, UpdateResult> {
        let envelope = self.manifest.bytes().get(..head_len).unwrap_or(&[]);
        let (env, _) = suit_manifest::Envelope::decode_head(envelope)
            .map_err(|_| UpdateResult::IntegrityFailure)?;
        let manifest = env
            .authenticate(core::slice::from_ref(&self.cfg.trust))
            .map_err(|_| UpdateResult::IntegrityFailure)?;
        if manifest.sequence_number() <= self.record.accepted_sequence {
            return Err(UpdateResult::UnsupportedPackage);
        }
        let info =
            suit_manifest::describe(&manifest).map_err(|_| UpdateResult::UnsupportedPackage)?;
        let c = info
            .first()
            .copied()
            .flatten()
            .ok_or(UpdateResult::UnsupportedPackage)?;
        if c.vendor_id != Some(&self.cfg.identity.vendor_id[..])
            || c.class_id != Some(&self.cfg.identity.class_id[..])
        {
            return Err(UpdateResult::UnsupportedPackage);
        }
        if !c.uri.is_some_and(|u| u.starts_with('#')) {
            return Err(UpdateResult::UnsupportedPackage);
        }
        if c.payload_format.is_some() {
            // A delta is pulled only (its patch is applied in order as it arrives).
            return Err(UpdateResult::UnsupportedPackage);
        }
        let size = c.image_size.ok_or(UpdateResult::UnsupportedPackage)?;
        if size > u64::from(self.platform.slot_size()) {
            return Err(UpdateResult::NotEnoughFlash);
        }
        let mut version = String::new();
        let _ = version.push_str(
            c.version
                .unwrap_or("")
                .get(..c.version.unwrap_or("").len().min(32))
                .unwrap_or(""),
        );
        Ok(suit::Release {
            sequence: manifest.sequence_number(),
            image_uri: UriString::new(),
            digest: c
                .image_digest
                .map(|d| d.0)
                .ok_or(UpdateResult::UnsupportedPackage)?,
            size: size as u32,
            version,
            payload_format: None,
        })
    }

    /// The last block of the package is in: the image is checked against the envelope and staged.
    pub(super) fn push_complete(&mut self, now: Instant) {
        let Some(p) = self.push.take() else { return };
        let whole = p
            .payload_start
            .is_some_and(|start| p.received.saturating_sub(start) == p.payload_len);
        let pending = PendingUpdate {
            sequence: p.sequence,
            version: p.version,
        };
        self.staged(now, whole, p.digest, pending, |_, _| Ok(()));
    }
}

//! Pull: the Package URI written to /5/0/1 starts a download of the manifest, which is checked
//! against the trust anchor before the image is fetched block by block into the staging slot.
//! Blocks arrive in any order and each is written where it belongs; the map of received units in
//! the persisted record is the progress a reboot resumes from, and the image is hashed once, from
//! the slot, when every unit is in.
//!
//! Flash rules kept here (nRF52840 NVMC: a page erase sets 4 KiB to 0xFF; a program writes whole
//! 32-bit words and can only clear bits; a word may be programmed at most nWRITE = 2 times between
//! erases): a page is erased once per download, right before the first unit of this download is
//! written into it, and a unit is programmed once, into that erased page. So a page "holds a unit
//! of this download" exactly when it was erased in this download, and no state besides the map is
//! needed. Units are whole multiples of 16 bytes at 16-byte offsets: two units never share a word,
//! so writing them in any order programs each word once. On resume, a unit that is not recorded
//! but reads as written (programmed after the last persist) makes its page erased again (its
//! recorded bits cleared and persisted first); one that reads blank is fetched into the blank
//! words. A program torn by the power cut may read blank and then be programmed a second time:
//! the most any word gets, within nWRITE.

use heapless::Vec;
use lwm2m_core::coap::{Code, Message};
use lwm2m_core::content::{self, Value};
use lwm2m_core::object5::{Event as FwEvent, UpdateResult};
use sha2::{Digest, Sha256};

use super::limits::{BLOCK_SLOTS, MANIFEST_CAP, MAX_PACKAGE_URI_LEN, PERSIST_EVERY, READ_CHUNK};
use super::{Engine, Event, refusal_code};
use crate::exchange::{Answer, BlockReq, Purpose};
use crate::firmware::blocks::{self, BlockMap};
use crate::firmware::download::{Asking, Download, Step, Target};
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
    // A frame of its own, not inlined into the request handler: each request's locals stay
    // off the stack of the others (stack budget).
    #[inline(never)]
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
            total: 0,
            manifest_digest: [0; 32],
            restarts: 0,
            received: BlockMap::new(),
        });
        self.fw_changed(changed);
        match CoapUri::parse(uri) {
            Ok(_) => self.start_manifest(now, &owned, 0),
            Err(result) => self.fail_download(now, result),
        }
        Ok(Code::CHANGED)
    }

    /// How downloads ask for blocks, from the configuration.
    fn asking(&self) -> Asking {
        Asking {
            szx: block_szx(self.cfg.block_size),
            window: self.cfg.window.min(BLOCK_SLOTS as u8),
            adapt: self.cfg.adapt_block_size,
        }
    }

    /// A download of `uri`, if this device can reach it ([`CoapUri::reachable`]).
    fn download(
        &self,
        target: Target,
        uri: &str,
        len: Option<u32>,
        bound: u32,
        too_large: UpdateResult,
    ) -> Result<Download, UpdateResult> {
        self.download_asking(self.asking(), target, uri, len, bound, too_large)
    }

    /// [`Engine::download`] asking as `asking` says.
    fn download_asking(
        &self,
        asking: Asking,
        target: Target,
        uri: &str,
        len: Option<u32>,
        bound: u32,
        too_large: UpdateResult,
    ) -> Result<Download, UpdateResult> {
        CoapUri::parse(uri)?.reachable(self.cfg.secure_server())?;
        Download::new(target, uri, asking, len, bound, too_large, self.cfg.retry)
    }

    /// Starts fetching the manifest at `uri` into the manifest buffer; `restarts` ETag changes
    /// were seen in this update already.
    pub(super) fn start_manifest(&mut self, now: Instant, uri: &str, restarts: u8) {
        self.manifest_len = 0;
        self.exchanges.cancel_blocks();
        let started = self
            .manifest_map
            .reset(MANIFEST_CAP as u32)
            .map_err(|_| UpdateResult::OutOfRam)
            .and_then(|()| {
                self.download(
                    Target::Manifest,
                    uri,
                    None,
                    MANIFEST_CAP as u32,
                    UpdateResult::OutOfRam,
                )
            });
        match started {
            Ok(mut d) => {
                d.restarts = restarts;
                self.download = Some(d);
                self.request_blocks(now);
            }
            Err(result) => self.fail_download(now, result),
        }
    }

    /// The answer to block request `req`.
    pub(super) fn on_block(
        &mut self,
        now: Instant,
        answer: &Answer,
        req: BlockReq,
        msg: &Message<'_>,
    ) {
        // Another exchange for the same block (asked again after it was overtaken) is not needed.
        self.exchanges.cancel(Purpose::Block(req));
        let next_seq = self.exchanges.next_seq();
        let Some(d) = self.download.as_mut() else {
            return;
        };
        let rtt = answer.rtt.as_millis();
        d.pace
            .answered(req.szx, rtt, answer.retransmits, answer.lost, d.server_szx);
        match d.on_response(now, req, answer.seq, next_seq, msg) {
            Step::Retry => {}
            Step::Failed(result) => self.fail_download(now, result),
            Step::Restart => self.restart_download(),
            Step::Data { offset, bytes } => {
                if let Err(result) = self.store_block(now, offset, bytes) {
                    self.fail_download(now, result);
                }
            }
        }
    }

    /// The ETag changed (counted in the download): what was stored belongs to another
    /// representation. The image's cleared map is persisted before any page is erased again.
    fn restart_download(&mut self) {
        self.exchanges.cancel_blocks();
        let Some(d) = self.download.as_ref() else {
            return;
        };
        match d.target {
            Target::Manifest => {
                self.manifest_len = 0;
                let _ = self.manifest_map.reset(MANIFEST_CAP as u32);
            }
            Target::Image => {
                let restarts = d.restarts;
                if let Some(rec) = self.record.download.as_mut() {
                    let _ = rec.received.reset(rec.total);
                    rec.etag.clear();
                    rec.restarts = restarts;
                }
                self.persisted_bytes = 0;
                self.save();
            }
        }
    }

    /// Stores the new bytes of a block: into the manifest buffer, or the staging slot.
    fn store_block(&mut self, now: Instant, offset: u32, bytes: &[u8]) -> Result<(), UpdateResult> {
        let Some(target) = self.download.as_ref().map(|d| d.target) else {
            return Ok(());
        };
        let new = match target {
            Target::Manifest => self.store_manifest_block(offset, bytes)?,
            Target::Image if self.manifest.is_delta() => self.store_patch_block(offset, bytes)?,
            Target::Image => match self.store_image_block(offset, bytes) {
                Ok(n) => n,
                Err(result) => {
                    self.event(Event::PlatformError);
                    return Err(result);
                }
            },
        };
        if new == 0 {
            return Ok(());
        }
        if let Some(d) = self.download.as_mut() {
            d.progressed();
        }
        match target {
            Target::Manifest => {
                let map = &self.manifest_map;
                self.exchanges
                    .cancel_blocks_where(|r| map.has_bytes(r.range()));
                let known = self.download.as_ref().is_some_and(|d| d.len.is_some());
                if map.is_complete() && known {
                    self.manifest_len = map.total() as usize;
                    self.manifest_complete(now);
                }
            }
            Target::Image => {
                let Some(rec) = self.record.download.as_ref() else {
                    return Ok(());
                };
                let map = &rec.received;
                let (bytes, total, complete) = (map.bytes(), rec.total, map.is_complete());
                self.exchanges
                    .cancel_blocks_where(|r| map.has_bytes(r.range()));
                self.event(Event::Progress { bytes, total });
                if complete || bytes.saturating_sub(self.persisted_bytes) >= PERSIST_EVERY {
                    self.persist_progress();
                }
                if complete {
                    self.image_complete(now);
                }
            }
        }
        Ok(())
    }

    /// A block of the manifest into the manifest buffer; returns the bytes new.
    fn store_manifest_block(&mut self, offset: u32, bytes: &[u8]) -> Result<u32, UpdateResult> {
        let Engine {
            download,
            manifest_map: map,
            manifest: buf,
            ..
        } = self;
        let Some(d) = download.as_mut() else {
            return Ok(0);
        };
        // Its length is known now (Size2 or the last block): the map covers just that.
        if let Some(len) = d.len {
            if map.total() != len && !map.shrink(len) {
                return Err(UpdateResult::OutOfRam);
            }
        }
        blocks::store(map, &mut d.partials, offset, bytes, |at, part| {
            let at = at as usize;
            buf.bytes_mut()
                .get_mut(at..at.saturating_add(part.len()))
                .ok_or(UpdateResult::OutOfRam)?
                .copy_from_slice(part);
            Ok(())
        })
    }

    /// A block of a delta's patch: fed to the applier if it continues the patch where the applier
    /// is, dropped if it is ahead (asked again; no reorder buffer). Returns the patch bytes new.
    fn store_patch_block(&mut self, offset: u32, bytes: &[u8]) -> Result<u32, UpdateResult> {
        let Engine {
            download,
            record,
            platform,
            manifest,
            ..
        } = self;
        let (Some(d), Some(rec), Some(run)) = (
            download.as_ref(),
            record.download.as_mut(),
            manifest.delta_mut(),
        ) else {
            return Ok(0);
        };
        // The patch's length is known once Size2 or its last block came: the map covers just it.
        if let Some(len) = d.len {
            if rec.received.total() != len {
                if !rec.received.shrink(len) {
                    return Err(UpdateResult::NotEnoughFlash);
                }
                rec.total = len;
            }
        }
        // A bad patch (Result 5) or a flash failure (2) fails the download; what was staged is
        // never marked for boot.
        let new = run.feed(platform, offset, bytes).map_err(|e| e.result())?;
        // Every unit wholly fed is received (the last one ends with the patch).
        let map = &mut rec.received;
        let fed = run.fed();
        let mut u = map.first_missing_from(0).unwrap_or(map.units());
        while u < map.units() && map.unit_range(u).end <= fed {
            map.set(u);
            u = u.saturating_add(1);
        }
        Ok(new)
    }

    /// A block of the image into the staging slot; returns the bytes new. Its page is erased
    /// first unless it holds a unit of this download already (see the file's doc).
    fn store_image_block(&mut self, offset: u32, bytes: &[u8]) -> Result<u32, UpdateResult> {
        let Engine {
            download,
            record,
            platform,
            ..
        } = self;
        let (Some(d), Some(rec)) = (download.as_mut(), record.download.as_mut()) else {
            return Ok(0);
        };
        let page = platform.page_size().max(1);
        let index = offset.checked_div(page).unwrap_or(0);
        let end = offset.saturating_add(bytes.len() as u32);
        if end.div_ceil(page) > index.saturating_add(1) {
            // Blocks are at most 1 KiB and aligned: a smaller page is not supported.
            return Err(UpdateResult::NotEnoughFlash);
        }
        let mut erased = page_has_data(&rec.received, d, index, page);
        blocks::store(
            &mut rec.received,
            &mut d.partials,
            offset,
            bytes,
            |at, part| {
                if !erased {
                    platform
                        .stage_erase(index)
                        .map_err(|_| UpdateResult::NotEnoughFlash)?;
                    erased = true;
                }
                platform
                    .stage_write(at, part)
                    .map_err(|_| UpdateResult::NotEnoughFlash)
            },
        )
    }

    /// A block request failed: the peer reset it, or it timed out (`seq`: its start order).
    pub(super) fn on_block_failure(&mut self, now: Instant, seq: u32) {
        let next_seq = self.exchanges.next_seq();
        if let Some(d) = self.download.as_mut() {
            if let Some(result) = d.on_timeout(now, seq, next_seq) {
                self.fail_download(now, result);
            }
        }
    }

    /// A block request went out again: its first copy or its answer was lost.
    pub(super) fn on_block_lost(&mut self, now: Instant, req: BlockReq) {
        if let Some(d) = self.download.as_mut() {
            d.pace.lost(now, req.szx);
        }
    }

    /// Persists the map (and ETag) of the image download.
    pub(super) fn persist_progress(&mut self) {
        let etag = self.download.as_ref().map(|d| d.etag.clone());
        if let (Some(rec), Some(etag)) = (self.record.download.as_mut(), etag) {
            rec.etag = etag;
            self.persisted_bytes = rec.received.bytes();
            self.save();
        }
    }

    #[inline(never)] // its locals stay out of handle_datagram's frame (stack budget)
    pub(super) fn manifest_complete(&mut self, now: Instant) {
        // The download stays in place until the manifest is checked (start_image takes it):
        // moved out here, its 600 bytes would sit on the stack under the signature check.
        let Some(uri) = self.download.as_ref().map(|d| &d.uri) else {
            return;
        };
        self.exchanges.cancel_blocks();
        let envelope = self
            .manifest
            .bytes()
            .get(..self.manifest_len)
            .unwrap_or(&[]);
        let platform = &mut self.platform;
        let checked = suit::check_release(
            envelope,
            uri,
            core::slice::from_ref(&self.cfg.trust),
            &self.cfg.identity,
            self.record.accepted_sequence,
            platform.slot_size(),
            &mut || platform.active_image(),
        );
        match checked {
            // By reference: a copy of the release would be a second 340 bytes in this frame.
            Ok(release) => self.start_image(now, &release),
            Err(result) => {
                self.download = None;
                self.fail_download(now, result);
            }
        }
    }

    /// The manifest is accepted: start (or resume) its image. A frame of its own, so that its
    /// locals are not on the stack while the manifest is verified (stack budget).
    #[inline(never)]
    fn start_image(&mut self, now: Instant, release: &suit::Release) {
        // What the image's download keeps of the manifest's: read in place and the download
        // dropped, not moved out (600 bytes on this frame, under the record's store).
        let Some((restarts, peer, server_szx)) = self
            .download
            .as_ref()
            .map(|d| (d.restarts, d.peer, d.server_szx))
        else {
            return;
        };
        let uri = self
            .download
            .as_ref()
            .map(|d| d.uri.clone())
            .unwrap_or_default();
        self.download = None;
        let envelope = self
            .manifest
            .bytes()
            .get(..self.manifest_len)
            .unwrap_or(&[]);
        let digest: [u8; 32] = Sha256::digest(envelope).into();
        // A delta: the patch's length is not in the manifest (at most the slot), and it is
        // fetched one block at a time, in order (firmware/delta.rs). Its precursor was checked
        // against the running image with the manifest, before this.
        let patch = release.payload_format.is_some();
        self.manifest.clear_delta();
        if patch {
            let Some(active) = self.platform.active_image() else {
                return self.fail_download(now, UpdateResult::UnsupportedPackage);
            };
            // The manifest is not read again (see engine/scratch.rs): the applier takes its room.
            self.manifest.begin_delta(active.size, release.size);
            self.manifest_len = 0;
        }
        let started = if patch {
            let asking = Asking {
                window: 1,
                ..self.asking()
            };
            let slot = self.platform.slot_size();
            self.download_asking(
                asking,
                Target::Image,
                &release.image_uri,
                None,
                slot,
                UpdateResult::NotEnoughFlash,
            )
        } else {
            self.download(
                Target::Image,
                &release.image_uri,
                Some(release.size),
                release.size,
                UpdateResult::NotEnoughFlash,
            )
        };
        let mut image = match started {
            Ok(i) => i,
            Err(result) => return self.fail_download(now, result),
        };
        image.restarts = restarts;
        if image.peer == peer {
            // The same server: the largest block it served the manifest in holds for the image.
            image.server_szx = server_szx;
        }
        // Resume the image if this is the manifest whose image was being fetched. A patch is
        // applied again from its start (firmware/delta.rs says why).
        let slot = self.platform.slot_size();
        let resume = !patch
            && self.record.download.as_ref().is_some_and(|rec| {
                rec.manifest_digest == digest
                    && rec.total == release.size
                    && rec.received.total() == release.size
            });
        let rec = new_record_if_none(&mut self.record.download, &uri);
        if resume {
            image.etag = rec.etag.clone();
            image.restarts = image.restarts.max(rec.restarts);
        } else {
            rec.uri = uri;
            rec.etag.clear();
            let total = if patch { slot } else { release.size };
            rec.total = total;
            rec.manifest_digest = digest;
            if rec.received.reset(total).is_err() {
                return self.fail_download(now, UpdateResult::NotEnoughFlash);
            }
        }
        rec.restarts = image.restarts;
        self.fw.pkg_version = release.version.clone();
        self.release = Some(release.clone());
        self.download = Some(image);
        if resume && !self.check_unrecorded() {
            return self.fail_download(now, UpdateResult::NotEnoughFlash);
        }
        // The record names this download (and any page to be erased again) before a unit of it
        // is written.
        self.persisted_bytes = self
            .record
            .download
            .as_ref()
            .map_or(0, |r| r.received.bytes());
        self.save();
        if self
            .record
            .download
            .as_ref()
            .is_some_and(|r| r.received.is_complete())
        {
            return self.image_complete(now);
        }
        self.request_blocks(now);
    }

    /// After a reboot: every page that holds recorded units and others not recorded is checked.
    /// An unrecorded unit that is not blank was written after the last persist: the page is
    /// erased again when its next unit comes, so its recorded bits are cleared (persisted by the
    /// caller before that). False if the slot cannot be read.
    fn check_unrecorded(&mut self) -> bool {
        let Some(rec) = self.record.download.as_mut() else {
            return true;
        };
        let map = &mut rec.received;
        let page = self.platform.page_size().max(1);
        let unit = map.unit();
        let per_page = page.checked_div(unit).unwrap_or(1).max(1);
        let pages = map.units().div_ceil(per_page);
        let mut buf = [0u8; READ_CHUNK];
        for p in 0..pages {
            let units = p.saturating_mul(per_page)
                ..p.saturating_add(1)
                    .saturating_mul(per_page)
                    .min(map.units());
            if !map.any_in(units.clone()) || map.all_in(units.clone()) {
                continue;
            }
            let mut dirty = false;
            for u in units.clone() {
                if map.has(u) {
                    continue;
                }
                let range = map.unit_range(u);
                let mut at = range.start;
                while at < range.end && !dirty {
                    let n = (range.end.saturating_sub(at) as usize).min(READ_CHUNK);
                    let Some(chunk) = buf.get_mut(..n) else {
                        return false;
                    };
                    if self.platform.stage_read(at, chunk).is_err() {
                        return false;
                    }
                    dirty = chunk.iter().any(|&b| b != 0xFF);
                    at = at.saturating_add(n as u32);
                }
                if dirty {
                    break;
                }
            }
            if dirty {
                for u in units {
                    map.unset(u);
                }
            }
        }
        true
    }

    /// Every unit of the image is in the staging slot: it is hashed from the slot, checked
    /// against the manifest and staged.
    pub(super) fn image_complete(&mut self, now: Instant) {
        self.download = None;
        self.exchanges.cancel_blocks();
        let Some(release) = self.release.clone() else {
            return;
        };
        let delta = self.manifest.end_delta();
        let was_delta = delta.is_some();
        if let Some(mut run) = delta {
            // The patch ended: the new image must be whole and of the manifest's size, else it
            // is an integrity failure; its digest is then checked from the slot as a full one's.
            match run.finish(&mut self.platform) {
                Ok(size) if size == release.size => {}
                Ok(_) => return self.fail_download(now, UpdateResult::IntegrityFailure),
                Err(e) => return self.fail_download(now, e.result()),
            }
        }
        self.hasher = Sha256::new();
        let mut buf = [0u8; READ_CHUNK];
        let mut at = 0u32;
        let mut readable = true;
        while at < release.size {
            let n = (release.size.saturating_sub(at) as usize).min(READ_CHUNK);
            let Some(chunk) = buf.get_mut(..n) else {
                readable = false;
                break;
            };
            if self.platform.stage_read(at, chunk).is_err() {
                readable = false;
                break;
            }
            self.hasher.update(&*chunk);
            at = at.saturating_add(n as u32);
        }
        self.record.download = None;
        let pending = PendingUpdate {
            sequence: release.sequence,
            version: release.version,
        };
        self.staged(now, readable, release.digest, pending, |e, digest| {
            if was_delta {
                // The manifest's buffer held the applier: `staged` compared the digest with the
                // manifest's already, and its precursor check ran before the patch.
                return Ok(());
            }
            // The manifest's own check of the staged image, now that its digest is known.
            suit::confirm_staged(
                e.manifest.bytes().get(..e.manifest_len).unwrap_or(&[]),
                core::slice::from_ref(&e.cfg.trust),
                &e.cfg.identity,
                digest,
                None,
            )
        });
    }

    /// Sends block requests as the download's window allows.
    pub(super) fn request_blocks(&mut self, now: Instant) {
        let Some(d) = self.download.as_mut() else {
            return;
        };
        match d.target {
            Target::Manifest => window::fill(d, &self.manifest_map, &mut self.exchanges, now),
            Target::Image => {
                if let Some(rec) = self.record.download.as_ref() {
                    window::fill(d, &rec.received, &mut self.exchanges, now);
                }
            }
        }
    }
}

/// Whether page `index` (of `page` bytes) holds a unit, whole or in part, of this download: then
/// it was erased in this download, right before that unit was written.
fn page_has_data<const W: usize>(map: &BlockMap<W>, d: &Download, index: u32, page: u32) -> bool {
    let first = index
        .saturating_mul(page)
        .checked_div(map.unit())
        .unwrap_or(0);
    let end = index
        .saturating_add(1)
        .saturating_mul(page)
        .div_ceil(map.unit());
    map.any_in(first..end) || d.partials.any_in(&(first..end))
}

/// The download record, made empty for `uri` if there is none. A frame of its own: a record with
/// its block map is built on the stack only here, not under the rest of the image's start.
#[inline(never)]
fn new_record_if_none<'r>(
    download: &'r mut Option<DownloadRecord>,
    uri: &UriString,
) -> &'r mut DownloadRecord {
    download.get_or_insert_with(|| DownloadRecord {
        uri: uri.clone(),
        etag: Vec::new(),
        total: 0,
        manifest_digest: [0; 32],
        restarts: 0,
        received: BlockMap::new(),
    })
}

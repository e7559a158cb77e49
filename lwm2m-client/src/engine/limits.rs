//! Every size limit of the device client in one place, each tied to what it depends on: the
//! protocol facts it follows (lwm2m-core), the flash it persists to (`storage`), or the largest
//! message it was sized for. The buffers these size are most of the engine's RAM
//! ([`Engine::size`](super::Engine::size)). A limit that is reached is an error the engine
//! reports (a 4.13 or 5.00 response, an Object 5 Update Result), never a panic.
//!
//! Defined elsewhere and only re-exported here: lengths that are protocol facts (lwm2m-core) or
//! part of the persisted record's format (`storage::record`, whose encoding bounds them). The
//! SUIT decoder has its own bounds in `suit_manifest::limits`. The assertions at the bottom fail
//! the build when a limit no longer covers what it is sized for.

use lwm2m_core::{block, coap};

/// Erase unit of the device flash.
pub use crate::storage::layout::PAGE_SIZE;
/// Longest PkgName / PkgVersion and firmware version ([`MAX_PKG_LEN`]), longest ETag kept
/// ([`MAX_ETAG_LEN`], RFC 7252: 8 bytes): as the persisted record stores them.
pub use crate::storage::record::{MAX_ETAG_LEN, MAX_PKG_LEN};
/// Longest token of a request the device answers or observes (RFC 7252: 8 bytes).
pub use lwm2m_core::coap::MAX_TOKEN_LEN;
/// Longest Package URI (/5/0/1): LwM2M's 255 characters. Sizes every URI buffer
/// ([`UriString`](crate::uri::UriString)).
pub use lwm2m_core::object5::MAX_PACKAGE_URI_LEN;

// ---- registration (registration.rs) and the device's own texts (config.rs) ----

/// Longest endpoint name.
pub const MAX_ENDPOINT_LEN: usize = 64;
/// Longest Manufacturer, Model Number and Serial Number (Object 3).
pub const MAX_DEVICE_TEXT_LEN: usize = 32;
/// Longest registration location the server assigns (`/rd/<id>`, from its Location-Path).
pub const MAX_LOCATION_LEN: usize = 32;
/// Longest Uri-Query of a Register (`ep=` and the endpoint name is the longest).
pub const MAX_QUERY_LEN: usize = 80;

// ---- requests out (crate::exchange) ----

/// Largest request held in a buffer (a registration with its object list, a notification with a
/// small value). Block requests hold no buffer: they are encoded into the driver's datagram
/// buffer whenever due.
pub const MAX_REQUEST: usize = 192;
/// Requests in flight at once: block requests, and the others below.
pub const EXCHANGE_SLOTS: usize = 20;
/// Requests other than block requests in flight at once (Register or Update, notifications):
/// each holds its bytes in a buffer of [`MAX_REQUEST`]; the exchange slots they need are never
/// taken by block requests.
pub const REQUEST_BUFFERS: usize = 4;
/// Block requests in flight at most: the window of a download never exceeds it.
pub const BLOCK_SLOTS: usize = EXCHANGE_SLOTS - REQUEST_BUFFERS;
/// Peers whose round-trip time is measured: the LwM2M server and the firmware host.
pub const RTO_PEERS: usize = 2;
/// Length of the tokens the device gives its own requests (a 32-bit counter).
pub const TOKEN_LEN: usize = 4;

// ---- requests in (serve.rs) ----

/// Observations held at once (/5/0/3 and /5/0/5, for the server and one more observer).
pub const OBSERVERS: usize = 4;
/// Largest payload of a Read (a single resource such as the Package URI, or an object in TLV or
/// SenML-CBOR); a read that does not fit is answered 5.00.
pub const READ_BODY: usize = 300;
/// Largest payload of a Discover (the link format of one object's resources).
pub const DISCOVER_BODY: usize = 256;
/// Largest response the device sends (a read of Object 5 with a 255-character URI), and the size
/// of the response kept for a duplicate request.
pub const MAX_RESPONSE: usize = 400;
/// Longest value in a notification (State or Update Result as text).
pub const NOTIFY_TEXT_LEN: usize = 12;
/// Datagrams waiting for `poll_transmit` besides the requests: empty ACKs, Resets and the cached
/// response (the engine), empty ACKs (a fetch). The oldest is dropped when full.
pub const OUTBOX: usize = 4;
/// Events waiting for `poll_event`; the oldest is dropped when full.
pub const EVENTS: usize = 8;

// ---- firmware (pull.rs, push.rs, crate::firmware) ----

/// Largest SUIT envelope (without integrated payload) the device accepts: the manifest buffer,
/// and for a push the envelope head buffered before the image streams to flash.
pub const MANIFEST_CAP: usize = 1024;
/// Words of the map of received units (1 bit per unit): 8192 units, so a 488 KiB slot is mapped
/// in 64-byte units (976 bytes of the map used), a 512 KiB one too, an 8 MiB one in 1 KiB units.
/// It is the persisted progress record's map, held once, in the record.
pub const MAP_WORDS: usize = 256;
/// Words of the manifest download's map: [`MANIFEST_CAP`] in 16-byte units.
pub const MANIFEST_MAP_WORDS: usize = MANIFEST_CAP.div_ceil(16 * 32);
/// Persist download progress after this many new bytes (one erase page): a power cut costs at
/// most about this much of the download. The record stays small while blocks come roughly in
/// order (the map's tail spans the window), so a 488 KiB download stores it about 122 times.
pub const PERSIST_EVERY: u32 = PAGE_SIZE;
/// Bytes of the staging slot read at a time: to hash the image once it is complete, and to check
/// unrecorded units are blank when a download resumes.
pub const READ_CHUNK: usize = 256;
/// Image bytes hashed per engine call, so that checking a 488 KiB image does not hold the engine
/// for long in one call (about 30 ms per step on a 64 MHz Cortex-M4).
pub const HASH_STEP: u32 = 16 * 1024;
/// Times a changed ETag may start a download over in one update (mirrors that disagree); the
/// next change fails it with Result 4. With a resume after each power cut, this bounds how often
/// one staging page is erased in an update.
pub const MAX_RESTARTS: u8 = 2;
/// The longest a 5.03's Max-Age holds a download before it asks again.
pub const MAX_SERVER_WAIT: crate::time::Duration = crate::time::Duration::from_secs(60);
/// Path segments kept while resolving a manifest's relative image reference (RFC 3986 §5.2.4).
pub const URI_SEGMENTS: usize = 32;

// ---- what the limits must cover ----

/// Header, the longest token, Observe (up to 4 bytes), Content-Format (up to 3), Block1 or
/// Size1 (up to 5), the payload marker: what a response carries besides its payload.
const RESPONSE_OVERHEAD: usize = coap::HEADER_LEN + coap::MAX_TOKEN_LEN + 4 + 3 + 5 + 1;
const _: () = assert!(MAX_RESPONSE >= RESPONSE_OVERHEAD + READ_BODY);
const _: () = assert!(READ_BODY >= DISCOVER_BODY && READ_BODY >= MAX_PACKAGE_URI_LEN);
const _: () = assert!(MAX_QUERY_LEN >= "ep=".len() + MAX_ENDPOINT_LEN);
// Unit and block sizes top out at 1024 bytes (SZX 6): the map's units and the block math agree.
const _: () = assert!(crate::firmware::blocks::MAX_UNIT_SHIFT as u32 == block::MAX_SZX as u32 + 4);
const _: () = assert!(BLOCK_SLOTS >= 1 && REQUEST_BUFFERS >= 2);
// A block never crosses an erase page: blocks are aligned to their size, at most 1 KiB.
const _: () = assert!(PAGE_SIZE % (1 << (block::MAX_SZX + 4)) == 0);
const _: () = assert!(MANIFEST_CAP <= suit_manifest::limits::MAX_ENVELOPE_LEN);
const _: () = assert!(TOKEN_LEN <= coap::MAX_TOKEN_LEN);

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

/// Largest request the device sends (a 64-byte block request, a registration with its object
/// list, a notification with a small value).
pub const MAX_REQUEST: usize = 192;
/// Requests in flight at once (registration, a window of block requests, notifications).
pub const EXCHANGE_SLOTS: usize = 12;
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
/// Bytes of blocks that arrived ahead of order, kept until their turn.
pub const REORDER_CAP: usize = 1024;
/// Blocks held ahead of order at most (with small blocks; large ones are bounded by
/// [`REORDER_CAP`]).
pub const REORDER_SLOTS: usize = 16;
/// Persist download progress at least every this many bytes: one flash erase page, so a power
/// cut costs at most one page of the download.
pub const PERSIST_EVERY: u32 = PAGE_SIZE;
/// Bytes read back from the staging slot at a time to hash a resumed download again.
pub const REHASH_CHUNK: usize = 256;
/// Path segments kept while resolving a manifest's relative image reference (RFC 3986 §5.2.4).
pub const URI_SEGMENTS: usize = 32;

// ---- what the limits must cover ----

/// Header, the longest token, Observe (up to 4 bytes), Content-Format (up to 3), Block1 or
/// Size1 (up to 5), the payload marker: what a response carries besides its payload.
const RESPONSE_OVERHEAD: usize = coap::HEADER_LEN + coap::MAX_TOKEN_LEN + 4 + 3 + 5 + 1;
const _: () = assert!(MAX_RESPONSE >= RESPONSE_OVERHEAD + READ_BODY);
const _: () = assert!(READ_BODY >= DISCOVER_BODY && READ_BODY >= MAX_PACKAGE_URI_LEN);
const _: () = assert!(MAX_QUERY_LEN >= "ep=".len() + MAX_ENDPOINT_LEN);
// The reorder buffer holds at least one block of the largest size (SZX 6, 1024 bytes).
const _: () = assert!(REORDER_CAP >= 1 << (block::MAX_SZX + 4));
const _: () = assert!(MANIFEST_CAP <= suit_manifest::limits::MAX_ENVELOPE_LEN);
const _: () = assert!(TOKEN_LEN <= coap::MAX_TOKEN_LEN);

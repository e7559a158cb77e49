//! How the device is set up: [`Config`], and [`Config::new`] with the defaults every deployment
//! starts from.

use core::net::SocketAddr;

use heapless::String;
use lwm2m_core::coap;
use suit_manifest::TrustAnchor;

use super::limits::{BLOCK_SLOTS, MAX_DEVICE_TEXT_LEN, MAX_ENDPOINT_LEN};
use crate::firmware::download::RetryPolicy;
use crate::firmware::suit::Identity;
use crate::rto::RtoConfig;
use crate::time::Duration;

/// How the device is set up.
#[derive(Clone, Debug)]
pub struct Config {
    pub endpoint: String<MAX_ENDPOINT_LEN>,
    /// The LwM2M server.
    pub server: SocketAddr,
    /// The driver secures the channel to `server` (DTLS on the host): the device then fetches
    /// only `coaps://` Package URIs at the server and reports CoAPs in /5/0/8. False on the board,
    /// which speaks plain CoAP.
    pub secure: bool,
    /// The driver protects the exchanges with `server` with OSCORE (`crate::oscore`): the
    /// registration lists Object 21 (OSCORE) instance 0, which is never readable.
    pub oscore: bool,
    pub lifetime_s: u32,
    pub queue_mode: bool,
    /// How long the radio stays on after the device last sent something (queue mode).
    pub awake_window: Duration,
    /// Block size downloads start with: 16..=1024, a power of two (64 fits one 802.15.4 frame).
    pub block_size: u16,
    /// Whether the block size adapts to the link (from 64 bytes, or `block_size` if smaller, up
    /// to 1024), as measured loss and round-trip times say; else it stays `block_size`.
    pub adapt_block_size: bool,
    /// Most block requests in flight at once (1: one after the other); the download's window
    /// opens and closes below this, and never beyond [`super::limits::BLOCK_SLOTS`].
    pub window: u8,
    pub identity: Identity,
    pub trust: TrustAnchor,
    pub manufacturer: String<MAX_DEVICE_TEXT_LEN>,
    pub model: String<MAX_DEVICE_TEXT_LEN>,
    pub serial: String<MAX_DEVICE_TEXT_LEN>,
    pub rto: RtoConfig,
    pub retry: RetryPolicy,
    /// The device's user postpones updates (Update Result 11) for as long as Object 5 lets them:
    /// not for a Critical update (Severity 0), and at most Maximum Defer Period (/5/0/13) seconds,
    /// after which the update is installed without asking (LwM2M 1.1 Object 5).
    pub defer_updates: bool,
    /// Seed for message ids, tokens and jitter. It must differ at every boot (a hardware RNG on
    /// the board): a server deduplicates requests by message id for RFC 7252's EXCHANGE_LIFETIME,
    /// so a rebooted device that repeated its ids would be answered with stale responses.
    pub seed: u32,
}

impl Config {
    /// A device set-up with the defaults every deployment starts from: a 300 s lifetime, not in
    /// queue mode, awake for RFC 7252's MAX_TRANSMIT_WAIT after it last sent, downloads that start
    /// with 64-byte blocks (one 802.15.4 frame) and adapt their block size and window (up to
    /// every block slot), CoCoA retransmission timers, the default retry policy, updates not
    /// deferred, manufacturer "otafleet" and an empty model and serial.
    ///
    /// `seed` is 0 here: set it from a hardware RNG at every boot (see [`Config::seed`]).
    pub fn new(
        endpoint: String<MAX_ENDPOINT_LEN>,
        server: SocketAddr,
        identity: Identity,
        trust: TrustAnchor,
    ) -> Self {
        Config {
            endpoint,
            server,
            secure: false,
            oscore: false,
            lifetime_s: 300,
            queue_mode: false,
            awake_window: Duration::from_core(coap::params::MAX_TRANSMIT_WAIT),
            block_size: 64,
            adapt_block_size: true,
            window: BLOCK_SLOTS as u8,
            identity,
            trust,
            manufacturer: String::try_from("otafleet").unwrap_or_default(),
            model: String::new(),
            serial: String::new(),
            rto: RtoConfig::default(),
            retry: RetryPolicy::default(),
            defer_updates: false,
            seed: 0,
        }
    }

    /// The server the driver has a DTLS channel with, if any.
    pub fn secure_server(&self) -> Option<SocketAddr> {
        self.secure.then_some(self.server)
    }
}

//! The link model: sans-IO and in virtual time. A caller hands it `(now, datagram length)` and
//! gets back when (and how many times) the datagram arrives; nothing here sleeps, spawns or
//! touches a socket.
//!
//! Every random choice comes from a ChaCha8 stream named by `(seed, stream)`: the same seed and the
//! same calls give the same deliveries on every platform.
//!
//! Calls must come in non-decreasing `now` across everything that shares a [`Medium`] (a
//! discrete-event loop or a real clock gives that): a medium forgets its past at each call.
//!
//! ```
//! use sim_network::model::{Backhaul, Instant, LinkConfig, LossModel, Mesh};
//!
//! let cfg = LinkConfig { loss: LossModel::Bernoulli { p: 0.1 }, hops: 3, ..LinkConfig::default() };
//! let mesh = Mesh::new(cfg, Backhaul::default(), 7);
//! let mut device = mesh.path(0);
//! // A 64-byte CoAP block request: one frame on each of 3 hops, then the backhaul.
//! for arrival in device.send_up(Instant::START, 64) {
//!     // 3 × (5.344 ms airtime + 0.544 ms MAC ACK + 2 ms processing + up to 1 ms jitter)
//!     // + 1 ms backhaul, and more if a frame needed MAC retries.
//!     assert!(arrival.at >= Instant::from_micros(3 * (5_344 + 544 + 2_000) + 1_000));
//! }
//! assert!(device.stats().up.frames_sent >= 1);
//! ```

mod config;
mod contention;
mod draw;
mod framing;
mod link;
mod loss;
mod mac;
mod medium;
mod path;
mod phy;
mod time;

pub use config::{Backhaul, ConfigError, LinkConfig};
pub use contention::Contention;
pub use framing::{FrameSizes, Framing, frames_for};
pub use link::{Delivery, Link, LinkStats};
pub use loss::{LossModel, LossState, LossUnit};
pub use mac::{Mac, ack_exchange, ack_timeout, retry_pause};
pub use medium::Medium;
pub use path::{Mesh, Path, PathStats};
pub use phy::{
    ACK_FRAME, ACK_WAIT, BITRATE, CCA, DEFAULT_PER_FRAME_OVERHEAD, LIFS, MEAN_CSMA_BACKOFF,
    SHR_PHR, TURNAROUND, UNIT_BACKOFF, airtime,
};
pub use time::Instant;

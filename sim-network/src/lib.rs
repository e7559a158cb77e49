//! sim-network: a lossy constrained-network simulator for otafleet, deterministic from a seed.
//!
//! Its one job: tell, for every datagram a device or the server sends, whether and when it arrives
//! over an 802.15.4 / 6LoWPAN mesh (frames, fragment loss, bursts, airtime, hops, outages), so the
//! real protocol engines can be tested against an honest network in virtual or real time.
//!
//! [`model`] is the sans-IO link model; [`proxy`] drives it between real processes over UDP;
//! [`sim`] runs the real server and device engines on it in virtual time; `thread` (feature
//! `openthread`) runs the same update on real OpenThread nodes instead of the model.

pub mod model;
pub mod proxy;
pub mod sim;
#[cfg(feature = "openthread")]
pub mod thread;

//! Test support of the lwm2m-client integration tests, beside testkit (the workspace's one test
//! harness, which gives the images, signed releases, the device configuration and the real
//! server): an independent CoAP codec, a scripted LwM2M server, a scripted Block2 file server, the
//! engine on the host driver over a RAM platform or an in-memory network, the real third-party
//! CoAP peers, and the storage tests' small flash layout.
//!
//! Every test binary that says `mod support;` compiles this module and uses only part of it, so
//! unused items are expected here.
#![allow(dead_code, unused_imports)]

pub mod coap;
pub mod device;
pub mod fileserver;
pub mod lwm2m;
pub mod net;
pub mod peers;
pub mod platform;
// The client binary's code: the binary exists only with feature std.
#[cfg(feature = "std")]
pub mod real_code;
pub mod storage;

//! Helpers shared by the lwm2m-server integration tests, beside testkit (the workspace's one test
//! harness): the scripted push-only device, a lying impostor, a bare CoAP peer, and the real
//! third-party CoAP peers, a throw-away PostgreSQL cluster, and the server binary as a child
//! process.
//!
//! Every test binary that says `mod support;` compiles this module and uses only part of it, so
//! unused items are expected here.
#![allow(dead_code, unused_imports)]

pub mod fake_device;
pub mod liar;
pub mod peers;
pub mod pg;
pub mod process;
pub mod raw_peer;

//! Helpers shared by the lwm2m-server integration tests.
//!
//! Every test binary that says `mod support;` compiles this module and uses only part of it, so
//! unused items are expected here.
#![allow(dead_code)]

pub mod fake_device;

//! Shared by the sim-network tests: `model`, statistical bands and a steady sender for the link
//! model's tests; `scenario`, a small deployment in virtual time and the checks that every device's
//! flash, its own report and the server's job agree, for the end-to-end scenarios.
//!
//! Every test binary that says `mod support;` compiles this module and uses only part of it, so
//! unused items are expected here.
#![allow(dead_code, unused_imports)]

pub mod model;
pub mod scenario;

//! lwm2m-client: the device side of otafleet. A sans-IO LwM2M engine for a Cortex-M4 Thread board
//! (no_std, no heap) that registers with an LwM2M server, implements Object 5 (Firmware Update),
//! pulls a signed SUIT release block by block into its staging slot and hands over to an A/B boot.
//!
//! This crate is being built up issue by issue: so far it only fixes its place in the workspace and
//! its dependencies (lwm2m-core for the protocol facts, suit-manifest for verification).
#![no_std]

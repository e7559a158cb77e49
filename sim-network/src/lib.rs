//! sim-network: a lossy constrained-network simulator (802.15.4 frames, 6LoWPAN fragmentation,
//! loss, bursts, delay, multi-hop meshes, power cuts), deterministic from a seed.
//!
//! This crate is being built up issue by issue: so far it only fixes its place in the workspace.

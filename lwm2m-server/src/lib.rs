//! lwm2m-server: the otafleet LwM2M server (std, tokio). Devices register over CoAP; admins manage
//! them and roll out signed firmware that the server hosts and serves with block-wise transfer.
//!
//! This crate is being built up issue by issue: so far it only fixes its place in the workspace.

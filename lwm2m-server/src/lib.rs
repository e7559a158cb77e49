//! lwm2m-server: the otafleet LwM2M server (std, tokio). Devices register over CoAP; admins manage
//! them and roll out signed firmware that the server hosts and serves with block-wise transfer.
//!
//! Built up issue by issue: so far the embedded store ([`store`]) and the firmware repository
//! ([`repository`]).
pub mod repository;
pub mod store;

//! lwm2m-server: the otafleet LwM2M server (std, tokio). Devices register over CoAP; admins manage
//! them and roll out signed firmware that the server hosts and serves with block-wise transfer.
//!
//! Built up issue by issue: so far the embedded store ([`store`]) and the firmware repository
//! ([`repository`]).
pub mod api;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod coap;
pub mod content;
pub mod dashboard;
pub mod dm;
pub mod downloads;
pub mod events;
pub mod jobs;
pub mod model;
pub mod paths;
pub mod registry;
pub mod repository;
pub mod server;
pub mod status;
pub mod store;

//! lwm2m-server: the otafleet LwM2M server (std, tokio). Devices register over CoAP; admins manage
//! them and roll out signed firmware that the server hosts and serves with block-wise transfer.
//! [`server::Server`] assembles the parts:
//!
//! - CoAP and LwM2M: [`coap`] (the sans-IO endpoint, block-wise transfer, the tokio driver),
//!   [`registry`] (the registration interface at `/rd`), [`dm`] (device management: read, write,
//!   execute, observe...), [`content`] and [`model`] (payloads to and from JSON, resource types),
//!   [`paths`] (the Object 3 and 5 paths the server uses on its own).
//! - Firmware: [`repository`] (releases, checked against the trust keys, served at `/fw`),
//!   [`downloads`] (who fetched which block).
//! - Rollouts: [`jobs`] (the Object 5 procedure per device), [`campaign`] (waves, thresholds,
//!   soaks), [`status`] (their statuses, one enum each).
//! - State: [`store`] (SQLite; every table and migration), [`events`] (the event stream),
//!   [`clock`] (wall-clock time, virtual in the simulator).
//! - Operators: [`api`] (the REST API), [`dashboard`] (the web page), [`cli`] (the admin
//!   subcommands of the binary).
//!
//! Protocol facts (option numbers, content formats, Object 5 ids, block sizes, RFC 7252 timing)
//! come from `lwm2m-core`, shared with the device; this crate spells none of them again.
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

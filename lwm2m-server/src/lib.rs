//! lwm2m-server: the otafleet LwM2M server (std, tokio). Devices register over CoAP; admins manage
//! them and roll out signed firmware that the server hosts and serves with block-wise transfer.
//! [`server::Server`] assembles the parts:
//!
//! - CoAP and LwM2M: [`coap`] (the sans-IO endpoint, block-wise transfer, the tokio driver),
//!   [`registry`] (the registration interface at `/rd`), [`security`] (DTLS credentials and who
//!   may register as which endpoint), [`dm`] (device management: read, write,
//!   execute, observe...), [`content`] and [`model`] (payloads to and from JSON, typed, named and
//!   given units by the object models), [`paths`] (the Object 3 and 5 paths the server uses on its
//!   own), [`device_info`] (model and firmware version, read at registration).
//! - Firmware: [`repository`] (releases, checked against the trust keys, served at `/fw`),
//!   [`downloads`] (who fetched which block).
//! - Rollouts: [`jobs`] (the Object 5 procedure per device), [`campaign`] (waves, thresholds,
//!   soaks), [`status`] (their statuses, one enum each).
//! - State: [`store`] (SQLite; every table and migration), [`events`] (the event stream),
//!   [`clock`] (wall-clock time, virtual in the simulator).
//! - Operators: [`api`] (the REST API), [`dashboard`] (the web page), [`cli`] (the admin
//!   subcommands of the binary), [`words`] (Object 5 codes in words for people).
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
pub mod delta;
pub mod device_info;
pub mod dm;
pub mod downloads;
pub mod events;
pub mod jobs;
pub mod model;
pub mod paths;
pub mod rate;
pub mod registry;
pub mod repository;
pub mod security;
pub mod server;
pub mod status;
pub mod store;
pub mod words;

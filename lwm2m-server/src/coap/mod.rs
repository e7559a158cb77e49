//! The CoAP layer of the server (RFC 7252, RFC 7641 observer side, RFC 7959 block-wise).
//!
//! * [`endpoint`]: the sans-IO message layer: retransmission, deduplication, piggybacked and
//!   separate responses, token matching, observation ordering, per-peer request queue.
//! * [`block`]: Block1/Block2 option codec, stateless Block2 serving, Block1 reassembly.
//! * [`driver`]: a tokio task running an endpoint over a [`driver::Transport`] (UDP or the
//!   simulator's network), with an async handle for requests, observations and block-wise
//!   transfers.
//! * [`dtls`]: `coaps://`, DTLS 1.2 PSK as a [`Transport`] under the same endpoint.
//! * [`oscore`]: OSCORE (RFC 8613), which protects requests and responses above the endpoint.

pub mod block;
mod datagram;
mod dedup;
pub mod driver;
pub mod dtls;
pub mod endpoint;
mod observe;
pub mod oscore;
mod wire;

pub use datagram::Datagram;
pub use driver::{CoapHandle, CoapServer, IncomingRequest, Observation, RequestError, Transport};
pub use endpoint::{Endpoint, EndpointConfig, Event, FailReason, RequestHandle, RequestId};
pub use wire::new_response;
pub(crate) use wire::{KNOWN_OPTIONS, unknown_critical_option};

//! Test support shared by client_interop.rs and object5_results.rs: an independent CoAP codec, a
//! scripted LwM2M server, a scripted Block2 file server, the engine on the host driver over a RAM
//! platform, signed releases, and the real third-party CoAP peers.
#![allow(dead_code)]

pub mod coap;
pub mod device;
pub mod fileserver;
pub mod lwm2m;
pub mod net;
pub mod peers;
pub mod platform;
pub mod release;

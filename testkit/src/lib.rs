//! otafleet's one test harness, the way smoltcp's `iface::interface::tests::setup` is one set-up
//! for every interface test: the integration tests of lwm2m-server and lwm2m-client start their
//! server, make their images and releases, call the admin API and run a device through it.
//!
//! A dev-dependency only: no library, binary or board depends on it, so it never reaches the
//! no_std device build (it needs lwm2m-client's `std` feature for the host driver).
//!
//! ```text
//! TestServer::start(|cfg| ...)   server.rs   lwm2m-server on 127.0.0.1 (CoAP + admin HTTP), a tempdir,
//!                                            a signing key it trusts, fast job timeouts
//!   .add_release(..)             release.rs  image(), firmware(), VENDOR/CLASS, signed SUIT envelopes
//!   .api(..) .cli(..) .events()  http.rs     the REST API with the bearer token, the event stream
//!   .registered(..) .finished(..) wait.rs    bounded polling
//! Device::start(Spec::new(device::config(..)))
//!                                device.rs   the real engine on the real flash stack, rebooting after
//!                                            Update, with a wiretap that records (and may lose) datagrams
//! ```

pub mod device;
pub mod http;
pub mod release;
pub mod server;
pub mod wait;

pub use device::Device;
pub use release::{CLASS, VENDOR, image};
pub use server::{TOKEN, TestServer};

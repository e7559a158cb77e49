//! The simulator in one process: the real lwm2m-server and real device engines talking over the
//! link model in virtual time.
//!
//! - [`net`]: the simulated network (server transport, device sockets, timed inboxes).
//! - [`device`]: one device: engine, flash, power-on, power cuts.
//! - [`release`]: keys, images and signed releases, good and bad.
//! - [`delta`]: a rebuild of the factory image and the releases of a delta update to it.
//! - [`world`]: a deployment (server + meshes of devices) that scenarios drive.
//! - [`fleet`]: one fleet-wide update and its report (`sim-network fleet`).
//! - [`demo`]: the README's first command: key, release, server, 50 devices, summary.

pub mod delta;
pub mod demo;
pub mod device;
pub mod fleet;
pub mod net;
pub mod release;
pub mod world;

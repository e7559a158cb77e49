//! The simulator on real OpenThread (feature `openthread`, on by default): the same update as the
//! model's demo, with every device, router and the border router a process running OpenThread
//! (see the `sim-thread` crate), on a medium of rings of hops, and the real lwm2m-server behind
//! the border router, all in virtual time.
//!
//! - [`medium`]: who hears whom, airtime, CCA, collisions, loss per frame.
//! - [`node`]: one node process and its pipes.
//! - [`mesh`]: the discrete-event loop, and the border router's backbone to the server.
//! - [`world`]: a deployment on OpenThread: nodes, server, update, report.
//! - [`calibrate`]: the same scenario on the model and on OpenThread, side by side.

pub mod calibrate;
pub mod medium;
pub mod mesh;
pub mod node;
pub mod world;

pub use world::{ThreadConfig, run_update};

//! sim-thread: real OpenThread nodes for otafleet's simulator.
//!
//! The `openthread` crate runs one OpenThread instance per process (OpenThread's C state and the
//! crate's platform callbacks are globals), so each node of a simulated mesh is a process of its
//! own: sim-network starts them, plays the radio medium between them and owns the clock. A node
//! is OpenThread (FTD build) with its real MLE attach, router election, CSMA/CA, MAC ACKs and
//! retries, 6LoWPAN fragmentation and mesh routing; only the PHY is simulated.
//!
//! ```text
//!   sim-network (medium, virtual clock, lwm2m-server)
//!      │ stdin/stdout: wire::ToNode / wire::FromNode, in lockstep
//!   node process: exec (run loop) ─ clock (embassy-time driver) ─ radio (PHY) ─ MacRadio ─ OpenThread
//!                 └ node: border router bridge | router | device (the LwM2M engine on OT's UDP)
//! ```
//!
//! [`wire`] and [`spec`] are what the simulator needs; [`node::run`] is a node process's main.

pub mod clock;
pub mod dataset;
pub mod device;
pub mod exec;
pub mod node;
pub mod radio;
pub mod rng;
pub mod spec;
pub mod status;
pub mod wire;

/// Runs a node process from its spec file (JSON, see [`spec::NodeSpec`]).
pub fn run_node(spec_path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(spec_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?;
    let spec: spec::NodeSpec =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?;
    node::run(spec)
}

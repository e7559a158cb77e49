//! One OpenThread node process as the simulator holds it: the child process (this same binary,
//! `sim-network thread-node SPEC`), its pipes, and when it next wants to run.

use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use sim_thread::wire::{self, FromNode, ToNode};

/// A running node process.
pub struct NodeProc {
    pub id: u16,
    child: Child,
    tx: BufWriter<ChildStdin>,
    rx: BufReader<ChildStdout>,
    /// When its next timer is due (µs since the start), as it last said.
    pub next: Option<u64>,
    /// Events for its next batch.
    pub pending: Vec<ToNode>,
}

impl NodeProc {
    /// Starts `exe thread-node spec`, its log in `log`, and waits for its first idle report.
    pub fn spawn(exe: &Path, id: u16, spec: &Path, log: &Path) -> Result<NodeProc> {
        let log = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(exe)
            .arg("thread-node")
            .arg(spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node {id} ({})", exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("node {id}: no pipes");
        };
        let mut node = NodeProc {
            id,
            child,
            tx: BufWriter::new(stdin),
            rx: BufReader::new(stdout),
            next: None,
            pending: Vec::new(),
        };
        match node.recv()? {
            FromNode::Idle { next } => node.next = next,
            other => bail!("node {id} started with {other:?}"),
        }
        Ok(node)
    }

    pub fn send(&mut self, m: &ToNode) -> Result<()> {
        wire::send_to_node(&mut self.tx, m).map_err(|e| self.died(e))
    }

    pub fn recv(&mut self) -> Result<FromNode> {
        wire::recv_from_node(&mut self.rx).map_err(|e| self.died(e))
    }

    fn died(&mut self, e: std::io::Error) -> anyhow::Error {
        let status = self.child.try_wait().ok().flatten();
        anyhow!(
            "node {} stopped talking ({e}; exit {status:?}): see its log",
            self.id
        )
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = wire::send_to_node(&mut self.tx, &ToNode::Quit);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

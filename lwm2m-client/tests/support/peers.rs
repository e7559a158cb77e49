//! Real CoAP peers for interop tests: libcoap's command-line tools and aiocoap in the venv that
//! scripts/setup.sh makes. A missing peer fails the test when CI=true and otherwise skips it with a
//! printed notice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::coap::{self, Msg};

#[path = "../../../lwm2m-server/tests/support/peers/lookup.rs"]
mod lookup;
#[allow(unused_imports)] // not every test binary that includes `support` uses both
pub use lookup::{libcoap, peer_tool};

/// The venv's bin directory (aiocoap).
pub fn venv_bin(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/venv/bin")
        .join(name);
    peer_tool(&format!("aiocoap venv ({name})"), path)
}

/// Kills (and reaps) the child process when the test ends, however it ends.
pub struct KillOnDrop {
    pub child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl KillOnDrop {
    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a peer with its output going to `log` (a file, so a chatty peer never blocks on a
/// full pipe).
pub fn spawn(mut cmd: Command, log: &Path) -> KillOnDrop {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    KillOnDrop {
        child,
        log: log.to_path_buf(),
    }
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until a CoAP server answers a GET of `path` at `peer`; false if it never does.
pub async fn wait_up(peer: SocketAddr, path: &str, limit: Duration) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 1500];
    let mut mid = 1u16;
    while tokio::time::Instant::now() < deadline {
        mid += 1;
        let req = Msg::new(coap::CON, coap::GET, mid, &[mid as u8]).with_path(path);
        let _ = sock.send_to(&req.encode(), peer).await;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await
        {
            if Msg::decode(&buf[..n]).is_ok_and(|m| m.mid == mid) {
                return true;
            }
        }
    }
    false
}

/// Runs a blocking command off the runtime (bounded by its own options).
pub async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        cmd.stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .expect("spawn peer")
    })
    .await
    .unwrap()
}

//! Processes the benchmarks start: peers and the `lwm2m-server` binary, on free loopback ports,
//! killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// A build of one of our binaries to measure, and its label in the tables (empty when a table
/// measures only one build).
#[derive(Clone, Debug)]
pub struct Build {
    pub label: String,
    pub path: std::path::PathBuf,
}

/// A child process, killed and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `cmd` with its output discarded.
pub fn spawn_quiet(cmd: &mut Command) -> Result<Proc> {
    Ok(Proc(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?,
    ))
}

/// A running `lwm2m-server serve`.
pub struct LocalServer {
    pub proc: Proc,
    pub coap: SocketAddr,
    /// The admin API (token `bench`).
    pub url: String,
}

/// Starts `bin serve` on free ports with its data in `data` and admin token `bench`.
pub fn start_server(bin: &Path, data: &Path, extra: &[&str]) -> Result<LocalServer> {
    start_server_at(bin, data, free_udp_port()?, extra)
}

/// [`start_server`] on CoAP port `coap` (several nodes with `--reuse-port` share one).
pub fn start_server_at(bin: &Path, data: &Path, coap: u16, extra: &[&str]) -> Result<LocalServer> {
    let http = free_tcp_port()?;
    let proc = spawn_quiet(
        Command::new(bin)
            .args(["serve", "--coap", &format!("127.0.0.1:{coap}")])
            .args(["--http", &format!("127.0.0.1:{http}")])
            .arg("--data")
            .arg(data)
            .args(["--admin-token", "bench"])
            .args(extra)
            .env("RUST_LOG", "warn"),
    )?;
    Ok(LocalServer {
        proc,
        coap: ([127, 0, 0, 1], coap).into(),
        url: format!("http://127.0.0.1:{http}"),
    })
}

//! The `lwm2m-server` binary as a child process of a test: a free port to give it, and a guard
//! that kills it (and reaps it) when the test ends, passing or not.

use std::process::Child;

/// A TCP port on 127.0.0.1 that nothing listens on right now (for `--http`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server and its admin API's address; killed on drop.
pub struct Running {
    pub child: Child,
    pub http: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

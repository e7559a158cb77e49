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

/// A UDP port on 127.0.0.1 that nothing is bound to right now (for `--coap`).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
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

impl Running {
    /// Spawns `serve` (`cmd`, already given `--http http`) and waits, at most 20 s, until its
    /// admin API at `http` (`127.0.0.1:PORT`) accepts connections.
    pub fn start(mut cmd: std::process::Command, http: &str) -> Running {
        let child = cmd.spawn().expect("spawn lwm2m-server");
        // Killed by the guard if it never comes up.
        let running = Running {
            child,
            http: format!("http://{http}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(http).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not come up at {http}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        running
    }
}

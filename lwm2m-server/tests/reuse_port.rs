//! `serve --reuse-port`: the CoAP socket is bound with SO_REUSEPORT, so several servers can share
//! one CoAP address; without it the second bind fails and `serve` says why. (Only the socket
//! option: sharing the servers' state is the PostgreSQL store's work.)

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lwm2m_server::coap::driver::{bind_udp, bind_udp_with};

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");

#[tokio::test]
async fn with_reuse_port_two_sockets_share_a_port_and_without_it_the_second_bind_fails() {
    let first = bind_udp_with("127.0.0.1:0", true).await.unwrap();
    let addr = first.local_addr().unwrap().to_string();
    let second = bind_udp_with(&addr, true).await.unwrap();
    assert_eq!(second.local_addr().unwrap(), first.local_addr().unwrap());
    // Both receive: the kernel spreads senders by a hash of their address; a few senders from
    // different ports reach at least the sockets they hash to, and nothing is lost.
    let mut senders = Vec::new();
    for _ in 0..32 {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(b"hello", &addr).await.unwrap();
        senders.push(s);
    }
    let mut got = 0;
    let mut buf = [0u8; 16];
    for sock in [&first, &second] {
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await
        {
            assert_eq!(&buf[..n], b"hello");
            got += 1;
        }
    }
    assert_eq!(got, 32);

    let taken = bind_udp("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = bind_udp(&addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    // SO_REUSEPORT must be on every socket sharing the port.
    let err = bind_udp_with(&addr, true).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, coap: SocketAddr, reuse_port: bool) -> (Running, String) {
    let http = format!("127.0.0.1:{}", free_port(false));
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--coap", &coap.to_string(), "--http", &http])
        .arg("--data")
        .arg(data)
        .args(["--admin-token", "t"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if reuse_port {
        cmd.arg("--reuse-port");
    }
    (Running(cmd.spawn().unwrap()), http)
}

/// Waits until the admin API answers (true) or the process exits (false).
fn up(r: &mut Running, http: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(http).is_ok() {
            return true;
        }
        if r.0.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server neither came up nor exited");
}

#[test]
fn two_serve_processes_share_the_coap_address_with_reuse_port_and_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let coap: SocketAddr = ([127, 0, 0, 1], free_port(true)).into();
    let (mut a, http_a) = serve(&dir.path().join("a"), coap, true);
    assert!(up(&mut a, &http_a), "first server with --reuse-port");
    let (mut b, http_b) = serve(&dir.path().join("b"), coap, true);
    assert!(up(&mut b, &http_b), "second server with --reuse-port");
    drop(b);

    let (mut c, http_c) = serve(&dir.path().join("c"), coap, false);
    assert!(
        !up(&mut c, &http_c),
        "a server without --reuse-port cannot join"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut c.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot bind UDP {coap} for CoAP"))
            && stderr.contains("--reuse-port"),
        "{stderr}"
    );
    assert!(!c.0.wait().unwrap().success());
}

//! A real lwm2m-server for a test: CoAP on an ephemeral UDP port of 127.0.0.1, the admin HTTP
//! API (and dashboard) on an ephemeral TCP port, its data in a tempdir, and a fresh signing key it
//! trusts for SUIT releases. Job, device-management and campaign timeouts are short, so that a
//! test that goes wrong fails in seconds; a test changes anything in the closure it passes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lwm2m_server::clock::SystemClock;
use lwm2m_server::jobs::JobView;
use lwm2m_server::server::{Server, ServerConfig};
use p256::ecdsa::{SigningKey, VerifyingKey};
use serde_json::Value;
use suit_manifest::TrustAnchor;

use crate::http::{self, Reply};
use crate::{release, wait};

/// The admin token of every test server.
pub const TOKEN: &str = "testkit-admin-token";
/// Largest upload the admin API takes (releases).
pub const MAX_UPLOAD: usize = 8 << 20;

/// A running server and what a test needs to reach it. Dropping it kills the server.
pub struct TestServer {
    pub server: Arc<Server>,
    /// The key the server trusts; [`TestServer::add_release`] signs with it.
    pub key: SigningKey,
    /// The admin API's base, `http://127.0.0.1:PORT`.
    pub http: String,
    dir: tempfile::TempDir,
}

/// The timing of a test with sleeping devices ([`crate::device::Spec::sleepy`]): the server believes
/// a queue-mode client awake 250 ms after it last heard from it, a little less long than the
/// device really is. ACK_TIMEOUT is 200 ms: the device reboots after Update, so a request the server
/// sends while it is off is lost, and the next requests wait behind its retransmissions (one
/// exchange at a time per peer), which then end within seconds instead of 45.
pub fn sleepy_devices(config: &mut ServerConfig) {
    config.registry.awake_window = Duration::from_millis(250);
    config.coap.ack_timeout = Duration::from_millis(200);
}

impl TestServer {
    /// Starts a server on loopback. `tweak` sees the configuration last, just before the start:
    /// the defaults are [`ServerConfig::new`] plus the trusted key and these fast timeouts: job
    /// polling 300 ms, retry delay 100 ms, download timeout 20 s, update timeout 15 s, DM request
    /// timeout 10 s, campaign tick 100 ms.
    pub async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::launch(tweak, false).await
    }

    /// Like [`TestServer::start`], with a `coaps://` endpoint (DTLS PSK) on another ephemeral
    /// port of 127.0.0.1 too, whose address is the base of secured devices' Package URIs.
    pub async fn start_secure(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::launch(tweak, true).await
    }

    /// Like [`TestServer::start`] on a CoAP socket the test bound (e.g. with `SO_REUSEPORT`,
    /// shared by several servers as `serve --reuse-port` nodes).
    pub async fn start_on(
        socket: tokio::net::UdpSocket,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        Self::launch_on(Some(socket), tweak, false).await
    }

    async fn launch(tweak: impl FnOnce(&mut ServerConfig), secure: bool) -> TestServer {
        Self::launch_on(None, tweak, secure).await
    }

    async fn launch_on(
        socket: Option<tokio::net::UdpSocket>,
        tweak: impl FnOnce(&mut ServerConfig),
        secure: bool,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = match socket {
            Some(socket) => socket,
            None => tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind the CoAP socket"),
        };
        let addr = socket.local_addr().expect("bound socket");
        let key = release::key();
        let mut config = ServerConfig::new(dir.path().join("data"), format!("coap://{addr}"));
        config
            .trust
            .push(TrustAnchor::from_key(*key.verifying_key()));
        config.jobs.poll_interval = Duration::from_millis(300);
        config.jobs.retry_delay = Duration::from_millis(100);
        config.jobs.download_timeout = Duration::from_secs(20);
        config.jobs.update_timeout = Duration::from_secs(15);
        config.dm.request_timeout = Duration::from_secs(10);
        config.campaigns.tick = Duration::from_millis(100);
        let dtls = match secure {
            true => {
                let dtls = tokio::net::UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("bind the coaps socket");
                let at = dtls.local_addr().expect("bound socket");
                config.jobs.public_coaps_uri = Some(format!("coaps://{at}"));
                Some(dtls)
            }
            false => None,
        };
        tweak(&mut config);
        let clock = Arc::new(SystemClock);
        let server = match dtls {
            Some(dtls) => Server::start_secure(socket, dtls, config, clock).await,
            None => Server::start(socket, config, clock).await,
        }
        .expect("the server starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the admin port");
        let http = format!("http://{}", listener.local_addr().expect("bound listener"));
        let app = lwm2m_server::api::router(server.clone(), TOKEN, MAX_UPLOAD);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer {
            server,
            key,
            http,
            dir,
        }
    }

    pub fn coap_addr(&self) -> SocketAddr {
        self.server.coap_addr()
    }

    /// The `coaps://` address of a [`TestServer::start_secure`] server.
    pub fn coaps_addr(&self) -> SocketAddr {
        self.server.coaps_addr().expect("started with start_secure")
    }

    /// Provisions `endpoint` with a DTLS PSK through the admin API (`POST /api/devices`).
    pub async fn add_device(&self, endpoint: &str, identity: &str, key: &[u8]) {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let body = serde_json::json!({
            "endpoint": endpoint, "psk_identity": identity, "psk_key": hex
        });
        let (status, answer) = self.api("POST", "/devices", Some(body)).await;
        assert_eq!(status, 201, "provisioning {endpoint}: {answer}");
    }

    /// The public half of [`TestServer::key`], for a device's trust anchor.
    pub fn trust(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// A tempdir that lives as long as the server, for the test's own files. The server's data
    /// is in its `data/`.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server at once ([`Server::kill`]); its data stays until the drop.
    pub fn shutdown(&self) {
        self.server.kill();
    }

    // ---- releases ----

    /// Adds a SUIT release of `image` signed with [`TestServer::key`]: the image next to the
    /// manifest (URI `image`), [`release::VENDOR`] and [`release::CLASS`]. Returns its id.
    pub fn add_release(&self, image: &[u8], sequence: u64, version: &str) -> String {
        let component = release::component(image, "image", version);
        self.add_envelope(&release::envelope_of(&self.key, sequence, component), image)
    }

    /// Adds a SUIT release made by the test (`envelope` and its `image`). Returns its id.
    pub fn add_envelope(&self, envelope: &[u8], image: &[u8]) -> String {
        let (record, _) = self
            .server
            .repo
            .add_suit(envelope, image, 0)
            .expect("the server takes the release");
        record.id
    }

    // ---- waits ----

    /// Waits (at most 10 s) until `endpoint` is registered.
    pub async fn registered(&self, endpoint: &str) {
        let what = format!("{endpoint} to register");
        wait::until(&what, Duration::from_secs(10), async || {
            self.server.registry.get(endpoint).map(|_| ())
        })
        .await
    }

    /// Waits (at most 60 s) until update job `job` is no longer running, and returns it.
    pub async fn finished(&self, job: i64) -> JobView {
        let what = format!("job {job} to finish");
        wait::until(&what, Duration::from_secs(60), async || {
            let view = self.server.jobs.view(job).expect("the store answers")?;
            // Through its JSON form, which the REST API keeps stable.
            let running = serde_json::to_value(&view).ok()?["status"] == "running";
            (!running).then_some(view)
        })
        .await
    }

    // ---- the admin API ----

    /// A REST call on `/api{path}` with the token: the status and the JSON body (`Null` if none).
    pub async fn api(&self, method: &'static str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/api{path}", self.http);
        let reply = http::request(method, &url, Some(TOKEN), body).await;
        (reply.status, reply.json())
    }

    /// A GET of `path` (e.g. `/`, `/api/fleet`) with `token` as the bearer token, if any.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        http::request("GET", &format!("{}{path}", self.http), token, None).await
    }

    /// The server's event stream (`/api/events`), subscribed when this returns. It blocks until
    /// the server answers: call it from a multi-threaded runtime.
    pub fn events(&self) -> std::sync::mpsc::Receiver<Value> {
        http::event_stream(&format!("{}/api/events", self.http), TOKEN)
    }

    /// Runs the admin command line `bin` (`env!("CARGO_BIN_EXE_lwm2m-server")`) with `args`
    /// against this server (OTAFLEET_URL and OTAFLEET_TOKEN set): success, stdout, stderr.
    pub async fn cli(&self, bin: &str, args: &[&str]) -> (bool, String, String) {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(args)
            .env("OTAFLEET_URL", &self.http)
            .env("OTAFLEET_TOKEN", TOKEN);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("the command thread")
            .unwrap_or_else(|e| panic!("cannot run the admin command line: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.kill();
    }
}

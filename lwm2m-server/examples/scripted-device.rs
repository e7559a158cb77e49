//! A scripted LwM2M device for trying the server by hand before the real device (lwm2m-client)
//! exists: it registers, serves Objects 3 and 5, downloads a release when the server writes a
//! Package URI (verifying SUIT manifests with --trust), and installs it when the server executes
//! Update. It is the test double of tests/support/fake_device.rs behind a command line.
//!
//! cargo run -p lwm2m-server --example scripted-device -- --server 127.0.0.1:5683 --endpoint demo-1 \
//!     --trust key.pub.pem --vendor-id acme.example --class-id sensor-rev-b

#[allow(dead_code)]
#[path = "../tests/support/fake_device.rs"]
mod fake_device;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fake_device::{DeviceConfig, FakeDevice};

#[derive(Parser)]
struct Args {
    /// The server's CoAP address.
    #[arg(long, default_value = "127.0.0.1:5683")]
    server: SocketAddr,
    #[arg(long)]
    endpoint: String,
    /// Public key SUIT manifests must be signed with; without it the device takes plain images.
    #[arg(long)]
    trust: Option<PathBuf>,
    /// Vendor (UUID or name, as `suit create` takes it).
    #[arg(long, default_value = "acme.example")]
    vendor_id: String,
    /// Class (UUID or name).
    #[arg(long, default_value = "sensor-rev-b")]
    class_id: String,
    /// The firmware version it starts with.
    #[arg(long, default_value = "1.0.0")]
    version: String,
    /// Its stored anti-rollback sequence number.
    #[arg(long, default_value_t = 0)]
    sequence: u64,
    /// Register in queue mode (asleep between Updates).
    #[arg(long)]
    queue_mode: bool,
    /// Block size for downloads.
    #[arg(long, default_value_t = 64)]
    block_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let trust = match &a.trust {
        Some(p) => {
            let key =
                suit_manifest::keyfile::verifying_key_from_text(&std::fs::read_to_string(p)?)?;
            Some(suit_manifest::TrustAnchor::from_key(key))
        }
        None => None,
    };
    let vendor = suit_manifest::builder::uuid_for(&a.vendor_id, None);
    let class = suit_manifest::builder::uuid_for(&a.class_id, Some(&vendor));
    let dev = FakeDevice::start(DeviceConfig {
        trust,
        vendor_id: vendor,
        class_id: class,
        installed_version: a.version.clone(),
        sequence: a.sequence,
        queue_mode: a.queue_mode,
        block_size: a.block_size,
        max_package_size: 16 << 20,
        update_interval: Duration::from_secs(if a.queue_mode { 20 } else { 30 }),
        ..DeviceConfig::new(&a.endpoint, a.server)
    })
    .await;
    println!(
        "{} registering with {} (version {})",
        a.endpoint, a.server, a.version
    );
    let mut last = String::new();
    loop {
        let now = format!(
            "state {:?}, result {:?}, version {}",
            dev.state(),
            dev.result(),
            dev.installed_version()
        );
        if now != last {
            println!("{}: {now}", a.endpoint);
            last = now;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

//! `sim-network demo`: the whole product in one command. A vendor signing key is generated, a
//! release is built and signed with suit-manifest, lwm2m-server starts on its defaults (SQLite store
//! and firmware files in a data dir), and 50 devices on a lossy 3-hop Thread mesh update to it
//! while a progress bar runs. Everything it made stays in the output directory to look at.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as WallInstant};

use anyhow::{Context, Result};

use super::fleet::{self, FleetReport, FleetRun};
use super::release::{Firmware, Release};
use super::world::{World, WorldConfig};
use crate::model::{Backhaul, LinkConfig};

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub dir: PathBuf,
    pub devices: usize,
    pub link: LinkConfig,
    pub image_size: usize,
    pub seed: u64,
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the demo; the report says whether every device runs the new image.
pub fn run(cfg: &DemoConfig) -> Result<FleetReport> {
    let wall = WallInstant::now();
    let (firmware, release) = prepare(cfg)?;
    run_with(cfg, firmware, release, wall)
}

/// Steps 1 and 2, whatever the network: a fresh output directory, the vendor key, and the signed
/// release 2.0.0 (checked here as a device would).
pub fn prepare(cfg: &DemoConfig) -> Result<(Firmware, Release)> {
    if cfg.dir.exists() {
        std::fs::remove_dir_all(&cfg.dir)
            .with_context(|| format!("cannot clear {} from an earlier run", cfg.dir.display()))?;
    }
    std::fs::create_dir_all(&cfg.dir)
        .with_context(|| format!("cannot create {}", cfg.dir.display()))?;

    println!("1. vendor signing key (ES256, P-256)");
    let key = suit_manifest::keyfile::generate().map_err(|e| anyhow::anyhow!("keygen: {e}"))?;
    write(
        &cfg.dir.join("vendor-key.pem"),
        suit_manifest::keyfile::signing_key_to_pem(&key).map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    write(
        &cfg.dir.join("vendor-key.pub.pem"),
        suit_manifest::keyfile::verifying_key_to_pem(key.verifying_key())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    println!("   {}", cfg.dir.join("vendor-key.pem").display());

    let firmware = Firmware::with_vendor_key(key, cfg.seed, cfg.image_size)?;
    let release = firmware.release("2.0.0", 2, cfg.image_size, None)?;
    write(&cfg.dir.join("image-2.0.0.bin"), &release.image)?;
    write(&cfg.dir.join("release-2.0.0.suit"), &release.envelope)?;
    // The device would refuse anything that does not verify: check it here as well.
    let anchor = suit_manifest::TrustAnchor::from_key(*firmware.vendor_key.verifying_key());
    suit_manifest::verify(&release.envelope, &[anchor])
        .map_err(|e| anyhow::anyhow!("the release does not verify: {e:?}"))?;
    println!(
        "2. signed release 2.0.0: {} B image, {} B SUIT envelope (sequence 2, ES256) in {}",
        release.image.len(),
        release.envelope.len(),
        cfg.dir.display()
    );
    Ok((firmware, release))
}

fn run_with(
    cfg: &DemoConfig,
    firmware: Firmware,
    release: Release,
    wall: WallInstant,
) -> Result<FleetReport> {
    let data_dir = cfg.dir.join("server-data");
    let world_cfg = WorldConfig {
        devices: cfg.devices,
        mesh_size: cfg.devices.max(1),
        link: cfg.link,
        backhaul: Backhaul::default(),
        image_size: cfg.image_size,
        seed: cfg.seed,
        data_dir: Some(data_dir.clone()),
        ..WorldConfig::default()
    };
    println!(
        "3. lwm2m-server with its embedded store in {} (SQLite + firmware files)",
        data_dir.display()
    );
    println!(
        "4. {} devices running 1.0.0 on one Thread mesh to the border router ({}); virtual time",
        cfg.devices,
        cfg.link.summary()
    );
    let run = FleetRun {
        world: world_cfg.clone(),
        time_limit: Duration::from_secs(12 * 3600),
        progress: true,
        update: fleet::UpdateKind::Full,
        // As an operator would: 50 devices downloading at once saturate one mesh's air.
        per_mesh: fleet::DEFAULT_PER_MESH,
    };
    super::world::block_on_seeded(cfg.seed, async {
        let world = World::start(world_cfg, firmware).await?;
        println!(
            "5. updating every device to 2.0.0 (a campaign, {} downloading at once)",
            fleet::DEFAULT_PER_MESH
        );
        fleet::update(&world, &fleet::Rollout::Full(release), &run, wall).await
    })?
}

//! The fleet runner and the demo as users run them: same seed, same run (the whole system, not
//! only the link model, is reproducible); `sim-network fleet --json` reports every device; the demo
//! leaves its key, release and server store behind and reports all devices updated; the link
//! options are documented in `--help` and refused when wrong.

use std::process::{Command, Output};
use std::time::Duration;

use sim_network::model::{LinkConfig, LossModel};
use sim_network::sim::fleet::{self, FleetRun};
use sim_network::sim::world::WorldConfig;

/// Runs `sim-network` with `args`; its stdout, after checking that it exited 0.
fn sim_network_ok(args: &[&str]) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_sim-network"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn small_fleet(seed: u64) -> serde_json::Value {
    let run = FleetRun {
        world: WorldConfig {
            devices: 12,
            mesh_size: 6,
            link: LinkConfig {
                loss: LossModel::Bernoulli { p: 0.1 },
                hops: 3,
                ..LinkConfig::default()
            },
            image_size: 8 * 1024,
            seed,
            ..WorldConfig::default()
        },
        time_limit: Duration::from_secs(12 * 3600),
        progress: false,
        update: fleet::UpdateKind::Full,
        per_mesh: 0,
    };
    let report = fleet::run(&run).unwrap();
    assert!(report.all_updated(), "seed {seed}: {report}");
    let mut v = serde_json::to_value(&report).unwrap();
    v.as_object_mut().unwrap().remove("wall_time_s");
    v
}

#[test]
fn the_same_seed_gives_the_same_fleet_run() {
    let a = small_fleet(3);
    let b = small_fleet(3);
    assert_eq!(a, b, "two runs of seed 3 differ");
    let c = small_fleet(4);
    assert_ne!(a["datagrams_up"], serde_json::Value::Null);
    assert_ne!(a, c, "seeds 3 and 4 gave the same run");
}

#[test]
fn fleet_command_reports_every_device_as_json() {
    let stdout = sim_network_ok(&[
        "fleet",
        "--devices",
        "20",
        "--mesh-size",
        "10",
        "--loss",
        "0.1",
        "--hops",
        "3",
        "--image-size",
        "8KiB",
        "--seed",
        "9",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["updated"], 20);
    assert_eq!(v["meshes"], 2);
    assert!(v["virtual_time_s"].as_f64().unwrap() > 0.0);
    assert!(v["frames_lost"].as_u64().unwrap() > 0);
    // MAC acknowledgements by default: lost frames were retried by the MAC.
    assert!(
        v["model"].as_str().unwrap().contains("MAC ACK"),
        "{}",
        v["model"]
    );
    assert!(v["mac_retries"].as_u64().unwrap() >= v["frames_lost"].as_u64().unwrap() / 2);
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 20);
    for d in devices {
        assert_eq!(d["outcome"], "updated", "{d}");
        assert_eq!(d["running_version"], "2.0.0", "{d}");
        assert_eq!(d["image_verified"], true, "{d}");
        assert_eq!(d["update_result"], 1, "{d}");
    }
}

#[test]
fn fleet_command_refuses_bad_arguments_with_a_hint() {
    let out = Command::new(env!("CARGO_BIN_EXE_sim-network"))
        .args(["fleet", "--devices", "2", "--image-size", "12XB"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KiB or MiB"));
    let out = Command::new(env!("CARGO_BIN_EXE_sim-network"))
        .args(["fleet", "--devices", "2", "--block-size", "100"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("power of two"));
}

#[test]
fn link_options_are_documented_and_checked() {
    let help = sim_network_ok(&["proxy", "--help"]);
    for option in [
        "--loss-model",
        "datagram",
        "--mac",
        "raw",
        "--mac-retries",
        "--no-airtime",
    ] {
        assert!(
            help.contains(option),
            "proxy --help lacks {option}:
{help}"
        );
    }
    assert!(sim_network_ok(&["fleet", "--help"]).contains("--loss-model"));
    for bad in [
        ["--loss-model", "packet"],
        ["--mac", "csma"],
        ["--mac-retries", "300"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sim-network"))
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "127.0.0.1:9",
            ])
            .args(bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(bad[0]),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn demo_updates_every_device_and_keeps_its_artefacts() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let stdout = sim_network_ok(&[
        "demo",
        "--devices",
        "10",
        "--image-size",
        "8KiB",
        "--dir",
        &dir_arg,
    ]);
    assert!(stdout.contains("updated: 10/10 devices"), "{stdout}");
    for f in [
        "vendor-key.pem",
        "vendor-key.pub.pem",
        "release-2.0.0.suit",
        "image-2.0.0.bin",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    // The release verifies with the public key the demo wrote, independently of the demo.
    let key = std::fs::read_to_string(dir.path().join("vendor-key.pub.pem")).unwrap();
    let key = suit_manifest::keyfile::verifying_key_from_text(&key).unwrap();
    let envelope = std::fs::read(dir.path().join("release-2.0.0.suit")).unwrap();
    suit_manifest::verify(&envelope, &[suit_manifest::TrustAnchor::from_key(key)]).unwrap();
    // The server kept its state in its embedded store.
    let data = dir.path().join("server-data");
    assert!(
        std::fs::read_dir(&data)
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".db") }),
        "no SQLite database in {}",
        data.display()
    );
}

/// `per_mesh` runs the update as a campaign: every device is updated, and no mesh ever has more
/// than that many devices between the start and the end of their update (the server's own
/// record of both), while the limit is reached.
#[test]
fn a_per_mesh_limit_updates_everyone_with_at_most_that_many_downloads_per_mesh() {
    let run = FleetRun {
        world: WorldConfig {
            devices: 12,
            mesh_size: 6,
            link: LinkConfig {
                loss: LossModel::Bernoulli { p: 0.05 },
                hops: 2,
                ..LinkConfig::default()
            },
            image_size: 4 * 1024,
            seed: 3,
            ..WorldConfig::default()
        },
        time_limit: Duration::from_secs(12 * 3600),
        progress: false,
        update: fleet::UpdateKind::Full,
        per_mesh: 2,
    };
    let report = fleet::run(&run).unwrap();
    assert!(report.all_updated(), "{report}");
    assert_eq!(report.per_mesh, 2);
    for mesh in 0..report.meshes {
        let spans: Vec<(f64, f64)> = report
            .devices
            .iter()
            .filter(|d| d.mesh == mesh)
            .map(|d| (d.started_at_s.unwrap(), d.finished_at_s.unwrap()))
            .collect();
        assert_eq!(spans.len(), 6);
        // Devices updating at each start: the most at once in this mesh.
        let most = spans
            .iter()
            .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
            .max()
            .unwrap();
        assert_eq!(most, 2, "mesh {mesh}: {spans:?}");
    }
}

//! `lwm2m-client swarm`: the names, classes and threads it gives its devices, and a swarm of 12
//! devices in one process against the real lwm2m-server over UDP on loopback: each registers from
//! its own socket with its own flash file, one update job reaches them all, the ten of
//! `--class-id` install the release and report 2.0.0, and the two that `--class-id-for` builds for
//! another class refuse it with Update Result 6.
#![cfg(feature = "std")]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lwm2m_client::swarm::{ClassRule, class_for, endpoint_names, thread_of};
use lwm2m_core::glob::matches as glob_match;
use suit_manifest::builder::{ComponentSpec, uuid_for};
use testkit::TestServer;
use testkit::release::{envelope_of, firmware};

#[test]
fn globs_match_like_the_campaign_targets() {
    assert!(glob_match("sw-2??", "sw-205"));
    assert!(!glob_match("sw-2??", "sw-2050"));
    assert!(!glob_match("sw-2??", "sw-105"));
    assert!(glob_match("*", ""));
    assert!(glob_match("sw-*", "sw-"));
    assert!(glob_match("*-1*9", "sw-1-19"));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "axxbyy"));
    assert!(glob_match("sw-00?", "sw-007"));
    assert!(!glob_match("sw-00?", "sw-07"));
    assert!(glob_match("é?", "éx"));
}

#[test]
fn class_rules_parse_and_the_first_match_wins() {
    let rules = [
        ClassRule::parse("sw-1?=rev-c").unwrap(),
        ClassRule::parse("sw-*=rev-d=x").unwrap(),
    ];
    assert_eq!(rules[1].class, "rev-d=x");
    assert_eq!(class_for(&rules, "sw-12", "rev-b"), "rev-c");
    assert_eq!(class_for(&rules, "sw-02", "rev-b"), "rev-d=x");
    assert_eq!(class_for(&rules, "other", "rev-b"), "rev-b");
    assert_eq!(class_for(&[], "sw-12", "rev-b"), "rev-b");
    for bad in ["sw-1?", "=rev-c", "sw-1?=", ""] {
        let e = ClassRule::parse(bad).unwrap_err();
        assert!(e.contains("PATTERN=CLASS"), "{e}");
    }
}

#[test]
fn names_are_zero_padded_so_name_order_is_index_order() {
    assert_eq!(endpoint_names("sw-", 1), ["sw-0"]);
    assert_eq!(endpoint_names("sw-", 10).last().unwrap(), "sw-9");
    let names = endpoint_names("sw-", 200);
    assert_eq!(names.first().unwrap(), "sw-000");
    assert_eq!(names.last().unwrap(), "sw-199");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, names);
    assert_eq!(endpoint_names("d", 1001).last().unwrap(), "d1000");
    assert!(endpoint_names("x", 0).is_empty());
    assert_eq!(
        (0..5).map(|i| thread_of(i, 2)).collect::<Vec<_>>(),
        [0, 1, 0, 1, 0]
    );
    assert_eq!(thread_of(7, 0), 0);
}

/// Kills the swarm process when the test ends, passed or not.
struct Swarm(Child);

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_updates_over_udp_and_its_other_class_refuses_with_result_6() {
    let s = TestServer::start(|c| c.jobs.update_timeout = Duration::from_secs(20)).await;
    let (server, addr, dir) = (&s.server, s.coap_addr(), s.scratch());
    let pub_pem = dir.join("key.pub.pem");
    std::fs::write(
        &pub_pem,
        suit_manifest::keyfile::verifying_key_to_pem(&s.trust()).unwrap(),
    )
    .unwrap();

    let flash_dir = dir.join("flash");
    let log = std::fs::File::create(dir.join("swarm.log")).unwrap();
    let _swarm = Swarm(
        Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
            .args([
                "swarm",
                "--count",
                "12",
                "--endpoint-prefix",
                "sw-",
                "--dir",
            ])
            .arg(&flash_dir)
            .args(["--server", &format!("coap://{addr}"), "--trust"])
            .arg(&pub_pem)
            .args(["--vendor-id", "acme.example", "--class-id", "sensor-rev-b"])
            .args([
                "--class-id-for",
                "sw-1?=sensor-rev-c",
                "--block-size",
                "256",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(dir.join("swarm.log")).unwrap_or_default();
    let names = endpoint_names("sw-", 12);
    let mut registered = Vec::new();
    for _ in 0..200 {
        registered = names
            .iter()
            .filter_map(|ep| server.registry.get(ep))
            .collect();
        if registered.len() == names.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        registered.len(),
        12,
        "not all registered; swarm log:\n{}",
        read_log()
    );
    let ports: HashSet<_> = registered.iter().map(|r| r.address).collect();
    assert_eq!(ports.len(), 12, "each device has its own socket");
    for ep in &names {
        assert!(flash_dir.join(format!("{ep}.img")).is_file(), "{ep}.img");
    }

    // A release for acme.example / sensor-rev-b, as `suit create` names them.
    let vendor = uuid_for("acme.example", None);
    let image = firmware("2.0.0", 4096);
    let mut comp =
        ComponentSpec::for_image(&image, vendor, uuid_for("sensor-rev-b", Some(&vendor)));
    comp.uri = Some("image".into());
    comp.version = Some("2.0.0".into());
    let rel = s.add_envelope(&envelope_of(&s.key, 2, comp), &image);
    let job = server.jobs.start(&rel, &names).unwrap();
    let view = s.finished(job).await;
    for d in &view.devices {
        if d.endpoint.starts_with("sw-1") {
            assert_eq!(d.status, "failed", "{d:?}");
            assert_eq!(d.fw_result, Some(6), "{d:?}");
        } else {
            assert_eq!(d.status, "succeeded", "{d:?}\nswarm log:\n{}", read_log());
            assert_eq!(d.pkg_version.as_deref(), Some("2.0.0"), "{d:?}");
        }
    }
    assert_eq!(view.devices.len(), 12);
    let text = read_log();
    assert!(
        text.contains("swarm: 12 devices (sw-00 .. sw-11, 2 of another class)"),
        "{text}"
    );
    assert!(text.contains("sw-03: 2.0.0 confirmed"), "{text}");
    s.shutdown();
}

//! Delta releases on the server (issue 15), over real UDP on loopback: `firmware add M PATCH`
//! hosts a delta only when its patch checks out (and refuses a patch that does not make the new
//! image from the precursor, or the new image given in place of the patch); a job sends a device
//! the delta whose precursor is the image its reported version names, the full release
//! otherwise; and a device that refuses the delta gets the full image by itself, once, with the
//! audit trail saying so. The device is the real engine (testkit's `Device`): it applies a delta
//! whose precursor is its active image and refuses any other with Update Result 6 before
//! fetching a byte.

use std::time::Duration;

use delta_patch::Compression;
use lwm2m_client::image::HEADER_LEN;
use lwm2m_server::device_info::ReadDeviceInfo;
use suit_manifest::builder::{DeltaSpec, ManifestSpec};
use testkit::TestServer;
use testkit::device::{self, Device, Spec};
use testkit::release::{self, firmware};

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");

/// A signed delta manifest for `new` made from `old` (the patch next to it, URI `image`).
fn delta_envelope(s: &TestServer, old: &[u8], new: &[u8], sequence: u64, version: &str) -> Vec<u8> {
    let mut spec = ManifestSpec::new(sequence, release::component(new, "image", version));
    spec.delta = Some(DeltaSpec::detools_from(old));
    suit_manifest::builder::signed_envelope(&spec, &s.key, suit_manifest::Algorithm::Es256)
        .expect("a delta manifest builds")
}

/// `old` rebuilt as `version` with a few bytes changed: a typical rebuild, so the patch is small.
fn rebuild(old: &[u8], version: &str) -> Vec<u8> {
    let mut new = firmware(version, old.len())[..HEADER_LEN].to_vec();
    new.extend_from_slice(&old[HEADER_LEN..]);
    new[HEADER_LEN + 500..HEADER_LEN + 560].fill(0x5a);
    new
}

fn write(s: &TestServer, name: &str, bytes: &[u8]) -> String {
    let path = s.scratch().join(name);
    std::fs::write(&path, bytes).expect("write a test file");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_add_hosts_a_checked_delta_and_refuses_a_wrong_patch_or_the_image_itself() {
    let s = TestServer::start(|_| {}).await;
    let v1 = firmware("1.0.0", 6000);
    let v2 = rebuild(&v1, "2.0.0");
    let full1 = s.add_release(&v1, 1, "1.0.0");
    let env = delta_envelope(&s, &v1, &v2, 2, "2.0.0");
    let patch = delta_patch::create_patch(&v1, &v2, Compression::HEATSHRINK);
    assert!(patch.len() < v2.len() / 10, "patch {} bytes", patch.len());
    let (m, p) = (write(&s, "d.suit", &env), write(&s, "d.patch", &patch));

    // A patch made from another image than the precursor does not rebuild v2 from v1.
    let mut other = v1.clone();
    other[HEADER_LEN + 100..HEADER_LEN + 200].fill(0);
    let wrong = delta_patch::create_patch(&other, &v2, Compression::HEATSHRINK);
    let wp = write(&s, "wrong.patch", &wrong);
    let (ok, _, err) = s.cli(BIN, &["firmware", "add", &m, &wp]).await;
    assert!(!ok);
    assert!(
        err.contains("does not give the manifest's new image") && err.contains(&full1),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // The new image given where the patch belongs.
    let img = write(&s, "v2.bin", &v2);
    let (ok, _, err) = s.cli(BIN, &["firmware", "add", &m, &img]).await;
    assert!(!ok);
    assert!(err.contains("the new image itself, not a patch"), "{err}");
    // Another image (not v2, not a patch) is no detools patch at all.
    let junk = write(&s, "junk.bin", &firmware("9.9.9", 3000));
    let (ok, _, err) = s.cli(BIN, &["firmware", "add", &m, &junk]).await;
    assert!(!ok && err.contains("delta release refused"), "{err}");
    assert_eq!(
        s.server.store.releases().unwrap().len(),
        1,
        "nothing stored"
    );

    // The right patch is hosted as a delta release that knows its precursor and new image.
    let (ok, out, err) = s.cli(BIN, &["firmware", "add", &m, &p]).await;
    assert!(ok, "{err}");
    assert!(out.contains("added release"), "{out}");
    assert!(
        out.contains(&format!(
            "delta from 1.0.0 ({}), patch {} of {} bytes",
            &full1,
            patch.len(),
            v2.len()
        )),
        "{out}"
    );
    let (status, list) = s.api("GET", "/releases", None).await;
    assert_eq!(status, 200);
    let d = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "delta")
        .expect("a delta release")
        .clone();
    assert_eq!(d["version"], "2.0.0");
    assert_eq!(d["precursor_version"], "1.0.0");
    assert_eq!(d["image_size"], patch.len() as u64);
    assert_eq!(d["new_image_size"], v2.len() as u64);
    assert_eq!(d["precursor_size"], v1.len() as u64);
    // It serves the patch (the bytes its manifest's relative URI names).
    let files = s.server.repo.files(d["id"].as_str().unwrap()).unwrap();
    assert_eq!(files.image_len(), patch.len() as u64);
    let (ok, out, _) = s.cli(BIN, &["firmware", "list"]).await;
    assert!(
        ok && out.contains("delta") && out.contains("delta from 1.0.0"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_whose_precursor_the_server_lacks_is_checked_for_framing_only() {
    let s = TestServer::start(|_| {}).await;
    let v1 = firmware("1.0.0", 3000);
    let v2 = rebuild(&v1, "2.0.0");
    let env = delta_envelope(&s, &v1, &v2, 2, "2.0.0");
    // A cut patch is refused even without the precursor.
    let patch = delta_patch::create_patch(&v1, &v2, Compression::None);
    let cut = &patch[..patch.len() - 10];
    let err = s
        .server
        .repo
        .add_suit(&env, cut, 0)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("delta release refused: "), "{err}");
    let (rec, new) = s.server.repo.add_suit(&env, &patch, 0).unwrap();
    assert!(new && rec.is_delta());
    let (_, shown) = s.api("GET", &format!("/releases/{}", rec.id), None).await;
    assert_eq!(shown["precursor_version"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_sends_the_delta_by_reported_version_and_falls_back_to_the_full_image() {
    let s = TestServer::start(|c| c.read_device_info = ReadDeviceInfo::OnRegister).await;
    // The server's release 1.0.0 is not the image the device really runs (its factory image),
    // so the device refuses the delta made from it (the engine checks the precursor), as a
    // device would whose image differs from what its version says.
    let v1 = firmware("1.0.0", 5000);
    let v2 = rebuild(&v1, "2.0.0");
    s.add_release(&v1, 1, "1.0.0");
    let full2 = s.add_release(&v2, 5, "2.0.0");
    let patch = delta_patch::create_patch(&v1, &v2, Compression::HEATSHRINK);
    let delta = s.add_envelope(&delta_envelope(&s, &v1, &v2, 5, "2.0.0"), &patch);

    // dev-a runs 1.0.0 (the factory version): the delta's precursor. dev-b runs 0.9.0: no
    // release of it, so the full image.
    let spec = |ep: &str| Spec::new(device::config(ep, s.coap_addr(), &s.trust()));
    let a = Device::start(spec("dev-a")).await;
    let b = Device::start(Spec {
        factory_version: "0.9.0".into(),
        ..spec("dev-b")
    })
    .await;
    s.registered("dev-a").await;
    s.registered("dev-b").await;
    // The job is given the delta; what each device gets is the job's choice.
    let job = s
        .server
        .jobs
        .start(&delta, &["dev-a".into(), "dev-b".into()])
        .unwrap();
    let v = tokio::time::timeout(Duration::from_secs(90), s.finished(job))
        .await
        .expect("the job ends");
    assert_eq!(v.status.as_str(), "succeeded", "{v:?}");
    assert_eq!(a.installed_version(), "2.0.0");
    assert_eq!(b.installed_version(), "2.0.0");

    let audit = s.server.store.job_audit(job).unwrap();
    let lines = |ep: &str| -> Vec<(String, String)> {
        audit
            .iter()
            .filter(|l| l.endpoint.as_deref() == Some(ep))
            .map(|l| (l.event.clone(), l.detail.clone().unwrap_or_default()))
            .collect()
    };
    let sent = format!(
        "delta sent ({} bytes, saves {} bytes vs full)",
        patch.len(),
        v2.len() - patch.len()
    );
    let la = lines("dev-a");
    let at_delta = la
        .iter()
        .position(|(e, d)| e == "delta-sent" && *d == sent)
        .unwrap_or_else(|| panic!("no {sent:?} in {la:?}"));
    let at_fallback = la
        .iter()
        .position(|(e, d)| e == "delta-fallback" && d.starts_with("fell back to full image: "))
        .unwrap_or_else(|| panic!("no fallback in {la:?}"));
    assert!(at_delta < at_fallback);
    assert!(la[at_fallback].1.contains("(Result 6)"), "{la:?}");
    // No failure on the way: the fallback is not a failed attempt.
    assert!(
        !la.iter().any(|(e, _)| e == "failed" || e == "retry"),
        "{la:?}"
    );
    // dev-a asked for the delta's manifest, then the full release's.
    let uris: Vec<String> = a.transfers().into_iter().map(|t| t.uri).collect();
    let first_delta = uris
        .iter()
        .position(|u| u.contains(&format!("/fw/{delta}/")));
    let first_full = uris
        .iter()
        .position(|u| u.contains(&format!("/fw/{full2}/")));
    assert!(
        matches!((first_delta, first_full), (Some(d), Some(f)) if d < f),
        "{uris:?}"
    );
    // dev-b never saw the delta.
    let lb = lines("dev-b");
    assert!(!lb.iter().any(|(e, _)| e.starts_with("delta")), "{lb:?}");
    assert!(!b.transfers().iter().any(|t| t.uri.contains(&delta)));

    // The REST job status says what each device was sent.
    let (status, j) = s.api("GET", &format!("/jobs/{job}"), None).await;
    assert_eq!(status, 200);
    let dev = |ep: &str| {
        j["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["endpoint"] == ep)
            .unwrap()
            .clone()
    };
    let (da, db) = (dev("dev-a"), dev("dev-b"));
    assert_eq!(
        (da["sent"].as_str(), da["sent_release_id"].as_str()),
        (Some("full"), Some(full2.as_str()))
    );
    assert!(
        da["fallback"].as_str().unwrap().contains("Result 6"),
        "{da}"
    );
    assert_eq!(da["attempts"], 0);
    // So does the command line.
    let (ok, out, _) = s.cli(BIN, &["update", "status", &job.to_string()]).await;
    assert!(
        ok && out.contains("full image after the delta: Download failed"),
        "{out}"
    );
    assert_eq!(
        (db["sent"].as_str(), db["fallback"].is_null()),
        (Some("full"), true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_to_a_version_tries_the_delta_and_its_fallback_is_no_failure() {
    let s = TestServer::start(|_| {}).await;
    let v1 = firmware("1.0.0", 4000);
    let v2 = rebuild(&v1, "2.0.0");
    s.add_release(&v1, 1, "1.0.0");
    let full2 = s.add_release(&v2, 3, "2.0.0");
    let patch = delta_patch::create_patch(&v1, &v2, Compression::HEATSHRINK);
    let delta = s.add_envelope(&delta_envelope(&s, &v1, &v2, 3, "2.0.0"), &patch);
    // Without the device-info cache (read off), the job reads /3/0/3 itself.
    let dev = Device::start(Spec::new(device::config("c-1", s.coap_addr(), &s.trust()))).await;
    s.registered("c-1").await;
    let (code, c) = s
        .api(
            "POST",
            "/campaigns",
            Some(serde_json::json!({
                "release": "2.0.0", "target": { "endpoints": ["c-1"] }, "failure_threshold": 0.0,
                "waves": [100], "soak_s": 0
            })),
        )
        .await;
    assert_eq!(code, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    // The version names the full release of 2.0.0.
    let (_, shown) = s.api("GET", &format!("/campaigns/{id}"), None).await;
    assert_eq!(shown["release_id"], full2.as_str());
    let v = testkit::wait::until("the campaign to end", Duration::from_secs(60), async || {
        let (_, v) = s.api("GET", &format!("/campaigns/{id}"), None).await;
        let done = matches!(
            v["state"].as_str(),
            Some("completed" | "halted" | "aborted")
        );
        (done && v["totals"]["running"] == 0).then_some(v)
    })
    .await;
    // A failure would have halted it at threshold 0.
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(
        (
            v["totals"]["succeeded"].as_u64(),
            v["totals"]["failed"].as_u64()
        ),
        (Some(1), Some(0)),
        "{v}"
    );
    assert_eq!(dev.installed_version(), "2.0.0");
    let jobs = s.server.jobs.list().unwrap();
    let trail = s.server.store.job_audit(jobs[0].id).unwrap();
    assert!(trail.iter().any(|l| l.event == "delta-sent"), "{trail:?}");
    assert!(
        trail.iter().any(|l| l.event == "delta-fallback"),
        "{trail:?}"
    );
    assert!(dev.transfers().iter().any(|t| t.uri.contains(&delta)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_a_device_last_installed_names_its_image_and_the_engine_applies_the_delta() {
    let s = TestServer::start(|_| {}).await;
    let v1 = firmware("1.0.0", 4000);
    let v2 = rebuild(&v1, "2.0.0");
    let mut v2b = v2.clone();
    v2b[HEADER_LEN + 900] ^= 0xff;
    let v3 = rebuild(&v2, "3.0.0");
    let full2 = s.add_release(&v2, 2, "2.0.0");
    // Another build that says 2.0.0 too: the version alone no longer names one image.
    s.add_release(&v2b, 3, "2.0.0");
    let full3 = s.add_release(&v3, 4, "3.0.0");
    let patch = delta_patch::create_patch(&v2, &v3, Compression::HEATSHRINK);
    let delta = s.add_envelope(&delta_envelope(&s, &v2, &v3, 4, "3.0.0"), &patch);
    let dev = Device::start(Spec::new(device::config("s-1", s.coap_addr(), &s.trust()))).await;
    s.registered("s-1").await;
    let first = s.server.jobs.start(&full2, &["s-1".into()]).unwrap();
    assert_eq!(s.finished(first).await.status.as_str(), "succeeded");
    assert_eq!(dev.installed_version(), "2.0.0");
    s.registered("s-1").await;

    let second = s.server.jobs.start("3.0.0", &["s-1".into()]).unwrap();
    let v = s.finished(second).await;
    assert_eq!(v.status.as_str(), "succeeded", "{v:?}");
    assert_eq!(dev.installed_version(), "3.0.0");
    let trail = s.server.store.job_audit(second).unwrap();
    let sent = format!("delta sent ({} bytes,", patch.len());
    assert!(
        trail.iter().any(|l| l.event == "delta-sent"
            && l.detail.as_deref().is_some_and(|d| d.starts_with(&sent))),
        "the delta {delta} was not sent: {trail:?}"
    );
    // The engine applied the delta: no fallback, and the full image of 3.0.0 was never asked for.
    assert!(
        !trail.iter().any(|l| l.event == "delta-fallback"),
        "{trail:?}"
    );
    let uris: Vec<String> = dev.transfers().into_iter().map(|t| t.uri).collect();
    assert!(
        uris.iter().any(|u| u.contains(&format!("/fw/{delta}/"))),
        "{uris:?}"
    );
    assert!(
        !uris.iter().any(|u| u.contains(&format!("/fw/{full3}/"))),
        "{uris:?}"
    );
    let (status, j) = s.api("GET", &format!("/jobs/{second}"), None).await;
    assert_eq!(status, 200);
    let d = &j["devices"][0];
    assert_eq!(
        (d["sent"].as_str(), d["sent_release_id"].as_str()),
        (Some("delta"), Some(delta.as_str())),
        "{d}"
    );
    assert_eq!(
        d["bytes_saved"].as_u64(),
        Some((v3.len() - patch.len()) as u64),
        "{d}"
    );
    assert!(d["fallback"].is_null(), "{d}");
}

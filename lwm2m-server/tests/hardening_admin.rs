//! The admin side's hardening (issue 14), against a real server on loopback and the real
//! `lwm2m-server` binary: unknown ids are 404, the `Bearer` scheme is matched case-insensitively,
//! an oversized upload is 413 and the command line says so, NaN and infinities are refused, and
//! every command survives a reader that closed the pipe.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use testkit::{TOKEN, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_lwm2m-server");

/// A raw call with the given `Authorization` header (none when `None`): the status.
async fn status_with_auth(s: &TestServer, path: &str, auth: Option<String>) -> u16 {
    let url = format!("{}/api{path}", s.http);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut req = agent.get(&url);
        if let Some(a) = auth {
            req = req.header("Authorization", &a);
        }
        req.call().expect("the admin API answers").status().as_u16()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_404_everywhere() {
    let s = TestServer::start(|_| {}).await;
    for (method, path) in [
        ("GET", "/jobs/999/audit"),
        ("GET", "/jobs/999"),
        ("POST", "/jobs/999/cancel"),
        ("GET", "/campaigns/999"),
        ("POST", "/campaigns/999/pause"),
        ("POST", "/campaigns/999/resume"),
        ("POST", "/campaigns/999/abort"),
        ("GET", "/releases/0123456789abcdef"),
        ("GET", "/clients/nobody"),
        ("GET", "/clients/nobody/download"),
        ("GET", "/models/4242"),
    ] {
        let (code, v) = s.api(method, path, None).await;
        assert_eq!(code, 404, "{method} {path}: {v}");
        assert!(v["error"].is_string(), "{method} {path}: {v}");
    }
    // The command line turns it into a one-line error and a failure.
    let (ok, _, err) = s.cli(BIN, &["update", "status", "999"]).await;
    assert!(!ok && err.contains("no job 999"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_nothing_else_passes() {
    let s = TestServer::start(|_| {}).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let code = status_with_auth(&s, "/clients", Some(format!("{scheme} {TOKEN}"))).await;
        assert_eq!(code, 200, "{scheme}");
    }
    // Extra spaces before the token are allowed (RFC 7235's 1*SP).
    assert_eq!(
        status_with_auth(&s, "/clients", Some(format!("Bearer   {TOKEN}"))).await,
        200
    );
    for refused in [
        None,
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer{TOKEN}")),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[1..])),
        Some("Bearer ".to_string()),
        Some(TOKEN.to_string()),
    ] {
        assert_eq!(
            status_with_auth(&s, "/clients", refused.clone()).await,
            401,
            "{refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_is_413_and_the_command_line_says_so() {
    let s = TestServer::start(|_| {}).await;
    let big = s.scratch().join("big.bin");
    std::fs::write(&big, vec![0x5a; testkit::server::MAX_UPLOAD + 4096]).unwrap();
    let (ok, out, err) = s
        .cli(
            BIN,
            &[
                "firmware",
                "add",
                "--plain",
                big.to_str().unwrap(),
                "--version",
                "9.9.9",
            ],
        )
        .await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("larger than this server takes") && err.contains("--max-upload-mib"),
        "{err}"
    );
    assert!(!err.contains("cannot reach"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(s.server.store.releases().unwrap().is_empty());
    // Just under the limit is still taken.
    let fits = s.scratch().join("fits.bin");
    std::fs::write(&fits, vec![0x5a; 1 << 20]).unwrap();
    let (ok, _, err) = s
        .cli(
            BIN,
            &[
                "firmware",
                "add",
                "--plain",
                fits.to_str().unwrap(),
                "--version",
                "9.9.9",
            ],
        )
        .await;
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_and_infinity_are_refused_where_a_number_is_parsed() {
    let s = TestServer::start(|_| {}).await;
    for bad in ["NaN", "nan", "inf", "-inf", "infinity"] {
        let (ok, _, err) = s
            .cli(
                BIN,
                &[
                    "campaign",
                    "create",
                    "--release",
                    "0123456789abcdef",
                    &format!("--threshold={bad}"),
                    "dev-1",
                ],
            )
            .await;
        assert!(!ok && err.contains("not a finite number"), "{bad}: {err}");
    }
    assert!(s.server.store.campaigns().unwrap().is_empty());
    // Over REST, JSON has no NaN; a number too large to be finite is refused too.
    let body =
        r#"{"release":"0123456789abcdef","target":{"endpoints":["d"]},"failure_threshold":1e999}"#;
    let url = format!("{}/api/campaigns", s.http);
    let code = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .post(&url)
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .content_type("application/json")
            .send(body)
            .unwrap()
            .status()
            .as_u16()
    })
    .await
    .unwrap();
    assert_eq!(code, 400);
    // A typed write refuses them as well (the value is checked before anything is sent).
    let (code, v) = s
        .api(
            "POST",
            "/clients/nobody/write/3/0/13",
            Some(json!({ "value": "NaN" })),
        )
        .await;
    assert!(code == 400 || code == 404, "{code} {v}");
}

/// Runs `args` with its standard output a pipe whose reader is already gone: the exit code.
fn run_into_closed_pipe(s: &TestServer, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("OTAFLEET_URL", &s.http)
        .env("OTAFLEET_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the binary");
    // Close the read end before the command has its answer to print.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("the command ends");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_survives_a_closed_pipe() {
    let s = TestServer::start(|_| {}).await;
    let peer = "127.0.0.1:40000".parse().unwrap();
    s.server
        .registry
        .register(peer, &["ep=pipe-1".into()], b"</1/0>,</3/0>,</5/0>")
        .unwrap();
    let release = s.add_release(&testkit::image(2048, 1), 1, "1.1.0");
    let (code, v) = s
        .api(
            "POST",
            "/campaigns",
            Some(json!({ "release": release, "target": { "endpoints": ["pipe-1"] }, "start": false })),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["clients"],
        vec!["clients", "--json"],
        vec!["firmware", "list"],
        vec!["firmware", "list", "--json"],
        vec!["update", "status"],
        vec!["campaign", "list"],
        vec!["campaign", "show", &id],
        vec!["campaign", "show", &id, "--json"],
        vec!["models", "list"],
        vec!["models", "show", "3"],
        vec!["--help"],
        vec!["--version"],
        vec!["completions", "bash"],
    ];
    let s = &s;
    for args in commands {
        let (code, err) = tokio::task::block_in_place(|| run_into_closed_pipe(s, &args));
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

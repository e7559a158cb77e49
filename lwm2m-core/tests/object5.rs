//! Object 5: every (State, Event) pair with its expected outcome written out by hand, the
//! enumerations' wire values, and the Package URI check.

use lwm2m_core::object5::{
    self, DeliveryMethod, Event, OutOfRange, Outcome, ProtocolSupport, Refusal, Scheme, Severity,
    Staged, State, UpdateResult, is_package_reset, transition, validate_package_uri,
};

use Event as E;
use Refusal as X;
use State::{Downloaded as DD, Downloading as DL, Idle as ID, Updating as UP};
use UpdateResult as R;

fn ok(state: State, result: Option<UpdateResult>) -> Result<Outcome, Refusal> {
    Ok(Outcome { state, result })
}

fn failed(n: u8) -> Event {
    E::DownloadFailed(R::try_from(n).unwrap())
}

/// Every row: (state before, event, expected). Source of each expectation: the module table in
/// object5/transition.rs, which cites the Object 5 texts.
fn table() -> Vec<(State, Event, Result<Outcome, Refusal>)> {
    vec![
        // ---- Idle ----
        (ID, E::PackageUriWritten, ok(DL, Some(R::Initial))),
        (ID, E::PackageUriReset, ok(ID, Some(R::Initial))),
        (ID, E::PackageWriteStarted, ok(DL, Some(R::Initial))),
        (ID, E::PackageReset, ok(ID, Some(R::Initial))),
        (ID, E::DownloadComplete, Err(X::UnexpectedEvent)),
        (ID, failed(0), Err(X::UnexpectedEvent)),
        (ID, failed(1), Err(X::UnexpectedEvent)),
        (ID, failed(2), Err(X::UnexpectedEvent)),
        (ID, failed(3), Err(X::UnexpectedEvent)),
        (ID, failed(4), Err(X::UnexpectedEvent)),
        (ID, failed(5), Err(X::UnexpectedEvent)),
        (ID, failed(6), Err(X::UnexpectedEvent)),
        (ID, failed(7), Err(X::UnexpectedEvent)),
        (ID, failed(8), Err(X::UnexpectedEvent)),
        (ID, failed(9), Err(X::UnexpectedEvent)),
        (ID, failed(10), Err(X::UnexpectedEvent)),
        (ID, failed(11), Err(X::UnexpectedEvent)),
        (ID, E::UpdateExecuted, Err(X::NotDownloaded)),
        (ID, E::UpdateDeferred, Err(X::UnexpectedEvent)),
        (ID, E::UpdateSucceeded, Err(X::UnexpectedEvent)),
        (
            ID,
            E::UpdateFailed { package_kept: true },
            Err(X::UnexpectedEvent),
        ),
        (
            ID,
            E::UpdateFailed {
                package_kept: false,
            },
            Err(X::UnexpectedEvent),
        ),
        (ID, E::UpdateIntegrityFailed, Err(X::UnexpectedEvent)),
        (ID, E::Cancel, Err(X::NothingToCancel)),
        (ID, E::Rebooted(Staged::Nothing), ok(ID, None)),
        (
            ID,
            E::Rebooted(Staged::PartialDownload),
            Err(X::UnexpectedEvent),
        ),
        (ID, E::Rebooted(Staged::ValidPackage), ok(DD, None)),
        // ---- Downloading ----
        (DL, E::PackageUriWritten, Err(X::ResetFirst)),
        (DL, E::PackageUriReset, ok(ID, Some(R::Initial))),
        (DL, E::PackageWriteStarted, ok(DL, Some(R::Initial))),
        (DL, E::PackageReset, ok(ID, Some(R::Initial))),
        (DL, E::DownloadComplete, ok(DD, None)),
        (DL, failed(0), Err(X::NotADownloadFailure)),
        (DL, failed(1), Err(X::NotADownloadFailure)),
        (DL, failed(2), ok(ID, Some(R::NotEnoughFlash))),
        (DL, failed(3), ok(ID, Some(R::OutOfRam))),
        (DL, failed(4), ok(ID, Some(R::ConnectionLost))),
        (DL, failed(5), ok(ID, Some(R::IntegrityFailure))),
        (DL, failed(6), ok(ID, Some(R::UnsupportedPackage))),
        (DL, failed(7), ok(ID, Some(R::InvalidUri))),
        (DL, failed(8), Err(X::NotADownloadFailure)),
        (DL, failed(9), ok(ID, Some(R::UnsupportedProtocol))),
        (DL, failed(10), Err(X::NotADownloadFailure)),
        (DL, failed(11), Err(X::NotADownloadFailure)),
        (DL, E::UpdateExecuted, Err(X::NotDownloaded)),
        (DL, E::UpdateDeferred, Err(X::UnexpectedEvent)),
        (DL, E::UpdateSucceeded, Err(X::UnexpectedEvent)),
        (
            DL,
            E::UpdateFailed { package_kept: true },
            Err(X::UnexpectedEvent),
        ),
        (
            DL,
            E::UpdateFailed {
                package_kept: false,
            },
            Err(X::UnexpectedEvent),
        ),
        (DL, E::UpdateIntegrityFailed, Err(X::UnexpectedEvent)),
        (DL, E::Cancel, ok(ID, Some(R::Cancelled))),
        (DL, E::Rebooted(Staged::Nothing), ok(ID, None)),
        (DL, E::Rebooted(Staged::PartialDownload), ok(DL, None)),
        (DL, E::Rebooted(Staged::ValidPackage), ok(DD, None)),
        // ---- Downloaded ----
        (DD, E::PackageUriWritten, Err(X::ResetFirst)),
        (DD, E::PackageUriReset, ok(ID, Some(R::Initial))),
        (DD, E::PackageWriteStarted, Err(X::ResetFirst)),
        (DD, E::PackageReset, ok(ID, Some(R::Initial))),
        (DD, E::DownloadComplete, Err(X::UnexpectedEvent)),
        (DD, failed(0), Err(X::UnexpectedEvent)),
        (DD, failed(1), Err(X::UnexpectedEvent)),
        (DD, failed(2), Err(X::UnexpectedEvent)),
        (DD, failed(3), Err(X::UnexpectedEvent)),
        (DD, failed(4), Err(X::UnexpectedEvent)),
        (DD, failed(5), Err(X::UnexpectedEvent)),
        (DD, failed(6), Err(X::UnexpectedEvent)),
        (DD, failed(7), Err(X::UnexpectedEvent)),
        (DD, failed(8), Err(X::UnexpectedEvent)),
        (DD, failed(9), Err(X::UnexpectedEvent)),
        (DD, failed(10), Err(X::UnexpectedEvent)),
        (DD, failed(11), Err(X::UnexpectedEvent)),
        (DD, E::UpdateExecuted, ok(UP, Some(R::Initial))),
        (DD, E::UpdateDeferred, ok(DD, Some(R::Deferred))),
        (DD, E::UpdateSucceeded, Err(X::UnexpectedEvent)),
        (
            DD,
            E::UpdateFailed { package_kept: true },
            Err(X::UnexpectedEvent),
        ),
        (
            DD,
            E::UpdateFailed {
                package_kept: false,
            },
            Err(X::UnexpectedEvent),
        ),
        (DD, E::UpdateIntegrityFailed, Err(X::UnexpectedEvent)),
        (DD, E::Cancel, ok(ID, Some(R::Cancelled))),
        (DD, E::Rebooted(Staged::Nothing), ok(ID, None)),
        (
            DD,
            E::Rebooted(Staged::PartialDownload),
            Err(X::UnexpectedEvent),
        ),
        (DD, E::Rebooted(Staged::ValidPackage), ok(DD, None)),
        // ---- Updating ----
        (UP, E::PackageUriWritten, Err(X::Updating)),
        (UP, E::PackageUriReset, Err(X::Updating)),
        (UP, E::PackageWriteStarted, Err(X::Updating)),
        (UP, E::PackageReset, Err(X::Updating)),
        (UP, E::DownloadComplete, Err(X::UnexpectedEvent)),
        (UP, failed(0), Err(X::UnexpectedEvent)),
        (UP, failed(1), Err(X::UnexpectedEvent)),
        (UP, failed(2), Err(X::UnexpectedEvent)),
        (UP, failed(3), Err(X::UnexpectedEvent)),
        (UP, failed(4), Err(X::UnexpectedEvent)),
        (UP, failed(5), Err(X::UnexpectedEvent)),
        (UP, failed(6), Err(X::UnexpectedEvent)),
        (UP, failed(7), Err(X::UnexpectedEvent)),
        (UP, failed(8), Err(X::UnexpectedEvent)),
        (UP, failed(9), Err(X::UnexpectedEvent)),
        (UP, failed(10), Err(X::UnexpectedEvent)),
        (UP, failed(11), Err(X::UnexpectedEvent)),
        (UP, E::UpdateExecuted, Err(X::NotDownloaded)),
        (UP, E::UpdateDeferred, Err(X::UnexpectedEvent)),
        (UP, E::UpdateSucceeded, ok(ID, Some(R::Success))),
        (
            UP,
            E::UpdateFailed { package_kept: true },
            ok(DD, Some(R::UpdateFailed)),
        ),
        (
            UP,
            E::UpdateFailed {
                package_kept: false,
            },
            ok(ID, Some(R::UpdateFailed)),
        ),
        (
            UP,
            E::UpdateIntegrityFailed,
            ok(ID, Some(R::IntegrityFailure)),
        ),
        (UP, E::Cancel, Err(X::Updating)),
        (UP, E::Rebooted(Staged::Nothing), ok(ID, None)),
        (
            UP,
            E::Rebooted(Staged::PartialDownload),
            Err(X::UnexpectedEvent),
        ),
        (UP, E::Rebooted(Staged::ValidPackage), ok(DD, None)),
    ]
}

fn all_events() -> Vec<Event> {
    let mut events = vec![
        E::PackageUriWritten,
        E::PackageUriReset,
        E::PackageWriteStarted,
        E::PackageReset,
        E::DownloadComplete,
        E::UpdateExecuted,
        E::UpdateDeferred,
        E::UpdateSucceeded,
        E::UpdateFailed { package_kept: true },
        E::UpdateFailed {
            package_kept: false,
        },
        E::UpdateIntegrityFailed,
        E::Cancel,
        E::Rebooted(Staged::Nothing),
        E::Rebooted(Staged::PartialDownload),
        E::Rebooted(Staged::ValidPackage),
    ];
    events.extend(R::ALL.iter().map(|r| E::DownloadFailed(*r)));
    events
}

#[test]
fn every_transition_matches_the_table() {
    for (state, event, expected) in table() {
        assert_eq!(transition(state, event), expected, "{state:?} + {event:?}");
    }
}

#[test]
fn the_table_covers_every_state_and_event_once() {
    let rows = table();
    for state in State::ALL {
        for event in all_events() {
            let n = rows
                .iter()
                .filter(|(s, e, _)| s == state && *e == event)
                .count();
            assert_eq!(n, 1, "{state:?} + {event:?} appears {n} times");
        }
    }
    assert_eq!(rows.len(), 4 * 27);
}

#[test]
fn refusals_map_to_coap_codes() {
    // class << 5 | detail: 4.05 = 0x85 = 133, 4.00 = 0x80 = 128, 5.00 = 0xA0 = 160.
    assert_eq!(X::NotDownloaded.coap_code(), 0x85);
    assert_eq!(X::Updating.coap_code(), 0x85);
    assert_eq!(X::NothingToCancel.coap_code(), 0x85);
    assert_eq!(X::ResetFirst.coap_code(), 0x80);
    assert_eq!(X::NotADownloadFailure.coap_code(), 0xA0);
    assert_eq!(X::UnexpectedEvent.coap_code(), 0xA0);
}

/// Runs events from Idle / Initial and returns the (State, Update Result) after each.
fn run(events: &[Event]) -> Vec<(State, UpdateResult)> {
    let (mut state, mut result) = (ID, R::Initial);
    events
        .iter()
        .map(|e| {
            let out = transition(state, *e).unwrap();
            state = out.state;
            result = out.result_after(result);
            (state, result)
        })
        .collect()
}

#[test]
fn pull_update_that_succeeds() {
    let seen = run(&[
        E::PackageUriWritten,
        E::DownloadComplete,
        E::UpdateExecuted,
        E::UpdateSucceeded,
    ]);
    assert_eq!(
        seen,
        [
            (DL, R::Initial),
            (DD, R::Initial),
            (UP, R::Initial),
            (ID, R::Success)
        ]
    );
}

#[test]
fn failed_download_then_retry_resets_the_result() {
    let seen = run(&[
        E::PackageUriWritten,
        E::DownloadFailed(R::ConnectionLost),
        E::PackageUriWritten,
    ]);
    assert_eq!(
        seen,
        [(DL, R::Initial), (ID, R::ConnectionLost), (DL, R::Initial)]
    );
}

#[test]
fn deferral_then_execute_and_reboot_keeps_the_result() {
    let seen = run(&[
        E::PackageWriteStarted,
        E::DownloadComplete,
        E::UpdateDeferred,
        E::Rebooted(Staged::ValidPackage),
        E::UpdateExecuted,
        E::UpdateFailed {
            package_kept: false,
        },
        E::Rebooted(Staged::Nothing),
    ]);
    assert_eq!(
        seen,
        [
            (DL, R::Initial),
            (DD, R::Initial),
            (DD, R::Deferred),
            (DD, R::Deferred),
            (UP, R::Initial),
            (ID, R::UpdateFailed),
            (ID, R::UpdateFailed),
        ]
    );
}

#[test]
fn wire_values() {
    assert_eq!(object5::OBJECT_ID, 5);
    let ids = [
        object5::PACKAGE,
        object5::PACKAGE_URI,
        object5::UPDATE,
        object5::STATE,
        object5::UPDATE_RESULT,
        object5::PKG_NAME,
        object5::PKG_VERSION,
        object5::PROTOCOL_SUPPORT,
        object5::DELIVERY_METHOD,
        object5::CANCEL,
        object5::SEVERITY,
        object5::LAST_STATE_CHANGE_TIME,
        object5::MAX_DEFER_PERIOD,
    ];
    assert_eq!(ids, [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13]);

    assert_eq!(State::try_from(0i64), Ok(ID));
    assert_eq!(State::try_from(3u8), Ok(UP));
    assert_eq!(State::try_from(4i64), Err(OutOfRange(4)));
    assert_eq!(State::try_from(-1i64), Err(OutOfRange(-1)));
    assert_eq!(u8::from(DD), 2);
    assert_eq!(i64::from(DL), 1);

    let results = [
        (0, R::Initial),
        (1, R::Success),
        (2, R::NotEnoughFlash),
        (3, R::OutOfRam),
        (4, R::ConnectionLost),
        (5, R::IntegrityFailure),
        (6, R::UnsupportedPackage),
        (7, R::InvalidUri),
        (8, R::UpdateFailed),
        (9, R::UnsupportedProtocol),
        (10, R::Cancelled),
        (11, R::Deferred),
    ];
    for (n, r) in results {
        assert_eq!(R::try_from(n as i64), Ok(r));
        assert_eq!(r.code(), n);
    }
    assert_eq!(R::try_from(12u8), Err(OutOfRange(12)));

    let protocols = [
        (0, ProtocolSupport::Coap),
        (1, ProtocolSupport::Coaps),
        (2, ProtocolSupport::Http),
        (3, ProtocolSupport::Https),
        (4, ProtocolSupport::CoapTcp),
        (5, ProtocolSupport::CoapTls),
    ];
    for (n, p) in protocols {
        assert_eq!(ProtocolSupport::try_from(n as i64), Ok(p));
    }
    assert_eq!(ProtocolSupport::try_from(6i64), Err(OutOfRange(6)));
    assert_eq!(DeliveryMethod::try_from(0u8), Ok(DeliveryMethod::Pull));
    assert_eq!(DeliveryMethod::try_from(1u8), Ok(DeliveryMethod::Push));
    assert_eq!(DeliveryMethod::try_from(2u8), Ok(DeliveryMethod::Both));
    assert_eq!(DeliveryMethod::try_from(3u8), Err(OutOfRange(3)));
    assert_eq!(Severity::try_from(1u8), Ok(Severity::Mandatory));
}

#[test]
fn download_failures_are_2_to_7_and_9() {
    let failures: Vec<u8> = R::ALL
        .iter()
        .filter(|r| r.is_download_failure())
        .map(|r| r.code())
        .collect();
    assert_eq!(failures, [2, 3, 4, 5, 6, 7, 9]);
}

#[test]
fn package_reset_payloads() {
    assert!(is_package_reset(b""));
    assert!(is_package_reset(b"\0"));
    assert!(!is_package_reset(b"\0\0"));
    assert!(!is_package_reset(b"0"));
}

#[test]
fn package_uris() {
    let good = [
        (
            "coap://fw.example.com/fw/0123456789abcdef/manifest",
            Scheme::Coap,
        ),
        ("coaps://[2001:db8::1]:5684/fw", Scheme::Coaps),
        ("COAP://host/x", Scheme::Coap),
        ("coap://192.0.2.1:5683", Scheme::Coap),
        ("coap://host:/x", Scheme::Coap),
        ("coap://host/a%20b?x=1&y=2", Scheme::Coap),
        ("http://user:pw@host/x", Scheme::Http),
        ("https://host/x#frag", Scheme::Https),
        ("coap+tcp://h/x", Scheme::CoapTcp),
        ("coaps+tcp://h", Scheme::CoapsTcp),
    ];
    for (uri, scheme) in good {
        assert_eq!(validate_package_uri(uri), Ok(scheme), "{uri}");
    }
    let bad = [
        ("", R::InvalidUri),
        ("coap", R::InvalidUri),
        ("://host/x", R::InvalidUri),
        ("1coap://host/x", R::InvalidUri),
        ("coap:/host/x", R::InvalidUri),
        ("coap://", R::InvalidUri),
        ("coap:///x", R::InvalidUri),
        ("coap://host:99999/x", R::InvalidUri),
        ("coap://host:5a/x", R::InvalidUri),
        ("coap://ho st/x", R::InvalidUri),
        ("coap://host/a b", R::InvalidUri),
        ("coap://host/%zz", R::InvalidUri),
        ("coap://host/%4", R::InvalidUri),
        ("coap://host/x#frag", R::InvalidUri),
        ("coap://user@host/x", R::InvalidUri),
        ("coap://[::1/x", R::InvalidUri),
        ("coap://[zz::1]/x", R::InvalidUri),
        ("coap://[::1]x/y", R::InvalidUri),
        ("coap://hoßt/x", R::InvalidUri),
        ("ftp://host/x", R::UnsupportedProtocol),
        ("coap+ws://host/x", R::UnsupportedProtocol),
        ("mailto:someone", R::UnsupportedProtocol),
    ];
    for (uri, result) in bad {
        assert_eq!(validate_package_uri(uri), Err(result), "{uri}");
    }
}

#[test]
fn package_uri_length_limit_is_255() {
    let base = "coap://h/";
    let at_limit = format!("{base}{}", "a".repeat(255 - base.len()));
    assert_eq!(at_limit.len(), 255);
    assert_eq!(validate_package_uri(&at_limit), Ok(Scheme::Coap));
    let over = format!("{at_limit}a");
    assert_eq!(validate_package_uri(&over), Err(R::InvalidUri));
}

#[test]
fn schemes_map_to_protocols_and_ports() {
    let rows = [
        (Scheme::Coap, ProtocolSupport::Coap, 5683),
        (Scheme::Coaps, ProtocolSupport::Coaps, 5684),
        (Scheme::Http, ProtocolSupport::Http, 80),
        (Scheme::Https, ProtocolSupport::Https, 443),
        (Scheme::CoapTcp, ProtocolSupport::CoapTcp, 5683),
        (Scheme::CoapsTcp, ProtocolSupport::CoapTls, 5684),
    ];
    for (scheme, protocol, port) in rows {
        assert_eq!(scheme.protocol(), protocol);
        assert_eq!(scheme.default_port(), port);
        assert_eq!(Scheme::from_name(scheme.as_str()), Some(scheme));
    }
}

proptest::proptest! {
    #[test]
    fn package_uri_never_panics(s in "\\PC{0,300}") {
        let _ = validate_package_uri(&s);
    }

    #[test]
    fn uri_like_text_never_panics(s in "[a-z+:/\\[\\]@%#?0-9.]{0,40}") {
        let _ = validate_package_uri(&s);
    }
}

#[test]
fn every_code_has_a_distinct_name_for_people() {
    let states: Vec<&str> = State::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(states, ["Idle", "Downloading", "Downloaded", "Updating"]);
    let results: Vec<&str> = UpdateResult::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(results.len(), 12);
    assert_eq!(
        UpdateResult::IntegrityFailure.name(),
        "Integrity check failure"
    );
    assert_eq!(
        UpdateResult::Success.name(),
        "Firmware updated successfully"
    );
    let mut unique = results.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        results.len(),
        "two results share a name: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|n| !n.is_empty() && !n.contains("Some("))
    );
}

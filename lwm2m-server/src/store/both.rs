//! The store's behaviour on both backends: each shared test body takes a way to open (and
//! reopen) one store, and runs on SQLite in its own `#[test]` and on PostgreSQL here, each on a
//! fresh database of one throw-away cluster (`tests/support/pg.rs`).

use super::pg_cluster::PgCluster;
use super::{Store, StoreError};

/// Opens the test's store; called again, reopens the same database.
pub(crate) type Open<'a> = &'a dyn Fn() -> Store;

/// Runs `body` on an SQLite store in a temp dir.
pub(crate) fn on_sqlite(body: Body) {
    let dir = tempfile::tempdir().unwrap();
    body(&|| Store::open(dir.path()).unwrap());
}

/// A shared test body.
type Body = fn(Open<'_>);

/// Every shared body, by name.
const BODIES: &[(&str, Body)] = {
    use super::credentials::tests as credentials;
    use super::observations::tests as observations;
    use super::oscore::tests as oscore;
    use super::tests as store;
    use crate::campaign::db::tests as campaign;
    &[
        ("settings", store::settings_round_trip_on),
        ("registrations", store::re_registration_replaces_the_endpoint_on),
        ("owner node", store::the_owner_node_is_kept_and_a_node_takes_over_by_id_or_address_on),
        ("owners changed", store::only_owners_changed_since_a_time_are_read_on),
        ("releases", store::release_ids_are_unique_on),
        ("jobs", store::job_progress_and_audit_are_saved_together_on),
        (
            "images served",
            store::the_evidence_of_an_image_served_is_per_release_endpoint_and_ip_and_survives_reopening_on,
        ),
        ("credentials", credentials::credentials_are_kept_replaced_and_removed_on),
        ("oscore", oscore::contexts_are_kept_and_the_reservation_never_goes_down_on),
        (
            "observations",
            observations::observations_are_found_by_token_replaced_and_go_with_their_registration_on,
        ),
        (
            "campaign",
            campaign::a_campaign_survives_reopening_with_its_waves_devices_and_soak_deadline_on,
        ),
        ("campaign json", campaign::a_bad_json_column_is_a_json_error_not_an_sql_one_on),
        ("device info", campaign::device_info_keeps_what_it_knew_on),
    ]
};

#[test]
fn the_store_behaves_the_same_on_postgres() {
    let Some(pg) = PgCluster::start() else { return };
    for (name, body) in BODIES {
        let url = pg.new_database();
        eprintln!("postgres: {name}");
        body(&|| Store::open_postgres(&url).unwrap());
    }
}

#[test]
fn the_postgres_schema_has_the_owner_node_and_its_indexes_and_refuses_a_newer_version() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.new_database();
    let s = Store::open_postgres(&url).unwrap();
    assert_eq!(s.backend(), "postgres");
    let known = super::migrations::MIGRATIONS.len() as i64;
    assert_eq!(s.schema_version().unwrap(), known);
    s.put_registration(&super::tests::reg("dev-1", "r1"), 1)
        .unwrap();
    // The expiry is kept by the database; the owner is the node that wrote the row.
    let (owner, expires): (Option<String>, i64) = s
        .with(|c| {
            c.query_row(
                "SELECT owner_node, expires_at_ms FROM registrations WHERE endpoint = ?1",
                ["dev-1"],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap();
    assert_eq!(
        (owner.as_deref(), expires),
        (Some("node-a"), 1 + 300 * 1000)
    );
    let index: i64 = s
        .with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'registrations_by_expiry'",
                [0i64; 0],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(index, 1);
    // The expiry sweep and the takeover lookup by address can use their indexes (with a
    // sequential scan forbidden, a query the index cannot serve would still plan one).
    s.with(|c| c.batch("SET enable_seqscan = off")).unwrap();
    let plan = |sql: &str, p: &[i64]| -> String {
        s.with(|c| {
            let mut stmt = c.prepare(&format!("EXPLAIN {sql}"))?;
            let rows = stmt.query_map(p, |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?.join("\n"))
        })
        .unwrap()
    };
    let sweep = plan(super::PG_SWEEP_EXPIRED, &[400_000, 30_000]);
    assert!(sweep.contains("registrations_by_expiry"), "{sweep}");
    let by_address = plan(
        "SELECT reg_id FROM registrations WHERE address = '192.0.2.1:5683'",
        &[],
    );
    assert!(
        by_address.contains("registrations_by_address"),
        "{by_address}"
    );
    // The sweep for devices other nodes took over reads the owner_since_ms index.
    let owners = plan(super::OWNERS_CHANGED_SINCE, &[400_000]);
    assert!(owners.contains("registrations_by_owner_since"), "{owners}");
    drop(s);
    // Opening again migrates nothing; a newer schema is refused like SQLite's.
    assert_eq!(
        Store::open_postgres(&url)
            .unwrap()
            .schema_version()
            .unwrap(),
        known
    );
    pg.sql_in(&url, "UPDATE schema_version SET version = 99");
    assert!(matches!(
        Store::open_postgres(&url),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn a_bad_url_or_an_absent_server_is_a_clear_error() {
    let e = Store::open_postgres("postgres://nobody@[::1/db")
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("bad PostgreSQL URL"), "{e}");
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Store::open_postgres(&format!("postgres://postgres@127.0.0.1:{port}/x"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}")),
        "{e}"
    );
    assert!(e.ends_with("is it running?"), "{e}");
}

/// Rough registrations/s of each backend (run with `--ignored --nocapture`; a debug build, one
/// connection, the throw-away cluster's fsync off): `put_registration` from a plain thread, from
/// a task of a multi-thread tokio runtime (the server's: `block_in_place`), and of a
/// current-thread one (each PostgreSQL call on a scoped thread of its own).
#[test]
#[ignore]
fn registrations_per_second_on_each_backend() {
    use std::sync::Arc;
    const N: usize = 2000;
    let run = |what: &str, s: Store| {
        let s = Arc::new(s);
        let t = std::time::Instant::now();
        for i in 0..N {
            s.put_registration(&super::tests::reg(&format!("dev-{i}"), &format!("r{i}")), 1)
                .unwrap();
        }
        let mut line = format!(
            "{what}: {:.0}/s from a thread",
            N as f64 / t.elapsed().as_secs_f64()
        );
        for (flavor, rt) in [
            (
                "multi-thread",
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .build(),
            ),
            (
                "current-thread",
                tokio::runtime::Builder::new_current_thread().build(),
            ),
        ] {
            let s = s.clone();
            let t = std::time::Instant::now();
            rt.unwrap().block_on(async move {
                tokio::spawn(async move {
                    for i in 0..N {
                        let id = format!("{flavor}{i}");
                        s.put_registration(&super::tests::reg(&format!("dev-{i}"), &id), 1)
                            .unwrap();
                    }
                })
                .await
                .unwrap()
            });
            line += &format!(
                ", {:.0}/s in a {flavor} task",
                N as f64 / t.elapsed().as_secs_f64()
            );
        }
        eprintln!("{line}");
    };
    let dir = tempfile::tempdir().unwrap();
    run(
        "sqlite (WAL, synchronous NORMAL)",
        Store::open(dir.path()).unwrap(),
    );
    if let Some(pg) = PgCluster::start() {
        run(
            "postgres (fsync off)",
            Store::open_postgres(&pg.new_database()).unwrap(),
        );
    }
}

#[test]
fn a_broken_postgres_connection_is_opened_again() {
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.new_database();
    let s = Store::open_postgres(&url).unwrap();
    s.set_setting("k", "v").unwrap();
    let db = url.rsplit('/').next().unwrap();
    // Several rounds: whether the client has read the end of the socket before the next call
    // is a race, and each round is another chance to meet the side where it has not.
    for round in 0..5 {
        // With a timeout, pg_terminate_backend waits until the backend has exited.
        pg.sql(&format!(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{db}'"
        ));
        // The call that finds the connection broken may fail (with the server's FATAL message
        // or a reset socket, whichever the client reads first); the next one reconnects.
        let first = s.setting("k");
        assert_eq!(
            s.setting("k").unwrap().as_deref(),
            Some("v"),
            "round {round}, first: {first:?}"
        );
    }
    assert!(s.session() >= 5, "one new connection per round");
}

/// What a node's sweep for moved devices costs at a million registrations on PostgreSQL (run
/// with `--ignored --nocapture`): the old query of every row's owner against the query of the
/// owners changed since the last sweep (100 takeovers in the window), rows made in bulk.
#[test]
#[ignore]
fn the_moved_device_sweep_at_a_million_registrations() {
    const N: i64 = 1_000_000;
    let Some(pg) = PgCluster::start() else { return };
    let url = pg.new_database();
    let s = Store::open_postgres(&url).unwrap();
    let t = std::time::Instant::now();
    pg.sql_in(
        &url,
        &format!(
            "INSERT INTO registrations (reg_id, endpoint, address, lifetime_s, lwm2m_version,
                binding, queue_mode, sms, objects, registered_at_ms, updated_at_ms, owner_node,
                owner_since_ms)
             SELECT 'r' || i, 'dev-' || i, '10.0.' || (i / 65536) || '.' || (i % 256) || ':' || (i % 60000 + 1),
                86400, '1.1', 'U', 0, NULL, '</5/0>', 1, 1, 'n' || (i % 3),
                CASE WHEN i % 10000 = 0 THEN 2000000 ELSE 1000 END
             FROM generate_series(1, {N}) AS i;
             ANALYZE registrations;"
        ),
    );
    eprintln!("{N} rows made in {:?}", t.elapsed());
    let time = |what: &str, f: &dyn Fn() -> usize| {
        f();
        let t = std::time::Instant::now();
        let mut rows = 0;
        for _ in 0..5 {
            rows = f();
        }
        eprintln!("{what}: {rows} rows, {:?} a sweep", t.elapsed() / 5);
    };
    time("every row's owner (before)", &|| {
        s.with(|c| {
            let mut stmt = c.prepare("SELECT endpoint, reg_id, owner_node FROM registrations")?;
            let rows = stmt.query_map([0i64; 0], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            Ok(rows.count())
        })
        .unwrap()
    });
    time("owners changed since (now)", &|| {
        s.owners_changed_since(1_999_000).unwrap().len()
    });
}

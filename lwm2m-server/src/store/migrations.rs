//! The schema of the store, one migration per version, in order. `PRAGMA user_version` records
//! how many have run, so a migration, once released, never changes and never moves: a new table
//! or column is a new migration at the end. Every table lives here, whichever module queries it
//! (the job tables in `store::jobs`, the campaign tables in `campaign::db`).

use rusqlite::Connection;

use super::{Result, StoreError};

/// 1: the first schema (settings, registrations, releases, update jobs, the audit trail).
const V1_FIRST: &str = "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE registrations (
        reg_id TEXT PRIMARY KEY,
        endpoint TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL,
        lifetime_s INTEGER NOT NULL,
        lwm2m_version TEXT NOT NULL,
        binding TEXT NOT NULL,
        queue_mode INTEGER NOT NULL,
        sms TEXT,
        objects TEXT NOT NULL,
        registered_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
     );
     CREATE TABLE releases (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('suit', 'plain')),
        version TEXT,
        sequence_number INTEGER,
        image_sha256 TEXT NOT NULL,
        image_size INTEGER NOT NULL,
        manifest_sha256 TEXT,
        manifest_size INTEGER,
        vendor_id TEXT,
        class_id TEXT,
        image_uri TEXT,
        added_at_ms INTEGER NOT NULL
     );
     CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        release_id TEXT NOT NULL REFERENCES releases(id),
        created_at_ms INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE job_devices (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        endpoint TEXT NOT NULL,
        status TEXT NOT NULL,
        step TEXT NOT NULL,
        fw_state INTEGER,
        fw_result INTEGER,
        pkg_version TEXT,
        delivery TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        started_at_ms INTEGER,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (job_id, endpoint)
     );
     CREATE INDEX job_devices_by_status ON job_devices(status);
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        job_id INTEGER,
        endpoint TEXT,
        event TEXT NOT NULL,
        detail TEXT
     );
     CREATE INDEX audit_by_job ON audit(job_id);";

/// 2: update campaigns, their waves and target devices, and the device-info cache.
const V2_CAMPAIGNS: &str = "
    CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT,
        release_id TEXT NOT NULL REFERENCES releases(id),
        target TEXT NOT NULL,
        waves TEXT NOT NULL,
        failure_threshold REAL NOT NULL,
        soak_ms INTEGER NOT NULL,
        max_concurrent INTEGER NOT NULL,
        max_per_mesh INTEGER NOT NULL,
        mesh_prefix_v6 INTEGER NOT NULL,
        mesh_prefix_v4 INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        current_wave INTEGER NOT NULL DEFAULT 0,
        soak_until_ms INTEGER,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER
    );
    CREATE TABLE campaign_waves (
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        wave INTEGER NOT NULL,
        percent INTEGER NOT NULL,
        size INTEGER NOT NULL,
        started_at_ms INTEGER,
        finished_at_ms INTEGER,
        PRIMARY KEY (campaign_id, wave)
    );
    CREATE TABLE campaign_devices (
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        endpoint TEXT NOT NULL,
        wave INTEGER NOT NULL,
        position INTEGER NOT NULL,
        mesh TEXT,
        status TEXT NOT NULL,
        job_id INTEGER,
        queued_at_ms INTEGER NOT NULL,
        started_at_ms INTEGER,
        finished_at_ms INTEGER,
        error TEXT,
        PRIMARY KEY (campaign_id, endpoint)
    );
    CREATE INDEX campaign_devices_queue ON campaign_devices(campaign_id, wave, status, position);
    CREATE INDEX campaign_devices_by_status ON campaign_devices(campaign_id, status);
    CREATE TABLE device_info (
        endpoint TEXT PRIMARY KEY,
        model TEXT,
        firmware_version TEXT,
        read_at_ms INTEGER NOT NULL
    );";

/// 3: the audit trail keeps the Object 5 State and Update Result of a job device's line as
/// numbers, beside the words of its detail.
const V3_AUDIT_CODES: &str = "
    ALTER TABLE audit ADD COLUMN fw_state INTEGER;
    ALTER TABLE audit ADD COLUMN fw_result INTEGER;";

/// 4: a release's largest Block2 size (`firmware add --max-block-size`).
const V4_RELEASE_BLOCK_SIZE: &str = "ALTER TABLE releases ADD COLUMN max_block_size INTEGER;";

/// 5 (issue 14): whether the server itself served the image's last block to a job's device (or
/// the device took the push), the evidence a job needs besides the device's word; and, kept
/// across restarts, to which endpoint at which IP address each release's last block was served.
const V5_IMAGE_SERVED: &str = "
    ALTER TABLE job_devices ADD COLUMN image_served INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE images_served (
        release_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        ip TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (release_id, endpoint, ip)
    );";

/// 6: per-device DTLS credentials (issue 14): one PSK identity and key per endpoint. The key is
/// read only by the DTLS layer; nothing lists it.
const V6_DTLS_CREDENTIALS: &str = "
    CREATE TABLE credentials (
        endpoint TEXT PRIMARY KEY,
        psk_identity TEXT NOT NULL UNIQUE,
        psk_key BLOB NOT NULL,
        added_at_ms INTEGER NOT NULL
    );";

/// 7 (issue 15): delta releases and which release each job device was sent. A delta release is
/// stored with kind 'suit' (V1's CHECK stays) and its precursor set; its `image_*` columns are the
/// patch's (the bytes served), `new_image_*` the image the patch makes: its family, which it
/// shares with the full release of that image. A job device records the release it was sent
/// (full or delta), the bytes the delta saved, and why it fell back to the full image.
const V7_DELTA_RELEASES: &str = "
    ALTER TABLE releases ADD COLUMN precursor_sha256 TEXT;
    ALTER TABLE releases ADD COLUMN precursor_size INTEGER;
    ALTER TABLE releases ADD COLUMN new_image_sha256 TEXT;
    ALTER TABLE releases ADD COLUMN new_image_size INTEGER;
    CREATE INDEX releases_by_new_image ON releases(new_image_sha256);
    ALTER TABLE job_devices ADD COLUMN sent_release_id TEXT;
    ALTER TABLE job_devices ADD COLUMN bytes_saved INTEGER;
    ALTER TABLE job_devices ADD COLUMN fallback TEXT;";

/// 8 (issue 14): per-device OSCORE security contexts (RFC 8613). IDs are the server's: it sends
/// with `sender_id` and receives requests whose kid is `recipient_id`. `seq_reserved` is the
/// sender sequence number reserved ahead on disk (Appendix B.1.1): a start continues from it.
/// The secret and salt are read only by the OSCORE layer; nothing lists them.
const V8_OSCORE_CONTEXTS: &str = "
    CREATE TABLE oscore_contexts (
        endpoint TEXT PRIMARY KEY,
        sender_id BLOB NOT NULL,
        recipient_id BLOB NOT NULL UNIQUE,
        master_secret BLOB NOT NULL,
        master_salt BLOB NOT NULL,
        seq_reserved INTEGER NOT NULL DEFAULT 0,
        added_at_ms INTEGER NOT NULL
    );";

/// 9 (issue 18): the node that owns a registration (the one that heard the device last) on
/// SQLite too, so both backends store and read the same row. PostgreSQL had the column since
/// version 1 (`PG_EXTRA`); [`PG_INSTEAD`] keeps this one a no-op there.
const V9_OWNER_NODE: &str = "ALTER TABLE registrations ADD COLUMN owner_node TEXT;";

/// 10 (issue 18): the nodes sharing a database, each with the URL of its admin API and when it
/// last said it was alive, so that a node can forward a device-management request to the node
/// that holds the device.
const V10_NODES: &str = "
    CREATE TABLE nodes (
        node_id TEXT PRIMARY KEY,
        api_url TEXT NOT NULL,
        heartbeat_ms INTEGER NOT NULL
    );";

/// 11 (issue 18): registrations by address, for a node taking over a device whose datagram it
/// got (`Store::registration_at`), which would otherwise scan every row.
const V11_REGISTRATIONS_BY_ADDRESS: &str =
    "CREATE INDEX registrations_by_address ON registrations(address);";

/// 12 (issue 18): when a registration's owner last changed (ms, the writing node's clock), so
/// that each node's sweep for devices another node took over reads only the rows changed since
/// its last sweep (`Store::owners_changed_since`), not every row. 0 for rows from before.
const V12_OWNER_SINCE: &str =
    "ALTER TABLE registrations ADD COLUMN owner_since_ms INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX registrations_by_owner_since ON registrations(owner_since_ms);";

/// 13 (issue 18): the observations this fleet's nodes made (a device's token, the path, the node
/// that made it), so that the node a device moved to can take on a notification it did not ask
/// for (`store::observations`). A registration's observations go with it: a trigger here, a
/// foreign key on PostgreSQL ([`PG_INSTEAD`]), whichever statement deletes the registration.
const V13_OBSERVATIONS: &str = "
    CREATE TABLE observations (
        token TEXT PRIMARY KEY,
        endpoint TEXT NOT NULL,
        path TEXT NOT NULL,
        node TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        UNIQUE (endpoint, path)
    );
    CREATE TRIGGER observations_of_a_deleted_registration AFTER DELETE ON registrations
    BEGIN DELETE FROM observations WHERE endpoint = old.endpoint; END;";

/// Every migration, in order: entry `i` brings the database from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    V1_FIRST,
    V2_CAMPAIGNS,
    V3_AUDIT_CODES,
    V4_RELEASE_BLOCK_SIZE,
    V5_IMAGE_SERVED,
    V6_DTLS_CREDENTIALS,
    V7_DELTA_RELEASES,
    V8_OSCORE_CONTEXTS,
    V9_OWNER_NODE,
    V10_NODES,
    V11_REGISTRATIONS_BY_ADDRESS,
    V12_OWNER_SINCE,
    V13_OBSERVATIONS,
];

/// Versions whose PostgreSQL form is not the SQLite text translated: 9 adds a column that
/// PostgreSQL already has; 13 deletes a registration's observations by a foreign key, not by
/// SQLite's trigger syntax.
const PG_INSTEAD: &[(usize, &str)] = &[
    (
        9,
        "ALTER TABLE registrations ADD COLUMN IF NOT EXISTS owner_node TEXT;",
    ),
    (
        13,
        "CREATE TABLE observations (
            token TEXT PRIMARY KEY,
            endpoint TEXT NOT NULL REFERENCES registrations(endpoint) ON DELETE CASCADE,
            path TEXT NOT NULL,
            node TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            UNIQUE (endpoint, path)
        );",
    ),
];

/// Runs the migrations the database lacks, each in its own transaction with the version bump.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// PostgreSQL's additions to a version's schema, for what only a shared database needs:
/// 1: the node that owns a registration (the multi-node step writes it; NULL until then) and
/// the registration's expiry, kept by the database and indexed for a reaper.
const PG_EXTRA: &[(usize, &str)] = &[(
    1,
    "ALTER TABLE registrations ADD COLUMN owner_node TEXT;
     ALTER TABLE registrations ADD COLUMN expires_at_ms BIGINT
        GENERATED ALWAYS AS (updated_at_ms + lifetime_s * 1000) STORED;
     CREATE INDEX registrations_by_expiry ON registrations(expires_at_ms);",
)];

/// A migration in PostgreSQL's dialect: the same tables with its types. SQLite's INTEGER is
/// 64 bits, so BIGINT; its AUTOINCREMENT key an identity column; REAL and BLOB by name.
pub(super) fn postgres_sql(sql: &str) -> String {
    sql.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace("INTEGER", "BIGINT")
    .replace("REAL", "DOUBLE PRECISION")
    .replace("BLOB", "BYTEA")
}

/// The PostgreSQL schema: the same versions as SQLite's (`MIGRATIONS`), in a `schema_version`
/// table, run under an advisory lock so that nodes starting together migrate once.
pub(super) fn migrate_postgres(client: &mut postgres::Client) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let mut tx = client.transaction()?;
    // Any constant names the lock; this one spells "OTAF".
    tx.execute("SELECT pg_advisory_xact_lock(1330921798)", &[])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let found: i64 = match tx.query_opt("SELECT version FROM schema_version", &[])? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
            0
        }
    };
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        match PG_INSTEAD.iter().find(|(v, _)| *v == i + 1) {
            Some((_, instead)) => tx.batch_execute(instead)?,
            None => tx.batch_execute(&postgres_sql(sql))?,
        }
        for (_, extra) in PG_EXTRA.iter().filter(|(v, _)| *v == i + 1) {
            tx.batch_execute(extra)?;
        }
    }
    tx.execute("UPDATE schema_version SET version = $1", &[&known])?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_database_at_version_1_gets_the_later_migrations_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("otafleet.db")).unwrap();
        c.execute_batch(V1_FIRST).unwrap();
        c.execute(
            "INSERT INTO settings (key, value) VALUES ('admin_token', 't')",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO releases (id, kind, version, image_sha256, image_size, added_at_ms)
             VALUES ('r1', 'plain', '1.0', 'aa', 10, 1)",
            [],
        )
        .unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        drop(c);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(s.setting("admin_token").unwrap().as_deref(), Some("t"));
        assert!(s.campaigns().unwrap().is_empty());
        // A release from before migration 4 has no block-size cap, and can get one.
        assert_eq!(s.release("r1").unwrap().unwrap().max_block_size, None);
        assert!(s.set_release_max_block_size("r1", Some(64)).unwrap());
        assert_eq!(s.release("r1").unwrap().unwrap().max_block_size, Some(64));
        // Migration 7: an old release is a full one, its own family; an old job device was
        // sent the job's release, with nothing saved and no fallback.
        let r1 = s.release("r1").unwrap().unwrap();
        assert_eq!(r1.kind, "plain");
        assert!(!r1.is_delta());
        assert_eq!(r1.family_sha256(), "aa");
        let job = s.create_job("r1", &["d1".into()], 2).unwrap();
        let (_, devices) = s.job(job).unwrap().unwrap();
        assert_eq!(devices[0].sent_release_id, None);
        assert_eq!(
            (devices[0].bytes_saved, devices[0].fallback.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn a_database_at_version_6_gets_the_delta_columns_and_stores_a_delta_release() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("otafleet.db")).unwrap();
        for sql in &MIGRATIONS[..6] {
            c.execute_batch(sql).unwrap();
        }
        c.execute(
            "INSERT INTO releases (id, kind, version, image_sha256, image_size, added_at_ms)
             VALUES ('full', 'suit', '2.0', 'bb', 1000, 1)",
            [],
        )
        .unwrap();
        c.pragma_update(None, "user_version", 6).unwrap();
        drop(c);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let mut delta = s.release("full").unwrap().unwrap();
        delta.id = "delta".into();
        delta.kind = "delta".into();
        delta.image_sha256 = "cc".into();
        delta.image_size = 40;
        delta.precursor_sha256 = Some("aa".into());
        delta.precursor_size = Some(900);
        delta.new_image_sha256 = Some("bb".into());
        delta.new_image_size = Some(1000);
        s.insert_release(&delta).unwrap();
        // The kind survives the round trip through the V1 CHECK ('suit' in the table).
        assert_eq!(s.release("delta").unwrap().unwrap(), delta);
        let family: Vec<String> = s
            .releases_of_family("bb")
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(family, ["delta", "full"]); // both added at 1: by id
        // A version names its full release, never a delta.
        let by_version = s.release_by_id_or_version("2.0").unwrap();
        assert_eq!(by_version.map(|r| r.id).as_deref(), Some("full"));
        assert_eq!(s.release_by_id_or_version("3.0").unwrap(), None);
    }
}

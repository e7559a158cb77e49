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

/// Every migration, in order: entry `i` brings the database from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[V1_FIRST, V2_CAMPAIGNS];

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_database_at_version_1_gets_migration_2_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("otafleet.db")).unwrap();
        c.execute_batch(V1_FIRST).unwrap();
        c.execute(
            "INSERT INTO settings (key, value) VALUES ('admin_token', 't')",
            [],
        )
        .unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        drop(c);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), 2);
        assert_eq!(s.setting("admin_token").unwrap().as_deref(), Some("t"));
        assert!(s.campaigns().unwrap().is_empty());
    }
}

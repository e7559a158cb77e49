//! The embedded store: SQLite (rusqlite, bundled) in the data dir, with versioned schema migrations.
//! It holds what must survive a SIGKILL: registrations, releases, update jobs with each device's
//! progress, campaigns, the audit trail, and settings such as the generated admin token. Every
//! write is one transaction; WAL mode keeps committed transactions across a crash of the process.
//!
//! - `migrations`: every table's schema, one migration per version, in order. The store owns
//!   all of them; feature modules only query.
//! - this module: opening, settings, registrations, releases, the audit trail.
//! - `jobs`: the update-job tables.
//! - The campaign tables are queried by `campaign::db` (more `impl Store` there), which depends
//!   on the store and never the other way round.

mod jobs;
mod migrations;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

pub use jobs::{AuditRecord, JobDeviceRecord, JobRecord};
use migrations::migrate;

/// A store failure; the text names the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "the database was written by a newer otafleet (schema {found}, this build knows {known}); upgrade the server"
    )]
    TooNew { found: i64, known: i64 },
    #[error("{0} already exists")]
    Exists(String),
    /// A JSON column (a campaign's target or waves) that does not encode or decode.
    #[error("bad JSON in the database: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A registered LwM2M client as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegistrationRecord {
    pub reg_id: String,
    pub endpoint: String,
    pub address: String,
    pub lifetime_s: u32,
    pub lwm2m_version: String,
    pub binding: String,
    pub queue_mode: bool,
    pub sms: Option<String>,
    pub objects: String,
    pub registered_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A firmware release as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReleaseRecord {
    pub id: String,
    pub kind: String,
    pub version: Option<String>,
    pub sequence_number: Option<u64>,
    pub image_sha256: String,
    pub image_size: u64,
    pub manifest_sha256: Option<String>,
    pub manifest_size: Option<u64>,
    pub vendor_id: Option<String>,
    pub class_id: Option<String>,
    pub image_uri: Option<String>,
    pub added_at_ms: i64,
}

/// The SQLite store. One connection behind a mutex: SQLite serialises writers anyway, and the
/// critical sections are single statements or short transactions.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (or creates) `otafleet.db` in `dir` and runs the migrations it lacks.
    pub fn open(dir: &Path) -> Result<Self> {
        let conn = Connection::open(dir.join("otafleet.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(conn)
    }

    /// A store that lives in memory (tests, the simulator).
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back), so a
        // poisoned mutex is still safe to use.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    /// The schema version in force.
    pub fn schema_version(&self) -> Result<i64> {
        self.with(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
    }

    // ---- settings ----

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        })
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )?;
            Ok(())
        })
    }

    // ---- registrations ----

    /// Inserts or replaces the registration of an endpoint (a re-registration replaces the old one).
    pub fn put_registration(&self, r: &RegistrationRecord) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM registrations WHERE endpoint = ?1 OR reg_id = ?2", params![r.endpoint, r.reg_id])?;
            tx.execute(
                "INSERT INTO registrations (reg_id, endpoint, address, lifetime_s, lwm2m_version, binding,
                    queue_mode, sms, objects, registered_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.reg_id,
                    r.endpoint,
                    r.address,
                    r.lifetime_s,
                    r.lwm2m_version,
                    r.binding,
                    r.queue_mode,
                    r.sms,
                    r.objects,
                    r.registered_at_ms,
                    r.updated_at_ms
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Removes a registration; true if it existed.
    pub fn delete_registration(&self, reg_id: &str) -> Result<bool> {
        self.with(|c| Ok(c.execute("DELETE FROM registrations WHERE reg_id = ?1", [reg_id])? > 0))
    }

    pub fn registrations(&self) -> Result<Vec<RegistrationRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT reg_id, endpoint, address, lifetime_s, lwm2m_version, binding, queue_mode, sms, objects,
                        registered_at_ms, updated_at_ms FROM registrations ORDER BY endpoint",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(RegistrationRecord {
                    reg_id: r.get(0)?,
                    endpoint: r.get(1)?,
                    address: r.get(2)?,
                    lifetime_s: r.get(3)?,
                    lwm2m_version: r.get(4)?,
                    binding: r.get(5)?,
                    queue_mode: r.get(6)?,
                    sms: r.get(7)?,
                    objects: r.get(8)?,
                    registered_at_ms: r.get(9)?,
                    updated_at_ms: r.get(10)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    // ---- releases ----

    /// Adds a release; fails with `Exists` if its id is taken.
    pub fn insert_release(&self, r: &ReleaseRecord) -> Result<()> {
        self.with(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO releases (id, kind, version, sequence_number, image_sha256, image_size,
                    manifest_sha256, manifest_size, vendor_id, class_id, image_uri, added_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    r.id,
                    r.kind,
                    r.version,
                    r.sequence_number.map(|s| s as i64),
                    r.image_sha256,
                    r.image_size as i64,
                    r.manifest_sha256,
                    r.manifest_size.map(|s| s as i64),
                    r.vendor_id,
                    r.class_id,
                    r.image_uri,
                    r.added_at_ms
                ],
            )?;
            if n == 0 { Err(StoreError::Exists(format!("release {}", r.id))) } else { Ok(()) }
        })
    }

    pub fn release(&self, id: &str) -> Result<Option<ReleaseRecord>> {
        Ok(self
            .query_releases("WHERE id = ?1", [id])?
            .into_iter()
            .next())
    }

    pub fn releases(&self) -> Result<Vec<ReleaseRecord>> {
        self.query_releases("ORDER BY added_at_ms, id", [])
    }

    fn query_releases<P: rusqlite::Params>(&self, tail: &str, p: P) -> Result<Vec<ReleaseRecord>> {
        self.with(|c| {
            let sql = format!(
                "SELECT id, kind, version, sequence_number, image_sha256, image_size, manifest_sha256, manifest_size,
                        vendor_id, class_id, image_uri, added_at_ms FROM releases {tail}"
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(p, |r| {
                Ok(ReleaseRecord {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    version: r.get(2)?,
                    sequence_number: r.get::<_, Option<i64>>(3)?.map(|s| s as u64),
                    image_sha256: r.get(4)?,
                    image_size: r.get::<_, i64>(5)? as u64,
                    manifest_sha256: r.get(6)?,
                    manifest_size: r.get::<_, Option<i64>>(7)?.map(|s| s as u64),
                    vendor_id: r.get(8)?,
                    class_id: r.get(9)?,
                    image_uri: r.get(10)?,
                    added_at_ms: r.get(11)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    // ---- audit ----

    /// Appends an audit line outside a job (registrations, releases...).
    pub fn audit(
        &self,
        at_ms: i64,
        endpoint: Option<&str>,
        event: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            audit(&tx, at_ms, None, endpoint, event, detail)?;
            tx.commit()?;
            Ok(())
        })
    }
}

/// Appends an audit line inside `tx` (the job and campaign queries record their changes with it).
pub(crate) fn audit(
    tx: &rusqlite::Transaction<'_>,
    at_ms: i64,
    job_id: Option<i64>,
    endpoint: Option<&str>,
    event: &str,
    detail: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit (at_ms, job_id, endpoint, event, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at_ms, job_id, endpoint, event, detail],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::migrations::MIGRATIONS;
    use super::*;

    fn reg(ep: &str, id: &str) -> RegistrationRecord {
        RegistrationRecord {
            reg_id: id.into(),
            endpoint: ep.into(),
            address: "127.0.0.1:5683".into(),
            lifetime_s: 300,
            lwm2m_version: "1.1".into(),
            binding: "U".into(),
            queue_mode: false,
            sms: None,
            objects: "</1/0>,</3/0>,</5/0>".into(),
            registered_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    fn release(id: &str) -> ReleaseRecord {
        ReleaseRecord {
            id: id.into(),
            kind: "suit".into(),
            version: Some("1.0.0".into()),
            sequence_number: Some(3),
            image_sha256: format!("{id}00"),
            image_size: 10,
            manifest_sha256: None,
            manifest_size: Some(200),
            vendor_id: None,
            class_id: None,
            image_uri: None,
            added_at_ms: 5,
        }
    }

    #[test]
    fn migrations_run_once_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.put_registration(&reg("dev-1", "r1")).unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.registrations().unwrap(), vec![reg("dev-1", "r1")]);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let c = Connection::open(dir.path().join("otafleet.db")).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn re_registration_replaces_the_endpoint() {
        let s = Store::open_in_memory().unwrap();
        s.put_registration(&reg("dev-1", "r1")).unwrap();
        s.put_registration(&reg("dev-1", "r2")).unwrap();
        let all = s.registrations().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].reg_id, "r2");
        assert!(s.delete_registration("r2").unwrap());
        assert!(!s.delete_registration("r2").unwrap());
    }

    #[test]
    fn release_ids_are_unique() {
        let s = Store::open_in_memory().unwrap();
        s.insert_release(&release("aa")).unwrap();
        assert!(matches!(
            s.insert_release(&release("aa")),
            Err(StoreError::Exists(_))
        ));
        assert_eq!(s.release("aa").unwrap(), Some(release("aa")));
        assert_eq!(s.release("bb").unwrap(), None);
    }

    #[test]
    fn job_progress_and_audit_are_saved_together() {
        let s = Store::open_in_memory().unwrap();
        s.insert_release(&release("aa")).unwrap();
        let id = s.create_job("aa", &["d1".into(), "d2".into()], 10).unwrap();
        let (job, devices) = s.job(id).unwrap().unwrap();
        assert_eq!(job.release_id, "aa");
        assert_eq!(
            devices
                .iter()
                .map(|d| d.status.as_str())
                .collect::<Vec<_>>(),
            ["pending", "pending"]
        );
        let mut d = devices[0].clone();
        d.status = crate::status::JobDeviceStatus::Succeeded;
        d.updated_at_ms = 20;
        s.save_job_device(&d, "succeeded", Some("result 1"))
            .unwrap();
        assert_eq!(s.unfinished_job_devices().unwrap().len(), 1);
        let trail = s.job_audit(id).unwrap();
        assert_eq!(
            trail.iter().map(|a| a.event.as_str()).collect::<Vec<_>>(),
            ["job-created", "job-created", "succeeded"]
        );
        assert_eq!(trail[2].at_ms, 20);
        assert!(s.request_cancel(id, 30).unwrap());
        assert!(s.job(id).unwrap().unwrap().0.cancel_requested);
        // A job for an unknown release is refused by the foreign key.
        assert!(s.create_job("nope", &["d1".into()], 1).is_err());
    }

    #[test]
    fn settings_round_trip() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.setting("admin_token").unwrap(), None);
        s.set_setting("admin_token", "t1").unwrap();
        s.set_setting("admin_token", "t2").unwrap();
        assert_eq!(s.setting("admin_token").unwrap().as_deref(), Some("t2"));
    }
}

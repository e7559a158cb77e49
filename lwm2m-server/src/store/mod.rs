//! The store: SQLite (rusqlite, bundled) in the data dir by default, or PostgreSQL
//! (`serve --store postgres://...`), with versioned schema migrations for both. It holds what must survive a SIGKILL: registrations, releases, update jobs with each device's
//! progress, campaigns, the audit trail, and settings such as the generated admin token. Every
//! write is one transaction; WAL mode keeps committed transactions across a crash of the process.
//! The admin token is a secret: the database files are 0600 in a 0700 data dir (on Unix).
//! Release files stay in the data dir with either backend.
//!
//! - `db`: one connection to either backend with rusqlite-shaped calls, so each query is
//!   written once (`?N` parameters, rusqlite values in and out).
//! - `migrations`: every table's schema, one migration per version, in order; PostgreSQL runs
//!   the same list in its types, plus its own additions. The store owns all of them; feature
//!   modules only query.
//! - this module: opening, settings, registrations, releases, the audit trail.
//! - `jobs`: the update-job tables.
//! - `credentials`: the devices' DTLS pre-shared keys.
//! - `observations`: the observations the nodes made, for a node a device moved to.
//! - The campaign tables are queried by `campaign::db` (more `impl Store` there), which depends
//!   on the store and never the other way round.

#[cfg(test)]
pub(crate) mod both;
mod credentials;
pub(crate) mod db;
mod jobs;
mod migrations;
mod observations;
mod oscore;
#[cfg(test)]
#[path = "../../tests/support/pg.rs"]
#[allow(dead_code)]
pub(crate) mod pg_cluster;
mod private;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};

pub(crate) use db::{Conn, Optional};
use serde::Serialize;

pub use credentials::CredentialRecord;
pub use jobs::{AuditRecord, JobDeviceRecord, JobRecord};
use migrations::migrate;
pub use observations::{ObservationRecord, token_hex};
pub use oscore::OscoreRecord;

/// A store failure; the text names the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("PostgreSQL error: {0}")]
    Postgres(#[from] postgres::Error),
    /// `--store` names no database this build can open, or the server does not answer.
    #[error("{0}")]
    Connect(String),
    #[error(
        "the database was written by a newer otafleet (schema {found}, this build knows {known}); upgrade the server"
    )]
    TooNew { found: i64, known: i64 },
    #[error("{0} already exists")]
    Exists(String),
    /// An endpoint has an unfinished update job already (this one).
    #[error("{0} already has an update job running (job {1})")]
    JobBusy(String, i64),
    /// A JSON column (a campaign's target or waves) that does not encode or decode.
    #[error("bad JSON in the database: {0}")]
    Json(#[from] serde_json::Error),
    /// The data dir or a database file could not be made private.
    #[error("cannot restrict the permissions of {0}: {1}")]
    Permissions(String, std::io::Error),
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
    /// The node that heard the device last (`serve --node-id`); None in rows written before
    /// schema 9.
    pub owner_node: Option<String>,
}

/// A firmware release as stored. `kind` is `suit`, `plain` or `delta` (issue 15): a delta release
/// serves a patch (`image_*` are the patch's) that turns the precursor into the new image.
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
    /// The largest Block2 size its manifest and image are served in (`firmware add
    /// --max-block-size`); none: the server's own largest.
    pub max_block_size: Option<u16>,
    /// A delta release's precursor: the image its patch applies to. None for a full release.
    pub precursor_sha256: Option<String>,
    pub precursor_size: Option<u64>,
    /// A delta release's new image (what the device runs after it). None for a full release,
    /// whose new image is its image.
    pub new_image_sha256: Option<String>,
    pub new_image_size: Option<u64>,
}

/// The kind of a delta release; the table keeps `suit` (V1's CHECK) with the precursor set.
pub const KIND_DELTA: &str = "delta";

impl ReleaseRecord {
    pub fn is_delta(&self) -> bool {
        self.precursor_sha256.is_some()
    }

    /// Whether the device is sent a manifest (SUIT, full or delta) rather than a plain image.
    pub fn has_manifest(&self) -> bool {
        self.kind != "plain"
    }

    /// The digest of the image the device runs after this release: its family, shared by a
    /// full release and the deltas that make the same image.
    pub fn family_sha256(&self) -> &str {
        self.new_image_sha256
            .as_deref()
            .unwrap_or(&self.image_sha256)
    }

    /// The size of that image.
    pub fn family_size(&self) -> u64 {
        self.new_image_size.unwrap_or(self.image_size)
    }
}

/// The store: SQLite in the data dir (the default) or PostgreSQL (`serve --store postgres://...`).
/// One connection behind a mutex either way: SQLite serialises writers anyway, the critical
/// sections are single statements or short transactions, and callers stay synchronous.
pub struct Store {
    conn: Mutex<Conn>,
    /// The PostgreSQL URL, to reconnect after the server went away (None: SQLite).
    postgres_url: Option<String>,
    /// How many times the PostgreSQL connection was opened again: session advisory locks
    /// ([`Store::try_lock_campaign`]) die with a connection, so their holders check this.
    reconnects: std::sync::atomic::AtomicU64,
}

/// The expiry sweep on PostgreSQL (`?1` now, `?2` the grace, in ms): the expiry compared bare,
/// so that the index on it serves the sweep.
pub(crate) const PG_SWEEP_EXPIRED: &str =
    "DELETE FROM registrations WHERE expires_at_ms < CAST(?1 AS BIGINT) - CAST(?2 AS BIGINT)
     RETURNING endpoint";

/// The first half of the advisory lock key of a campaign (`OTAF` + 1); the second is its id.
const CAMPAIGN_LOCK: i64 = 1_330_921_799;
/// The first half of the lock taken while a job is created for an endpoint (the second is a
/// hash of its name).
const ENDPOINT_LOCK: i64 = 1_330_921_800;

/// The blocking PostgreSQL client shuts its own runtime down when dropped, which panics on a
/// tokio thread ("Cannot start a runtime from within a runtime"): a server stopped by SIGTERM,
/// or a test, drops its store there. So the connection is dropped where `off_runtime` runs.
impl Drop for Store {
    fn drop(&mut self) {
        if self.postgres_url.is_none() {
            return;
        }
        let conn = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        let Ok(placeholder) = Connection::open_in_memory() else {
            return;
        };
        let pg = std::mem::replace(conn, Conn::Sqlite(placeholder));
        let _ = off_runtime(move || {
            drop(pg);
            Ok(())
        });
    }
}

/// The registration upsert (one statement, not a DELETE and an INSERT: on PostgreSQL each
/// statement is a round trip). `owner_since_ms` moves only when the owner changes.
const UPSERT_REGISTRATION: &str =
    "INSERT INTO registrations (reg_id, endpoint, address, lifetime_s,
        lwm2m_version, binding, queue_mode, sms, objects, registered_at_ms, updated_at_ms,
        owner_node, owner_since_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
     ON CONFLICT (endpoint) DO UPDATE SET reg_id = excluded.reg_id,
        address = excluded.address, lifetime_s = excluded.lifetime_s,
        lwm2m_version = excluded.lwm2m_version, binding = excluded.binding,
        queue_mode = excluded.queue_mode, sms = excluded.sms, objects = excluded.objects,
        registered_at_ms = excluded.registered_at_ms,
        updated_at_ms = excluded.updated_at_ms, owner_node = excluded.owner_node,
        owner_since_ms = CASE
            WHEN COALESCE(registrations.owner_node, '') = COALESCE(excluded.owner_node, '')
            THEN registrations.owner_since_ms ELSE excluded.owner_since_ms END";

impl Store {
    /// Opens (or creates) `otafleet.db` in `dir` and runs the migrations it lacks. The dir is
    /// made 0700 and the database files 0600 (also those an older version left readable).
    pub fn open(dir: &Path) -> Result<Self> {
        let db = dir.join("otafleet.db");
        private::restrict(dir, &db)?;
        let conn = Connection::open(&db)?;
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
            conn: Mutex::new(Conn::Sqlite(conn)),
            postgres_url: None,
            reconnects: Default::default(),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://USER@HOST:PORT/DB`) and runs
    /// the migrations it lacks. Release files stay in the data dir, which every node must share.
    pub fn open_postgres(url: &str) -> Result<Self> {
        let url = url.to_string();
        // The blocking client runs its own runtime: never on a tokio thread.
        let conn = off_runtime(|| -> Result<Conn> {
            let mut client = postgres_connect(&url)?;
            migrations::migrate_postgres(&mut client)?;
            Ok(Conn::Postgres(Box::new(std::cell::RefCell::new(
                db::Pg::new(client),
            ))))
        })?;
        Ok(Store {
            conn: Mutex::new(conn),
            postgres_url: Some(url),
            reconnects: Default::default(),
        })
    }

    /// The PostgreSQL URL (None on SQLite): the event relay opens its own connection there.
    pub(crate) fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    /// Which backend: "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        if self.postgres_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub(crate) fn with<T: Send>(&self, f: impl FnOnce(&mut Conn) -> Result<T> + Send) -> Result<T> {
        // A panic while holding the lock leaves the database consistent (transactions roll
        // back), so a poisoned mutex is still safe to use.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(url) = &self.postgres_url else {
            return f(&mut conn);
        };
        let conn = &mut *conn;
        let reconnects = &self.reconnects;
        off_runtime(move || {
            if let Conn::Postgres(pg) = conn
                && pg.get_mut().needs_reconnect()
            {
                // The server restarted or the connection broke: one new connection per call.
                *pg.get_mut() = db::Pg::new(postgres_connect(url)?);
                reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let result = f(conn);
            if let (Err(StoreError::Postgres(e)), Conn::Postgres(pg)) = (&result, &mut *conn)
                && db::loses_connection(e)
            {
                pg.get_mut().broken = true;
            }
            result
        })
    }

    /// Which PostgreSQL connection is in use: changes whenever it was opened again, which
    /// released every advisory lock the node held.
    pub fn session(&self) -> u64 {
        self.reconnects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes the right to run campaign `id` on this node: a session advisory lock on
    /// PostgreSQL, held until [`Store::unlock_campaign`] or until the connection closes (the
    /// node died: PostgreSQL releases it at once, and another node's next try gets it).
    /// Always true on SQLite, which has one node. Taking it again on the same connection
    /// is true too (PostgreSQL counts it: unlock as many times).
    pub fn try_lock_campaign(&self, id: i64) -> Result<bool> {
        if self.postgres_url.is_none() {
            return Ok(true);
        }
        self.with(|c| {
            c.query_row(
                "SELECT pg_try_advisory_lock(CAST(?1 AS INTEGER), CAST(?2 AS INTEGER))",
                params![CAMPAIGN_LOCK, id],
                |r| r.get(0),
            )
        })
    }

    /// Gives up the right to run campaign `id` (its runner ended here).
    pub fn unlock_campaign(&self, id: i64) -> Result<()> {
        if self.postgres_url.is_none() {
            return Ok(());
        }
        self.with(|c| {
            c.query_row(
                "SELECT pg_advisory_unlock(CAST(?1 AS INTEGER), CAST(?2 AS INTEGER))",
                params![CAMPAIGN_LOCK, id],
                |r| r.get::<_, bool>(0),
            )
        })?;
        Ok(())
    }

    /// The schema version in force.
    pub fn schema_version(&self) -> Result<i64> {
        self.with(|c| match c {
            Conn::Sqlite(c) => Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?),
            Conn::Postgres(_) => {
                c.query_row("SELECT version FROM schema_version", params![], |r| {
                    r.get(0)
                })
            }
        })
    }

    // ---- settings ----

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
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
    /// When the row is new or its owner changes (a takeover), `now_ms` becomes its `owner_since_ms`.
    /// Returns the node that owned the row before when that was another node than the record's
    /// (the device registered or spoke through this node while another held it), else None.
    pub fn put_registration(&self, r: &RegistrationRecord, now_ms: i64) -> Result<Option<String>> {
        let postgres = self.postgres_url.is_some();
        self.with(|c| {
            let values = params![
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
                r.updated_at_ms,
                r.owner_node,
                now_ms
            ];
            let before: Option<String> = if postgres {
                // One round trip, as this runs for every Register and Update: the CTE reads the
                // row as it was before the upsert (the statement's one snapshot).
                c.query_row(
                    &format!(
                        "WITH old AS (SELECT owner_node FROM registrations WHERE endpoint = ?2)
                         {UPSERT_REGISTRATION} RETURNING (SELECT owner_node FROM old)"
                    ),
                    values,
                    |row| row.get(0),
                )?
            } else {
                let before = c
                    .query_row(
                        "SELECT owner_node FROM registrations WHERE endpoint = ?1",
                        [&r.endpoint],
                        |row| row.get(0),
                    )
                    .optional()?
                    .flatten();
                c.execute(UPSERT_REGISTRATION, values)?;
                before
            };
            Ok(before.filter(|b| Some(b) != r.owner_node.as_ref()))
        })
    }

    /// Removes a registration; true if it existed.
    pub fn delete_registration(&self, reg_id: &str) -> Result<bool> {
        self.with(|c| Ok(c.execute("DELETE FROM registrations WHERE reg_id = ?1", [reg_id])? > 0))
    }

    pub fn registrations(&self) -> Result<Vec<RegistrationRecord>> {
        self.query_registrations("ORDER BY endpoint", "")
    }

    /// The registration with id `reg_id`, whichever node wrote it (a node taking a device over).
    pub fn registration_by_id(&self, reg_id: &str) -> Result<Option<RegistrationRecord>> {
        Ok(self.query_registrations("WHERE reg_id = ?1", reg_id)?.pop())
    }

    /// The registration of `endpoint`, whichever node wrote it.
    pub fn registration_of(&self, endpoint: &str) -> Result<Option<RegistrationRecord>> {
        Ok(self
            .query_registrations("WHERE endpoint = ?1", endpoint)?
            .pop())
    }

    /// The registration last heard from `address` (`ip:port`), whichever node wrote it.
    pub fn registration_at(&self, address: &str) -> Result<Option<RegistrationRecord>> {
        Ok(self
            .query_registrations("WHERE address = ?1 ORDER BY updated_at_ms", address)?
            .pop())
    }

    /// Deletes the registrations whose lifetime plus `grace_ms` ran out before `now_ms`, whoever
    /// owns them (a node that died leaves its devices' rows behind); their endpoints. One
    /// statement: nodes sweeping at once each delete a row at most once, so none is reported
    /// twice.
    pub fn delete_expired_registrations(&self, now_ms: i64, grace_ms: i64) -> Result<Vec<String>> {
        self.with(|c| {
            // PostgreSQL keeps the expiry as an indexed column: compare it bare so that the
            // sweep reads the index, not every row. SQLite has no such column (one node).
            let sql = match c {
                Conn::Postgres(_) => PG_SWEEP_EXPIRED,
                Conn::Sqlite(_) => {
                    "DELETE FROM registrations WHERE updated_at_ms + lifetime_s * 1000 + ?2 < ?1
                     RETURNING endpoint"
                }
            };
            let mut stmt = c.prepare(sql)?;
            let rows = stmt.query_map(params![now_ms, grace_ms], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// Deletes the registration `reg_id` if `node` still owns it (or nobody does): a node whose
    /// device moved to another node must not delete the row the other one keeps fresh.
    pub fn delete_registration_owned(&self, reg_id: &str, node: &str) -> Result<bool> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM registrations WHERE reg_id = ?1 AND (owner_node IS NULL OR owner_node = ?2)",
                [reg_id, node],
            )? > 0)
        })
    }

    /// The ids of the jobs from `from_id` on whose cancellation was asked (on any node).
    pub fn cancelled_jobs_from(&self, from_id: i64) -> Result<Vec<i64>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT id FROM jobs WHERE cancel_requested <> 0 AND id >= ?1")?;
            let rows = stmt.query_map([from_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
        })
    }

    /// Records that `node` is alive at `now_ms` with its admin API at `api_url`.
    pub fn node_heartbeat(&self, node: &str, api_url: &str, now_ms: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO nodes (node_id, api_url, heartbeat_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(node_id) DO UPDATE SET api_url = excluded.api_url,
                    heartbeat_ms = excluded.heartbeat_ms",
                params![node, api_url, now_ms],
            )?;
            Ok(())
        })
    }

    /// The admin API of `node`, if it said it was alive at `since_ms` or later.
    pub fn node_api(&self, node: &str, since_ms: i64) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT api_url FROM nodes WHERE node_id = ?1 AND heartbeat_ms >= ?2",
                params![node, since_ms],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// The endpoint, id and owner of each registration whose owner changed (or which was
    /// written first) at `since_ms` or later: what a node compares its memory with to find the
    /// devices another node took over. Reads the `owner_since_ms` index, not every row.
    pub fn owners_changed_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, Option<String>)>> {
        self.with(|c| {
            let mut stmt = c.prepare(OWNERS_CHANGED_SINCE)?;
            let rows = stmt.query_map([since_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn query_registrations(&self, tail: &str, p: &str) -> Result<Vec<RegistrationRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT reg_id, endpoint, address, lifetime_s, lwm2m_version, binding, queue_mode, sms, objects,
                        registered_at_ms, updated_at_ms, owner_node FROM registrations {tail}"
            ))?;
            let params: &[&str] = if tail.contains("?1") { &[p] } else { &[] };
            let rows = stmt.query_map(params, |r| {
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
                    owner_node: r.get(11)?,
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
                "INSERT INTO releases (id, kind, version, sequence_number, image_sha256, image_size,
                    manifest_sha256, manifest_size, vendor_id, class_id, image_uri, added_at_ms, max_block_size,
                    precursor_sha256, precursor_size, new_image_sha256, new_image_size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
                 ON CONFLICT DO NOTHING",
                params![
                    r.id,
                    // The precursor columns say "delta"; the kind column keeps V1's values.
                    if r.kind == KIND_DELTA { "suit" } else { r.kind.as_str() },
                    r.version,
                    r.sequence_number.map(|s| s as i64),
                    r.image_sha256,
                    r.image_size as i64,
                    r.manifest_sha256,
                    r.manifest_size.map(|s| s as i64),
                    r.vendor_id,
                    r.class_id,
                    r.image_uri,
                    r.added_at_ms,
                    r.max_block_size,
                    r.precursor_sha256,
                    r.precursor_size.map(|s| s as i64),
                    r.new_image_sha256,
                    r.new_image_size.map(|s| s as i64)
                ],
            )?;
            if n == 0 { Err(StoreError::Exists(format!("release {}", r.id))) } else { Ok(()) }
        })
    }

    /// Sets (or clears) a release's largest Block2 size; false if there is no such release.
    pub fn set_release_max_block_size(&self, id: &str, size: Option<u16>) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE releases SET max_block_size = ?2 WHERE id = ?1",
                params![id, size],
            )?;
            Ok(n == 1)
        })
    }

    pub fn release(&self, id: &str) -> Result<Option<ReleaseRecord>> {
        Ok(self
            .query_releases("WHERE id = ?1", &[id])?
            .into_iter()
            .next())
    }

    pub fn releases(&self) -> Result<Vec<ReleaseRecord>> {
        self.query_releases("ORDER BY added_at_ms, id", &[])
    }

    /// The release an operator names: by id, else by version (the one full release of that
    /// version; with several, the id is needed). Update jobs and campaigns take either.
    pub fn release_by_id_or_version(&self, given: &str) -> Result<Option<ReleaseRecord>> {
        if let Some(r) = self.release(given)? {
            return Ok(Some(r));
        }
        let mut full = self.query_releases(
            "WHERE version = ?1 AND precursor_sha256 IS NULL ORDER BY added_at_ms, id",
            &[given],
        )?;
        Ok(if full.len() == 1 { full.pop() } else { None })
    }

    /// The releases that make the image with this digest: the full release(s) and every delta.
    pub fn releases_of_family(&self, new_image_sha256: &str) -> Result<Vec<ReleaseRecord>> {
        self.query_releases(
            "WHERE (image_sha256 = ?1 AND precursor_sha256 IS NULL) OR new_image_sha256 = ?1
             ORDER BY added_at_ms, id",
            &[new_image_sha256],
        )
    }

    fn query_releases(&self, tail: &str, p: &[&str]) -> Result<Vec<ReleaseRecord>> {
        self.with(|c| {
            let sql = format!(
                "SELECT id, kind, version, sequence_number, image_sha256, image_size, manifest_sha256, manifest_size,
                        vendor_id, class_id, image_uri, added_at_ms, max_block_size,
                        precursor_sha256, precursor_size, new_image_sha256, new_image_size
                 FROM releases {tail}"
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(p, |r| {
                let precursor_sha256: Option<String> = r.get(13)?;
                let kind: String = r.get(1)?;
                Ok(ReleaseRecord {
                    id: r.get(0)?,
                    kind: if precursor_sha256.is_some() { KIND_DELTA.into() } else { kind },
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
                    max_block_size: r.get::<_, Option<i64>>(12)?.and_then(|v| u16::try_from(v).ok()),
                    precursor_sha256,
                    precursor_size: r.get::<_, Option<i64>>(14)?.map(|s| s as u64),
                    new_image_sha256: r.get(15)?,
                    new_image_size: r.get::<_, Option<i64>>(16)?.map(|s| s as u64),
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

/// Runs `f` where the blocking PostgreSQL client may run (it would panic on a runtime's
/// thread): here outside a tokio runtime; on a multi-thread runtime's worker, here too after
/// telling tokio to move its other tasks away (`block_in_place`); else (a current-thread
/// runtime, as in many tests) on a scoped thread of its own.
/// The query of [`Store::owners_changed_since`] (its plan is tested on PostgreSQL).
pub(crate) const OWNERS_CHANGED_SINCE: &str =
    "SELECT endpoint, reg_id, owner_node FROM registrations WHERE owner_since_ms >= ?1";

fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

/// A PostgreSQL connection, or an error that says where (never the password) and what to check.
fn postgres_connect(url: &str) -> Result<postgres::Client> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Connect(format!("bad PostgreSQL URL {:?}: {e}", redact(url))))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.connect(postgres::NoTls).map_err(|e| {
        StoreError::Connect(format!(
            "cannot connect to PostgreSQL at {}: {e}; is it running?",
            postgres_place(&config)
        ))
    })
}

/// `host:port/db` of a connection config, for messages.
fn postgres_place(config: &postgres::Config) -> String {
    use postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

/// A URL with its password, if any, replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// Appends an audit line inside `tx` (the job and campaign queries record their changes with it).
pub(crate) fn audit(
    tx: &Conn,
    at_ms: i64,
    job_id: Option<i64>,
    endpoint: Option<&str>,
    event: &str,
    detail: Option<&str>,
) -> Result<()> {
    audit_codes(tx, at_ms, job_id, endpoint, event, detail, (None, None))
}

/// [`audit`] with the Object 5 State and Update Result the line records.
pub(crate) fn audit_codes(
    tx: &Conn,
    at_ms: i64,
    job_id: Option<i64>,
    endpoint: Option<&str>,
    event: &str,
    detail: Option<&str>,
    (state, result): (Option<i64>, Option<i64>),
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit (at_ms, job_id, endpoint, event, detail, fw_state, fw_result)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![at_ms, job_id, endpoint, event, detail, state, result],
    )?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::migrations::MIGRATIONS;
    use super::*;

    #[test]
    fn the_evidence_of_an_image_served_is_per_release_endpoint_and_ip_and_survives_reopening() {
        crate::store::both::on_sqlite(the_evidence_of_an_image_served_is_per_release_endpoint_and_ip_and_survives_reopening_on)
    }

    pub(crate) fn the_evidence_of_an_image_served_is_per_release_endpoint_and_ip_and_survives_reopening_on(
        open: crate::store::both::Open<'_>,
    ) {
        let s = open();
        s.note_image_served("r1", "dev", "fd00::5", 1).unwrap();
        s.note_image_served("r1", "dev", "fd00::5", 2).unwrap();
        drop(s);
        let s = open();
        assert!(s.image_served("r1", "dev", "fd00::5").unwrap());
        for (r, ep, ip) in [
            ("r2", "dev", "fd00::5"),
            ("r1", "other", "fd00::5"),
            ("r1", "dev", "fd00::6"),
        ] {
            assert!(!s.image_served(r, ep, ip).unwrap(), "{r} {ep} {ip}");
        }
    }

    pub(crate) fn reg(ep: &str, id: &str) -> RegistrationRecord {
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
            owner_node: Some("node-a".into()),
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
            max_block_size: None,
            precursor_sha256: None,
            precursor_size: None,
            new_image_sha256: None,
            new_image_size: None,
        }
    }

    #[test]
    fn migrations_run_once_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.put_registration(&reg("dev-1", "r1"), 1).unwrap();
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
        crate::store::both::on_sqlite(re_registration_replaces_the_endpoint_on)
    }

    pub(crate) fn re_registration_replaces_the_endpoint_on(open: crate::store::both::Open<'_>) {
        let s = open();
        s.put_registration(&reg("dev-1", "r1"), 1).unwrap();
        s.put_registration(&reg("dev-1", "r2"), 1).unwrap();
        let all = s.registrations().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].reg_id, "r2");
        assert!(s.delete_registration("r2").unwrap());
        assert!(!s.delete_registration("r2").unwrap());
    }

    #[test]
    fn the_owner_node_is_kept_and_a_node_takes_over_by_id_or_address() {
        crate::store::both::on_sqlite(
            the_owner_node_is_kept_and_a_node_takes_over_by_id_or_address_on,
        )
    }

    pub(crate) fn the_owner_node_is_kept_and_a_node_takes_over_by_id_or_address_on(
        open: crate::store::both::Open<'_>,
    ) {
        let s = open();
        // A new row, and a row written again by its owner: no other owner before.
        assert_eq!(s.put_registration(&reg("dev-1", "r1"), 1).unwrap(), None);
        assert_eq!(s.put_registration(&reg("dev-1", "r1"), 1).unwrap(), None);
        let mut other = reg("dev-2", "r2");
        other.address = "127.0.0.1:7000".into();
        other.updated_at_ms = 100_000;
        assert_eq!(s.put_registration(&other, 1).unwrap(), None);
        let found = s.registration_by_id("r1").unwrap().unwrap();
        assert_eq!(found.owner_node.as_deref(), Some("node-a"));
        assert_eq!(
            s.registration_at("127.0.0.1:7000").unwrap(),
            Some(other.clone())
        );
        assert_eq!(s.registration_of("dev-2").unwrap(), Some(other.clone()));
        assert_eq!(s.registration_by_id("nope").unwrap(), None);
        // Node B took dev-2 over (the write names the owner before): node A may no longer
        // delete its row, B may.
        other.owner_node = Some("node-b".into());
        assert_eq!(
            s.put_registration(&other, 1).unwrap().as_deref(),
            Some("node-a")
        );
        assert!(!s.delete_registration_owned("r2", "node-a").unwrap());
        assert!(s.delete_registration_owned("r2", "node-b").unwrap());
        s.put_registration(&other, 1).unwrap();
        // dev-1 (updated at 1, 300 s) is past its lifetime plus 30 s at 400 s; dev-2 is not.
        assert!(
            s.delete_expired_registrations(330_000, 30_000)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.delete_expired_registrations(400_000, 30_000).unwrap(),
            ["dev-1"]
        );
        assert!(
            s.delete_expired_registrations(400_000, 30_000)
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.registrations().unwrap(), vec![other]);
    }

    #[test]
    fn only_owners_changed_since_a_time_are_read() {
        crate::store::both::on_sqlite(only_owners_changed_since_a_time_are_read_on)
    }

    /// The sweep's query: rows whose owner changed at or after the time asked, not the others,
    /// and an Update by the same owner does not count as a change.
    pub(crate) fn only_owners_changed_since_a_time_are_read_on(open: crate::store::both::Open<'_>) {
        let s = open();
        let (a, mut b) = (reg("dev-a", "ra"), reg("dev-b", "rb"));
        s.put_registration(&a, 1_000).unwrap();
        s.put_registration(&b, 1_000).unwrap();
        let mut all = s.owners_changed_since(1_000).unwrap();
        all.sort();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(s.owners_changed_since(1_001).unwrap().is_empty());
        // node-a's Updates of dev-a later: the owner is the same, so no change.
        let mut later = a.clone();
        later.updated_at_ms = 50_000;
        s.put_registration(&later, 50_000).unwrap();
        // node-b takes dev-b over at 60 s.
        b.owner_node = Some("node-b".into());
        s.put_registration(&b, 60_000).unwrap();
        let moved = s.owners_changed_since(55_000).unwrap();
        assert_eq!(
            moved,
            [(
                "dev-b".to_string(),
                "rb".to_string(),
                Some("node-b".to_string())
            )]
        );
        // node-b's own Updates keep the time of the takeover.
        s.put_registration(&b, 90_000).unwrap();
        assert_eq!(s.owners_changed_since(60_000).unwrap(), moved);
        assert!(s.owners_changed_since(60_001).unwrap().is_empty());
        // A row whose owner was cleared is a change as well.
        b.owner_node = None;
        s.put_registration(&b, 95_000).unwrap();
        assert_eq!(s.owners_changed_since(95_000).unwrap().len(), 1);
    }

    #[test]
    fn release_ids_are_unique() {
        crate::store::both::on_sqlite(release_ids_are_unique_on)
    }

    pub(crate) fn release_ids_are_unique_on(open: crate::store::both::Open<'_>) {
        let s = open();
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
        crate::store::both::on_sqlite(job_progress_and_audit_are_saved_together_on)
    }

    pub(crate) fn job_progress_and_audit_are_saved_together_on(open: crate::store::both::Open<'_>) {
        let s = open();
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
        assert_eq!(s.cancelled_jobs_from(id).unwrap(), [id]);
        assert!(s.cancelled_jobs_from(id + 1).unwrap().is_empty());
        // A job for an unknown release is refused by the foreign key.
        assert!(s.create_job("nope", &["d3".into()], 1).is_err());
        // One unfinished job per device, whichever node asks: d2's is still pending, d1's done.
        match s.create_job("aa", &["d1".into(), "d2".into()], 40) {
            Err(StoreError::JobBusy(ep, job)) => assert_eq!((ep.as_str(), job), ("d2", id)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.jobs().unwrap().len(),
            1,
            "nothing of the refused job stays"
        );
        assert!(s.create_job("aa", &["d1".into()], 50).is_ok());
    }

    #[test]
    fn settings_round_trip() {
        crate::store::both::on_sqlite(settings_round_trip_on)
    }

    pub(crate) fn settings_round_trip_on(open: crate::store::both::Open<'_>) {
        let s = open();
        assert_eq!(s.setting("admin_token").unwrap(), None);
        s.set_setting("admin_token", "t1").unwrap();
        s.set_setting("admin_token", "t2").unwrap();
        assert_eq!(s.setting("admin_token").unwrap().as_deref(), Some("t2"));
    }
}

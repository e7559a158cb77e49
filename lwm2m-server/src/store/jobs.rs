//! The update-job tables: a job per release rollout (`jobs`), one row per device with where its
//! Object 5 procedure is (`job_devices`), and the job's lines of the audit trail.

use rusqlite::params;

use crate::store::Optional;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::{Result, Store, audit, audit_codes};
use crate::status::{JobDeviceStatus, JobStep};
use crate::words;

/// An update job as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub release_id: String,
    pub created_at_ms: i64,
    pub cancel_requested: bool,
}

/// One device's part of a job as stored. In JSON, `state` and `result` (Object 5's numbers) have
/// `state_name` and `result_name` beside them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobDeviceRecord {
    pub job_id: i64,
    pub endpoint: String,
    pub status: JobDeviceStatus,
    /// Where the job's procedure is for this device, so that it resumes after a restart.
    pub step: JobStep,
    /// Object 5 State last seen (/5/0/3).
    pub fw_state: Option<i64>,
    /// Update Result last seen (/5/0/5).
    pub fw_result: Option<i64>,
    pub pkg_version: Option<String>,
    pub delivery: Option<String>,
    pub attempts: u32,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Whether the server served this device the image's last block (pull) or the device took
    /// the whole push: without it, no Result 1 counts.
    pub image_served: bool,
    /// The release this device was sent (issue 15): the job's target, or a delta release of
    /// its family; None until the job chose.
    pub sent_release_id: Option<String>,
    /// Bytes a delta saved this device against the full image.
    pub bytes_saved: Option<u64>,
    /// Why the device was sent the full image after a delta (once per job device).
    pub fallback: Option<String>,
    pub error: Option<String>,
    pub started_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

impl Serialize for JobDeviceRecord {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut o = s.serialize_struct("JobDeviceRecord", 21)?;
        o.serialize_field("job_id", &self.job_id)?;
        o.serialize_field("endpoint", &self.endpoint)?;
        o.serialize_field("status", &self.status)?;
        o.serialize_field("step", &self.step)?;
        o.serialize_field("state", &self.fw_state)?;
        o.serialize_field("state_name", &words::state_name(self.fw_state))?;
        o.serialize_field("result", &self.fw_result)?;
        o.serialize_field("result_name", &words::result_name(self.fw_result))?;
        o.serialize_field("pkg_version", &self.pkg_version)?;
        o.serialize_field("delivery", &self.delivery)?;
        o.serialize_field("attempts", &self.attempts)?;
        o.serialize_field("bytes_done", &self.bytes_done)?;
        o.serialize_field("bytes_total", &self.bytes_total)?;
        o.serialize_field("image_served", &self.image_served)?;
        o.serialize_field("sent_release_id", &self.sent_release_id)?;
        // "delta" or "full" once the job chose what to send.
        let sent = self.sent_release_id.as_ref().map(|_| {
            if self.bytes_saved.is_some() {
                "delta"
            } else {
                "full"
            }
        });
        o.serialize_field("sent", &sent)?;
        o.serialize_field("bytes_saved", &self.bytes_saved)?;
        o.serialize_field("fallback", &self.fallback)?;
        o.serialize_field("error", &self.error)?;
        o.serialize_field("started_at_ms", &self.started_at_ms)?;
        o.serialize_field("updated_at_ms", &self.updated_at_ms)?;
        o.end()
    }
}

/// One line of the audit trail: `detail` in words for people, and for a job device's line the
/// Object 5 State and Update Result it recorded, as numbers and names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    pub job_id: Option<i64>,
    pub endpoint: Option<String>,
    pub event: String,
    /// The event in words (`object5` → "Device reported").
    pub what: &'static str,
    pub detail: Option<String>,
    pub state: Option<i64>,
    pub state_name: Option<&'static str>,
    pub result: Option<i64>,
    pub result_name: Option<&'static str>,
}

impl Store {
    /// Creates a job for `endpoints`, each pending, and returns its id.
    pub fn create_job(&self, release_id: &str, endpoints: &[String], now_ms: i64) -> Result<i64> {
        self.with(|c| {
            let tx = c.transaction()?;
            let id: i64 = tx.query_row(
                "INSERT INTO jobs (release_id, created_at_ms) VALUES (?1, ?2) RETURNING id",
                params![release_id, now_ms],
                |r| r.get(0),
            )?;
            for ep in endpoints {
                // Nodes sharing PostgreSQL may start jobs for one device at once (two campaign
                // runners in the moment one loses its lock): a lock per endpoint until the
                // commit, and the check under it, let one job per device be unfinished.
                if tx.is_postgres() {
                    // execute: the function returns void, which no row reader takes.
                    tx.execute(
                        "SELECT pg_advisory_xact_lock(CAST(?1 AS INTEGER), hashtext(?2))",
                        params![super::ENDPOINT_LOCK, ep],
                    )?;
                }
                let [a, b, c] = JobDeviceStatus::FINAL;
                let busy: Option<i64> = tx
                    .query_row(
                        "SELECT job_id FROM job_devices WHERE endpoint = ?1
                           AND status NOT IN (?2, ?3, ?4) LIMIT 1",
                        params![ep, a, b, c],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(job) = busy {
                    return Err(super::StoreError::JobBusy(ep.clone(), job));
                }
                tx.execute(
                    "INSERT INTO job_devices (job_id, endpoint, status, step, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, ep, JobDeviceStatus::Pending, JobStep::Start, now_ms],
                )?;
                audit(
                    &tx,
                    now_ms,
                    Some(id),
                    Some(ep),
                    "job-created",
                    Some(&format!("release {release_id}")),
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
    }

    /// Saves one device's progress and, in the same transaction, the audit line describing it.
    pub fn save_job_device(
        &self,
        d: &JobDeviceRecord,
        event: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE job_devices SET status = ?3, step = ?4, fw_state = ?5, fw_result = ?6, pkg_version = ?7,
                    delivery = ?8, attempts = ?9, bytes_done = ?10, bytes_total = ?11, error = ?12,
                    started_at_ms = ?13, updated_at_ms = ?14, image_served = ?15,
                    sent_release_id = ?16, bytes_saved = ?17, fallback = ?18
                 WHERE job_id = ?1 AND endpoint = ?2",
                params![
                    d.job_id,
                    d.endpoint,
                    d.status,
                    d.step,
                    d.fw_state,
                    d.fw_result,
                    d.pkg_version,
                    d.delivery,
                    d.attempts,
                    d.bytes_done as i64,
                    d.bytes_total as i64,
                    d.error,
                    d.started_at_ms,
                    d.updated_at_ms,
                    d.image_served,
                    d.sent_release_id,
                    d.bytes_saved.map(|b| b as i64),
                    d.fallback
                ],
            )?;
            audit_codes(
                &tx,
                d.updated_at_ms,
                Some(d.job_id),
                Some(&d.endpoint),
                event,
                detail,
                (d.fw_state, d.fw_result),
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Saves download progress without an audit line (it changes with every block).
    pub fn save_job_progress(
        &self,
        job_id: i64,
        endpoint: &str,
        done: u64,
        total: u64,
        now_ms: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE job_devices SET bytes_done = ?3, bytes_total = ?4, updated_at_ms = ?5
                 WHERE job_id = ?1 AND endpoint = ?2",
                params![job_id, endpoint, done as i64, total as i64, now_ms],
            )?;
            Ok(())
        })
    }

    /// Adds an audit line (no State or Result) to every job in which `endpoint` has not reached
    /// an end state; returns how many.
    pub fn audit_jobs_in_flight(
        &self,
        endpoint: &str,
        now_ms: i64,
        event: &str,
        detail: &str,
    ) -> Result<usize> {
        let [a, b, c] = JobDeviceStatus::FINAL;
        self.with(|conn| {
            conn.execute(
                "INSERT INTO audit (at_ms, job_id, endpoint, event, detail)
                 SELECT ?1, job_id, endpoint, ?2, ?3 FROM job_devices
                 WHERE endpoint = ?4 AND status NOT IN (?5, ?6, ?7)",
                params![now_ms, event, detail, endpoint, a, b, c],
            )
        })
    }

    pub fn request_cancel(&self, job_id: i64, now_ms: i64) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1",
                [job_id],
            )?;
            if n > 0 {
                audit(&tx, now_ms, Some(job_id), None, "cancel-requested", None)?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    pub fn job(&self, id: i64) -> Result<Option<(JobRecord, Vec<JobDeviceRecord>)>> {
        let Some(job) = self.query_jobs("WHERE id = ?1", [id])?.into_iter().next() else {
            return Ok(None);
        };
        let devices = self.job_devices("WHERE job_id = ?1 ORDER BY endpoint", [id])?;
        Ok(Some((job, devices)))
    }

    /// Records that the last block of `release_id`'s image was served to `endpoint` at `ip`.
    pub fn note_image_served(
        &self,
        release_id: &str,
        endpoint: &str,
        ip: &str,
        now_ms: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO images_served (release_id, endpoint, ip, at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (release_id, endpoint, ip) DO UPDATE SET at_ms = excluded.at_ms",
                params![release_id, endpoint, ip, now_ms],
            )?;
            Ok(())
        })
    }

    /// Whether the last block of `release_id`'s image was ever served to `endpoint` at `ip`.
    pub fn image_served(&self, release_id: &str, endpoint: &str, ip: &str) -> Result<bool> {
        self.with(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM images_served
                 WHERE release_id = ?1 AND endpoint = ?2 AND ip = ?3)",
                [release_id, endpoint, ip],
                |r| r.get(0),
            )
        })
    }

    /// The release that last updated `endpoint` successfully (what it was sent: a delta or the
    /// full image), if any: the image it then ran, known by digest.
    pub fn last_release_installed(&self, endpoint: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT COALESCE(d.sent_release_id, j.release_id)
                 FROM job_devices d JOIN jobs j ON j.id = d.job_id
                 WHERE d.endpoint = ?1 AND d.status = ?2
                 ORDER BY d.updated_at_ms DESC, d.job_id DESC LIMIT 1",
                params![endpoint, JobDeviceStatus::Succeeded],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn job_exists(&self, id: i64) -> Result<bool> {
        Ok(!self.query_jobs("WHERE id = ?1", [id])?.is_empty())
    }

    pub fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.query_jobs("ORDER BY id", [0i64; 0])
    }

    /// Device entries of jobs that have not reached an end state (to resume after a restart).
    pub fn unfinished_job_devices(&self) -> Result<Vec<JobDeviceRecord>> {
        self.job_devices(
            "WHERE status NOT IN (?1, ?2, ?3) ORDER BY job_id, endpoint",
            JobDeviceStatus::FINAL,
        )
    }

    fn query_jobs<P: super::db::Params + Send>(&self, tail: &str, p: P) -> Result<Vec<JobRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT id, release_id, created_at_ms, cancel_requested FROM jobs {tail}"
            ))?;
            let rows = stmt.query_map(p, |r| {
                Ok(JobRecord {
                    id: r.get(0)?,
                    release_id: r.get(1)?,
                    created_at_ms: r.get(2)?,
                    cancel_requested: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn job_devices<P: super::db::Params + Send>(
        &self,
        tail: &str,
        p: P,
    ) -> Result<Vec<JobDeviceRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT job_id, endpoint, status, step, fw_state, fw_result, pkg_version, delivery, attempts,
                        bytes_done, bytes_total, error, started_at_ms, updated_at_ms, image_served,
                        sent_release_id, bytes_saved, fallback
                 FROM job_devices {tail}"
            ))?;
            let rows = stmt.query_map(p, |r| {
                Ok(JobDeviceRecord {
                    job_id: r.get(0)?,
                    endpoint: r.get(1)?,
                    status: r.get(2)?,
                    step: r.get(3)?,
                    fw_state: r.get(4)?,
                    fw_result: r.get(5)?,
                    pkg_version: r.get(6)?,
                    delivery: r.get(7)?,
                    attempts: r.get(8)?,
                    bytes_done: r.get::<_, i64>(9)? as u64,
                    bytes_total: r.get::<_, i64>(10)? as u64,
                    error: r.get(11)?,
                    started_at_ms: r.get(12)?,
                    updated_at_ms: r.get(13)?,
                    image_served: r.get(14)?,
                    sent_release_id: r.get(15)?,
                    bytes_saved: r.get::<_, Option<i64>>(16)?.map(|b| b as u64),
                    fallback: r.get(17)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The audit trail of a job, oldest first.
    pub fn job_audit(&self, job_id: i64) -> Result<Vec<AuditRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, at_ms, job_id, endpoint, event, detail, fw_state, fw_result
                 FROM audit WHERE job_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([job_id], |r| {
                let (state, result) = (r.get(6)?, r.get(7)?);
                Ok(AuditRecord {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    job_id: r.get(2)?,
                    endpoint: r.get(3)?,
                    what: words::audit_event(&r.get::<_, String>(4)?),
                    event: r.get(4)?,
                    detail: r.get(5)?,
                    state,
                    state_name: words::state_name(state),
                    result,
                    result_name: words::result_name(result),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

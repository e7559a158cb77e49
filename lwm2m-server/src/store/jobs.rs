//! The update-job tables: a job per release rollout (`jobs`), one row per device with where its
//! Object 5 procedure is (`job_devices`), and the job's lines of the audit trail.

use rusqlite::params;
use serde::Serialize;

use super::{Result, Store, audit};
use crate::status::{JobDeviceStatus, JobStep};

/// An update job as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub release_id: String,
    pub created_at_ms: i64,
    pub cancel_requested: bool,
}

/// One device's part of a job as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobDeviceRecord {
    pub job_id: i64,
    pub endpoint: String,
    pub status: JobDeviceStatus,
    /// Where the job's procedure is for this device, so that it resumes after a restart.
    pub step: JobStep,
    /// Object 5 State last seen (/5/0/3).
    #[serde(rename = "state")]
    pub fw_state: Option<i64>,
    /// Update Result last seen (/5/0/5).
    #[serde(rename = "result")]
    pub fw_result: Option<i64>,
    pub pkg_version: Option<String>,
    pub delivery: Option<String>,
    pub attempts: u32,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub error: Option<String>,
    pub started_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

/// One line of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    pub job_id: Option<i64>,
    pub endpoint: Option<String>,
    pub event: String,
    pub detail: Option<String>,
}

impl Store {
    /// Creates a job for `endpoints`, each pending, and returns its id.
    pub fn create_job(&self, release_id: &str, endpoints: &[String], now_ms: i64) -> Result<i64> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO jobs (release_id, created_at_ms) VALUES (?1, ?2)",
                params![release_id, now_ms],
            )?;
            let id = tx.last_insert_rowid();
            for ep in endpoints {
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
                    started_at_ms = ?13, updated_at_ms = ?14
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
                    d.updated_at_ms
                ],
            )?;
            audit(&tx, d.updated_at_ms, Some(d.job_id), Some(&d.endpoint), event, detail)?;
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

    pub fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.query_jobs("ORDER BY id", [])
    }

    /// Device entries of jobs that have not reached an end state (to resume after a restart).
    pub fn unfinished_job_devices(&self) -> Result<Vec<JobDeviceRecord>> {
        self.job_devices(
            "WHERE status NOT IN (?1, ?2, ?3) ORDER BY job_id, endpoint",
            JobDeviceStatus::FINAL,
        )
    }

    fn query_jobs<P: rusqlite::Params>(&self, tail: &str, p: P) -> Result<Vec<JobRecord>> {
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

    fn job_devices<P: rusqlite::Params>(&self, tail: &str, p: P) -> Result<Vec<JobDeviceRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT job_id, endpoint, status, step, fw_state, fw_result, pkg_version, delivery, attempts,
                        bytes_done, bytes_total, error, started_at_ms, updated_at_ms FROM job_devices {tail}"
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
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The audit trail of a job, oldest first.
    pub fn job_audit(&self, job_id: i64) -> Result<Vec<AuditRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, at_ms, job_id, endpoint, event, detail FROM audit WHERE job_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([job_id], |r| {
                Ok(AuditRecord {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    job_id: r.get(2)?,
                    endpoint: r.get(3)?,
                    event: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

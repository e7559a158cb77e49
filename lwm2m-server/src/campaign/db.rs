//! The campaign tables: campaigns, their waves, one row per target device (its wave, mesh,
//! outcome and timing), and a cache of what devices report (model, firmware version) for target
//! filters. Every query the runner makes per tick is indexed and touches only the current wave's
//! queued head or the devices in flight, so a campaign of 100 000 devices costs no full scan.

use rusqlite::params;

use crate::store::Optional;
use serde::Serialize;

use super::target::{DeviceInfo, TargetSpec};
use crate::status::{CampaignDeviceStatus, CampaignState, JobDeviceStatus};
use crate::store::{Result, Store, audit};

/// A campaign as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignRecord {
    pub id: i64,
    pub name: Option<String>,
    pub release_id: String,
    pub target: TargetSpec,
    /// Cumulative percentages (`wave_percents` in JSON: `waves` there is the wave list).
    #[serde(rename = "wave_percents")]
    pub waves: Vec<u32>,
    pub failure_threshold: f64,
    pub soak_ms: i64,
    pub max_concurrent: u32,
    pub max_per_mesh: u32,
    pub mesh_prefix_v6: u8,
    pub mesh_prefix_v4: u8,
    pub state: CampaignState,
    pub reason: Option<String>,
    /// Index of the wave in progress (or soaked after), 0-based.
    pub current_wave: u32,
    /// The end of the soak in progress (survives a restart).
    pub soak_until_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// One wave as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WaveRecord {
    pub wave: u32,
    /// Cumulative percentage of the target set reached at the end of this wave.
    pub percent: u32,
    pub size: u64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

/// One target device of a campaign as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CampaignDeviceRecord {
    pub endpoint: String,
    pub wave: u32,
    /// Order within the campaign (devices start in this order).
    pub position: u64,
    /// The mesh (address prefix) it was counted against when started, else when selected.
    pub mesh: Option<String>,
    pub status: CampaignDeviceStatus,
    pub job_id: Option<i64>,
    pub queued_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// The failure reason, or why it was skipped.
    pub error: Option<String>,
}

/// A new campaign for [`Store::create_campaign`].
pub struct NewCampaign<'a> {
    pub name: Option<&'a str>,
    pub release_id: &'a str,
    pub target: &'a TargetSpec,
    pub waves: &'a [u32],
    pub sizes: &'a [usize],
    pub failure_threshold: f64,
    pub soak_ms: i64,
    pub max_concurrent: u32,
    pub max_per_mesh: u32,
    pub mesh_prefix_v6: u8,
    pub mesh_prefix_v4: u8,
    pub state: CampaignState,
    /// The target devices in order, with the mesh each was on when selected.
    pub devices: &'a [(String, Option<String>)],
}

const CAMPAIGN_COLS: &str = "id, name, release_id, target, waves, failure_threshold, soak_ms, max_concurrent,
    max_per_mesh, mesh_prefix_v6, mesh_prefix_v4, state, reason, current_wave, soak_until_ms, created_at_ms,
    updated_at_ms, finished_at_ms";

const DEVICE_COLS: &str =
    "endpoint, wave, position, mesh, status, job_id, queued_at_ms, started_at_ms,
    finished_at_ms, error";

/// A campaign row. Its JSON columns (target, waves) decode in the inner result, so that a bad
/// one surfaces as [`crate::store::StoreError::Json`], not as an SQL error.
fn campaign_row(r: &crate::store::db::Row) -> rusqlite::Result<serde_json::Result<CampaignRecord>> {
    let target: String = r.get(3)?;
    let waves: String = r.get(4)?;
    let (target, waves) = match (serde_json::from_str(&target), serde_json::from_str(&waves)) {
        (Ok(target), Ok(waves)) => (target, waves),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    Ok(Ok(CampaignRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        release_id: r.get(2)?,
        target,
        waves,
        failure_threshold: r.get(5)?,
        soak_ms: r.get(6)?,
        max_concurrent: r.get(7)?,
        max_per_mesh: r.get(8)?,
        mesh_prefix_v6: r.get(9)?,
        mesh_prefix_v4: r.get(10)?,
        state: r.get(11)?,
        reason: r.get(12)?,
        current_wave: r.get(13)?,
        soak_until_ms: r.get(14)?,
        created_at_ms: r.get(15)?,
        updated_at_ms: r.get(16)?,
        finished_at_ms: r.get(17)?,
    }))
}

fn device_row(r: &crate::store::db::Row) -> rusqlite::Result<CampaignDeviceRecord> {
    Ok(CampaignDeviceRecord {
        endpoint: r.get(0)?,
        wave: r.get(1)?,
        position: r.get::<_, i64>(2)? as u64,
        mesh: r.get(3)?,
        status: r.get(4)?,
        job_id: r.get(5)?,
        queued_at_ms: r.get(6)?,
        started_at_ms: r.get(7)?,
        finished_at_ms: r.get(8)?,
        error: r.get(9)?,
    })
}

/// A device in flight whose job has ended.
#[derive(Clone, Debug)]
pub struct EndedJob {
    pub endpoint: String,
    pub wave: u32,
    pub job_id: i64,
    pub job_status: JobDeviceStatus,
    pub error: Option<String>,
}

/// Outcome counts of one wave, one field per [`CampaignDeviceStatus`], named as it is spelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub unreachable: u64,
    pub cancelled: u64,
    pub skipped: u64,
}

impl Counts {
    fn count_mut(&mut self, status: CampaignDeviceStatus) -> &mut u64 {
        match status {
            CampaignDeviceStatus::Queued => &mut self.queued,
            CampaignDeviceStatus::Running => &mut self.running,
            CampaignDeviceStatus::Succeeded => &mut self.succeeded,
            CampaignDeviceStatus::Failed => &mut self.failed,
            CampaignDeviceStatus::Unreachable => &mut self.unreachable,
            CampaignDeviceStatus::Cancelled => &mut self.cancelled,
            CampaignDeviceStatus::Skipped => &mut self.skipped,
        }
    }

    /// The devices with `status`.
    pub fn get(&self, status: CampaignDeviceStatus) -> u64 {
        // A copy, so that the one match in `count_mut` serves reading too.
        let mut counts = *self;
        *counts.count_mut(status)
    }

    pub fn add(&mut self, status: CampaignDeviceStatus, n: u64) {
        *self.count_mut(status) += n;
    }

    /// Adds every count of `other` (a wave's counts to the campaign's totals).
    pub fn add_all(&mut self, other: &Counts) {
        for &s in CampaignDeviceStatus::ALL {
            self.add(s, other.get(s));
        }
    }

    /// Devices whose update has an outcome that says something about the release.
    pub fn decided(&self) -> u64 {
        self.succeeded + self.failed
    }

    pub fn total(&self) -> u64 {
        CampaignDeviceStatus::ALL.iter().map(|&s| self.get(s)).sum()
    }
}

impl Store {
    /// Creates a campaign with its waves and devices (each queued) in one transaction.
    pub fn create_campaign(&self, c: &NewCampaign<'_>, now_ms: i64) -> Result<i64> {
        let target = serde_json::to_string(c.target)?;
        let waves = serde_json::to_string(c.waves)?;
        self.with(|conn| {
            let tx = conn.transaction()?;
            let id: i64 = tx.query_row(
                "INSERT INTO campaigns (name, release_id, target, waves, failure_threshold, soak_ms, max_concurrent,
                    max_per_mesh, mesh_prefix_v6, mesh_prefix_v4, state, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12) RETURNING id",
                params![
                    c.name,
                    c.release_id,
                    target,
                    waves,
                    c.failure_threshold,
                    c.soak_ms,
                    c.max_concurrent,
                    c.max_per_mesh,
                    c.mesh_prefix_v6,
                    c.mesh_prefix_v4,
                    c.state,
                    now_ms
                ],
                |r| r.get(0),
            )?;
            {
                let mut wave_stmt = tx.prepare(
                    "INSERT INTO campaign_waves (campaign_id, wave, percent, size) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (i, (p, s)) in c.waves.iter().zip(c.sizes).enumerate() {
                    wave_stmt.execute(params![id, i as i64, p, *s as i64])?;
                }
                let mut dev_stmt = tx.prepare(
                    "INSERT INTO campaign_devices (campaign_id, endpoint, wave, position, mesh, status, queued_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?6)",
                )?;
                let mut devices = c.devices.iter().enumerate();
                for (w, size) in c.sizes.iter().enumerate() {
                    for (pos, (ep, mesh)) in devices.by_ref().take(*size) {
                        dev_stmt.execute(params![
                            id,
                            ep,
                            w as i64,
                            pos as i64,
                            mesh,
                            now_ms,
                            CampaignDeviceStatus::Queued
                        ])?;
                    }
                }
            }
            audit(
                &tx,
                now_ms,
                None,
                None,
                "campaign-created",
                Some(&format!(
                    "campaign {id}: release {}, {} devices",
                    c.release_id,
                    c.devices.len()
                )),
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    pub fn campaign(&self, id: i64) -> Result<Option<CampaignRecord>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE id = ?1"),
                [id],
                campaign_row,
            )
            .optional()?
            .transpose()?)
        })
    }

    pub fn campaigns(&self) -> Result<Vec<CampaignRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {CAMPAIGN_COLS} FROM campaigns ORDER BY id"
            ))?;
            let rows = stmt.query_map(params![], campaign_row)?;
            Ok(rows
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .collect::<serde_json::Result<Vec<_>>>()?)
        })
    }

    /// Campaigns the runner must pick up after a restart: not final, or final with devices
    /// still in flight (their outcomes are still to be recorded).
    pub fn unfinished_campaigns(&self) -> Result<Vec<i64>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id FROM campaigns WHERE state NOT IN (?1, ?2, ?3)
                    OR EXISTS (SELECT 1 FROM campaign_devices d WHERE d.campaign_id = campaigns.id AND d.status = ?4)
                 ORDER BY id",
            )?;
            let [halted, aborted, completed] = CampaignState::FINAL;
            let running = CampaignDeviceStatus::Running;
            let rows = stmt.query_map(params![halted, aborted, completed, running], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Sets the campaign's state and where it is; an audit line records the change of state.
    pub fn set_campaign_state(
        &self,
        c: &CampaignRecord,
        previous_state: CampaignState,
        now_ms: i64,
    ) -> Result<()> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE campaigns SET state = ?2, reason = ?3, current_wave = ?4, soak_until_ms = ?5,
                    updated_at_ms = ?6, finished_at_ms = ?7 WHERE id = ?1",
                params![
                    c.id,
                    c.state,
                    c.reason,
                    c.current_wave,
                    c.soak_until_ms,
                    now_ms,
                    c.finished_at_ms
                ],
            )?;
            if previous_state != c.state {
                audit(
                    &tx,
                    now_ms,
                    None,
                    None,
                    &format!("campaign-{}", c.state),
                    Some(&format!(
                        "campaign {} (was {previous_state}){}",
                        c.id,
                        c.reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    )),
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    pub fn campaign_waves(&self, id: i64) -> Result<Vec<WaveRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT wave, percent, size, started_at_ms, finished_at_ms FROM campaign_waves
                 WHERE campaign_id = ?1 ORDER BY wave",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok(WaveRecord {
                    wave: r.get(0)?,
                    percent: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    started_at_ms: r.get(3)?,
                    finished_at_ms: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub fn set_wave_started(&self, id: i64, wave: u32, now_ms: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE campaign_waves SET started_at_ms = COALESCE(started_at_ms, ?3)
                 WHERE campaign_id = ?1 AND wave = ?2",
                params![id, wave, now_ms],
            )?;
            Ok(())
        })
    }

    pub fn set_wave_finished(&self, id: i64, wave: u32, now_ms: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE campaign_waves SET finished_at_ms = COALESCE(finished_at_ms, ?3)
                 WHERE campaign_id = ?1 AND wave = ?2",
                params![id, wave, now_ms],
            )?;
            Ok(())
        })
    }

    /// Counts by wave and status (one indexed GROUP BY).
    pub fn campaign_counts(&self, id: i64) -> Result<Vec<Counts>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT wave, status, COUNT(*) FROM campaign_devices WHERE campaign_id = ?1 GROUP BY wave, status",
            )?;
            let mut out: Vec<Counts> = Vec::new();
            let rows = stmt.query_map([id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get::<_, i64>(2)?))
            })?;
            for row in rows {
                let (wave, status, n) = row?;
                let w = wave as usize;
                if out.len() <= w {
                    out.resize(w + 1, Counts::default());
                }
                out[w].add(status, n as u64);
            }
            Ok(out)
        })
    }

    /// Counts of one wave.
    pub fn wave_counts(&self, id: i64, wave: u32) -> Result<Counts> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT status, COUNT(*) FROM campaign_devices WHERE campaign_id = ?1 AND wave = ?2 GROUP BY status",
            )?;
            let mut out = Counts::default();
            let rows = stmt.query_map(params![id, wave], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (status, n) = row?;
                out.add(status, n as u64);
            }
            Ok(out)
        })
    }

    /// The first `limit` queued devices of a wave, in order, leaving out meshes that are full.
    pub fn queued_devices(
        &self,
        id: i64,
        wave: u32,
        full_meshes: &[String],
        limit: usize,
    ) -> Result<Vec<CampaignDeviceRecord>> {
        self.with(|c| {
            // The excluded meshes go in as a JSON array, so the statement stays one prepared shape.
            let full = serde_json::to_string(full_meshes)?;
            // The one place the dialects differ: how a JSON array becomes rows.
            let meshes = if c.is_postgres() {
                "json_array_elements_text(CAST(?3 AS json))"
            } else {
                "json_each(?3)"
            };
            let mut stmt = c.prepare(&format!(
                "SELECT {DEVICE_COLS} FROM campaign_devices
                 WHERE campaign_id = ?1 AND wave = ?2 AND status = ?5
                   AND (mesh IS NULL OR mesh NOT IN (SELECT value FROM {meshes}))
                 ORDER BY position LIMIT ?4"
            ))?;
            let queued = CampaignDeviceStatus::Queued;
            let rows = stmt.query_map(params![id, wave, full, limit as i64, queued], device_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The devices in flight.
    pub fn running_campaign_devices(&self, id: i64) -> Result<Vec<CampaignDeviceRecord>> {
        let running = CampaignDeviceStatus::Running;
        self.campaign_devices(id, Some(running.as_str()), None, 0)
    }

    /// Devices of a campaign, optionally of one status, in order, a page at a time.
    pub fn campaign_devices(
        &self,
        id: i64,
        status: Option<&str>,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<CampaignDeviceRecord>> {
        match status {
            Some(s) => self.with(|c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {DEVICE_COLS} FROM campaign_devices WHERE campaign_id = ?1 AND status = ?2
                     ORDER BY position LIMIT ?3 OFFSET ?4"
                ))?;
                // No limit: the largest (PostgreSQL refuses SQLite's -1).
                let limit = limit.map(|l| l as i64).unwrap_or(i64::MAX);
                let rows = stmt.query_map(params![id, s, limit, offset as i64], device_row)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            }),
            None => self.campaign_devices_where(id, "ORDER BY position", limit, offset),
        }
    }

    fn campaign_devices_where(
        &self,
        id: i64,
        tail: &str,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<Vec<CampaignDeviceRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {DEVICE_COLS} FROM campaign_devices WHERE campaign_id = ?1 {tail} LIMIT ?2 OFFSET ?3"
            ))?;
            // No limit: the largest (PostgreSQL refuses SQLite's -1).
                let limit = limit.map(|l| l as i64).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![id, limit, offset as i64], device_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// A device of the campaign is started: its job and the mesh it counts against.
    pub fn campaign_device_started(
        &self,
        id: i64,
        endpoint: &str,
        mesh: &str,
        job_id: i64,
        now_ms: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE campaign_devices SET status = ?6, mesh = ?3, job_id = ?4, started_at_ms = ?5,
                    error = NULL WHERE campaign_id = ?1 AND endpoint = ?2",
                params![id, endpoint, mesh, job_id, now_ms, CampaignDeviceStatus::Running],
            )?;
            Ok(())
        })
    }

    /// A device's outcome.
    pub fn campaign_device_finished(
        &self,
        id: i64,
        endpoint: &str,
        status: CampaignDeviceStatus,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE campaign_devices SET status = ?3, error = ?4, finished_at_ms = ?5
                 WHERE campaign_id = ?1 AND endpoint = ?2",
                params![id, endpoint, status, error, now_ms],
            )?;
            Ok(())
        })
    }

    /// Marks every queued device of the campaign skipped; returns how many.
    pub fn skip_queued(&self, id: i64, reason: &str, now_ms: i64) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "UPDATE campaign_devices SET status = ?4, error = ?2, finished_at_ms = ?3
                 WHERE campaign_id = ?1 AND status = ?5",
                params![
                    id,
                    reason,
                    now_ms,
                    CampaignDeviceStatus::Skipped,
                    CampaignDeviceStatus::Queued
                ],
            )
        })
    }

    /// The devices in flight whose jobs have ended, with the job's final status and error.
    pub fn ended_campaign_jobs(&self, id: i64) -> Result<Vec<EndedJob>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT d.endpoint, d.wave, d.job_id, j.status, j.error FROM campaign_devices d
                   JOIN job_devices j ON j.job_id = d.job_id AND j.endpoint = d.endpoint
                 WHERE d.campaign_id = ?1 AND d.status = ?2
                   AND j.status IN (?3, ?4, ?5)",
            )?;
            let running = CampaignDeviceStatus::Running;
            let [succeeded, failed, cancelled] = JobDeviceStatus::FINAL;
            let rows = stmt.query_map(params![id, running, succeeded, failed, cancelled], |r| {
                Ok(EndedJob {
                    endpoint: r.get(0)?,
                    wave: r.get(1)?,
                    job_id: r.get(2)?,
                    job_status: r.get(3)?,
                    error: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    // ---- device info cache ----

    pub fn device_info(&self, endpoint: &str) -> Result<Option<DeviceInfo>> {
        self.with(|c| {
            c.query_row(
                "SELECT model, firmware_version, read_at_ms FROM device_info WHERE endpoint = ?1",
                [endpoint],
                |r| {
                    Ok(DeviceInfo {
                        model: r.get(0)?,
                        firmware_version: r.get(1)?,
                        read_at_ms: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Every cached device info, by endpoint (the dashboard's fleet view: one scan, not one
    /// query per device).
    pub fn device_infos(&self) -> Result<std::collections::HashMap<String, DeviceInfo>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT endpoint, model, firmware_version, read_at_ms FROM device_info")?;
            let rows = stmt.query_map(params![], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    DeviceInfo {
                        model: r.get(1)?,
                        firmware_version: r.get(2)?,
                        read_at_ms: r.get(3)?,
                    },
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Records what a device reported; a `None` keeps what was known.
    pub fn put_device_info(&self, endpoint: &str, info: &DeviceInfo) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO device_info (endpoint, model, firmware_version, read_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(endpoint) DO UPDATE SET model = COALESCE(excluded.model, device_info.model),
                    firmware_version = COALESCE(excluded.firmware_version, device_info.firmware_version),
                    read_at_ms = excluded.read_at_ms",
                params![endpoint, info.model, info.firmware_version, info.read_at_ms],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{ReleaseRecord, StoreError};

    fn release(s: &Store) {
        s.insert_release(&ReleaseRecord {
            id: "aa".into(),
            kind: "suit".into(),
            version: Some("2.0.0".into()),
            sequence_number: Some(2),
            image_sha256: "00".into(),
            image_size: 10,
            manifest_sha256: None,
            manifest_size: None,
            vendor_id: None,
            class_id: None,
            image_uri: None,
            added_at_ms: 1,
            max_block_size: None,
            precursor_sha256: None,
            precursor_size: None,
            new_image_sha256: None,
            new_image_size: None,
        })
        .unwrap();
    }

    /// A running campaign of release `aa` with the test's waves and devices; a test changes what
    /// it is about with `..`.
    fn new_campaign<'a>(
        target: &'a TargetSpec,
        waves: &'a [u32],
        sizes: &'a [usize],
        devices: &'a [(String, Option<String>)],
    ) -> NewCampaign<'a> {
        NewCampaign {
            name: None,
            release_id: "aa",
            target,
            waves,
            sizes,
            failure_threshold: 0.1,
            soak_ms: 0,
            max_concurrent: 100,
            max_per_mesh: 4,
            mesh_prefix_v6: 64,
            mesh_prefix_v4: 24,
            state: CampaignState::Running,
            devices,
        }
    }

    #[test]
    fn a_campaign_survives_reopening_with_its_waves_devices_and_soak_deadline() {
        crate::store::both::on_sqlite(
            a_campaign_survives_reopening_with_its_waves_devices_and_soak_deadline_on,
        )
    }

    pub(crate) fn a_campaign_survives_reopening_with_its_waves_devices_and_soak_deadline_on(
        open: crate::store::both::Open<'_>,
    ) {
        let s = open();
        release(&s);
        let target = TargetSpec {
            pattern: Some("d-*".into()),
            ..TargetSpec::default()
        };
        let devices: Vec<(String, Option<String>)> = (0..5)
            .map(|i| (format!("d-{i}"), Some(format!("mesh-{}", i % 2))))
            .collect();
        let id = s
            .create_campaign(
                &NewCampaign {
                    name: Some("spring"),
                    failure_threshold: 0.25,
                    soak_ms: 60_000,
                    max_concurrent: 3,
                    max_per_mesh: 1,
                    ..new_campaign(&target, &[20, 100], &[1, 4], &devices)
                },
                100,
            )
            .unwrap();
        s.set_wave_started(id, 0, 110).unwrap();
        s.campaign_device_started(id, "d-0", "mesh-0", 7, 120)
            .unwrap();
        s.campaign_device_finished(id, "d-0", CampaignDeviceStatus::Succeeded, None, 130)
            .unwrap();
        s.set_wave_finished(id, 0, 130).unwrap();
        let mut c = s.campaign(id).unwrap().unwrap();
        c.state = CampaignState::Soaking;
        c.soak_until_ms = Some(60_130);
        s.set_campaign_state(&c, CampaignState::Running, 130)
            .unwrap();
        drop(s);

        let s = open();
        let c = s.campaign(id).unwrap().unwrap();
        assert_eq!(c.state, "soaking");
        assert_eq!(c.soak_until_ms, Some(60_130));
        assert_eq!(c.target, target);
        assert_eq!(c.waves, vec![20, 100]);
        assert_eq!((c.max_concurrent, c.max_per_mesh), (3, 1));
        assert_eq!(s.unfinished_campaigns().unwrap(), vec![id]);
        let waves = s.campaign_waves(id).unwrap();
        assert_eq!(waves.len(), 2);
        assert_eq!((waves[0].size, waves[0].finished_at_ms), (1, Some(130)));
        assert_eq!(waves[1].size, 4);
        let counts = s.campaign_counts(id).unwrap();
        assert_eq!(counts[0].succeeded, 1);
        assert_eq!(counts[1].queued, 4);
        let d0 = &s.campaign_devices(id, None, None, 0).unwrap()[0];
        assert_eq!(
            (
                d0.status.as_str(),
                d0.job_id,
                d0.started_at_ms,
                d0.finished_at_ms
            ),
            ("succeeded", Some(7), Some(120), Some(130))
        );
        // The queue leaves out full meshes and keeps the order.
        let next = s.queued_devices(id, 1, &["mesh-1".into()], 10).unwrap();
        assert_eq!(
            next.iter().map(|d| d.endpoint.as_str()).collect::<Vec<_>>(),
            ["d-2", "d-4"]
        );
        assert_eq!(s.skip_queued(id, "aborted", 200).unwrap(), 4);
        let mut c = c;
        c.state = CampaignState::Aborted;
        s.set_campaign_state(&c, CampaignState::Soaking, 200)
            .unwrap();
        assert!(s.unfinished_campaigns().unwrap().is_empty());
    }

    /// The runner's per-pass queries on a campaign of 100 000 devices (run with `--ignored`; it
    /// prints the times, and fails if a pass's queries take more than a second in all).
    #[test]
    #[ignore]
    fn queries_at_100k_devices() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        release(&s);
        let devices: Vec<(String, Option<String>)> = (0..100_000)
            .map(|i| (format!("dev-{i:06}"), Some(format!("mesh-{}", i % 500))))
            .collect();
        let sizes = crate::campaign::plan::wave_sizes(devices.len(), &[1, 10, 50, 100]);
        let t = std::time::Instant::now();
        let target = TargetSpec {
            pattern: Some("dev-*".into()),
            ..TargetSpec::default()
        };
        let id = s
            .create_campaign(
                &new_campaign(&target, &[1, 10, 50, 100], &sizes, &devices),
                1,
            )
            .unwrap();
        let create = t.elapsed();
        let full: Vec<String> = (0..250).map(|m| format!("mesh-{m}")).collect();
        let t = std::time::Instant::now();
        let counts = s.wave_counts(id, 3).unwrap();
        let head = s.queued_devices(id, 3, &full, 2048).unwrap();
        let ended = s.ended_campaign_jobs(id).unwrap();
        let running = s.running_campaign_devices(id).unwrap();
        let pass = t.elapsed();
        eprintln!(
            "100 000 devices: create {create:?}; one pass (counts of a 50 000 wave, queue head past 250 full meshes, ended jobs, running) {pass:?}"
        );
        assert_eq!(counts.queued, 50_000);
        assert_eq!(head.len(), 2048);
        assert!(ended.is_empty() && running.is_empty());
        assert!(pass < std::time::Duration::from_secs(1), "{pass:?}");
    }

    #[test]
    fn a_bad_json_column_is_a_json_error_not_an_sql_one() {
        crate::store::both::on_sqlite(a_bad_json_column_is_a_json_error_not_an_sql_one_on)
    }

    pub(crate) fn a_bad_json_column_is_a_json_error_not_an_sql_one_on(
        open: crate::store::both::Open<'_>,
    ) {
        let s = open();
        release(&s);
        let target = TargetSpec {
            pattern: Some("d-*".into()),
            ..TargetSpec::default()
        };
        let id = s
            .create_campaign(
                &new_campaign(&target, &[100], &[1], &[("d-1".into(), None)]),
                1,
            )
            .unwrap();
        s.with(|c| c.execute("UPDATE campaigns SET target = 'not json'", params![]))
            .unwrap();
        assert!(matches!(s.campaign(id), Err(StoreError::Json(_))));
        assert!(matches!(s.campaigns(), Err(StoreError::Json(_))));
    }

    #[test]
    fn counts_are_named_and_added_by_device_status() {
        let mut c = Counts::default();
        for (n, &s) in CampaignDeviceStatus::ALL.iter().enumerate() {
            c.add(s, n as u64 + 1);
        }
        let json = serde_json::to_value(c).unwrap();
        for (n, &s) in CampaignDeviceStatus::ALL.iter().enumerate() {
            assert_eq!(json[s.as_str()], n as u64 + 1, "{s}");
            assert_eq!(c.get(s), n as u64 + 1);
        }
        assert_eq!(
            json.as_object().unwrap().len(),
            CampaignDeviceStatus::ALL.len()
        );
        assert_eq!(c.total(), 28);
        assert_eq!(c.decided(), 3 + 4);
    }

    #[test]
    fn device_info_keeps_what_it_knew() {
        crate::store::both::on_sqlite(device_info_keeps_what_it_knew_on)
    }

    pub(crate) fn device_info_keeps_what_it_knew_on(open: crate::store::both::Open<'_>) {
        let s = open();
        s.put_device_info(
            "d",
            &DeviceInfo {
                model: Some("m".into()),
                firmware_version: Some("1".into()),
                read_at_ms: 1,
            },
        )
        .unwrap();
        s.put_device_info(
            "d",
            &DeviceInfo {
                model: None,
                firmware_version: Some("2".into()),
                read_at_ms: 2,
            },
        )
        .unwrap();
        let i = s.device_info("d").unwrap().unwrap();
        assert_eq!(
            (i.model.as_deref(), i.firmware_version.as_deref()),
            (Some("m"), Some("2"))
        );
    }
}

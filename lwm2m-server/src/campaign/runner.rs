//! The loop of one campaign. Each pass records the outcomes of jobs that ended, decides the
//! threshold, moves between waves (soaking in between), and starts queued devices of the current
//! wave while slots are free, overall and per mesh. It wakes on job events of its devices, on
//! registrations (a sleeper may be awake), on operator commands and every `tick`. Memory is the
//! devices in flight; each pass makes a handful of indexed queries.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::db::CampaignRecord;
use super::{CampaignDeviceStatus, CampaignManager, CampaignState, plan};
use crate::events::ServerEvent;
use crate::jobs::{JobDeviceStatus, JobError};
use crate::store::StoreError;

/// Rows looked at per pass when the head of the queue is asleep or on full meshes.
const SCAN_LIMIT: usize = 2048;

/// What the loop does next.
enum Next {
    /// Wait for an event, a command, or this long.
    Wait(Duration),
    /// The campaign is final and nothing is in flight.
    Done,
}

/// A device in flight: its mesh (for the per-mesh limit).
struct InFlight {
    mesh: String,
}

pub(super) async fn run(mgr: Arc<CampaignManager>, id: i64, wake: Arc<Notify>) {
    let mut events = mgr.events.subscribe();
    let mut in_flight: HashMap<String, InFlight> = HashMap::new();
    match mgr.store.running_campaign_devices(id) {
        Ok(devices) => {
            for d in devices {
                in_flight.insert(
                    d.endpoint,
                    InFlight {
                        mesh: d.mesh.unwrap_or_default(),
                    },
                );
            }
        }
        Err(e) => tracing::error!("campaign {id}: cannot load the devices in flight: {e}"),
    }
    // Devices passed over because they slept (at most one scan's worth): their registration
    // updates wake the runner, nobody else's do.
    let mut sleepers: HashSet<String> = HashSet::new();
    loop {
        if !mgr.holds(id) {
            tracing::info!("campaign {id}: this node lost its lock; another node carries on");
            return;
        }
        let next = match pass(&mgr, id, &mut in_flight, &mut sleepers) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("campaign {id}: {e}");
                Next::Wait(mgr.config.tick)
            }
        };
        let wait = match next {
            Next::Done => return,
            Next::Wait(d) => d,
        };
        if wait.is_zero() {
            // Let the jobs just started take their first steps before the next pass.
            tokio::task::yield_now().await;
            continue;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = wake.notified() => break,
                ev = events.recv() => match ev {
                    Ok(ServerEvent::Job { endpoint, status, .. })
                        if status.is_final() && in_flight.contains_key(&endpoint) => break,
                    Ok(ServerEvent::Registered { endpoint, .. } | ServerEvent::Updated { endpoint, .. })
                        if sleepers.contains(&endpoint) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    _ => {}
                },
            }
        }
    }
}

/// A job's end as a campaign outcome. A job that failed because the device stayed unreachable
/// says nothing about the release: `unreachable`, not counted against the threshold.
fn outcome(job_status: JobDeviceStatus, error: Option<&str>) -> CampaignDeviceStatus {
    match job_status {
        JobDeviceStatus::Succeeded => CampaignDeviceStatus::Succeeded,
        JobDeviceStatus::Cancelled => CampaignDeviceStatus::Cancelled,
        _ if error.is_some_and(|e| e.contains("(unreachable for ")) => {
            CampaignDeviceStatus::Unreachable
        }
        _ => CampaignDeviceStatus::Failed,
    }
}

fn pass(
    mgr: &CampaignManager,
    id: i64,
    in_flight: &mut HashMap<String, InFlight>,
    sleepers: &mut HashSet<String>,
) -> Result<Next, StoreError> {
    let store = &mgr.store;
    let now = mgr.clock.now_ms();
    // Serialise with the operator's commands: a pause between reading and writing the state
    // must not be lost.
    let _g = mgr.state_lock.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut c) = store.campaign(id)? else {
        return Ok(Next::Done);
    };
    let release_version = store.release(&c.release_id)?.and_then(|r| r.version);

    // 1. Outcomes of the jobs that ended.
    for ended in store.ended_campaign_jobs(id)? {
        let (ep, error) = (ended.endpoint, ended.error);
        let status = outcome(ended.job_status, error.as_deref());
        store.campaign_device_finished(id, &ep, status, error.as_deref(), now)?;
        in_flight.remove(&ep);
        if status == CampaignDeviceStatus::Succeeded {
            // The version it now runs, for the next campaign's filter.
            let _ = store.put_device_info(
                &ep,
                &super::target::DeviceInfo {
                    model: None,
                    firmware_version: release_version.clone(),
                    read_at_ms: now,
                },
            );
        }
        mgr.events.publish(ServerEvent::CampaignDevice {
            campaign_id: id,
            wave: ended.wave,
            endpoint: ep,
            status,
            job_id: Some(ended.job_id),
            error,
        });
    }

    let previous = c.state;
    match c.state {
        s if s.is_final() => {
            return Ok(if in_flight.is_empty() {
                Next::Done
            } else {
                Next::Wait(mgr.config.tick)
            });
        }
        CampaignState::Created | CampaignState::Paused => {
            return Ok(Next::Wait(mgr.config.tick * 5));
        }
        CampaignState::Soaking => {
            let until = c.soak_until_ms.unwrap_or(now);
            if now < until {
                return Ok(Next::Wait(Duration::from_millis((until - now) as u64)));
            }
            next_wave(mgr, &mut c, previous, now)?;
            return Ok(Next::Wait(Duration::ZERO));
        }
        _ => {}
    }

    // 2. Running: the threshold first, then the end of the wave, then new starts.
    let wave = c.current_wave;
    let counts = store.wave_counts(id, wave)?;
    if plan::exceeds_threshold(counts.failed, counts.decided(), c.failure_threshold) {
        c.state = CampaignState::Halted;
        c.reason = Some(format!(
            "wave {} ({} %): {} of {} decided devices failed, more than the threshold {}",
            wave + 1,
            c.waves.get(wave as usize).copied().unwrap_or(100),
            counts.failed,
            counts.decided(),
            c.failure_threshold
        ));
        c.finished_at_ms = Some(now);
        store.set_campaign_state(&c, previous, now)?;
        let skipped = store.skip_queued(id, "campaign halted", now)?;
        tracing::warn!(
            "campaign {id} halted: {}; {skipped} queued devices skipped",
            c.reason.as_deref().unwrap_or("")
        );
        mgr.publish_state(&c);
        return Ok(Next::Wait(mgr.config.tick));
    }
    if counts.queued == 0 && counts.running == 0 {
        store.set_wave_finished(id, wave, now)?;
        let had_devices = counts.total() > 0;
        if wave as usize + 1 >= c.waves.len() {
            c.state = CampaignState::Completed;
            c.finished_at_ms = Some(now);
            c.soak_until_ms = None;
            store.set_campaign_state(&c, previous, now)?;
            mgr.publish_state(&c);
            return Ok(if in_flight.is_empty() {
                Next::Done
            } else {
                Next::Wait(mgr.config.tick)
            });
        }
        if c.soak_ms > 0 && had_devices {
            c.state = CampaignState::Soaking;
            c.soak_until_ms = Some(now + c.soak_ms);
            store.set_campaign_state(&c, previous, now)?;
            mgr.publish_state(&c);
            return Ok(Next::Wait(Duration::from_millis(c.soak_ms as u64)));
        }
        next_wave(mgr, &mut c, previous, now)?;
        return Ok(Next::Wait(Duration::ZERO));
    }
    *sleepers = start_devices(mgr, &c, in_flight, now)?;
    Ok(Next::Wait(mgr.config.tick))
}

/// Ends a soak (or an empty wave): the next wave starts.
fn next_wave(
    mgr: &CampaignManager,
    c: &mut CampaignRecord,
    previous: CampaignState,
    now: i64,
) -> Result<(), StoreError> {
    c.current_wave += 1;
    c.soak_until_ms = None;
    c.state = CampaignState::Running;
    mgr.store.set_campaign_state(c, previous, now)?;
    mgr.store.set_wave_started(c.id, c.current_wave, now)?;
    mgr.publish_wave(c);
    if previous != CampaignState::Running {
        mgr.publish_state(c);
    }
    Ok(())
}

/// Starts queued devices of the current wave while slots are free. Returns the devices passed
/// over because they sleep or are not registered (the runner wakes when one of them speaks).
fn start_devices(
    mgr: &CampaignManager,
    c: &CampaignRecord,
    in_flight: &mut HashMap<String, InFlight>,
    now: i64,
) -> Result<HashSet<String>, StoreError> {
    let id = c.id;
    let mut passed_over = HashSet::new();
    let mut free = (c.max_concurrent as usize).saturating_sub(in_flight.len());
    if free == 0 {
        return Ok(passed_over);
    }
    let mut per_mesh: HashMap<String, u32> = HashMap::new();
    for f in in_flight.values() {
        *per_mesh.entry(f.mesh.clone()).or_default() += 1;
    }
    let full: Vec<String> = per_mesh
        .iter()
        .filter(|(_, n)| **n >= c.max_per_mesh)
        .map(|(m, _)| m.clone())
        .collect();
    let wave_started = mgr
        .store
        .campaign_waves(id)?
        .get(c.current_wave as usize)
        .and_then(|w| w.started_at_ms)
        .unwrap_or(now);
    let wake_timed_out = now - wave_started >= mgr.config.wake_timeout.as_millis() as i64;
    for d in mgr
        .store
        .queued_devices(id, c.current_wave, &full, SCAN_LIMIT)?
    {
        if free == 0 {
            break;
        }
        let ep = d.endpoint;
        // Asleep or not registered: not started (no slot held), tried again when it speaks.
        let reg = mgr.registry.lookup(&ep);
        let Some(reg) = reg.filter(|r| mgr.registry.is_reachable_anywhere(r)) else {
            if wake_timed_out {
                let why = format!(
                    "asleep or not registered for {} s after the wave started",
                    mgr.config.wake_timeout.as_secs()
                );
                let skipped = CampaignDeviceStatus::Skipped;
                mgr.store
                    .campaign_device_finished(id, &ep, skipped, Some(&why), now)?;
                device_event(mgr, c, &ep, skipped, None, Some(why));
            } else {
                passed_over.insert(ep);
            }
            continue;
        };
        // The mesh it is on now (its address may have changed since it was selected).
        let mesh = plan::mesh_of(reg.address, c.mesh_prefix_v6, c.mesh_prefix_v4);
        let n = per_mesh.entry(mesh.clone()).or_default();
        if *n >= c.max_per_mesh {
            continue;
        }
        if !mgr.holds(id) {
            break;
        }
        let job = match mgr.jobs.start(&c.release_id, std::slice::from_ref(&ep)) {
            Ok(job) => job,
            // A job of ours whose start was not recorded (the server died in between): adopt it.
            Err(JobError::Busy(_, job))
                if mgr
                    .store
                    .job(job)?
                    .is_some_and(|(j, _)| j.release_id == c.release_id) =>
            {
                job
            }
            Err(e @ JobError::Busy(..)) => {
                let why = e.to_string();
                let skipped = CampaignDeviceStatus::Skipped;
                mgr.store
                    .campaign_device_finished(id, &ep, skipped, Some(&why), now)?;
                device_event(mgr, c, &ep, skipped, None, Some(why));
                continue;
            }
            Err(JobError::UnknownClient(_)) => {
                passed_over.insert(ep);
                continue;
            }
            Err(JobError::Store(e)) => return Err(e),
            Err(e) => {
                let why = e.to_string();
                let failed = CampaignDeviceStatus::Failed;
                mgr.store
                    .campaign_device_finished(id, &ep, failed, Some(&why), now)?;
                device_event(mgr, c, &ep, failed, None, Some(why));
                continue;
            }
        };
        mgr.store
            .campaign_device_started(id, &ep, &mesh, job, now)?;
        *n += 1;
        free -= 1;
        in_flight.insert(ep.clone(), InFlight { mesh });
        device_event(mgr, c, &ep, CampaignDeviceStatus::Running, Some(job), None);
    }
    Ok(passed_over)
}

fn device_event(
    mgr: &CampaignManager,
    c: &CampaignRecord,
    ep: &str,
    status: CampaignDeviceStatus,
    job_id: Option<i64>,
    error: Option<String>,
) {
    mgr.events.publish(ServerEvent::CampaignDevice {
        campaign_id: c.id,
        wave: c.current_wave,
        endpoint: ep.into(),
        status,
        job_id,
        error,
    });
}

#[cfg(test)]
mod tests {
    use super::outcome;
    use crate::status::JobDeviceStatus::{Cancelled, Failed, Succeeded};

    #[test]
    fn unreachable_devices_are_not_failures() {
        assert_eq!(outcome(Succeeded, None), "succeeded");
        assert_eq!(outcome(Cancelled, None), "cancelled");
        assert_eq!(
            outcome(
                Failed,
                Some("the client did not answer in time (unreachable for 21600 s)")
            ),
            "unreachable"
        );
        assert_eq!(
            outcome(Failed, Some("download failed: Update Result 6")),
            "failed"
        );
    }
}

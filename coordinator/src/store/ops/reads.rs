//! Read-only queries for the operator API and agents.

use seedship_proto::identity::{Role, SpiffeId};

use super::rows::*;
use crate::args;
use crate::clock::UnixMs;
use crate::domain::lease::Fence;
use crate::domain::model::*;
use crate::domain::seed::SeedState;
use crate::error::{Error, Result};
use crate::store::sql::Db;

pub fn list_seeds(c: &dyn Db, state: Option<SeedState>, limit: u32) -> Result<Vec<Seed>> {
    c.rows(
        &format!(
            "SELECT {SEED_COLS} FROM seeds s WHERE (?1 IS NULL OR s.state = ?1) \
             ORDER BY s.created_ms DESC, s.seed_id LIMIT ?2"
        ),
        args![state.map(|s| s.as_str()), limit],
        seed_row,
    )
}

pub fn list_own_seeds(c: &dyn Db, owner: &str) -> Result<Vec<Seed>> {
    c.rows(
        &format!("SELECT {SEED_COLS} FROM seeds s WHERE s.owner = ?1 ORDER BY s.created_ms DESC, s.seed_id"),
        args![owner],
        seed_row,
    )
}

pub fn seed_detail(c: &dyn Db, key: &str) -> Result<Option<SeedDetail>> {
    let Some(seed) = load_seed(c, key)? else {
        return Ok(None);
    };
    let work = c
        .rows(&format!("SELECT {WORK_COLS} FROM work_items w WHERE w.seed_id = ?1"), args![seed.seed_id], work_row)?
        .into_iter()
        .next();
    let drives = list_drives(c, Some(&seed.seed_id))?;
    // The newest page only: a seed's history has no bound, an answer has.
    let mut history = list_events(c, Some(&seed.seed_id), HISTORY_PAGE, 0)?;
    history.reverse();
    let history_total: i64 =
        c.one("SELECT COUNT(*) FROM seed_events WHERE seed_id = ?1", args![seed.seed_id], |r| r.get(0))?;
    let shipping = shipping_by_job(c, &seed.spec.job_name)?;
    let job = load_job(c, &seed.seed_id)?;
    let disks = match &work {
        Some(w) => disks_of_work(c, &w.work_id)?,
        None => Vec::new(),
    };
    let rounds = super::rounds::rounds_of(c, &seed.seed_id)?;
    Ok(Some(SeedDetail {
        seed,
        work,
        drives,
        history,
        history_total: history_total as u64,
        shipping,
        job,
        disks,
        rounds,
    }))
}

pub fn list_drives(c: &dyn Db, seed: Option<&str>) -> Result<Vec<Drive>> {
    // A seed that does not exist is an error, not an empty list (a typo must not look like
    // "no drives").
    if let Some(s) = seed {
        require_seed(c, s)?;
    }
    c.rows(
        &format!(
            "SELECT {DRIVE_COLS} FROM drives d JOIN seeds s ON s.seed_id = d.seed_id \
             WHERE (?1 IS NULL OR s.seed_id = ?1 OR s.job_name = ?1) ORDER BY s.job_name, d.position, d.drive_id"
        ),
        args![seed],
        drive_row,
    )
}

pub fn shipping_by_job(c: &dyn Db, job: &str) -> Result<Option<ShippingRecord>> {
    Ok(c.rows(
        &format!("SELECT {SHIPPING_COLS} FROM shipping p JOIN seeds s ON s.seed_id = p.seed_id WHERE s.job_name = ?1"),
        args![job],
        shipping_row,
    )?
    .into_iter()
    .next())
}

/// Seeds with an import job record (an intent or a job in Azure), newest first.
pub fn list_jobs(c: &dyn Db) -> Result<Vec<ImportJob>> {
    let seeds = c.rows(
        &format!(
            "SELECT {SEED_COLS} FROM seeds s JOIN import_jobs j ON j.seed_id = s.seed_id ORDER BY j.intent_ms DESC"
        ),
        &[],
        seed_row,
    )?;
    let mut out = Vec::with_capacity(seeds.len());
    for s in seeds {
        out.push(job_view(c, s)?);
    }
    Ok(out)
}

fn job_view(c: &dyn Db, s: Seed) -> Result<ImportJob> {
    let record = load_job(c, &s.seed_id)?
        .ok_or_else(|| Error::NotFound(format!("seed {} has no import job", s.spec.job_name)))?;
    Ok(ImportJob {
        shipping: shipping_by_job(c, &s.spec.job_name)?,
        drive_count: super::writes::prepared_drives(c, &s.seed_id)?,
        job_name: s.spec.job_name,
        seed_id: s.seed_id,
        seed_state: s.state,
        seed_reason: s.state_reason,
        storage_account: s.spec.storage_account,
        location: s.spec.location,
        record,
    })
}

/// One import job by job name or seed id.
pub fn job(c: &dyn Db, key: &str) -> Result<Option<ImportJob>> {
    match load_seed(c, key)? {
        Some(s) if load_job(c, &s.seed_id)?.is_some() => Ok(Some(job_view(c, s)?)),
        _ => Ok(None),
    }
}

pub fn list_agents(c: &dyn Db, role: Option<Role>) -> Result<Vec<Agent>> {
    let mut agents = c.rows(
        &format!("SELECT {AGENT_COLS} FROM agents WHERE (?1 IS NULL OR role = ?1) ORDER BY role, name"),
        args![role.map(|r| r.as_str())],
        agent_row,
    )?;
    for a in agents.iter_mut().filter(|a| a.role == Role::Copy) {
        let held: Option<(String, String, UnixMs, String)> = c.row(
            "SELECT w.work_id, s.job_name, w.lease_expires_ms, w.phase FROM work_items w \
                 JOIN seeds s ON s.seed_id = w.seed_id WHERE w.state = 'leased' AND w.holder = ?1 \
                 ORDER BY w.lease_expires_ms DESC LIMIT 1",
            args![a.name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        if let Some((work_id, job_name, lease_expires_ms, phase)) = held {
            let disks = disks_of_work(c, &work_id)?;
            a.work = Some(AgentWork { job_name, phase, lease_expires_ms, disks });
        }
    }
    Ok(agents)
}

/// Each disk's progress of one piece of work, by position.
pub fn disks_of_work(c: &dyn Db, work_id: &str) -> Result<Vec<DiskProgress>> {
    c.rows(
        &format!("SELECT {DISK_PROGRESS_COLS} FROM disk_progress WHERE work_id = ?1 ORDER BY position"),
        args![work_id],
        disk_progress_row,
    )
}

pub fn list_events(c: &dyn Db, seed: Option<&str>, limit: u32, before: i64) -> Result<Vec<HistoryEntry>> {
    if let Some(s) = seed {
        require_seed(c, s)?;
    }
    let before = if before <= 0 { i64::MAX } else { before };
    c.rows(&format!(
            "SELECT {EVENT_COLS} FROM seed_events e JOIN seeds s ON s.seed_id = e.seed_id \
             WHERE (?1 IS NULL OR s.seed_id = ?1 OR s.job_name = ?1) AND e.event_id < ?3 ORDER BY e.event_id DESC LIMIT ?2"
        ),
        args![seed, limit, before],
        event_row,
    )
}

/// The sealed key of a drive, for the live lease holder that reported it.
pub fn drive_key(c: &dyn Db, station: &SpiffeId, fence: &Fence, drive_id: &str, now: UnixMs) -> Result<SealedKey> {
    let work = load_work(c, &fence.work_id)?;
    work.check(&station.name, fence.generation, now)?;
    let row: Option<(String, Option<Vec<u8>>, bool)> = c.row(
        "SELECT reported_by, sealed_key, delivered FROM drives WHERE seed_id = ?1 AND drive_id = ?2",
        args![work.seed_id, drive_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    match row {
        None => Err(Error::NotFound(format!("no drive {drive_id:?} was reported for work {}", fence.work_id))),
        // Microsoft's disk: its key is Azure's, for whichever station holds the lease.
        Some((by, _, delivered)) if !delivered && by != station.uri() => {
            Err(Error::PermissionDenied(format!("drive {drive_id:?} was reported by another station")))
        }
        Some((_, None, _)) => Err(Error::NotFound(format!("drive {drive_id:?} was reported without a key"))),
        Some((_, Some(k), _)) => Ok(SealedKey(k)),
    }
}

/// Each station's write rate now (bytes/s, the sum over the disks of the work it holds): the
/// dashboard's chart samples it every 10 s, without the rest of [`metrics_facts`], which reads
/// every seed's history.
pub fn station_rates(c: &dyn Db) -> Result<Vec<(String, u64)>> {
    c.rows(
        "SELECT d.station, CAST(SUM(d.rate_bytes_per_sec) AS BIGINT) FROM disk_progress d JOIN work_items w ON w.work_id = d.work_id \
         WHERE w.state = 'leased' AND w.holder = d.station GROUP BY d.station ORDER BY d.station",
        &[],
        |r| Ok((r.get(0)?, r.get::<i64>(1)?.max(0) as u64)),
    )
}

/// The durable facts `/metrics` counts (see [`MetricsFacts`]).
pub fn metrics_facts(c: &dyn Db) -> Result<MetricsFacts> {
    let pairs = |sql: &str| -> Result<Vec<(String, i64)>> { c.rows(sql, &[], |r| Ok((r.get(0)?, r.get(1)?))) };
    let seeds_by_state = pairs("SELECT state, COUNT(*) FROM seeds GROUP BY state ORDER BY state")?;
    // Each seed's state changes in order: a stay ends where the next change begins.
    let changes: Vec<(String, UnixMs, String)> = c.rows(
        "SELECT seed_id, at_ms, to_state FROM seed_events \
         WHERE from_state IS NULL OR from_state <> to_state ORDER BY seed_id, event_id",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut stage_stays = Vec::new();
    for w in changes.windows(2) {
        let ((seed_a, at_a, state_a), (seed_b, at_b, _)) = (&w[0], &w[1]);
        if seed_a == seed_b {
            stage_stays.push((state_a.clone(), (at_b - at_a).max(0) as f64 / 1000.0));
        }
    }
    let verified_files = pairs("SELECT status, COUNT(*) FROM verify_results GROUP BY status ORDER BY status")?;
    let repairs = pairs("SELECT state, COUNT(*) FROM repairs GROUP BY state ORDER BY state")?;
    let last_online_backup = pairs(
        "SELECT server, MAX(created_ms) FROM recovery_points WHERE kind = 'incremental' GROUP BY server ORDER BY server",
    )?;
    let last_recovery_point =
        pairs("SELECT server, MAX(created_ms) FROM recovery_points GROUP BY server ORDER BY server")?;
    let station_rates = station_rates(c)?;
    let heartbeats = c.rows(
        "SELECT role, name, last_heartbeat_ms FROM agents WHERE reported_ms IS NOT NULL ORDER BY role, name",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let in_transit: i64 = c.one(
        "SELECT CAST(COALESCE(SUM(total_bytes), 0) AS BIGINT) FROM seeds WHERE state IN \
         ('disks_prepared', 'import_job_created', 'shipped', 'at_datacenter')",
        &[],
        |r| r.get(0),
    )?;
    let seed_states = c.rows(
        "SELECT s.job_name, s.state, MAX(e.at_ms) FROM seeds s JOIN seed_events e ON e.seed_id = s.seed_id \
         AND e.to_state = s.state AND (e.from_state IS NULL OR e.from_state <> e.to_state) \
         WHERE s.state NOT IN ('seeded', 'failed', 'cancelled', 'merged') GROUP BY s.seed_id ORDER BY s.job_name",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let repair_blocked = c.rows(
        "SELECT s.job_name FROM seeds s WHERE s.state = 'needs_repair' \
         AND EXISTS (SELECT 1 FROM repairs r WHERE r.seed_id = s.seed_id AND r.state = 'lost') ORDER BY s.job_name",
        &[],
        |r| r.get(0),
    )?;
    Ok(MetricsFacts {
        seed_states,
        repair_blocked,
        seeds_by_state,
        stage_stays,
        verified_files,
        repairs,
        last_online_backup,
        last_recovery_point,
        station_rates,
        heartbeats,
        bytes_in_transit: in_transit.max(0) as u64,
    })
}

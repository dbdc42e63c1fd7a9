//! Row mapping and the helpers every write shares: loading and saving seeds and work items,
//! recording transitions, and idempotency.

use seedship_proto::identity::Role;
use serde::{Serialize, de::DeserializeOwned};

use crate::args;
use crate::clock::UnixMs;
use crate::domain::import::{JobDrive, JobIntent, JobPhase, JobRecord};
use crate::domain::lease::{WorkItem, WorkState};
use crate::domain::model::*;
use crate::domain::seed::{SeedEvent, SeedState};
use crate::error::{Error, Result};
use crate::store::sql::{Db, Row};

pub fn bad_col(idx: usize, what: &str, v: &str) -> Error {
    Error::Internal(format!("column {idx}: unknown {what} {v:?} in the database"))
}

pub fn state_col(row: &Row, idx: usize) -> Result<SeedState> {
    let s: String = row.get(idx)?;
    SeedState::parse(&s).ok_or_else(|| bad_col(idx, "seed state", &s))
}

pub const SEED_COLS: &str = "s.seed_id, s.owner, s.state, s.state_reason, s.created_ms, s.updated_ms, \
    s.job_name, s.storage_account, s.container, s.subscription_id, s.location, s.staging_location, \
    s.manifest_root, s.total_bytes, s.file_count, s.target_site, s.target_station, s.allow_virtual_station, \
    (SELECT j.azure_state FROM import_jobs j WHERE j.seed_id = s.seed_id), s.repository_id, s.kind, \
    (SELECT p.job_name FROM seeds p WHERE p.seed_id = s.parent_seed)";

pub fn seed_row(row: &Row) -> Result<Seed> {
    Ok(Seed {
        seed_id: row.get(0)?,
        owner: row.get(1)?,
        state: state_col(row, 2)?,
        state_reason: row.get(3)?,
        created_ms: row.get(4)?,
        updated_ms: row.get(5)?,
        spec: NewSeed {
            job_name: row.get(6)?,
            storage_account: row.get(7)?,
            container: row.get(8)?,
            subscription_id: row.get(9)?,
            location: row.get(10)?,
            staging_location: row.get(11)?,
            manifest_root: row.get(12)?,
            total_bytes: row.get::<i64>(13)? as u64,
            file_count: row.get::<i64>(14)? as u64,
            target_site: row.get(15)?,
            target_station: row.get(16)?,
            repository_id: row.get(19)?,
        },
        allow_virtual_station: row.get(17)?,
        import_job_state: row.get::<Option<String>>(18)?.unwrap_or_default(),
        kind: kind_col(row, 20)?,
        round_of: row.get(21)?,
    })
}

/// A seed by id or job name.
pub fn load_seed(c: &dyn Db, key: &str) -> Result<Option<Seed>> {
    c.row(
        &format!("SELECT {SEED_COLS} FROM seeds s WHERE s.seed_id = {}", by_id_or_name("seeds")),
        args![key],
        seed_row,
    )
}

/// The id of the row of `table` whose `seed_id` or else whose `job_name` is `?1`: a lookup in
/// each unique index. (`seed_id = ?1 OR job_name = ?1` is read as a scan of the whole table,
/// which under SERIALIZABLE also conflicts with every concurrent insert into it.)
fn by_id_or_name(table: &str) -> String {
    format!(
        "COALESCE((SELECT seed_id FROM {table} WHERE seed_id = ?1), (SELECT seed_id FROM {table} WHERE job_name = ?1))"
    )
}

pub fn require_seed(c: &dyn Db, key: &str) -> Result<Seed> {
    load_seed(c, key)?.ok_or_else(|| Error::NotFound(format!("no seed with id or job name {key:?}")))
}

/// The seed `seed_id`, its row locked until the commit where the transaction needs that
/// (`Db::for_update`).
pub fn lock_seed(c: &dyn Db, seed_id: &str) -> Result<Seed> {
    c.row(
        &format!("SELECT {SEED_COLS} FROM seeds s WHERE s.seed_id = ?1{}", c.for_update("s")),
        args![seed_id],
        seed_row,
    )?
    .ok_or_else(|| Error::NotFound(format!("no seed with id {seed_id:?}")))
}

pub const WORK_COLS: &str = "w.work_id, w.seed_id, w.state, w.generation, w.holder, w.lease_expires_ms, \
    w.progress_bytes, w.total_bytes, w.phase, w.target_site, w.target_station";

pub fn work_row(row: &Row) -> Result<WorkItem> {
    let st: String = row.get(2)?;
    Ok(WorkItem {
        work_id: row.get(0)?,
        seed_id: row.get(1)?,
        state: WorkState::parse(&st).ok_or_else(|| bad_col(2, "work state", &st))?,
        generation: row.get::<i64>(3)? as u64,
        holder: row.get(4)?,
        lease_expires_ms: row.get(5)?,
        progress_bytes: row.get::<i64>(6)? as u64,
        total_bytes: row.get::<i64>(7)? as u64,
        phase: row.get(8)?,
        target_site: row.get(9)?,
        target_station: row.get(10)?,
    })
}

pub fn load_work(c: &dyn Db, work_id: &str) -> Result<WorkItem> {
    c.row(&format!("SELECT {WORK_COLS} FROM work_items w WHERE w.work_id = ?1"), args![work_id], work_row)?
        .ok_or_else(|| Error::NotFound(format!("no work item {work_id:?}")))
}

/// [`load_work`], the row locked until the commit where the transaction needs that
/// (`Db::for_update`).
pub fn lock_work(c: &dyn Db, work_id: &str) -> Result<WorkItem> {
    c.row(
        &format!("SELECT {WORK_COLS} FROM work_items w WHERE w.work_id = ?1{}", c.for_update("w")),
        args![work_id],
        work_row,
    )?
    .ok_or_else(|| Error::NotFound(format!("no work item {work_id:?}")))
}

/// [`lock_work`] with more columns (`cols`, after the work's) from `joins`, read by `rest`
/// (the row and where `cols` start); `locked` names the tables whose rows are locked (`w`,
/// or `w, s` with the seed). `params` start with the work's id.
pub fn lock_work_with<T>(
    c: &dyn Db,
    work_id: &str,
    cols: &str,
    joins: &str,
    params: &[&dyn crate::store::sql::ToValue],
    locked: &str,
    rest: impl FnOnce(&Row, usize) -> Result<T>,
) -> Result<(WorkItem, T)> {
    let n = WORK_COLS.split(',').count();
    c.row(
        &format!("SELECT {WORK_COLS}{cols} FROM work_items w {joins} WHERE w.work_id = ?1{}", c.for_update(locked)),
        params,
        |r| Ok((work_row(r)?, rest(r, n)?)),
    )?
    .ok_or_else(|| Error::NotFound(format!("no work item {work_id:?}")))
}

pub fn load_work_of_seed(c: &dyn Db, seed_id: &str) -> Result<WorkItem> {
    c.row(&format!("SELECT {WORK_COLS} FROM work_items w WHERE w.seed_id = ?1"), args![seed_id], work_row)?
        .ok_or_else(|| Error::NotFound(format!("seed {seed_id} has no disk-prep work item")))
}

pub fn save_work(c: &dyn Db, w: &WorkItem) -> Result<()> {
    save_work_with(c, w, "")
}

/// [`save_work`] right after [`transition`] of its seed to `seed_state`: the transition's
/// writes read no work item, and change none unless the seed ended (then its work is
/// cancelled), so the item's row is written with them in one statement on PostgreSQL
/// ([`Db::put_joined`]) when the seed did not end.
pub fn save_work_after_transition(c: &dyn Db, w: &WorkItem, seed_state: SeedState) -> Result<()> {
    if seed_state.is_terminal() {
        return save_work(c, w);
    }
    write_work(c, w, "", true)
}

/// [`save_work`], with more assignments (`, column = value`) in the same statement.
pub fn save_work_with(c: &dyn Db, w: &WorkItem, more: &str) -> Result<()> {
    write_work(c, w, more, false)
}

fn write_work(c: &dyn Db, w: &WorkItem, more: &str, joined: bool) -> Result<()> {
    let sql = format!(
        "UPDATE work_items SET state = ?2, generation = ?3, holder = ?4, lease_expires_ms = ?5, \
         progress_bytes = ?6, phase = ?7{more} WHERE work_id = ?1"
    );
    let values = args![
        w.work_id,
        w.state.as_str(),
        w.generation as i64,
        w.holder,
        w.lease_expires_ms,
        w.progress_bytes as i64,
        w.phase
    ];
    if joined { c.put_joined(&sql, values) } else { c.put(&sql, values) }
}

/// Applies `event` to the seed through the state machine, stores the new state and appends
/// the history row. An event that does not apply is FAILED_PRECONDITION.
pub fn transition(c: &dyn Db, seed: &mut Seed, t: Transition<'_>, now: UnixMs) -> Result<()> {
    let next = seed
        .state
        .apply(t.event)
        .map_err(|e| Error::FailedPrecondition(format!("seed {}: {e}", seed.spec.job_name)))?;
    let reason = if t.reason.is_empty() { next.describe().to_string() } else { t.reason };
    insert_event(c, &seed.seed_id, now, t.actor, Some(seed.state), next, t.event.as_str(), &reason)?;
    // The history's statements read the seed's job name only, which this does not change.
    c.put_joined(
        "UPDATE seeds SET state = ?2, state_reason = ?3, updated_ms = ?4 WHERE seed_id = ?1",
        args![seed.seed_id, next.as_str(), reason, now],
    )?;
    if next.is_terminal() {
        // A seed that ended has no disk-prep work left (a station still holding it is refused).
        c.put(
            "UPDATE work_items SET state = 'cancelled' WHERE seed_id = ?1 AND state NOT IN ('done', 'cancelled')",
            args![seed.seed_id],
        )?;
    }
    seed.state = next;
    seed.state_reason = reason;
    seed.updated_ms = now;
    if matches!(next, SeedState::Failed | SeedState::Cancelled) && seed.round_of.is_some() {
        super::rounds::round_ended(c, seed, now)?;
    }
    Ok(())
}

/// Something that changes what a seed says but not its state (an operator's action, a finding):
/// the history row, and the seed's reason.
pub fn say(c: &dyn Db, seed: &mut Seed, actor: &str, event: &str, reason: String, now: UnixMs) -> Result<()> {
    insert_event(c, &seed.seed_id, now, actor, Some(seed.state), seed.state, event, &reason)?;
    c.exec("UPDATE seeds SET state_reason = ?2, updated_ms = ?3 WHERE seed_id = ?1", args![seed.seed_id, reason, now])?;
    seed.state_reason = reason;
    seed.updated_ms = now;
    Ok(())
}

/// A seed whose disk-prep work an operator took back: a seed being prepared goes back to the
/// queue (`lease_lost`); otherwise `event` says why in its history.
pub fn work_taken_back(c: &dyn Db, s: &mut Seed, actor: &str, event: &str, why: String, now: UnixMs) -> Result<()> {
    if s.state == SeedState::Preparing {
        transition(c, s, Transition { event: SeedEvent::LeaseLost, actor, reason: why }, now)
    } else {
        say(c, s, actor, event, why, now)
    }
}

#[allow(clippy::too_many_arguments)]
pub fn insert_event(
    c: &dyn Db,
    seed_id: &str,
    now: UnixMs,
    actor: &str,
    from: Option<SeedState>,
    to: SeedState,
    event: &str,
    reason: &str,
) -> Result<()> {
    // The same event again (a station retrying, Azure still unavailable): one row, counted.
    let from = from.map(|s| s.as_str());
    const SAME_AS_LAST: &str = "SELECT event_id FROM seed_events WHERE event_id = \
        (SELECT MAX(event_id) FROM seed_events WHERE seed_id = ?1) AND actor = ?2 \
        AND from_state IS NOT DISTINCT FROM ?3 AND to_state = ?4 AND event = ?5 AND reason = ?6";
    // Every new event is in the audit log too, in this transaction: the seed's job name as the
    // target (what the evidence bundle selects by).
    let outcome = match from {
        Some(f) if f != to.as_str() => format!("{f} -> {}", to.as_str()),
        _ => to.as_str().to_string(),
    };
    let detail = format!("seed {seed_id}: {reason}");
    // What the operations team must hear of goes into the outbox, in this transaction, naming
    // the event: then the event is looked at first and its id read back.
    let notify = crate::domain::notify::classify(event, from.and_then(SeedState::parse), to);
    let Some(kind) = notify else {
        // Decided inside the database, in statements whose answer is not needed (PostgreSQL
        // sends them with the next one): the last event counted again if it is the same, else
        // the new event and its audit entry.
        // The three read the history as it was before them (the count changes no column they
        // compare): joined.
        let values = args![seed_id, actor, from, to.as_str(), event, reason, now, outcome, detail];
        c.put(
            &format!("UPDATE seed_events SET repeats = repeats + 1, last_ms = ?7 WHERE event_id IN ({SAME_AS_LAST})"),
            &values[..7],
        )?;
        c.put_joined(
            &format!(
                "INSERT INTO audit_pending (at_ms, actor, action, target, outcome, detail) \
                 SELECT ?7, ?2, ?5, COALESCE((SELECT job_name FROM seeds WHERE seed_id = ?1), ?1), ?8, ?9 \
                 WHERE NOT EXISTS ({SAME_AS_LAST})"
            ),
            values,
        )?;
        c.put_joined(
            &format!(
                "INSERT INTO seed_events (seed_id, at_ms, actor, from_state, to_state, event, reason, last_ms) \
                 SELECT ?1, ?7, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS ({SAME_AS_LAST})"
            ),
            &values[..7],
        )?;
        return Ok(());
    };
    let last: Option<i64> =
        c.row(SAME_AS_LAST, args![seed_id, actor, from, to.as_str(), event, reason], |r| r.get(0))?;
    if let Some(id) = last {
        c.put("UPDATE seed_events SET repeats = repeats + 1, last_ms = ?2 WHERE event_id = ?1", args![id, now])?;
        return Ok(());
    }
    let event_id: i64 = c.value(
        "INSERT INTO seed_events (seed_id, at_ms, actor, from_state, to_state, event, reason, last_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?2) RETURNING event_id",
        args![seed_id, now, actor, from, to.as_str(), event, reason],
    )?;
    super::audit::append_for_seed(c, now, seed_id, actor, event, &outcome, &detail)?;
    c.put(
        "INSERT INTO notifications (kind, seed_id, event_id, created_ms) VALUES (?1, ?2, ?3, ?4)",
        args![kind.as_str(), seed_id, event_id, now],
    )
}

pub fn event_row(row: &Row) -> Result<HistoryEntry> {
    let from: Option<String> = row.get(4)?;
    Ok(HistoryEntry {
        event_id: row.get(0)?,
        seed_id: row.get(1)?,
        job_name: row.get(2)?,
        at_ms: row.get(3)?,
        from: match from {
            Some(s) => Some(SeedState::parse(&s).ok_or_else(|| bad_col(4, "seed state", &s))?),
            None => None,
        },
        to: state_col(row, 5)?,
        actor: row.get(6)?,
        event: row.get(7)?,
        reason: row.get(8)?,
        repeats: row.get::<i64>(9)?.clamp(1, u32::MAX as i64) as u32,
        last_ms: row.get(10)?,
    })
}

pub const EVENT_COLS: &str = "e.event_id, e.seed_id, s.job_name, e.at_ms, e.from_state, e.to_state, e.actor, e.event, \
    e.reason, e.repeats, e.last_ms";

pub const DRIVE_COLS: &str = "d.drive_id, d.position, d.capacity_bytes, d.bytes_written, d.manifest_file, \
    d.manifest_hash, d.drive_header_hash, d.seed_id, s.job_name, d.reported_by, d.reported_ms, d.sealed_key IS NOT NULL, \
    d.status, d.status_reason";

pub fn drive_row(row: &Row) -> Result<Drive> {
    Ok(Drive {
        spec: DriveSpec {
            drive_id: row.get(0)?,
            position: row.get::<i64>(1)? as u32,
            capacity_bytes: row.get::<i64>(2)? as u64,
            bytes_written: row.get::<i64>(3)? as u64,
            manifest_file: row.get(4)?,
            manifest_hash: row.get(5)?,
            drive_header_hash: row.get(6)?,
            status: DriveStatus::parse(&row.get::<String>(12)?).unwrap_or(DriveStatus::Bad),
            status_reason: row.get(13)?,
        },
        seed_id: row.get(7)?,
        job_name: row.get(8)?,
        reported_by: row.get(9)?,
        reported_ms: row.get(10)?,
        has_key: row.get(11)?,
    })
}

pub const AGENT_COLS: &str = "identity, role, name, site, hostname, version, registered_ms, last_heartbeat_ms, status, virtualization, reported_ms";

pub fn agent_row(row: &Row) -> Result<Agent> {
    let role: String = row.get(1)?;
    Ok(Agent {
        identity: row.get(0)?,
        role: role.parse::<Role>().map_err(|_| bad_col(1, "role", &role))?,
        name: row.get(2)?,
        info: AgentInfo { site: row.get(3)?, hostname: row.get(4)?, version: row.get(5)?, virtualization: row.get(9)? },
        registered_ms: row.get(6)?,
        last_heartbeat_ms: row.get(7)?,
        status: row.get(8)?,
        reported: row.get::<Option<i64>>(10)?.is_some(),
        work: None,
    })
}

pub const SHIPPING_COLS: &str = "s.job_name, p.carrier, p.tracking_number, p.drive_count, p.ship_date, \
    p.seed_id, p.recorded_by, p.recorded_ms, p.confirmed_ms";

pub fn shipping_row(row: &Row) -> Result<ShippingRecord> {
    Ok(ShippingRecord {
        spec: NewShipping {
            job_name: row.get(0)?,
            carrier: row.get(1)?,
            tracking_number: row.get(2)?,
            drive_count: row.get::<i64>(3)? as u32,
            ship_date: row.get(4)?,
        },
        seed_id: row.get(5)?,
        recorded_by: row.get(6)?,
        recorded_ms: row.get(7)?,
        confirmed_ms: row.get(8)?,
    })
}

pub const JOB_COLS: &str = "j.seed_id, j.job_name, j.subscription_id, j.resource_group, j.location, \
    j.storage_account_id, j.phase, j.azure_state, j.percent_complete, j.intent_ms, j.created_ms, j.shipped_ms, \
    j.shipping_address, j.last_polled_ms, j.unavailable_since_ms, j.last_error, j.warned_step, j.warned_kind, \
    j.stage_status, j.actions, j.azure_error, \
    (SELECT s.kind FROM seeds s WHERE s.seed_id = j.seed_id), (SELECT s.total_bytes FROM seeds s WHERE s.seed_id = j.seed_id)";

fn kind_col(row: &Row, i: usize) -> Result<DiskKind> {
    let k: String = row.get(i)?;
    DiskKind::parse(&k).ok_or_else(|| bad_col(i, "disk kind", &k))
}

/// An `import_jobs` row; its drives are filled in by [`load_job`].
pub fn job_row(row: &Row) -> Result<JobRecord> {
    let phase: String = row.get(6)?;
    let address: String = row.get(12)?;
    Ok(JobRecord {
        intent: JobIntent {
            seed_id: row.get(0)?,
            job_name: row.get(1)?,
            subscription_id: row.get(2)?,
            resource_group: row.get(3)?,
            location: row.get(4)?,
            storage_account_id: row.get(5)?,
            kind: kind_col(row, 21)?,
            disks: match kind_col(row, 21)? {
                DiskKind::DataboxDisk => {
                    crate::domain::import::databox_disks_needed(row.get::<i64>(22)? as u64).unwrap_or(0)
                }
                DiskKind::CustomerDisk => 0,
            },
        },
        phase: JobPhase::parse(&phase).ok_or_else(|| bad_col(6, "job phase", &phase))?,
        azure_state: row.get(7)?,
        percent_complete: row.get(8)?,
        intent_ms: row.get(9)?,
        created_ms: row.get(10)?,
        shipped_ms: row.get(11)?,
        shipping_address: serde_json::from_str(&address).unwrap_or_default(),
        last_polled_ms: row.get(13)?,
        unavailable_since_ms: row.get(14)?,
        last_error: row.get(15)?,
        warned_step: row.get(16)?,
        warned_kind: row.get(17)?,
        stage_status: row.get(18)?,
        actions: serde_json::from_str(&row.get::<String>(19)?).unwrap_or_default(),
        azure_error: row.get(20)?,
        drives: Vec::new(),
    })
}

pub fn job_drives(c: &dyn Db, seed_id: &str) -> Result<Vec<JobDrive>> {
    c.rows(
        "SELECT drive_id, state, copy_status, percent_complete, bytes_succeeded, error_log_uri, verbose_log_uri, \
         manifest_uri, copy_errors FROM job_drives WHERE seed_id = ?1 ORDER BY drive_id",
        args![seed_id],
        |r| {
            Ok(JobDrive {
                drive_id: r.get(0)?,
                state: r.get(1)?,
                copy_status: r.get(2)?,
                percent_complete: r.get(3)?,
                bytes_succeeded: r.get(4)?,
                error_log_uri: r.get(5)?,
                verbose_log_uri: r.get(6)?,
                manifest_uri: r.get(7)?,
                errors: serde_json::from_str(&r.get::<String>(8)?).unwrap_or_default(),
            })
        },
    )
}

/// The job record of a seed (by seed id or job name), with its drives.
pub fn load_job(c: &dyn Db, key: &str) -> Result<Option<JobRecord>> {
    let job = c.row(
        &format!("SELECT {JOB_COLS} FROM import_jobs j WHERE j.seed_id = {}", by_id_or_name("import_jobs")),
        args![key],
        job_row,
    )?;
    match job {
        Some(mut j) => {
            j.drives = job_drives(c, &j.intent.seed_id)?;
            Ok(Some(j))
        }
        None => Ok(None),
    }
}

/// Calls that only say "still here" (every few seconds): counted in `/metrics`, not audited.
/// What they change that matters (a station starting to wait, or working again) is a seed
/// event, which is.
const LIVENESS: &[&str] = &["Heartbeat", "RenewLease", "ReportProgress"];

/// What a call acted on, from its answer: the seed's job name where there is one, else the
/// seed, the identity or the work it names.
fn audit_target(response: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(response) else { return String::new() };
    let find = |v: &serde_json::Value, k: &str| -> Option<String> {
        v.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty()).map(str::to_string)
    };
    for place in [&v, &v["spec"], &v["seed"], &v["seed"]["spec"], &v["intent"], &v["work"], &v["record"]] {
        if let Some(j) = find(place, "job_name") {
            return j;
        }
    }
    for k in ["seed_id", "identity", "work_id"] {
        for place in [&v, &v["seed"], &v["work"], &v["revocation"]] {
            if let Some(x) = find(place, k) {
                return x;
            }
        }
    }
    String::new()
}

/// Runs `op` once per (caller, request id): a repeat with the same method and fingerprint
/// gets the stored answer; a repeat with anything else is ALREADY_EXISTS. Only successful
/// answers are stored, so a refused request can be retried after the cause is fixed.
pub fn idempotent<T, F>(c: &dyn Db, idem: &Idem, now: UnixMs, op: F) -> Result<T>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<T>,
{
    if c.requests_last() {
        // Most requests are new: the operation runs first, and a copy of one already answered
        // fails (in the operation, or at its record's insert, which goes with the commit); then
        // the backend runs it again, looking first.
        let out = op()?;
        record(c, idem, now, &out)?;
        return Ok(out);
    }
    // A second copy of this request at the same moment waits here for the first, then finds
    // its answer (READ COMMITTED; elsewhere the transaction's isolation does it).
    c.lock_key(&format!("{}\n{}", idem.caller, idem.request_id))?;
    let prior: Option<(String, Vec<u8>, String)> = c.row(
        "SELECT method, fingerprint, response FROM requests WHERE caller = ?1 AND request_id = ?2",
        args![idem.caller, idem.request_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if let Some((method, fp, response)) = prior {
        if method != idem.method || fp.as_slice() != idem.fingerprint.as_slice() {
            return Err(Error::AlreadyExists(format!(
                "request id {:?} was already used for a different {} request; use a new request id",
                idem.request_id, method
            )));
        }
        return serde_json::from_str(&response).map_err(|e| {
            Error::Internal(format!("stored answer of request {:?} is unreadable: {e}", idem.request_id))
        });
    }
    let out = op()?;
    record(c, idem, now, &out)?;
    Ok(out)
}

/// Records `out` as the answer to `idem` (and audits it, unless it is a liveness call).
fn record<T: Serialize>(c: &dyn Db, idem: &Idem, now: UnixMs, out: &T) -> Result<()> {
    let response = serde_json::to_string(out).map_err(|e| Error::Internal(format!("cannot store answer: {e}")))?;
    if !LIVENESS.contains(&idem.method) {
        let record = AuditRecord {
            actor: idem.caller.clone(),
            action: idem.method.to_string(),
            target: audit_target(&response),
            outcome: "ok".into(),
            detail: format!("request {}", idem.request_id),
        };
        super::audit::append(c, now, &record)?;
    }
    c.put_joined(
        "INSERT INTO requests (caller, request_id, method, fingerprint, response, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![idem.caller, idem.request_id, idem.method, idem.fingerprint.as_slice(), response, now],
    )
}

/// A liveness call's whole work and its record as one statement, where the backend runs it
/// alone (`Db::alone`: a PostgreSQL lease call's first try, one round trip instead of two):
/// `update` (an `UPDATE … RETURNING 1`, its parameters `params` from `?7` on) and, only when
/// it changed a row, `answer` recorded as the request's answer, exactly as [`idempotent`]
/// would. True: done. False: nothing was written (the update matched nothing, or the backend
/// does not run statements alone), and the operation runs its usual way, which says what is
/// wrong or does what the single statement does not (a wait's history). A copy of a request
/// already answered fails at the record's insert, with nothing written; the backend then runs
/// the operation again, looking up its answer first.
pub fn alone_recorded<T: Serialize>(
    c: &dyn Db,
    idem: &Idem,
    now: UnixMs,
    update: &str,
    params: &[&dyn crate::store::sql::ToValue],
    answer: &T,
) -> Result<bool> {
    // Only calls that are not audited: an audited answer has an entry to append too.
    if !LIVENESS.contains(&idem.method) {
        return Ok(false);
    }
    let response = serde_json::to_string(answer).map_err(|e| Error::Internal(format!("cannot store answer: {e}")))?;
    let sql = format!(
        "WITH changed AS ({update}) INSERT INTO requests (caller, request_id, method, fingerprint, response, created_ms) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6 FROM changed RETURNING 1"
    );
    let fingerprint = idem.fingerprint.as_slice();
    let mut all: Vec<&dyn crate::store::sql::ToValue> =
        vec![&idem.caller, &idem.request_id, &idem.method, &fingerprint, &response, &now];
    all.extend_from_slice(params);
    Ok(c.alone(&sql, &all)?.is_some_and(|rows| !rows.is_empty()))
}

/// The conditions of `WorkItem::check` on `work_items` in SQL, and that the work is not
/// waiting (ending a wait is in the seed's history): `?7` the work, `?8` the lease's
/// generation, `?9` the station, `?10` now. For [`alone_recorded`].
pub fn live_lease_sql() -> String {
    format!(
        "work_id = ?7 AND generation = ?8 AND state = '{}' AND holder = ?9 AND lease_expires_ms > ?10 AND phase <> '{}'",
        WorkState::Leased.as_str(),
        crate::domain::lease::WAITING
    )
}

pub const DISK_PROGRESS_COLS: &str =
    "position, set_size, drive_id, phase, done_bytes, total_bytes, rate_bytes_per_sec, updated_ms";

pub fn disk_progress_row(row: &Row) -> Result<DiskProgress> {
    Ok(DiskProgress {
        position: row.get(0)?,
        set_size: row.get(1)?,
        drive_id: row.get(2)?,
        phase: row.get(3)?,
        done_bytes: row.get::<i64>(4)? as u64,
        total_bytes: row.get::<i64>(5)? as u64,
        rate_bytes_per_sec: row.get::<i64>(6)? as u64,
        updated_ms: row.get(7)?,
    })
}

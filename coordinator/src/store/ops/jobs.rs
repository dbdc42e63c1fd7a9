//! The Azure import job's writes and reads: the intent before the PUT, Azure's answers, the
//! mirror of every poll, deadlines, and the shipping reservation.

use seedship_proto::identity::SpiffeId;

use super::rows::*;
use crate::args;
use crate::clock::{UnixMs, rfc3339};
use crate::domain::import::{self, DeadlineKind, JobIntent, JobPhase, JobRecord, JobSnapshot};
use crate::domain::model::*;
use crate::domain::seed::{SeedEvent, SeedState};
use crate::error::{Error, Result};
use crate::store::sql::Db;

/// Actor name of the coordinator's Azure worker in seed histories.
pub const AZURE: &str = "coordinator/azure";

fn require_job(c: &dyn Db, seed_id: &str) -> Result<JobRecord> {
    load_job(c, seed_id)?.ok_or_else(|| Error::NotFound(format!("seed {seed_id} has no import job record")))
}

/// Records something about a seed that does not change its state.
fn note(c: &dyn Db, seed: &Seed, now: UnixMs, actor: &str, event: &str, reason: &str) -> Result<()> {
    insert_event(c, &seed.seed_id, now, actor, Some(seed.state), seed.state, event, reason)
}

fn set_reason(c: &dyn Db, seed: &mut Seed, reason: &str, now: UnixMs) -> Result<()> {
    if seed.state_reason == reason {
        return Ok(());
    }
    c.exec("UPDATE seeds SET state_reason = ?2, updated_ms = ?3 WHERE seed_id = ?1", args![seed.seed_id, reason, now])?;
    seed.state_reason = reason.to_string();
    seed.updated_ms = now;
    Ok(())
}

/// Seeds that need a job and have no import job record yet: customer disks once prepared,
/// Data Box Disk at registration (the order).
pub fn seeds_awaiting_jobs(c: &dyn Db) -> Result<Vec<Seed>> {
    c.rows(
        &format!(
            "SELECT {SEED_COLS} FROM seeds s WHERE ((s.state = 'disks_prepared' AND s.kind = 'customer_disk') \
             OR (s.state = 'registered' AND s.kind = 'databox_disk')) \
             AND NOT EXISTS (SELECT 1 FROM import_jobs j WHERE j.seed_id = s.seed_id) ORDER BY s.updated_ms"
        ),
        &[],
        seed_row,
    )
}

/// The prepared drives of a seed with their sealed keys, in position order.
pub fn drives_for_job(c: &dyn Db, seed_id: &str) -> Result<Vec<DriveForJob>> {
    let n = DRIVE_COLS.split(',').count();
    c.rows(
        &format!(
            "SELECT {DRIVE_COLS}, d.sealed_key, w.work_id FROM drives d JOIN seeds s ON s.seed_id = d.seed_id \
             JOIN work_items w ON w.seed_id = d.seed_id \
             WHERE d.seed_id = ?1 AND d.status = 'prepared' ORDER BY d.position, d.drive_id"
        ),
        args![seed_id],
        |r| {
            let d = drive_row(r)?;
            let key: Option<Vec<u8>> = r.get(n)?;
            Ok(DriveForJob { spec: d.spec, sealed_key: key.map(SealedKey), work_id: r.get(n + 1)? })
        },
    )
}

/// Writes the intent to create the job, after the checks Azure would make. An intent already
/// written is returned as it is (the job name is the key). A job that breaks a rule is
/// written `refused` and the seed fails with the rule it breaks.
pub fn record_job_intent(c: &dyn Db, intent: &JobIntent, now: UnixMs) -> Result<JobRecord> {
    if let Some(existing) = load_job(c, &intent.seed_id)? {
        return Ok(existing);
    }
    let seed = require_seed(c, &intent.seed_id)?;
    let due = match seed.kind {
        DiskKind::CustomerDisk => SeedState::DisksPrepared,
        DiskKind::DataboxDisk => SeedState::Registered,
    };
    if seed.state != due || seed.kind != intent.kind {
        return Err(Error::FailedPrecondition(format!(
            "seed {} is {} on {}; its import job is created once it is {due}",
            seed.spec.job_name,
            seed.state,
            seed.kind.describe()
        )));
    }
    let problem = import::job_problem(intent, &job_facts(c, intent)?);
    c.exec(
        "INSERT INTO import_jobs (seed_id, job_name, subscription_id, resource_group, location, storage_account_id, \
         phase, intent_ms, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![
            intent.seed_id,
            intent.job_name,
            intent.subscription_id,
            intent.resource_group,
            intent.location,
            intent.storage_account_id,
            if problem.is_some() { "refused" } else { "intent" },
            now,
            problem.clone().unwrap_or_default()
        ],
    )?;
    if let Some(why) = problem {
        let mut seed = seed;
        transition(
            c,
            &mut seed,
            Transition {
                event: SeedEvent::Fail,
                actor: AZURE,
                reason: format!("import job {} cannot be created: {why}", intent.job_name),
            },
            now,
        )?;
        return require_job(c, &intent.seed_id);
    }
    let what = match intent.kind {
        DiskKind::CustomerDisk => format!("with {} drive(s)", drives_for_job(c, &intent.seed_id)?.len()),
        DiskKind::DataboxDisk => format!("ordering {} Data Box Disk(s)", intent.disks),
    };
    note(
        c,
        &seed,
        now,
        AZURE,
        "import_job_intent",
        &format!(
            "creating Azure import job {} in resource group {} ({}) {what}",
            intent.job_name, intent.resource_group, intent.location
        ),
    )?;
    require_job(c, &intent.seed_id)
}

/// The facts Azure's creation rules look at ([`import::job_problem`] decides).
fn job_facts(c: &dyn Db, intent: &JobIntent) -> Result<import::JobFacts> {
    let drives = drives_for_job(c, &intent.seed_id)?;
    let mut facts = import::JobFacts::default();
    for d in &drives {
        let other: Option<String> = c.row(
            "SELECT s.job_name FROM drives d JOIN import_jobs j ON j.seed_id = d.seed_id \
                 JOIN seeds s ON s.seed_id = d.seed_id \
                 WHERE d.drive_id = ?1 AND d.seed_id != ?2 AND d.status = 'prepared' \
                 AND j.phase IN ('intent', 'created') AND s.state NOT IN ('seeded', 'failed', 'cancelled', 'merged')",
            args![d.spec.drive_id, intent.seed_id],
            |r| r.get(0),
        )?;
        facts.drives.push(import::DriveFact {
            drive_id: d.spec.drive_id.clone(),
            key_escrowed: d.sealed_key.is_some(),
            in_other_active_job: other,
        });
    }
    Ok(facts)
}

/// Jobs the Azure worker still works on: intents of live seeds, and created jobs that Azure
/// has not ended (followed after a seed failed too, so operators see how the drives end).
pub fn followed_jobs(c: &dyn Db) -> Result<Vec<JobRecord>> {
    let ids: Vec<String> = {
        c.rows(
            "SELECT j.seed_id FROM import_jobs j JOIN seeds s ON s.seed_id = j.seed_id \
                 WHERE (j.phase = 'intent' AND s.state NOT IN ('seeded', 'failed', 'cancelled', 'merged')) \
                 OR (j.phase = 'created' AND j.azure_state NOT IN ('Completed', 'Closed', 'Canceled', 'Cancelled')) \
                 ORDER BY j.intent_ms",
            &[],
            |r| r.get(0),
        )?
    };
    ids.iter().map(|id| require_job(c, id)).collect()
}

fn save_drives(c: &dyn Db, seed_id: &str, snap: &JobSnapshot, now: UnixMs) -> Result<()> {
    for d in &snap.drives {
        c.exec(
            "INSERT INTO job_drives (seed_id, drive_id, state, copy_status, percent_complete, bytes_succeeded, \
             error_log_uri, verbose_log_uri, manifest_uri, updated_ms, copy_errors) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (seed_id, drive_id) DO UPDATE SET state = ?3, copy_status = ?4, percent_complete = ?5, \
             bytes_succeeded = ?6, error_log_uri = ?7, verbose_log_uri = ?8, manifest_uri = ?9, updated_ms = ?10, \
             copy_errors = ?11",
            args![
                seed_id,
                d.drive_id,
                d.state,
                d.copy_status,
                d.percent_complete,
                d.bytes_succeeded,
                d.error_log_uri,
                d.verbose_log_uri,
                d.manifest_uri,
                now,
                serde_json::to_string(&d.errors).expect("serializes"),
            ],
        )?;
    }
    Ok(())
}

/// Azure answered: clears "unavailable" and says for how long it was.
fn azure_back(c: &dyn Db, seed: &Seed, job: &JobRecord, now: UnixMs) -> Result<()> {
    if let Some(since) = job.unavailable_since_ms {
        note(
            c,
            seed,
            now,
            AZURE,
            "azure_available",
            &format!("Azure answers again (unavailable since {})", rfc3339(since)),
        )?;
    }
    c.exec(
        "UPDATE import_jobs SET unavailable_since_ms = NULL, last_error = '', last_polled_ms = ?2 WHERE seed_id = ?1",
        args![seed.seed_id, now],
    )?;
    Ok(())
}

/// Azure has the job (created now, or found after a restart): the seed is
/// `import_job_created` and the datacenter's address is kept.
pub fn job_created(
    c: &dyn Db,
    seed_id: &str,
    snap: &JobSnapshot,
    address: &[String],
    adopted: bool,
    now: UnixMs,
) -> Result<()> {
    let job = require_job(c, seed_id)?;
    if job.phase == JobPhase::Created {
        return Ok(());
    }
    let mut seed = require_seed(c, seed_id)?;
    azure_back(c, &seed, &job, now)?;
    c.exec(
        "UPDATE import_jobs SET phase = 'created', created_ms = ?2, azure_state = ?3, percent_complete = ?4, \
         shipping_address = ?5 WHERE seed_id = ?1",
        args![
            seed_id,
            now,
            snap.state,
            snap.percent_complete,
            serde_json::to_string(address).unwrap_or_else(|_| "[]".into())
        ],
    )?;
    save_drives(c, seed_id, snap, now)?;
    let how = if adopted { "found in Azure after a restart and adopted" } else { "created" };
    if seed.kind == DiskKind::DataboxDisk {
        return transition(
            c,
            &mut seed,
            Transition {
                event: SeedEvent::DisksOrdered,
                actor: AZURE,
                reason: format!(
                    "Data Box Disk order {} {how} (state {}): {} disk(s) of {} TB; Microsoft delivers them to the [azure.return_address]",
                    job.intent.job_name,
                    snap.state,
                    job.intent.disks,
                    seedship_azure::databox::DATABOX_DISK_TB
                ),
            },
            now,
        );
    }
    let to = if address.is_empty() { "the address in `seedctl job`".to_string() } else { address.join(", ") };
    transition(
        c,
        &mut seed,
        Transition {
            event: SeedEvent::ImportJobCreated,
            actor: AZURE,
            reason: format!(
                "Azure import job {} {how} (state {}); ship the drives to {to} and record the carrier and tracking number within {} days",
                job.intent.job_name,
                snap.state,
                import::DEADLINE_DAYS
            ),
        },
        now,
    )
}

/// Azure refused to create the job: the seed fails with Azure's reason.
pub fn job_refused(c: &dyn Db, seed_id: &str, reason: &str, now: UnixMs) -> Result<()> {
    let job = require_job(c, seed_id)?;
    c.exec("UPDATE import_jobs SET phase = 'refused', last_error = ?2 WHERE seed_id = ?1", args![seed_id, reason])?;
    let mut seed = require_seed(c, seed_id)?;
    if seed.state.is_terminal() {
        return Ok(());
    }
    transition(
        c,
        &mut seed,
        Transition {
            event: SeedEvent::Fail,
            actor: AZURE,
            reason: format!("Azure refused to create import job {}: {reason}", job.intent.job_name),
        },
        now,
    )
}

/// Azure did not answer, or throttled past the retries: noted once when it starts, and the
/// seed's reason says since when.
pub fn azure_unavailable(c: &dyn Db, seed_id: &str, error: &str, now: UnixMs) -> Result<()> {
    let job = require_job(c, seed_id)?;
    let mut seed = require_seed(c, seed_id)?;
    let since = job.unavailable_since_ms.unwrap_or(now);
    if job.unavailable_since_ms.is_none() {
        note(c, &seed, now, AZURE, "azure_unavailable", &format!("Azure does not answer: {error}; retrying"))?;
    }
    c.exec(
        "UPDATE import_jobs SET unavailable_since_ms = ?2, last_error = ?3 WHERE seed_id = ?1",
        args![seed_id, since, error],
    )?;
    if !seed.state.is_terminal() {
        let reason = format!("Azure unavailable since {}: {error}; retrying with backoff", rfc3339(since));
        set_reason(c, &mut seed, &reason, now)?;
    }
    Ok(())
}

/// One poll's answer: the job and drive states are kept, every change goes into the seed's
/// history, and the seed follows Azure ([`import::follow`]). Returns the changes, for the log.
pub fn mirror_job(c: &dyn Db, seed_id: &str, snap: &JobSnapshot, now: UnixMs) -> Result<Vec<String>> {
    let job = require_job(c, seed_id)?;
    let mut seed = require_seed(c, seed_id)?;
    azure_back(c, &seed, &job, now)?;
    let mut said = Vec::new();
    if job.azure_state != snap.state {
        let line = if job.azure_state.is_empty() {
            format!("Azure job state {}", snap.state)
        } else {
            format!("Azure job state {} -> {}", job.azure_state, snap.state)
        };
        note(c, &seed, now, AZURE, "azure_job_state", &line)?;
        said.push(line);
    }
    for line in import::drive_changes(&job.drives, &snap.drives) {
        note(c, &seed, now, AZURE, "azure_drive_state", &line)?;
        said.push(line);
    }
    let shipped_now = job.shipped_ms.is_none() && import::shipped(snap);
    c.exec(
        "UPDATE import_jobs SET azure_state = ?2, percent_complete = ?3, shipped_ms = COALESCE(shipped_ms, ?4), \
         stage_status = ?5, actions = ?6, azure_error = ?7 WHERE seed_id = ?1",
        args![
            seed_id,
            snap.state,
            snap.percent_complete,
            if shipped_now { Some(now) } else { None },
            snap.stage_status,
            serde_json::to_string(&snap.actions).expect("serializes"),
            snap.error
        ],
    )?;
    save_drives(c, seed_id, snap, now)?;
    let follow = import::follow(seed.state, snap);
    if let Some(n) = &follow.note
        && (job.azure_state != snap.state || job.stage_status != snap.stage_status)
    {
        let event = if snap.waits_for_customer() { "azure_waits_for_customer" } else { "azure_unknown_state" };
        note(c, &seed, now, AZURE, event, n)?;
    }
    for (event, reason) in follow.events {
        transition(c, &mut seed, Transition { event, actor: AZURE, reason: reason.clone() }, now)?;
        said.push(format!("seed {}: {reason}", seed.state));
    }
    if matches!(seed.state, SeedState::Shipped | SeedState::AtDatacenter | SeedState::Importing) {
        set_reason(c, &mut seed, &import::waiting_reason(snap), now)?;
    }
    Ok(said)
}

/// Data Box Disk: Microsoft delivered the disks. Each becomes a drive of the seed with its
/// key (sealed by the caller), the passkey is kept sealed, and the disk-prep work is queued.
/// Nothing happens for a seed no longer waiting for its disks.
pub fn disks_delivered(
    c: &dyn Db,
    seed_id: &str,
    disks: &[DeliveredDisk],
    passkey: Option<&(SealedKey, bool)>,
    now: UnixMs,
) -> Result<()> {
    let mut seed = require_seed(c, seed_id)?;
    if seed.state != SeedState::DisksOrdered {
        return Ok(());
    }
    for d in disks {
        c.exec(
            "INSERT INTO drives (seed_id, drive_id, position, capacity_bytes, bytes_written, manifest_file, \
             manifest_hash, drive_header_hash, sealed_key, reported_by, reported_ms, status, status_reason, delivered) \
             VALUES (?1, ?2, ?3, ?4, 0, '', '', '', ?5, ?6, ?7, 'delivered', '', 1) \
             ON CONFLICT (seed_id, drive_id) DO UPDATE SET sealed_key = excluded.sealed_key, delivered = 1",
            args![seed_id, d.serial, d.position as i64, d.capacity_bytes as i64, d.sealed_key.0, AZURE, now],
        )?;
    }
    if let Some((k, user_defined)) = passkey {
        c.exec(
            "UPDATE import_jobs SET sealed_passkey = ?2, passkey_user_defined = ?3 WHERE seed_id = ?1",
            args![seed_id, k.0, user_defined],
        )?;
    }
    c.exec(
        "UPDATE work_items SET state = 'queued', queued_ms = ?2 WHERE seed_id = ?1 AND state = 'waiting'",
        args![seed_id, now],
    )?;
    let serials: Vec<&str> = disks.iter().map(|d| d.serial.as_str()).collect();
    transition(
        c,
        &mut seed,
        Transition {
            event: SeedEvent::DisksDelivered,
            actor: AZURE,
            reason: format!(
                "Microsoft delivered {} Data Box Disk(s) ({}), keys escrowed; waiting for a copy station to write them",
                disks.len(),
                serials.join(", ")
            ),
        },
        now,
    )
}

/// The sealed Data Box Disk passkey of a seed (once delivered), whether the customer chose
/// it, and the work id it is sealed with.
pub fn passkey(c: &dyn Db, seed: &str) -> Result<PasskeyRecord> {
    let s = require_seed(c, seed)?;
    let work = load_work_of_seed(c, &s.seed_id)?;
    let row: Option<(Option<Vec<u8>>, bool, String)> = c.row(
        "SELECT sealed_passkey, passkey_user_defined, azure_state FROM import_jobs WHERE seed_id = ?1",
        args![s.seed_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (sealed, user_defined, stage) = row.unwrap_or((None, false, String::new()));
    Ok(PasskeyRecord { seed: s, work_id: work.work_id, sealed: sealed.map(SealedKey), user_defined, stage })
}

/// Something done to a seed's job, in its history.
pub fn note_job(c: &dyn Db, seed_id: &str, actor: &str, event: &str, what: &str, now: UnixMs) -> Result<()> {
    let seed = require_seed(c, seed_id)?;
    note(c, &seed, now, actor, event, what)
}

/// The job is not in Azure (deleted there, or expired): surfaced, and the seed fails when its
/// import had not finished.
pub fn job_gone(c: &dyn Db, seed_id: &str, now: UnixMs) -> Result<()> {
    let job = require_job(c, seed_id)?;
    if job.phase == JobPhase::Gone {
        return Ok(());
    }
    c.exec("UPDATE import_jobs SET phase = 'gone', last_polled_ms = ?2 WHERE seed_id = ?1", args![seed_id, now])?;
    let mut seed = require_seed(c, seed_id)?;
    let reason = format!(
        "Azure import job {} no longer exists in resource group {} (deleted in Azure, or expired)",
        job.intent.job_name, job.intent.resource_group
    );
    let before_import = matches!(
        seed.state,
        SeedState::DisksOrdered
            | SeedState::QueuedForDiskPrep
            | SeedState::Preparing
            | SeedState::DisksPrepared
            | SeedState::ImportJobCreated
            | SeedState::Shipped
            | SeedState::AtDatacenter
            | SeedState::Importing
    );
    if before_import {
        transition(
            c,
            &mut seed,
            Transition {
                event: SeedEvent::Fail,
                actor: AZURE,
                reason: format!(
                    "{reason}; the drives were not imported. Prepare the seed again or contact Azure support"
                ),
            },
            now,
        )
    } else {
        note(c, &seed, now, AZURE, "azure_job_gone", &reason)
    }
}

/// Announces deadline step `step` (10, 12, 13, or 14 = expired) of `kind` once. At 14 the seed
/// fails with `text`; before, `text` becomes the seed's reason. Returns whether it was new.
pub fn deadline_step(
    c: &dyn Db,
    seed_id: &str,
    kind: DeadlineKind,
    step: i64,
    text: &str,
    now: UnixMs,
) -> Result<bool> {
    let job = require_job(c, seed_id)?;
    if job.warned_kind == kind.as_str() && job.warned_step >= step {
        return Ok(false);
    }
    c.exec(
        "UPDATE import_jobs SET warned_step = ?2, warned_kind = ?3 WHERE seed_id = ?1",
        args![seed_id, step, kind.as_str()],
    )?;
    let mut seed = require_seed(c, seed_id)?;
    if seed.state.is_terminal() {
        return Ok(true);
    }
    if step >= import::DEADLINE_DAYS {
        transition(c, &mut seed, Transition { event: SeedEvent::Fail, actor: AZURE, reason: text.to_string() }, now)?;
    } else {
        note(c, &seed, now, AZURE, "deadline_warning", &format!("day {step}: {text}"))?;
        set_reason(c, &mut seed, text, now)?;
    }
    Ok(true)
}

/// Reserves the shipping record: the tracking number is taken here (the UNIQUE index decides
/// a race), before Azure is told. A repeat of the same record returns it.
pub fn reserve_shipping(
    c: &dyn Db,
    idem: &Idem,
    operator: &SpiffeId,
    rec: &NewShipping,
    now: UnixMs,
) -> Result<ShippingRecord> {
    idempotent(c, idem, now, || {
        let seed = require_seed(c, &rec.job_name)?;
        if let Some(other) = c.row(
            "SELECT s.job_name FROM shipping p JOIN seeds s ON s.seed_id = p.seed_id \
                 WHERE p.tracking_number = ?1 AND p.seed_id != ?2",
            args![rec.tracking_number, seed.seed_id],
            |r| r.get::<String>(0),
        )? {
            return Err(Error::AlreadyExists(format!(
                "tracking number {:?} is already recorded for job {other:?}; every job needs its own (several jobs in one box: add -1, -2, …)",
                rec.tracking_number
            )));
        }
        if let Some(existing) = super::reads::shipping_by_job(c, &seed.spec.job_name)? {
            if existing.spec == *rec && existing.confirmed_ms.is_none() {
                return Ok(existing);
            }
            return Err(Error::FailedPrecondition(format!(
                "job {} already has shipping recorded by {} (carrier {}, tracking number {}); nothing was changed",
                rec.job_name, existing.recorded_by, existing.spec.carrier, existing.spec.tracking_number
            )));
        }
        let job = load_job(c, &seed.seed_id)?;
        if seed.state == SeedState::Cancelled || job.as_ref().is_some_and(|j| j.azure_state.starts_with("Cancel")) {
            return Err(Error::FailedPrecondition(format!(
                "job {} is cancelled; shipping cannot be recorded for it",
                rec.job_name
            )));
        }
        if seed.state != SeedState::ImportJobCreated || job.as_ref().is_none_or(|j| j.phase != JobPhase::Created) {
            return Err(Error::FailedPrecondition(format!(
                "job {} is {}; shipping can be recorded once its import job is created in Azure",
                rec.job_name, seed.state
            )));
        }
        let drives = super::writes::prepared_drives(c, &seed.seed_id)?;
        if drives != rec.drive_count {
            return Err(Error::FailedPrecondition(format!(
                "job {} has {drives} drive(s), not {}; ship every drive of the job in one package",
                rec.job_name, rec.drive_count
            )));
        }
        c.exec("INSERT INTO shipping (seed_id, carrier, tracking_number, drive_count, ship_date, recorded_by, recorded_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", args![seed.seed_id, rec.carrier, rec.tracking_number, rec.drive_count as i64, rec.ship_date, operator.uri(), now])
        .map_err(|e| match e {
            Error::Internal(m) if m.contains("UNIQUE") || m.contains("unique") => Error::AlreadyExists(format!(
                "tracking number {:?} was just recorded for another job; every job needs its own",
                rec.tracking_number
            )),
            other => other,
        })?;
        Ok(ShippingRecord {
            spec: rec.clone(),
            seed_id: seed.seed_id,
            recorded_by: operator.uri(),
            recorded_ms: now,
            confirmed_ms: None,
        })
    })
}

/// Azure took the delivery package: the record is confirmed and the seed is `shipped`.
pub fn confirm_shipping(c: &dyn Db, seed_id: &str, now: UnixMs) -> Result<ShippingRecord> {
    let mut seed = require_seed(c, seed_id)?;
    let rec = super::reads::shipping_by_job(c, &seed.spec.job_name)?
        .ok_or_else(|| Error::NotFound(format!("job {} has no shipping reserved", seed.spec.job_name)))?;
    if rec.confirmed_ms.is_some() {
        return Ok(rec);
    }
    c.exec("UPDATE shipping SET confirmed_ms = ?2 WHERE seed_id = ?1", args![seed_id, now])?;
    // Customer disks: Azure took the delivery package (its stage follows at the next poll).
    // Data Box Disk: recorded here only; Azure says PickedUp when its carrier scans the box.
    let (stage, who) = match seed.kind {
        DiskKind::CustomerDisk => ("Shipping", "Azure has the delivery package"),
        DiskKind::DataboxDisk => ("", "Azure reports the pick-up when the carrier scans Microsoft's return label"),
    };
    c.exec(
        "UPDATE import_jobs SET shipped_ms = COALESCE(shipped_ms, ?2), \
         azure_state = CASE WHEN ?3 = '' THEN azure_state ELSE ?3 END WHERE seed_id = ?1",
        args![seed_id, now, stage],
    )?;
    let reason = format!(
        "shipped via {} with tracking number {} ({} drive(s), {}), recorded by {}; {who}",
        rec.spec.carrier, rec.spec.tracking_number, rec.spec.drive_count, rec.spec.ship_date, rec.recorded_by
    );
    if seed.state == SeedState::ImportJobCreated {
        transition(c, &mut seed, Transition { event: SeedEvent::Shipped, actor: &rec.recorded_by, reason }, now)?;
    } else {
        note(c, &seed, now, &rec.recorded_by, "shipping_recorded", &reason)?;
    }
    Ok(ShippingRecord { confirmed_ms: Some(now), ..rec })
}

/// Azure refused the delivery package (or never got it): the reservation goes, with why.
pub fn drop_shipping(c: &dyn Db, seed_id: &str, reason: &str, now: UnixMs) -> Result<()> {
    let seed = require_seed(c, seed_id)?;
    let n = c.exec("DELETE FROM shipping WHERE seed_id = ?1 AND confirmed_ms IS NULL", args![seed_id])?;
    if n > 0 {
        note(c, &seed, now, AZURE, "shipping_not_recorded", reason)?;
    }
    Ok(())
}

/// Reservations older than `before` that Azure never confirmed (a crash in between).
pub fn stale_reservations(c: &dyn Db, before: UnixMs) -> Result<Vec<ShippingRecord>> {
    c.rows(
        &format!(
            "SELECT {SHIPPING_COLS} FROM shipping p JOIN seeds s ON s.seed_id = p.seed_id \
             WHERE p.confirmed_ms IS NULL AND p.recorded_ms < ?1"
        ),
        args![before],
        shipping_row,
    )
}

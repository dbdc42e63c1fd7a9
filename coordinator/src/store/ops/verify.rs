//! The import verification's results and the repairs asked of source agents.

use seedship_proto::identity::SpiffeId;

use super::jobs::AZURE;
use super::rows::*;
use crate::args;
use crate::clock::UnixMs;
use crate::domain::model::*;
use crate::domain::seed::{SeedEvent, SeedState};
use crate::error::{Error, Result};
use crate::store::sql::Db;

/// Actor of the verifier in seed histories.
pub const VERIFIER: &str = "coordinator/verify";

/// `imported` (or `needs_repair` whose repairs all came) → `verifying`.
pub fn start_verification(c: &dyn Db, seed_id: &str, now: UnixMs) -> Result<Seed> {
    let mut seed = require_seed(c, seed_id)?;
    let event = match seed.state {
        SeedState::Imported => SeedEvent::VerificationStarted,
        SeedState::NeedsRepair => SeedEvent::Repaired,
        SeedState::Verifying => return Ok(seed),
        other => {
            return Err(Error::FailedPrecondition(format!(
                "seed {} is {other}; verification starts once the import is done",
                seed.spec.job_name
            )));
        }
    };
    let reason = match event {
        SeedEvent::Repaired => "the repaired files are uploaded; verifying the import container again".to_string(),
        _ => "checking every blob of the import container against the seed manifest".to_string(),
    };
    transition(c, &mut seed, Transition { event, actor: VERIFIER, reason }, now)?;
    Ok(seed)
}

/// Stores what a verification found. With nothing to repair the seed moves on to seeding the
/// vault; otherwise it needs repair, and the files are asked of its source agent.
pub fn finish_verification(
    c: &dyn Db,
    seed_id: &str,
    files: &[VerifiedFile],
    repair: &[RepairFile],
    now: UnixMs,
) -> Result<Seed> {
    let mut seed = require_seed(c, seed_id)?;
    if seed.state != SeedState::Verifying {
        return Err(Error::FailedPrecondition(format!("seed {} is {}, not verifying", seed.spec.job_name, seed.state)));
    }
    c.exec("DELETE FROM verify_results WHERE seed_id = ?1", args![seed_id])?;
    for f in files {
        c.exec("INSERT INTO verify_results (seed_id, path, size, status, detail, checked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", args![seed_id, f.path, f.size as i64, f.status, f.detail, now])?;
    }
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    if repair.is_empty() {
        c.exec("DELETE FROM repairs WHERE seed_id = ?1 AND state = 'requested'", args![seed_id])?;
        let reason = format!(
            "all {} file(s) ({bytes} bytes) verified in the import container: present, size, MD5 and SHA-256 as the seed manifest (root {}) has them",
            files.len(),
            &seed.spec.manifest_root[..16]
        );
        transition(c, &mut seed, Transition { event: SeedEvent::VerificationPassed, actor: VERIFIER, reason }, now)?;
        return Ok(seed);
    }
    for r in repair {
        c.exec(
            "INSERT INTO repairs (seed_id, path, size, sha256, md5, state, detail, requested_ms, updated_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'requested', ?6, ?7, ?7) \
             ON CONFLICT (seed_id, path) DO UPDATE SET size = ?3, sha256 = ?4, md5 = ?5, state = 'requested', \
             detail = ?6, requested_ms = ?7, updated_ms = ?7",
            args![seed_id, r.path, r.size as i64, r.sha256, r.md5, r.detail, now],
        )?;
    }
    let missing = files.iter().filter(|f| f.status == "missing").count();
    let corrupted = files.iter().filter(|f| f.status == "corrupted").count();
    let mut names: Vec<&str> = repair.iter().map(|r| r.path.as_str()).take(5).collect();
    if repair.len() > 5 {
        names.push("…");
    }
    let reason = format!(
        "{missing} file(s) missing and {corrupted} damaged in the import container ({}); asking source agent {} to upload them from its staging location",
        names.join(", "),
        seed.owner
    );
    transition(c, &mut seed, Transition { event: SeedEvent::VerificationFailed, actor: VERIFIER, reason }, now)?;
    Ok(seed)
}

pub(super) fn repair_rows(c: &dyn Db, seed_id: &str, only_requested: bool) -> Result<Vec<RepairFile>> {
    c.rows(
        "SELECT path, size, sha256, md5, state, detail, updated_ms FROM repairs \
             WHERE seed_id = ?1 AND (?2 = 0 OR state = 'requested') ORDER BY path",
        args![seed_id, only_requested as i64],
        |r| {
            Ok(RepairFile {
                path: r.get(0)?,
                size: r.get::<i64>(1)? as u64,
                sha256: r.get(2)?,
                md5: r.get(3)?,
                state: r.get(4)?,
                detail: r.get(5)?,
                updated_ms: r.get(6)?,
            })
        },
    )
}

/// The caller's seeds that wait for files from it, with those files.
pub fn repair_orders(c: &dyn Db, owner: &str) -> Result<Vec<(Seed, Vec<RepairFile>)>> {
    let seeds: Vec<Seed> = {
        c.rows(
            &format!(
                "SELECT {SEED_COLS} FROM seeds s WHERE s.owner = ?1 AND s.state = 'needs_repair' \
                 AND EXISTS (SELECT 1 FROM repairs r WHERE r.seed_id = s.seed_id AND r.state = 'requested') \
                 ORDER BY s.created_ms"
            ),
            args![owner],
            seed_row,
        )?
    };
    seeds
        .into_iter()
        .map(|s| {
            let files = repair_rows(c, &s.seed_id, true)?;
            Ok((s, files))
        })
        .collect()
}

/// What the source agent did. When no file is left to upload: with none lost, the seed is
/// verified again; with some lost, it stays `needs_repair` and says which data is lost and
/// what the operator can do.
pub fn report_repair(
    c: &dyn Db,
    idem: &Idem,
    owner: &SpiffeId,
    seed_id: &str,
    uploaded: &[String],
    lost: &[(String, String)],
    now: UnixMs,
) -> Result<Seed> {
    idempotent(c, idem, now, || {
        let mut seed = require_seed(c, seed_id)?;
        if seed.owner != owner.name {
            return Err(Error::PermissionDenied(format!("seed {seed_id} belongs to another source agent")));
        }
        if seed.state != SeedState::NeedsRepair {
            return Err(Error::FailedPrecondition(format!(
                "seed {} is {}; it is not waiting for repaired files",
                seed.spec.job_name, seed.state
            )));
        }
        for p in uploaded {
            c.exec(
                "UPDATE repairs SET state = 'uploaded', detail = 'uploaded by the source agent', updated_ms = ?3 \
                 WHERE seed_id = ?1 AND path = ?2 AND state = 'requested'",
                args![seed_id, p, now],
            )?;
        }
        for (p, why) in lost {
            c.exec(
                "UPDATE repairs SET state = 'lost', detail = ?3, updated_ms = ?4 \
                 WHERE seed_id = ?1 AND path = ?2 AND state = 'requested'",
                args![seed_id, p, why, now],
            )?;
        }
        insert_event(
            c,
            seed_id,
            now,
            &owner.uri(),
            Some(seed.state),
            seed.state,
            "repair_reported",
            &format!("{} file(s) uploaded again, {} could not be", uploaded.len(), lost.len()),
        )?;
        let left = repair_rows(c, seed_id, true)?;
        if !left.is_empty() {
            return Ok(seed);
        }
        let lost_all: Vec<RepairFile> =
            repair_rows(c, seed_id, false)?.into_iter().filter(|r| r.state == "lost").collect();
        if lost_all.is_empty() {
            // Files on a new offline round are waited for: the round's import verifies the seed.
            let on_round = repair_rows(c, seed_id, false)?.iter().any(|r| r.state == "reshipped");
            if !on_round {
                start_verification(c, seed_id, now)?;
            }
            return require_seed(c, seed_id);
        }
        let bytes: u64 = lost_all.iter().map(|r| r.size).sum();
        let names: Vec<String> = lost_all.iter().take(5).map(|r| format!("{} ({})", r.path, r.detail)).collect();
        let reason = format!(
            "blocked: {} file(s), {bytes} bytes, are neither in the import container nor in the staging location: {}. \
             The vault is not seeded with gaps, and no new offline round can carry them: stage a fresh seed",
            lost_all.len(),
            names.join("; ")
        );
        say(c, &mut seed, AZURE, "data_lost", reason, now)?;
        Ok(seed)
    })
}

/// The verification report of a seed.
pub fn verification(c: &dyn Db, key: &str) -> Result<Option<VerificationReport>> {
    let Some(seed) = load_seed(c, key)? else { return Ok(None) };
    let mut checked = None;
    let files = c
        .rows(
            "SELECT path, size, status, detail, checked_ms FROM verify_results WHERE seed_id = ?1 ORDER BY path",
            args![seed.seed_id],
            |r| {
                Ok((
                    VerifiedFile {
                        path: r.get(0)?,
                        size: r.get::<i64>(1)? as u64,
                        status: r.get(2)?,
                        detail: r.get(3)?,
                    },
                    r.get::<i64>(4)?,
                ))
            },
        )?
        .into_iter()
        .map(|(f, t)| {
            checked = Some(t);
            f
        })
        .collect();
    let repairs = repair_rows(c, &seed.seed_id, false)?;
    Ok(Some(VerificationReport { seed, files, repairs, checked_ms: checked }))
}

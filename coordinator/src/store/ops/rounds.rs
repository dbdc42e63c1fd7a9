//! New offline rounds for the files an import lost (`domain/round.rs` decides): a round is a
//! seed of its own into its parent's import container; its files are `round_files`, and the
//! parent's repair rows say `reshipped` with the round's id while it travels.

use seedship_proto::human::bytes as human_bytes;
use seedship_proto::identity::SpiffeId;

use super::rows::*;
use super::verify::{VERIFIER, repair_rows};
use super::writes::{SeedInsert, insert_seed, new_ids};
use crate::args;
use crate::clock::UnixMs;
use crate::domain::model::*;
use crate::domain::round::{ReshipFacts, reship_plan, round_job_name};
use crate::domain::seed::{SeedEvent, SeedState};
use crate::error::{Error, Result};
use crate::store::sql::Db;

/// The staging paths a round carries (empty for a seed of its own).
pub fn round_paths(c: &dyn Db, seed_id: &str) -> Result<Vec<String>> {
    c.rows("SELECT path FROM round_files WHERE seed_id = ?1 ORDER BY path", args![seed_id], |r| r.get(0))
}

/// The rounds of a seed, oldest first.
pub fn rounds_of(c: &dyn Db, parent_id: &str) -> Result<Vec<Seed>> {
    c.rows(
        &format!("SELECT {SEED_COLS} FROM seeds s WHERE s.parent_seed = ?1 ORDER BY s.created_ms, s.job_name"),
        args![parent_id],
        seed_row,
    )
}

fn parent_of(c: &dyn Db, seed_id: &str) -> Result<Option<String>> {
    c.row("SELECT parent_seed FROM seeds WHERE seed_id = ?1", args![seed_id], |r| r.get(0)).map(Option::flatten)
}

/// Starts a new offline round for exactly the files `seed`'s import lost: a new seed (job
/// `<job>-r<n>`) of the same server, staging set and import container, queued for disk prep
/// (or waiting for Microsoft's disks), carrying those files only. The source agent is no longer
/// asked to upload them. Recorded in both histories with the operator and the reason.
pub fn reship_lost(
    c: &dyn Db,
    idem: &Idem,
    operator: &SpiffeId,
    seed: &str,
    reason: &str,
    now: UnixMs,
) -> Result<Reshipped> {
    idempotent(c, idem, now, || {
        let mut parent = require_seed(c, seed)?;
        let rounds = rounds_of(c, &parent.seed_id)?;
        let active = rounds.iter().find(|r| !r.state.is_terminal());
        let repairs = repair_rows(c, &parent.seed_id, false)?;
        let plan = reship_plan(&ReshipFacts {
            job: &parent.spec.job_name,
            state: parent.state,
            round_of: parent.round_of.as_deref(),
            active_round: active.map(|r| (r.spec.job_name.as_str(), r.state)),
            repairs: &repairs,
        })
        .map_err(Error::FailedPrecondition)?;
        // Round 1 is the seed itself; a name another seed took is skipped.
        let mut n = rounds.len() as u32 + 2;
        let job = loop {
            let name = round_job_name(&parent.spec.job_name, n);
            let taken: bool =
                c.one("SELECT EXISTS (SELECT 1 FROM seeds WHERE job_name = ?1)", args![name], |r| r.get(0))?;
            if !taken {
                break name;
            }
            n += 1;
        };
        let files = plan.len() as u64;
        let bytes: u64 = plan.iter().map(|r| r.size).sum();
        let (seed_id, work_id) = new_ids()?;
        let spec = NewSeed { job_name: job.clone(), total_bytes: bytes, file_count: files, ..parent.spec.clone() };
        let why = format!(
            "a new offline round for {files} file(s), {}, that the import of {} lost, into its container {}; started by {operator}: {reason}",
            human_bytes(bytes),
            parent.spec.job_name,
            parent.spec.container
        );
        let round = insert_seed(
            c,
            &SeedInsert {
                seed_id: &seed_id,
                work_id: &work_id,
                owner: &parent.owner,
                actor: &operator.uri(),
                spec: &spec,
                kind: parent.kind,
                reason: &why,
                round_of: Some(&parent.seed_id),
            },
            now,
        )?;
        for r in &plan {
            c.exec(
                "INSERT INTO round_files (seed_id, path, size) VALUES (?1, ?2, ?3)",
                args![seed_id, r.path, r.size as i64],
            )?;
            c.exec(
                "UPDATE repairs SET state = 'reshipped', round_seed = ?3, detail = ?4, updated_ms = ?5 \
                 WHERE seed_id = ?1 AND path = ?2",
                args![parent.seed_id, r.path, seed_id, format!("on offline round {job}"), now],
            )?;
        }
        let said = format!(
            "{files} file(s), {}, that the import lost go on a new offline round, job {job} ({operator}: {reason}); \
             the seed is verified again once that round is imported",
            human_bytes(bytes)
        );
        say(c, &mut parent, &operator.uri(), "round_started", said, now)?;
        Ok(Reshipped { seed: parent, round, files, bytes })
    })
}

/// A round's import is done: the round is `merged`, the parent's files it carried are marked
/// imported, and the parent (still waiting for them) is verified again.
pub fn merge_round(c: &dyn Db, round_id: &str, now: UnixMs) -> Result<Seed> {
    let mut round = require_seed(c, round_id)?;
    let parent_id = parent_of(c, &round.seed_id)?
        .ok_or_else(|| Error::FailedPrecondition(format!("seed {} is not a round", round.spec.job_name)))?;
    let mut parent = require_seed(c, &parent_id)?;
    let files = round_paths(c, &round.seed_id)?.len();
    let reason = format!(
        "imported: its {files} file(s) are in the import container of {}, which is verified again",
        parent.spec.job_name
    );
    transition(c, &mut round, Transition { event: SeedEvent::Merge, actor: VERIFIER, reason }, now)?;
    c.exec(
        "UPDATE repairs SET state = 'imported', detail = ?3, updated_ms = ?4 \
         WHERE seed_id = ?1 AND round_seed = ?2 AND state = 'reshipped'",
        args![parent.seed_id, round.seed_id, format!("imported by offline round {}", round.spec.job_name), now],
    )?;
    if parent.state != SeedState::NeedsRepair {
        return Ok(round);
    }
    let rows = repair_rows(c, &parent.seed_id, false)?;
    let waiting = rows.iter().filter(|r| matches!(r.state.as_str(), "requested" | "reshipped" | "lost")).count();
    if waiting == 0 {
        let reason = format!(
            "offline round {} is imported ({files} file(s)); verifying the import container again",
            round.spec.job_name
        );
        transition(c, &mut parent, Transition { event: SeedEvent::Repaired, actor: VERIFIER, reason }, now)?;
    } else {
        let said = format!(
            "offline round {} is imported ({files} file(s)); {waiting} file(s) are still waited for (seedctl verification {})",
            round.spec.job_name, parent.spec.job_name
        );
        say(c, &mut parent, VERIFIER, "round_merged", said, now)?;
    }
    Ok(round)
}

/// A round ended without being imported (failed, cancelled): its parent says so. The files
/// stay on the parent as `reshipped` until an operator starts another round.
pub fn round_ended(c: &dyn Db, round: &Seed, now: UnixMs) -> Result<()> {
    let Some(parent_id) = parent_of(c, &round.seed_id)? else { return Ok(()) };
    let mut parent = require_seed(c, &parent_id)?;
    if parent.state != SeedState::NeedsRepair {
        return Ok(());
    }
    let said = format!(
        "offline round {} ended {} ({}); its files are still lost: start another round (seedctl reship {})",
        round.spec.job_name, round.state, round.state_reason, parent.spec.job_name
    );
    say(c, &mut parent, super::writes::COORDINATOR, "round_ended", said, now)
}

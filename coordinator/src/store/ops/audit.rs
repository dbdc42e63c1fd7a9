//! Appending to the audit log (inside the caller's transaction) and reading it back. Written
//! against [`Db`]: the same on SQLite and PostgreSQL.

use seedship_proto::audit::{Content, Entry, GENESIS, hash};

use crate::args;
use crate::clock::UnixMs;
use crate::domain::model::AuditRecord;
use crate::error::Result;
use crate::store::sql::Db;

/// Records one entry, in the caller's transaction: the write of what it records and of the
/// entry commit together or not at all. It waits in `audit_pending` until [`chain`] links it
/// after the newest entry: recording reads nothing, so operations running at once (on several
/// coordinators) do not conflict over the chain's head.
pub fn append(c: &dyn Db, at: UnixMs, r: &AuditRecord) -> Result<()> {
    // Reads nothing: joined with the writes before it.
    c.put_joined(
        "INSERT INTO audit_pending (at_ms, actor, action, target, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![at, r.actor, r.action, r.target, r.outcome, r.detail],
    )
}

/// [`append`] of an entry whose target is the job name of seed `seed_id` (its id when there is
/// no such seed), read in the same statement.
pub fn append_for_seed(
    c: &dyn Db,
    at: UnixMs,
    seed_id: &str,
    actor: &str,
    action: &str,
    outcome: &str,
    detail: &str,
) -> Result<()> {
    c.put(
        "INSERT INTO audit_pending (at_ms, actor, action, target, outcome, detail) \
         SELECT ?1, ?2, ?3, COALESCE((SELECT job_name FROM seeds WHERE seed_id = ?4), ?4), ?5, ?6",
        args![at, actor, action, seed_id, outcome, detail],
    )
}

/// At most this many recorded entries join the chain in one step, and this many in one
/// statement.
pub const CHAIN_BATCH: usize = 500;
const CHAIN_ROWS_PER_INSERT: usize = 50;

/// Links the recorded entries into the chain, in the order they were recorded (their ids, as
/// committed), each after the newest entry with the hash of the one before it: how many joined
/// (at most [`CHAIN_BATCH`]; fewer when no more were waiting). Run by every reader of the log
/// before it reads ([`chain_all`]) and by the workers' leader (`workers::auditor`); two at once
/// conflict and one runs again.
pub fn chain(c: &dyn Db) -> Result<usize> {
    let pending = c.query(
        "SELECT id, at_ms, actor, action, target, outcome, detail FROM audit_pending ORDER BY id LIMIT ?1",
        args![CHAIN_BATCH as i64],
    )?;
    let (Some(first), Some(last_row)) = (pending.first(), pending.last()) else { return Ok(0) };
    let (first_id, last_id): (i64, i64) = (first.get(0)?, last_row.get(0)?);
    let head = c.query_opt("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", &[])?;
    let (mut seq, mut prev) = match head {
        Some(row) => (row.get::<i64>(0)?, row.get::<String>(1)?),
        None => (0, GENESIS.to_string()),
    };
    let mut entries = Vec::with_capacity(pending.len());
    for row in &pending {
        let at: i64 = row.get(1)?;
        let (actor, action, target, outcome, detail): (String, String, String, String, String) =
            (row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?);
        let content = Content { actor: &actor, action: &action, target: &target, outcome: &outcome, detail: &detail };
        seq += 1;
        let h = hash(seq, at, &content, &prev);
        let prev_hash = std::mem::replace(&mut prev, h.clone());
        entries.push((seq, at, actor, action, target, outcome, detail, prev_hash, h));
    }
    for chunk in entries.chunks(CHAIN_ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p: Vec<String> = (1..=9).map(|k| format!("?{}", i * 9 + k)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let params: Vec<&dyn crate::store::sql::ToValue> = chunk
            .iter()
            .flat_map(|(seq, at, actor, action, target, outcome, detail, prev_hash, h)| {
                [seq as &dyn crate::store::sql::ToValue, at, actor, action, target, outcome, detail, prev_hash, h]
            })
            .collect();
        c.exec(
            &format!(
                "INSERT INTO audit_log (seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash) VALUES {}",
                values.join(", ")
            ),
            &params,
        )?;
    }
    // Every row in this range this transaction can see was read above; one committed later
    // (an id taken earlier) is not visible here, stays, and joins at the next step.
    c.exec("DELETE FROM audit_pending WHERE id >= ?1 AND id <= ?2", args![first_id, last_id])?;
    Ok(entries.len())
}

/// [`chain`] until no recorded entry is left waiting: what a reader of the log runs first.
pub fn chain_all(c: &dyn Db) -> Result<()> {
    while chain(c)? == CHAIN_BATCH {}
    Ok(())
}

/// Entries after `after` (a sequence number), oldest first, at most `limit`; only those whose
/// target is `target` when given.
pub fn list(c: &dyn Db, after: i64, limit: u32, target: Option<&str>) -> Result<Vec<Entry>> {
    let rows = c.query(
        "SELECT seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash FROM audit_log \
         WHERE seq > ?1 AND (?3 IS NULL OR target = ?3) ORDER BY seq LIMIT ?2",
        args![after, limit, target],
    )?;
    rows.iter()
        .map(|r| {
            Ok(Entry {
                seq: r.get(0)?,
                at_unix_ms: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                outcome: r.get(5)?,
                detail: r.get(6)?,
                prev_hash: r.get(7)?,
                hash: r.get(8)?,
            })
        })
        .collect()
}

//! Appending to the audit log (inside the caller's transaction) and reading it back. Written
//! against [`Db`]: the same on SQLite and PostgreSQL.

use seedship_proto::audit::{Content, Entry, GENESIS, hash};

use crate::args;
use crate::clock::UnixMs;
use crate::domain::model::AuditRecord;
use crate::error::Result;
use crate::store::sql::Db;

/// Appends one entry after the newest, in the caller's transaction: the write of what it
/// records and of the entry commit together or not at all.
pub fn append(c: &dyn Db, at: UnixMs, r: &AuditRecord) -> Result<()> {
    let last = c.query_opt("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", &[])?;
    let (seq, prev) = match last {
        Some(row) => (row.get::<i64>(0)? + 1, row.get::<String>(1)?),
        None => (1, GENESIS.to_string()),
    };
    let content =
        Content { actor: &r.actor, action: &r.action, target: &r.target, outcome: &r.outcome, detail: &r.detail };
    let h = hash(seq, at, &content, &prev);
    c.exec(
        "INSERT INTO audit_log (seq, at_ms, actor, action, target, outcome, detail, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![seq, at, r.actor, r.action, r.target, r.outcome, r.detail, prev, h],
    )
    .map(|_| ())
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

//! The notification outbox: deliveries per channel, due ones, their outcome, acknowledgement.
//! Written against [`Db`]: the same on SQLite and PostgreSQL.

use crate::args;
use crate::clock::UnixMs;
use crate::domain::notify::{Kind, Notification, retry_after_ms};
use crate::error::{Error, Result};
use crate::store::sql::{Db, Row};

const COLS: &str = "n.id, n.kind, n.seed_id, s.job_name, e.event, e.actor, e.to_state, e.reason, n.created_ms, \
    n.acked_ms, n.acked_by, n.ack_reason";

fn row(r: &Row) -> Result<Notification> {
    let kind: String = r.get(1)?;
    let acked_ms: Option<i64> = r.get(9)?;
    Ok(Notification {
        id: r.get(0)?,
        kind: Kind::parse(&kind)
            .ok_or_else(|| Error::Internal(format!("unknown notification kind {kind:?} in the database")))?,
        seed_id: r.get(2)?,
        job_name: r.get(3)?,
        event: r.get(4)?,
        actor: r.get(5)?,
        state: r.get(6)?,
        reason: r.get(7)?,
        created_ms: r.get(8)?,
        acked: acked_ms.map(|ms| -> Result<_> { Ok((ms, r.get(10)?, r.get(11)?)) }).transpose()?,
    })
}

const FROM: &str =
    "FROM notifications n JOIN seeds s ON s.seed_id = n.seed_id JOIN seed_events e ON e.event_id = n.event_id";

/// Gives `channel` a delivery of every notification of `kinds` made since it was first seen.
pub fn enqueue(c: &dyn Db, channel: &str, kinds: &[Kind], now: UnixMs) -> Result<usize> {
    let after: Option<i64> = c
        .query_opt("SELECT after_id FROM notify_cursor WHERE channel = ?1", args![channel])?
        .map(|r| r.get(0))
        .transpose()?;
    let newest: i64 = c.query_one("SELECT COALESCE(MAX(id), 0) FROM notifications", &[])?.get(0)?;
    let Some(after) = after else {
        // A new channel hears what happens from now on, not the history.
        c.exec("INSERT INTO notify_cursor (channel, after_id) VALUES (?1, ?2)", args![channel, newest])?;
        return Ok(0);
    };
    let mut added = 0;
    let rows =
        c.query("SELECT id, kind FROM notifications WHERE id > ?1 AND id <= ?2 ORDER BY id", args![after, newest])?;
    for r in rows {
        let (id, kind): (i64, String) = (r.get(0)?, r.get(1)?);
        if Kind::parse(&kind).is_some_and(|k| kinds.contains(&k)) {
            added += c.exec(
                "INSERT INTO deliveries (notification_id, channel, state, next_ms) VALUES (?1, ?2, 'pending', ?3) \
                 ON CONFLICT DO NOTHING",
                args![id, channel, now],
            )? as usize;
        }
    }
    c.exec("UPDATE notify_cursor SET after_id = ?2 WHERE channel = ?1", args![channel, newest])?;
    Ok(added)
}

/// Deliveries of `channel` due at `now`, oldest first (acknowledged notifications stop).
pub fn due(c: &dyn Db, channel: &str, now: UnixMs, limit: u32) -> Result<Vec<(Notification, u32)>> {
    c.exec(
        "UPDATE deliveries SET state = 'stopped', last_error = 'acknowledged before it was delivered' \
         WHERE state = 'pending' AND channel = ?1 AND notification_id IN (SELECT id FROM notifications WHERE acked_ms IS NOT NULL)",
        args![channel],
    )?;
    let rows = c.query(
        &format!(
            "SELECT {COLS}, d.attempts {FROM} JOIN deliveries d ON d.notification_id = n.id \
             WHERE d.channel = ?1 AND d.state = 'pending' AND d.next_ms <= ?2 ORDER BY n.id LIMIT ?3"
        ),
        args![channel, now, limit],
    )?;
    rows.iter().map(|r| Ok((row(r)?, r.get::<u32>(12)?))).collect()
}

/// The outcome of one attempt: delivered, or the error and the next attempt's time.
pub fn attempted(c: &dyn Db, id: i64, channel: &str, outcome: Result<(), String>, now: UnixMs) -> Result<()> {
    match outcome {
        Ok(()) => c.exec(
            "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, delivered_ms = ?3, last_error = '' \
             WHERE notification_id = ?1 AND channel = ?2",
            args![id, channel, now],
        ),
        Err(e) => {
            let attempts: u32 = c
                .query_one(
                    "SELECT attempts FROM deliveries WHERE notification_id = ?1 AND channel = ?2",
                    args![id, channel],
                )?
                .get(0)?;
            let error: String = e.chars().take(500).collect();
            c.exec(
                "UPDATE deliveries SET attempts = attempts + 1, next_ms = ?3, last_error = ?4 \
                 WHERE notification_id = ?1 AND channel = ?2",
                args![id, channel, now + retry_after_ms(attempts), error],
            )
        }
    }
    .map(|_| ())
}

/// A notification with each channel's delivery: (channel, state, attempts, last error).
pub type Listed = (Notification, Vec<(String, String, u32, String)>);

/// Notifications, newest first; only the unacknowledged ones with `open`.
pub fn list(c: &dyn Db, open: bool, limit: u32) -> Result<Vec<Listed>> {
    let ns = c.query(
        &format!("SELECT {COLS} {FROM} WHERE (?1 = 0 OR n.acked_ms IS NULL) ORDER BY n.id DESC LIMIT ?2"),
        args![open, limit],
    )?;
    let mut out = Vec::new();
    for r in &ns {
        let n = row(r)?;
        let ds = c
            .query(
                "SELECT channel, state, attempts, last_error FROM deliveries WHERE notification_id = ?1 ORDER BY channel",
                args![n.id],
            )?
            .iter()
            .map(|d| Ok((d.get(0)?, d.get(1)?, d.get(2)?, d.get(3)?)))
            .collect::<Result<_>>()?;
        out.push((n, ds));
    }
    Ok(out)
}

/// An operator acknowledges a notification: recorded with who and why; its pending
/// deliveries stop. Refused when it does not exist or was acknowledged already.
pub fn ack(c: &dyn Db, id: i64, by: &str, reason: &str, now: UnixMs) -> Result<Notification> {
    let n = c
        .query_opt(&format!("SELECT {COLS} {FROM} WHERE n.id = ?1"), args![id])?
        .map(|r| row(&r))
        .transpose()?
        .ok_or_else(|| {
            Error::NotFound(format!("notification {id} does not exist; `seedctl notifications` lists them"))
        })?;
    if let Some((at, who, _)) = &n.acked {
        return Err(Error::FailedPrecondition(format!(
            "notification {id} was acknowledged already, by {who} at {}",
            crate::clock::rfc3339(*at)
        )));
    }
    c.exec(
        "UPDATE notifications SET acked_ms = ?2, acked_by = ?3, ack_reason = ?4 WHERE id = ?1",
        args![id, now, by, reason],
    )?;
    super::audit::append(
        c,
        now,
        &crate::domain::model::AuditRecord {
            actor: by.to_string(),
            action: "notification_acknowledged".into(),
            target: n.job_name.clone(),
            outcome: "ok".into(),
            detail: format!("notification {id} ({}): {reason}", n.kind.as_str()),
        },
    )?;
    Ok(Notification { acked: Some((now, by.to_string(), reason.to_string())), ..n })
}

//! The notification outbox: deliveries per channel, due ones, their outcome, acknowledgement.

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use super::rows::exec;
use crate::clock::UnixMs;
use crate::domain::notify::{Kind, Notification, retry_after_ms};
use crate::error::{Error, Result};

const COLS: &str = "n.id, n.kind, n.seed_id, s.job_name, e.event, e.actor, e.to_state, e.reason, n.created_ms, \
    n.acked_ms, n.acked_by, n.ack_reason";

fn row(r: &rusqlite::Row) -> rusqlite::Result<Notification> {
    let kind: String = r.get(1)?;
    let acked_ms: Option<i64> = r.get(9)?;
    Ok(Notification {
        id: r.get(0)?,
        kind: Kind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, format!("kind {kind:?}").into())
        })?,
        seed_id: r.get(2)?,
        job_name: r.get(3)?,
        event: r.get(4)?,
        actor: r.get(5)?,
        state: r.get(6)?,
        reason: r.get(7)?,
        created_ms: r.get(8)?,
        acked: acked_ms.map(|ms| -> rusqlite::Result<_> { Ok((ms, r.get(10)?, r.get(11)?)) }).transpose()?,
    })
}

const FROM: &str =
    "FROM notifications n JOIN seeds s ON s.seed_id = n.seed_id JOIN seed_events e ON e.event_id = n.event_id";

/// Gives `channel` a delivery of every notification of `kinds` made since it was first seen.
pub fn enqueue(c: &Connection, channel: &str, kinds: &[Kind], now: UnixMs) -> Result<usize> {
    let after: Option<i64> = c
        .query_row("SELECT after_id FROM notify_cursor WHERE channel = ?1", params![channel], |r| r.get(0))
        .optional()
        .map_err(db_err)?;
    let newest: i64 =
        c.query_row("SELECT COALESCE(MAX(id), 0) FROM notifications", [], |r| r.get(0)).map_err(db_err)?;
    let Some(after) = after else {
        // A new channel hears what happens from now on, not the history.
        exec(c, "INSERT INTO notify_cursor (channel, after_id) VALUES (?1, ?2)", params![channel, newest])
            .map_err(db_err)?;
        return Ok(0);
    };
    let mut added = 0;
    let mut stmt = c
        .prepare_cached("SELECT id, kind FROM notifications WHERE id > ?1 AND id <= ?2 ORDER BY id")
        .map_err(db_err)?;
    let rows: Vec<(i64, String)> = stmt
        .query_map(params![after, newest], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_err)?;
    for (id, kind) in rows {
        if Kind::parse(&kind).is_some_and(|k| kinds.contains(&k)) {
            added += exec(
                c,
                "INSERT OR IGNORE INTO deliveries (notification_id, channel, state, next_ms) VALUES (?1, ?2, 'pending', ?3)",
                params![id, channel, now],
            )
            .map_err(db_err)?;
        }
    }
    exec(c, "UPDATE notify_cursor SET after_id = ?2 WHERE channel = ?1", params![channel, newest]).map_err(db_err)?;
    Ok(added)
}

/// Deliveries of `channel` due at `now`, oldest first (acknowledged notifications stop).
pub fn due(c: &Connection, channel: &str, now: UnixMs, limit: u32) -> Result<Vec<(Notification, u32)>> {
    exec(
        c,
        "UPDATE deliveries SET state = 'stopped', last_error = 'acknowledged before it was delivered' \
         WHERE state = 'pending' AND channel = ?1 AND notification_id IN (SELECT id FROM notifications WHERE acked_ms IS NOT NULL)",
        params![channel],
    )
    .map_err(db_err)?;
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {COLS}, d.attempts {FROM} JOIN deliveries d ON d.notification_id = n.id \
             WHERE d.channel = ?1 AND d.state = 'pending' AND d.next_ms <= ?2 ORDER BY n.id LIMIT ?3"
        ))
        .map_err(db_err)?;
    let rows = stmt.query_map(params![channel, now, limit], |r| Ok((row(r)?, r.get::<_, u32>(12)?))).map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

/// The outcome of one attempt: delivered, or the error and the next attempt's time.
pub fn attempted(c: &Connection, id: i64, channel: &str, outcome: Result<(), String>, now: UnixMs) -> Result<()> {
    match outcome {
        Ok(()) => exec(
            c,
            "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, delivered_ms = ?3, last_error = '' \
             WHERE notification_id = ?1 AND channel = ?2",
            params![id, channel, now],
        ),
        Err(e) => {
            let attempts: u32 = c
                .query_row(
                    "SELECT attempts FROM deliveries WHERE notification_id = ?1 AND channel = ?2",
                    params![id, channel],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            exec(
                c,
                "UPDATE deliveries SET attempts = attempts + 1, next_ms = ?3, last_error = ?4 \
                 WHERE notification_id = ?1 AND channel = ?2",
                params![id, channel, now + retry_after_ms(attempts), e.chars().take(500).collect::<String>()],
            )
        }
    }
    .map(|_| ())
    .map_err(db_err)
}

/// A notification with each channel's delivery: (channel, state, attempts, last error).
pub type Listed = (Notification, Vec<(String, String, u32, String)>);

/// Notifications, newest first; only the unacknowledged ones with `open`.
pub fn list(c: &Connection, open: bool, limit: u32) -> Result<Vec<Listed>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {COLS} {FROM} WHERE (?1 = 0 OR n.acked_ms IS NULL) ORDER BY n.id DESC LIMIT ?2"
        ))
        .map_err(db_err)?;
    let ns: Vec<Notification> = stmt
        .query_map(params![open as i64, limit], row)
        .map_err(db_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_err)?;
    let mut out = Vec::new();
    for n in ns {
        let mut d = c
            .prepare_cached(
                "SELECT channel, state, attempts, last_error FROM deliveries WHERE notification_id = ?1 ORDER BY channel",
            )
            .map_err(db_err)?;
        let ds = d
            .query_map(params![n.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(db_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_err)?;
        out.push((n, ds));
    }
    Ok(out)
}

/// An operator acknowledges a notification: recorded with who and why; its pending
/// deliveries stop. Refused when it does not exist or was acknowledged already.
pub fn ack(c: &Connection, id: i64, by: &str, reason: &str, now: UnixMs) -> Result<Notification> {
    let n = c
        .query_row(&format!("SELECT {COLS} {FROM} WHERE n.id = ?1"), params![id], row)
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| {
            Error::NotFound(format!("notification {id} does not exist; `seedctl notifications` lists them"))
        })?;
    if let Some((at, who, _)) = &n.acked {
        return Err(Error::FailedPrecondition(format!(
            "notification {id} was acknowledged already, by {who} at {}",
            crate::clock::rfc3339(*at)
        )));
    }
    exec(
        c,
        "UPDATE notifications SET acked_ms = ?2, acked_by = ?3, ack_reason = ?4 WHERE id = ?1",
        params![id, now, by, reason],
    )
    .map_err(db_err)?;
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

//! Login links and sessions of the web dashboard (hashes only).

use rusqlite::{Connection, OptionalExtension, params};

use super::db_err;
use super::rows::exec;
use crate::clock::UnixMs;
use crate::error::{Error, Result};

pub fn create_login(c: &Connection, token_hash: &str, identity: &str, now: UnixMs, expires: UnixMs) -> Result<()> {
    exec(c, "DELETE FROM web_logins WHERE expires_ms < ?1", params![now - 86_400_000]).map_err(db_err)?;
    exec(
        c,
        "INSERT INTO web_logins (token_hash, identity, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
        params![token_hash, identity, now, expires],
    )
    .map(|_| ())
    .map_err(db_err)
}

/// Uses a login link once: opens a session for its operator, recorded in the audit log.
pub fn redeem(
    c: &Connection,
    token_hash: &str,
    session_hash: &str,
    now: UnixMs,
    session_ttl_ms: i64,
) -> Result<String> {
    let row: Option<(String, UnixMs, Option<UnixMs>)> = c
        .query_row(
            "SELECT identity, expires_ms, used_ms FROM web_logins WHERE token_hash = ?1",
            params![token_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db_err)?;
    let identity = match row {
        None => return Err(Error::PermissionDenied("this login link is not known (mistyped?)".into())),
        Some((_, _, Some(_))) => return Err(Error::PermissionDenied("this login link was used already".into())),
        Some((_, exp, None)) if exp < now => return Err(Error::PermissionDenied("this login link has expired".into())),
        Some((id, _, None)) => id,
    };
    exec(c, "UPDATE web_logins SET used_ms = ?2 WHERE token_hash = ?1", params![token_hash, now]).map_err(db_err)?;
    exec(c, "DELETE FROM web_sessions WHERE expires_ms < ?1", params![now]).map_err(db_err)?;
    exec(
        c,
        "INSERT INTO web_sessions (id_hash, identity, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
        params![session_hash, identity, now, now + session_ttl_ms],
    )
    .map_err(db_err)?;
    super::audit::append(
        c,
        now,
        &crate::domain::model::AuditRecord {
            actor: identity.clone(),
            action: "dashboard_login".into(),
            target: identity.clone(),
            outcome: "ok".into(),
            detail: "a login link opened a dashboard session".into(),
        },
    )?;
    Ok(identity)
}

/// The operator of a live session.
pub fn session(c: &Connection, session_hash: &str, now: UnixMs) -> Result<Option<String>> {
    c.query_row(
        "SELECT identity FROM web_sessions WHERE id_hash = ?1 AND expires_ms > ?2",
        params![session_hash, now],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)
}

/// What the dashboard watches to know something changed: the newest seed event, disk
/// progress report and notification.
pub fn change_token(c: &Connection) -> Result<String> {
    c.query_row(
        "SELECT (SELECT COALESCE(MAX(event_id), 0) FROM seed_events), \
         (SELECT COALESCE(MAX(updated_ms), 0) FROM disk_progress), (SELECT COALESCE(MAX(id), 0) FROM notifications)",
        [],
        |r| Ok(format!("{}-{}-{}", r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
    )
    .map_err(db_err)
}

//! Login links and sessions of the web dashboard (hashes only). Written against [`Db`]: the
//! same on SQLite and PostgreSQL.

use crate::args;
use crate::clock::UnixMs;
use crate::error::{Error, Result};
use crate::store::sql::Db;

pub fn create_login(c: &dyn Db, token_hash: &str, identity: &str, now: UnixMs, expires: UnixMs) -> Result<()> {
    c.exec("DELETE FROM web_logins WHERE expires_ms < ?1", args![now - 86_400_000])?;
    c.exec(
        "INSERT INTO web_logins (token_hash, identity, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
        args![token_hash, identity, now, expires],
    )
    .map(|_| ())
}

/// Uses a login link once: opens a session for its operator, recorded in the audit log.
pub fn redeem(c: &dyn Db, token_hash: &str, session_hash: &str, now: UnixMs, session_ttl_ms: i64) -> Result<String> {
    let row =
        c.query_opt("SELECT identity, expires_ms, used_ms FROM web_logins WHERE token_hash = ?1", args![token_hash])?;
    let row = match row {
        Some(r) => Some((r.get::<String>(0)?, r.get::<UnixMs>(1)?, r.get::<Option<UnixMs>>(2)?)),
        None => None,
    };
    let identity = match row {
        None => return Err(Error::PermissionDenied("this login link is not known (mistyped?)".into())),
        Some((_, _, Some(_))) => return Err(Error::PermissionDenied("this login link was used already".into())),
        Some((_, exp, None)) if exp < now => return Err(Error::PermissionDenied("this login link has expired".into())),
        Some((id, _, None)) => id,
    };
    c.exec("UPDATE web_logins SET used_ms = ?2 WHERE token_hash = ?1", args![token_hash, now])?;
    c.exec("DELETE FROM web_sessions WHERE expires_ms < ?1", args![now])?;
    c.exec(
        "INSERT INTO web_sessions (id_hash, identity, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
        args![session_hash, identity, now, now + session_ttl_ms],
    )?;
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
pub fn session(c: &dyn Db, session_hash: &str, now: UnixMs) -> Result<Option<String>> {
    c.query_opt("SELECT identity FROM web_sessions WHERE id_hash = ?1 AND expires_ms > ?2", args![session_hash, now])?
        .map(|r| r.get(0))
        .transpose()
}

/// What the dashboard watches to know something changed: the newest seed event, disk
/// progress report and notification.
pub fn change_token(c: &dyn Db) -> Result<String> {
    let r = c.query_one(
        "SELECT (SELECT COALESCE(MAX(event_id), 0) FROM seed_events), \
         (SELECT COALESCE(MAX(updated_ms), 0) FROM disk_progress), (SELECT COALESCE(MAX(id), 0) FROM notifications)",
        &[],
    )?;
    Ok(format!("{}-{}-{}", r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?))
}

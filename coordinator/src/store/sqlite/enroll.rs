//! Enrollment tokens (hashes only) and the identities that enrolled (`domain/enroll.rs` decides).

use rusqlite::{Connection, OptionalExtension, Row, params};
use seedship_proto::identity::{Role, SpiffeId};

use super::db_err;
use super::rows::exec;
use crate::clock::UnixMs;
use crate::domain::enroll::{EnrollToken, redeem_problem};
use crate::domain::model::AuditRecord;
use crate::error::{Error, Result};

const COLS: &str = "id, role, name, site, created_by, reason, created_ms, expires_ms, used_ms, used_by";

fn token_row(r: &Row) -> rusqlite::Result<EnrollToken> {
    let role: String = r.get(1)?;
    Ok(EnrollToken {
        id: r.get(0)?,
        role: role.parse::<Role>().map_err(|_| super::rows::bad_col(1, "role", &role))?,
        name: r.get(2)?,
        site: r.get(3)?,
        created_by: r.get(4)?,
        reason: r.get(5)?,
        created_ms: r.get(6)?,
        expires_ms: r.get(7)?,
        used_ms: r.get(8)?,
        used_by: r.get(9)?,
    })
}

/// Stores a new token (its hash), recorded in the audit log with who made it.
pub fn create(c: &Connection, token_hash: &str, t: &EnrollToken, now: UnixMs) -> Result<()> {
    exec(
        c,
        "INSERT INTO enroll_tokens (token_hash, id, role, name, site, created_by, reason, created_ms, expires_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![token_hash, t.id, t.role.as_str(), t.name, t.site, t.created_by, t.reason, t.created_ms, t.expires_ms],
    )
    .map_err(db_err)?;
    super::audit::append(
        c,
        now,
        &AuditRecord {
            actor: t.created_by.clone(),
            action: "CreateEnrollToken".into(),
            target: format!("{}/{}", t.role, t.name),
            outcome: "ok".into(),
            detail: format!(
                "token {} for site {}, until {}: {}",
                t.id,
                t.site.as_deref().unwrap_or("any"),
                seedship_proto::human::rfc3339(t.expires_ms),
                t.reason
            ),
        },
    )
}

/// Every token, newest first (never the secret).
pub fn list(c: &Connection) -> Result<Vec<EnrollToken>> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {COLS} FROM enroll_tokens ORDER BY created_ms DESC, id")).map_err(db_err)?;
    let rows = stmt.query_map([], token_row).map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

/// Uses a token once for `id`, whose certificate lasts until `not_after`: the token is spent,
/// the identity recorded with the token's site, and the audit log says who created the token.
/// PERMISSION_DENIED says why a token cannot be used.
pub fn redeem(
    c: &Connection,
    token_hash: &str,
    id: &SpiffeId,
    trust_domain: &str,
    not_after: UnixMs,
    now: UnixMs,
) -> Result<EnrollToken> {
    let token = c
        .query_row(&format!("SELECT {COLS} FROM enroll_tokens WHERE token_hash = ?1"), params![token_hash], token_row)
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| {
            Error::PermissionDenied(
                "this enrollment token is not known (mistyped, or from another coordinator); ask an operator for one (seedctl enroll create)".into(),
            )
        })?;
    if let Some(why) = redeem_problem(&token, id, trust_domain, now) {
        return Err(Error::PermissionDenied(why));
    }
    exec(
        c,
        "UPDATE enroll_tokens SET used_ms = ?2, used_by = ?3 WHERE token_hash = ?1 AND used_ms IS NULL",
        params![token_hash, now, id.uri()],
    )
    .map_err(db_err)?;
    exec(
        c,
        "INSERT INTO enrolled (identity, site, token_id, enrolled_ms, not_after_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (identity) DO UPDATE SET site = ?2, token_id = ?3, enrolled_ms = ?4, not_after_ms = ?5",
        params![id.uri(), token.site, token.id, now, not_after],
    )
    .map_err(db_err)?;
    super::audit::append(
        c,
        now,
        &AuditRecord {
            actor: id.uri(),
            action: "Enroll".into(),
            target: id.name.clone(),
            outcome: "ok".into(),
            detail: format!(
                "with token {} created by {} ({}); certificate until {}",
                token.id,
                token.created_by,
                token.reason,
                seedship_proto::human::rfc3339(not_after)
            ),
        },
    )?;
    Ok(EnrollToken { used_ms: Some(now), used_by: Some(id.uri()), ..token })
}

/// The site an enrolled identity's token named (None: any site, or not enrolled).
pub fn enrolled_site(c: &Connection, identity: &str) -> Result<Option<String>> {
    c.query_row("SELECT site FROM enrolled WHERE identity = ?1", params![identity], |r| r.get(0))
        .optional()
        .map_err(db_err)
        .map(Option::flatten)
}

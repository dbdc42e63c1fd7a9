//! Enrollment tokens (hashes only) and the identities that enrolled (`domain/enroll.rs` decides).
//! Written against [`Db`]: the same on SQLite and PostgreSQL.

use seedship_proto::identity::{Role, SpiffeId};

use crate::args;
use crate::clock::UnixMs;
use crate::domain::enroll::{EnrollToken, redeem_problem};
use crate::domain::model::AuditRecord;
use crate::error::{Error, Result};
use crate::store::sql::{Db, Row};

const COLS: &str = "id, role, name, site, created_by, reason, created_ms, expires_ms, used_ms, used_by";

fn token_row(r: &Row) -> Result<EnrollToken> {
    let role: String = r.get(1)?;
    Ok(EnrollToken {
        id: r.get(0)?,
        role: role.parse::<Role>().map_err(|_| Error::Internal(format!("unknown role {role:?} in the database")))?,
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
pub fn create(c: &dyn Db, token_hash: &str, t: &EnrollToken, now: UnixMs) -> Result<()> {
    c.exec(
        "INSERT INTO enroll_tokens (token_hash, id, role, name, site, created_by, reason, created_ms, expires_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![token_hash, t.id, t.role.as_str(), t.name, t.site, t.created_by, t.reason, t.created_ms, t.expires_ms],
    )?;
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
pub fn list(c: &dyn Db) -> Result<Vec<EnrollToken>> {
    c.query(&format!("SELECT {COLS} FROM enroll_tokens ORDER BY created_ms DESC, id"), &[])?
        .iter()
        .map(token_row)
        .collect()
}

/// Uses a token once for `id`, whose certificate lasts until `not_after`: the token is spent,
/// the identity recorded with the token's site, and the audit log says who created the token.
/// PERMISSION_DENIED says why a token cannot be used.
pub fn redeem(
    c: &dyn Db,
    token_hash: &str,
    id: &SpiffeId,
    trust_domain: &str,
    not_after: UnixMs,
    now: UnixMs,
) -> Result<EnrollToken> {
    let token = c
        .query_opt(&format!("SELECT {COLS} FROM enroll_tokens WHERE token_hash = ?1"), args![token_hash])?
        .map(|r| token_row(&r))
        .transpose()?
        .ok_or_else(|| {
            Error::PermissionDenied(
                "this enrollment token is not known (mistyped, or from another coordinator); ask an operator for one (seedctl enroll create)".into(),
            )
        })?;
    if let Some(why) = redeem_problem(&token, id, trust_domain, now) {
        return Err(Error::PermissionDenied(why));
    }
    c.exec(
        "UPDATE enroll_tokens SET used_ms = ?2, used_by = ?3 WHERE token_hash = ?1 AND used_ms IS NULL",
        args![token_hash, now, id.uri()],
    )?;
    c.exec(
        "INSERT INTO enrolled (identity, site, token_id, enrolled_ms, not_after_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (identity) DO UPDATE SET site = ?2, token_id = ?3, enrolled_ms = ?4, not_after_ms = ?5",
        args![id.uri(), token.site, token.id, now, not_after],
    )?;
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
pub fn enrolled_site(c: &dyn Db, identity: &str) -> Result<Option<String>> {
    Ok(c.query_opt("SELECT site FROM enrolled WHERE identity = ?1", args![identity])?
        .map(|r| r.get::<Option<String>>(0))
        .transpose()?
        .flatten())
}

//! Revoked identities: recorded with who and why; a revoked copy station's leases taken back.

use seedship_proto::identity::{Role, SpiffeId};

use super::rows::*;
use crate::args;
use crate::clock::UnixMs;
use crate::domain::model::*;
use crate::error::{Error, Result};
use crate::store::sql::{Db, Row};

fn revocation_row(r: &Row) -> Result<Revocation> {
    Ok(Revocation { identity: r.get(0)?, revoked_by: r.get(1)?, reason: r.get(2)?, revoked_ms: r.get(3)? })
}

/// The identity an operator names: a spiffe:// id, or the name of one registered agent (of
/// `role` when given).
pub fn resolve(c: &dyn Db, agent: &str, role: Option<Role>, trust_domain: &str) -> Result<SpiffeId> {
    if agent.starts_with("spiffe://") {
        let id: SpiffeId = agent.parse().map_err(|e| Error::invalid("agent", format!("{e}")))?;
        if id.trust_domain != trust_domain {
            return Err(Error::invalid("agent", format!("{id} is not in trust domain {trust_domain}")));
        }
        return Ok(id);
    }
    let found: Vec<String> =
        c.rows("SELECT identity FROM agents WHERE name = ?1 ORDER BY identity", args![agent], |r| r.get(0))?;
    let found: Vec<SpiffeId> = found
        .iter()
        .filter_map(|u| u.parse::<SpiffeId>().ok())
        .filter(|id| role.is_none_or(|r| id.role == r))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => match role {
            // Enrolled or issued but never registered: the operator knows its role.
            Some(r) => SpiffeId::new(trust_domain, r, agent).map_err(|e| Error::invalid("agent", e.to_string())),
            None => Err(Error::NotFound(format!(
                "no registered agent is named {agent:?}; give its role (--role) or its spiffe:// id"
            ))),
        },
        many => Err(Error::invalid(
            "agent",
            format!(
                "{} agents are named {agent:?} ({}); give --role",
                many.len(),
                many.iter().map(|i| i.role.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Revokes `id`: recorded (once; revoking again answers the first record), and the work it
/// holds as a copy station goes back in the queue.
pub fn revoke(
    c: &dyn Db,
    idem: &Idem,
    operator: &SpiffeId,
    id: &SpiffeId,
    reason: &str,
    now: UnixMs,
) -> Result<Revoked> {
    idempotent(c, idem, now, || {
        if id.uri() == operator.uri() {
            return Err(Error::FailedPrecondition("an operator cannot revoke their own identity".into()));
        }
        let existing = c.row(
            "SELECT identity, revoked_by, reason, revoked_ms FROM revocations WHERE identity = ?1",
            args![id.uri()],
            revocation_row,
        )?;
        if let Some(r) = existing {
            return Ok(Revoked { revocation: r, released: Vec::new() });
        }
        let r =
            Revocation { identity: id.uri(), revoked_by: operator.uri(), reason: reason.to_string(), revoked_ms: now };
        c.exec(
            "INSERT INTO revocations (identity, revoked_by, reason, revoked_ms) VALUES (?1, ?2, ?3, ?4)",
            args![r.identity, r.revoked_by, r.reason, r.revoked_ms],
        )?;
        let mut released = Vec::new();
        if id.role == Role::Copy {
            let seeds: Vec<String> = {
                c.rows(
                    "SELECT seed_id FROM work_items WHERE holder = ?1 AND state IN ('leased', 'waiting')",
                    args![id.name],
                    |r| r.get(0),
                )?
            };
            for seed_id in seeds {
                let mut work = load_work_of_seed(c, &seed_id)?;
                work.revoke();
                save_work(c, &work)?;
                let mut s = require_seed(c, &seed_id)?;
                let why = format!(
                    "copy station {} was revoked by {operator} ({reason}); its work goes back in the queue",
                    id.name
                );
                work_taken_back(c, &mut s, &operator.uri(), "station_revoked", why, now)?;
                released.push(s.spec.job_name);
            }
        }
        Ok(Revoked { revocation: r, released })
    })
}

/// Every revocation, newest first.
pub fn list(c: &dyn Db) -> Result<Vec<Revocation>> {
    c.rows(
        "SELECT identity, revoked_by, reason, revoked_ms FROM revocations ORDER BY revoked_ms DESC, identity",
        &[],
        revocation_row,
    )
}

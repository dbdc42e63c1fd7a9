//! The background workers' lease: one coordinator at a time runs them, and the lease's
//! generation fences a former holder (a paused or partitioned coordinator) out.

use crate::args;
use crate::clock::UnixMs;
use crate::domain::lease::WorkerFence;
use crate::error::{Error, Result};
use crate::store::sql::Db;

fn load(c: &dyn Db, name: &str) -> Result<Option<(String, u64, UnixMs)>> {
    c.row("SELECT holder, generation, expires_ms FROM worker_leases WHERE name = ?1", args![name], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// Takes or renews `name` for `holder` until `now + ttl_ms`: while it is free, expired, or
/// `holder`'s already. A change of holder raises the generation; `None` while another
/// coordinator holds it.
pub fn take(c: &dyn Db, name: &str, holder: &str, now: UnixMs, ttl_ms: i64) -> Result<Option<WorkerFence>> {
    let expires_ms = now + ttl_ms;
    let generation = match load(c, name)? {
        None => {
            // Two coordinators starting together: one row, the other sees it next time.
            let n = c.exec(
                "INSERT INTO worker_leases (name, holder, generation, expires_ms, taken_ms) VALUES (?1, ?2, 1, ?3, ?4) \
                 ON CONFLICT DO NOTHING",
                args![name, holder, expires_ms, now],
            )?;
            if n == 0 {
                return Ok(None);
            }
            1
        }
        // Its own lease, renewed (also after a pause, as long as nobody else took it).
        Some((h, g, _)) if h == holder => {
            c.exec("UPDATE worker_leases SET expires_ms = ?2 WHERE name = ?1", args![name, expires_ms])?;
            g
        }
        Some((_, g, exp)) if exp <= now => {
            c.exec(
                "UPDATE worker_leases SET holder = ?2, generation = ?3, expires_ms = ?4, taken_ms = ?5 WHERE name = ?1",
                args![name, holder, g + 1, expires_ms, now],
            )?;
            g + 1
        }
        Some(_) => return Ok(None),
    };
    Ok(Some(WorkerFence { name: name.to_string(), holder: holder.to_string(), generation, expires_ms }))
}

/// Whether `fence` still holds at `now`: FAILED_PRECONDITION when another coordinator took
/// the lease over, or it ran out before it was renewed.
pub fn check(c: &dyn Db, fence: &WorkerFence, now: UnixMs) -> Result<()> {
    match load(c, &fence.name)? {
        Some((h, g, exp)) if h == fence.holder && g == fence.generation => {
            if exp > now {
                Ok(())
            } else {
                Err(Error::FailedPrecondition(format!(
                    "the workers' lease {} (generation {g}) ran out {} ms ago, before this coordinator renewed it; \
                     nothing is done until it is taken again",
                    fence.name,
                    now - exp
                )))
            }
        }
        Some((h, g, _)) => Err(Error::FailedPrecondition(format!(
            "the workers' lease {} is {h}'s now (generation {g}); this coordinator held generation {} and stops",
            fence.name, fence.generation
        ))),
        None => Err(Error::FailedPrecondition(format!("nobody holds the workers' lease {}", fence.name))),
    }
}

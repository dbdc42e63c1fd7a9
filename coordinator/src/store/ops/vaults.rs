//! The vault catalogue: which server has which vault, and its recovery points.

use super::rows::*;
use crate::args;
use crate::clock::UnixMs;
use crate::domain::model::*;
use crate::domain::seed::{SeedEvent, SeedState};
use crate::error::{Error, Result};
use crate::store::sql::Db;

pub const VAULTER: &str = "coordinator/vault";

pub fn vault_of(c: &dyn Db, server: &str) -> Result<Option<Vault>> {
    c.row("SELECT server, account, container, seed_id, created_ms FROM vaults WHERE server = ?1", args![server], |r| {
        Ok(Vault {
            server: r.get(0)?,
            account: r.get(1)?,
            container: r.get(2)?,
            seed_id: r.get(3)?,
            created_ms: r.get(4)?,
        })
    })
}

/// The vault is seeded: it is recorded for the seed's server with the seed's snapshots as its
/// first recovery points, and the seed is `seeded`.
pub fn fail_seed(c: &dyn Db, seed_id: &str, actor: &str, reason: &str, now: UnixMs) -> Result<Seed> {
    let mut seed = require_seed(c, seed_id)?;
    if seed.state.is_terminal() {
        return Ok(seed);
    }
    transition(c, &mut seed, Transition { event: SeedEvent::Fail, actor, reason: reason.to_string() }, now)?;
    Ok(seed)
}

pub fn vault_seeded(
    c: &dyn Db,
    seed_id: &str,
    account: &str,
    container: &str,
    snapshots: &[String],
    now: UnixMs,
) -> Result<Seed> {
    let mut seed = require_seed(c, seed_id)?;
    if seed.state == SeedState::Seeded {
        return Ok(seed);
    }
    if seed.state != SeedState::SeedingVault {
        return Err(Error::FailedPrecondition(format!(
            "seed {} is {}, not seeding the vault",
            seed.spec.job_name, seed.state
        )));
    }
    match vault_of(c, &seed.owner)? {
        Some(v) if v.account != account || v.container != container => {
            return Err(Error::FailedPrecondition(format!(
                "server {} already has its vault in {}/{}",
                seed.owner, v.account, v.container
            )));
        }
        Some(_) => {}
        None => {
            c.exec(
                "INSERT INTO vaults (server, account, container, seed_id, created_ms, repository_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                args![seed.owner, account, container, seed_id, now, seed.spec.repository_id],
            )?;
        }
    }
    for id in snapshots {
        c.exec(
            "INSERT INTO recovery_points (server, snapshot_id, kind, seed_id, manifest_root, created_ms) \
             VALUES (?1, ?2, 'seed', ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            args![seed.owner, id, seed_id, seed.spec.manifest_root, now],
        )?;
    }
    let first = snapshots.first().map(|s| &s[..s.len().min(12)]).unwrap_or("-");
    let reason = format!(
        "vault {account}/{container} seeded: recovery point {first} (seed manifest root {}); online incrementals are enabled",
        &seed.spec.manifest_root[..16]
    );
    transition(c, &mut seed, Transition { event: SeedEvent::VaultSeeded, actor: VAULTER, reason }, now)?;
    Ok(seed)
}

/// Adds a recovery point written online (an incremental) to `server`'s vault.
pub fn add_recovery_point(c: &dyn Db, server: &str, snapshot_id: &str, now: UnixMs) -> Result<RecoveryPoint> {
    let v = vault_of(c, server)?.ok_or_else(|| {
        Error::FailedPrecondition(format!("server {server} has no vault yet (its seed is not seeded)"))
    })?;
    c.exec(
        "INSERT INTO recovery_points (server, snapshot_id, kind, seed_id, manifest_root, created_ms) \
         VALUES (?1, ?2, 'incremental', NULL, '', ?3) ON CONFLICT DO NOTHING",
        args![server, snapshot_id, now],
    )?;
    Ok(RecoveryPoint {
        server: server.into(),
        snapshot_id: snapshot_id.into(),
        kind: "incremental".into(),
        seed_id: None,
        manifest_root: String::new(),
        created_ms: now,
        container: v.container,
    })
}

pub fn recovery_points(c: &dyn Db, server: Option<&str>) -> Result<Vec<RecoveryPoint>> {
    c.rows(
        "SELECT p.server, p.snapshot_id, p.kind, p.seed_id, p.manifest_root, p.created_ms, v.container \
             FROM recovery_points p JOIN vaults v ON v.server = p.server \
             WHERE (?1 IS NULL OR p.server = ?1) ORDER BY p.server, p.created_ms, p.snapshot_id",
        args![server],
        |r| {
            Ok(RecoveryPoint {
                server: r.get(0)?,
                snapshot_id: r.get(1)?,
                kind: r.get(2)?,
                seed_id: r.get(3)?,
                manifest_root: r.get(4)?,
                created_ms: r.get(5)?,
                container: r.get(6)?,
            })
        },
    )
}

/// Records a clean-up of a seeded seed (no state change).
pub fn record_cleanup(
    c: &dyn Db,
    key: &str,
    owner: Option<&str>,
    actor: &str,
    event: &str,
    reason: &str,
    now: UnixMs,
) -> Result<Seed> {
    let seed = require_seed(c, key)?;
    if owner.is_some_and(|o| o != seed.owner) {
        return Err(Error::PermissionDenied(format!("seed {key} belongs to another source agent")));
    }
    if seed.state != SeedState::Seeded {
        return Err(Error::FailedPrecondition(format!(
            "seed {} is {}; its data is deleted only once the vault holds it verified (seeded)",
            seed.spec.job_name, seed.state
        )));
    }
    insert_event(c, &seed.seed_id, now, actor, Some(seed.state), seed.state, event, reason)?;
    Ok(seed)
}

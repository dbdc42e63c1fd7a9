//! Master key rotation: every sealed drive key and Data Box Disk passkey opened with the old
//! master key and sealed again with the new one, in one transaction. Written against [`Db`]:
//! the same on SQLite and PostgreSQL.

use crate::args;
use crate::clock::UnixMs;
use crate::domain::model::{AuditRecord, SealedKey};
use crate::error::{Error, Result};
use crate::keys::MasterKey;
use crate::store::sql::Db;

/// What a rotation re-sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub drive_keys: u64,
    pub passkeys: u64,
}

/// Re-seals everything sealed under `old` with `new`: all or nothing. Refused while a copy
/// station holds work (a drive report it retries was fingerprinted with the old key); a
/// sealed key that does not open with `old` stops it with its drive named.
pub fn reseal(c: &dyn Db, old: &MasterKey, new: &MasterKey, now: UnixMs) -> Result<Resealed> {
    let leased: i64 = c.query_one("SELECT COUNT(*) FROM work_items WHERE state = 'leased'", &[])?.get(0)?;
    if leased > 0 {
        return Err(Error::FailedPrecondition(format!(
            "{leased} disk-prep lease(s) are held by copy stations; rotate the master key when none is (stop the stations, or wait)"
        )));
    }
    let rows: Vec<(String, String, String, Vec<u8>)> = c
        .query(
            "SELECT d.seed_id, d.drive_id, w.work_id, d.sealed_key FROM drives d JOIN work_items w ON w.seed_id = d.seed_id \
             WHERE d.sealed_key IS NOT NULL ORDER BY d.seed_id, d.drive_id",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .collect::<Result<_>>()?;
    let mut out = Resealed { drive_keys: 0, passkeys: 0 };
    for (seed_id, drive_id, work_id, sealed) in rows {
        let key = old.open(&work_id, &drive_id, &SealedKey(sealed))?;
        let again = new.seal(&work_id, &drive_id, &key)?;
        c.exec(
            "UPDATE drives SET sealed_key = ?3 WHERE seed_id = ?1 AND drive_id = ?2",
            args![seed_id, drive_id, again.0],
        )?;
        out.drive_keys += 1;
    }
    let passkeys: Vec<(String, String, Vec<u8>)> = c
        .query(
            "SELECT j.seed_id, w.work_id, j.sealed_passkey FROM import_jobs j JOIN work_items w ON w.seed_id = j.seed_id \
             WHERE j.sealed_passkey IS NOT NULL ORDER BY j.seed_id",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .collect::<Result<_>>()?;
    let aad = crate::service::PASSKEY_AAD;
    for (seed_id, work_id, sealed) in passkeys {
        let key = old.open(&work_id, aad, &SealedKey(sealed))?;
        let again = new.seal(&work_id, aad, &key)?;
        c.exec("UPDATE import_jobs SET sealed_passkey = ?2 WHERE seed_id = ?1", args![seed_id, again.0])?;
        out.passkeys += 1;
    }
    super::audit::append(
        c,
        now,
        &AuditRecord {
            actor: "coordinator/keys".into(),
            action: "RotateMasterKey".into(),
            target: String::new(),
            outcome: "ok".into(),
            detail: format!(
                "{} drive key(s) and {} passkey(s) sealed again under the new master key",
                out.drive_keys, out.passkeys
            ),
        },
    )?;
    Ok(out)
}

//! Tests of the SQLite backend: the store's contract (`store/conformance.rs`) on SQLite, and
//! what only this backend has.

use std::sync::Arc;
use std::time::Duration;

use super::{CHECKPOINT_EVERY, SqliteStore};
use crate::domain::model::*;
use crate::store::Store;
use crate::store::conformance::prepared_job;

/// A fresh SQLite store in its own folder.
async fn open() -> (Arc<dyn Store>, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&d.path().join("c.db"), Duration::from_secs(2)).unwrap();
    (Arc::new(store), d)
}

crate::conformance_suite!(open);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_master_key_seals_every_drive_key_and_passkey_again_all_or_nothing() {
    use crate::keys::MasterKey;
    use rusqlite::params;
    let d = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&d.path().join("c.db"), Duration::from_secs(2)).unwrap();
    prepared_job(&store, "job-k").await;
    let (old, new) = (Arc::new(MasterKey::from_bytes(&[1; 32])), Arc::new(MasterKey::from_bytes(&[2; 32])));
    let work_id: String = store
        .write(|c| {
            c.query_row(
                "SELECT work_id FROM work_items w JOIN seeds s ON s.seed_id = w.seed_id WHERE s.job_name = 'job-k'",
                [],
                |r| r.get(0),
            )
            .map_err(super::db_err)
        })
        .await
        .unwrap();
    let pw = RecoveryPassword("111111-222222-333333-444444-555555-666666-777777-888888".into());
    let passkey = RecoveryPassword("a passkey".into());
    let (k, p) = (
        old.seal(&work_id, "D-job-k", &pw).unwrap(),
        old.seal(&work_id, crate::service::PASSKEY_AAD, &passkey).unwrap(),
    );
    store
        .write(move |c| {
            c.execute("UPDATE drives SET sealed_key = ?1 WHERE drive_id = 'D-job-k'", params![k.0])
                .map_err(super::db_err)?;
            c.execute("UPDATE import_jobs SET sealed_passkey = ?1", params![p.0]).map_err(super::db_err)?;
            Ok(())
        })
        .await
        .unwrap();
    let done = store.reseal_master(old.clone(), new.clone(), 10).await.unwrap();
    assert_eq!(done, crate::store::ops::Resealed { drive_keys: 1, passkeys: 1 });
    let (k, p): (Vec<u8>, Vec<u8>) = store
        .write(|c| {
            c.query_row(
                "SELECT d.sealed_key, j.sealed_passkey FROM drives d JOIN import_jobs j ON j.seed_id = d.seed_id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(super::db_err)
        })
        .await
        .unwrap();
    assert_eq!(new.open(&work_id, "D-job-k", &SealedKey(k.clone())).unwrap(), pw);
    assert_eq!(new.open(&work_id, crate::service::PASSKEY_AAD, &SealedKey(p)).unwrap(), passkey);
    assert!(old.open(&work_id, "D-job-k", &SealedKey(k)).is_err(), "the old key opens nothing");
    // Rotating again from the old key: refused, naming the drive, and nothing changes.
    let e = store.reseal_master(old.clone(), new.clone(), 11).await.unwrap_err();
    assert!(e.to_string().contains("D-job-k") && e.to_string().contains("does not open"), "{e}");
    assert_eq!(
        store.audit_list(0, 1000, None).await.unwrap().iter().filter(|a| a.action == "RotateMasterKey").count(),
        1
    );
}

/// The WAL is copied into the database file beside the writer (not inside a commit), so the
/// writer's next transaction starts the WAL over: what was written after a checkpoint reuses
/// the WAL's space instead of growing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_run_beside_the_writer_and_the_wal_starts_over() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("c.db");
    let store = SqliteStore::open(&db, Duration::from_secs(2)).unwrap();
    store
        .write(|c| c.execute_batch("CREATE TABLE scratch (id INTEGER PRIMARY KEY, data BLOB)").map_err(super::db_err))
        .await
        .unwrap();
    let fill = |from: i64| {
        let store = &store;
        async move {
            for id in from..from + 100 {
                store
                    .write(move |c| {
                        c.execute("INSERT INTO scratch (id, data) VALUES (?1, zeroblob(4000))", [id])
                            .map_err(super::db_err)
                    })
                    .await
                    .unwrap();
            }
        }
    };
    let wal = || std::fs::metadata(d.path().join("c.db-wal")).map(|m| m.len()).unwrap_or(0);
    fill(0).await;
    let first = wal();
    assert!(first > 100 * 4096, "each commit added its pages to the WAL: {first} bytes");
    // Three checkpoint intervals later, the same writes again.
    tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
    fill(100).await;
    let second = wal();
    assert!(second < first + first / 4, "the WAL started over after the checkpoint: {first} then {second} bytes");
}

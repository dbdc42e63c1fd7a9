//! The SQLite backend: WAL mode, numbered migrations embedded in the binary, one writer
//! thread that group-commits, and a small pool of read connections.
//!
//! Writes: every [`Store`] mutation is a closure sent to the writer thread. The thread takes
//! whatever is waiting (up to [`MAX_BATCH`]), runs each closure inside its own SAVEPOINT of one
//! `BEGIN IMMEDIATE` transaction, commits once (`synchronous = FULL`: the WAL is fsynced), and
//! only then answers the callers. A closure that fails is rolled back to its savepoint alone;
//! a commit that fails fails every closure of the batch. So each operation is atomic and
//! durable when answered, and a busy coordinator pays for one fsync per batch, not per call.
//!
//! Reads run on pooled connections, which WAL lets proceed while the writer writes.

mod audit;
mod enroll;

pub use notify::Listed as NotificationListed;
pub use writes::Retarget;
mod jobs;
mod notify;
mod reads;
mod rekey;
pub use rekey::Resealed;
mod revoke;
mod rounds;
mod rows;
mod vaults;
mod verify;
mod web;
mod writes;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, ffi::ErrorCode};
use seedship_proto::identity::{Role, SpiffeId};
use tokio::sync::{mpsc, oneshot};

use super::{LeaseTiming, Store};
use crate::clock::UnixMs;
use crate::domain::enroll::EnrollToken;
use crate::domain::import::{DeadlineKind, JobIntent, JobRecord, JobSnapshot};
use crate::domain::lease::{Fence, Release};
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::domain::seed::SeedState;
use crate::error::{Error, Result};

/// Migrations in order; `PRAGMA user_version` records how many are applied.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../../migrations/0001_init.sql")),
    ("0002_virtual_stations", include_str!("../../../migrations/0002_virtual_stations.sql")),
    ("0003_drive_status", include_str!("../../../migrations/0003_drive_status.sql")),
    ("0004_import_jobs", include_str!("../../../migrations/0004_import_jobs.sql")),
    ("0005_verification", include_str!("../../../migrations/0005_verification.sql")),
    ("0006_vaults", include_str!("../../../migrations/0006_vaults.sql")),
    ("0007_seed_placement", include_str!("../../../migrations/0007_seed_placement.sql")),
    ("0008_fair_queue", include_str!("../../../migrations/0008_fair_queue.sql")),
    ("0009_databox", include_str!("../../../migrations/0009_databox.sql")),
    ("0010_databox_disk", include_str!("../../../migrations/0010_databox_disk.sql")),
    ("0011_disk_progress", include_str!("../../../migrations/0011_disk_progress.sql")),
    ("0012_audit", include_str!("../../../migrations/0012_audit.sql")),
    ("0013_notifications", include_str!("../../../migrations/0013_notifications.sql")),
    ("0014_web_sessions", include_str!("../../../migrations/0014_web_sessions.sql")),
    ("0015_rounds", include_str!("../../../migrations/0015_rounds.sql")),
    ("0016_enrollment", include_str!("../../../migrations/0016_enrollment.sql")),
    ("0017_revocations", include_str!("../../../migrations/0017_revocations.sql")),
];

/// Most operations committed together.
const MAX_BATCH: usize = 256;
const READERS: usize = 3;

type Finish = Box<dyn FnOnce(Result<()>) + Send>;
/// A queued write: given the connection (or `None` when the batch could not start), runs the
/// operation and returns whether it succeeded and how to answer once the commit outcome is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Finish) + Send>;

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

/// Maps a SQLite failure: lock and I/O trouble is UNAVAILABLE (retry), the rest INTERNAL.
pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::OutOfMemory => {
                Error::Unavailable(format!("database unavailable: {e}; nothing was written, retry"))
            }
            _ => Error::Internal(format!("database: {e}")),
        },
        _ => Error::Internal(format!("database: {e}")),
    }
}

/// The database holds sealed drive keys and every tenant's records: it and its `-wal` and
/// `-shm` files are the coordinator's alone (mode 0600). A new database file is made so.
fn private_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |p: &Path, e: std::io::Error| Error::Unavailable(format!("database {}: {e}", p.display()));
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| fail(path, e))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::metadata(&p) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(|e| fail(&p, e))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn open_conn(path: &Path, busy: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::Unavailable(format!("cannot open database {}: {e}", path.display())))?;
    conn.busy_timeout(busy).map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db_err)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies pending migrations, and
    /// starts the writer thread. `busy` bounds how long a write waits for a lock held by
    /// another process before the callers get UNAVAILABLE.
    pub fn open(path: &Path, busy: Duration) -> Result<Self> {
        private_files(path)?;
        let conn = open_conn(path, busy)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Internal(format!("database {} refused WAL mode (got {mode})", path.display())));
        }
        // SQLite gives the -wal and -shm files the database's mode; an older one is fixed here.
        private_files(path)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
        // Savepoint sub-journals in memory: every operation has one, and they never need disk.
        conn.pragma_update(None, "temp_store", "MEMORY").map_err(db_err)?;
        migrate(&conn, path)?;

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = open_conn(path, busy)?;
            r.pragma_update(None, "query_only", "ON").map_err(db_err)?;
            readers.push(r);
        }
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| Error::Internal(format!("cannot start the database writer: {e}")))?;
        Ok(SqliteStore { path: path.to_path_buf(), writer: tx, readers: Arc::new(Mutex::new(readers)) })
    }

    /// Runs `f` in its own savepoint of the writer's next batch; answers after the commit.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let res = match conn {
                Some(conn) => f(conn),
                None => Err(Error::Unavailable("the write was not started".into())),
            };
            let ok = res.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let _ = tx.send(commit.and(res));
            });
            (ok, finish)
        });
        self.writer.send(job).map_err(|_| Error::Unavailable("the database writer has stopped".into()))?;
        rx.await.map_err(|_| Error::Unavailable("the database writer has stopped".into()))?
    }

    /// Runs `f` on a pooled read connection.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.lock().map_err(|_| Error::Internal("reader pool poisoned".into()))?.pop();
            let conn = match conn {
                Some(c) => c,
                None => return Err(Error::Unavailable("all database readers are busy; retry".into())),
            };
            let out = f(&conn);
            if let Ok(mut p) = pool.lock() {
                p.push(conn);
            }
            out
        })
        .await
        .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
    }
}

fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db_err)?;
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(Error::Internal(format!(
            "database {} has schema version {applied}, newer than this coordinator knows ({known}); run a newer coordinator",
            path.display()
        )));
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let version = i as i64 + 1;
        let batch = format!("BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;");
        conn.execute_batch(&batch).map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            Error::Internal(format!("migration {name} failed on {}: {e}", path.display()))
        })?;
        tracing::info!(migration = name, version, "applied database migration");
    }
    Ok(())
}

fn writer_loop(conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err) {
            // Never run an operation outside a transaction: answer every caller with the error.
            tracing::warn!(error = %e, ops = batch.len(), "could not begin a database transaction; refusing the batch");
            for job in batch.drain(..) {
                let (_, finish) = job(None);
                finish(Err(e.clone()));
            }
            continue;
        }
        let mut finishes = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            let _ = rows::exec(&conn, "SAVEPOINT op", []);
            let (ok, finish) = job(Some(&conn));
            if !ok {
                let _ = rows::exec(&conn, "ROLLBACK TO op", []);
            }
            let _ = rows::exec(&conn, "RELEASE op", []);
            finishes.push(finish);
        }
        let commit = conn.execute_batch("COMMIT").map_err(db_err);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for finish in finishes {
            finish(commit.clone());
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn register_agent(&self, idem: &Idem, who: &SpiffeId, info: &AgentInfo, now: UnixMs) -> Result<Agent> {
        let (idem, who, info) = (idem.clone(), who.clone(), info.clone());
        self.write(move |c| writes::register_agent(c, &idem, &who, &info, now)).await
    }

    async fn heartbeat(&self, idem: &Idem, who: &SpiffeId, status: &str, now: UnixMs) -> Result<UnixMs> {
        let (idem, who, status) = (idem.clone(), who.clone(), status.to_string());
        self.write(move |c| writes::heartbeat(c, &idem, &who, &status, now)).await
    }

    async fn register_seed(
        &self,
        idem: &Idem,
        owner: &SpiffeId,
        seed: &NewSeed,
        placement: &Placement,
        policy: DiskKind,
        now: UnixMs,
    ) -> Result<SeedRegistration> {
        let (idem, owner, seed, placement) = (idem.clone(), owner.clone(), seed.clone(), placement.clone());
        self.write(move |c| writes::register_seed(c, &idem, &owner, &seed, &placement, policy, now)).await
    }

    async fn claim_work(&self, idem: &Idem, station: &SpiffeId, t: LeaseTiming) -> Result<Option<Lease>> {
        let (idem, station) = (idem.clone(), station.clone());
        self.write(move |c| writes::claim_work(c, &idem, &station, t)).await
    }

    async fn renew_lease(
        &self,
        idem: &Idem,
        station: &SpiffeId,
        fence: &Fence,
        waiting: &str,
        t: LeaseTiming,
    ) -> Result<UnixMs> {
        let (idem, station, fence, waiting) = (idem.clone(), station.clone(), fence.clone(), waiting.to_string());
        self.write(move |c| writes::renew_lease(c, &idem, &station, &fence, &waiting, t)).await
    }

    async fn report_progress(
        &self,
        idem: &Idem,
        station: &SpiffeId,
        fence: &Fence,
        delta: &ProgressDelta,
        t: LeaseTiming,
    ) -> Result<(u64, UnixMs)> {
        let (idem, station, fence, delta) = (idem.clone(), station.clone(), fence.clone(), delta.clone());
        self.write(move |c| writes::report_progress(c, &idem, &station, &fence, &delta, t)).await
    }

    async fn record_disks(
        &self,
        station: &SpiffeId,
        fence: &Fence,
        disks: Vec<DiskProgress>,
        now: UnixMs,
    ) -> Result<()> {
        let (station, fence) = (station.clone(), fence.clone());
        self.write(move |c| writes::record_disks(c, &station, &fence, &disks, now)).await
    }

    async fn report_drive(
        &self,
        idem: &Idem,
        station: &SpiffeId,
        fence: &Fence,
        drive: &DriveSpec,
        key: Option<SealedKey>,
        now: UnixMs,
    ) -> Result<Drive> {
        let (idem, station, fence, drive) = (idem.clone(), station.clone(), fence.clone(), drive.clone());
        self.write(move |c| writes::report_drive(c, &idem, &station, &fence, &drive, key, now)).await
    }

    async fn complete_work(&self, idem: &Idem, station: &SpiffeId, fence: &Fence, now: UnixMs) -> Result<Seed> {
        let (idem, station, fence) = (idem.clone(), station.clone(), fence.clone());
        self.write(move |c| writes::complete_work(c, &idem, &station, &fence, now)).await
    }

    async fn release_work(
        &self,
        idem: &Idem,
        station: &SpiffeId,
        fence: &Fence,
        release: &Release,
        now: UnixMs,
    ) -> Result<()> {
        let (idem, station, fence, release) = (idem.clone(), station.clone(), fence.clone(), release.clone());
        self.write(move |c| writes::release_work(c, &idem, &station, &fence, &release, now)).await
    }

    async fn drive_key(&self, station: &SpiffeId, fence: &Fence, drive_id: &str, now: UnixMs) -> Result<SealedKey> {
        let (station, fence, drive_id) = (station.clone(), fence.clone(), drive_id.to_string());
        self.read(move |c| reads::drive_key(c, &station, &fence, &drive_id, now)).await
    }

    async fn expire_leases(&self, now: UnixMs) -> Result<Vec<ExpiredLease>> {
        self.write(move |c| writes::expire_leases(c, now)).await
    }

    async fn seeds_awaiting_jobs(&self) -> Result<Vec<Seed>> {
        self.read(jobs::seeds_awaiting_jobs).await
    }

    async fn drives_for_job(&self, seed_id: &str) -> Result<Vec<DriveForJob>> {
        let seed_id = seed_id.to_string();
        self.read(move |c| jobs::drives_for_job(c, &seed_id)).await
    }

    async fn record_job_intent(&self, intent: &JobIntent, now: UnixMs) -> Result<JobRecord> {
        let intent = intent.clone();
        self.write(move |c| jobs::record_job_intent(c, &intent, now)).await
    }

    async fn followed_jobs(&self) -> Result<Vec<JobRecord>> {
        self.read(jobs::followed_jobs).await
    }

    async fn job_created(
        &self,
        seed_id: &str,
        snap: &JobSnapshot,
        address: &[String],
        adopted: bool,
        now: UnixMs,
    ) -> Result<()> {
        let (seed_id, snap, address) = (seed_id.to_string(), snap.clone(), address.to_vec());
        self.write(move |c| jobs::job_created(c, &seed_id, &snap, &address, adopted, now)).await
    }

    async fn disks_delivered(
        &self,
        seed_id: &str,
        disks: &[DeliveredDisk],
        passkey: Option<&(SealedKey, bool)>,
        now: UnixMs,
    ) -> Result<()> {
        let (seed_id, disks, passkey) = (seed_id.to_string(), disks.to_vec(), passkey.cloned());
        self.write(move |c| jobs::disks_delivered(c, &seed_id, &disks, passkey.as_ref(), now)).await
    }

    async fn lease_passkey(&self, station: &SpiffeId, fence: &Fence, now: UnixMs) -> Result<PasskeyRecord> {
        let (station, fence) = (station.clone(), fence.clone());
        self.read(move |c| {
            let work = rows::load_work(c, &fence.work_id)?;
            work.check(&station.name, fence.generation, now)?;
            jobs::passkey(c, &work.seed_id)
        })
        .await
    }

    async fn passkey(&self, seed: &str) -> Result<PasskeyRecord> {
        let seed = seed.to_string();
        self.read(move |c| jobs::passkey(c, &seed)).await
    }

    async fn job_refused(&self, seed_id: &str, reason: &str, now: UnixMs) -> Result<()> {
        let (seed_id, reason) = (seed_id.to_string(), reason.to_string());
        self.write(move |c| jobs::job_refused(c, &seed_id, &reason, now)).await
    }

    async fn azure_unavailable(&self, seed_id: &str, error: &str, now: UnixMs) -> Result<()> {
        let (seed_id, error) = (seed_id.to_string(), error.to_string());
        self.write(move |c| jobs::azure_unavailable(c, &seed_id, &error, now)).await
    }

    async fn mirror_job(&self, seed_id: &str, snap: &JobSnapshot, now: UnixMs) -> Result<Vec<String>> {
        let (seed_id, snap) = (seed_id.to_string(), snap.clone());
        self.write(move |c| jobs::mirror_job(c, &seed_id, &snap, now)).await
    }

    async fn note_job(&self, seed_id: &str, actor: &str, event: &str, what: &str, now: UnixMs) -> Result<()> {
        let (seed_id, actor, event, what) =
            (seed_id.to_string(), actor.to_string(), event.to_string(), what.to_string());
        self.write(move |c| jobs::note_job(c, &seed_id, &actor, &event, &what, now)).await
    }

    async fn job_gone(&self, seed_id: &str, now: UnixMs) -> Result<()> {
        let seed_id = seed_id.to_string();
        self.write(move |c| jobs::job_gone(c, &seed_id, now)).await
    }

    async fn deadline_step(
        &self,
        seed_id: &str,
        kind: DeadlineKind,
        step: i64,
        text: &str,
        now: UnixMs,
    ) -> Result<bool> {
        let (seed_id, text) = (seed_id.to_string(), text.to_string());
        self.write(move |c| jobs::deadline_step(c, &seed_id, kind, step, &text, now)).await
    }

    async fn job(&self, job: &str) -> Result<Option<ImportJob>> {
        let job = job.to_string();
        self.read(move |c| reads::job(c, &job)).await
    }

    async fn start_verification(&self, seed_id: &str, now: UnixMs) -> Result<Seed> {
        let seed_id = seed_id.to_string();
        self.write(move |c| verify::start_verification(c, &seed_id, now)).await
    }

    async fn merge_round(&self, round_id: &str, now: UnixMs) -> Result<Seed> {
        let round_id = round_id.to_string();
        self.write(move |c| rounds::merge_round(c, &round_id, now)).await
    }

    async fn reship_lost(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<Reshipped> {
        let (idem, operator, seed, reason) = (idem.clone(), operator.clone(), seed.to_string(), reason.to_string());
        self.write(move |c| rounds::reship_lost(c, &idem, &operator, &seed, &reason, now)).await
    }

    async fn finish_verification(
        &self,
        seed_id: &str,
        files: &[VerifiedFile],
        repair: &[RepairFile],
        now: UnixMs,
    ) -> Result<Seed> {
        let (seed_id, files, repair) = (seed_id.to_string(), files.to_vec(), repair.to_vec());
        self.write(move |c| verify::finish_verification(c, &seed_id, &files, &repair, now)).await
    }

    async fn repair_orders(&self, owner: &str) -> Result<Vec<(Seed, Vec<RepairFile>)>> {
        let owner = owner.to_string();
        self.read(move |c| verify::repair_orders(c, &owner)).await
    }

    async fn report_repair(
        &self,
        idem: &Idem,
        owner: &SpiffeId,
        seed_id: &str,
        uploaded: &[String],
        lost: &[(String, String)],
        now: UnixMs,
    ) -> Result<Seed> {
        let (idem, owner, seed_id, uploaded, lost) =
            (idem.clone(), owner.clone(), seed_id.to_string(), uploaded.to_vec(), lost.to_vec());
        self.write(move |c| verify::report_repair(c, &idem, &owner, &seed_id, &uploaded, &lost, now)).await
    }

    async fn verification(&self, seed: &str) -> Result<Option<VerificationReport>> {
        let seed = seed.to_string();
        self.read(move |c| verify::verification(c, &seed)).await
    }

    async fn vault_of(&self, server: &str) -> Result<Option<Vault>> {
        let server = server.to_string();
        self.read(move |c| vaults::vault_of(c, &server)).await
    }

    async fn fail_seed(&self, seed_id: &str, actor: &str, reason: &str, now: UnixMs) -> Result<Seed> {
        let (seed_id, actor, reason) = (seed_id.to_string(), actor.to_string(), reason.to_string());
        self.write(move |c| vaults::fail_seed(c, &seed_id, &actor, &reason, now)).await
    }

    async fn vault_seeded(
        &self,
        seed_id: &str,
        account: &str,
        container: &str,
        snapshots: &[String],
        now: UnixMs,
    ) -> Result<Seed> {
        let (seed_id, account, container, snapshots) =
            (seed_id.to_string(), account.to_string(), container.to_string(), snapshots.to_vec());
        self.write(move |c| vaults::vault_seeded(c, &seed_id, &account, &container, &snapshots, now)).await
    }

    async fn add_recovery_point(&self, server: &str, snapshot_id: &str, now: UnixMs) -> Result<RecoveryPoint> {
        let (server, snapshot_id) = (server.to_string(), snapshot_id.to_string());
        self.write(move |c| vaults::add_recovery_point(c, &server, &snapshot_id, now)).await
    }

    async fn recovery_points(&self, server: Option<&str>) -> Result<Vec<RecoveryPoint>> {
        let server = server.map(str::to_string);
        self.read(move |c| vaults::recovery_points(c, server.as_deref())).await
    }

    async fn record_cleanup(
        &self,
        seed: &str,
        owner: Option<&str>,
        actor: &str,
        event: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed> {
        let (seed, owner, actor, event, reason) =
            (seed.to_string(), owner.map(str::to_string), actor.to_string(), event.to_string(), reason.to_string());
        self.write(move |c| vaults::record_cleanup(c, &seed, owner.as_deref(), &actor, &event, &reason, now)).await
    }

    async fn reserve_shipping(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        rec: &NewShipping,
        now: UnixMs,
    ) -> Result<ShippingRecord> {
        let (idem, operator, rec) = (idem.clone(), operator.clone(), rec.clone());
        self.write(move |c| jobs::reserve_shipping(c, &idem, &operator, &rec, now)).await
    }

    async fn confirm_shipping(&self, seed_id: &str, now: UnixMs) -> Result<ShippingRecord> {
        let seed_id = seed_id.to_string();
        self.write(move |c| jobs::confirm_shipping(c, &seed_id, now)).await
    }

    async fn drop_shipping(&self, seed_id: &str, reason: &str, now: UnixMs) -> Result<()> {
        let (seed_id, reason) = (seed_id.to_string(), reason.to_string());
        self.write(move |c| jobs::drop_shipping(c, &seed_id, &reason, now)).await
    }

    async fn stale_reservations(&self, before: UnixMs) -> Result<Vec<ShippingRecord>> {
        self.read(move |c| jobs::stale_reservations(c, before)).await
    }

    async fn set_disk_kind(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        kind: DiskKind,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed> {
        let (idem, operator, seed, reason) = (idem.clone(), operator.clone(), seed.to_string(), reason.to_string());
        self.write(move |c| writes::set_disk_kind(c, &idem, &operator, &seed, kind, &reason, now)).await
    }

    async fn cancel_seed(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed> {
        let (idem, operator, seed, reason) = (idem.clone(), operator.clone(), seed.to_string(), reason.to_string());
        self.write(move |c| writes::cancel_seed(c, &idem, &operator, &seed, &reason, now)).await
    }

    async fn requeue_work(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        to: &Retarget,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed> {
        let (idem, operator, seed, to, reason) =
            (idem.clone(), operator.clone(), seed.to_string(), to.clone(), reason.to_string());
        self.write(move |c| writes::requeue_work(c, &idem, &operator, &seed, &to, &reason, now)).await
    }

    async fn retry_work(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed> {
        let (idem, operator, seed, reason) = (idem.clone(), operator.clone(), seed.to_string(), reason.to_string());
        self.write(move |c| writes::retry_work(c, &idem, &operator, &seed, &reason, now)).await
    }

    async fn allow_virtual_station(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        seed: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<Seed> {
        let (idem, operator, seed, reason) = (idem.clone(), operator.clone(), seed.to_string(), reason.to_string());
        self.write(move |c| writes::allow_virtual_station(c, &idem, &operator, &seed, &reason, now)).await
    }

    async fn get_shipping(&self, job_name: &str) -> Result<Option<ShippingRecord>> {
        let job = job_name.to_string();
        self.read(move |c| reads::shipping_by_job(c, &job)).await
    }

    async fn purge_requests(&self, before: UnixMs) -> Result<u64> {
        self.write(move |c| writes::purge_requests(c, before)).await
    }

    async fn list_seeds(&self, state: Option<SeedState>, limit: u32) -> Result<Vec<Seed>> {
        self.read(move |c| reads::list_seeds(c, state, limit)).await
    }

    async fn list_own_seeds(&self, owner: &str) -> Result<Vec<Seed>> {
        let owner = owner.to_string();
        self.read(move |c| reads::list_own_seeds(c, &owner)).await
    }

    async fn seed_detail(&self, seed: &str) -> Result<Option<SeedDetail>> {
        let seed = seed.to_string();
        self.read(move |c| reads::seed_detail(c, &seed)).await
    }

    async fn list_drives(&self, seed: Option<&str>) -> Result<Vec<Drive>> {
        let seed = seed.map(str::to_string);
        self.read(move |c| reads::list_drives(c, seed.as_deref())).await
    }

    async fn list_jobs(&self) -> Result<Vec<ImportJob>> {
        self.read(reads::list_jobs).await
    }

    async fn enroll_create(&self, token_hash: &str, token: &EnrollToken, now: UnixMs) -> Result<()> {
        let (h, t) = (token_hash.to_string(), token.clone());
        self.write(move |c| enroll::create(c, &h, &t, now)).await
    }

    async fn enroll_list(&self) -> Result<Vec<EnrollToken>> {
        self.read(enroll::list).await
    }

    async fn reseal_master(
        &self,
        old: Arc<crate::keys::MasterKey>,
        new: Arc<crate::keys::MasterKey>,
        now: UnixMs,
    ) -> Result<Resealed> {
        self.write(move |c| rekey::reseal(c, &old, &new, now)).await
    }

    async fn resolve_agent(&self, agent: &str, role: Option<Role>, trust_domain: &str) -> Result<SpiffeId> {
        let (a, td) = (agent.to_string(), trust_domain.to_string());
        self.read(move |c| revoke::resolve(c, &a, role, &td)).await
    }

    async fn revoke(
        &self,
        idem: &Idem,
        operator: &SpiffeId,
        id: &SpiffeId,
        reason: &str,
        now: UnixMs,
    ) -> Result<Revoked> {
        let (idem, operator, id, reason) = (idem.clone(), operator.clone(), id.clone(), reason.to_string());
        self.write(move |c| revoke::revoke(c, &idem, &operator, &id, &reason, now)).await
    }

    async fn revocations(&self) -> Result<Vec<Revocation>> {
        self.read(revoke::list).await
    }

    async fn enroll_redeem(
        &self,
        token_hash: &str,
        id: &SpiffeId,
        trust_domain: &str,
        not_after: UnixMs,
        now: UnixMs,
    ) -> Result<EnrollToken> {
        let (h, id, td) = (token_hash.to_string(), id.clone(), trust_domain.to_string());
        self.write(move |c| enroll::redeem(c, &h, &id, &td, not_after, now)).await
    }

    async fn web_create_login(&self, token_hash: &str, identity: &str, now: UnixMs, expires: UnixMs) -> Result<()> {
        let (t, i) = (token_hash.to_string(), identity.to_string());
        self.write(move |c| web::create_login(c, &t, &i, now, expires)).await
    }

    async fn web_redeem(&self, token_hash: &str, session_hash: &str, now: UnixMs, ttl_ms: i64) -> Result<String> {
        let (t, s) = (token_hash.to_string(), session_hash.to_string());
        self.write(move |c| web::redeem(c, &t, &s, now, ttl_ms)).await
    }

    async fn web_session(&self, session_hash: &str, now: UnixMs) -> Result<Option<String>> {
        let s = session_hash.to_string();
        self.read(move |c| web::session(c, &s, now)).await
    }

    async fn web_change_token(&self) -> Result<String> {
        self.read(web::change_token).await
    }

    async fn notify_enqueue(
        &self,
        channel: &str,
        kinds: Vec<crate::domain::notify::Kind>,
        now: UnixMs,
    ) -> Result<usize> {
        let channel = channel.to_string();
        self.write(move |c| notify::enqueue(c, &channel, &kinds, now)).await
    }

    async fn notify_due(
        &self,
        channel: &str,
        now: UnixMs,
        limit: u32,
    ) -> Result<Vec<(crate::domain::notify::Notification, u32)>> {
        let channel = channel.to_string();
        self.write(move |c| notify::due(c, &channel, now, limit)).await
    }

    async fn notify_attempted(
        &self,
        id: i64,
        channel: &str,
        outcome: std::result::Result<(), String>,
        now: UnixMs,
    ) -> Result<()> {
        let channel = channel.to_string();
        self.write(move |c| notify::attempted(c, id, &channel, outcome, now)).await
    }

    async fn notify_list(&self, open: bool, limit: u32) -> Result<Vec<NotificationListed>> {
        self.read(move |c| notify::list(c, open, limit)).await
    }

    async fn notify_ack(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        now: UnixMs,
    ) -> Result<crate::domain::notify::Notification> {
        let (by, reason) = (by.to_string(), reason.to_string());
        self.write(move |c| notify::ack(c, id, &by, &reason, now)).await
    }

    async fn audit(&self, r: AuditRecord, now: UnixMs) -> Result<()> {
        self.write(move |c| audit::append(c, now, &r)).await
    }

    async fn audit_list(
        &self,
        after: i64,
        limit: u32,
        target: Option<&str>,
    ) -> Result<Vec<seedship_proto::audit::Entry>> {
        let target = target.map(str::to_string);
        self.read(move |c| audit::list(c, after, limit, target.as_deref())).await
    }

    async fn audit_head(&self) -> Result<i64> {
        self.read(|c| c.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_log", [], |r| r.get(0)).map_err(db_err))
            .await
    }

    async fn metrics_facts(&self) -> Result<MetricsFacts> {
        self.read(reads::metrics_facts).await
    }

    async fn list_agents(&self, role: Option<Role>) -> Result<Vec<Agent>> {
        self.read(move |c| reads::list_agents(c, role)).await
    }

    async fn list_events(&self, seed: Option<&str>, limit: u32, before: i64) -> Result<Vec<HistoryEntry>> {
        let seed = seed.map(str::to_string);
        self.read(move |c| reads::list_events(c, seed.as_deref(), limit, before)).await
    }
}

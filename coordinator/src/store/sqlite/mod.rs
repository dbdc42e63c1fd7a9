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
//!
//! Checkpoints (copying the WAL's committed pages into the database file, and its fsync) run
//! on a thread of their own every [`CHECKPOINT_EVERY`], beside the writer, instead of inside
//! whichever commit fills the WAL past SQLite's default 1,000 pages, which held up every write
//! queued behind it. The writer checkpoints itself only past [`WRITER_CHECKPOINT_PAGES`] (the
//! checkpoints fell behind).

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, ffi::ErrorCode};
use seedship_proto::identity::{Role, SpiffeId};
use tokio::sync::{mpsc, oneshot};

use super::ops::{self, carry};
use super::sql::Db;
use super::{LeaseTiming, MIGRATIONS, Store};
use crate::clock::UnixMs;
use crate::domain::import::{DeadlineKind, JobIntent, JobRecord, JobSnapshot};
use crate::domain::lease::{Fence, Release};
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::error::{Error, Result};

/// Most operations committed together.
const MAX_BATCH: usize = 256;
const READERS: usize = 3;
/// How long a read waits for a free reader before it is UNAVAILABLE.
const READ_WAIT: Duration = Duration::from_secs(10);
/// A write batch (its operations and its commit) this slow is logged.
const SLOW_BATCH: Duration = Duration::from_millis(100);
/// How often the checkpoint thread copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// The WAL's size (pages) past which the writer checkpoints in its commit after all: 64 MiB of
/// 4 KiB pages, some ten seconds of writes at the most this backend commits.
const WRITER_CHECKPOINT_PAGES: i64 = 16_384;

type Finish = Box<dyn FnOnce(Result<()>) + Send>;
/// A queued write: given the connection (or `None` when the batch could not start), runs the
/// operation and returns whether it succeeded and how to answer once the commit outcome is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Finish) + Send>;

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit per reader: a read waits for a free connection (up to [`READ_WAIT`]).
    free: Arc<tokio::sync::Semaphore>,
    /// Dropped with the store: the checkpoint thread then ends.
    _checkpoints: std::sync::mpsc::Sender<()>,
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
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES).map_err(db_err)?;
        migrate(&conn, path)?;
        let (checkpoints, stop) = std::sync::mpsc::channel();
        let checkpointer = open_conn(path, busy)?;
        checkpointer.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stop))
            .map_err(|e| Error::Internal(format!("cannot start the database checkpoints: {e}")))?;

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
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: tx,
            readers: Arc::new(Mutex::new(readers)),
            free: Arc::new(tokio::sync::Semaphore::new(READERS)),
            _checkpoints: checkpoints,
        })
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

    /// A lease operation of `store_operations`: on SQLite's one writer, a write like any other.
    async fn lease<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        self.write(f).await
    }

    /// Runs `f` on a pooled read connection.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        // A burst of reads queues for the readers instead of failing; only a wait this long
        // (every reader stuck) is UNAVAILABLE.
        let permit = tokio::time::timeout(READ_WAIT, self.free.clone().acquire_owned())
            .await
            .map_err(|_| Error::Unavailable("all database readers are busy; retry".into()))?
            .map_err(|_| Error::Unavailable("the database is closing".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
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

/// Every [`CHECKPOINT_EVERY`] until the store is dropped: the WAL's committed pages copied into
/// the database file (PASSIVE: it neither waits for nor holds up the writer or a reader), so the
/// writer's next transaction starts the WAL over.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            tracing::warn!(error = %e, "checkpoint of the database's WAL failed; the writer checkpoints when it grows past its limit");
        }
    }
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
        let started = std::time::Instant::now();
        let ops = batch.len();
        let mut finishes = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            let _ = conn.exec("SAVEPOINT op", &[]);
            let (ok, finish) = job(Some(&conn));
            if !ok {
                let _ = conn.exec("ROLLBACK TO op", &[]);
            }
            let _ = conn.exec("RELEASE op", &[]);
            finishes.push(finish);
        }
        let ran = started.elapsed();
        let commit = conn.execute_batch("COMMIT").map_err(db_err);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        // Every write waits behind a slow batch: say which part was slow.
        if started.elapsed() >= SLOW_BATCH {
            tracing::warn!(
                ops,
                run_ms = ran.as_millis() as u64,
                commit_ms = (started.elapsed() - ran).as_millis() as u64,
                "slow database write: every write queued behind it waited"
            );
        }
        for finish in finishes {
            finish(commit.clone());
        }
    }
}

/// `impl Store for SqliteStore`, made from `store_operations`: each operation's arguments are
/// carried into the closure ([`carry`]) and lent to `ops::<name>` on the writer thread
/// (`write`) or a read connection (`read`).
macro_rules! impl_sqlite {
    ($( $(#[$m:meta])* $kind:ident $name:ident ( $($a:ident : $t:ty),* $(,)? ) -> $ret:ty ; )*) => {
        #[async_trait]
        impl Store for SqliteStore {
            $(
                async fn $name(&self, $($a: $t),*) -> Result<$ret> {
                    $( let $a = carry::Carry::carry($a); )*
                    self.$kind(move |c| ops::$name(c, $( carry::Lend::lend(&$a) ),*)).await
                }
            )*
        }
    };
}

crate::store::store_operations!(impl_sqlite);

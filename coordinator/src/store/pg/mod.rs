//! The PostgreSQL backend: for a central team, stateless coordinators in front of a
//! PostgreSQL run highly available. The write and read operations run on connections each
//! driven by the thread running an operation, their statements pipelined ([`SyncPool`],
//! `conn`); the lease operations from the call's own task on a `tokio-postgres` pool
//! (`deadpool-postgres`, `replay`), which migrations use too, and a renewal's, progress
//! report's or heartbeat's one statement on shared connections that commit what waits for
//! them together (`live`), where a lease call that reads before it writes first runs
//! optimistically (`replay::optimistic`). The schema's numbered
//! migrations are applied once however many coordinators start at the same moment (a
//! transaction-scoped advisory lock), SQLite's migrations translated to PostgreSQL's types
//! ([`dialect`]); every operation of `store/ops/` runs in one transaction (writes
//! SERIALIZABLE, the lease calls READ COMMITTED with the rows they decide on locked, reads a
//! REPEATABLE READ snapshot), answered only after the commit, and run again whole when it
//! loses a race with another coordinator. A failover is UNAVAILABLE, never a half-done state.

mod conn;
mod live;
mod replay;
mod tls;

use std::path::PathBuf;
use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::{Deserialize, Serialize};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use async_trait::async_trait;
use seedship_proto::identity::{Role, SpiffeId};

use super::ops::{self, carry};
use super::{LeaseTiming, MIGRATIONS, Store};
use crate::clock::UnixMs;
use crate::domain::import::{DeadlineKind, JobIntent, JobRecord, JobSnapshot};
use crate::domain::lease::{Fence, Release};
use crate::domain::model::*;
use crate::domain::placement::Placement;
use crate::error::{Error, Result};

/// Makes every coordinator's migrations take turns (any fixed number, ours).
const MIGRATION_LOCK: i64 = 0x5eed_5419;

/// Writes that lost a race run again in turn: each holds this lock alone (taken before its
/// snapshot), while every other write holds it shared for its transaction. So a write running
/// in turn has no concurrent writer and cannot lose again, and a burst of writes to the same
/// rows (the audit chain's head, one seed, the queue) ends instead of aborting each other again
/// and again.
const WRITES_IN_TURN: i64 = 0x5eed_5420;

/// How a lease operation's transaction begins.
const LEASE_BEGIN: &str = "START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE";

/// Connections a coordinator holds at most, unless `[postgres] pool_size` says.
const POOL_SIZE: usize = 16;

/// `[postgres]` of the coordinator's configuration: PostgreSQL instead of SQLite's
/// `database`, for several coordinators on one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://USER@HOST[:PORT][,HOST2[:PORT]]/DATABASE`, without a password; with several
    /// hosts (a Patroni cluster), add `?target_session_attrs=read-write` to reach the primary.
    pub url: String,
    /// The CA of the servers' certificates: TLS is required and each server's certificate is
    /// verified for its host name. Without it, only a server on this machine (loopback or a
    /// Unix socket) is accepted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The password (a file of mode 0600; its first line), for password or SCRAM
    /// authentication.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections this coordinator holds at most (shared as [`PostgresConfig::shares`] says).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    POOL_SIZE
}

impl PostgresConfig {
    /// A configuration of `url` alone (a server on this machine, no password).
    pub fn url(url: &str) -> PostgresConfig {
        PostgresConfig { url: url.to_string(), ca_file: None, password_file: None, pool_size: POOL_SIZE }
    }

    /// Relative files are relative to `base` (the configuration file's folder).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        for p in [&mut self.ca_file, &mut self.password_file].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// How `pool_size` connections are shared: (the writes and reads, the connections
    /// renewals, progress reports and heartbeats share, the other lease calls). A quarter, a
    /// quarter up to 4, and the rest; at least one each.
    pub fn shares(&self) -> (usize, usize, usize) {
        let n = self.pool_size;
        let sync = (n / 4).max(1);
        let live = (n / 4).clamp(1, 4);
        (sync, live, n.saturating_sub(sync + live).max(1))
    }

    /// What is wrong with it, before anything connects: the URL, a password in it, a remote
    /// server without TLS, the pool's size.
    pub fn problem(&self) -> Option<String> {
        use tokio_postgres::config::Host;
        let cfg = match tokio_postgres::Config::from_str(&self.url) {
            Ok(c) => c,
            Err(e) => return Some(format!("postgres.url: {e} (postgres://USER@HOST:PORT/DATABASE)")),
        };
        if cfg.get_password().is_some() {
            return Some(
                "postgres.url holds a password, which would be seen in the configuration and in process lists; \
                 put it in a file of mode 0600 and set postgres.password_file"
                    .into(),
            );
        }
        if cfg.get_user().is_none() {
            return Some("postgres.url names no user (postgres://USER@HOST/DATABASE)".into());
        }
        if cfg.get_dbname().is_none() {
            return Some("postgres.url names no database (postgres://USER@HOST/DATABASE)".into());
        }
        if self.ca_file.is_none() {
            let remote = cfg.get_hosts().iter().find_map(|h| match h {
                Host::Tcp(name) if !is_loopback(name) => Some(name.clone()),
                _ => None,
            });
            if let Some(host) = remote {
                return Some(format!(
                    "postgres.url reaches {host}, another machine, without TLS; set postgres.ca_file to the CA of its certificate"
                ));
            }
        }
        if !(3..=1000).contains(&self.pool_size) {
            return Some(format!("postgres.pool_size {}: from 3 to 1000", self.pool_size));
        }
        None
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The pool the write and read operations run on: connections each driven by the blocking
/// thread that runs an operation on it ([`conn::PgConn`]), so a statement's round trip wakes
/// that thread alone (a connection's task on a runtime thread in between cost two more
/// wake-ups per statement), with its statements pipelined ([`conn::PgTx`]).
/// A connection found closed, or one whose turn could not be given back, is not used again.
/// The lease operations, migrations and the schema's views use the `tokio-postgres` pool
/// (`PgStore::pool`).
struct SyncPool {
    cfg: tokio_postgres::Config,
    tls: Option<tls::Rustls>,
    idle: std::sync::Mutex<Vec<conn::PgConn>>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl SyncPool {
    /// An idle open connection, or a new one. On a blocking thread.
    fn take(&self) -> Result<conn::PgConn> {
        while let Some(c) = self.idle.lock().map_err(|_| Error::Internal("pool poisoned".into()))?.pop() {
            if !c.is_closed() {
                return Ok(c);
            }
        }
        match &self.tls {
            Some(t) => conn::PgConn::connect(&self.cfg, t.clone()),
            None => conn::PgConn::connect(&self.cfg, NoTls),
        }
    }

    /// Back to the idle ones, when still open.
    fn give(&self, c: conn::PgConn) {
        if !c.is_closed()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(c);
        }
    }
}

impl Drop for SyncPool {
    /// A connection's runtime cannot be dropped on a thread that runs async tasks: the idle
    /// ones are closed on a thread of their own.
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::Builder::new().name("pg-close".into()).spawn(move || drop(idle));
        }
    }
}

pub struct PgStore {
    /// Where the operations run.
    sync: std::sync::Arc<SyncPool>,
    /// Where the liveness calls' one statement runs (`live`).
    live: live::Live,
    /// The lease operations (`replay`), migrations and the schema's views.
    pool: Pool,
    /// Operations run again after losing a race, since this store was opened.
    retried: std::sync::atomic::AtomicU64,
    /// Lease operations committed optimistically (`replay::optimistic`), and those that could
    /// not be and ran their usual way, since this store was opened.
    optimistic: [std::sync::atomic::AtomicU64; 2],
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// A migration's line that is code for PostgreSQL only.
const POSTGRES_ONLY: &str = "--postgres: ";

/// A SQLite migration in PostgreSQL's words: 64-bit integers, `BYTEA` for blobs, an identity
/// column for SQLite's automatic row ids, no `WITHOUT ROWID`, and the lines for PostgreSQL
/// only ([`POSTGRES_ONLY`]) as code.
pub fn dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    for line in sql.lines() {
        // What only PostgreSQL has (SQLite reads it as a comment).
        let line = line.strip_prefix(POSTGRES_ONLY).unwrap_or(line);
        let (code, comment) = match line.find("--") {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        let code = code
            .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
            .replace("INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
            .replace(") WITHOUT ROWID;", ");");
        let code = replace_word(&code, "INTEGER", "BIGINT");
        let code = replace_word(&code, "BLOB", "BYTEA");
        out.push_str(&code);
        out.push_str(comment);
        out.push('\n');
    }
    out
}

/// `from` replaced by `to` where it stands as a word of its own.
fn replace_word(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        out.push_str(if word(before) || word(after) { from } else { to });
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Maps a PostgreSQL failure: what a retry can cure (a lost connection, a failover, a
/// serialization failure or deadlock, too many connections) is UNAVAILABLE; the rest INTERNAL.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> Error {
    let what = describe(&e);
    let transient = match e.code() {
        Some(c) => {
            let s = c.code();
            *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::READ_ONLY_SQL_TRANSACTION
                || s.starts_with("08")
        }
        // No SQLSTATE: the connection itself failed or closed.
        None => true,
    };
    if e.code().is_some_and(|c| c.code().starts_with("28")) {
        Error::Internal(format!(
            "PostgreSQL refused the login: {what}; check postgres.url's user, postgres.password_file and the server's pg_hba.conf"
        ))
    } else if transient {
        Error::Unavailable(format!("database unavailable: {what}; nothing was written, retry"))
    } else {
        Error::Internal(format!("database: {what}"))
    }
}

/// The server's own words (message, SQLSTATE, detail, hint), or the client's error with its
/// causes (a TLS handshake's reason is in its source).
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// A serialization failure or a deadlock: the transaction lost a race and may run again.
pub(crate) fn is_conflict(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        other => Error::Unavailable(format!("database unavailable: {other}; retry")),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/database`) and applies the pending
    /// migrations. Several coordinators may open the same database at once: one applies each
    /// migration, the others wait for it and apply nothing twice.
    pub async fn open(url: &str) -> Result<PgStore> {
        PgStore::connect(&PostgresConfig::url(url)).await
    }

    /// [`PgStore::open`] with the whole `[postgres]` section: TLS, password, pool size.
    pub async fn connect(pc: &PostgresConfig) -> Result<PgStore> {
        if let Some(p) = pc.problem() {
            return Err(Error::Internal(p));
        }
        let mut cfg = tokio_postgres::Config::from_str(&pc.url)
            .map_err(|e| Error::Internal(format!("postgres.url: {e} (postgres://USER@HOST:PORT/DATABASE)")))?;
        cfg.application_name("seedship-coordinator");
        cfg.connect_timeout(std::time::Duration::from_secs(10));
        if let Some(f) = &pc.password_file {
            let bytes = seedship_proto::keyfile::read_private(f)
                .map_err(|e| Error::Internal(format!("postgres.password_file: {e}")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::Internal(format!("postgres.password_file {} is not text", f.display())))?;
            cfg.password(text.lines().next().unwrap_or("").as_bytes());
        }
        let recycle = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let mut sync_tls = None;
        if let Some(ca) = &pc.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| Error::Internal(format!("postgres.ca_file {}: {e}", ca.display())))?;
            sync_tls = Some(
                tls::Rustls::from_ca_pem(&pem)
                    .map_err(|e| Error::Internal(format!("postgres.ca_file {}: {e}", ca.display())))?,
            );
        }
        let mut sync_cfg = cfg.clone();
        if sync_tls.is_some() {
            sync_cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        let (sync_size, live_size, lease_size) = pc.shares();
        let live = live::Live::new(sync_cfg.clone(), sync_tls.clone(), live_size);
        let sync = std::sync::Arc::new(SyncPool {
            cfg: sync_cfg,
            tls: sync_tls,
            idle: Default::default(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(sync_size)),
        });
        let mgr = match &pc.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| Error::Internal(format!("postgres.ca_file {}: {e}", ca.display())))?;
                let tls = tls::Rustls::from_ca_pem(&pem)
                    .map_err(|e| Error::Internal(format!("postgres.ca_file {}: {e}", ca.display())))?;
                cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(cfg, tls, recycle)
            }
            None => Manager::from_config(cfg, NoTls, recycle),
        };
        let pool = Pool::builder(mgr)
            .max_size(lease_size)
            .build()
            .map_err(|e| Error::Internal(format!("database pool: {e}")))?;
        let store = PgStore { sync, live, pool, retried: Default::default(), optimistic: Default::default() };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        // Under the migrations' lock: PostgreSQL's IF NOT EXISTS does not stop two sessions
        // creating one table at the same moment (the loser gets "type already exists").
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_ms BIGINT NOT NULL)",
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        for (i, (name, sql)) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            let tx = client.transaction().await.map_err(pg_err)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err)?;
            let done = tx
                .query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[&version])
                .await
                .map_err(pg_err)?
                .is_some();
            if done {
                continue;
            }
            tx.batch_execute(&dialect(sql))
                .await
                .map_err(|e| Error::Internal(format!("migration {name} failed: {e}")))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
                &[&version, name, &now],
            )
            .await
            .map_err(pg_err)?;
            tx.commit().await.map_err(pg_err)?;
            tracing::info!(migration = name, version, "applied database migration (PostgreSQL)");
        }
        let newest: Option<i64> =
            client.query_one("SELECT MAX(version) FROM schema_migrations", &[]).await.map_err(pg_err)?.get(0);
        let known = MIGRATIONS.len() as i64;
        if newest.unwrap_or(0) > known {
            return Err(Error::Internal(format!(
                "the database has schema version {}, newer than this coordinator knows ({known}); run a newer coordinator",
                newest.unwrap_or(0)
            )));
        }
        Ok(())
    }

    /// Runs `op` in one SERIALIZABLE transaction on a blocking thread and answers after the
    /// commit. A serialization failure or a deadlock (another transaction, of this coordinator
    /// or another, touched the same rows) rolls back and runs the whole operation again, in
    /// turn with the other writes that lost a race ([`WRITES_IN_TURN`]), up to 20 times with a
    /// short random pause; anything else rolls back and is returned. So an operation is
    /// applied completely once, or not at all.
    pub async fn tx<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn super::sql::Db) -> Result<T> + Send + Sync + 'static,
    {
        self.run(Mode::Write, std::sync::Arc::new(op)).await
    }

    /// Runs `op` as a lease operation runs (`store_operations`' `lease`): a test's way to the
    /// paths only lease calls take.
    pub async fn lease_tx<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn super::sql::Db) -> Result<T> + Send + Sync + 'static,
    {
        self.lease(op).await
    }

    /// A write operation of `store_operations`.
    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn super::sql::Db) -> Result<T> + Send + Sync + 'static,
    {
        self.run(Mode::Write, std::sync::Arc::new(op)).await
    }

    /// A lease operation of `store_operations` (a station's or agent's call on its own rows,
    /// many at once). A liveness call whose work is one statement runs it alone on a shared
    /// connection (`live`); otherwise, or when it changed nothing: READ COMMITTED, the operation locking the rows its decision rests on
    /// (`Db::locks_rows`), run before its request id is looked up, and run again looking
    /// first (holding the request id) when it failed (`Db::requests_last`). It does not take
    /// the turn of the writes that lost a race, and cannot lose one over a predicate lock; a
    /// deadlock runs it again.
    async fn lease<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn super::sql::Db) -> Result<T> + Send + Sync + 'static,
    {
        let op = std::sync::Arc::new(op);
        // A liveness call's one statement runs from here, on a shared connection (`live`).
        if let Some(stmt) = live::probe(&*op)
            && let Ok(rows) = self.live.run(&stmt).await
            && !rows.is_empty()
        {
            return live::replay(&*op, rows);
        }
        // Read on the shared connections, then written there after guards of what it read
        // (`replay::optimistic`), holding no connection of its own in between.
        let optimistic = replay::optimistic(&self.live, &*op).await;
        self.optimistic[usize::from(optimistic.is_none())].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(v) = optimistic {
            return Ok(v);
        }
        // From this task, on the async pool (`replay`); on a blocking thread only when the
        // operation cannot be replayed.
        let mut attempt = 0u32;
        let mut look_first = false;
        loop {
            attempt += 1;
            let requests_last = !look_first;
            let (pool, op2) = (self.pool.clone(), op.clone());
            // A task of its own: a call given up by its client still ends its transaction.
            let replayed = tokio::spawn(async move { replay::run(&pool, LEASE_BEGIN, requests_last, &*op2).await })
                .await
                .map_err(|e| Error::Internal(format!("database task failed: {e}")))?;
            match replayed {
                replay::Replayed::Diverged => {
                    tracing::debug!(
                        "a lease operation asked other statements when run again; it runs on a blocking thread"
                    );
                    return self.run(Mode::Lease, op).await;
                }
                // Perhaps a copy of a request already answered: its answer is looked up first.
                replay::Replayed::Done(Err(_), _) if requests_last => look_first = true,
                replay::Replayed::Done(Err(_), true) if attempt < 20 => {
                    self.retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(1 + u64::from(attempt))).await;
                }
                replay::Replayed::Done(r, _) => return r,
            }
        }
    }

    /// A read operation of `store_operations`: one consistent snapshot (REPEATABLE READ, READ
    /// ONLY), which never conflicts with a writer.
    async fn read<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn super::sql::Db) -> Result<T> + Send + Sync + 'static,
    {
        self.run(Mode::Read, std::sync::Arc::new(op)).await
    }

    async fn run<T, F>(&self, mode: Mode, op: std::sync::Arc<F>) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn super::sql::Db) -> Result<T> + Send + Sync + 'static,
    {
        let begin = match mode {
            Mode::Read => "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            Mode::Write => "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
            Mode::Lease => LEASE_BEGIN,
        };
        let locks_rows = mode == Mode::Lease;
        let mut attempt = 0u32;
        // A lease call runs before its request id is looked up at first (`Db::requests_last`);
        // once it failed, it looks first.
        let mut look_first = mode != Mode::Lease;
        loop {
            attempt += 1;
            let requests_last = !look_first;
            let permit = self
                .sync
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Error::Unavailable("the database pool is closed".into()))?;
            let sync = self.sync.clone();
            let op = op.clone();
            let in_turn = attempt > 1 && mode == Mode::Write;
            let outcome = tokio::task::spawn_blocking(move || -> (Result<T>, bool) {
                let _permit = permit;
                let mut conn = match sync.take() {
                    Ok(c) => c,
                    Err(e) => return (Err(e), false),
                };
                if in_turn && let Err(e) = conn.simple(&format!("SELECT pg_advisory_lock({WRITES_IN_TURN})")) {
                    return (Err(pg_err(e)), false);
                }
                let outcome = {
                    let db = conn::PgTx::new(&mut conn, begin, locks_rows, requests_last);
                    let shared = if mode == Mode::Write && !in_turn {
                        super::sql::Db::put(
                            &db,
                            "SELECT pg_advisory_xact_lock_shared(?1)",
                            crate::args![WRITES_IN_TURN],
                        )
                    } else {
                        Ok(())
                    };
                    match shared.and_then(|()| op(&db)) {
                        Ok(v) => match db.commit() {
                            Ok(()) => (Ok(v), false),
                            Err(e) => (Err(e), db.conflict()),
                        },
                        Err(e) => {
                            let conflict = db.conflict();
                            db.rollback();
                            (Err(e), conflict)
                        }
                    }
                };
                if in_turn && conn.simple(&format!("SELECT pg_advisory_unlock({WRITES_IN_TURN})")).is_err() {
                    return outcome;
                }
                sync.give(conn);
                outcome
            })
            .await
            .map_err(|e| Error::Internal(format!("database task failed: {e}")))?;
            match outcome {
                // Perhaps a copy of a request already answered: its answer is looked up first.
                (Err(_), _) if requests_last => look_first = true,
                (Err(_), true) if attempt < 20 => {
                    self.retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let pause =
                        1 + u64::from(std::process::id() ^ attempt.wrapping_mul(7919)) % (5 * u64::from(attempt));
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                (r, _) => return r,
            }
        }
    }

    /// How many operations ran again after losing a race.
    /// Lease operations committed optimistically, and those that ran their usual way instead
    /// (after a liveness call's one statement, if it had one, changed nothing).
    pub fn optimistic(&self) -> (u64, u64) {
        let n = |i: usize| self.optimistic[i].load(std::sync::atomic::Ordering::Relaxed);
        (n(0), n(1))
    }

    pub fn retried(&self) -> u64 {
        self.retried.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every table and its columns (name, whether it may be NULL), sorted: what the schema
    /// parity test compares with SQLite's.
    pub async fn columns(&self) -> Result<Vec<(String, String, bool)>> {
        let client = self.pool.get().await.map_err(pool_err)?;
        let rows = client
            .query(
                "SELECT table_name::text, column_name::text, is_nullable = 'YES' FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// The migrations applied, by version.
    pub async fn applied(&self) -> Result<Vec<(i64, String)>> {
        let client = self.pool.get().await.map_err(pool_err)?;
        let rows =
            client.query("SELECT version, name FROM schema_migrations ORDER BY version", &[]).await.map_err(pg_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// How an operation's transaction runs (`read`, `write` or `lease` in `store_operations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
    Lease,
}

/// `impl Store for PgStore`, made from `store_operations` as `impl_sqlite` is: each
/// operation's arguments are carried into the closure and lent to `ops::<name>` inside one
/// transaction, which may run more than once (a serialization failure runs it again whole).
macro_rules! impl_pg {
    ($( $(#[$m:meta])* $kind:ident $name:ident ( $($a:ident : $t:ty),* $(,)? ) -> $ret:ty ; )*) => {
        #[async_trait]
        impl Store for PgStore {
            $(
                async fn $name(&self, $($a: $t),*) -> Result<$ret> {
                    $( let $a = carry::Carry::carry($a); )*
                    self.$kind(move |c| ops::$name(c, $( carry::Lend::lend(&$a) ),*)).await
                }
            )*
        }
    };
}

crate::store::store_operations!(impl_pg);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_migrations_read_as_postgresql() {
        let sql = "CREATE TABLE t (\n    id INTEGER PRIMARY KEY AUTOINCREMENT,\n    n INTEGER NOT NULL, -- an INTEGER\n    \
                   key BLOB,\n    integers_seen INTEGER\n) WITHOUT ROWID;\nCREATE TABLE u (seq INTEGER PRIMARY KEY);";
        let pg = dialect(sql);
        assert!(pg.contains("id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"), "{pg}");
        assert!(pg.contains("n BIGINT NOT NULL, -- an INTEGER"), "comments are left alone: {pg}");
        assert!(pg.contains("key BYTEA,") && pg.contains("integers_seen BIGINT"), "{pg}");
        assert!(pg.contains("\n);\n") && !pg.contains("ROWID"), "{pg}");
        assert!(pg.contains("seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"), "{pg}");
        let pg = dialect("-- a comment\n--postgres: ALTER TABLE t SET (fillfactor = 90); -- INTEGER\n");
        assert_eq!(
            pg, "-- a comment\nALTER TABLE t SET (fillfactor = 90); -- INTEGER\n",
            "PostgreSQL's own line is code"
        );
        for (_, m) in MIGRATIONS {
            let t = dialect(m);
            for word in ["AUTOINCREMENT", "WITHOUT ROWID", " BLOB", "PRAGMA"] {
                let code: String = t.lines().map(|l| l.split("--").next().unwrap_or("")).collect();
                assert!(!code.contains(word), "{word} left in {t}");
            }
        }
    }

    #[test]
    fn a_configuration_that_would_leak_or_reach_out_in_clear_is_refused() {
        let pc = |url: &str, ca: bool| PostgresConfig {
            ca_file: ca.then(|| PathBuf::from("/etc/pg-ca.crt")),
            ..PostgresConfig::url(url)
        };
        assert_eq!(pc("postgres://seedship@127.0.0.1:5432/seedship", false).problem(), None);
        assert_eq!(pc("postgres://seedship@localhost/seedship", false).problem(), None);
        assert_eq!(pc("postgres://seedship@db1,db2/seedship?target_session_attrs=read-write", true).problem(), None);
        let p = pc("postgres://seedship@db1.example.net/seedship", false).problem().unwrap();
        assert!(p.contains("db1.example.net") && p.contains("postgres.ca_file"), "{p}");
        let p = pc("postgres://127.0.0.1,db2/seedship", true).problem().unwrap();
        assert!(p.contains("no user"), "{p}");
        let p = pc("postgres://seedship:hunter2@127.0.0.1/seedship", false).problem().unwrap();
        assert!(p.contains("password_file") && !p.contains("hunter2"), "the password is not repeated: {p}");
        let p = pc("postgres://seedship@127.0.0.1", false).problem().unwrap();
        assert!(p.contains("no database"), "{p}");
        let p = pc("mysql://x", false).problem().unwrap();
        assert!(p.contains("postgres.url"), "{p}");
        let sized = |n| PostgresConfig { pool_size: n, ..pc("postgres://seedship@127.0.0.1/seedship", false) };
        let p = sized(2).problem().unwrap();
        assert!(p.contains("from 3 to 1000"), "{p}");
        for (n, shares) in [(3, (1, 1, 1)), (8, (2, 2, 4)), (16, (4, 4, 8)), (1000, (250, 4, 746))] {
            let got = sized(n).shares();
            assert_eq!(got, shares, "pool_size {n}");
            assert_eq!(got.0 + got.1 + got.2, n, "never more connections than pool_size");
        }
    }
}

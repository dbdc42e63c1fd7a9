//! The PostgreSQL backend against a real PostgreSQL (Debian's, a fresh cluster per test run):
//! the schema's migrations apply once however many coordinators start together, the schema
//! is SQLite's column for column, and a database that goes away is UNAVAILABLE, then usable
//! again with nothing applied twice.

use std::collections::BTreeSet;
use std::time::Duration;

use coordinator::error::Error;
use coordinator::store::MIGRATIONS;
use coordinator::store::pg::PgStore;
use seedship_e2e::pg::Postgres;

/// Tables and columns of a SQLite database the coordinator made: (table, column, NOT NULL).
fn sqlite_columns(path: &std::path::Path) -> anyhow::Result<BTreeSet<(String, String, bool)>> {
    let db = rusqlite::Connection::open(path)?;
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = BTreeSet::new();
    for t in tables {
        let mut st = db.prepare(&format!("PRAGMA table_info({t})"))?;
        let cols: Vec<(String, bool, bool)> = st
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(3)? != 0, r.get::<_, i64>(5)? != 0)))?
            .collect::<Result<_, _>>()?;
        for (name, not_null, pk) in cols {
            out.insert((t.clone(), name, not_null || pk));
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_migrates_once_for_coordinators_starting_together_and_matches_sqlite() -> anyhow::Result<()> {
    let mut pg = Postgres::start()?;
    let url = pg.database("parity")?;
    // Three coordinators open the empty database at the same moment.
    let (a, b, c) = tokio::join!(PgStore::open(&url), PgStore::open(&url), PgStore::open(&url));
    let (a, _b, _c) = (a?, b?, c?);
    let applied = a.applied().await?;
    assert_eq!(applied.len(), MIGRATIONS.len(), "each migration once: {applied:?}");
    assert!(applied.iter().zip(MIGRATIONS).all(|((_, n), (m, _))| n == m), "{applied:?}");

    // Column for column what SQLite has; what SQLite requires, PostgreSQL requires too.
    let d = tempfile::tempdir()?;
    let db = d.path().join("c.db");
    drop(coordinator::store::sqlite::SqliteStore::open(&db, Duration::from_secs(2))?);
    let lite = sqlite_columns(&db)?;
    let post: BTreeSet<(String, String, bool)> =
        a.columns().await?.into_iter().map(|(t, c, nullable)| (t, c, !nullable)).collect();
    let names = |s: &BTreeSet<(String, String, bool)>| -> BTreeSet<(String, String)> {
        s.iter().map(|(t, c, _)| (t.clone(), c.clone())).collect()
    };
    assert_eq!(names(&lite), names(&post), "the same tables and columns");
    for (t, c, required) in &lite {
        if *required {
            assert!(
                post.contains(&(t.clone(), c.clone(), true)),
                "{t}.{c} is NOT NULL in SQLite but not in PostgreSQL"
            );
        }
    }

    // PostgreSQL's own settings (`--postgres: ` lines): the busy tables' vacuum pauses and
    // statistics thresholds.
    let o = pg
        .client("psql")
        .args(["-d", "parity", "-tA", "-c"])
        .arg(
            "SELECT relname FROM pg_class WHERE reloptions @> \
             ARRAY['autovacuum_vacuum_cost_delay=20', 'autovacuum_analyze_threshold=1000000'] ORDER BY relname",
        )
        .output()?;
    anyhow::ensure!(o.status.success(), "psql: {}", String::from_utf8_lossy(&o.stderr));
    let tuned = String::from_utf8(o.stdout)?;
    assert_eq!(
        tuned.lines().collect::<Vec<_>>(),
        [
            "agents",
            "audit_log",
            "audit_pending",
            "disk_progress",
            "drives",
            "requests",
            "seed_events",
            "seeds",
            "work_items"
        ],
        "the busy tables' autovacuum settings"
    );

    // The database goes away: opening is UNAVAILABLE (retry), not a half-made schema.
    pg.kill()?;
    let e = PgStore::open(&url).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    pg.run()?;
    let again = PgStore::open(&url).await?;
    assert_eq!(again.applied().await?.len(), MIGRATIONS.len(), "nothing applied twice after the restart");
    Ok(())
}

/// One function against `Db`, run on SQLite and on PostgreSQL: the same statements with
/// SQLite's placeholders, every kind of value and NULL, counts, no row.
fn exercise(db: &dyn coordinator::store::sql::Db) -> coordinator::error::Result<()> {
    use coordinator::args;
    let none: Option<i64> = None;
    let n = db.exec(
        "INSERT INTO t (id, name, data, n) VALUES (?1, ?2, ?3, ?4), (?5, 'who? me', ?3, ?6)",
        args![1i64, "one", vec![0u8, 1, 255], none, 2i64, 7u32],
    )?;
    assert_eq!(n, 2);
    let r = db.query_one("SELECT id, name, data, n FROM t WHERE id = ?1", args![1i64])?;
    assert_eq!(r.get::<i64>(0)?, 1);
    assert_eq!(r.get::<String>(1)?, "one");
    assert_eq!(r.get::<Vec<u8>>(2)?, vec![0u8, 1, 255]);
    assert_eq!(r.get::<Option<i64>>(3)?, None);
    let r = db.query_one("SELECT name, n FROM t WHERE id = ?1", args![2i64])?;
    assert_eq!((r.get::<String>(0)?, r.get::<u32>(1)?), ("who? me".to_string(), 7));
    assert!(db.query_opt("SELECT id FROM t WHERE name = ?1", args!["nobody"])?.is_none());
    let r = db.query_one("SELECT COUNT(*), COALESCE(MAX(n), 0) FROM t WHERE n IS NULL OR n > ?1", args![0i64])?;
    assert_eq!((r.get::<u64>(0)?, r.get::<i64>(1)?), (2, 7));
    assert_eq!(db.exec("UPDATE t SET n = ?1 WHERE n IS NULL", args![Some(3i64)])?, 1);
    assert!(r.get::<String>(0).is_err(), "a count is not text");
    Ok(())
}

const TABLE: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data BLOB, n INTEGER);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_written_once_runs_on_sqlite_and_postgresql_and_lost_races_run_again() -> anyhow::Result<()> {
    let lite = rusqlite::Connection::open_in_memory()?;
    lite.execute_batch(TABLE)?;
    exercise(&lite)?;

    let pg = Postgres::start()?;
    let store = PgStore::open(&pg.database("sql")?).await?;
    store
        .tx(|db| {
            for stmt in coordinator::store::pg::dialect(TABLE).split(';').filter(|s| !s.trim().is_empty()) {
                db.exec(stmt, &[])?;
            }
            Ok(())
        })
        .await?;
    store.tx(exercise).await?;
    // A failing operation leaves nothing behind.
    let e = store
        .tx(|db| {
            db.exec("INSERT INTO t (id, name) VALUES (?1, ?2)", coordinator::args![10i64, "ten"])?;
            Err::<(), _>(Error::FailedPrecondition("no".into()))
        })
        .await;
    assert!(matches!(e, Err(Error::FailedPrecondition(_))));
    let ten = store.tx(|db| db.query_opt("SELECT 1 FROM t WHERE id = 10", &[])).await?;
    assert!(ten.is_none(), "rolled back");

    // Sixteen read-modify-write operations at once on one row: under SERIALIZABLE all but one
    // of each race fail, and each is run again until it is applied once.
    store.tx(|db| db.exec("INSERT INTO t (id, name, n) VALUES (100, 'counter', 0)", &[])).await?;
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.tx(|db| {
                let n: i64 = db.query_one("SELECT n FROM t WHERE id = 100", &[])?.get(0)?;
                std::thread::sleep(Duration::from_millis(2));
                db.exec("UPDATE t SET n = ?1 WHERE id = 100", coordinator::args![n + 1])
            })
            .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let n: i64 = store.tx(|db| db.query_one("SELECT n FROM t WHERE id = 100", &[])?.get(0)).await?;
    assert_eq!(n, 16, "every increment applied exactly once");
    assert!(store.retried() > 0, "the races were lost and run again, not serialized by luck");
    Ok(())
}

/// The store's modules already written against `Db` (audit log, enrollment tokens, dashboard
/// logins) run on PostgreSQL as they do on SQLite: the audit chain verifies, a token is spent
/// once, a login link opens one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_enrollment_and_logins_run_on_postgresql() -> anyhow::Result<()> {
    use coordinator::domain::enroll::EnrollToken;
    use coordinator::domain::model::AuditRecord;
    use coordinator::store::ops;
    use seedship_proto::identity::{Role, SpiffeId};
    let pg = Postgres::start()?;
    let store = PgStore::open(&pg.database("modules")?).await?;
    let token = EnrollToken {
        id: "0123456789ab".into(),
        role: Role::Source,
        name: "dpm-*".into(),
        site: Some("lab".into()),
        created_by: "spiffe://t/operator/alice".into(),
        reason: "new servers".into(),
        created_ms: 1,
        expires_ms: 10_000,
        used_ms: None,
        used_by: None,
    };
    let t = token.clone();
    store.tx(move |db| ops::enroll_create(db, "hash-1", &t, 1)).await?;
    let id = SpiffeId::new("t", Role::Source, "dpm-07")?;
    let (i, j) = (id.clone(), id.clone());
    let used = store.tx(move |db| ops::enroll_redeem(db, "hash-1", &i, "t", 5_000, 2)).await?;
    assert_eq!(used.used_by.as_deref(), Some("spiffe://t/source/dpm-07"));
    let e = store.tx(move |db| ops::enroll_redeem(db, "hash-1", &j, "t", 5_000, 3)).await.unwrap_err();
    assert!(matches!(&e, Error::PermissionDenied(m) if m.contains("used already")), "{e:?}");
    let listed = store.tx(ops::enroll_list).await?;
    assert_eq!((listed.len(), listed[0].used_ms), (1, Some(2)));

    store.tx(|db| ops::web_create_login(db, "link", "spiffe://t/operator/alice", 10, 1_000)).await?;
    let who = store.tx(|db| ops::web_redeem(db, "link", "session", 20, 60_000)).await?;
    assert_eq!(who, "spiffe://t/operator/alice");
    let again = store.tx(|db| ops::web_redeem(db, "link", "session-2", 21, 60_000)).await.unwrap_err();
    assert!(matches!(&again, Error::PermissionDenied(m) if m.contains("used already")));
    assert_eq!(store.tx(|db| ops::web_session(db, "session", 30)).await?.as_deref(), Some(who.as_str()));
    assert_eq!(store.tx(|db| ops::web_session(db, "session", 70_000)).await?, None, "expired");

    let r = AuditRecord {
        actor: "a".into(),
        action: "X".into(),
        target: "t".into(),
        outcome: "ok".into(),
        detail: "d".into(),
    };
    store.tx(move |db| ops::audit(db, &r, 40)).await?;
    let entries = store.tx(|db| ops::audit_list(db, 0, 100, None)).await?;
    // The token's creation, its use, the login, and this one: a chain that verifies.
    assert_eq!(entries.len(), 4, "{entries:?}");
    let report = seedship_proto::audit::verify(&entries);
    assert!(report.problems.is_empty() && report.entries == 4, "{report:?}");
    let only = store.tx(|db| ops::audit_list(db, 0, 100, Some("t"))).await?;
    assert_eq!(only.len(), 1);
    Ok(())
}

/// The store's contract (`coordinator/src/store/conformance.rs`), the same tests SQLite runs,
/// on a real PostgreSQL: one new cluster per test.
mod conformance {
    use std::sync::Arc;

    use coordinator::store::Store;
    use coordinator::store::pg::PgStore;
    use seedship_e2e::pg::Postgres;

    async fn open() -> (Arc<dyn Store>, Postgres) {
        let pg = Postgres::start().expect("start PostgreSQL");
        let store = PgStore::open(&pg.url("seedship")).await.expect("open the PostgreSQL store");
        (Arc::new(store), pg)
    }

    coordinator::conformance_suite!(open);
}

/// `[postgres]` with TLS and a password: the coordinator's store verifies the server's
/// certificate against `ca_file` and authenticates with SCRAM from `password_file`; another CA,
/// no TLS, or no password is refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reaches_postgresql_over_verified_tls_with_a_password_file() -> anyhow::Result<()> {
    use coordinator::store::Store;
    use coordinator::store::pg::PostgresConfig;
    let mut pg = Postgres::start()?;
    let (ca, password) = pg.require_tls_and_password()?;
    let url = pg.url("seedship");
    let good = PostgresConfig {
        ca_file: Some(ca.clone()),
        password_file: Some(password.clone()),
        ..PostgresConfig::url(&url)
    };
    let store = PgStore::connect(&good).await?;
    assert_eq!(store.audit_head().await?, 0, "the schema is there and answers over TLS");

    // The server refuses a connection without TLS (pg_hba: hostnossl reject).
    let plain = PostgresConfig { password_file: Some(password.clone()), ..PostgresConfig::url(&url) };
    let e = PgStore::connect(&plain).await.expect_err("no TLS");
    assert!(
        matches!(e, Error::Internal(ref m) if m.contains("refused the login") && m.contains("no encryption")),
        "{e:?}"
    );
    // A CA that did not sign the server's certificate: the handshake fails.
    let other = pg.dir_path().join("other-ca.crt");
    let key = rcgen::KeyPair::generate()?;
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other, p.self_signed(&key)?.pem())?;
    let wrong = PostgresConfig { ca_file: Some(other), ..good.clone() };
    let e = PgStore::connect(&wrong).await.expect_err("an unknown CA");
    assert!(format!("{e}").contains("certificate"), "{e}");
    // No password: SCRAM fails.
    let nopw = PostgresConfig { password_file: None, ..good.clone() };
    let e = PgStore::connect(&nopw).await.expect_err("no password");
    assert!(format!("{e}").contains("password"), "{e}");
    // A password file others can read is refused before anything connects.
    std::fs::set_permissions(&password, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let e = PgStore::connect(&good).await.expect_err("a loose password file");
    assert!(format!("{e}").contains("chmod 600"), "{e}");
    Ok(())
}

/// A site on SQLite moves to PostgreSQL with `coordinator store migrate`: every row is read
/// back and compared; the coordinator started on PostgreSQL shows the same seeds, histories
/// and an intact audit chain, and goes on (a new seed's events follow the copied ids); a
/// second migration into the same database is refused, and nothing in it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_site_moves_to_postgresql_with_every_row_checked_and_goes_on_there() -> anyhow::Result<()> {
    use seedship_e2e::{Cluster, Options, rid, seed_request};
    use seedship_proto::{client, pb};
    let mut c = Cluster::start_with(Options { postgres: false, ..Default::default() })?;
    let (fs, st, ops) = (c.issue("source", "fs01")?, c.issue("copy", "st-m")?, c.issue("operator", "alice")?);
    let (src, cs, op) = (c.connect(&fs).await?, c.connect(&st).await?, c.connect(&ops).await?);
    seedship_proto::agent::register(&cs, None, "t").await?;
    for job in ["job-m1", "job-m2"] {
        client::seeds(src.clone()).register_seed(seed_request(job)).await?;
    }
    let lease = client::diskprep(cs.clone()).claim_work(pb::ClaimWorkRequest { request_id: rid() }).await?.into_inner();
    assert!(lease.lease.is_some());
    client::operator(op.clone())
        .cancel_seed(pb::CancelSeedRequest { request_id: rid(), seed: "job-m2".into(), reason: "not needed".into() })
        .await?;
    let before = |job: &'static str, op: seedship_proto::client::Conn| async move {
        let s = client::operator(op).get_seed(pb::GetSeedRequest { seed: job.into() }).await?.into_inner();
        let seed = s.seed.unwrap();
        anyhow::Ok((seed.state, seed.seed_id, s.history.len()))
    };
    let (m1, m2) = (before("job-m1", op.clone()).await?, before("job-m2", op.clone()).await?);
    drop((src, cs, op));
    c.kill9_coordinator()?;

    let mut pg = Postgres::start()?;
    let (ca, password) = pg.require_tls_and_password()?;
    let migrate = |c: &mut Cluster, name: &str| {
        let mut cmd = std::process::Command::new(seedship_e2e::bin("coordinator"));
        cmd.args(["store", "migrate", "--from"])
            .arg(format!("sqlite:{}", c.path("coordinator.db").display()))
            .arg("--to")
            .arg(format!("postgres:{}", pg.url("seedship")))
            .arg("--ca-file")
            .arg(&ca)
            .arg("--password-file")
            .arg(&password);
        c.run(name, &mut cmd)
    };
    let o = migrate(&mut c, "migrate")?;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    for line in [
        "seeds: 2 row(s), identical",
        "seed_events: ",
        "audit_log: ",
        "requests: ",
        "statistics taken",
        "every one read back",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    // The copy's statistics were taken (autovacuum takes the busy tables' only after a million
    // changes).
    let o = pg
        .client("psql")
        .args(["-d", "seedship", "-tA", "-c"])
        .arg("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL AND relname IN ('seeds', 'work_items') ORDER BY relname")
        .output()?;
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().collect::<Vec<_>>(), ["seeds", "work_items"], "{o:?}");

    // The coordinator's config names PostgreSQL instead of the file.
    let toml = std::fs::read_to_string(&c.config)?.replace("database = \"coordinator.db\"\n", "");
    std::fs::write(
        &c.config,
        format!(
            "{toml}\n[postgres]\nurl = \"{}\"\nca_file = \"{}\"\npassword_file = \"{}\"\n",
            pg.url("seedship"),
            ca.display(),
            password.display()
        ),
    )?;
    std::fs::rename(c.path("coordinator.db"), c.path("coordinator.db.moved"))?;
    c.start_coordinator()?;
    let op = c.connect(&ops).await?;
    assert_eq!(before("job-m1", op.clone()).await?, m1, "the same seed, state and history");
    assert_eq!(before("job-m2", op.clone()).await?, m2);
    let o = c.run("verify", &mut c.seedctl(&ops, &["audit", "verify"]))?;
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("audit log intact"), "{o:?}");
    // It goes on: a new seed, new events and audit entries after the copied ones.
    let src = c.connect(&fs).await?;
    client::seeds(src).register_seed(seed_request("job-m3")).await?;
    let (_, _, n) = before("job-m3", op.clone()).await?;
    assert!(n >= 2, "registered and queued: {n}");
    let o = c.run("verify-after", &mut c.seedctl(&ops, &["audit", "verify"]))?;
    assert!(o.status.success(), "{o:?}");

    // Again into the same database: refused, nothing changed.
    std::fs::rename(c.path("coordinator.db.moved"), c.path("coordinator.db"))?;
    let o = migrate(&mut c, "migrate-again")?;
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success() && err.contains("already holds") && err.contains("empty database"), "{err}");
    let listed = client::operator(op).list_seeds(pb::ListSeedsRequest::default()).await?.into_inner().seeds;
    assert_eq!(listed.len(), 3);
    c.finish()
}

/// A lease operation reads without locking on the shared connections and writes after a guard
/// that reads again, locked: when another call changed what it read in between, nothing of it
/// is committed and it runs its usual way (locking as it reads); otherwise it commits as read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_call_read_without_locks_commits_only_what_it_read_unchanged() -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pg = Postgres::start()?;
    let url = pg.database("optimistic")?;
    let store = PgStore::open(&url).await?;
    store
        .tx(|db| {
            db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)", &[])?;
            db.exec("INSERT INTO t (id, n) VALUES (1, 0)", &[])
        })
        .await?;
    // Adds one to what it read; the first time it has read, another session adds 100 first.
    let interfere = std::sync::Arc::new(AtomicBool::new(true));
    let psql = pg.client("psql").get_program().to_owned();
    let add_one = move |interfere: std::sync::Arc<AtomicBool>| {
        let (psql, url) = (psql.clone(), url.clone());
        move |db: &dyn coordinator::store::sql::Db| {
            let n: i64 = db.query_one(&format!("SELECT n FROM t WHERE id = 1{}", db.for_update("t")), &[])?.get(0)?;
            if interfere.swap(false, Ordering::SeqCst) {
                let o = std::process::Command::new(&psql)
                    .args([url.as_str(), "-c", "UPDATE t SET n = n + 100 WHERE id = 1"])
                    .output()
                    .map_err(|e| Error::Internal(format!("psql: {e}")))?;
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            }
            db.put("UPDATE t SET n = ?1 WHERE id = 1", coordinator::args![n + 1])?;
            Ok(n + 1)
        }
    };
    // Changed in between: the guard refuses it, and it runs again locked, on the new value.
    assert_eq!(store.lease_tx(add_one(interfere.clone())).await?, 101);
    assert_eq!(store.optimistic(), (0, 1), "not committed as first read");
    // Unchanged: committed as read, on the shared connections.
    assert_eq!(store.lease_tx(add_one(interfere.clone())).await?, 102);
    assert_eq!(store.optimistic(), (1, 1));
    let n: i64 = store.tx(|db| db.query_one("SELECT n FROM t WHERE id = 1", &[])?.get(0)).await?;
    assert_eq!(n, 102, "each applied once, none on a stale read");
    Ok(())
}

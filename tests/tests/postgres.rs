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

    // The database goes away: opening is UNAVAILABLE (retry), not a half-made schema.
    pg.kill()?;
    let e = PgStore::open(&url).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    pg.run()?;
    let again = PgStore::open(&url).await?;
    assert_eq!(again.applied().await?.len(), MIGRATIONS.len(), "nothing applied twice after the restart");
    Ok(())
}

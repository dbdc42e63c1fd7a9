//! `coordinator store migrate`: a stopped site's SQLite state copied into an empty PostgreSQL,
//! in one transaction, then checked row by row.
//!
//! Both schemas are brought to this coordinator's newest migration first, so they have the
//! same tables and columns. Tables are copied parents first (their foreign keys), rows in the
//! order SQLite stored them; identity columns continue after the highest copied id. The check
//! reads every table back from PostgreSQL after the commit and compares it with SQLite's: the
//! count, and a digest of the rows sorted (so neither database's collation matters). A target
//! that holds any seedship row is refused: nothing is merged or overwritten.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use ring::digest::{Context, SHA256};

use super::pg::{PgStore, PostgresConfig};
use super::sql::{Db, Row, ToValue, Ty, Value};
use crate::args;
use crate::error::{Error, Result};

/// What one table holds on both sides after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    pub table: String,
    pub rows: u64,
    /// SHA-256 of the table's rows, sorted (hex): equal on both sides.
    pub digest: String,
}

/// A table as SQLite has it.
struct Table {
    name: String,
    columns: Vec<String>,
    /// Tables its foreign keys point to.
    parents: BTreeSet<String>,
    rowid: bool,
}

/// Copies the SQLite database at `sqlite` into the empty PostgreSQL of `pg`, and checks that
/// every row arrived. `progress` hears one line per table.
pub async fn sqlite_to_postgres(
    sqlite: &Path,
    pg: &PostgresConfig,
    busy: std::time::Duration,
    mut progress: impl FnMut(&str),
) -> Result<Vec<TableCheck>> {
    if !sqlite.exists() {
        return Err(Error::NotFound(format!("no SQLite database at {}", sqlite.display())));
    }
    // The newest schema on both sides (a SQLite database of an older coordinator is migrated
    // first, as a start of this coordinator would).
    drop(super::sqlite::SqliteStore::open(sqlite, busy)?);
    let target = PgStore::connect(pg).await?;
    let conn = rusqlite::Connection::open(sqlite)
        .map_err(|e| Error::Unavailable(format!("cannot open {}: {e}", sqlite.display())))?;
    conn.busy_timeout(busy).map_err(super::sqlite::db_err)?;
    // No coordinator writes while the copy is read (one still running waits, or gets
    // UNAVAILABLE): what is copied is one moment of the site.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| {
        Error::Unavailable(format!(
            "{} is being written by a running coordinator ({e}); stop it and migrate again",
            sqlite.display()
        ))
    })?;
    let tables = Arc::new(sqlite_tables(&conn)?);
    let mut data: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for t in tables.iter() {
        let order = if t.rowid { " ORDER BY rowid" } else { "" };
        let rows = conn.query(&format!("SELECT {} FROM {}{order}", t.columns.join(", "), t.name), &[])?;
        data.insert(t.name.clone(), rows);
    }
    let expected: Vec<TableCheck> = tables.iter().map(|t| check_of(&t.name, &data[&t.name])).collect::<Result<_>>()?;
    let data = Arc::new(data);

    {
        let (tables, data) = (tables.clone(), data.clone());
        target.tx(move |db| copy(db, &tables, &data)).await?;
    }
    progress(&format!("copied {} table(s) in one transaction; checking every row", tables.len()));

    let read = tables.clone();
    let arrived: Vec<TableCheck> = target
        .tx(move |db| {
            read.iter()
                .map(|t| {
                    let rows = db.query(&format!("SELECT {} FROM {}", t.columns.join(", "), t.name), &[])?;
                    check_of(&t.name, &rows)
                })
                .collect()
        })
        .await?;
    for (want, got) in expected.iter().zip(&arrived) {
        if want != got {
            return Err(Error::Internal(format!(
                "table {}: {} row(s) in SQLite, {} arrived in PostgreSQL{}; the target is not a copy of the site: \
                 empty it (DROP and CREATE the database) and migrate again",
                want.table,
                want.rows,
                got.rows,
                if want.rows == got.rows { " with different contents" } else { "" }
            )));
        }
        progress(&format!("{}: {} row(s), identical", want.table, want.rows));
    }
    // The copy's statistics for the planner: autovacuum takes the busy tables' only after a
    // million changes (migration 0022).
    target.tx(|db| db.exec("ANALYZE", &[])).await?;
    progress("statistics taken (ANALYZE)");
    conn.execute_batch("ROLLBACK").map_err(super::sqlite::db_err)?;
    Ok(arrived)
}

/// SQLite's tables (not its own), parents before the tables that point to them.
fn sqlite_tables(conn: &rusqlite::Connection) -> Result<Vec<Table>> {
    let db: &dyn Db = conn;
    let listed = db.rows(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        &[],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
    )?;
    let mut tables = Vec::new();
    for (name, sql) in listed {
        let columns = db.rows("SELECT name FROM pragma_table_info(?1) ORDER BY cid", args![name], |r| r.get(0))?;
        let parents: BTreeSet<String> = db
            .rows("SELECT \"table\" FROM pragma_foreign_key_list(?1)", args![name], |r| r.get(0))?
            .into_iter()
            .filter(|p: &String| *p != name)
            .collect();
        tables.push(Table { name, columns, parents, rowid: !sql.contains("WITHOUT ROWID") });
    }
    // Parents first (a table's own references are in rowid order already).
    let mut ordered: Vec<Table> = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let placed: BTreeSet<String> = ordered.iter().map(|t| t.name.clone()).collect();
        let Some(i) = tables.iter().position(|t| t.parents.iter().all(|p| placed.contains(p))) else {
            return Err(Error::Internal("the tables' foreign keys form a cycle".into()));
        };
        ordered.push(tables.remove(i));
    }
    Ok(ordered)
}

/// Inserts every row into the empty target (one transaction, run by [`PgStore::tx`]).
fn copy(db: &dyn Db, tables: &[Table], data: &BTreeMap<String, Vec<Row>>) -> Result<()> {
    // Every column's type on the target, for the NULLs (SQLite's NULL has none), and the
    // identity columns, whose sequences must continue after the copied ids.
    let mut types: BTreeMap<(String, String), Ty> = BTreeMap::new();
    let mut identity = Vec::new();
    for r in db.query(
        "SELECT table_name::text, column_name::text, data_type::text, is_identity::text FROM information_schema.columns \
         WHERE table_schema = current_schema()",
        &[],
    )? {
        let (table, column, ty, ident): (String, String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let ty = match ty.as_str() {
            "bigint" | "integer" | "smallint" | "boolean" => Ty::Int,
            "bytea" => Ty::Bytes,
            _ => Ty::Text,
        };
        if ident == "YES" {
            identity.push((table.clone(), column.clone()));
        }
        types.insert((table, column), ty);
    }
    for t in tables {
        for c in &t.columns {
            if !types.contains_key(&(t.name.clone(), c.clone())) {
                return Err(Error::Internal(format!(
                    "PostgreSQL has no column {}.{c}; both databases must be of this coordinator's schema",
                    t.name
                )));
            }
        }
        let held: i64 = db.value(&format!("SELECT COUNT(*) FROM {}", t.name), &[])?;
        if held > 0 {
            return Err(Error::FailedPrecondition(format!(
                "the target database already holds {held} row(s) in {}; migrate into an empty database \
                 (a new one, or DROP and CREATE it)",
                t.name
            )));
        }
        let placeholders: Vec<String> = (1..=t.columns.len()).map(|i| format!("?{i}")).collect();
        let insert = format!("INSERT INTO {} ({}) VALUES ({})", t.name, t.columns.join(", "), placeholders.join(", "));
        for row in &data[&t.name] {
            let values: Vec<Value> = row
                .0
                .iter()
                .zip(&t.columns)
                .map(|(v, c)| match v {
                    Value::Null(_) => Value::Null(types[&(t.name.clone(), c.clone())]),
                    v => v.clone(),
                })
                .collect();
            let params: Vec<&dyn ToValue> = values.iter().map(|v| v as &dyn ToValue).collect();
            db.exec(&insert, &params)?;
        }
    }
    for (table, column) in identity {
        let max: Option<i64> = db.value(&format!("SELECT MAX({column}) FROM {table}"), &[])?;
        if let Some(max) = max {
            db.query("SELECT setval(pg_get_serial_sequence(?1, ?2), ?3)", args![table, column, max])?;
        }
    }
    Ok(())
}

/// A table's count and the digest of its rows, sorted by their encoding.
fn check_of(table: &str, rows: &[Row]) -> Result<TableCheck> {
    let mut encoded: Vec<Vec<u8>> = rows.iter().map(encode).collect();
    encoded.sort();
    let mut ctx = Context::new(&SHA256);
    for e in &encoded {
        ctx.update(&(e.len() as u64).to_be_bytes());
        ctx.update(e);
    }
    Ok(TableCheck { table: table.to_string(), rows: rows.len() as u64, digest: hex::encode(ctx.finish().as_ref()) })
}

/// One row as bytes: each value tagged with its kind (a NULL is a NULL whatever its type).
fn encode(row: &Row) -> Vec<u8> {
    let mut out = Vec::new();
    for v in &row.0 {
        match v {
            Value::Null(_) => out.push(0),
            Value::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::Text(s) => {
                out.push(2);
                out.extend_from_slice(&(s.len() as u64).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(3);
                out.extend_from_slice(&(b.len() as u64).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    out
}

//! The liveness calls' one statement (`Db::alone`: a renewal, a progress report or a
//! heartbeat, with its request's record), run from the gRPC handler itself on a few shared
//! connections, without a thread in between: concurrent statements are pipelined on a
//! connection, each its own transaction, answered after its commit.
//!
//! A lease operation is first run against [`Stand`], a [`Db`] that only notes the statement the
//! operation would run alone; the operation stops there. Then the statement runs here, and when
//! it changed a row the operation runs again against a [`Stand`] that gives it that
//! statement's rows, and returns its answer. Otherwise (it matched nothing, or failed, or the
//! operation has no such statement) the operation runs its usual way in a transaction of its
//! own, which says what is wrong or does what one statement does not.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};

use super::conn::{params_of, refs, row_of};
use super::{pg_err, tls};
use crate::error::{Error, Result};
use crate::store::sql::{Db, Dialect, Row, ToValue, Value, dollar_placeholders};

/// A statement to run alone: its text and parameters.
pub(super) type Alone = (String, Vec<Value>);

/// The statement an operation runs alone, if it has one: the operation is run up to it.
pub(super) fn probe<T>(op: &dyn Fn(&dyn Db) -> Result<T>) -> Option<Alone> {
    let p = Stand { noted: RefCell::new(None), rows: RefCell::new(None) };
    let _ = op(&p);
    p.noted.into_inner()
}

/// The operation's answer, given `rows` of its statement run alone.
pub(super) fn replay<T>(op: &dyn Fn(&dyn Db) -> Result<T>, rows: Vec<Row>) -> Result<T> {
    op(&Stand { noted: RefCell::new(None), rows: RefCell::new(Some(rows)) })
}

/// Stands in for the database: without `rows`, it notes the statement run alone and stops the
/// operation there; with them, it gives them to that statement. Any other statement stops the
/// operation (when probing: it has no statement to run alone).
struct Stand {
    noted: RefCell<Option<Alone>>,
    rows: RefCell<Option<Vec<Row>>>,
}

fn stop() -> Error {
    Error::Internal("an operation ran another statement than the one it runs alone".into())
}

impl Db for Stand {
    fn exec(&self, _: &str, _: &[&dyn ToValue]) -> Result<u64> {
        Err(stop())
    }
    fn put(&self, _: &str, _: &[&dyn ToValue]) -> Result<()> {
        Err(stop())
    }
    fn query(&self, _: &str, _: &[&dyn ToValue]) -> Result<Vec<Row>> {
        Err(stop())
    }
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn locks_rows(&self) -> bool {
        true
    }
    fn requests_last(&self) -> bool {
        true
    }
    fn alone(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Option<Vec<Row>>> {
        if let Some(rows) = self.rows.borrow_mut().take() {
            return Ok(Some(rows));
        }
        *self.noted.borrow_mut() = Some((sql.to_string(), params.iter().map(|p| p.to_value()).collect()));
        Err(stop())
    }
}

/// One shared connection and the statements prepared on it.
struct Conn {
    client: Client,
    prepared: std::sync::Mutex<HashMap<(String, Vec<Type>), Statement>>,
}

/// The shared connections, each opened when first needed and again after it closed.
pub(super) struct Live {
    cfg: tokio_postgres::Config,
    tls: Option<tls::Rustls>,
    slots: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Live {
    /// `connections` shared connections: more than one, so that one commit's flush does not
    /// hold up every statement queued behind it.
    pub(super) fn new(cfg: tokio_postgres::Config, tls: Option<tls::Rustls>, connections: usize) -> Live {
        Live {
            cfg,
            tls,
            slots: (0..connections.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect(),
            next: Default::default(),
        }
    }

    /// An open shared connection (the next in turn).
    async fn conn(&self) -> Result<Arc<Conn>> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        if let Some(c) = slot.as_ref()
            && !c.client.is_closed()
        {
            return Ok(c.clone());
        }
        let client = match &self.tls {
            Some(t) => {
                let (client, connection) = self.cfg.connect(t.clone()).await.map_err(pg_err)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
            None => {
                let (client, connection) = self.cfg.connect(NoTls).await.map_err(pg_err)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
        };
        let c = Arc::new(Conn { client, prepared: Default::default() });
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `stmt` as a transaction of its own: its rows, after the commit.
    pub(super) async fn run(&self, stmt: &Alone) -> Result<Vec<Row>> {
        let (types, params) = {
            let args: Vec<&dyn ToValue> = stmt.1.iter().map(|v| v as &dyn ToValue).collect();
            params_of(&args)
        };
        let conn = self.conn().await?;
        let key = (dollar_placeholders(&stmt.0), types);
        let known = conn.prepared.lock().map_err(|_| Error::Internal("statements poisoned".into()))?.get(&key).cloned();
        let st = match known {
            Some(st) => st,
            None => {
                let st = conn.client.prepare_typed(&key.0, &key.1).await.map_err(pg_err)?;
                conn.prepared
                    .lock()
                    .map_err(|_| Error::Internal("statements poisoned".into()))?
                    .insert(key, st.clone());
                st
            }
        };
        let rows = conn.client.query(&st, &refs(&params)).await.map_err(pg_err)?;
        rows.iter().map(row_of).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args;

    fn renew(c: &dyn Db, waiting: bool) -> Result<i64> {
        if !waiting
            && let Some(rows) = c.alone("UPDATE w SET e = ?1 RETURNING 1", args![9i64])?
            && !rows.is_empty()
        {
            return Ok(9);
        }
        c.query("SELECT w FOR UPDATE", args![])?;
        Ok(0)
    }

    #[test]
    fn the_statement_run_alone_is_found_and_its_rows_give_the_answer() {
        let (sql, params) = probe(&|c| renew(c, false)).expect("a statement to run alone");
        assert_eq!((sql.as_str(), params), ("UPDATE w SET e = ?1 RETURNING 1", vec![Value::Int(9)]));
        assert_eq!(replay(&|c| renew(c, false), vec![Row(vec![Value::Int(1)])]).unwrap(), 9);
        assert!(probe(&|c| renew(c, true)).is_none(), "an operation without one runs its usual way");
        let e = replay(&|c| renew(c, false), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("another statement"), "{e}");
    }
}

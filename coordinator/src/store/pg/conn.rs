//! A PostgreSQL connection driven by the thread that runs an operation ([`PgConn`]), and an
//! operation's transaction on it as a [`Db`] ([`PgTx`]), its statements pipelined: the
//! transaction's `BEGIN` goes out with its first statement, and the statements whose result
//! the operation does not need ([`Db::put`]) go out with the next one that it needs, or with
//! the `COMMIT`. A
//! lease call of seven statements is three round trips (docs/benchmarks.md,
//! lease operations: on a machine whose cores are busy, a round trip's task switches cost
//! more than a statement's work).
//!
//! The connection's own task runs on a current-thread runtime of the connection, which only
//! the thread waiting for an answer drives: a statement's answer wakes that thread alone.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Socket, Statement};

use super::{is_conflict, pg_err};
use crate::error::{Error, Result};
use crate::store::sql::{Db, Dialect, Row, ToValue, Ty, Value, dollar_placeholders};

/// Statements prepared on one connection, by their text and parameter types.
type StatementCache = std::collections::HashMap<(String, Vec<Type>), Statement>;

pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// A statement ready to go out: prepared, with its parameters.
struct Call {
    st: Statement,
    params: Vec<Param>,
}

/// One PostgreSQL connection of the operations' pool.
pub(super) struct PgConn {
    rt: tokio::runtime::Runtime,
    client: Client,
    cache: StatementCache,
}

impl PgConn {
    /// Connects (on this thread, which must not be running async tasks).
    pub fn connect<T>(cfg: &tokio_postgres::Config, tls: T) -> Result<PgConn>
    where
        T: tokio_postgres::tls::MakeTlsConnect<Socket> + 'static + Send,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("database connection's runtime: {e}")))?;
        let (client, connection) = rt.block_on(cfg.connect(tls)).map_err(pg_err)?;
        // Runs whenever this connection's thread waits for an answer; ends with the connection.
        rt.spawn(async move {
            let _ = connection.await;
        });
        Ok(PgConn { rt, client, cache: Default::default() })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs `sql` (no parameters) on its own, outside any operation's transaction.
    pub fn simple(&self, sql: &str) -> std::result::Result<(), tokio_postgres::Error> {
        self.rt.block_on(self.client.batch_execute(sql))
    }
}

/// Whether a statement is run for its rows or for its count.
enum Want {
    Rows(Vec<tokio_postgres::Row>),
    Count(u64),
}

/// An operation's transaction on a [`PgConn`], as a [`Db`].
pub struct PgTx<'a> {
    conn: RefCell<&'a mut PgConn>,
    /// The `BEGIN` not yet sent: it goes with the first statement.
    begin: Cell<Option<&'static str>>,
    /// Whether the `BEGIN` went out (then the transaction ends with a COMMIT or a ROLLBACK).
    begun: Cell<bool>,
    /// Statements sent with the next one, in order.
    pending: RefCell<Vec<Call>>,
    /// The first failure: every statement after it fails the same way, and so does the commit.
    failed: RefCell<Option<Error>>,
    /// Set when a statement lost a race (serialization failure, deadlock): the transaction is
    /// run again whole.
    conflict: Cell<bool>,
    /// READ COMMITTED (the lease operations), which lock what they decide on.
    locks_rows: bool,
    /// The operation runs before its request id is looked up ([`Db::requests_last`]).
    requests_last: bool,
}

impl<'a> PgTx<'a> {
    /// A transaction that `begin` starts (`START TRANSACTION …`), sent with its first statement.
    pub(super) fn new(conn: &'a mut PgConn, begin: &'static str, locks_rows: bool, requests_last: bool) -> PgTx<'a> {
        PgTx {
            conn: RefCell::new(conn),
            begin: Cell::new(Some(begin)),
            begun: Cell::new(false),
            pending: RefCell::new(Vec::new()),
            failed: RefCell::new(None),
            conflict: Cell::new(false),
            locks_rows,
            requests_last,
        }
    }

    /// Whether a statement of this transaction lost a race.
    pub(super) fn conflict(&self) -> bool {
        self.conflict.get()
    }

    /// Sends what is pending and `COMMIT`; the first failure of any of them. Nothing was
    /// sent: nothing to commit.
    pub(super) fn commit(&self) -> Result<()> {
        if self.begin.get().is_some() && self.pending.borrow().is_empty() {
            return self.failed.borrow().clone().map_or(Ok(()), Err);
        }
        self.round(None, true).map(|_| ())
    }

    /// Ends the transaction without its changes (what is pending is not sent).
    pub(super) fn rollback(&self) {
        if self.begun.get() {
            let conn = self.conn.borrow();
            let _ = conn.simple("ROLLBACK");
        }
    }

    /// `sql` prepared on this connection with the parameters' types (so PostgreSQL never has
    /// to guess one), once per connection, and its parameters.
    fn call(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Call> {
        if let Some(e) = self.failed.borrow().as_ref() {
            return Err(e.clone());
        }
        let (types, params) = params_of(params);
        let key = (dollar_placeholders(sql), types);
        let mut conn = self.conn.borrow_mut();
        if let Some(st) = conn.cache.get(&key) {
            return Ok(Call { st: st.clone(), params });
        }
        let st = conn.rt.block_on(conn.client.prepare_typed(&key.0, &key.1)).map_err(|e| self.fail(e))?;
        conn.cache.insert(key, st.clone());
        Ok(Call { st, params })
    }

    /// Records `e` as this transaction's failure.
    fn fail(&self, e: tokio_postgres::Error) -> Error {
        if is_conflict(&e) {
            self.conflict.set(true);
        }
        let err = pg_err(e);
        self.failed.borrow_mut().get_or_insert_with(|| err.clone());
        err
    }

    /// One round trip: the `BEGIN` if not yet sent, the pending statements, `last` (whose
    /// answer is given) and a `COMMIT` if `commit`, in this order, all sent before any answer
    /// is read. The first failure among them is the answer.
    fn round(&self, last: Option<(Call, bool)>, commit: bool) -> Result<Option<Want>> {
        if let Some(e) = self.failed.borrow().as_ref() {
            return Err(e.clone());
        }
        type Fut<'f> = Pin<Box<dyn Future<Output = std::result::Result<Want, tokio_postgres::Error>> + 'f>>;
        let begin = self.begin.take();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let conn = self.conn.borrow();
        let client = &conn.client;
        let mut futs: Vec<Fut<'_>> = Vec::new();
        if let Some(b) = begin {
            self.begun.set(true);
            futs.push(Box::pin(async move { client.batch_execute(b).await.map(|_| Want::Count(0)) }));
        }
        for c in &pending {
            futs.push(Box::pin(async move { client.execute(&c.st, &refs(&c.params)).await.map(Want::Count) }));
        }
        let wanted = last.is_some();
        if let Some((c, rows)) = &last {
            futs.push(Box::pin(async move {
                if *rows {
                    client.query(&c.st, &refs(&c.params)).await.map(Want::Rows)
                } else {
                    client.execute(&c.st, &refs(&c.params)).await.map(Want::Count)
                }
            }));
        }
        if commit {
            futs.push(Box::pin(async move { client.batch_execute("COMMIT").await.map(|_| Want::Count(0)) }));
        }
        let outs = conn.rt.block_on(in_order(futs));
        drop(conn);
        let mut answer = None;
        let n = outs.len();
        for (i, out) in outs.into_iter().enumerate() {
            match out {
                Err(e) => return Err(self.fail(e)),
                Ok(w) if wanted && i == n - 1 - usize::from(commit) => answer = Some(w),
                Ok(_) => {}
            }
        }
        Ok(answer)
    }
}

/// Parameters as PostgreSQL is given them: each one's type (so PostgreSQL never has to guess
/// one) and its value.
pub(super) fn params_of(params: &[&dyn ToValue]) -> (Vec<Type>, Vec<Param>) {
    let values: Vec<Value> = params.iter().map(|p| p.to_value()).collect();
    let types = values
        .iter()
        .map(|v| match v.ty() {
            Ty::Int => Type::INT8,
            Ty::Text => Type::TEXT,
            Ty::Bytes => Type::BYTEA,
        })
        .collect();
    let params = values
        .into_iter()
        .map(|v| -> Param {
            match v {
                Value::Null(Ty::Int) => Box::new(None::<i64>),
                Value::Null(Ty::Text) => Box::new(None::<String>),
                Value::Null(Ty::Bytes) => Box::new(None::<Vec<u8>>),
                Value::Int(i) => Box::new(i),
                Value::Text(s) => Box::new(s),
                Value::Bytes(b) => Box::new(b),
            }
        })
        .collect();
    (types, params)
}

/// A row of PostgreSQL's as the store reads rows.
pub(super) fn row_of(r: &tokio_postgres::Row) -> Result<Row> {
    let mut cols = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let ty = c.type_();
        let bad = |e: tokio_postgres::Error| Error::Internal(format!("column {}: {e}", c.name()));
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i).map_err(bad)?.map_or(Value::Null(Ty::Int), Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i).map_err(bad)?.map_or(Value::Null(Ty::Int), |v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i).map_err(bad)?.map_or(Value::Null(Ty::Int), |v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i).map_err(bad)?.map_or(Value::Null(Ty::Int), |v| Value::Int(v.into()))
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i).map_err(bad)?.map_or(Value::Null(Ty::Bytes), Value::Bytes)
        } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty) {
            r.try_get::<_, Option<String>>(i).map_err(bad)?.map_or(Value::Null(Ty::Text), Value::Text)
        } else {
            return Err(Error::Internal(format!(
                "column {} is of PostgreSQL type {ty}, which the store does not read; cast it (e.g. to BIGINT)",
                c.name()
            )));
        };
        cols.push(v);
    }
    Ok(Row(cols))
}

/// A call's parameters as `tokio-postgres` takes them.
pub(super) fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// Polls `futs` in order until each is done, the first poll of each in order (so each sends
/// its request in order: PostgreSQL runs them in the order they arrive); their outcomes in
/// the same order.
pub(super) async fn in_order<F: Future + Unpin>(mut futs: Vec<F>) -> Vec<F::Output> {
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, o) in futs.iter_mut().zip(outs.iter_mut()) {
            if o.is_none() {
                match Pin::new(&mut *f).poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outs.into_iter().flatten().collect()
}

impl Db for PgTx<'_> {
    fn exec(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64> {
        let call = self.call(sql, params)?;
        match self.round(Some((call, false)), false)? {
            Some(Want::Count(n)) => Ok(n),
            Some(Want::Rows(r)) => Ok(r.len() as u64),
            None => Err(Error::Internal(format!("no answer from {sql}"))),
        }
    }

    fn put(&self, sql: &str, params: &[&dyn ToValue]) -> Result<()> {
        let call = self.call(sql, params)?;
        self.pending.borrow_mut().push(call);
        Ok(())
    }

    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>> {
        let call = self.call(sql, params)?;
        let rows = match self.round(Some((call, true)), false)? {
            Some(Want::Rows(r)) => r,
            _ => Vec::new(),
        };
        rows.iter().map(row_of).collect()
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn lost_race(&self) {
        self.conflict.set(true);
    }

    fn locks_rows(&self) -> bool {
        self.locks_rows
    }

    fn requests_last(&self) -> bool {
        self.requests_last
    }
}

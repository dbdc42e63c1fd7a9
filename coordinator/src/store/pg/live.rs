//! The liveness calls' one statement (`Db::alone`: a renewal, a progress report or a
//! heartbeat, with its request's record), queued from the gRPC handler for a few shared
//! connections, without a thread in between: each connection's task commits the statements
//! waiting for it in one transaction (group commit), and each is answered after that commit.
//! The optimistic lease calls' reads and writes (`replay::optimistic`) are queued there too,
//! a call's writes as one job of several statements.
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

use super::conn::{Param, in_order, params_of, refs, row_of};
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

/// Statements waiting for their turn on a shared connection, to run in this order in one
/// transaction, and where the last one's rows go.
struct Job {
    stmts: Vec<Alone>,
    done: tokio::sync::oneshot::Sender<Result<Vec<Row>>>,
}

/// The most statements committed together.
const BATCH: usize = 64;

/// The shared connections: one task each, opened when first needed and again after it
/// closed. A task takes every statement waiting (up to [`BATCH`]) and runs them in one
/// transaction, so that the statements that arrived while the connections were busy share one
/// commit and its flush, instead of each waiting for its own in turn (group commit). Alone
/// when only one was waiting. A batch in which any statement fails is rolled back whole, and
/// each of its statements runs again alone, so one call's failure is never another's.
pub(super) struct Live {
    cfg: tokio_postgres::Config,
    tls: Option<tls::Rustls>,
    connections: usize,
    /// Where statements are queued; the tasks are started with it, at the first statement.
    queue: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Job>>,
}

impl Live {
    /// `connections` shared connections: more than one, so that one commit's flush does not
    /// hold up every statement queued behind it.
    pub(super) fn new(cfg: tokio_postgres::Config, tls: Option<tls::Rustls>, connections: usize) -> Live {
        Live { cfg, tls, connections: connections.max(1), queue: std::sync::OnceLock::new() }
    }

    /// Runs `stmt` in a transaction, alone or with others waiting at the same time: its rows,
    /// after the commit.
    pub(super) async fn run(&self, stmt: &Alone) -> Result<Vec<Row>> {
        self.run_all(vec![stmt.clone()]).await
    }

    /// Runs `stmts` in this order in one transaction, alone or with others waiting at the same
    /// time: the last one's rows, after the commit. When one fails, none of them is committed.
    pub(super) async fn run_all(&self, stmts: Vec<Alone>) -> Result<Vec<Row>> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            for _ in 0..self.connections {
                let worker = Worker { cfg: self.cfg.clone(), tls: self.tls.clone(), conn: None };
                tokio::spawn(worker.serve(rx.clone()));
            }
            tx
        });
        let (done, answer) = tokio::sync::oneshot::channel();
        queue
            .send(Job { stmts, done })
            .map_err(|_| Error::Unavailable("the shared database connections stopped".into()))?;
        answer.await.map_err(|_| Error::Unavailable("the shared database connection stopped".into()))?
    }
}

/// One shared connection and the statements prepared on it.
struct Conn {
    client: Client,
    prepared: HashMap<(String, Vec<Type>), Statement>,
}

/// The task of one shared connection.
struct Worker {
    cfg: tokio_postgres::Config,
    tls: Option<tls::Rustls>,
    conn: Option<Conn>,
}

type Answer<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<tokio_postgres::Row>>> + Send + 'a>>;

impl Worker {
    /// Takes the statements waiting, runs them, answers each; ends when the store is dropped.
    async fn serve(mut self, rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Job>>>) {
        loop {
            let batch = {
                let mut rx = rx.lock().await;
                let Some(first) = rx.recv().await else { return };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                batch
            };
            let answers = self.batch(&batch).await;
            for (job, answer) in batch.into_iter().zip(answers) {
                let _ = job.done.send(answer);
            }
        }
    }

    /// The open connection, connecting first when there is none or it closed.
    async fn conn(&mut self) -> Result<&mut Conn> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
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
            self.conn = Some(Conn { client, prepared: HashMap::new() });
        }
        self.conn.as_mut().ok_or_else(|| Error::Internal("no shared connection".into()))
    }

    /// Each job's rows: in one transaction when there are several; each alone when there is
    /// one, or when the transaction did not commit every statement.
    async fn batch(&mut self, jobs: &[Job]) -> Vec<Result<Vec<Row>>> {
        let calls = match self.prepare(jobs).await {
            Ok(calls) => calls,
            Err(e) => return jobs.iter().map(|_| Err(e.clone())).collect(),
        };
        let Some(conn) = self.conn.as_ref() else {
            return jobs.iter().map(|_| Err(Error::Internal("no shared connection".into()))).collect();
        };
        let client = &conn.client;
        let statement = |call| send(client, call);
        let word = |w: &'static str| -> Answer<'_> {
            Box::pin(async move { client.batch_execute(w).await.map(|_| Vec::new()).map_err(pg_err) })
        };
        if calls.len() > 1 {
            let mut futs: Vec<Answer<'_>> = Vec::with_capacity(calls.iter().map(Vec::len).sum::<usize>() + 2);
            futs.push(word("BEGIN"));
            futs.extend(calls.iter().flatten().map(statement));
            futs.push(word("COMMIT"));
            let outs = in_order(futs).await;
            // A statement that failed rolled the whole transaction back (its COMMIT then ends
            // it without committing anything).
            if outs.iter().all(|o| o.is_ok()) {
                let mut at = 0;
                return calls
                    .iter()
                    .map(|job| {
                        at += job.len();
                        rows_of(outs[at].as_ref().expect("checked"))
                    })
                    .collect();
            }
        }
        // Alone: each job its own transaction (a job of one statement, that statement alone),
        // pipelined.
        let mut futs: Vec<Answer<'_>> = Vec::new();
        for job in &calls {
            if job.len() > 1 {
                futs.push(word("BEGIN"));
            }
            futs.extend(job.iter().map(statement));
            if job.len() > 1 {
                futs.push(word("COMMIT"));
            }
        }
        let mut outs = in_order(futs).await.into_iter();
        calls
            .iter()
            .map(|job| {
                let took: Vec<_> = outs.by_ref().take(job.len() + if job.len() > 1 { 2 } else { 0 }).collect();
                let stmts = if job.len() > 1 { &took[1..=job.len()] } else { &took[..] };
                match stmts.iter().find_map(|o| o.as_ref().err()) {
                    Some(e) => Err(e.clone()),
                    None => match took.last() {
                        Some(Err(e)) => Err(e.clone()),
                        _ => rows_of(stmts.last().and_then(|o| o.as_ref().ok()).map(Vec::as_slice).unwrap_or(&[])),
                    },
                }
            })
            .collect()
    }

    /// Each job's statements, prepared on the connection (once per connection), with their
    /// parameters.
    async fn prepare(&mut self, jobs: &[Job]) -> Result<Vec<Vec<(Statement, Vec<Param>)>>> {
        let conn = self.conn().await?;
        let mut calls = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut stmts = Vec::with_capacity(job.stmts.len());
            for (sql, values) in &job.stmts {
                let (types, params) = {
                    let args: Vec<&dyn ToValue> = values.iter().map(|v| v as &dyn ToValue).collect();
                    params_of(&args)
                };
                let key = (dollar_placeholders(sql), types);
                let st = match conn.prepared.get(&key) {
                    Some(st) => st.clone(),
                    None => {
                        let st = conn.client.prepare_typed(&key.0, &key.1).await.map_err(pg_err)?;
                        conn.prepared.insert(key, st.clone());
                        st
                    }
                };
                stmts.push((st, params));
            }
            calls.push(stmts);
        }
        Ok(calls)
    }
}

fn send<'a>(client: &'a Client, (st, params): &'a (Statement, Vec<Param>)) -> Answer<'a> {
    Box::pin(async move { client.query(st, &refs(params)).await.map_err(pg_err) })
}

fn rows_of(rows: &[tokio_postgres::Row]) -> Result<Vec<Row>> {
    rows.iter().map(row_of).collect()
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

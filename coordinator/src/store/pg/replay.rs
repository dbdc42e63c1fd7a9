//! The lease operations run from the call's handler, on a connection of the async pool, with
//! no thread in between: an operation is synchronous code over [`Db`], so it is run against
//! [`Rec`], which answers the statements already sent with their results and stops the
//! operation at the first new one. That statement goes out (pipelined after the writes the
//! operation made before it, and after the `BEGIN` the first time), and the operation is run
//! again from the start with one answer more, until it ends: then its last writes go out with
//! the `COMMIT`, and its answer is given after the commit.
//!
//! An operation run again must ask the same statements with the same parameters given the same
//! answers (the lease operations take their clock as an argument and draw no random ids); one
//! that does not ([`Replayed::Diverged`]) is rolled back and runs on a blocking thread instead
//! (`PgStore::run`), so nothing depends on it.
//!
//! An operation that reads everything before it writes runs so first without a connection of
//! its own ([`optimistic`]): its reads on the shared connections, unlocked, and its writes in
//! one transaction there behind guards that read again, locked, and fail unless they get the
//! same rows.

use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::Relaxed;

use deadpool_postgres::Pool;
use tokio_postgres::Statement;

use super::conn::{in_order, params_of, refs, row_of};
use super::{is_conflict, pg_err};
use crate::error::{Error, Result};
use crate::store::sql::{Db, Dialect, Row, ToValue, Value, dollar_placeholders};

/// A statement the operation asked for, and what it is run for.
#[derive(Clone)]
struct Asked {
    sql: String,
    params: Vec<Value>,
    rows: bool,
    /// How many writes ([`Db::put`]) the operation made before it.
    puts_before: usize,
}

/// What a statement the operation asked for gave.
#[derive(Clone)]
enum Got {
    Rows(Vec<Row>),
    Count(u64),
}

/// A statement's answer as PostgreSQL gave it.
enum Raw {
    Rows(Vec<tokio_postgres::Row>),
    Count(u64),
}

/// How an operation ran.
pub(super) enum Replayed<T> {
    /// Its outcome, after the commit (or the rollback), and whether it lost a race.
    Done(Result<T>, bool),
    /// It asked something else when run again: nothing of it was committed.
    Diverged,
}

const STOPPED: &str = "stopped at a statement not yet sent";

/// The operation's view of the transaction in one run: the answers so far, then a stop.
struct Rec<'a> {
    answers: &'a [(Asked, Got)],
    requests_last: bool,
    asked: Cell<usize>,
    puts: RefCell<Vec<Put>>,
    next: RefCell<Option<Asked>>,
    diverged: Cell<bool>,
    lost_race: Cell<bool>,
}

impl<'a> Rec<'a> {
    fn new(answers: &'a [(Asked, Got)], requests_last: bool) -> Rec<'a> {
        Rec {
            answers,
            requests_last,
            asked: Cell::new(0),
            puts: RefCell::new(Vec::new()),
            next: RefCell::new(None),
            diverged: Cell::new(false),
            lost_race: Cell::new(false),
        }
    }

    fn ask(&self, sql: &str, params: &[&dyn ToValue], rows: bool) -> Result<Got> {
        let i = self.asked.get();
        self.asked.set(i + 1);
        let asked = Asked {
            sql: sql.to_string(),
            params: params.iter().map(|p| p.to_value()).collect(),
            rows,
            puts_before: self.puts.borrow().len(),
        };
        match self.answers.get(i) {
            Some((a, got))
                if a.sql == asked.sql
                    && a.params == asked.params
                    && a.rows == rows
                    && a.puts_before == asked.puts_before =>
            {
                Ok(got.clone())
            }
            Some(_) => {
                self.diverged.set(true);
                Err(Error::Internal(STOPPED.into()))
            }
            None if i == self.answers.len() => {
                *self.next.borrow_mut() = Some(asked);
                Err(Error::Internal(STOPPED.into()))
            }
            // Asked again after the stop (the operation went on past an error): not replayable.
            None => {
                self.diverged.set(true);
                Err(Error::Internal(STOPPED.into()))
            }
        }
    }
}

impl Rec<'_> {
    fn write(&self, sql: &str, params: &[&dyn ToValue], joined: bool) -> Result<()> {
        if self.next.borrow().is_some() {
            self.diverged.set(true);
            return Err(Error::Internal(STOPPED.into()));
        }
        self.puts.borrow_mut().push((sql.to_string(), params.iter().map(|p| p.to_value()).collect(), joined));
        Ok(())
    }
}

impl Db for Rec<'_> {
    fn exec(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64> {
        match self.ask(sql, params, false)? {
            Got::Count(n) => Ok(n),
            Got::Rows(r) => Ok(r.len() as u64),
        }
    }

    fn put(&self, sql: &str, params: &[&dyn ToValue]) -> Result<()> {
        self.write(sql, params, false)
    }

    fn put_joined(&self, sql: &str, params: &[&dyn ToValue]) -> Result<()> {
        self.write(sql, params, true)
    }

    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>> {
        match self.ask(sql, params, true)? {
            Got::Rows(r) => Ok(r),
            Got::Count(_) => Ok(Vec::new()),
        }
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn lost_race(&self) {
        self.lost_race.set(true);
    }

    fn locks_rows(&self) -> bool {
        true
    }

    fn requests_last(&self) -> bool {
        self.requests_last
    }
}

/// A connection of the pool, closed instead of given back if dropped inside a transaction (an
/// operation that panicked): the server then rolls the transaction back, and no later call
/// finds it open.
struct Held {
    client: Option<deadpool_postgres::Client>,
    open: std::sync::atomic::AtomicBool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.open.load(Relaxed)
            && let Some(c) = self.client.take()
        {
            drop(deadpool_postgres::Object::take(c));
        }
    }
}

/// Runs `op` once in one READ COMMITTED transaction on a connection of `pool`, each round
/// trip from this task.
pub(super) async fn run<T>(
    pool: &Pool,
    begin: &'static str,
    requests_last: bool,
    op: &(dyn Fn(&dyn Db) -> Result<T> + Send + Sync),
) -> Replayed<T> {
    let held = match pool.get().await {
        Ok(c) => Held { client: Some(c), open: Default::default() },
        Err(e) => return Replayed::Done(Err(super::pool_err(e)), false),
    };
    let Some(client) = held.client.as_ref() else { return Replayed::Diverged };
    let mut answers: Vec<(Asked, Got)> = Vec::new();
    // The writes sent so far, which every run must make again first.
    let mut sent: Vec<Put> = Vec::new();
    let mut begun = false;
    let rollback = |begun: bool| {
        let held = &held;
        async move {
            // Left open when the ROLLBACK failed: the connection is closed, not given back.
            if !begun || client.batch_execute("ROLLBACK").await.is_ok() {
                held.open.store(false, Relaxed);
            }
        }
    };
    loop {
        let rec = Rec::new(&answers, requests_last);
        let out = op(&rec);
        if rec.diverged.get() {
            rollback(begun).await;
            return Replayed::Diverged;
        }
        let puts = rec.puts.into_inner();
        if puts.len() < sent.len() || puts[..sent.len()] != sent[..] {
            rollback(begun).await;
            return Replayed::Diverged;
        }
        let sent_puts = sent.len();
        let asked = match (rec.next.into_inner(), out) {
            (Some(asked), _) => asked,
            (None, Ok(v)) => {
                if !begun && puts.is_empty() {
                    return Replayed::Done(Ok(v), false);
                }
                held.open.store(true, Relaxed);
                match send(client, if begun { "" } else { begin }, &puts[sent_puts..], None, true).await {
                    Ok(_) => {
                        held.open.store(false, Relaxed);
                        return Replayed::Done(Ok(v), false);
                    }
                    Err((e, conflict)) => {
                        rollback(true).await;
                        return Replayed::Done(Err(e), conflict);
                    }
                }
            }
            (None, Err(e)) => {
                rollback(begun).await;
                return Replayed::Done(Err(e), rec.lost_race.get());
            }
        };
        let upto = asked.puts_before;
        if upto < sent_puts || upto > puts.len() {
            rollback(begun).await;
            return Replayed::Diverged;
        }
        held.open.store(true, Relaxed);
        match send(client, if begun { "" } else { begin }, &puts[sent_puts..upto], Some(&asked), false).await {
            Ok(got) => {
                begun = true;
                sent.extend_from_slice(&puts[sent_puts..upto]);
                answers.push((asked, got.unwrap_or(Got::Count(0))));
            }
            Err((e, conflict)) => {
                rollback(true).await;
                return Replayed::Done(Err(e), conflict);
            }
        }
    }
}

/// Runs `op` without holding a connection of its own between its round trips (optimistic
/// concurrency): each statement it asks is read on the shared connections (`live`, with
/// whatever else waits for them) without locking anything; then its writes go out in one
/// transaction there, after a guard per read that runs the read again, locking what it locks
/// when the operation runs its usual way, and fails the transaction unless it gives the same
/// rows. So the operation's decisions hold at the commit as if it had read then, and its
/// answer is given after the commit. `None` when it cannot run so (a read after a write, a
/// write whose count it needs, a read that skips locked rows: which of them it takes is the
/// decision) or did not (a guard failed: another call changed what it read; the operation
/// failed; anything else failed): nothing of it was committed, and it runs its usual way.
pub(super) async fn optimistic<T>(
    live: &super::live::Live,
    op: &(dyn Fn(&dyn Db) -> Result<T> + Send + Sync),
) -> Option<T> {
    let mut answers: Vec<(Asked, Got)> = Vec::new();
    let mut guards: Vec<(String, Vec<Value>)> = Vec::new();
    loop {
        let (next, out, puts) = {
            let rec = Rec::new(&answers, true);
            let out = op(&rec);
            if rec.diverged.get() {
                return None;
            }
            (rec.next.into_inner(), out, rec.puts.into_inner())
        };
        match (next, out) {
            (Some(asked), _) => {
                if asked.puts_before > 0 || !asked.rows {
                    return None;
                }
                let (read, guard) = unlocked(&asked.sql, asked.params.len())?;
                let rows = live.run(&(read, asked.params.clone())).await.ok()?;
                // Each row with its text as the last column: what the guard compares.
                let mut texts = Vec::with_capacity(rows.len());
                let mut got = Vec::with_capacity(rows.len());
                for mut row in rows {
                    match row.0.pop() {
                        Some(Value::Text(t)) => texts.push(t),
                        _ => return None,
                    }
                    got.push(row);
                }
                let mut params = asked.params.clone();
                params.push(Value::Text(texts.join("\n")));
                guards.push((guard, params));
                answers.push((asked, Got::Rows(got)));
            }
            (None, Ok(v)) => {
                if puts.is_empty() {
                    return None;
                }
                let mut stmts = guards;
                stmts.extend(join(&puts));
                return live.run_all(stmts).await.ok().map(|_| v);
            }
            (None, Err(_)) => return None,
        }
    }
}

/// A read for [`optimistic`]: the statement without its locking clause, each row with its
/// text; and its guard, the statement as it is, whose rows' text must equal the last
/// parameter. `None` when its rows cannot be read so: it skips locked rows, or locks rows other
/// than with a clause at its end.
fn unlocked(sql: &str, params: usize) -> Option<(String, String)> {
    let upper = sql.to_ascii_uppercase();
    if upper.contains("SKIP LOCKED") {
        return None;
    }
    let bare = match upper.rfind(" FOR NO KEY UPDATE OF ") {
        // Only a list of the tables locked ends it.
        Some(i)
            if sql[i + 22..].split(',').all(|t| {
                let t = t.trim();
                !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }) =>
        {
            &sql[..i]
        }
        _ => sql,
    };
    let rest = bare.to_ascii_uppercase();
    if [" FOR UPDATE", " FOR NO KEY UPDATE", " FOR SHARE", " FOR KEY SHARE"].iter().any(|l| rest.contains(l)) {
        return None;
    }
    // `OFFSET 0` keeps the read a subquery of its own: pulled up into this one, each of its
    // subqueries would run twice, once for its column and once for the row's text.
    let fence = if rest.contains(" OFFSET ") { "" } else { " OFFSET 0" };
    Some((
        format!("SELECT q.*, CAST(q AS text) FROM ({bare}{fence}) q"),
        format!(
            "SELECT 1 / CAST(COALESCE((SELECT string_agg(CAST(q AS text), E'\\n') FROM ({sql}) q), '') = ?{} AS int)",
            params + 1
        ),
    ))
}

/// A write the operation made: its statement, parameters, and whether it may join the writes
/// before it ([`Db::put_joined`]).
type Put = (String, Vec<Value>, bool);

/// The writes as they are sent: each run of writes that join the one before it is one statement,
/// the first ones as data-modifying `WITH` clauses of the last (PostgreSQL runs every clause, in
/// one snapshot, whether or not anything reads it). Only INSERT, UPDATE and DELETE join: a
/// SELECT clause that nothing reads would not run, and a `WITH` cannot hold another.
fn join(puts: &[Put]) -> Vec<(String, Vec<Value>)> {
    let dml = |sql: &str| {
        let head = sql.trim_start().get(..7).unwrap_or("").to_ascii_uppercase();
        head.starts_with("INSERT ") || head.starts_with("UPDATE ") || head.starts_with("DELETE ")
    };
    let mut out: Vec<(Vec<&Put>, bool)> = Vec::new();
    for p in puts {
        match out.last_mut() {
            Some((run, true)) if p.2 && dml(&p.0) => run.push(p),
            _ => out.push((vec![p], dml(&p.0))),
        }
    }
    out.into_iter()
        .map(|(run, _)| {
            if let [one] = run[..] {
                return (one.0.clone(), one.1.clone());
            }
            let (mut sql, mut params) = (String::from("WITH "), Vec::new());
            let last = run.len() - 1;
            for (i, p) in run.iter().enumerate() {
                let text = renumber(&p.0, params.len());
                if i < last {
                    sql.push_str(&format!("{}j{i} AS ({text})", if i > 0 { ", " } else { "" }));
                } else {
                    sql.push_str(&format!(" {text}"));
                }
                params.extend(p.1.iter().cloned());
            }
            (sql, params)
        })
        .collect()
}

/// `sql` with each placeholder `?N` (outside quotes) as `?{N + by}`.
fn renumber(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(ch) = chars.next() {
        out.push(ch);
        match ch {
            '\'' => quoted = !quoted,
            '?' if !quoted => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                match n.parse::<usize>() {
                    Ok(n) => out.push_str(&(n + by).to_string()),
                    Err(_) => out.push_str(&n),
                }
            }
            _ => {}
        }
    }
    out
}

/// One round trip: `begin` (unless empty), `puts`, `last` and a `COMMIT` if `commit`, all sent
/// before any answer is read; `last`'s answer, or the first failure and whether it lost a race.
async fn send(
    client: &deadpool_postgres::Client,
    begin: &str,
    puts: &[Put],
    last: Option<&Asked>,
    commit: bool,
) -> std::result::Result<Option<Got>, (Error, bool)> {
    let puts = join(puts);
    let fail = |e: tokio_postgres::Error| {
        let conflict = is_conflict(&e);
        (pg_err(e), conflict)
    };
    let prepare = |sql: &str, params: &[Value]| {
        let args: Vec<&dyn ToValue> = params.iter().map(|v| v as &dyn ToValue).collect();
        let (types, params) = params_of(&args);
        (dollar_placeholders(sql), types, params)
    };
    // Prepared first (once per connection: deadpool's cache), then sent together.
    let mut calls: Vec<(Statement, Vec<super::conn::Param>)> = Vec::new();
    for (sql, params) in
        puts.iter().map(|(s, p)| (s.as_str(), p.as_slice())).chain(last.map(|a| (a.sql.as_str(), a.params.as_slice())))
    {
        let (sql, types, params) = prepare(sql, params);
        let st = client.prepare_typed_cached(&sql, &types).await.map_err(fail)?;
        calls.push((st, params));
    }
    type Fut<'f> = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<Option<Raw>, tokio_postgres::Error>> + Send + 'f>,
    >;
    let mut futs: Vec<Fut<'_>> = Vec::new();
    let c: &tokio_postgres::Client = client;
    if !begin.is_empty() {
        futs.push(Box::pin(async move { c.batch_execute(begin).await.map(|_| None) }));
    }
    let n_puts = puts.len();
    for (i, (st, params)) in calls.iter().enumerate() {
        let rows = i == n_puts && last.is_some_and(|a| a.rows);
        futs.push(Box::pin(async move {
            if rows {
                c.query(st, &refs(params)).await.map(|r| Some(Raw::Rows(r)))
            } else {
                c.execute(st, &refs(params)).await.map(|n| Some(Raw::Count(n)))
            }
        }));
    }
    if commit {
        futs.push(Box::pin(async move { c.batch_execute("COMMIT").await.map(|_| None) }));
    }
    let n = futs.len();
    let outs = in_order(futs).await;
    let mut answer = None;
    let wanted = last.is_some().then(|| n - 1 - usize::from(commit));
    for (i, out) in outs.into_iter().enumerate() {
        match out {
            Err(e) => return Err(fail(e)),
            Ok(got) if Some(i) == wanted => answer = got,
            Ok(_) => {}
        }
    }
    match answer {
        Some(Raw::Rows(r)) => {
            r.iter().map(row_of).collect::<Result<Vec<Row>>>().map(|r| Some(Got::Rows(r))).map_err(|e| (e, false))
        }
        Some(Raw::Count(n)) => Ok(Some(Got::Count(n))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args;

    /// Reads `a`, writes, reads `b` with what `a` gave: two round trips.
    fn op(c: &dyn Db, b_param: i64) -> Result<i64> {
        let a: i64 = c.query("SELECT a", args![1i64])?.first().map(|r| r.get(0)).transpose()?.unwrap_or(0);
        c.put("UPDATE x SET a = ?1", args![a])?;
        let b = c.exec("UPDATE y SET b = ?1", args![b_param + a])?;
        Ok(a + b as i64)
    }

    fn rec(answers: &[(Asked, Got)]) -> Rec<'_> {
        Rec::new(answers, true)
    }

    #[test]
    fn an_operation_stops_at_each_new_statement_and_ends_with_every_answer() {
        let r = rec(&[]);
        assert!(op(&r, 5).is_err());
        let first = r.next.take().expect("stopped at the first read");
        assert_eq!((first.sql.as_str(), first.rows, first.puts_before, r.diverged.get()), ("SELECT a", true, 0, false));

        let answers = vec![(first, Got::Rows(vec![Row(vec![Value::Int(7)])]))];
        let r = rec(&answers);
        assert!(op(&r, 5).is_err());
        let second = r.next.take().expect("stopped at the second statement");
        assert_eq!((second.params.clone(), second.rows, second.puts_before), (vec![Value::Int(12)], false, 1));
        assert_eq!(r.puts.borrow().len(), 1, "the write before it goes out with it");
        drop(r);

        let mut answers = answers;
        answers.push((second, Got::Count(1)));
        let r = rec(&answers);
        assert_eq!(op(&r, 5).unwrap(), 8, "the answer from the statements' results");
        assert!(r.next.borrow().is_none() && !r.diverged.get());
    }

    #[test]
    fn an_operation_asking_something_else_when_run_again_is_not_replayed() {
        let r = rec(&[]);
        let _ = op(&r, 5);
        let first = r.next.take().unwrap();
        let answers = vec![(first, Got::Rows(vec![Row(vec![Value::Int(7)])]))];
        let r = rec(&answers);
        let _ = op(&r, 5);
        let second = r.next.take().unwrap();
        drop(r);
        let mut answers = answers;
        answers.push((second, Got::Count(1)));
        // The same answers, another parameter: diverged.
        let r = rec(&answers);
        assert!(op(&r, 6).is_err());
        assert!(r.diverged.get());

        // One that goes on past the stop (swallowing the error) is not replayable either.
        let r = rec(&[]);
        let swallow = |c: &dyn Db| -> Result<()> {
            let _ = c.query("SELECT a", args![1i64]);
            c.put("UPDATE x SET a = 0", args![])
        };
        assert!(swallow(&r).is_err());
        assert!(r.diverged.get());
    }

    #[test]
    fn a_read_is_sent_without_its_locking_clause_and_guarded_with_it() {
        let sql = "SELECT w.a, s.b FROM w JOIN s ON s.k = w.k WHERE w.id = ?1 FOR NO KEY UPDATE OF w, s";
        let (read, guard) = unlocked(sql, 1).expect("a clause at the end");
        assert_eq!(
            read,
            "SELECT q.*, CAST(q AS text) FROM (SELECT w.a, s.b FROM w JOIN s ON s.k = w.k WHERE w.id = ?1 OFFSET 0) q"
        );
        assert_eq!(
            guard,
            format!(
                "SELECT 1 / CAST(COALESCE((SELECT string_agg(CAST(q AS text), E'\\n') FROM ({sql}) q), '') = ?2 AS int)"
            )
        );
        assert!(unlocked("SELECT a FROM w WHERE id = ?1", 1).is_some(), "a read that locks nothing");
        // Which row a claim takes is its decision: not made on an unlocked read.
        assert!(unlocked("SELECT a FROM w LIMIT 1 FOR NO KEY UPDATE OF w SKIP LOCKED", 0).is_none());
        // A lock inside, which the read cannot leave out.
        assert!(unlocked("SELECT a FROM (SELECT a FROM w FOR UPDATE) x WHERE a > 1", 0).is_none());
        assert!(unlocked("SELECT a FROM w FOR NO KEY UPDATE OF w LIMIT 1", 0).is_none());
    }

    #[test]
    fn writes_that_join_are_one_statement_with_their_placeholders_numbered_on() {
        let put = |sql: &str, params: Vec<Value>, joined: bool| (sql.to_string(), params, joined);
        let puts = vec![
            put("SELECT pg_advisory_xact_lock(?1)", vec![Value::Int(1)], false),
            // A SELECT is not joined: as a clause nothing reads, it would not run.
            put("UPDATE a SET x = ?1 WHERE k = ?2", vec![Value::Int(2), Value::Int(3)], true),
            put("INSERT INTO b (y, z) SELECT ?2, '?1' WHERE ?1 > 0", vec![Value::Int(4), Value::Int(5)], true),
            put("insert into c VALUES (?1)", vec![Value::Int(6)], true),
            put("UPDATE d SET w = ?1", vec![Value::Int(7)], false),
            put("WITH q AS (SELECT 1) INSERT INTO e SELECT * FROM q", vec![], true),
        ];
        let joined = join(&puts);
        let sqls: Vec<&str> = joined.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            sqls,
            [
                "SELECT pg_advisory_xact_lock(?1)",
                "WITH j0 AS (UPDATE a SET x = ?1 WHERE k = ?2), j1 AS (INSERT INTO b (y, z) SELECT ?4, '?1' WHERE ?3 > 0) \
                 insert into c VALUES (?5)",
                "UPDATE d SET w = ?1",
                "WITH q AS (SELECT 1) INSERT INTO e SELECT * FROM q",
            ]
        );
        let ints = |v: &[Value]| v.iter().map(|x| if let Value::Int(i) = x { *i } else { -1 }).collect::<Vec<_>>();
        assert_eq!(ints(&joined[1].1), [2, 3, 4, 5, 6]);
        assert_eq!(ints(&joined[2].1), [7]);
        assert_eq!(renumber("?10 = ?1 AND '?' = ?", 4), "?14 = ?5 AND '?' = ?");
    }
}

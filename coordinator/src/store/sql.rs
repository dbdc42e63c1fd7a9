//! One SQL interface for the operations of both backends (issue 19): an operation written
//! against [`Db`] runs on SQLite (a `rusqlite::Connection` inside the writer's transaction)
//! and on PostgreSQL (`pg::conn::PgTx`, inside a transaction that is run again whole when it
//! loses a race). Statements use SQLite's numbered placeholders (`?1`), which
//! PostgreSQL is given as `$1`; parameters and columns are the four kinds both databases
//! store the same way here ([`Value`]: 64-bit integers, text, bytes, NULL). Where the
//! dialects differ, an operation asks [`Db::dialect`].
//!
//! Every operation of the store (`store/ops/`) is written against [`Db`] once; a claim asks
//! [`Dialect::skip_locked`], and an operation that finds its work held by a concurrent claim
//! says so with [`Db::lost_race`].

use crate::error::{Error, Result};

/// A column's kind, kept with NULL so that PostgreSQL knows a parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Int,
    Text,
    Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null(Ty),
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    pub(crate) fn ty(&self) -> Ty {
        match self {
            Value::Null(t) => *t,
            Value::Int(_) => Ty::Int,
            Value::Text(_) => Ty::Text,
            Value::Bytes(_) => Ty::Bytes,
        }
    }
}

/// A Rust value as a statement's parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// The column kind of a Rust type, for its NULL.
pub trait Typed {
    const TY: Ty;
}

macro_rules! int_values {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
        impl Typed for $t {
            const TY: Ty = Ty::Int;
        }
    )*};
}
int_values!(i64, i32, u32, u64, usize);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Typed for bool {
    const TY: Ty = Ty::Int;
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl Typed for str {
    const TY: Ty = Ty::Text;
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl Typed for String {
    const TY: Ty = Ty::Text;
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}
impl Typed for [u8] {
    const TY: Ty = Ty::Bytes;
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}
impl Typed for Vec<u8> {
    const TY: Ty = Ty::Bytes;
}
impl<T: ToValue + Typed + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: Typed + ?Sized> Typed for &T {
    const TY: Ty = T::TY;
}
impl<T: Typed> Typed for Option<T> {
    const TY: Ty = T::TY;
}
impl<T: ToValue + Typed> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null(T::TY),
        }
    }
}

/// A column's value as a Rust type; `Err` says what was found instead.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> std::result::Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}
impl FromValue for u64 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        let i = i64::from_value(v)?;
        u64::try_from(i).map_err(|_| format!("expected a count, found {i}"))
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        let i = i64::from_value(v)?;
        u32::try_from(i).map_err(|_| format!("expected a small count, found {i}"))
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Bytes(b) => Ok(b.clone()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null(_) => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn get<T: FromValue>(&self, idx: usize) -> Result<T> {
        let v = self.0.get(idx).ok_or_else(|| Error::Internal(format!("no column {idx} in the row")))?;
        T::from_value(v).map_err(|e| Error::Internal(format!("column {idx}: {e}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// What a claim appends to its `SELECT` so that coordinators running at once take
    /// different rows of `table` (its name or alias in the query): nothing on SQLite (one
    /// writer), `FOR NO KEY UPDATE OF table SKIP LOCKED` on PostgreSQL.
    pub fn skip_locked(self, table: &str) -> String {
        match self {
            Dialect::Sqlite => String::new(),
            Dialect::Postgres => format!(" FOR NO KEY UPDATE OF {table} SKIP LOCKED"),
        }
    }
}

/// Where an operation's statements run: inside one transaction the backend opened.
pub trait Db {
    /// Runs a statement; how many rows it changed.
    fn exec(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64>;
    /// Runs a statement whose count the operation does not need. PostgreSQL sends it with the
    /// transaction's next statement, or with the commit (one round trip for both), so a failure
    /// of it is the failure of that later statement or of the commit: either way the operation
    /// fails and nothing of it is written.
    fn put(&self, sql: &str, params: &[&dyn ToValue]) -> Result<()> {
        self.exec(sql, params).map(|_| ())
    }
    /// [`Db::put`] of a write (an INSERT, UPDATE or DELETE) that reads nothing the writes put
    /// before it change, and changes no row they change, since the last statement run for its
    /// answer: so its outcome is the same whether it runs after them or with them in one
    /// snapshot, and PostgreSQL's lease calls send them as one statement (`pg/replay.rs`). A
    /// write that reads nothing at all (an INSERT of values) may always say so.
    fn put_joined(&self, sql: &str, params: &[&dyn ToValue]) -> Result<()> {
        self.put(sql, params)
    }
    /// Every row of a query.
    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>>;
    fn dialect(&self) -> Dialect;

    /// The operation lost a race with another coordinator's transaction and fails: the
    /// backend runs it again (PostgreSQL). Nothing to do on SQLite, where nothing races.
    fn lost_race(&self) {}

    /// Whether this transaction sees each statement's newest commits (PostgreSQL's READ
    /// COMMITTED, for the lease operations): then an operation locks the rows its decision
    /// rests on as it reads them ([`Db::for_update`]) and its request id ([`Db::lock_key`]).
    /// SQLite's one writer and a SERIALIZABLE transaction need neither.
    fn locks_rows(&self) -> bool {
        false
    }

    /// ` FOR NO KEY UPDATE OF {alias}` when [`Db::locks_rows`], else nothing: the read it ends locks
    /// the rows it returns until the commit, waits for a transaction holding them, and returns
    /// their newest committed version.
    /// (The lock an UPDATE takes: it does not wait for, nor hold up, the checks of foreign keys
    /// that name the row.)
    fn for_update(&self, alias: &str) -> String {
        if self.locks_rows() { format!(" FOR NO KEY UPDATE OF {alias}") } else { String::new() }
    }

    /// Whether an idempotent operation runs before its request id is looked up (PostgreSQL's
    /// lease calls, at the first try: one round trip fewer). A copy of a request already
    /// answered then fails, in the operation or at the insert of its record (the request id is
    /// unique), and a backend that says yes here runs an operation that failed again, looking
    /// up the request id first.
    fn requests_last(&self) -> bool {
        false
    }

    /// The rows of `sql` run as a transaction of its own, before anything else of the
    /// operation: an idempotent call whose whole work and answer fit one statement
    /// (`ops::rows::alone_recorded`). PostgreSQL's lease calls run the operation up to this
    /// statement, then the statement alone from the call's handler, one round trip
    /// (`pg/live.rs`). `None` where it is not run so (SQLite, whose statements cost no round
    /// trip, and inside a transaction): the operation goes on its usual way.
    fn alone(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Option<Vec<Row>>> {
        let _ = (sql, params);
        Ok(None)
    }

    /// Holds `key` (a request's caller and id) until the commit when [`Db::locks_rows`]: a
    /// second copy of the request waits for the first and then finds its answer.
    fn lock_key(&self, key: &str) -> Result<()> {
        if self.locks_rows() {
            self.put("SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))", crate::args![key.to_string()])?;
        }
        Ok(())
    }

    /// The first row, if there is one.
    fn query_opt(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The one row a query must give.
    fn query_one(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Row> {
        self.query_opt(sql, params)?.ok_or_else(|| Error::Internal(format!("no row from {sql}")))
    }
}

/// The shapes most operations want, over any [`Db`].
impl dyn Db + '_ {
    /// Every row, each made into a `T` by `f`.
    pub fn rows<T>(&self, sql: &str, params: &[&dyn ToValue], f: impl FnMut(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// The first row made into a `T`, if there is a row.
    pub fn row<T>(&self, sql: &str, params: &[&dyn ToValue], f: impl FnOnce(&Row) -> Result<T>) -> Result<Option<T>> {
        self.query_opt(sql, params)?.as_ref().map(f).transpose()
    }

    /// The one row a query must give, made into a `T`.
    pub fn one<T>(&self, sql: &str, params: &[&dyn ToValue], f: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        f(&self.query_one(sql, params)?)
    }

    /// The first column of the one row a query must give.
    pub fn value<T: FromValue>(&self, sql: &str, params: &[&dyn ToValue]) -> Result<T> {
        self.query_one(sql, params)?.get(0)
    }
}

/// Parameters as [`Db`] takes them: `args![a, b]`.
#[macro_export]
macro_rules! args {
    ($($e:expr),* $(,)?) => {
        &[$(&$e as &dyn $crate::store::sql::ToValue),*]
    };
}

impl Db for rusqlite::Connection {
    fn exec(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64> {
        let mut st = self.prepare_cached(sql).map_err(super::sqlite::db_err)?;
        let n = st.execute(rusqlite::params_from_iter(params.iter().map(|p| lite(p.to_value()))));
        n.map(|n| n as u64).map_err(super::sqlite::db_err)
    }

    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>> {
        let mut st = self.prepare_cached(sql).map_err(super::sqlite::db_err)?;
        let width = st.column_count();
        let mut rows = st
            .query(rusqlite::params_from_iter(params.iter().map(|p| lite(p.to_value()))))
            .map_err(super::sqlite::db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(super::sqlite::db_err)? {
            let mut cols = Vec::with_capacity(width);
            for i in 0..width {
                use rusqlite::types::ValueRef;
                cols.push(match r.get_ref(i).map_err(super::sqlite::db_err)? {
                    ValueRef::Null => Value::Null(Ty::Int),
                    ValueRef::Integer(i) => Value::Int(i),
                    ValueRef::Real(f) => Value::Int(f as i64),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                });
            }
            out.push(Row(cols));
        }
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

fn lite(v: Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as L;
    match v {
        Value::Null(_) => L::Null,
        Value::Int(i) => L::Integer(i),
        Value::Text(s) => L::Text(s),
        Value::Bytes(b) => L::Blob(b),
    }
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N`, outside quoted text.
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for ch in sql.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(ch),
        }
    }
    out
}

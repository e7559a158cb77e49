//! One connection to either backend, with the few calls the store's queries use, shaped like
//! rusqlite's (`execute`, `query_row`, `prepare` + `query_map`, `transaction`), so that one query
//! serves SQLite and PostgreSQL alike.
//!
//! - Parameters are given as rusqlite values (`params![...]`, or an array of one type) and
//!   numbered `?1`, `?2`...; for PostgreSQL the text becomes `$1`, `$2`... and each value is
//!   written as the type the server inferred for its place (an integer into BIGINT, a 0/1 into
//!   BOOLEAN...).
//! - Rows come back as rusqlite values ([`Row`]), read with rusqlite's `FromSql`, so the code
//!   that builds records from rows (and the status enums' `FromSql`) is the same for both.
//! - A transaction is `BEGIN` ... `COMMIT` on the connection; dropped uncommitted, it rolls back.
//! - The dialects differ in a few places only, chosen by [`Conn::is_postgres`] at the query:
//!   `json_each` (SQLite) against `json_array_elements_text` (PostgreSQL), and SQLite's pragmas.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};
use rusqlite::types::{FromSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql};

use super::{Result, StoreError};

/// A connection to the store's database.
pub enum Conn {
    Sqlite(Connection),
    // Boxed: a PostgreSQL client with its runtime is three times an SQLite connection.
    Postgres(Box<RefCell<Pg>>),
}

/// A PostgreSQL client with its prepared statements, by SQL text (already in `$n` form).
pub struct Pg {
    pub(super) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
    /// A call failed in a way that says the connection is gone: the next call opens a new
    /// one. The client does not always know yet (`is_closed` turns true only once it has
    /// read the end of the socket, which a terminated backend's FATAL message precedes).
    pub(super) broken: bool,
}

impl Pg {
    pub(super) fn new(client: postgres::Client) -> Self {
        Pg {
            client,
            statements: HashMap::new(),
            broken: false,
        }
    }

    /// Whether the next call must open a new connection first.
    pub(super) fn needs_reconnect(&mut self) -> bool {
        self.broken || self.client.is_closed()
    }
}

/// Whether `e` says the connection itself is lost (the socket failed, or the server ended
/// the session: SQLSTATE class 08 "connection exception" or 57P01–57P03 "operator
/// intervention", sent by `pg_terminate_backend` and by a shutdown), rather than that one
/// statement failed on a live connection.
pub(super) fn loses_connection(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The parameters of one statement: `params![...]` or an array of values of one type.
pub trait Params {
    fn values(&self) -> rusqlite::Result<Vec<Value>>;
}

fn value(p: &dyn ToSql) -> rusqlite::Result<Value> {
    Ok(match p.to_sql()? {
        ToSqlOutput::Borrowed(v) => match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        },
        ToSqlOutput::Owned(v) => v,
        other => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("unsupported parameter {other:?}").into(),
            ));
        }
    })
}

impl<T: ToSql> Params for &[T] {
    fn values(&self) -> rusqlite::Result<Vec<Value>> {
        self.iter().map(|p| value(p)).collect()
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn values(&self) -> rusqlite::Result<Vec<Value>> {
        self.iter().map(|p| value(p)).collect()
    }
}

/// A column index (only numbers: the store reads columns by position).
pub trait ColumnIndex {
    fn index(self) -> usize;
}

impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row, as rusqlite values.
pub struct Row(Vec<Value>);

impl Row {
    /// Column `i` as `T`, with rusqlite's conversions (an integer as bool, text as a status...).
    pub fn get<I: ColumnIndex, T: FromSql>(&self, i: I) -> rusqlite::Result<T> {
        let i = i.index();
        let v = self
            .0
            .get(i)
            .ok_or(rusqlite::Error::InvalidColumnIndex(i))?;
        let r: ValueRef<'_> = v.into();
        T::column_result(r)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, r.data_type(), Box::new(e)))
    }
}

/// A statement to run once or many times (prepared and cached by the connection).
pub struct Statement<'c> {
    conn: &'c Conn,
    sql: String,
}

impl Statement<'_> {
    pub fn query_map<P: Params, T>(
        &mut self,
        p: P,
        f: impl FnMut(&Row) -> rusqlite::Result<T>,
    ) -> Result<std::vec::IntoIter<rusqlite::Result<T>>> {
        let rows = self.conn.rows(&self.sql, &p.values()?)?;
        Ok(rows.iter().map(f).collect::<Vec<_>>().into_iter())
    }

    pub fn execute<P: Params>(&mut self, p: P) -> Result<usize> {
        self.conn.execute(&self.sql, p)
    }
}

/// A transaction: committed by [`Tx::commit`], rolled back when dropped otherwise.
pub struct Tx<'c> {
    conn: &'c Conn,
    done: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.batch("COMMIT")
    }
}

impl Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.batch("ROLLBACK");
        }
    }
}

impl Conn {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Postgres(_))
    }

    /// Statements without parameters, separated by `;` (DDL, BEGIN/COMMIT).
    pub fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(pg) => Ok(pg.borrow_mut().client.batch_execute(sql)?),
        }
    }

    pub fn transaction(&self) -> Result<Tx<'_>> {
        self.batch("BEGIN")?;
        Ok(Tx {
            conn: self,
            done: false,
        })
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            conn: self,
            sql: sql.to_string(),
        })
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, p: P) -> Result<usize> {
        let values = p.values()?;
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                Ok(st.execute(rusqlite::params_from_iter(values.iter()))?)
            }
            Conn::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let st = pg.statement(sql)?;
                let params = pg_params(&values);
                Ok(pg.client.execute(&st, &pg_refs(&params))? as usize)
            }
        }
    }

    /// The first row of a query, or `QueryReturnedNoRows` (see [`Optional`]).
    pub fn query_row<P: Params, T>(
        &self,
        sql: &str,
        p: P,
        f: impl FnOnce(&Row) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let rows = self.rows(sql, &p.values()?)?;
        let first = rows.first().ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        Ok(f(first)?)
    }

    fn rows(&self, sql: &str, values: &[Value]) -> Result<Vec<Row>> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let rows = st.query_map(rusqlite::params_from_iter(values.iter()), |r| {
                    (0..n)
                        .map(|i| r.get::<_, Value>(i))
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map(Row)
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            }
            Conn::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let st = pg.statement(sql)?;
                let params = pg_params(values);
                let rows = pg.client.query(&st, &pg_refs(&params))?;
                rows.iter().map(pg_row).collect()
            }
        }
    }
}

impl Pg {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        let sql = dollar_params(sql);
        if let Some(st) = self.statements.get(&sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(&sql)?;
        self.statements.insert(sql, st.clone());
        Ok(st)
    }
}

/// `?1` → `$1` (and a bare `?` → the next number), outside quoted strings.
pub(super) fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quoted = false;
    let mut next = 1;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    digits = next.to_string();
                }
                next = digits.parse::<usize>().unwrap_or(next) + 1;
                out.push('$');
                out.push_str(&digits);
            }
            _ => out.push(ch),
        }
    }
    out
}

/// A rusqlite value written as whatever type PostgreSQL inferred for its place.
#[derive(Debug)]
struct PgValue<'a>(&'a Value);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl PgToSql for PgValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => PgToSql::to_sql(&i, ty, out),
                Type::INT4 => PgToSql::to_sql(&i32::try_from(*i)?, ty, out),
                Type::INT2 => PgToSql::to_sql(&i16::try_from(*i)?, ty, out),
                Type::BOOL => PgToSql::to_sql(&(*i != 0), ty, out),
                Type::FLOAT8 => PgToSql::to_sql(&(*i as f64), ty, out),
                Type::TEXT | Type::VARCHAR => PgToSql::to_sql(&i.to_string(), ty, out),
                _ => Err(format!("an integer where PostgreSQL wants {ty}").into()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => PgToSql::to_sql(&f, ty, out),
                Type::FLOAT4 => PgToSql::to_sql(&(*f as f32), ty, out),
                _ => Err(format!("a float where PostgreSQL wants {ty}").into()),
            },
            Value::Text(s) => match *ty {
                // Text and JSON are the UTF-8 bytes in the binary format too; JSONB has a version.
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                Type::JSON
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(format!("text where PostgreSQL wants {ty}").into()),
            },
            Value::Blob(b) => PgToSql::to_sql(&b.as_slice(), ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn pg_params(values: &[Value]) -> Vec<PgValue<'_>> {
    values.iter().map(PgValue).collect()
}

fn pg_refs<'a>(params: &'a [PgValue<'a>]) -> Vec<&'a (dyn PgToSql + Sync)> {
    params.iter().map(|p| p as &(dyn PgToSql + Sync)).collect()
}

/// A PostgreSQL row as rusqlite values (BIGINT and BOOLEAN as integers, like SQLite's).
fn pg_row(r: &postgres::Row) -> Result<Row> {
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = match *ty {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Integer),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Integer(v.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Integer(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Integer(v.into())),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Value::Real(v.into())),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                r.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            _ => {
                return Err(StoreError::Sql(rusqlite::Error::InvalidColumnType(
                    i,
                    format!("{} (PostgreSQL type {ty})", col.name()),
                    rusqlite::types::Type::Null,
                )));
            }
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

/// `query_row(...).optional()`: no row is `None`, like rusqlite's `OptionalExtension`.
pub trait Optional<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> Optional<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::Sql(rusqlite::Error::QueryReturnedNoRows)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dollar_params;

    #[test]
    fn question_marks_become_dollars_outside_strings() {
        assert_eq!(
            dollar_params("SELECT a FROM t WHERE b = ?2 AND c = '?' AND d = ?1"),
            "SELECT a FROM t WHERE b = $2 AND c = '?' AND d = $1"
        );
        assert_eq!(dollar_params("VALUES (?, ?)"), "VALUES ($1, $2)");
    }
}

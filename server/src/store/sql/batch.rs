//! A batch: the write statements of one step of a writer cycle, sent to the database together.
//!
//! On SQLite a batch travels as one multi-statement query (sqlx binds each statement's `?` placeholders in
//! turn): one hand-off to the driver's worker thread and back instead of one per statement, which at low load
//! is most of what a statement costs. PostgreSQL's extended protocol takes one statement per query, so there
//! the statements become one statement with the others as data-modifying CTEs (`WITH b0 AS (INSERT …)
//! UPDATE …`): one round trip, one parse. PostgreSQL runs those on one snapshot in no set order, so the
//! statements of a batch must not touch the same rows, nor depend on one another's effects. There, too,
//! inserts take their rows as one JSON value ([`json_insert`]) and key lists are one array value
//! (`super::id_list`), so a cycle's statements have the same text whatever their row counts and the driver's
//! prepared statements are reused.

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IdenStatic, QueryTrait,
    Statement, Value, Values,
};

use super::{
    json_rows::{placeholders, statement},
    ROWS_PER_STATEMENT,
};

pub struct Batch {
    backend: DbBackend,
    statements: Vec<Statement>,
}

impl Batch {
    pub fn new(backend: DbBackend) -> Self {
        Batch {
            backend,
            statements: Vec::new(),
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// Adds `query`.
    pub fn push(&mut self, query: &impl QueryTrait) {
        self.statements.push(query.build(self.backend));
    }

    /// Adds `statement`, written for this batch's backend.
    pub fn push_statement(&mut self, statement: Statement) {
        self.statements.push(statement);
    }

    /// Adds the INSERTs of `rows`: on PostgreSQL one statement taking the rows as one JSON value (see
    /// [`json_insert`]), elsewhere multi-row INSERTs of at most [`ROWS_PER_STATEMENT`] rows each.
    pub fn insert_rows<A>(&mut self, rows: impl IntoIterator<Item = A>)
    where
        A: ActiveModelTrait,
    {
        if self.backend != DbBackend::Postgres {
            return self.insert_values(rows);
        }
        let rows: Vec<A> = rows.into_iter().collect();
        match json_insert(&rows) {
            Some(statement) => self.statements.push(statement),
            None => self.insert_values(rows),
        }
    }

    /// Multi-row `INSERT … VALUES (?, …), …` statements of at most [`ROWS_PER_STATEMENT`] rows each, written
    /// out here: each value moves from its row into the statement, where sea-orm's `insert_many` cloned every
    /// value twice and built the statement's text value by value.
    fn insert_values<A>(&mut self, rows: impl IntoIterator<Item = A>)
    where
        A: ActiveModelTrait,
    {
        let mut rows = rows.into_iter().peekable();
        let Some(first) = rows.peek() else {
            return;
        };
        let (table, columns, names) = insert_columns(first);
        let row_sql = format!("({})", placeholders(columns.len()));
        while rows.peek().is_some() {
            let mut values = Vec::with_capacity(ROWS_PER_STATEMENT * columns.len());
            let mut count = 0;
            for mut row in rows.by_ref().take(ROWS_PER_STATEMENT) {
                for column in &columns {
                    // Every row has values for the first row's columns (as with `insert_many`); a row
                    // without one would insert NULL there, which the schema's NOT NULL refuses.
                    values.push(
                        row.take(*column)
                            .into_value()
                            .unwrap_or(Value::String(None)),
                    );
                }
                count += 1;
            }
            let sql = format!(
                r#"INSERT INTO "{table}" ({names}) VALUES {}"#,
                vec![row_sql.as_str(); count].join(", ")
            );
            self.statements.push(statement(self.backend, &sql, values));
        }
    }

    /// The batch's statements, for a SQLite write transaction to send later (`super::write_txn`), each
    /// written `OR FAIL` ([`or_fail`]).
    pub(super) fn into_statements(self) -> Vec<Statement> {
        self.statements
            .into_iter()
            .map(|statement| Statement {
                sql: or_fail(statement.sql),
                ..statement
            })
            .collect()
    }

    /// Runs the batch's statements.
    pub async fn run(self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        match self.backend {
            DbBackend::Sqlite => {
                // SQLite prepares each statement of the text on its own, so its parameter limit applies to
                // each statement, not to the batch.
                if let Some(statement) = joined(self.statements) {
                    db.execute_raw(statement).await?;
                }
            }
            DbBackend::Postgres => {
                for group in postgres_groups(self.statements) {
                    if let Some(statement) = as_ctes(group) {
                        db.execute_raw(statement).await?;
                    }
                }
            }
            _ => {
                for statement in self.statements {
                    db.execute_raw(statement).await?;
                }
            }
        }
        Ok(())
    }
}

/// PostgreSQL: `INSERT … SELECT … FROM json_populate_recordset(NULL::table, $1)`, the rows bound as one JSON
/// array of objects. The statement's text depends only on the table and its columns, so the driver prepares it
/// once per connection; a multi-row `VALUES` list had a text (and a parse, a plan and a prepare round trip) per
/// row count, which was most of PostgreSQL's planning time under load. `None` when a value has no JSON form
/// here (the caller falls back to `VALUES`).
fn json_insert<A: ActiveModelTrait>(rows: &[A]) -> Option<Statement> {
    let (table, columns, names) = insert_columns(rows.first()?);
    let mut json = Vec::with_capacity(rows.len() * 256);
    json.push(b'[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.push(b'{');
        for (j, column) in columns.iter().enumerate() {
            if j > 0 {
                json.push(b',');
            }
            serde_json::to_writer(&mut json, column.as_str()).ok()?;
            json.push(b':');
            write_json(&mut json, &row.get(*column).into_value()?)?;
        }
        json.push(b'}');
    }
    json.push(b']');
    let sql = format!(
        r#"INSERT INTO "{table}" ({names}) SELECT {names} FROM json_populate_recordset(NULL::"{table}", CAST($1 AS json))"#
    );
    let json = String::from_utf8(json).ok()?;
    Some(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [json.into()],
    ))
}

/// The table of `row`, the columns `row` has values for, and those columns' quoted names joined for SQL.
fn insert_columns<A: ActiveModelTrait>(
    row: &A,
) -> (
    &'static str,
    Vec<<A::Entity as EntityTrait>::Column>,
    String,
) {
    use sea_orm::{EntityName, Iterable};

    let columns: Vec<_> = <A::Entity as EntityTrait>::Column::iter()
        .filter(|column| row.get(*column).into_value().is_some())
        .collect();
    let names = columns
        .iter()
        .map(|column| format!(r#""{}""#, column.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    (A::Entity::default().table_name(), columns, names)
}

/// `value` as JSON, for the column types the tables use (text, integers, booleans, NULL).
fn write_json(out: &mut Vec<u8>, value: &Value) -> Option<()> {
    use std::io::Write;
    match value {
        Value::String(Some(text)) => serde_json::to_writer(&mut *out, text).ok()?,
        Value::BigInt(Some(n)) => write!(out, "{n}").ok()?,
        Value::Int(Some(n)) => write!(out, "{n}").ok()?,
        Value::SmallInt(Some(n)) => write!(out, "{n}").ok()?,
        Value::Bool(Some(b)) => write!(out, "{b}").ok()?,
        Value::String(None)
        | Value::BigInt(None)
        | Value::Int(None)
        | Value::SmallInt(None)
        | Value::Bool(None) => out.extend_from_slice(b"null"),
        _ => return None,
    }
    Some(())
}

/// SQLite: `INSERT` and `UPDATE` as `INSERT OR FAIL` and `UPDATE OR FAIL`, for a write transaction that is
/// rolled back whole when one of its statements fails (`super::write_txn`).
///
/// A statement that may change many rows and may fail part way (a multi-row `INSERT` into a table with a
/// unique key, an `UPDATE` of many rows under `NOT NULL` columns) is, by default, undone alone when it fails
/// while the transaction goes on. For that SQLite first copies each page the statement changes into a
/// statement journal: a page's worth of copying for nearly every row a writer cycle inserts or updates (its
/// index entries land on pages of their own), for an undo the writer never uses. `OR FAIL` keeps a failed
/// statement's earlier rows instead, so SQLite keeps no journal; the transaction they are in is then rolled
/// back, which undoes them (docs/PERFORMANCE.md, step 68).
fn or_fail(sql: String) -> String {
    for (verb, with_fail) in [
        ("INSERT ", "INSERT OR FAIL "),
        ("UPDATE ", "UPDATE OR FAIL "),
    ] {
        if let Some(rest) = sql.strip_prefix(verb) {
            return format!("{with_fail}{rest}");
        }
    }
    sql
}

/// PostgreSQL takes at most 65,535 parameters in one statement: statements are grouped well under that.
const POSTGRES_PARAMETERS: usize = 30_000;

fn parameters(statement: &Statement) -> usize {
    statement.values.as_ref().map_or(0, |v| v.0.len())
}

/// SQLite: the statements as one multi-statement text (also how a SQLite write transaction sends its queued
/// writes with the statement after them, `super::write_txn`).
pub(super) fn joined(statements: Vec<Statement>) -> Option<Statement> {
    if statements.len() < 2 {
        return statements.into_iter().next();
    }
    let mut sql = String::new();
    let mut values = Vec::new();
    for statement in statements {
        sql.push_str(&statement.sql);
        sql.push_str(";\n");
        values.extend(statement.values.map(|v| v.0).unwrap_or_default());
    }
    Some(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql,
        Values(values),
    ))
}

/// PostgreSQL: consecutive statements grouped under [`POSTGRES_PARAMETERS`].
fn postgres_groups(statements: Vec<Statement>) -> Vec<Vec<Statement>> {
    let mut groups: Vec<Vec<Statement>> = Vec::new();
    let mut in_group = 0;
    for statement in statements {
        let n = parameters(&statement);
        match groups.last_mut() {
            Some(group) if in_group + n <= POSTGRES_PARAMETERS => group.push(statement),
            _ => {
                in_group = 0;
                groups.push(vec![statement]);
            }
        }
        in_group += n;
    }
    groups
}

/// PostgreSQL: the last statement, with the others before it as data-modifying CTEs, their `$n`
/// placeholders renumbered to follow one another.
fn as_ctes(statements: Vec<Statement>) -> Option<Statement> {
    if statements.len() < 2 {
        return statements.into_iter().next();
    }
    let last = statements.len() - 1;
    let mut sql = String::new();
    let mut values = Vec::new();
    for (i, statement) in statements.into_iter().enumerate() {
        let renumbered = renumber(&statement.sql, values.len());
        match i {
            0 => sql.push_str(&format!("WITH b0 AS ({renumbered})")),
            i if i < last => sql.push_str(&format!(", b{i} AS ({renumbered})")),
            _ => sql.push_str(&format!(" {renumbered}")),
        }
        values.extend(statement.values.map(|v| v.0).unwrap_or_default());
    }
    Some(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        Values(values),
    ))
}

/// `sql` with every `$n` placeholder outside quotes shifted by `offset`.
fn renumber(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n * 10 + d as usize;
                    chars.next();
                }
                out.push('$');
                out.push_str(&(n + offset).to_string());
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{or_fail, renumber};

    #[test]
    fn writes_in_a_transaction_fail_without_a_statement_journal() {
        assert_eq!(
            or_fail(r#"INSERT INTO "events" ("id") VALUES (?)"#.into()),
            r#"INSERT OR FAIL INTO "events" ("id") VALUES (?)"#
        );
        assert_eq!(
            or_fail(r#"UPDATE "deliveries" SET "status" = ? WHERE "id" IN (?, ?)"#.into()),
            r#"UPDATE OR FAIL "deliveries" SET "status" = ? WHERE "id" IN (?, ?)"#
        );
        assert_eq!(or_fail("DELETE FROM t".into()), "DELETE FROM t");
    }

    #[test]
    fn placeholders_are_shifted_outside_quotes_only() {
        assert_eq!(
            renumber(
                r#"UPDATE "t" SET "a" = $1, "b$2" = '$3' WHERE "id" IN ($2, $10)"#,
                5
            ),
            r#"UPDATE "t" SET "a" = $6, "b$2" = '$3' WHERE "id" IN ($7, $15)"#
        );
        assert_eq!(renumber("SELECT $1", 0), "SELECT $1");
    }
}

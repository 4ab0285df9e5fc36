//! `column IN (…)` over a list of ids, the way the writer's statements look rows up by key.
//!
//! The whole list is bound as one value, so that a statement's text is the same whatever the list's length
//! and the driver prepares it once per connection: PostgreSQL gets a `text[]` (`column = ANY(CAST($1 AS
//! text[]))`), where a text per length meant a new prepare (an extra round trip), parse and plan almost every
//! writer cycle (docs/PERFORMANCE.md, step 25); [`sql`] gives SQLite a JSON array (`column IN (SELECT value
//! FROM json_each(?))`), where preparing a report group's read again for each length cost about a fifth of
//! running it (step 70). A query builder's [`filter`] keeps one placeholder per id on SQLite: its statements
//! are writes, sent joined with others in texts that differ anyway.

use sea_orm::{
    sea_query::{Expr, SimpleExpr},
    ColumnTrait, DbBackend, Value,
};

/// `column IN (ids)` as a condition for a query builder's `filter` (the column unqualified: for statements on
/// one table).
pub(in crate::store) fn filter<'a>(
    backend: DbBackend,
    column: impl ColumnTrait,
    ids: impl IntoIterator<Item = &'a str>,
) -> SimpleExpr {
    match backend {
        // Written out whole: sea-query would parenthesise a custom right-hand side, and `= (ANY(…))` is not
        // SQL.
        DbBackend::Postgres => Expr::cust_with_values(
            format!(r#""{}" = ANY(CAST($1 AS text[]))"#, column.as_str()),
            [text_array(ids)],
        ),
        _ => column.is_in(ids),
    }
}

/// `column IN (ids)` as SQL with one `?` placeholder, and the value it binds.
pub(in crate::store) fn sql<'a>(
    backend: DbBackend,
    column: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> (String, Vec<Value>) {
    match backend {
        DbBackend::Postgres => (
            format!("{column} = ANY(CAST(? AS text[]))"),
            vec![text_array(ids).into()],
        ),
        _ => (
            format!("{column} IN (SELECT value FROM json_each(?))"),
            vec![json_array(ids)],
        ),
    }
}

/// `SELECT` of `ids` as rows of one column named `column`, with the one value it binds: a list to test
/// `IN` against or to join, bound whole as [`sql`] binds it.
pub(in crate::store) fn select<'a>(
    backend: DbBackend,
    column: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> (String, Value) {
    match backend {
        DbBackend::Postgres => (
            format!("SELECT unnest(CAST(? AS text[])) AS {column}"),
            text_array(ids).into(),
        ),
        _ => (
            format!("SELECT value AS {column} FROM json_each(?)"),
            json_array(ids),
        ),
    }
}

/// `ids` as the one value SQLite's `json_each(?)` reads them from: a JSON array.
fn json_array<'a>(ids: impl IntoIterator<Item = &'a str>) -> Value {
    let ids: Vec<&str> = ids.into_iter().collect();
    serde_json::Value::from(ids).to_string().into()
}

/// A PostgreSQL array literal of `items`, each quoted: ids reported by a daemon are outside input.
fn text_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("{");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::text_array;

    #[test]
    fn every_element_is_quoted_and_escaped() {
        assert_eq!(text_array([]), "{}");
        assert_eq!(text_array(["dlv_1", "dlv_2"]), r#"{"dlv_1","dlv_2"}"#);
        assert_eq!(
            text_array([r#"a"b\c,{d}"#, "NULL"]),
            r#"{"a\"b\\c,{d}","NULL"}"#
        );
    }
}

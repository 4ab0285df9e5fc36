//! Reads that come back as one row of JSON: the writer's way of reading many rows, and several sets of rows,
//! in one statement (see [`select_json`] for why).

use serde::{de::DeserializeOwned, Deserialize};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

/// `?` placeholders in `sql` renumbered as `$1, $2, …` for PostgreSQL.
pub(in crate::store) fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    if backend != DbBackend::Postgres {
        return Statement::from_sql_and_values(backend, sql, values);
    }
    let mut numbered = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            numbered.push('$');
            numbered.push_str(&n.to_string());
        } else {
            numbered.push(c);
        }
    }
    Statement::from_sql_and_values(backend, numbered, values)
}

/// One statement returning, for each `(columns, from)` of `sets`, the rows of `SELECT {columns} {from}` as
/// one JSON array of arrays, after the common table expressions in `with` (empty, or `WITH … ` that the sets
/// may read); `values` bind the placeholders in the order they appear. SQLite's driver hands every result row
/// from its worker thread to the async side on its own, each hand-off costing about as much as reading the
/// row; one aggregated row costs one (docs/PERFORMANCE.md, step 20). The writer reads a row per report and
/// per lease this way, a claim reads everything it needs in one statement, and so does a report group and a
/// publish's fan-out.
pub(in crate::store) async fn select_json<const N: usize>(
    db: &impl ConnectionTrait,
    with: &str,
    sets: [(&[&str], &str); N],
    values: Vec<Value>,
) -> Result<[String; N], DbErr> {
    let backend = db.get_database_backend();
    let aggregates: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, (columns, from))| {
            let columns = columns.join(", ");
            if backend == DbBackend::Postgres {
                // An aggregate takes its input in the subquery's order; `FOR UPDATE` may sit in the subquery.
                format!(
                    "(SELECT CAST(json_agg(json_build_array({columns})) AS TEXT) \
                     FROM (SELECT {columns} {from}) AS t) AS rows{i}"
                )
            } else {
                format!(
                    "(SELECT json_group_array(json_array({columns})) \
                     FROM (SELECT {columns} {from})) AS rows{i}"
                )
            }
        })
        .collect();
    let sql = format!("{with}SELECT {}", aggregates.join(", "));
    let row = db.query_one_raw(statement(backend, &sql, values)).await?;
    let mut sets = [(); N].map(|_| String::from("[]"));
    if let Some(row) = row {
        for (i, json) in sets.iter_mut().enumerate() {
            // PostgreSQL aggregates no rows to NULL.
            if let Some(found) = row.try_get::<Option<String>>("", &format!("rows{i}"))? {
                *json = found;
            }
        }
    }
    Ok(sets)
}

pub(in crate::store) fn decode_rows<T: DeserializeOwned>(
    json: &str,
    from: &str,
) -> Result<Vec<T>, DbErr> {
    serde_json::from_str(json)
        .map_err(|err| DbErr::Custom(format!("decoding the rows `{from}`: {err}")))
}

/// A boolean column in a row read as JSON: `true`/`false` from PostgreSQL, `1`/`0` from SQLite (which keeps
/// booleans as integers). For `#[serde(deserialize_with = "flag")]`.
pub(in crate::store) fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b),
        serde_json::Value::Number(n) => Ok(n.as_i64() != Some(0)),
        other => Err(serde::de::Error::custom(format!(
            "{other} is not a boolean"
        ))),
    }
}

/// `n` comma-separated placeholders.
pub(super) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

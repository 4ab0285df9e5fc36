//! The SQL transport: how the store's statements travel to the database, apart from what they say about
//! each table. A [`batch::Batch`] sends a step's writes together, a [`write_txn::WriteTxn`] is the
//! transaction of a writer cycle, [`id_list`] and [`json_rows`] pass many keys or rows as one value, and
//! [`in_progress`] names the deliveries in progress so that the partial index serves the query.

pub mod batch;
pub mod id_list;
pub mod in_progress;
pub mod json_rows;
pub mod write_txn;

use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr};

use batch::Batch;

/// Rows per multi-row statement (the rows of an INSERT, the ids of an `IN` list): well under SQLite's
/// bound-parameter limit, large enough to amortise round trips.
pub const ROWS_PER_STATEMENT: usize = 500;

/// Inserts `rows` in multi-row INSERTs of at most [`ROWS_PER_STATEMENT`] rows each.
pub async fn insert_rows<A>(
    db: &impl ConnectionTrait,
    rows: impl IntoIterator<Item = A>,
) -> Result<(), DbErr>
where
    A: ActiveModelTrait,
{
    let mut batch = Batch::new(db.get_database_backend());
    batch.insert_rows(rows);
    batch.run(db).await
}

/// Whether `err` is a unique-constraint violation (a lost race on an idempotency key, say).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

//! A write transaction: the one a writer cycle (and each `_in` operation run on its own) works in.
//!
//! On SQLite every statement crosses to the connection's worker thread and back, and sqlx's `BEGIN` and
//! `COMMIT` cross through a rendezvous on top, each crossing waking a sleeping thread on either side: under a
//! steady load that switching was most of the server's CPU (docs/PERFORMANCE.md, step 44). So a SQLite
//! transaction holds its connection itself and sends its statements late: `BEGIN` goes with the first
//! statement, a batch of writes ([`WriteTxn::write`]) with the statement after it or with the `COMMIT`, all in
//! one multi-statement text each time. Nothing changes in what runs or in what order, only in when it is
//! sent: a read still sees every write queued before it, and a write that fails fails the statement it was
//! sent with, and with it the transaction, which is rolled back whole: so its writes go `OR FAIL`, with no
//! statement journal (`super::batch::or_fail`).
//!
//! PostgreSQL runs a plain SeaORM transaction: its statements are network round trips, which a batch
//! already shares ([`Batch`]).

use futures::StreamExt;
use sea_orm::{
    sqlx::{self, pool::PoolConnection, sqlite::SqliteRow, Either, Sqlite},
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, RuntimeErr, Statement, TransactionTrait, Values,
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

use super::batch::{self, Batch};

/// A write transaction (see the module's doc).
pub enum WriteTxn {
    Sqlite(SqliteTxn),
    Other(DatabaseTransaction),
}

impl WriteTxn {
    /// Begins a transaction on `db` (SQLite: takes the connection; `BEGIN` goes with the first statement).
    pub async fn begin(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
        if db.get_database_backend() != DbBackend::Sqlite {
            return Ok(WriteTxn::Other(db.begin().await?));
        }
        let connection = db
            .get_sqlite_connection_pool()
            .acquire()
            .await
            .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(err.into())))?;
        Ok(WriteTxn::Sqlite(SqliteTxn {
            state: Mutex::new(State {
                connection: Some(connection),
                queued: vec![plain("BEGIN IMMEDIATE")],
            }),
        }))
    }

    /// Runs `batch`'s writes: on SQLite with the transaction's next statement (or its commit), elsewhere now.
    pub async fn write(&self, batch: Batch) -> Result<(), DbErr> {
        match self {
            WriteTxn::Sqlite(txn) => {
                txn.state
                    .lock()
                    .await
                    .queued
                    .extend(batch.into_statements());
                Ok(())
            }
            WriteTxn::Other(txn) => batch.run(txn).await,
        }
    }

    /// Commits the transaction (on SQLite with the writes still queued).
    pub async fn commit(self) -> Result<(), DbErr> {
        match self {
            WriteTxn::Sqlite(txn) => txn.commit().await,
            WriteTxn::Other(txn) => txn.commit().await,
        }
    }
}

/// A SQLite write transaction: its connection, held from begin to commit, and the statements not sent yet.
pub struct SqliteTxn {
    // `ConnectionTrait` takes `&self`; the lock is never contended (one transaction, one task).
    state: Mutex<State>,
}

struct State {
    /// `None` once committed, or once a failed transaction has handed it to its rollback.
    connection: Option<PoolConnection<Sqlite>>,
    /// Sent with the next statement, in order: `BEGIN` until the first statement goes, then queued writes.
    queued: Vec<Statement>,
}

impl SqliteTxn {
    /// Sends the queued statements and then `last` as one text; returns the rows (every row comes from
    /// `last`: queued writes return none) and `last`'s own result.
    async fn send(&self, last: Statement) -> Result<(Vec<SqliteRow>, ExecResult), DbErr> {
        let mut state = self.state.lock().await;
        let mut statements = std::mem::take(&mut state.queued);
        statements.push(last);
        let Some(connection) = state.connection.as_mut() else {
            return Err(DbErr::Custom("the transaction is over".into()));
        };
        let Some(text) = batch::joined(statements) else {
            return Err(DbErr::Custom("nothing to send".into()));
        };
        let values = text.values.unwrap_or(Values(Vec::new()));
        let query = sqlx::query_with(sqlx::AssertSqlSafe(text.sql), SqlxValues(values));
        let mut rows = Vec::new();
        let mut result = None;
        // Every statement's own result, in order (`Query::fetch_many` is deprecated for the multi-statement
        // texts it serves here; the executor's is not, and batches rely on the same driver behaviour).
        let mut results = sqlx::Executor::fetch_many(&mut **connection, query);
        while let Some(item) = results.next().await {
            match item.map_err(|err| DbErr::Query(RuntimeErr::SqlxError(err.into())))? {
                Either::Left(done) => result = Some(done),
                Either::Right(row) => rows.push(row),
            }
        }
        Ok((rows, result.unwrap_or_default().into()))
    }

    async fn commit(self) -> Result<(), DbErr> {
        self.send(plain("COMMIT")).await?;
        // Back to the pool only now: the commit is done.
        self.state.lock().await.connection.take();
        Ok(())
    }
}

impl Drop for SqliteTxn {
    /// A transaction dropped before its commit (it failed, or its task ended) may hold an open transaction: its
    /// connection goes back to the pool only after a `ROLLBACK`, so the next transaction, which waits for that
    /// connection, never finds the transaction open. A connection whose rollback fails is closed instead.
    fn drop(&mut self) {
        let Some(mut connection) = self.state.get_mut().connection.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left to roll back on: the connection is closed, which ends the transaction.
            drop(connection.detach());
            return;
        };
        runtime.spawn(async move {
            // "No transaction is active" (the failure came before `BEGIN` ran) is harmless: SQLite is in
            // autocommit either way. Anything else leaves the connection's state unknown.
            if let Err(err) = sqlx::query("ROLLBACK").execute(&mut *connection).await {
                if !err.to_string().contains("no transaction is active") {
                    tracing::warn!(error = %err, "rolling back a failed write transaction failed; closing its connection");
                    drop(connection.detach());
                }
            }
        });
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            WriteTxn::Sqlite(_) => DbBackend::Sqlite,
            WriteTxn::Other(txn) => txn.get_database_backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            WriteTxn::Sqlite(txn) => Ok(txn.send(stmt).await?.1),
            WriteTxn::Other(txn) => txn.execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            WriteTxn::Sqlite(txn) => Ok(txn.send(plain(sql)).await?.1),
            WriteTxn::Other(txn) => txn.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            WriteTxn::Sqlite(txn) => Ok(txn.send(stmt).await?.0.into_iter().next().map(Into::into)),
            WriteTxn::Other(txn) => txn.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            WriteTxn::Sqlite(txn) => Ok(txn
                .send(stmt)
                .await?
                .0
                .into_iter()
                .map(Into::into)
                .collect()),
            WriteTxn::Other(txn) => txn.query_all_raw(stmt).await,
        }
    }
}

fn plain(sql: &str) -> Statement {
    Statement::from_string(DbBackend::Sqlite, sql)
}

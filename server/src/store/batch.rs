//! A batch: the write statements of one step of a writer cycle, sent to the database together.
//!
//! On SQLite a batch travels as one multi-statement query (sqlx binds each statement's `?` placeholders in
//! turn): one hand-off to the driver's worker thread and back instead of one per statement, which at low load
//! is most of what a statement costs. PostgreSQL's extended protocol takes one statement per query, so there
//! the statements run one after another.

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryTrait, Statement, Values,
};

use super::ROWS_PER_STATEMENT;

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

    /// Adds `query`.
    pub fn push(&mut self, query: &impl QueryTrait) {
        self.statements.push(query.build(self.backend));
    }

    /// Adds multi-row INSERTs of `rows`, at most [`ROWS_PER_STATEMENT`] rows each.
    pub fn insert_rows<A>(&mut self, rows: impl IntoIterator<Item = A>)
    where
        A: ActiveModelTrait,
    {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<A> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
            self.push(&A::Entity::insert_many(chunk));
        }
    }

    /// Runs the batch's statements, in the order they were added.
    pub async fn run(self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        if self.backend != DbBackend::Sqlite || self.statements.len() < 2 {
            for statement in self.statements {
                db.execute_raw(statement).await?;
            }
            return Ok(());
        }
        let mut sql = String::new();
        let mut values = Vec::new();
        for statement in self.statements {
            sql.push_str(&statement.sql);
            sql.push_str(";\n");
            values.extend(statement.values.map(|v| v.0).unwrap_or_default());
        }
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            Values(values),
        ))
        .await?;
        Ok(())
    }
}

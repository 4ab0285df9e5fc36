//! Keys `attempts` by what identifies an attempt, `(delivery_id, number)`, instead of by its `id`.
//!
//! An attempt is only ever read with its delivery (by `delivery_id`, in `number` order) and deleted with it;
//! nothing looks one up by `id`. Yet every recorded attempt wrote an entry in the `id` key's index beside the
//! unique `(delivery_id, number)` index: three B-trees per row on SQLite (the table, and the two indexes),
//! a heap row and two index entries on PostgreSQL. The unique index becomes the primary key and the `id` index
//! goes: one B-tree insert less per delivery (docs/PERFORMANCE.md, step 40). `id` stays, as the attempt's
//! public name, unique because ids are.
//!
//! PostgreSQL swaps the constraints in place, reusing the index. SQLite cannot change a table's primary key,
//! so the table is rebuilt (created anew, copied, the old one dropped, the new one renamed), inside the
//! migration's transaction, which this migration asks for on SQLite too.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0005_attempts_keyed_by_delivery"
    }
}

const POSTGRES_UP: [&str; 1] = ["ALTER TABLE attempts DROP CONSTRAINT attempts_pkey, \
     ADD CONSTRAINT attempts_pkey PRIMARY KEY USING INDEX attempts_delivery_number"];
const POSTGRES_DOWN: [&str; 3] = [
    "ALTER TABLE attempts DROP CONSTRAINT attempts_pkey",
    "CREATE UNIQUE INDEX attempts_delivery_number ON attempts (delivery_id, number)",
    "ALTER TABLE attempts ADD CONSTRAINT attempts_pkey PRIMARY KEY (id)",
];

/// The columns of `attempts` as m0001 made them, for SQLite's rebuilds (one line each: SQLite keeps the text).
const COLUMNS: &str = concat!(
    r#""id" varchar(64) NOT NULL, "delivery_id" varchar(64) NOT NULL, "number" integer NOT NULL, "#,
    r#""started_at" integer NOT NULL, "duration_ms" integer NOT NULL, "request_headers" text NOT NULL, "#,
    r#""response_status" integer NOT NULL, "response_headers" text NOT NULL, "response_body" text NOT NULL, "#,
    r#""error_kind" varchar(32) NOT NULL, "error" text NOT NULL"#,
);
const NAMES: &str = concat!(
    r#""id", "delivery_id", "number", "started_at", "duration_ms", "request_headers", "#,
    r#""response_status", "response_headers", "response_body", "error_kind", "error""#,
);

/// SQLite: `attempts` rebuilt with `key` (SQL after the columns), then `after`.
fn sqlite_rebuild(key: &str, after: &[&str]) -> Vec<String> {
    let mut statements = vec![
        format!(r#"CREATE TABLE "attempts_rebuilt" ({COLUMNS}{key})"#),
        format!(r#"INSERT INTO "attempts_rebuilt" ({NAMES}) SELECT {NAMES} FROM "attempts""#),
        r#"DROP TABLE "attempts""#.to_owned(),
        r#"ALTER TABLE "attempts_rebuilt" RENAME TO "attempts""#.to_owned(),
    ];
    statements.extend(after.iter().map(|s| String::from(*s)));
    statements
}

async fn run(manager: &SchemaManager<'_>, statements: Vec<String>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(&statement).await?;
    }
    Ok(())
}

fn owned(statements: &[&str]) -> Vec<String> {
    statements.iter().map(|s| String::from(*s)).collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => owned(&POSTGRES_UP),
            _ => sqlite_rebuild(r#", PRIMARY KEY ("delivery_id", "number")"#, &[]),
        };
        run(manager, statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => owned(&POSTGRES_DOWN),
            _ => sqlite_rebuild(
                r#", PRIMARY KEY ("id")"#,
                &[
                    r#"CREATE UNIQUE INDEX "attempts_delivery_number" ON "attempts" ("delivery_id", "number")"#,
                ],
            ),
        };
        run(manager, statements).await
    }

    /// The SQLite rebuild must not stop halfway.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

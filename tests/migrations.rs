//! The schema's later migrations on real databases: `attempts` keyed by `(delivery_id, number)` with its rows
//! kept through the change and back (m0005, a table rebuild on SQLite), and on PostgreSQL key columns that
//! compare byte by byte (m0004, `COLLATE "C"`).

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

mod common;

use common::{count, Backend, TestDatabase};
use kit_webhooks_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// The migrations before m0005.
const BEFORE_ATTEMPTS_KEYED: u32 = 4;

fn attempt_row(id: &str, delivery_id: &str, number: i32) -> String {
    format!(
        "INSERT INTO attempts (id, delivery_id, number, started_at, duration_ms, request_headers, \
         response_status, response_headers, response_body, error_kind, error) \
         VALUES ('{id}', '{delivery_id}', {number}, 1764216000000, 3, '{{}}', 200, '{{}}', '', '', '')"
    )
}

async fn insert_attempt(db: &DatabaseConnection, id: &str, delivery_id: &str, number: i32) {
    db.execute_unprepared(&attempt_row(id, delivery_id, number))
        .await
        .expect("insert an attempt");
}

async fn attempts_keyed_by_delivery(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let url = match backend {
        // A new SQLite file is created only when asked to.
        Backend::Sqlite => format!("{}?mode=rwc", database.url),
        Backend::Postgres => database.url.clone(),
    };
    let db = Database::connect(&url).await.expect("connect");
    Migrator::up(&db, Some(BEFORE_ATTEMPTS_KEYED))
        .await
        .expect("migrate up to m0004");
    insert_attempt(&db, "att_1", "dlv_a", 1).await;
    insert_attempt(&db, "att_2", "dlv_a", 2).await;

    Migrator::up(&db, Some(1)).await.expect("migrate up m0005");
    let kept =
        "SELECT COUNT(*) AS n FROM attempts WHERE delivery_id = 'dlv_a' AND number IN (1, 2) \
                AND id IN ('att_1', 'att_2')";
    assert_eq!(count(&db, kept).await, 2, "the rows survive the change");
    // The key: the same delivery and number twice is refused, as before; a new attempt is recorded.
    let again = db
        .execute_unprepared(&attempt_row("att_3", "dlv_a", 2))
        .await;
    assert!(again.is_err(), "a second attempt 2 of dlv_a was accepted");
    insert_attempt(&db, "att_3", "dlv_a", 3).await;
    let indexes = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'index' AND tbl_name = 'attempts'"
        }
        Backend::Postgres => "SELECT COUNT(*) AS n FROM pg_indexes WHERE tablename = 'attempts'",
    };
    assert_eq!(count(&db, indexes).await, 1, "one index: the key");

    Migrator::down(&db, Some(1)).await.expect("migrate down");
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM attempts").await, 3);
    assert_eq!(
        count(&db, indexes).await,
        2,
        "the id key and the unique index"
    );
    Migrator::up(&db, None).await.expect("migrate up again");
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM attempts").await, 3);

    let _ = db.close().await;
    database.drop_database().await;
}

on_both_databases!(attempts_keyed_by_delivery);

/// Our tables' `VARCHAR` columns whose collation is `collation` (`NULL` in the catalogue: the default).
fn varchar_columns_with(collation: &str) -> String {
    format!(
        "SELECT COUNT(*) AS n FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> 'seaql_migrations' \
           AND data_type = 'character varying' AND {collation}"
    )
}

#[tokio::test]
async fn postgres_key_columns_compare_bytes_and_the_migration_rolls_back() {
    if std::env::var("KIT_TEST_DATABASE_URL").is_err() {
        eprintln!("KIT_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
        return;
    }
    let database = TestDatabase::new(Backend::Postgres).await;
    let db = Database::connect(&database.url).await.expect("connect");
    Migrator::up(&db, None).await.expect("migrate up");

    let all = count(&db, &varchar_columns_with("TRUE")).await;
    assert_eq!(all, 29, "the schema's VARCHAR columns");
    let bytewise = varchar_columns_with("collation_name = 'C'");
    assert_eq!(count(&db, &bytewise).await, all);

    // Down to before m0004, the fourth migration.
    let after_m0004 = Migrator::migrations().len() as u32 - 3;
    Migrator::down(&db, Some(after_m0004))
        .await
        .expect("migrate down");
    assert_eq!(count(&db, &bytewise).await, 0);
    Migrator::up(&db, None).await.expect("migrate up again");
    assert_eq!(count(&db, &bytewise).await, all);

    let _ = db.close().await;
    database.drop_database().await;
}

//! The schema's migrations on PostgreSQL, where they differ from SQLite: key columns compare byte by byte
//! (`COLLATE "C"`), and the last migration rolls back and forward on a real database.

mod common;

use common::{count, Backend, TestDatabase};
use kit_webhooks_migrations::{Migrator, MigratorTrait};
use sea_orm::Database;

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
    assert_eq!(all, 22, "the schema's VARCHAR columns");
    let bytewise = varchar_columns_with("collation_name = 'C'");
    assert_eq!(count(&db, &bytewise).await, all);

    Migrator::down(&db, Some(1)).await.expect("migrate down");
    assert_eq!(count(&db, &bytewise).await, 0);
    Migrator::up(&db, None).await.expect("migrate up again");
    assert_eq!(count(&db, &bytewise).await, all);

    let _ = db.close().await;
    database.drop_database().await;
}

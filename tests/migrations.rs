//! The schema's later migrations on real databases: `attempts` keyed by `(delivery_id, number)` with its rows
//! kept through the change and back (m0005, a table rebuild on SQLite), on PostgreSQL key columns that
//! compare byte by byte (m0004, `COLLATE "C"`), and idempotency keys kept unique by an index of the keyed
//! events only (m0012).

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

/// A new database of `backend` with its first `migrations` migrations applied.
async fn migrated_to(backend: Backend, migrations: u32) -> (TestDatabase, DatabaseConnection) {
    let database = TestDatabase::new(backend).await;
    let url = match backend {
        // A new SQLite file is created only when asked to.
        Backend::Sqlite => format!("{}?mode=rwc", database.url),
        Backend::Postgres => database.url.clone(),
    };
    let db = Database::connect(&url).await.expect("connect");
    Migrator::up(&db, Some(migrations))
        .await
        .unwrap_or_else(|err| panic!("migrate up to the first {migrations}: {err}"));
    (database, db)
}

async fn attempts_keyed_by_delivery(backend: Backend) {
    let (database, db) = migrated_to(backend, BEFORE_ATTEMPTS_KEYED).await;
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

/// The migrations before m0012.
const BEFORE_KEYED_EVENTS_INDEX: u32 = 11;

fn event_row(id: &str, account_id: &str, key: Option<&str>) -> String {
    let key = key.map_or("NULL".to_owned(), |key| format!("'{key}'"));
    format!(
        "INSERT INTO events (id, account_id, type, data_json, idempotency_key, created_at) \
         VALUES ('{id}', '{account_id}', 'offer.accepted', '{{}}', {key}, 1764216000000)"
    )
}

async fn insert_event(db: &DatabaseConnection, id: &str, account_id: &str, key: Option<&str>) {
    db.execute_unprepared(&event_row(id, account_id, key))
        .await
        .expect("insert an event");
}

async fn idempotency_keys_stay_unique_with_only_keyed_events_indexed(backend: Backend) {
    let (database, db) = migrated_to(backend, BEFORE_KEYED_EVENTS_INDEX).await;
    insert_event(&db, "evt_1", "acme", Some("order-42")).await;
    insert_event(&db, "evt_2", "acme", None).await;
    insert_event(&db, "evt_3", "acme", None).await;

    Migrator::up(&db, Some(1)).await.expect("migrate up m0012");
    let partial = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'events_account_idempotency_key' \
             AND sql LIKE '%UNIQUE%WHERE idempotency_key IS NOT NULL'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM pg_indexes WHERE indexname = 'events_account_idempotency_key' \
             AND indexdef LIKE '%UNIQUE%WHERE (idempotency_key IS NOT NULL)'"
        }
    };
    assert_eq!(
        count(&db, partial).await,
        1,
        "a unique index of the keyed events"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM events").await, 3);
    // A key is still unique per account; keyless events and other accounts' keys are not held back.
    let again = db
        .execute_unprepared(&event_row("evt_4", "acme", Some("order-42")))
        .await;
    assert!(
        again.is_err(),
        "a second event keyed order-42 in acme was accepted"
    );
    insert_event(&db, "evt_4", "acme", None).await;
    insert_event(&db, "evt_5", "globex", Some("order-42")).await;

    Migrator::down(&db, Some(1)).await.expect("migrate down");
    assert_eq!(
        count(&db, partial).await,
        0,
        "the index covers every event again"
    );
    let again = db
        .execute_unprepared(&event_row("evt_6", "acme", Some("order-42")))
        .await;
    assert!(again.is_err(), "unique after migrating down too");
    Migrator::up(&db, None).await.expect("migrate up again");
    assert_eq!(count(&db, partial).await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM events").await, 5);

    let _ = db.close().await;
    database.drop_database().await;
}

on_both_databases!(
    attempts_keyed_by_delivery,
    idempotency_keys_stay_unique_with_only_keyed_events_indexed
);

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

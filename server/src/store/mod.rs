//! Storage: the database connections and the queries of each table, behind one [`Store`] handle.
//!
//! SQLite (the default) gets one writer connection and a small pool of readers: WAL lets readers run beside
//! the writer, and funnelling every write through one connection means write transactions never meet
//! `SQLITE_BUSY` inside this process. PostgreSQL uses one pool for both.
//!
//! SQLite's WAL is checkpointed by a background task on a reader connection ([`Store::checkpoint_wal`]),
//! not by the writer: a checkpoint syncs the WAL and the database file, and doing that inside a commit
//! would stall every claim, publish and report queued behind the writer.

pub mod audit;
pub mod backlog;
pub mod deliveries;
pub mod entity;
pub mod events;
pub mod gauges;
pub mod hand_off;
pub mod keys;
pub mod leases;
pub mod operational;
pub mod retention;
pub mod sealing;
pub mod sql;
pub mod webhooks;
pub mod writes;

pub use sql::{insert_rows, is_unique_violation, ROWS_PER_STATEMENT};

use std::time::Duration;

use kit_webhooks_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
};

/// PostgreSQL connections per server by default.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The default database: a SQLite file in the working directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://kit-webhooks.db";

#[derive(Clone, Debug)]
pub struct Store {
    write: DatabaseConnection,
    read: DatabaseConnection,
    /// Connections the writer's transactions may use at once: 1 on SQLite, the pool's size on PostgreSQL.
    write_connections: u32,
    /// The webhooks that may have deliveries held back by their lease cap (`leases::held_back`).
    held_back: leases::HeldBack,
    /// The lease counts SQLite's writer keeps between its cycles (`leases::in_flight`).
    kept_counts: leases::KeptCounts,
}

impl Store {
    /// Connects to `url`: `sqlite://PATH`, `postgres://…`, or a bare file path (taken as SQLite), with the
    /// default pool size.
    pub async fn connect(url: &str) -> Result<Store, DbErr> {
        Self::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// As [`Store::connect`], with at most `max_connections` PostgreSQL connections (SQLite always has one
    /// writer and a few readers).
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Store, DbErr> {
        let url = normalize_url(url);
        if url.starts_with("sqlite:") {
            let path = sqlite_path(&url);
            let restrict = |when| match &path {
                Some(path) => restrict_sqlite_files(path, when).map_err(|err| {
                    DbErr::Custom(format!(
                        "restricting {} to its owner: {err}",
                        path.display()
                    ))
                }),
                None => Ok(()),
            };
            restrict(SqliteFiles::BeforeOpening)?;
            let write = Database::connect(sqlite_options(&url, 1, WRITER_CACHE_KIB)).await?;
            let read = Database::connect(sqlite_options(&url, 4, READER_CACHE_KIB)).await?;
            restrict(SqliteFiles::Opened)?;
            Ok(Store {
                write,
                read,
                write_connections: 1,
                held_back: leases::HeldBack::default(),
                kept_counts: leases::KeptCounts::default(),
            })
        } else {
            let mut options = ConnectOptions::new(url);
            options
                .max_connections(max_connections.max(1))
                .min_connections(1)
                .connect_timeout(Duration::from_secs(10))
                .sqlx_logging(false)
                .map_sqlx_postgres_opts(|postgres| postgres.options(POSTGRES_SESSION));
            let pool = Database::connect(options).await?;
            Ok(Store {
                write: pool.clone(),
                read: pool,
                write_connections: max_connections.max(1),
                held_back: leases::HeldBack::default(),
                kept_counts: leases::KeptCounts::default(),
            })
        }
    }

    /// Brings the schema up to date.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.write, None).await
    }

    /// The webhooks that may have deliveries held back by their lease cap.
    pub(crate) fn held_back(&self) -> &leases::HeldBack {
        &self.held_back
    }

    /// The lease counts SQLite's writer keeps between its cycles.
    pub(crate) fn kept_counts(&self) -> &leases::KeptCounts {
        &self.kept_counts
    }

    /// How many connections writes may use at once (see `crate::writer`).
    pub fn write_connections(&self) -> u32 {
        self.write_connections
    }

    /// The connection for writes and for reads that must see the latest commit.
    pub fn writer(&self) -> &DatabaseConnection {
        &self.write
    }

    /// The connection for plain reads.
    pub fn reader(&self) -> &DatabaseConnection {
        &self.read
    }

    pub fn backend(&self) -> DbBackend {
        self.write.get_database_backend()
    }

    /// Checkpoints SQLite's WAL into the database file every [`CHECKPOINT_EVERY`] until `stop`, so the
    /// writer never has to (its automatic checkpoint is only a backstop for a WAL that grows past
    /// [`WAL_BACKSTOP_PAGES`]). `PASSIVE` never waits for the writer or readers; what it cannot copy yet
    /// is copied next time. Nothing to do on PostgreSQL.
    pub async fn checkpoint_wal(self, stop: tokio_util::sync::CancellationToken) {
        if self.backend() != DbBackend::Sqlite {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            if let Err(err) = self
                .read
                .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                .await
            {
                tracing::warn!(error = %err, "checkpointing the SQLite WAL failed");
            }
        }
    }

    /// Closes every connection (checkpointing SQLite's WAL).
    pub async fn close(self) {
        let _ = self.read.close().await;
        let _ = self.write.close().await;
    }
}

/// A SQLite file path for `url`, if it names one (used to place the key file beside the database).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let url = normalize_url(url);
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// `url` as it may be shown (logs, errors): any password replaced by `***`.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have credentials, which this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Unparsable: show no more than its scheme, which cannot hold a secret.
        Err(_) => match url.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:…"),
            None => "(an unparsable database URL)".to_owned(),
        },
    }
}

/// Makes the SQLite database at `path` and its WAL and shared-memory files readable by their owner only:
/// they hold the webhooks' signing secrets. SQLite creates the WAL and shared-memory files with the database
/// file's mode, so a database this server creates is created `0600` before SQLite opens it.
fn restrict_sqlite_files(path: &std::path::Path, when: SqliteFiles) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match when {
            SqliteFiles::BeforeOpening => {
                if !path.exists() {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(path)?;
                }
            }
            SqliteFiles::Opened => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    let file = std::path::PathBuf::from(file);
                    if file.exists() {
                        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
                    }
                }
            }
        }
    }
    let _ = (path, when);
    Ok(())
}

/// When [`restrict_sqlite_files`] runs.
#[derive(Clone, Copy)]
enum SqliteFiles {
    BeforeOpening,
    Opened,
}

fn normalize_url(url: &str) -> String {
    if url.contains(':') && (url.starts_with("sqlite:") || url.contains("://")) {
        url.to_owned()
    } else {
        format!("sqlite://{url}")
    }
}

/// The planner settings of every PostgreSQL session of the server. Every query here is meant to read a
/// short index range or look rows up by key, but the planner goes by statistics that autovacuum refreshes
/// far more slowly than `deliveries` changes; with stale statistics it chose sequential and bitmap scans that
/// cost tens of times more (docs/PERFORMANCE.md, step 24). So the sessions plan with the indexes (a query no
/// index serves still runs, as a sequential scan), and with the plan thus settled, generic plans spare every
/// statement a custom plan per execution (step 37).
const POSTGRES_SESSION: [(&str, &str); 3] = [
    ("enable_seqscan", "off"),
    ("enable_bitmapscan", "off"),
    ("plan_cache_mode", "force_generic_plan"),
];

/// The page size of a database this server creates (SQLite's default is 4 KiB): a cycle's rows share fewer
/// pages, B-trees are a level shallower and the WAL gets fewer, larger frames (docs/PERFORMANCE.md, step 49).
/// An existing database keeps the page size it was created with (a WAL database cannot change it).
const PAGE_SIZE_BYTES: u32 = 8192;
/// How often the WAL is checkpointed in the background. A writer that never pauses keeps a background
/// checkpoint from restarting the WAL, so the writer's own backstop checkpoint still runs, inside a commit,
/// whenever the WAL reaches [`WAL_BACKSTOP_PAGES`]; that commit stalls for whatever is left to copy and sync
/// (docs/PERFORMANCE.md, step 52). Checkpointing often leaves it little.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages past which the writer checkpoints itself (SQLite's default is 1,000): 64 MiB of
/// [`PAGE_SIZE_BYTES`] pages.
const WAL_BACKSTOP_PAGES: u32 = 64 * 1024 * 1024 / PAGE_SIZE_BYTES;
/// Page cache of the writer connection and of each reader: the hot end of the deliveries table and its
/// indexes should stay in memory. The writer's is kept modest on purpose: every commit ends with a walk of
/// the cache's hash table, which costs more the larger the cache (docs/PERFORMANCE.md, step 16); the OS page
/// cache serves what falls out.
const WRITER_CACHE_KIB: u32 = 8 * 1024;
const READER_CACHE_KIB: u32 = 16 * 1024;

fn sqlite_options(url: &str, connections: u32, cache_kib: u32) -> ConnectOptions {
    sqlite_without_memory_statistics();
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(connections)
        .min_connections(1)
        .sqlx_logging(false)
        // Nothing can drop a SQLite connection from the other side; the ping sqlx sends before every checkout
        // was one more trip to the connection's worker thread per transaction.
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(move |opts| {
            opts.create_if_missing(true)
                // Set before the journal mode: it only takes effect on a database file not yet written.
                .page_size(PAGE_SIZE_BYTES)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL is durable against process crashes; a power loss can drop the last commits only.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .pragma("cache_size", format!("-{cache_kib}"))
                .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string())
                .pragma("temp_store", "memory")
        });
    options
}

/// SQLite keeps memory statistics by default, entering a process-wide mutex on every allocation and free,
/// for statistics nothing here reads (docs/PERFORMANCE.md, step 26). The
/// setting is only accepted before SQLite initialises, i.e. before this process opens its first SQLite
/// connection, which is why every SQLite connection of the server is opened after this (`Once`: the other
/// callers wait until it has run). Called later, SQLite refuses it (`SQLITE_MISUSE`) and nothing changes.
#[allow(unsafe_code)]
fn sqlite_without_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `SQLITE_CONFIG_MEMSTATUS` takes one int. `sqlite3_config` must not race SQLite's
        // initialisation; every SQLite connection this process opens goes through `sqlite_options` first.
        let code = unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            )
        };
        if code != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(
                code,
                "SQLite was initialised already; memory statistics stay on"
            );
        }
    });
}

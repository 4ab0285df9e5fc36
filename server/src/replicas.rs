//! Replicas: wake-ups for the daemon streams of every server sharing the database.
//!
//! A change that may make deliveries due (a publish that left some pending, a resume, a retry or a replay,
//! leases released or expired) wakes this server's streams through [`DeliveriesChanged`]. On PostgreSQL other
//! server replicas may share the database (docs/ARCHITECTURE.md), each with daemon streams of its own, which
//! would otherwise find those deliveries only at their next idle poll (docs/PERFORMANCE.md, step 46). So
//! each change is also announced with PostgreSQL's `NOTIFY` on [`CHANNEL`], and every replica listens there
//! and wakes its own streams.
//!
//! Announcements are coalesced: at most one `NOTIFY` is in flight per replica, and the next waits
//! [`NOTIFY_SPACING`], so a replica publishing thousands of events a second sends a few hundred. A
//! notification lost (the listener's connection dropped and came back) costs at most an idle poll: on
//! reconnecting, the listener wakes the streams anyway.

use std::{sync::Arc, time::Duration};

use sea_orm::{sqlx::postgres::PgListener, ConnectionTrait, DbBackend, Statement};
use tokio::sync::{futures::OwnedNotified, Notify};
use tokio_util::sync::CancellationToken;

use crate::{core::id, store::Store};

/// The PostgreSQL notification channel replicas announce changes on.
pub const CHANNEL: &str = "kit_webhooks_deliveries_changed";
/// The least time between two announcements of one replica.
const NOTIFY_SPACING: Duration = Duration::from_millis(2);
/// How long the listener waits before trying again after its connection failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// "Deliveries may have become due": wakes this server's streams at once and, on PostgreSQL, the other
/// replicas' through the announcer task ([`announce`]).
pub struct DeliveriesChanged {
    streams: Arc<Notify>,
    /// One permit for the announcer: changes made while it is busy are announced together.
    announce: Notify,
    /// This server's name in announcements, so that it ignores its own.
    replica: String,
}

impl Default for DeliveriesChanged {
    fn default() -> Self {
        DeliveriesChanged {
            streams: Arc::new(Notify::new()),
            announce: Notify::new(),
            replica: id::new(id::Kind::Replica),
        }
    }
}

impl DeliveriesChanged {
    /// Wakes every stream of this server, and has the other replicas wake theirs.
    pub fn notify(&self) {
        self.streams.notify_waiters();
        self.announce.notify_one();
    }

    /// Completes at the next [`notify`](Self::notify) here, or announcement from another replica.
    pub fn notified(&self) -> OwnedNotified {
        self.streams.clone().notified_owned()
    }
}

/// Runs the announcer and the listener of `changed` until `stop`, on PostgreSQL (on SQLite a server is alone
/// with its database, and this returns at once).
pub async fn run(
    store: Store,
    database_url: String,
    changed: Arc<DeliveriesChanged>,
    stop: CancellationToken,
) {
    if store.backend() != DbBackend::Postgres {
        return;
    }
    tokio::join!(
        announce(&store, &changed, &stop),
        listen(&database_url, &changed, &stop)
    );
}

/// Sends a `NOTIFY` for each batch of changes, [`NOTIFY_SPACING`] apart at least.
async fn announce(store: &Store, changed: &DeliveriesChanged, stop: &CancellationToken) {
    loop {
        tokio::select! {
            _ = changed.announce.notified() => {}
            _ = stop.cancelled() => return,
        }
        let notify = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), changed.replica.as_str().into()],
        );
        if let Err(err) = store.writer().execute_raw(notify).await {
            // The other replicas find the change at their next idle poll.
            tracing::warn!(error = %err, "announcing a change to the other replicas failed");
        }
        tokio::time::sleep(NOTIFY_SPACING).await;
    }
}

/// Wakes this server's streams for each announcement of another replica. The listener has a connection of
/// its own, outside the pool: it holds it for the server's life.
async fn listen(database_url: &str, changed: &DeliveriesChanged, stop: &CancellationToken) {
    while !stop.is_cancelled() {
        let listening = async {
            let mut listener = PgListener::connect(database_url).await?;
            listener.listen(CHANNEL).await?;
            loop {
                match listener.try_recv().await? {
                    Some(notification) if notification.payload() != changed.replica => {
                        changed.streams.notify_waiters();
                    }
                    Some(_) => {}
                    // The connection dropped and is being made again: what was announced meanwhile is lost.
                    None => changed.streams.notify_waiters(),
                }
            }
        };
        let failed: Result<(), sea_orm::sqlx::Error> = tokio::select! {
            result = listening => result,
            _ = stop.cancelled() => return,
        };
        if let Err(err) = failed {
            tracing::warn!(error = %err, retry_in = ?LISTEN_RETRY, "listening for the other replicas' changes failed");
        }
        // Whatever was announced while not listening.
        changed.streams.notify_waiters();
        tokio::select! {
            _ = tokio::time::sleep(LISTEN_RETRY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

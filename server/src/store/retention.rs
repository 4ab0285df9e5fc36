//! Pruning old history (`--retention`, `kit-webhooks-server prune`): an event older than the cutoff whose
//! deliveries are all finished (succeeded, or failed with no retry left) goes, with its deliveries and their
//! attempts. An event with a delivery still waiting (`pending`, or `held` behind a paused webhook) or leased
//! (`sending`) stays, whole, however old.
//!
//! One batch is one short transaction on the writer connection, so that the writer's cycles and the claims
//! wait at most one batch for it. The oldest events come first (ids are ULIDs: they sort by time, and the
//! primary key serves the range). A replay or retry that re-queues a finished delivery while a batch runs
//! cannot lose it: on PostgreSQL the batch locks the deliveries it is about to delete and checks them again
//! under the lock (a re-queue then waits, and finds the row gone); SQLite's one writer runs one at a time.

use std::collections::HashSet;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::{
    entity::{attempt, delivery, event},
    sql::{id_list, json_rows::statement},
    Store,
};
use crate::core::{event::DeliveryStatus, id};

/// What one batch removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    /// Events of the batch's range looked at, pruned or kept: fewer than asked means the range is done.
    pub examined: u64,
}

impl Store {
    /// Prunes up to `batch` events created before `before` (Unix ms) and after the event `after` (a cursor:
    /// `None` to start from the oldest), in one transaction. Returns what went, and the last event looked
    /// at, to continue from.
    pub async fn prune_batch(
        &self,
        before: i64,
        after: Option<&str>,
        batch: u64,
    ) -> Result<(Pruned, Option<String>), DbErr> {
        let txn = self.writer().begin().await?;
        let mut query = event::Entity::find()
            .select_only()
            .column(event::Column::Id)
            .filter(event::Column::Id.lt(id::floor(id::Kind::Event, before)))
            .order_by_asc(event::Column::Id)
            .limit(batch);
        if let Some(after) = after {
            query = query.filter(event::Column::Id.gt(after));
        }
        let examined: Vec<String> = query.into_tuple().all(&txn).await?;
        let last = examined.last().cloned();
        let deliveries = deliveries_of(&txn, &examined).await?;
        let unfinished: HashSet<&str> = deliveries
            .iter()
            .filter(|d| !matches!(d.status, DeliveryStatus::Succeeded | DeliveryStatus::Failed))
            .map(|d| d.event_id.as_str())
            .collect();
        let events: Vec<&str> = examined
            .iter()
            .map(String::as_str)
            .filter(|id| !unfinished.contains(id))
            .collect();
        let deliveries: Vec<&str> = deliveries
            .iter()
            .filter(|d| !unfinished.contains(d.event_id.as_str()))
            .map(|d| d.id.as_str())
            .collect();
        let pruned = delete(&txn, &events, &deliveries).await?;
        txn.commit().await?;
        Ok((
            Pruned {
                examined: examined.len() as u64,
                ..pruned
            },
            last,
        ))
    }
}

/// A delivery as pruning sees it.
#[derive(Debug, FromQueryResult)]
struct Row {
    id: String,
    event_id: String,
    status: DeliveryStatus,
}

/// The deliveries of `events`, locked on PostgreSQL until the transaction ends (see the module's doc).
async fn deliveries_of(txn: &DatabaseTransaction, events: &[String]) -> Result<Vec<Row>, DbErr> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let backend = txn.get_database_backend();
    let (ids, values) = id_list::sql(backend, "event_id", events.iter().map(String::as_str));
    let lock = match backend {
        DbBackend::Postgres => " FOR UPDATE",
        _ => "",
    };
    let sql = format!("SELECT id, event_id, status FROM deliveries WHERE {ids}{lock}");
    Row::find_by_statement(statement(backend, &sql, values))
        .all(txn)
        .await
}

/// Deletes `events` and `deliveries` (theirs), with the deliveries' attempts, each by its key.
async fn delete(
    txn: &DatabaseTransaction,
    events: &[&str],
    deliveries: &[&str],
) -> Result<Pruned, DbErr> {
    let backend = txn.get_database_backend();
    let mut pruned = Pruned::default();
    if !deliveries.is_empty() {
        pruned.attempts = attempt::Entity::delete_many()
            .filter(id_list::filter(
                backend,
                attempt::Column::DeliveryId,
                deliveries.iter().copied(),
            ))
            .exec(txn)
            .await?
            .rows_affected;
        pruned.deliveries = delivery::Entity::delete_many()
            .filter(id_list::filter(
                backend,
                delivery::Column::Id,
                deliveries.iter().copied(),
            ))
            .exec(txn)
            .await?
            .rows_affected;
    }
    if !events.is_empty() {
        pruned.events = event::Entity::delete_many()
            .filter(id_list::filter(
                backend,
                event::Column::Id,
                events.iter().copied(),
            ))
            .exec(txn)
            .await?
            .rows_affected;
    }
    Ok(pruned)
}

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

use sea_orm::{
    sea_query::Expr, ActiveEnum, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
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

/// `status IN (…)` of the deliveries not finished yet: waiting, held or leased.
fn unfinished_sql() -> String {
    let names: Vec<String> = [
        DeliveryStatus::Pending,
        DeliveryStatus::Held,
        DeliveryStatus::Sending,
    ]
    .iter()
    .map(|status| format!("'{}'", status.to_value()))
    .collect();
    format!("status IN ({})", names.join(", "))
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
        let backend = txn.get_database_backend();
        if backend == DbBackend::Postgres && !examined.is_empty() {
            // Their deliveries stay as they are until this batch commits (see the module's doc).
            let (ids, values) =
                id_list::sql(backend, "event_id", examined.iter().map(String::as_str));
            let lock = format!("SELECT id FROM deliveries WHERE {ids} FOR UPDATE");
            txn.execute_raw(statement(backend, &lock, values)).await?;
        }
        let unfinished = unfinished_events(&txn, &examined).await?;
        let prunable: Vec<&str> = examined
            .iter()
            .map(String::as_str)
            .filter(|id| !unfinished.iter().any(|kept| kept == id))
            .collect();
        let pruned = delete_events(&txn, &prunable).await?;
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

/// Those of `events` with a delivery not finished yet.
async fn unfinished_events(
    txn: &DatabaseTransaction,
    events: &[String],
) -> Result<Vec<String>, DbErr> {
    delivery::Entity::find()
        .select_only()
        .column(delivery::Column::EventId)
        .distinct()
        .filter(id_list::filter(
            txn.get_database_backend(),
            delivery::Column::EventId,
            events.iter().map(String::as_str),
        ))
        // Constants in the text: `id_list` binds its one value as `$1` on PostgreSQL.
        .filter(Expr::cust(unfinished_sql()))
        .into_tuple()
        .all(txn)
        .await
}

/// Deletes `events` with their deliveries and their deliveries' attempts.
async fn delete_events(txn: &DatabaseTransaction, events: &[&str]) -> Result<Pruned, DbErr> {
    if events.is_empty() {
        return Ok(Pruned::default());
    }
    let backend = txn.get_database_backend();
    let by_event = || id_list::filter(backend, delivery::Column::EventId, events.iter().copied());
    let deliveries = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::Id)
        .filter(by_event())
        .into_query();
    let attempts = attempt::Entity::delete_many()
        .filter(attempt::Column::DeliveryId.in_subquery(deliveries))
        .exec(txn)
        .await?;
    let deliveries = delivery::Entity::delete_many()
        .filter(by_event())
        .exec(txn)
        .await?;
    let deleted = event::Entity::delete_many()
        .filter(id_list::filter(
            backend,
            event::Column::Id,
            events.iter().copied(),
        ))
        .exec(txn)
        .await?;
    Ok(Pruned {
        events: deleted.rows_affected,
        deliveries: deliveries.rows_affected,
        attempts: attempts.rows_affected,
        examined: 0,
    })
}

//! Pruning old history (`--retention`, `kit-webhooks-server prune`): an event older than the cutoff whose
//! deliveries are all finished (succeeded, or failed with no retry left) goes, with its deliveries and their
//! attempts. An event with a delivery still waiting (`pending`, or `held` behind a paused webhook) or leased
//! (`sending`) stays, whole, however old.
//!
//! One batch is one short transaction on the writer connection, so that the writer's cycles and the claims
//! wait at most one batch for it. The oldest events come first (ids are ULIDs: they sort by time, and the
//! primary key serves the range); their deliveries are found through the partial indexes of m0006 and
//! m0003. A replay or retry that re-queues a finished delivery while a batch runs cannot lose it: on
//! PostgreSQL the batch locks the finished deliveries before it reads which are unfinished (a re-queue
//! committed before shows as unfinished and keeps its event; one after waits for the batch, and finds the
//! row gone); SQLite's one writer runs one at a time.

use std::collections::HashSet;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use super::{
    entity::{attempt, delivery, event},
    sql::{id_list, in_progress, json_rows::statement},
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
        let began = std::time::Instant::now();
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
        // Finished deliveries locked first, then the unfinished ones read: a re-queue that came before the
        // lock shows as unfinished, one after it waits for this batch (see the module's doc).
        let finished = finished_deliveries(&txn, &examined).await?;
        let unfinished = unfinished_events(&txn, &examined).await?;
        let events: Vec<&str> = examined
            .iter()
            .map(String::as_str)
            .filter(|id| !unfinished.contains(*id))
            .collect();
        let deliveries: Vec<&str> = finished
            .iter()
            .filter(|(_, event)| !unfinished.contains(event))
            .map(|(id, _)| id.as_str())
            .collect();
        let pruned = delete(&txn, &events, &deliveries).await?;
        txn.commit().await?;
        // How long the batch held the writer connection (SQLite) and its rows (`RUST_LOG=…=debug`).
        tracing::debug!(held = ?began.elapsed(), events = pruned.events, "pruning batch committed");
        Ok((
            Pruned {
                examined: examined.len() as u64,
                ..pruned
            },
            last,
        ))
    }
}

/// The finished deliveries of `events` (id, event), through `deliveries_event_finished`, locked on PostgreSQL
/// until the transaction ends.
async fn finished_deliveries(
    txn: &DatabaseTransaction,
    events: &[String],
) -> Result<Vec<(String, String)>, DbErr> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let backend = txn.get_database_backend();
    let (ids, values) = id_list::sql(backend, "event_id", events.iter().map(String::as_str));
    let lock = match backend {
        DbBackend::Postgres => " FOR UPDATE",
        _ => "",
    };
    let sql = format!(
        "SELECT id, event_id FROM deliveries WHERE {ids} AND ({}){lock}",
        in_progress::any_of(&[DeliveryStatus::Succeeded, DeliveryStatus::Failed])
    );
    let rows = txn.query_all_raw(statement(backend, &sql, values)).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "event_id")?)))
        .collect()
}

/// Those of `events` with a delivery not finished: pending or leased (through `deliveries_in_progress`),
/// or held (through `deliveries_event_held`), read in one statement, so at one moment.
async fn unfinished_events(
    txn: &DatabaseTransaction,
    events: &[String],
) -> Result<HashSet<String>, DbErr> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let backend = txn.get_database_backend();
    let (ids, mut values) = id_list::sql(backend, "event_id", events.iter().map(String::as_str));
    values.extend(values.clone());
    let sql = format!(
        "SELECT event_id FROM deliveries WHERE {ids} AND ({}) \
         UNION ALL SELECT event_id FROM deliveries WHERE {ids} AND ({})",
        in_progress::any_of(&[DeliveryStatus::Pending, DeliveryStatus::Sending]),
        in_progress::any_of(&[DeliveryStatus::Held]),
    );
    let rows = txn.query_all_raw(statement(backend, &sql, values)).await?;
    rows.iter().map(|row| row.try_get("", "event_id")).collect()
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

//! Synthetic history for benchmarks: a database that already holds many deliveries, as a long-running
//! deployment's does, to show that leasing stays index-backed however much history there is.

use sea_orm::{DbErr, EntityTrait, IntoActiveModel, TransactionTrait};

use super::{
    entity::{delivery, event, webhook},
    events::insert_deliveries,
    insert_rows,
    webhooks::new_webhook,
    Store,
};
use crate::core::{event::DeliveryStatus, id, time, webhook as rules};

/// Rows per transaction while seeding.
const BATCH: usize = 5_000;

impl Store {
    /// Adds `deliveries` deliveries to account `backlog`: half `succeeded`, their events published `age_ms`
    /// ago (older than the retention, they are pruned), half waiting (`held`) for a paused webhook (so they
    /// are never due, nor pruned). One event per delivery.
    pub async fn seed_backlog(&self, deliveries: usize, age_ms: i64) -> Result<(), DbErr> {
        let now = time::now_ms();
        let mut hooks = Vec::new();
        let events = ["interview.*".to_string()];
        for status in [rules::Status::Active, rules::Status::Paused] {
            let mut hook = new_webhook(
                "backlog",
                "https://backlog.invalid/",
                "benchmark history",
                &events,
                100,
            );
            hook.status = status;
            // Stored in clear, as a database from before secrets were sealed: the server's start seals it.
            // (The history is seeded before the server starts, and these webhooks are never delivered to.)
            webhook::Entity::insert(hook.clone().into_active_model())
                .exec_without_returning(self.writer())
                .await?;
            hooks.push(hook);
        }
        let mut done = 0;
        while done < deliveries {
            let n = BATCH.min(deliveries - done);
            let txn = self.writer().begin().await?;
            let events: Vec<event::Model> = (0..n)
                .map(|i| {
                    let published = match (done + i) % 2 == 0 {
                        true => now - age_ms,
                        false => now,
                    };
                    event::Model {
                        id: id::issued_at(id::Kind::Event, published),
                        account_id: "backlog".into(),
                        r#type: "interview.scheduled".into(),
                        data_json: "{}".into(),
                        idempotency_key: None,
                        created_at: published,
                    }
                })
                .collect();
            insert_rows(
                &txn,
                events
                    .iter()
                    .cloned()
                    .map(IntoActiveModel::into_active_model),
            )
            .await?;
            let rows: Vec<delivery::Model> = events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let succeeded = (done + i) % 2 == 0;
                    let mut row = super::events::new_delivery(e, &hooks[usize::from(!succeeded)]);
                    if !succeeded {
                        // What pausing the webhook did to its waiting deliveries.
                        row.status = DeliveryStatus::Held;
                    }
                    if succeeded {
                        row.status = DeliveryStatus::Succeeded;
                        row.attempt_count = 1;
                        row.next_attempt_at = None;
                        row.completed_at = Some(e.created_at);
                    }
                    row
                })
                .collect();
            insert_deliveries(&txn, &rows).await?;
            txn.commit().await?;
            done += n;
        }
        Ok(())
    }
}

//! Leases: handing due deliveries to daemon streams, taking them back, and recording what the daemon did.
//!
//! A delivery is due when it is `pending`, its `next_attempt_at` has passed and its webhook is `active` (a
//! `test.ping` goes out whatever the status). Claiming marks it `sending` with a lease id, the owning stream and
//! an expiry, in the writer's transaction (`crate::writer`): PostgreSQL replicas and committers skip each
//! other's locked rows (`FOR UPDATE SKIP LOCKED`), and SQLite's single writer connection serialises claims.
//! The expiry is only the backstop for a server that died: a live stream renews its leases, and a stream that
//! ends releases them at once.
//!
//! Each operation here has an `_in` form that runs inside a transaction the caller commits (the writer's
//! cycle) and a `Store` method that runs it in a transaction of its own.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use serde::Deserialize;

use kit_webhooks::catalogue::TEST_PING;
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{
    batch::Batch,
    cycle::Cycle,
    entity::{attempt, delivery, event, webhook},
    id_list, in_progress,
    json_rows::{decode_rows, select_json, statement},
    Store, ROWS_PER_STATEMENT,
};
use crate::core::{
    event::DeliveryStatus,
    id,
    policy::{
        is_success, Decision, DeliveryDecision, Outcome, RetryPolicy, WebhookDecision,
        WebhookHealth,
    },
    webhook::Status as WebhookStatus,
    Error,
};

/// A leased delivery with everything needed to send it: read in the same query that finds it due. Its
/// webhook and event are shared with the other deliveries of the claim that go to that webhook or come from
/// that event (an event's data is read once and never copied per delivery).
#[derive(Debug, Clone)]
pub struct LeasedDelivery {
    pub delivery_id: String,
    pub attempt_count: i32,
    pub lease_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub webhook: Arc<SendingWebhook>,
    pub event: Arc<SendingEvent>,
}

impl LeasedDelivery {
    /// `delivery`, leased under `lease_id`, with what sending it needs of its webhook and event.
    pub(super) fn new(
        delivery: DueDelivery,
        lease_id: &str,
        hook: &Arc<SendingWebhook>,
        event: &Arc<SendingEvent>,
    ) -> Self {
        LeasedDelivery {
            delivery_id: delivery.id,
            attempt_count: delivery.attempt_count,
            lease_id: lease_id.to_owned(),
            webhook_id: delivery.webhook_id,
            event_id: delivery.event_id,
            event_type: delivery.event_type,
            webhook: hook.clone(),
            event: event.clone(),
        }
    }
}

/// A daemon's report of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub delivery_id: String,
    pub lease_id: String,
    pub attempt_number: u32,
    pub started_at: i64,
    pub duration_ms: u32,
    pub request_headers: BTreeMap<String, String>,
    pub response_status: u32,
    pub response_headers: BTreeMap<String, String>,
    pub response_body: String,
    pub error_kind: String,
    pub error: String,
}

/// A report made ready to record: the attempt row it adds (headers as stored JSON, a fresh id) and what the
/// retry policy reads of it. Built from an [`AttemptReport`] by the caller, before the report is queued for
/// the writer, so that the writer's cycle, the one serial path on SQLite, only decides and writes.
#[derive(Debug, Clone)]
pub struct ReadyReport {
    pub lease_id: String,
    pub attempt_number: u32,
    pub response_status: u32,
    /// The response's `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// Numbered `attempt_number`: recorded only if that is the lease's next attempt.
    pub attempt: attempt::Model,
}

impl From<AttemptReport> for ReadyReport {
    fn from(report: AttemptReport) -> Self {
        ReadyReport {
            retry_after: header(&report.response_headers, "retry-after"),
            attempt: attempt::Model {
                id: id::new(id::Kind::Attempt),
                number: report.attempt_number.min(i32::MAX as u32) as i32,
                started_at: report.started_at,
                duration_ms: report.duration_ms.min(i32::MAX as u32) as i32,
                request_headers: attempt::stored_headers(&report.request_headers),
                response_status: report.response_status.min(999) as i32,
                response_headers: attempt::stored_headers(&report.response_headers),
                response_body: report.response_body,
                error_kind: report.error_kind,
                error: report.error,
                delivery_id: report.delivery_id,
            },
            lease_id: report.lease_id,
            attempt_number: report.attempt_number,
            response_status: report.response_status,
        }
    }
}

/// What recording a report needs of its delivery, read with its webhook in one statement ([`select_json`]).
#[derive(Debug, Deserialize)]
struct HeldLease {
    id: String,
    status: String,
    webhook_id: String,
    event_type: String,
    attempt_count: i32,
    lease_id: Option<String>,
    lease_owner: Option<String>,
}

impl HeldLease {
    const COLUMNS: [&str; 7] = [
        "id",
        "status",
        "webhook_id",
        "event_type",
        "attempt_count",
        "lease_id",
        "lease_owner",
    ];
}

/// What recording an attempt did.
#[derive(Debug)]
pub struct Recorded {
    pub decision: Decision,
    /// The stream that held the lease.
    pub lease_owner: Option<String>,
}

impl Store {
    /// Leases up to `room` due deliveries to stream `owner`, never letting one webhook hold more than
    /// `per_webhook_cap` leases. Returns them ready to send, with their webhook and event ([`claim_in`]).
    pub async fn claim_due(
        &self,
        owner: &str,
        room: u64,
        per_webhook_cap: u64,
        now: i64,
        lease_expires_at: i64,
    ) -> Result<Claimed, DbErr> {
        let cycle = Cycle::begin(self.writer()).await?;
        let claim = Claim::new(owner, room);
        let (claimed, _) = claim_in(&cycle, &claim, per_webhook_cap, now, lease_expires_at).await?;
        cycle.commit().await?;
        Ok(claimed)
    }

    /// Leases held by stream `owner`.
    pub async fn count_leases(&self, owner: &str) -> Result<u64, DbErr> {
        delivery::Entity::find()
            .filter(delivery::Column::LeaseOwner.eq(owner))
            .filter(in_progress::filter(DeliveryStatus::Sending))
            .count(self.writer())
            .await
    }

    /// Extends the leases of a live stream that were issued at or after `issued_since` (ms). An older lease
    /// is one whose report never came (a daemon gave up on it): left to expire, its delivery goes back to
    /// the queue instead of staying `sending` for as long as the stream lives.
    pub async fn renew_leases(
        &self,
        owner: &str,
        lease_expires_at: i64,
        issued_since: i64,
    ) -> Result<u64, DbErr> {
        let result = delivery::Entity::update_many()
            .col_expr(
                delivery::Column::LeaseExpiresAt,
                Expr::value(lease_expires_at),
            )
            .filter(delivery::Column::LeaseOwner.eq(owner))
            .filter(in_progress::filter(DeliveryStatus::Sending))
            // Lease ids are ULIDs: they sort by the time they were issued.
            .filter(delivery::Column::LeaseId.gte(id::floor(id::Kind::Lease, issued_since)))
            .exec(self.writer())
            .await?;
        Ok(result.rows_affected)
    }

    /// Returns a stream's unreported leases to `pending`, as they were: no attempt is counted.
    pub async fn release_leases(&self, owner: &str) -> Result<u64, DbErr> {
        self.return_leases(delivery::Column::LeaseOwner.eq(owner))
            .await
    }

    /// Passes to stream `owner` the leases of stream `previous` on the deliveries in `held` (those whose
    /// requests its daemon has started), with a new expiry, and returns the rest of `previous`'s leases to
    /// `pending`, in one transaction. Returns how many were taken over and how many returned.
    pub async fn take_over_leases(
        &self,
        previous: &str,
        held: &[String],
        owner: &str,
        lease_expires_at: i64,
    ) -> Result<(u64, u64), DbErr> {
        use sea_orm::TransactionTrait;
        let txn = self.writer().begin().await?;
        let mut taken = 0;
        for ids in held.chunks(ROWS_PER_STATEMENT) {
            taken += delivery::Entity::update_many()
                .col_expr(delivery::Column::LeaseOwner, Expr::value(owner))
                .col_expr(
                    delivery::Column::LeaseExpiresAt,
                    Expr::value(lease_expires_at),
                )
                .filter(delivery::Column::LeaseOwner.eq(previous))
                .filter(in_progress::filter(DeliveryStatus::Sending))
                .filter(delivery::Column::Id.is_in(ids.iter().cloned()))
                .exec(&txn)
                .await?
                .rows_affected;
        }
        let returned = return_leases_on(&txn, delivery::Column::LeaseOwner.eq(previous)).await?;
        txn.commit().await?;
        Ok((taken, returned))
    }

    /// Returns every lease whose expiry has passed (its server died) to `pending`.
    pub async fn expire_leases(&self, now: i64) -> Result<u64, DbErr> {
        self.return_leases(delivery::Column::LeaseExpiresAt.lt(now))
            .await
    }

    async fn return_leases(&self, which: sea_orm::sea_query::SimpleExpr) -> Result<u64, DbErr> {
        return_leases_on(self.writer(), which).await
    }

    /// When the next claimable delivery falls due after `now`, if any is scheduled.
    pub async fn next_due_at(&self, now: i64) -> Result<Option<i64>, DbErr> {
        let sql = format!(
            "SELECT MIN(d.next_attempt_at) AS at FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE {} AND d.next_attempt_at > ? AND (w.status = ? OR d.event_type = ?)",
            in_progress::sql("d.status", DeliveryStatus::Pending)
        );
        let row = self
            .reader()
            .query_one_raw(statement(
                self.backend(),
                &sql,
                vec![
                    now.into(),
                    WebhookStatus::Active.as_str().into(),
                    TEST_PING.into(),
                ],
            ))
            .await?;
        match row {
            Some(row) => row.try_get::<Option<i64>>("", "at"),
            None => Ok(None),
        }
    }

    /// Records a group of attempts and applies `policy` to each, in one transaction (the
    /// statements are shared by the whole group, so a busy server writes far fewer of them). Each report gets
    /// its own result: a report whose lease is no longer held (released, expired, or already reported) is
    /// refused with `FAILED_PRECONDITION` and changes nothing, without failing the others. Leases are
    /// released by the same commit that records their attempts.
    pub async fn record_attempts(
        &self,
        reports: Vec<ReadyReport>,
        policy: &RetryPolicy,
        now: i64,
    ) -> Result<Vec<Result<Recorded, Error>>, DbErr> {
        match self.record_group(&reports, policy, now).await {
            Ok(recorded) => Ok(recorded),
            Err(err) if reports.len() == 1 => Err(err),
            // One report the database refuses must not fail the others: each alone, each its own answer.
            Err(err) => {
                tracing::info!(error = %err, reports = reports.len(), "recording a group failed; recording each report alone");
                let mut results = Vec::with_capacity(reports.len());
                for report in &reports {
                    let result = match self
                        .record_group(std::slice::from_ref(report), policy, now)
                        .await
                    {
                        Ok(mut recorded) => recorded.pop().unwrap_or_else(|| {
                            Err(Error::Storage(DbErr::Custom("nothing recorded".into())))
                        }),
                        Err(err) => Err(Error::from(err)),
                    };
                    results.push(result);
                }
                Ok(results)
            }
        }
    }

    /// [`record_in`] in a transaction of its own.
    async fn record_group(
        &self,
        reports: &[ReadyReport],
        policy: &RetryPolicy,
        now: i64,
    ) -> Result<Vec<Result<Recorded, Error>>, DbErr> {
        let cycle = Cycle::begin(self.writer()).await?;
        let recorded = record_in(&cycle, reports, policy, now).await?;
        cycle.commit().await?;
        Ok(recorded)
    }
}

/// [`Store::record_attempts`] inside a transaction the caller commits.
pub async fn record_in(
    txn: &Cycle,
    reports: &[ReadyReport],
    policy: &RetryPolicy,
    now: i64,
) -> Result<Vec<Result<Recorded, Error>>, DbErr> {
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    // By id alone, status checked below: with `status = 'sending'` in the query SQLite's planner (which has no
    // statistics) walked every lease in the status index instead of looking the reported ids up.
    let (ids, values) = id_list::sql(
        txn.get_database_backend(),
        "id",
        reports.iter().map(|r| r.attempt.delivery_id.as_str()),
    );
    // The leases and their webhooks in one read.
    let lock = if postgres {
        // A duplicate report arriving at another replica waits here, then finds the lease gone. Rows are
        // locked in id order, as webhooks are below, so concurrent groups cannot deadlock.
        " ORDER BY id FOR UPDATE"
    } else {
        ""
    };
    let with = format!(
        "WITH leases AS MATERIALIZED (SELECT {} FROM deliveries WHERE {ids}{lock}) ",
        HeldLease::COLUMNS.join(", "),
    );
    let leases_from = "FROM leases";
    let hooks_from = "FROM webhooks WHERE id IN (SELECT webhook_id FROM leases) ORDER BY id";
    let hook_columns = webhook::columns();
    let [leases, found_hooks] = select_json(
        txn,
        &with,
        [
            (&HeldLease::COLUMNS, leases_from),
            (&hook_columns, hooks_from),
        ],
        values,
    )
    .await?;
    let mut held: HashMap<String, HeldLease> = decode_rows::<HeldLease>(&leases, leases_from)?
        .into_iter()
        .filter(|d| d.status == DeliveryStatus::Sending.as_str())
        .map(|d| (d.id.clone(), d))
        .collect();
    let mut found_hooks: Vec<webhook::Model> = decode_rows(&found_hooks, hooks_from)?;
    // A group that will change a webhook's failure bookkeeping (a failed attempt, or a success ending a
    // run of failures) must serialise with other groups on that row; the common case, healthy webhooks
    // answering 2xx, writes no webhook row and takes no lock. Id order avoids deadlocks.
    let writes_webhooks = reports.iter().any(|r| !is_success(r.response_status))
        || found_hooks
            .iter()
            .any(|h| h.failure_count != 0 || h.failing_since.is_some());
    if postgres && writes_webhooks {
        let hook_ids: Vec<String> = found_hooks.iter().map(|h| h.id.clone()).collect();
        found_hooks = webhook::Entity::find()
            .filter(id_list::filter(
                DbBackend::Postgres,
                webhook::Column::Id,
                hook_ids.iter().map(String::as_str),
            ))
            .order_by_asc(webhook::Column::Id)
            .lock_exclusive()
            .all(txn)
            .await?;
    }
    let mut hooks: HashMap<String, (webhook::Model, bool)> = found_hooks
        .into_iter()
        .map(|w| (w.id.clone(), (w, false)))
        .collect();

    let mut results = Vec::with_capacity(reports.len());
    let mut attempts = Vec::with_capacity(reports.len());
    let mut succeeded = Vec::new();
    let mut failed = Vec::new();
    let mut retries = Vec::new();
    for report in reports {
        // Taken out of `held`, so a second report on the same lease in this group is refused too.
        let delivery_id = &report.attempt.delivery_id;
        let found = match held.remove(delivery_id) {
            Some(found) if found.lease_id.as_deref() == Some(report.lease_id.as_str()) => found,
            other => {
                if let Some(other) = other {
                    held.insert(other.id.clone(), other);
                }
                results.push(Err(Error::FailedPrecondition(format!(
                        "lease `{}` on delivery `{}` is no longer held (released, expired or already reported); \
                         the report was discarded",
                        report.lease_id, delivery_id
                    ))));
                continue;
            }
        };
        let number = found.attempt_count + 1;
        if report.attempt_number != number as u32 {
            results.push(Err(Error::invalid(
                "attempt_number",
                format!(
                    "is {}, but this lease is for attempt {number}",
                    report.attempt_number
                ),
            )));
            continue;
        }
        let Some((hook, changed)) = hooks.get_mut(&found.webhook_id) else {
            results.push(Err(Error::not_found("webhook", &found.webhook_id)));
            continue;
        };
        let outcome = Outcome {
            attempt_number: report.attempt_number,
            status: report.response_status,
            retry_after: report.retry_after.clone(),
            is_test_ping: found.event_type == TEST_PING,
            started_at: report.attempt.started_at,
        };
        let health = WebhookHealth {
            failure_count: hook.failure_count.max(0) as u32,
            failing_since: hook.failing_since,
        };
        let decision = policy.decide(&outcome, health, now);
        *changed |= apply_to_webhook(hook, &decision.webhook, now);
        match decision.delivery {
            DeliveryDecision::Succeeded => succeeded.push(found.id.clone()),
            DeliveryDecision::Failed => failed.push(found.id.clone()),
            DeliveryDecision::RetryAt(at) => {
                let active = hook.status == WebhookStatus::Active.as_str();
                retries.push((
                    found.id.clone(),
                    at,
                    DeliveryStatus::waiting(active, &found.event_type),
                ));
            }
        }
        attempts.push(report.attempt.clone().into_active_model());
        results.push(Ok(Recorded {
            decision,
            lease_owner: found.lease_owner,
        }));
    }

    // The attempts and the deliveries' outcomes in one batch.
    let mut batch = Batch::new(txn.get_database_backend());
    batch.insert_rows(attempts);
    finish(&mut batch, &succeeded, DeliveryStatus::Succeeded, now);
    finish(&mut batch, &failed, DeliveryStatus::Failed, now);
    for (delivery_id, at, status) in retries {
        batch.push(
            &unlease(delivery::Entity::update_many())
                .col_expr(delivery::Column::Status, Expr::value(status.as_str()))
                .col_expr(delivery::Column::NextAttemptAt, Expr::value(at))
                .filter(delivery::Column::Id.eq(delivery_id)),
        );
    }
    txn.write(batch).await?;
    for (hook, changed) in hooks.into_values() {
        if changed && hook.status != WebhookStatus::Active.as_str() {
            Store::set_waiting(txn, &hook.id, false).await?;
        }
        if changed {
            hook.into_active_model().reset_all().update(txn).await?;
        }
    }
    Ok(results)
}

/// The first value of response header `name` (any case).
fn header(headers: &BTreeMap<String, String>, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.clone())
}

/// An update that releases the lease: no lease id, owner or expiry.
/// Returns the leases `which` selects to `pending`, on `db`.
async fn return_leases_on(
    db: &impl ConnectionTrait,
    which: sea_orm::sea_query::SimpleExpr,
) -> Result<u64, DbErr> {
    let result = clear_lease(delivery::Entity::update_many())
        .col_expr(
            delivery::Column::Status,
            Expr::value(DeliveryStatus::Pending.as_str()),
        )
        .filter(in_progress::filter(DeliveryStatus::Sending))
        .filter(which)
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

fn clear_lease(
    update: sea_orm::UpdateMany<delivery::Entity>,
) -> sea_orm::UpdateMany<delivery::Entity> {
    update
        .col_expr(
            delivery::Column::LeaseId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            delivery::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            delivery::Column::LeaseExpiresAt,
            Expr::value(Option::<i64>::None),
        )
}

/// An update that counts the attempt and releases the lease, the part every reported outcome shares.
fn unlease(update: sea_orm::UpdateMany<delivery::Entity>) -> sea_orm::UpdateMany<delivery::Entity> {
    use sea_orm::sea_query::ExprTrait;
    clear_lease(update).col_expr(
        delivery::Column::AttemptCount,
        Expr::col(delivery::Column::AttemptCount).add(1),
    )
}

/// Adds to `batch` marking `ids` finished (`succeeded` or `failed`).
fn finish(batch: &mut Batch, ids: &[String], status: DeliveryStatus, now: i64) {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        batch.push(
            &unlease(delivery::Entity::update_many())
                .col_expr(delivery::Column::Status, Expr::value(status.as_str()))
                .col_expr(
                    delivery::Column::NextAttemptAt,
                    Expr::value(Option::<i64>::None),
                )
                .col_expr(delivery::Column::CompletedAt, Expr::value(now))
                .filter(id_list::filter(
                    batch.backend(),
                    delivery::Column::Id,
                    chunk.iter().map(String::as_str),
                )),
        );
    }
}

/// Applies the policy's verdict to the webhook row in memory; returns whether it changed.
fn apply_to_webhook(hook: &mut webhook::Model, decision: &WebhookDecision, now: i64) -> bool {
    // Compared field by field rather than against a clone of the row: this runs for every report.
    match decision {
        WebhookDecision::Unchanged => false,
        WebhookDecision::Healthy => {
            let changed = hook.failure_count != 0 || hook.failing_since.is_some();
            hook.failure_count = 0;
            hook.failing_since = None;
            changed
        }
        WebhookDecision::Failing {
            failure_count,
            failing_since,
        } => {
            let (count, since) = (*failure_count as i32, Some(*failing_since));
            let changed = hook.failure_count != count || hook.failing_since != since;
            hook.failure_count = count;
            hook.failing_since = since;
            changed
        }
        WebhookDecision::Disable {
            failure_count,
            failing_since,
            reason,
        } => {
            hook.failure_count = *failure_count as i32;
            hook.failing_since = Some(*failing_since);
            hook.status = WebhookStatus::Disabled.as_str().to_owned();
            hook.disabled_reason = reason.clone();
            hook.updated_at = now;
            true
        }
    }
}

/// A due delivery as a claim reads it ([`select_json`]), with its webhook and event beside it, once each
/// however many of its deliveries fall due.
#[derive(Debug, Deserialize)]
pub(super) struct DueDelivery {
    id: String,
    webhook_id: String,
    event_id: String,
    event_type: String,
    attempt_count: i32,
}

impl From<&delivery::Model> for DueDelivery {
    fn from(delivery: &delivery::Model) -> Self {
        DueDelivery {
            id: delivery.id.clone(),
            webhook_id: delivery.webhook_id.clone(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            attempt_count: delivery.attempt_count,
        }
    }
}

impl DueDelivery {
    const COLUMNS: [&str; 5] = [
        "id",
        "webhook_id",
        "event_id",
        "event_type",
        "attempt_count",
    ];
}

/// What sending needs of a webhook, read once per claim for all its due deliveries.
#[derive(Debug, Deserialize)]
pub struct SendingWebhook {
    pub id: String,
    pub status: String,
    pub url: String,
    pub rate_limit_per_second: i32,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
}

impl From<&webhook::Model> for SendingWebhook {
    fn from(hook: &webhook::Model) -> Self {
        SendingWebhook {
            id: hook.id.clone(),
            status: hook.status.clone(),
            url: hook.url.clone(),
            rate_limit_per_second: hook.rate_limit_per_second,
            secret: hook.secret.clone(),
            previous_secret: hook.previous_secret.clone(),
            previous_secret_expires_at: hook.previous_secret_expires_at,
        }
    }
}

impl SendingWebhook {
    const COLUMNS: [&str; 7] = [
        "id",
        "status",
        "url",
        "rate_limit_per_second",
        "secret",
        "previous_secret",
        "previous_secret_expires_at",
    ];
}

/// What sending needs of an event, read once per claim for all its due deliveries.
#[derive(Debug, Deserialize)]
pub struct SendingEvent {
    pub id: String,
    pub account_id: String,
    pub data_json: String,
    pub created_at: i64,
}

impl From<&event::Model> for SendingEvent {
    fn from(event: &event::Model) -> Self {
        SendingEvent {
            id: event.id.clone(),
            account_id: event.account_id.clone(),
            data_json: event.data_json.clone(),
            created_at: event.created_at,
        }
    }
}

impl SendingEvent {
    const COLUMNS: [&str; 4] = ["id", "account_id", "data_json", "created_at"];
}

/// What a claim leased.
#[derive(Debug, Default)]
pub struct Claimed {
    pub leased: Vec<LeasedDelivery>,
    /// Whether due deliveries may remain that this claim did not lease: it filled its room, or webhooks at
    /// their cap held some back (a report will free room for them). When false the due range held nothing
    /// more, so only something new (a publish, a retry falling due, a release) can give the stream work.
    pub more_due: bool,
}

/// A stream's request for up to `room` more leases.
#[derive(Debug, Clone)]
pub struct Claim {
    pub owner: String,
    pub room: u64,
    /// For the cycle's new deliveries only ([`HandOff`](super::hand_off::HandOff)): the due range is not read.
    /// Set for a stream's parked claim, whose last read found nothing due, with nothing notified since.
    pub new_only: bool,
    /// Made while the stream's last claim left due deliveries behind ([`Claimed::more_due`]): this one will
    /// most likely lease from a backlog too (a long read and write), and, answered with more due, will not be
    /// parked again.
    pub backlog: bool,
}

impl Claim {
    /// A claim for up to `room` due deliveries.
    pub fn new(owner: impl Into<String>, room: u64) -> Self {
        Claim {
            owner: owner.into(),
            room,
            new_only: false,
            backlog: false,
        }
    }
}

/// The leases each webhook holds, as the CTE `held` that claims read for the per-webhook cap: its columns, and
/// the set read from it.
pub(super) fn held_leases() -> String {
    format!(
        "held AS MATERIALIZED (SELECT webhook_id, COUNT(*) AS n FROM deliveries WHERE {} GROUP BY webhook_id)",
        in_progress::sql("status", DeliveryStatus::Sending)
    )
}
pub(super) const HELD_COLUMNS: [&str; 2] = ["webhook_id", "n"];
pub(super) const HELD_FROM: &str = "FROM held";

pub(super) fn decode_held(json: &str) -> Result<InFlight, DbErr> {
    Ok(decode_rows::<(String, i64)>(json, HELD_FROM)?
        .into_iter()
        .map(|(webhook_id, n)| (webhook_id, n.max(0) as u64))
        .collect())
}

/// Leases each webhook holds, by webhook id: what a claim counted, plus what it leased.
pub type InFlight = HashMap<String, u64>;

/// [`Store::claim_due`] inside a transaction the caller commits; also returns the lease counts it went by
/// (for [`HandOff`]).
///
/// One read and a write. The read returns the leases each webhook holds (few rows, from the status index),
/// the head of the due range in `next_attempt_at` order (only the delivery columns, limited in the index, so
/// the database reads only what it leases whatever the range's size or its statistics: a join first had
/// PostgreSQL sort the whole due range, event bodies included), and each of those deliveries' webhooks and
/// events once. Webhooks at their cap are left out of the due range, so a slow endpoint's backlog cannot fill
/// the window and starve the others. Then one statement leases them.
pub async fn claim_in(
    db: &Cycle,
    claim: &Claim,
    per_webhook_cap: u64,
    now: i64,
    lease_expires_at: i64,
) -> Result<(Claimed, InFlight), DbErr> {
    let backend = db.get_database_backend();
    let (owner, room) = (claim.owner.as_str(), claim.room);
    // One statement reads everything: the leases each webhook holds (`held`, counted once for both their
    // uses); the head of the due range without the webhooks already at their cap (`due`), materialised so
    // that every set below sees the same rows (and, on PostgreSQL, the rows this claim locked); and each due
    // delivery's webhook and event, once each however many of its deliveries fell due (an event's body would
    // otherwise be read once per webhook).
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let with = format!(
        "WITH {}, \
         due AS MATERIALIZED (SELECT {}, next_attempt_at FROM deliveries \
         WHERE {} AND next_attempt_at <= ? \
         AND webhook_id NOT IN (SELECT webhook_id FROM held WHERE n >= ?) \
         ORDER BY next_attempt_at LIMIT CAST(? AS BIGINT){lock}) ",
        held_leases(),
        DueDelivery::COLUMNS.join(", "),
        in_progress::sql("status", DeliveryStatus::Pending),
    );
    // No slack beyond `room`: capped webhooks are left out, and a webhook reaching its cap within this
    // claim only leaves a few slots for the next one. The limit is cast, not bound bare: SQLite (3.47 on)
    // plans with the value of a bare `LIMIT ?` and so prepares the statement again whenever it changes, that
    // is on nearly every claim.
    let values = vec![
        now.into(),
        (per_webhook_cap.min(i64::MAX as u64) as i64).into(),
        (room as i64).into(),
    ];
    let due_from = "FROM due ORDER BY next_attempt_at";
    let hooks_from = "FROM webhooks WHERE id IN (SELECT webhook_id FROM due)";
    let events_from = "FROM events WHERE id IN (SELECT event_id FROM due)";
    let [counts, due, hooks, events] = select_json(
        db,
        &with,
        [
            (&HELD_COLUMNS, HELD_FROM),
            (&DueDelivery::COLUMNS, due_from),
            (&SendingWebhook::COLUMNS, hooks_from),
            (&SendingEvent::COLUMNS, events_from),
        ],
        values,
    )
    .await?;
    let mut in_flight = decode_held(&counts)?;
    let capped = in_flight.values().any(|n| *n >= per_webhook_cap);
    let due: Vec<DueDelivery> = decode_rows(&due, due_from)?;
    // A full window of candidates may have more behind it; capped webhooks have some held back.
    let mut more_due = due.len() as u64 >= room || capped;
    if due.is_empty() {
        let claimed = Claimed {
            leased: Vec::new(),
            more_due,
        };
        return Ok((claimed, in_flight));
    }
    let webhooks: HashMap<String, Arc<SendingWebhook>> =
        decode_rows::<SendingWebhook>(&hooks, hooks_from)?
            .into_iter()
            .map(|w| (w.id.clone(), Arc::new(w)))
            .collect();
    let events: HashMap<String, Arc<SendingEvent>> =
        decode_rows::<SendingEvent>(&events, events_from)?
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect();
    let lease_id = id::new(id::Kind::Lease);
    let mut leased = Vec::new();
    let mut to_hold = Vec::new();
    for delivery in due {
        if leased.len() as u64 >= room {
            break;
        }
        let (Some(hook), Some(event)) = (
            webhooks.get(&delivery.webhook_id),
            events.get(&delivery.event_id),
        ) else {
            // Deleted with its webhook in the meantime (PostgreSQL's snapshot of this read is newer).
            continue;
        };
        if hook.status != WebhookStatus::Active.as_str() && delivery.event_type != TEST_PING {
            // Left pending by a race with a pause (a lease released, a fan-out read just before the pause
            // committed): held now, so it neither goes out nor sits at the head of the due range.
            to_hold.push(delivery.id);
            continue;
        }
        let held = in_flight.entry(delivery.webhook_id.clone()).or_insert(0);
        if *held >= per_webhook_cap {
            more_due = true;
            continue;
        }
        *held += 1;
        leased.push(LeasedDelivery::new(delivery, &lease_id, hook, event));
    }
    let mut batch = Batch::new(backend);
    if !to_hold.is_empty() {
        batch.push(
            &delivery::Entity::update_many()
                .col_expr(
                    delivery::Column::Status,
                    Expr::value(DeliveryStatus::Held.as_str()),
                )
                .filter(id_list::filter(
                    backend,
                    delivery::Column::Id,
                    to_hold.iter().map(String::as_str),
                )),
        );
    }
    if !leased.is_empty() {
        batch.push(
            &delivery::Entity::update_many()
                .col_expr(
                    delivery::Column::Status,
                    Expr::value(DeliveryStatus::Sending.as_str()),
                )
                .col_expr(delivery::Column::LeaseId, Expr::value(lease_id.as_str()))
                .col_expr(delivery::Column::LeaseOwner, Expr::value(owner))
                .col_expr(
                    delivery::Column::LeaseExpiresAt,
                    Expr::value(lease_expires_at),
                )
                .filter(id_list::filter(
                    backend,
                    delivery::Column::Id,
                    leased.iter().map(|l| l.delivery_id.as_str()),
                )),
        );
    }
    db.write(batch).await?;
    Ok((Claimed { leased, more_due }, in_flight))
}

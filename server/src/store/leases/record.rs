//! Recording attempt reports: each report is checked against the lease it quotes, the retry policy
//! (`crate::core::policy`) decides what becomes of the delivery and its webhook, and the attempt, the
//! delivery's new state and any change to the webhook's failure bookkeeping are written in the same
//! transaction, which also releases the lease.
//!
//! A group of reports is recorded in three steps, each a function below: read the leases and their webhooks
//! ([`read`]), decide each report ([`Recording::decide`]), write what was decided ([`Recording::write`]).

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::Deserialize;

use super::{
    clear_lease,
    held_back::{self, HeldBack},
    hook_health::HookHealth,
};
use crate::{
    core::{
        event::DeliveryStatus,
        id,
        policy::{is_success, Decision, DeliveryDecision, Outcome, RetryPolicy, WebhookHealth},
        webhook::Status as WebhookStatus,
        Error,
    },
    store::{
        entity::{attempt, delivery, webhook},
        operational,
        sql::{
            batch::Batch,
            id_list,
            json_rows::{decode_rows, flag, select_json},
            write_txn::WriteTxn,
        },
        Store, ROWS_PER_STATEMENT,
    },
};

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
struct LeaseRow {
    id: String,
    status: DeliveryStatus,
    webhook_id: String,
    account_id: String,
    attempt_count: i32,
    lease_id: Option<String>,
    lease_owner: Option<String>,
    #[serde(deserialize_with = "flag")]
    ordered: bool,
    #[serde(deserialize_with = "flag")]
    test: bool,
}

impl LeaseRow {
    const COLUMNS: [&str; 9] = [
        "id",
        "status",
        "webhook_id",
        "account_id",
        "attempt_count",
        "lease_id",
        "lease_owner",
        "ordered",
        "test",
    ];
}

/// What recording an attempt did.
#[derive(Debug)]
pub struct Recorded {
    pub decision: Decision,
    /// The stream that owned the lease.
    pub lease_owner: Option<String>,
    pub delivery_id: String,
    /// The delivery's webhook, and its account.
    pub webhook_id: String,
    pub account_id: String,
    /// An ordered delivery finished: the next one of its webhook may now be due, which no claim waiting
    /// for new work would see without being told (`crate::store::leases::claim`).
    pub unblocks: bool,
    /// Its lease ended while its webhook or account was at its cap: what the cap kept back may now be leased,
    /// which no claim waiting for new work would see without being told. Set by the writer
    /// (`crate::writer`), which knows what its cycles left at their cap.
    pub frees_room: bool,
}

impl Store {
    /// Records a group of attempts and applies `policy` to each, in one transaction (the
    /// statements are shared by the whole group, so a busy server writes far fewer of them). Each report gets
    /// its own result: a report whose lease has ended (released, expired, or already reported) is
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
        let txn = WriteTxn::begin(self.writer()).await?;
        let recorded = record_in(&txn, reports, policy, now, self.held_back()).await?;
        self.kept_counts().forget();
        txn.commit().await?;
        Ok(recorded)
    }
}

/// [`Store::record_attempts`] inside a transaction the caller commits.
pub async fn record_in(
    txn: &WriteTxn,
    reports: &[ReadyReport],
    policy: &RetryPolicy,
    now: i64,
    held_back: &HeldBack,
) -> Result<Vec<Result<Recorded, Error>>, DbErr> {
    let mut recording = read(txn, reports, held_back).await?;
    let results = reports
        .iter()
        .map(|report| recording.decide(report, policy, now))
        .collect();
    recording.write(txn, now).await?;
    Ok(results)
}

/// A group of reports being recorded: the leases and webhooks read for it, and what was decided so far.
struct Recording {
    /// The reported deliveries still leased (`sending`), by id. A report takes its lease out, so that a
    /// second report on the same lease in the group is refused.
    leases: HashMap<String, LeaseRow>,
    /// The reported deliveries' webhooks, by id, each with whether the group changed it.
    hooks: HashMap<String, (HookHealth, bool)>,
    attempts: Vec<attempt::ActiveModel>,
    succeeded: Vec<String>,
    failed: Vec<String>,
    /// Deliveries to try again: at when, waiting as what (`pending`, or `held` behind a paused webhook).
    retries: Vec<(String, i64, DeliveryStatus)>,
    /// Webhooks the group disabled, each with whether for a 410: their accounts are told
    /// (`crate::store::operational`).
    disabled: Vec<(String, bool)>,
    /// The reported webhooks that may have deliveries held back by their cap (`super::held_back`), each with
    /// how many of its leases the group ended: as many of those go back to pending if it is still active.
    held_back: HashMap<String, u64>,
}

/// Reads the reported deliveries and their webhooks, locking on PostgreSQL what the group will write; notes
/// which of those webhooks may have deliveries held back by their cap (`held_back`).
async fn read(
    txn: &WriteTxn,
    reports: &[ReadyReport],
    held_back: &HeldBack,
) -> Result<Recording, DbErr> {
    let backend = txn.get_database_backend();
    // By id alone, status checked below: with `status = 'sending'` in the query SQLite's planner (which has no
    // statistics) walked every lease in the status index instead of looking the reported ids up.
    let (ids, values) = id_list::sql(
        backend,
        "id",
        reports.iter().map(|r| r.attempt.delivery_id.as_str()),
    );
    // A duplicate report arriving at another replica waits on the row lock, then finds the lease gone. Rows
    // are locked in id order, as webhooks are below, so concurrent groups cannot deadlock.
    let lock = match backend {
        DbBackend::Postgres => " ORDER BY id FOR UPDATE",
        _ => "",
    };
    let with = format!(
        "WITH leases AS MATERIALIZED (SELECT {} FROM deliveries WHERE {ids}{lock}) ",
        LeaseRow::COLUMNS.join(", "),
    );
    let leases_from = "FROM leases";
    let hooks_from = "FROM webhooks WHERE id IN (SELECT webhook_id FROM leases) ORDER BY id";
    let [leases, hooks] = select_json(
        txn,
        &with,
        [
            (&LeaseRow::COLUMNS, leases_from),
            (&HookHealth::COLUMNS, hooks_from),
        ],
        values,
    )
    .await?;
    let leases = decode_rows::<LeaseRow>(&leases, leases_from)?
        .into_iter()
        .filter(|d| d.status == DeliveryStatus::Sending)
        .map(|d| (d.id.clone(), d))
        .collect();
    let mut hooks: Vec<HookHealth> = decode_rows(&hooks, hooks_from)?;
    // A group that will change a webhook's failure bookkeeping (a failed attempt, or a success ending a
    // run of failures) must serialise with other groups on that row; the common case, healthy webhooks
    // answering 2xx, writes no webhook row and takes no lock.
    let writes_webhooks = reports.iter().any(|r| !is_success(r.response_status))
        || hooks
            .iter()
            .any(|h| h.failure_count != 0 || h.failing_since.is_some());
    if backend == DbBackend::Postgres && writes_webhooks {
        hooks = lock_webhooks(txn, &hooks).await?;
    }
    let held_back = held_back.among(hooks.iter().map(|w| w.id.as_str()));
    Ok(Recording {
        leases,
        hooks: hooks
            .into_iter()
            .map(|w| (w.id.clone(), (w, false)))
            .collect(),
        attempts: Vec::with_capacity(reports.len()),
        succeeded: Vec::new(),
        failed: Vec::new(),
        retries: Vec::new(),
        disabled: Vec::new(),
        held_back,
    })
}

/// `hooks` read again, locked, in id order (PostgreSQL).
async fn lock_webhooks(txn: &WriteTxn, hooks: &[HookHealth]) -> Result<Vec<HookHealth>, DbErr> {
    let locked = webhook::Entity::find()
        .filter(id_list::filter(
            DbBackend::Postgres,
            webhook::Column::Id,
            hooks.iter().map(|h| h.id.as_str()),
        ))
        .order_by_asc(webhook::Column::Id)
        .lock_exclusive()
        .all(txn)
        .await?;
    Ok(locked.into_iter().map(HookHealth::from).collect())
}

impl Recording {
    /// Decides `report`: refused if its lease has ended or it is not the lease's next attempt;
    /// otherwise the policy's decision, applied to the webhook in memory and noted for [`write`](Self::write).
    fn decide(
        &mut self,
        report: &ReadyReport,
        policy: &RetryPolicy,
        now: i64,
    ) -> Result<Recorded, Error> {
        let delivery_id = &report.attempt.delivery_id;
        let lease = match self.leases.remove(delivery_id) {
            Some(lease) if lease.lease_id.as_deref() == Some(report.lease_id.as_str()) => lease,
            other => {
                if let Some(other) = other {
                    self.leases.insert(other.id.clone(), other);
                }
                return Err(Error::FailedPrecondition(format!(
                    "lease `{}` on delivery `{delivery_id}` has ended (released, expired or already \
                     reported); the report was discarded",
                    report.lease_id
                )));
            }
        };
        let number = lease.attempt_count + 1;
        if report.attempt_number != number as u32 {
            return Err(Error::invalid(
                "attempt_number",
                format!(
                    "is {}, but this lease is for attempt {number}",
                    report.attempt_number
                ),
            ));
        }
        let Some((hook, changed)) = self.hooks.get_mut(&lease.webhook_id) else {
            return Err(Error::not_found("webhook", &lease.webhook_id));
        };
        let outcome = Outcome {
            attempt_number: report.attempt_number,
            status: report.response_status,
            retry_after: report.retry_after.clone(),
            is_test: lease.test,
            started_at: report.attempt.started_at,
        };
        let health = WebhookHealth {
            failure_count: hook.failure_count.max(0) as u32,
            failing_since: hook.failing_since,
        };
        let decision = policy.decide(&outcome, health, now);
        let was_disabled = hook.status == WebhookStatus::Disabled;
        *changed |= hook.apply(&decision.webhook, now);
        if !was_disabled && hook.status == WebhookStatus::Disabled {
            self.disabled
                .push((hook.id.clone(), report.response_status == 410));
        }
        let unblocks = lease.ordered && !matches!(decision.delivery, DeliveryDecision::RetryAt(_));
        match decision.delivery {
            DeliveryDecision::Succeeded => self.succeeded.push(lease.id.clone()),
            DeliveryDecision::Failed => self.failed.push(lease.id.clone()),
            DeliveryDecision::RetryAt(at) => {
                let active = hook.status == WebhookStatus::Active;
                let waiting = DeliveryStatus::waiting(active, lease.test);
                self.retries.push((lease.id.clone(), at, waiting));
            }
        }
        self.attempts
            .push(report.attempt.clone().into_active_model());
        if let Some(ended) = self.held_back.get_mut(&lease.webhook_id) {
            *ended += 1;
        }
        Ok(Recorded {
            decision,
            lease_owner: lease.lease_owner,
            delivery_id: lease.id,
            webhook_id: lease.webhook_id,
            account_id: lease.account_id,
            unblocks,
            frees_room: false,
        })
    }

    /// Writes the attempts, the deliveries' outcomes and the webhooks' bookkeeping in one batch, then holds
    /// back what waits for the webhooks the group changed and left inactive, and tells the accounts of those
    /// it disabled.
    async fn write(self, txn: &WriteTxn, now: i64) -> Result<(), DbErr> {
        let mut batch = Batch::new(txn.get_database_backend());
        batch.insert_rows(self.attempts);
        finish(&mut batch, &self.succeeded, DeliveryStatus::Succeeded, now);
        finish(&mut batch, &self.failed, DeliveryStatus::Failed, now);
        for (delivery_id, at, status) in self.retries {
            batch.push(
                &unlease(delivery::Entity::update_many())
                    .col_expr(delivery::Column::Status, Expr::value(status))
                    .col_expr(delivery::Column::NextAttemptAt, Expr::value(at))
                    .filter(delivery::Column::Id.eq(delivery_id)),
            );
        }
        // Room the group freed goes to the webhook's held deliveries; an inactive webhook's stay held.
        for (webhook_id, ended) in &self.held_back {
            let active = self
                .hooks
                .get(webhook_id)
                .is_some_and(|(hook, _)| hook.status == WebhookStatus::Active);
            if active && *ended > 0 {
                held_back::release(&mut batch, webhook_id, *ended);
            }
        }
        let changed: Vec<HookHealth> = self
            .hooks
            .into_values()
            .filter_map(|(hook, changed)| changed.then_some(hook))
            .collect();
        for hook in &changed {
            batch.push(&hook.update());
        }
        txn.write(batch).await?;
        for hook in changed.iter().filter(|h| h.status != WebhookStatus::Active) {
            Store::set_waiting(txn, &hook.id, false).await?;
        }
        // Once every webhook row is written, so that no disabled one hears of another's disabling.
        for (id, gone) in self.disabled {
            let hook = webhook::Entity::find_by_id(id.as_str())
                .one(txn)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(format!("webhook `{id}`")))?;
            operational::webhook_disabled(txn, &hook, gone, now).await?;
        }
        Ok(())
    }
}

/// The first value of response header `name` (any case).
fn header(headers: &BTreeMap<String, String>, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.clone())
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
                .col_expr(delivery::Column::Status, Expr::value(status))
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

//! A webhook's failure bookkeeping as recording a report group reads, changes and writes it back
//! (`super::record`): its status, failure count and the start of its run of failures. The rest of the row
//! (URL, secrets, headers) is the sending side's, and recording neither reads nor writes it.

use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde::Deserialize;

use crate::{
    core::{policy::WebhookDecision, webhook::Status as WebhookStatus},
    store::entity::webhook,
};

/// A reported delivery's webhook as recording sees it. A group reads one per webhook it has reports of, a
/// hundred or more under load, where whole rows were most of what it read; a webhook the group disables is
/// read whole once more, for the event that tells its account.
#[derive(Debug, Deserialize)]
pub(super) struct HookHealth {
    pub(super) id: String,
    pub(super) status: WebhookStatus,
    pub(super) failure_count: i32,
    pub(super) failing_since: Option<i64>,
    pub(super) disabled_reason: String,
    pub(super) updated_at: i64,
}

impl HookHealth {
    pub(super) const COLUMNS: [&str; 6] = [
        "id",
        "status",
        "failure_count",
        "failing_since",
        "disabled_reason",
        "updated_at",
    ];

    /// The update that writes this bookkeeping back, and nothing else of the row.
    pub(super) fn update(&self) -> sea_orm::UpdateMany<webhook::Entity> {
        webhook::Entity::update_many()
            .col_expr(webhook::Column::Status, Expr::value(self.status))
            .col_expr(
                webhook::Column::FailureCount,
                Expr::value(self.failure_count),
            )
            .col_expr(
                webhook::Column::FailingSince,
                Expr::value(self.failing_since),
            )
            .col_expr(
                webhook::Column::DisabledReason,
                Expr::value(self.disabled_reason.clone()),
            )
            .col_expr(webhook::Column::UpdatedAt, Expr::value(self.updated_at))
            .filter(webhook::Column::Id.eq(self.id.as_str()))
    }

    /// Applies the policy's verdict in memory; returns whether it changed anything.
    pub(super) fn apply(&mut self, decision: &WebhookDecision, now: i64) -> bool {
        // Compared field by field rather than against a clone of the row: this runs for every report.
        match decision {
            WebhookDecision::Unchanged => false,
            WebhookDecision::Healthy => {
                let changed = self.failure_count != 0 || self.failing_since.is_some();
                self.failure_count = 0;
                self.failing_since = None;
                changed
            }
            WebhookDecision::Failing {
                failure_count,
                failing_since,
            } => {
                let (count, since) = (*failure_count as i32, Some(*failing_since));
                let changed = self.failure_count != count || self.failing_since != since;
                self.failure_count = count;
                self.failing_since = since;
                changed
            }
            WebhookDecision::Disable {
                failure_count,
                failing_since,
                reason,
            } => {
                self.failure_count = *failure_count as i32;
                self.failing_since = Some(*failing_since);
                self.status = WebhookStatus::Disabled;
                self.disabled_reason = reason.clone();
                self.updated_at = now;
                true
            }
        }
    }
}

impl From<webhook::Model> for HookHealth {
    fn from(hook: webhook::Model) -> Self {
        HookHealth {
            id: hook.id,
            status: hook.status,
            failure_count: hook.failure_count,
            failing_since: hook.failing_since,
            disabled_reason: hook.disabled_reason,
            updated_at: hook.updated_at,
        }
    }
}

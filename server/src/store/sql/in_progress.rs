//! The deliveries in progress, `pending` and `sending`, as a query must name them to be served by the partial
//! index `deliveries_in_progress` (migration m0003): the claims' due range and lease counts, a stream's leases.
//! The other partial indexes by status (the finished and the held deliveries') are named the same way
//! ([`any_of`]).
//!
//! The status is written into the SQL text, not bound. A planner uses a partial index only when the query's
//! text shows that it wants rows the index holds; `status = ?` hides that (SQLite would re-prepare the
//! statement at every execution to find out, PostgreSQL's generic plans never would). The values are the
//! server's own constants, never input.

use sea_orm::sea_query::{Expr, SimpleExpr};

use sea_orm::ActiveEnum;

use crate::core::event::DeliveryStatus;

/// `column = '<status>'`, for `pending` or `sending`.
pub fn sql(column: &str, status: DeliveryStatus) -> String {
    debug_assert!(
        matches!(status, DeliveryStatus::Pending | DeliveryStatus::Sending),
        "deliveries_in_progress holds only pending and sending deliveries"
    );
    format!("{column} = '{}'", status.to_value())
}

/// [`sql`] on `deliveries.status`, as a filter.
pub fn filter(status: DeliveryStatus) -> SimpleExpr {
    Expr::cust(sql("status", status))
}

/// `status = 'a' OR status = 'b'`: `statuses` in the form the partial indexes' predicates take, for the
/// indexes of other statuses than [`sql`]'s (the finished deliveries', the held ones').
pub fn any_of(statuses: &[DeliveryStatus]) -> String {
    let terms: Vec<String> = statuses
        .iter()
        .map(|status| format!("status = '{}'", status.to_value()))
        .collect();
    terms.join(" OR ")
}

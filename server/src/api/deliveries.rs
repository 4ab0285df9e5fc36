//! `DeliveryService`: the daemon-facing half of the pipeline. `StreamDeliveries` hands a daemon leased tasks
//! (the loop lives in `dispatch`); `ReportDelivery` records each attempt and applies the retry policy.

use std::{collections::HashMap, pin::Pin, sync::Arc};

use futures::Stream;
use kit_webhooks::{proto, request, response};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth;
use crate::{
    core::{
        headers,
        id::{self, Kind},
        policy::{DeliveryDecision, WebhookDecision},
        text, time, Error, Role,
    },
    dispatch,
    state::AppState,
    store::leases::{AttemptReport, Recorded},
    watch::{Change, ChangeKind},
};

/// `max_in_flight` when the daemon asks for 0, and the most it may ask for.
const DEFAULT_MAX_IN_FLIGHT: u32 = 64;
/// The most reports one `ReportDeliveries` call may carry.
const MAX_REPORTS_PER_CALL: usize = 1000;

pub struct DeliveryApi {
    state: Arc<AppState>,
}

impl DeliveryApi {
    pub fn new(state: Arc<AppState>) -> Self {
        DeliveryApi { state }
    }
}

type TaskStream = Pin<Box<dyn Stream<Item = Result<proto::DeliveryTask, Status>> + Send>>;

#[tonic::async_trait]
impl proto::delivery_service_server::DeliveryService for DeliveryApi {
    type StreamDeliveriesStream = TaskStream;

    async fn stream_deliveries(
        &self,
        request: Request<proto::StreamDeliveriesRequest>,
    ) -> Result<Response<Self::StreamDeliveriesStream>, Status> {
        auth::require(&request, &[Role::Daemon])?;
        let req = request.into_inner();
        let max_in_flight = match req.max_in_flight {
            0 => DEFAULT_MAX_IN_FLIGHT,
            n if n > kit_webhooks::MAX_STREAM_IN_FLIGHT => {
                return Err(Error::invalid(
                    "max_in_flight",
                    format!(
                        "{n} is above the maximum of {}",
                        kit_webhooks::MAX_STREAM_IN_FLIGHT
                    ),
                )
                .into())
            }
            n => n,
        };
        text::refuse_control_characters("daemon_id", &req.daemon_id)?;
        let started = started_deliveries(&req)?;
        let owner = id::new(Kind::Stream);
        let taken_over = self
            .take_over(&req.previous_stream_id, &started, &owner)
            .await?;
        let named = |metadata: &mut tonic::metadata::MetadataMap| {
            if let Ok(value) = owner.parse() {
                metadata.insert(kit_webhooks::STREAM_ID_METADATA, value);
            }
        };
        if self.state.shutdown.is_cancelled() {
            // The leases it still works on wait under the new name, which the daemon names next time.
            self.state.streams.keep(&owner);
            let mut status = Status::unavailable(
                "the server is shutting down; open the stream again on another server or after the restart",
            );
            named(status.metadata_mut());
            return Err(status);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(max_in_flight as usize);
        tokio::spawn(dispatch::run_stream(
            self.state.clone(),
            owner.clone(),
            req.daemon_id,
            u64::from(max_in_flight),
            taken_over,
            tx,
        ));
        let mut response = Response::new(Box::pin(ReceiverStream::new(rx)) as TaskStream);
        named(response.metadata_mut());
        Ok(response)
    }

    async fn report_delivery(
        &self,
        request: Request<proto::ReportDeliveryRequest>,
    ) -> Result<Response<proto::ReportDeliveryResponse>, Status> {
        auth::require(&request, &[Role::Daemon])?;
        let outcome = self.record(vec![request.into_inner()]).await.pop();
        // One report in, one outcome out.
        outcome.unwrap_or(Ok(()))?;
        Ok(Response::new(proto::ReportDeliveryResponse {}))
    }

    async fn report_deliveries(
        &self,
        request: Request<proto::ReportDeliveriesRequest>,
    ) -> Result<Response<proto::ReportDeliveriesResponse>, Status> {
        auth::require(&request, &[Role::Daemon])?;
        let reports = request.into_inner().reports;
        if reports.len() > MAX_REPORTS_PER_CALL {
            return Err(Error::invalid(
                "reports",
                format!(
                    "{} reports; at most {MAX_REPORTS_PER_CALL} per call",
                    reports.len()
                ),
            )
            .into());
        }
        // All at once: they join the same writer cycles.
        let results = self
            .record(reports)
            .await
            .into_iter()
            .map(|outcome| match outcome {
                Ok(()) => proto::ReportResult::default(),
                Err(err) => {
                    let status = Status::from(err);
                    proto::ReportResult {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }
                }
            })
            .collect();
        Ok(Response::new(proto::ReportDeliveriesResponse { results }))
    }
}

impl DeliveryApi {
    /// Passes the leases of the daemon's previous stream that it still works on (`started`) to stream
    /// `owner`, and returns the others to the queue at once (see `StreamDeliveriesRequest`). Returns how
    /// many passed.
    async fn take_over(
        &self,
        previous: &str,
        started: &[String],
        owner: &str,
    ) -> Result<u64, Error> {
        if previous.is_empty() {
            return Ok(0);
        }
        let previous = id::parse("previous_stream_id", Kind::Stream, previous)?;
        let expires = time::now_ms() + self.state.config.lease_ttl().as_millis() as i64;
        let (taken, returned) = self
            .state
            .store
            .take_over_leases(previous, started, owner, expires)
            .await?;
        tracing::info!(stream = %owner, previous = %previous, taken, returned, "took over a previous stream's leases");
        if returned > 0 {
            self.state.deliveries_changed.notify();
        }
        Ok(taken)
    }

    /// Counts, logs and tells the watchers what `recorded` did; returns whether it changed what is due in a
    /// way no stream sees: a retry scheduled, an ordered delivery finished, room freed for a webhook or an
    /// account at its cap, or a webhook disabled (whose account is told, with new deliveries).
    fn recorded(&self, recorded: &Recorded) -> bool {
        let disabled = match &recorded.decision.webhook {
            WebhookDecision::Disable { reason, .. } => {
                tracing::warn!(webhook = %recorded.webhook_id, %reason, "webhook disabled");
                true
            }
            _ => false,
        };
        self.state
            .metrics
            .recorded(&recorded.decision.delivery, disabled);
        let (account, webhook) = (&recorded.account_id, &recorded.webhook_id);
        let watchers = &self.state.watchers;
        // Built (and the id copied) only when somebody watches: this runs for every report.
        watchers.tell(|| {
            let delivery_id = recorded.delivery_id.clone();
            Change::new(account, webhook, ChangeKind::Attempt { delivery_id })
        });
        if disabled {
            watchers.tell(|| Change::new(account, webhook, ChangeKind::Webhook));
        }
        disabled
            || recorded.unblocks
            || recorded.frees_room
            || matches!(recorded.decision.delivery, DeliveryDecision::RetryAt(_))
    }

    /// Validates `reports`, records the valid ones in one writer submission (one queue item and one wake-up
    /// for the call, not one per report) and wakes whoever waits on them. Returns each report's outcome, in
    /// order: a report refused, by validation or by the store, does not fail the others.
    async fn record(&self, reports: Vec<proto::ReportDeliveryRequest>) -> Vec<Result<(), Error>> {
        let mut outcomes: Vec<Result<(), Error>> = Vec::with_capacity(reports.len());
        let mut valid = Vec::with_capacity(reports.len());
        for req in reports {
            match attempt_report(req) {
                Ok(report) => {
                    outcomes.push(Ok(()));
                    valid.push(report);
                }
                Err(err) => outcomes.push(Err(err)),
            }
        }
        let recorded = match self.state.writer.report(valid).await {
            Ok(recorded) => recorded,
            Err(err) => {
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(err.copied());
                }
                return outcomes;
            }
        };
        // The valid reports' slots, in order, take their recorded outcomes.
        let mut due_changed = false;
        let mut reported: HashMap<String, u64> = HashMap::new();
        let slots = outcomes.iter_mut().filter(|o| o.is_ok());
        for (slot, result) in slots.zip(recorded) {
            match result {
                Ok(recorded) => {
                    due_changed |= self.recorded(&recorded);
                    if let Some(owner) = recorded.lease_owner {
                        *reported.entry(owner).or_default() += 1;
                    }
                }
                Err(err) => *slot = Err(err),
            }
        }
        for (owner, count) in reported {
            self.state.streams.reported(&owner, count);
        }
        self.state.attempt_recorded.notify_waiters();
        if due_changed {
            // Idle streams read the due range again, and recompute when the next attempt falls due.
            self.state.deliveries_changed.notify();
        }
        outcomes
    }
}

/// The deliveries of `req.started`, checked.
fn started_deliveries(req: &proto::StreamDeliveriesRequest) -> Result<Vec<String>, Error> {
    if req.started.len() > kit_webhooks::MAX_STREAM_IN_FLIGHT as usize {
        return Err(Error::invalid(
            "started",
            format!(
                "{} leases; a stream holds at most {}",
                req.started.len(),
                kit_webhooks::MAX_STREAM_IN_FLIGHT
            ),
        ));
    }
    if !req.started.is_empty() && req.previous_stream_id.is_empty() {
        return Err(Error::invalid(
            "started",
            "names leases but no previous_stream_id",
        ));
    }
    req.started
        .iter()
        .map(|lease| {
            id::parse("started.lease_id", Kind::Lease, &lease.lease_id)?;
            Ok(id::parse("started.delivery_id", Kind::Delivery, &lease.delivery_id)?.to_owned())
        })
        .collect()
}

/// A daemon's report as the store takes it, or why it is refused.
fn attempt_report(req: proto::ReportDeliveryRequest) -> Result<AttemptReport, Error> {
    let delivery_id = id::parse("delivery_id", Kind::Delivery, &req.delivery_id)?.to_owned();
    let lease_id = id::parse("lease_id", Kind::Lease, &req.lease_id)?.to_owned();
    if req.attempt_number == 0 {
        return Err(Error::invalid("attempt_number", "must be 1 or more"));
    }
    let mut body = req.response_body;
    body.truncate(response::MAX_BODY_BYTES);
    let request_headers = if req.request_headers.is_empty() {
        let webhook_headers = headers::as_reported(req.webhook_headers);
        request::reported_headers(
            req.user_agent,
            req.signed_at,
            req.signature,
            webhook_headers,
        )
    } else {
        req.request_headers
    };
    Ok(AttemptReport {
        delivery_id,
        lease_id,
        attempt_number: req.attempt_number,
        started_at: req
            .started_at
            .as_ref()
            .map(time::to_ms)
            .unwrap_or_else(time::now_ms),
        duration_ms: req.duration_ms,
        request_headers,
        response_status: req.response_status,
        response_headers: response::capped_headers(req.response_headers),
        response_body: stored_text(String::from_utf8_lossy(&body).into_owned()),
        error_kind: stored_text(req.error_kind),
        error: stored_text(req.error),
    })
}

/// Free text of a report as it is stored and shown: PostgreSQL's `text` cannot hold NUL, so NUL becomes U+FFFD,
/// as bytes that are not UTF-8 already have. (One receiver answering with binary would otherwise fail the
/// commit of every report recorded beside it.)
fn stored_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

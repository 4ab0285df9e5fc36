//! `WebhookService`: an account admin's view of webhooks and their deliveries. Every call is scoped to the
//! admin key's account.

use std::{sync::Arc, time::Duration};

use kit_webhooks::{catalogue, proto};
use tonic::{Request, Response, Status};

use super::{auth, convert, watch, webhook_edit::WebhookEdit};
use crate::{
    core::{
        audit::{Action, Actor, AuditEntry},
        event::{self, DeliveryStatus},
        headers,
        id::{self, Kind},
        page::PageRequest,
        payload, secret, time,
        webhook::{self, Status as WebhookStatus},
        Error,
    },
    state::AppState,
    store::{deliveries::DeliveryFilter, entity, events::new_event, webhooks::new_webhook, Store},
    watch::{Change, ChangeKind},
};

pub struct WebhookApi {
    state: Arc<AppState>,
}

impl WebhookApi {
    pub fn new(state: Arc<AppState>) -> Self {
        WebhookApi { state }
    }

    async fn webhook_of(
        &self,
        account: &str,
        field: &'static str,
        id: &str,
    ) -> Result<entity::webhook::Model, Error> {
        let id = id::parse(field, Kind::Webhook, id)?;
        self.state
            .store
            .find_webhook(account, id)
            .await?
            .ok_or_else(|| Error::not_found("webhook", id))
    }

    /// Runs `change` on the actor's webhook in one transaction, recorded as `action`, and returns the result.
    async fn change_webhook(
        &self,
        actor: &Actor,
        action: Action,
        id: &str,
        change: impl FnOnce(&mut entity::webhook::Model) -> Result<(), Error>,
    ) -> Result<entity::webhook::Model, Error> {
        let id = id::parse("id", Kind::Webhook, id)?;
        let entry = AuditEntry::new(actor, action, id);
        let row = self
            .state
            .store
            .update_webhook(&actor.account_id, id, entry, |row| {
                change(row)?;
                row.updated_at = time::now_ms();
                Ok::<_, Error>(())
            })
            .await?
            .ok_or_else(|| Error::not_found("webhook", id))?;
        self.changed(&row.account_id, &row.id, ChangeKind::Webhook);
        Ok(row)
    }

    /// Tells the watchers of the account's webhooks (`WatchWebhooks`).
    fn changed(&self, account: &str, webhook_id: &str, kind: ChangeKind) {
        (self.state.watchers).tell(|| Change::new(account, webhook_id, kind));
    }
}

#[tonic::async_trait]
impl proto::webhook_service_server::WebhookService for WebhookApi {
    type WatchWebhooksStream = watch::ChangeStream;

    async fn watch_webhooks(
        &self,
        request: Request<proto::WatchWebhooksRequest>,
    ) -> Result<Response<Self::WatchWebhooksStream>, Status> {
        let account = auth::require_admin(&request)?;
        let id = &request.get_ref().webhook_id;
        let webhook_id = match id.is_empty() {
            true => None,
            false => Some(self.webhook_of(&account, "webhook_id", id).await?.id),
        };
        let changes = watch::changes(self.state.clone(), account, webhook_id)?;
        Ok(Response::new(changes))
    }

    async fn create_webhook(
        &self,
        request: Request<proto::CreateWebhookRequest>,
    ) -> Result<Response<proto::CreateWebhookResponse>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let account = &actor.account_id;
        let req = request.into_inner();
        let url = webhook::validate_url(&req.url, self.state.config.allow_http)?;
        let description = webhook::validate_description(&req.description)?;
        let events = webhook::validate_events(&req.events)?;
        let rate = webhook::validate_rate_limit(req.rate_limit_per_second)?;
        let headers = headers::validate("headers", &req.headers)?;
        let ordering = convert::ordering("ordering", req.ordering)?;
        let mut row = new_webhook(account, &url, &description, &events, rate);
        row.headers = headers::encode(&headers);
        row.ordering = ordering;
        let secret = row.secret.clone();
        let row = self
            .state
            .store
            .insert_webhook(row, &self.state.secrets, &actor)
            .await
            .map_err(Error::from)?;
        tracing::info!(webhook = %row.id, account = %row.account_id, "webhook created");
        self.changed(&row.account_id, &row.id, ChangeKind::Webhook);
        Ok(Response::new(proto::CreateWebhookResponse {
            secret,
            webhook: Some(convert::webhook(row, &self.state.secrets)),
        }))
    }

    async fn get_webhook(
        &self,
        request: Request<proto::GetWebhookRequest>,
    ) -> Result<Response<proto::Webhook>, Status> {
        let account = auth::require_admin(&request)?;
        let row = self
            .webhook_of(&account, "id", &request.get_ref().id)
            .await?;
        Ok(Response::new(convert::webhook(row, &self.state.secrets)))
    }

    async fn list_webhooks(
        &self,
        request: Request<proto::ListWebhooksRequest>,
    ) -> Result<Response<proto::ListWebhooksResponse>, Status> {
        let account = auth::require_admin(&request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page_size, &req.page_token, Kind::Webhook)?;
        let mut rows = self
            .state
            .store
            .list_webhooks(&account, &page)
            .await
            .map_err(Error::from)?;
        let next_page_token = page.finish(&mut rows, |row| &row.id);
        Ok(Response::new(proto::ListWebhooksResponse {
            webhooks: rows
                .into_iter()
                .map(|row| convert::webhook(row, &self.state.secrets))
                .collect(),
            next_page_token,
        }))
    }

    async fn update_webhook(
        &self,
        request: Request<proto::UpdateWebhookRequest>,
    ) -> Result<Response<proto::Webhook>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let req = request.into_inner();
        // Everything is validated before the row is touched, so a bad field changes nothing.
        let edit = WebhookEdit::parse(&req, self.state.config.allow_http)?;
        let ring = &self.state.secrets;
        let row = self
            .change_webhook(&actor, Action::WebhookUpdate, &req.id, |row| {
                edit.apply(row, ring);
                Ok(())
            })
            .await?;
        Ok(Response::new(convert::webhook(row, &self.state.secrets)))
    }

    async fn delete_webhook(
        &self,
        request: Request<proto::DeleteWebhookRequest>,
    ) -> Result<Response<proto::DeleteWebhookResponse>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let id = id::parse("id", Kind::Webhook, &request.get_ref().id)?;
        let deleted = self
            .state
            .store
            .delete_webhook(&actor.account_id, id, &actor)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("webhook", id))?;
        tracing::info!(webhook = %id, deliveries = deleted, "webhook deleted");
        self.changed(&actor.account_id, id, ChangeKind::WebhookDeleted);
        Ok(Response::new(proto::DeleteWebhookResponse {
            deliveries_deleted: deleted,
        }))
    }

    async fn pause_webhook(
        &self,
        request: Request<proto::PauseWebhookRequest>,
    ) -> Result<Response<proto::Webhook>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let row = self
            .change_webhook(
                &actor,
                Action::WebhookPause,
                &request.get_ref().id,
                |row| match row.status {
                    WebhookStatus::Disabled => Err(Error::FailedPrecondition(format!(
                        "webhook `{}` is disabled ({}); resume it instead",
                        row.id, row.disabled_reason
                    ))),
                    _ => {
                        row.status = WebhookStatus::Paused;
                        Ok(())
                    }
                },
            )
            .await?;
        Ok(Response::new(convert::webhook(row, &self.state.secrets)))
    }

    async fn resume_webhook(
        &self,
        request: Request<proto::ResumeWebhookRequest>,
    ) -> Result<Response<proto::Webhook>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let row = self
            .change_webhook(
                &actor,
                Action::WebhookResume,
                &request.get_ref().id,
                |row| {
                    if row.status != WebhookStatus::Active {
                        row.status = WebhookStatus::Active;
                        row.failure_count = 0;
                        row.failing_since = None;
                        row.disabled_reason.clear();
                    }
                    Ok(())
                },
            )
            .await?;
        // Held deliveries are due again.
        self.state.deliveries_changed.notify();
        Ok(Response::new(convert::webhook(row, &self.state.secrets)))
    }

    async fn rotate_secret(
        &self,
        request: Request<proto::RotateSecretRequest>,
    ) -> Result<Response<proto::RotateSecretResponse>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let req = request.into_inner();
        let grace = webhook::validate_grace_period(req.grace_period_seconds)?;
        let fresh = secret::new_signing_secret();
        let ring = &self.state.secrets;
        let row = self
            .change_webhook(&actor, Action::WebhookRotateSecret, &req.id, |row| {
                let now = time::now_ms();
                let in_grace = row.previous_secret_expires_at.filter(|until| *until > now);
                if let (Some(until), true) = (in_grace, grace > 0) {
                    // Replacing the previous secret would end its grace early, and its receivers would fail.
                    return Err(Error::FailedPrecondition(format!(
                        "webhook `{}`'s previous secret is still accepted until {}; rotate again after that, \
                         or with grace_period_seconds 0 to stop accepting both old secrets now",
                        row.id,
                        time::rfc3339(until)
                    )));
                }
                let old = std::mem::replace(&mut row.secret, ring.seal(&row.id, &fresh));
                if grace > 0 {
                    row.previous_secret = Some(old);
                    row.previous_secret_expires_at = Some(now + i64::from(grace) * 1000);
                } else {
                    row.previous_secret = None;
                    row.previous_secret_expires_at = None;
                }
                Ok(())
            })
            .await?;
        tracing::info!(webhook = %row.id, grace_seconds = grace, "signing secret rotated");
        Ok(Response::new(proto::RotateSecretResponse {
            secret: fresh,
            webhook: Some(convert::webhook(row, &self.state.secrets)),
        }))
    }

    async fn get_webhook_secret(
        &self,
        request: Request<proto::GetWebhookSecretRequest>,
    ) -> Result<Response<proto::GetWebhookSecretResponse>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let row = self
            .webhook_of(&actor.account_id, "id", &request.get_ref().id)
            .await?;
        let secret = self.state.secrets.open(&row.id, &row.secret)?;
        // Recorded before the secret is shown: a reveal the log misses never happens.
        let entry = AuditEntry::new(&actor, Action::WebhookRevealSecret, &row.id);
        Store::record_audit(self.state.store.writer(), &entry)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(proto::GetWebhookSecretResponse { secret }))
    }

    async fn send_test_ping(
        &self,
        request: Request<proto::SendTestPingRequest>,
    ) -> Result<Response<proto::SendTestPingResponse>, Status> {
        let account = auth::require_admin(&request)?;
        let req = request.into_inner();
        let webhook = self.webhook_of(&account, "id", &req.id).await?;
        let (event_type, data_json) = if req.event_type.is_empty() {
            if !req.data_json.is_empty() {
                return Err(Error::invalid("data_json", "is only for an `event_type`").into());
            }
            let data = serde_json::json!({
                "webhook_id": webhook.id,
                "message": "This is a test ping from Kit Webhooks.",
            });
            (catalogue::TEST_PING, data.to_string())
        } else {
            let event_type = event::validate_test_type("event_type", &req.event_type)?;
            let max_bytes = self.state.config.max_payload_bytes;
            (
                event_type,
                payload::triggered(event_type, req.data_json, max_bytes)?,
            )
        };
        let event = new_event(account.clone(), event_type, data_json, None);
        let delivery = self
            .state
            .store
            .queue_test_delivery(event, &webhook)
            .await
            .map_err(Error::from)?;
        self.state.metrics.pinged();
        self.state.deliveries_changed.notify();
        let delivery = if req.wait {
            wait_for_attempt(&self.state, &account, &delivery.id).await?
        } else {
            convert::delivery(delivery, Vec::new())
        };
        Ok(Response::new(proto::SendTestPingResponse {
            delivery: Some(delivery),
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<proto::ListDeliveriesRequest>,
    ) -> Result<Response<proto::ListDeliveriesResponse>, Status> {
        let account = auth::require_admin(&request)?;
        let req = request.into_inner();
        let webhook = self
            .webhook_of(&account, "webhook_id", &req.webhook_id)
            .await?;
        let status = match proto::DeliveryStatus::try_from(req.status) {
            Ok(proto::DeliveryStatus::Unspecified) => None,
            Ok(proto::DeliveryStatus::Pending) => Some(DeliveryStatus::Pending),
            Ok(proto::DeliveryStatus::Sending) => Some(DeliveryStatus::Sending),
            Ok(proto::DeliveryStatus::Succeeded) => Some(DeliveryStatus::Succeeded),
            Ok(proto::DeliveryStatus::Failed) => Some(DeliveryStatus::Failed),
            Err(_) => {
                return Err(Error::invalid(
                    "status",
                    format!("{} is not a DeliveryStatus", req.status),
                )
                .into())
            }
        };
        let event_type = event::validate_type_filter("event_type", &req.event_type)?;
        let page = PageRequest::parse(req.page_size, &req.page_token, Kind::Delivery)?;
        let filter = DeliveryFilter { status, event_type };
        let mut rows = self
            .state
            .store
            .list_deliveries(&account, &webhook.id, &filter, &page)
            .await
            .map_err(Error::from)?;
        let next_page_token = page.finish(&mut rows, |row| &row.id);
        Ok(Response::new(proto::ListDeliveriesResponse {
            deliveries: rows
                .into_iter()
                .map(|row| convert::delivery(row, Vec::new()))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_delivery(
        &self,
        request: Request<proto::GetDeliveryRequest>,
    ) -> Result<Response<proto::Delivery>, Status> {
        let account = auth::require_admin(&request)?;
        let id = id::parse("id", Kind::Delivery, &request.get_ref().id)?;
        let (row, attempts) = self
            .state
            .store
            .find_delivery(&account, id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("delivery", id))?;
        Ok(Response::new(convert::delivery(row, attempts)))
    }

    async fn retry_delivery(
        &self,
        request: Request<proto::RetryDeliveryRequest>,
    ) -> Result<Response<proto::Delivery>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let id = id::parse("id", Kind::Delivery, &request.get_ref().id)?;
        let row = self
            .state
            .store
            .retry_delivery(&actor.account_id, id, &actor)
            .await?
            .ok_or_else(|| Error::not_found("delivery", id))?;
        self.state.deliveries_changed.notify();
        Ok(Response::new(convert::delivery(row, Vec::new())))
    }

    async fn replay_deliveries(
        &self,
        request: Request<proto::ReplayDeliveriesRequest>,
    ) -> Result<Response<proto::ReplayDeliveriesResponse>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let req = request.into_inner();
        let webhook = self
            .webhook_of(&actor.account_id, "webhook_id", &req.webhook_id)
            .await?;
        let since = req
            .since
            .as_ref()
            .map(time::to_ms)
            .ok_or_else(|| Error::invalid("since", "is required"))?;
        let until = req
            .until
            .as_ref()
            .map(time::to_ms)
            .unwrap_or_else(|| time::now_ms() + 1);
        if until <= since {
            return Err(Error::invalid("until", "must be after `since`").into());
        }
        let requeued = self
            .state
            .store
            .replay_deliveries(&webhook, since, until, &actor)
            .await
            .map_err(Error::from)?;
        tracing::info!(webhook = %webhook.id, requeued, "failed deliveries replayed");
        self.state.deliveries_changed.notify();
        Ok(Response::new(proto::ReplayDeliveriesResponse {
            deliveries_requeued: requeued,
        }))
    }
}

/// Waits until the delivery has an attempt recorded (or the request timeout and a margin have passed) and
/// returns it as it then stands.
async fn wait_for_attempt(
    state: &AppState,
    account: &str,
    delivery_id: &str,
) -> Result<proto::Delivery, Error> {
    let deadline =
        tokio::time::Instant::now() + state.config.request_timeout + Duration::from_secs(5);
    loop {
        // Register interest before reading, so a report between the read and the wait is not missed.
        let recorded = state.attempt_recorded.notified();
        tokio::pin!(recorded);
        recorded.as_mut().enable();
        let (row, attempts) = state
            .store
            .find_delivery(account, delivery_id)
            .await?
            .ok_or_else(|| Error::not_found("delivery", delivery_id))?;
        // The row's count, not the attempts list: the count changes in the same commit as the status,
        // and the attempts are read after the row, so they include every attempt it counts.
        if row.attempt_count > 0 || tokio::time::Instant::now() >= deadline {
            return Ok(convert::delivery(row, attempts));
        }
        let _ = tokio::time::timeout_at(deadline, recorded).await;
    }
}

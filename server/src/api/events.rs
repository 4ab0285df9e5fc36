//! `EventService`: publishing events (publisher keys) and reading them back (publisher or admin keys).

use std::sync::Arc;

use kit_webhooks::{definitions, proto};
use tonic::{Request, Response, Status};

use super::{
    auth::{self, Principal},
    convert,
};
use crate::{
    core::{
        event,
        id::{self, Kind},
        page::PageRequest,
        payload, Error, Role,
    },
    state::AppState,
    store::events::{new_event, Published},
};

pub struct EventApi {
    state: Arc<AppState>,
}

impl EventApi {
    pub fn new(state: Arc<AppState>) -> Self {
        EventApi { state }
    }

    /// The answer to a publish (or a trigger) once its cycle committed.
    fn answer(&self, published: Published) -> proto::PublishEventResponse {
        // Deliveries handed to a waiting stream in the publishing cycle are on their way already.
        if published.deliveries_pending > 0 {
            self.state.deliveries_changed.notify();
        }
        proto::PublishEventResponse {
            event: Some(convert::event(published.event)),
            deliveries_queued: published.deliveries_queued,
        }
    }
}

/// A reader of events: admins see their own account, publishers every account.
fn reader<T>(request: &Request<T>) -> Result<Principal, Error> {
    auth::require(request, &[Role::Admin, Role::Publisher])
}

#[tonic::async_trait]
impl proto::event_service_server::EventService for EventApi {
    async fn publish_event(
        &self,
        request: Request<proto::PublishEventRequest>,
    ) -> Result<Response<proto::PublishEventResponse>, Status> {
        auth::require(&request, &[Role::Publisher])?;
        let req = request.into_inner();
        let account_id = event::validate_account_id("account_id", &req.account_id)?;
        let event_type = event::validate_type("type", &req.r#type)?;
        let data_json = event::validate_data(req.data_json, self.state.config.max_payload_bytes)?;
        if self.state.config.validate_payloads {
            payload::check(event_type, &data_json)?;
        }
        let idempotency_key = event::validate_idempotency_key(&req.idempotency_key)?;
        let row = new_event(account_id, event_type, data_json, idempotency_key);
        // What a reused key must match; kept only when there is a key (the data may be 256 KiB).
        let asked = row
            .idempotency_key
            .is_some()
            .then(|| (row.id.clone(), row.data_json.clone()));
        let published = self.state.writer.publish(row).await?;
        // A reused key answers with the first event, which was counted when it was published.
        if asked
            .as_ref()
            .is_none_or(|(id, _)| *id == published.event.id)
        {
            let created = u64::from(published.deliveries_queued);
            self.state
                .metrics
                .published(&published.event.r#type, created);
        }
        if let (Some((id, data_json)), Some(key)) = (asked, &published.event.idempotency_key) {
            let original = &published.event;
            if original.id != id {
                event::check_same_request(
                    key,
                    (&original.id, &original.r#type, &original.data_json),
                    event_type,
                    &data_json,
                )?;
            }
        }
        Ok(Response::new(self.answer(published)))
    }

    async fn trigger_event(
        &self,
        request: Request<proto::TriggerEventRequest>,
    ) -> Result<Response<proto::PublishEventResponse>, Status> {
        let account = auth::require_admin(&request)?;
        let req = request.into_inner();
        let event_type = event::validate_type("type", &req.r#type)?;
        let max_bytes = self.state.config.max_payload_bytes;
        let data_json = payload::triggered(event_type, req.data_json, max_bytes)?;
        let row = new_event(account, event_type, data_json, None);
        let published = self.state.writer.publish(row).await?;
        self.state.metrics.published(
            &published.event.r#type,
            u64::from(published.deliveries_queued),
        );
        tracing::info!(event = %published.event.id, account = %published.event.account_id, "event triggered");
        Ok(Response::new(self.answer(published)))
    }

    async fn get_event(
        &self,
        request: Request<proto::GetEventRequest>,
    ) -> Result<Response<proto::Event>, Status> {
        let principal = reader(&request)?;
        let id = id::parse("id", Kind::Event, &request.get_ref().id)?;
        let row = self
            .state
            .store
            .find_event(principal.account_id.as_deref(), id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("event", id))?;
        Ok(Response::new(convert::event(row)))
    }

    async fn list_events(
        &self,
        request: Request<proto::ListEventsRequest>,
    ) -> Result<Response<proto::ListEventsResponse>, Status> {
        let principal = reader(&request)?;
        let req = request.into_inner();
        let account_id = match (&principal.account_id, req.account_id.as_str()) {
            (Some(own), "") => Some(own.clone()),
            (Some(own), asked) if asked == own => Some(own.clone()),
            // Another account's events look exactly like no events at all.
            (Some(_), _) => {
                return Ok(Response::new(proto::ListEventsResponse::default()));
            }
            (None, "") => None,
            (None, asked) => Some(event::validate_account_id("account_id", asked)?),
        };
        let event_type = event::validate_type_filter("type", &req.r#type)?;
        let page = PageRequest::parse(req.page_size, &req.page_token, Kind::Event)?;
        let mut rows = self
            .state
            .store
            .list_events(account_id.as_deref(), event_type, &page)
            .await
            .map_err(Error::from)?;
        let next_page_token = page.finish(&mut rows, |row| &row.id);
        Ok(Response::new(proto::ListEventsResponse {
            events: rows.into_iter().map(convert::event).collect(),
            next_page_token,
        }))
    }

    async fn list_event_types(
        &self,
        request: Request<proto::ListEventTypesRequest>,
    ) -> Result<Response<proto::ListEventTypesResponse>, Status> {
        reader(&request)?;
        let event_types = definitions::types().map(convert::event_type).collect();
        Ok(Response::new(proto::ListEventTypesResponse { event_types }))
    }

    async fn get_event_type(
        &self,
        request: Request<proto::GetEventTypeRequest>,
    ) -> Result<Response<proto::EventType>, Status> {
        reader(&request)?;
        let name = &request.get_ref().name;
        if name.is_empty() {
            return Err(Error::invalid("name", "is required").into());
        }
        let event_type = definitions::types()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::not_found("event type", name))?;
        Ok(Response::new(convert::event_type(event_type)))
    }
}

//! `EventService`: publishing events (publisher keys), one or many at a time, and reading them back
//! (publisher or admin keys).

use std::sync::Arc;

use futures::future::join_all;
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
    store::{
        entity::event as stored,
        events::{new_event, Published},
    },
};

/// The most events one `PublishEvents` call takes.
pub const MAX_EVENTS_PER_CALL: usize = 1000;

pub struct EventApi {
    state: Arc<AppState>,
}

/// What a publish with an idempotency key asked for: a reused key must have asked for the same (the data may
/// be 256 KiB, so this is kept only when there is a key).
struct Asked {
    id: String,
    event_type: &'static str,
    data_json: String,
}

impl EventApi {
    pub fn new(state: Arc<AppState>) -> Self {
        EventApi { state }
    }

    /// The event `req` asks to publish, validated, as a row to store.
    fn prepare(
        &self,
        req: proto::PublishEventRequest,
    ) -> Result<(stored::Model, Option<Asked>), Error> {
        let account_id = event::validate_account_id("account_id", &req.account_id)?;
        let event_type = event::validate_type("type", &req.r#type)?;
        let data_json = event::validate_data(req.data_json, self.state.config.max_payload_bytes)?;
        if self.state.config.validate_payloads {
            payload::check(event_type, &data_json)?;
        }
        let idempotency_key = event::validate_idempotency_key(&req.idempotency_key)?;
        let row = new_event(account_id, event_type, data_json, idempotency_key);
        let asked = row.idempotency_key.is_some().then(|| Asked {
            id: row.id.clone(),
            event_type,
            data_json: row.data_json.clone(),
        });
        Ok((row, asked))
    }

    /// Stores a prepared event and its fan-out, and answers once committed: a reused idempotency key answers
    /// with the first event, if it asked for the same.
    async fn publish(
        &self,
        (row, asked): (stored::Model, Option<Asked>),
    ) -> Result<proto::PublishEventResponse, Error> {
        let published = self.state.writer.publish(row).await?;
        // A reused key answers with the first event, which was counted when it was published.
        if asked
            .as_ref()
            .is_none_or(|asked| asked.id == published.event.id)
        {
            let created = u64::from(published.deliveries_queued);
            self.state
                .metrics
                .published(&published.event.r#type, created);
        }
        if let (Some(asked), Some(key)) = (asked, &published.event.idempotency_key) {
            let original = &published.event;
            if original.id != asked.id {
                event::check_same_request(
                    key,
                    (&original.id, &original.r#type, &original.data_json),
                    asked.event_type,
                    &asked.data_json,
                )?;
            }
        }
        Ok(self.answer(published))
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

/// The outcome of event `index` of a `PublishEvents` call, as `PublishEvent` would have answered it.
fn result_of(
    index: usize,
    published: Result<proto::PublishEventResponse, Error>,
) -> proto::PublishEventResult {
    match published {
        Ok(published) => proto::PublishEventResult {
            code: tonic::Code::Ok as i32,
            message: String::new(),
            published: Some(published),
        },
        Err(error) => {
            let named = matches!(error, Error::InvalidArgument { .. });
            let status = Status::from(error);
            let message = match named {
                // The field, as the call names it.
                true => format!("events[{index}].{}", status.message()),
                false => status.message().to_owned(),
            };
            proto::PublishEventResult {
                code: status.code() as i32,
                message,
                published: None,
            }
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
        let prepared = self.prepare(request.into_inner())?;
        Ok(Response::new(self.publish(prepared).await?))
    }

    async fn publish_events(
        &self,
        request: Request<proto::PublishEventsRequest>,
    ) -> Result<Response<proto::PublishEventsResponse>, Status> {
        auth::require(&request, &[Role::Publisher])?;
        let events = request.into_inner().events;
        if events.is_empty() {
            return Err(Error::invalid("events", "is empty: give at least one event").into());
        }
        if events.len() > MAX_EVENTS_PER_CALL {
            let message = format!(
                "has {} events; a call takes at most {MAX_EVENTS_PER_CALL}",
                events.len()
            );
            return Err(Error::invalid("events", message).into());
        }
        // All queued for the writer at once, in order, so that they share its cycles (and a key repeated in
        // the call answers with its first event); each answered on its own.
        let published = join_all(events.into_iter().map(|req| async move {
            let prepared = self.prepare(req)?;
            self.publish(prepared).await
        }))
        .await;
        let results = published
            .into_iter()
            .enumerate()
            .map(|(index, published)| result_of(index, published))
            .collect();
        Ok(Response::new(proto::PublishEventsResponse { results }))
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

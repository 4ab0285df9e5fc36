//! [`Client`]: one method per RPC, plain Rust values in, the contract's messages out, and list calls as
//! streams that follow `next_page_token` on their own.

use std::time::{Duration, SystemTime};

use futures::{stream, Stream, TryStreamExt};
use kit_webhooks::proto::{
    self, api_key_service_client::ApiKeyServiceClient, audit_service_client::AuditServiceClient,
    event_service_client::EventServiceClient, webhook_service_client::WebhookServiceClient,
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::interceptor::InterceptedService,
    transport::{Channel, ClientTlsConfig, Endpoint},
    Request, Status,
};

use crate::{Error, NewWebhook, WebhookUpdate};

/// Adds the API key to every call.
#[derive(Clone)]
pub(crate) struct Bearer(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub(crate) type Authed = InterceptedService<Channel, Bearer>;

/// A connection to a Kit Webhooks server with one API key. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    /// The connection, for [`Client::with_token`].
    channel: Channel,
    webhooks: WebhookServiceClient<Authed>,
    events: EventServiceClient<Authed>,
    /// The account's API keys and audit log (`crate::account`).
    pub(crate) keys: ApiKeyServiceClient<Authed>,
    pub(crate) audit: AuditServiceClient<Authed>,
}

/// Which deliveries of a webhook to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub webhook_id: String,
    pub status: Option<proto::DeliveryStatus>,
    pub event_type: Option<String>,
}

/// Items per page when a list call pages through everything.
pub(crate) const PAGE_SIZE: u32 = 200;

impl Client {
    /// Connects to `endpoint` (`http://…`, or `https://…` with TLS against the system and webpki roots) with
    /// the API key `token`.
    pub async fn connect(endpoint: &str, token: &str) -> Result<Client, Error> {
        let mut builder = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| {
                Error::new(
                    tonic::Code::InvalidArgument,
                    format!("server: `{endpoint}` is not a URL ({e})"),
                )
            })?
            .connect_timeout(Duration::from_secs(5))
            // The server closes a connection whose client stays silent (5 minutes): a watch
            // (`watch_webhooks`) may wait longer than that for a change.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if endpoint.starts_with("https://") {
            builder = builder.tls_config(ClientTlsConfig::new().with_enabled_roots())?;
        }
        let channel = builder.connect().await?;
        Self::from_channel(channel, token)
    }

    /// A client over an existing channel.
    pub fn from_channel(channel: Channel, token: &str) -> Result<Client, Error> {
        let value: MetadataValue<Ascii> = format!("Bearer {token}").parse().map_err(|_| {
            Error::new(
                tonic::Code::InvalidArgument,
                "token: must be printable ASCII",
            )
        })?;
        Ok(Client {
            webhooks: WebhookServiceClient::with_interceptor(
                channel.clone(),
                Bearer(value.clone()),
            ),
            events: EventServiceClient::with_interceptor(channel.clone(), Bearer(value.clone())),
            keys: ApiKeyServiceClient::with_interceptor(channel.clone(), Bearer(value.clone())),
            audit: AuditServiceClient::with_interceptor(channel.clone(), Bearer(value)),
            channel,
        })
    }

    /// A client on this one's connection that calls with the API key `token`: a service acting for many
    /// accounts needs one connection, not one per account.
    pub fn with_token(&self, token: &str) -> Result<Client, Error> {
        Self::from_channel(self.channel.clone(), token)
    }

    // ---- webhooks (admin key) ----

    /// Creates a webhook; returns it with its signing secret.
    pub async fn create_webhook(&self, new: NewWebhook) -> Result<(proto::Webhook, String), Error> {
        let reply = self
            .webhooks
            .clone()
            .create_webhook(proto::CreateWebhookRequest {
                url: new.url,
                description: new.description,
                events: new.events,
                rate_limit_per_second: new.rate_limit_per_second.unwrap_or(0),
                headers: headers(new.headers),
                ordering: new.ordering as i32,
            })
            .await?
            .into_inner();
        Ok((reply.webhook.unwrap_or_default(), reply.secret))
    }

    pub async fn get_webhook(&self, id: &str) -> Result<proto::Webhook, Error> {
        Ok(self
            .webhooks
            .clone()
            .get_webhook(proto::GetWebhookRequest { id: id.into() })
            .await?
            .into_inner())
    }

    /// Every webhook of the account, oldest first, fetched page by page as the stream is read.
    pub fn list_webhooks(&self) -> impl Stream<Item = Result<proto::Webhook, Error>> + '_ {
        paginate(move |page_token| {
            let mut client = self.webhooks.clone();
            async move {
                let page = client
                    .list_webhooks(proto::ListWebhooksRequest {
                        page_size: PAGE_SIZE,
                        page_token,
                    })
                    .await?
                    .into_inner();
                Ok((page.webhooks, page.next_page_token))
            }
        })
    }

    /// Changes the fields set in `update`, and only those.
    pub async fn update_webhook(
        &self,
        id: &str,
        update: WebhookUpdate,
    ) -> Result<proto::Webhook, Error> {
        let mut paths = Vec::new();
        let mut request = proto::UpdateWebhookRequest {
            id: id.into(),
            ..Default::default()
        };
        if let Some(url) = update.url {
            request.url = url;
            paths.push("url".to_string());
        }
        if let Some(description) = update.description {
            request.description = description;
            paths.push("description".to_string());
        }
        if let Some(events) = update.events {
            request.events = events;
            paths.push("events".to_string());
        }
        if let Some(rate) = update.rate_limit_per_second {
            request.rate_limit_per_second = rate;
            paths.push("rate_limit_per_second".to_string());
        }
        if let Some(set) = update.headers {
            request.headers = headers(set);
            paths.push("headers".to_string());
        }
        if let Some(ordering) = update.ordering {
            request.ordering = ordering as i32;
            paths.push("ordering".to_string());
        }
        request.update_mask = Some(prost_types::FieldMask { paths });
        Ok(self
            .webhooks
            .clone()
            .update_webhook(request)
            .await?
            .into_inner())
    }

    /// Deletes the webhook and its delivery history; returns how many deliveries went with it.
    pub async fn delete_webhook(&self, id: &str) -> Result<u64, Error> {
        let reply = self
            .webhooks
            .clone()
            .delete_webhook(proto::DeleteWebhookRequest { id: id.into() })
            .await?;
        Ok(reply.into_inner().deliveries_deleted)
    }

    pub async fn pause_webhook(&self, id: &str) -> Result<proto::Webhook, Error> {
        Ok(self
            .webhooks
            .clone()
            .pause_webhook(proto::PauseWebhookRequest { id: id.into() })
            .await?
            .into_inner())
    }

    pub async fn resume_webhook(&self, id: &str) -> Result<proto::Webhook, Error> {
        Ok(self
            .webhooks
            .clone()
            .resume_webhook(proto::ResumeWebhookRequest { id: id.into() })
            .await?
            .into_inner())
    }

    /// A new signing secret; the old one keeps signing for `grace` (at most 7 days; `None` for the server's
    /// default, 24 hours).
    pub async fn rotate_secret(
        &self,
        id: &str,
        grace: Option<Duration>,
    ) -> Result<(proto::Webhook, String), Error> {
        let reply = self
            .webhooks
            .clone()
            .rotate_secret(proto::RotateSecretRequest {
                id: id.into(),
                grace_period_seconds: grace
                    .map(|grace| u32::try_from(grace.as_secs()).unwrap_or(u32::MAX)),
            })
            .await?
            .into_inner();
        Ok((reply.webhook.unwrap_or_default(), reply.secret))
    }

    pub async fn webhook_secret(&self, id: &str) -> Result<String, Error> {
        let reply = self
            .webhooks
            .clone()
            .get_webhook_secret(proto::GetWebhookSecretRequest { id: id.into() })
            .await?;
        Ok(reply.into_inner().secret)
    }

    /// Sends a `test.ping`; with `wait`, returns once its attempt is known (with the attempt).
    pub async fn send_test_ping(&self, id: &str, wait: bool) -> Result<proto::Delivery, Error> {
        self.send_test_event(id, "", None, wait).await
    }

    /// Sends `event_type`'s example (fresh ids), or `data_json`, to webhook `id` only, as a test delivery
    /// (tried once, never counted against the webhook); an empty type sends a `test.ping`. With `wait`,
    /// returns once its attempt is known.
    pub async fn send_test_event(
        &self,
        id: &str,
        event_type: &str,
        data_json: Option<&str>,
        wait: bool,
    ) -> Result<proto::Delivery, Error> {
        let reply = self
            .webhooks
            .clone()
            .send_test_ping(proto::SendTestPingRequest {
                id: id.into(),
                wait,
                event_type: event_type.into(),
                data_json: data_json.unwrap_or_default().into(),
            })
            .await?;
        Ok(reply.into_inner().delivery.unwrap_or_default())
    }

    /// A webhook's deliveries, newest first (without attempts; see [`Client::get_delivery`]).
    pub fn list_deliveries(
        &self,
        query: DeliveryQuery,
    ) -> impl Stream<Item = Result<proto::Delivery, Error>> + '_ {
        paginate(move |page_token| {
            let mut client = self.webhooks.clone();
            let query = query.clone();
            async move {
                let page = client
                    .list_deliveries(proto::ListDeliveriesRequest {
                        webhook_id: query.webhook_id,
                        status: query.status.map(|s| s as i32).unwrap_or(0),
                        event_type: query.event_type.unwrap_or_default(),
                        page_size: PAGE_SIZE,
                        page_token,
                    })
                    .await?
                    .into_inner();
                Ok((page.deliveries, page.next_page_token))
            }
        })
    }

    /// The account's webhook changes as they happen (of webhook `id` only, when given): webhooks changed,
    /// paused, resumed, disabled or deleted, and deliveries after each attempt. Ends when the server does.
    /// The first message, once the watch is open, carries no change.
    pub async fn watch_webhooks(
        &self,
        id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<proto::WebhookChange, Error>>, Error> {
        let changes = self
            .webhooks
            .clone()
            .watch_webhooks(proto::WatchWebhooksRequest {
                webhook_id: id.unwrap_or_default().into(),
            })
            .await?
            .into_inner();
        Ok(futures::StreamExt::map(changes, |change| {
            change.map_err(Error::from)
        }))
    }

    /// One delivery with every attempt.
    pub async fn get_delivery(&self, id: &str) -> Result<proto::Delivery, Error> {
        Ok(self
            .webhooks
            .clone()
            .get_delivery(proto::GetDeliveryRequest { id: id.into() })
            .await?
            .into_inner())
    }

    pub async fn retry_delivery(&self, id: &str) -> Result<proto::Delivery, Error> {
        Ok(self
            .webhooks
            .clone()
            .retry_delivery(proto::RetryDeliveryRequest { id: id.into() })
            .await?
            .into_inner())
    }

    /// Re-queues every failed delivery of the webhook whose event was created in `[since, until)`.
    pub async fn replay_deliveries(
        &self,
        webhook_id: &str,
        since: SystemTime,
        until: Option<SystemTime>,
    ) -> Result<u64, Error> {
        let reply = self
            .webhooks
            .clone()
            .replay_deliveries(proto::ReplayDeliveriesRequest {
                webhook_id: webhook_id.into(),
                since: Some(since.into()),
                until: until.map(Into::into),
            })
            .await?;
        Ok(reply.into_inner().deliveries_requeued)
    }

    // ---- events (publisher key; admins may read their own) ----

    /// Publishes an event; `data_json` is a JSON object as text.
    pub async fn publish_event(
        &self,
        account_id: &str,
        event_type: &str,
        data_json: &str,
        idempotency_key: Option<&str>,
    ) -> Result<proto::PublishEventResponse, Error> {
        let reply = self
            .events
            .clone()
            .publish_event(proto::PublishEventRequest {
                account_id: account_id.into(),
                r#type: event_type.into(),
                data_json: data_json.into(),
                idempotency_key: idempotency_key.unwrap_or_default().into(),
            })
            .await?;
        Ok(reply.into_inner())
    }

    /// Publishes several events in one call (at most 1,000, and no more bytes than one publish may carry):
    /// each is validated, deduplicated and answered on its own, in order, as [`Client::publish_event`] would
    /// answer it; all are committed once this returns. The outer error is the call's (the connection, the key).
    pub async fn publish_events(
        &self,
        events: Vec<proto::PublishEventRequest>,
    ) -> Result<Vec<Result<proto::PublishEventResponse, Error>>, Error> {
        let reply = self
            .events
            .clone()
            .publish_events(proto::PublishEventsRequest { events })
            .await?;
        Ok(reply
            .into_inner()
            .results
            .into_iter()
            .map(|result| match result.published {
                Some(published) if result.code == tonic::Code::Ok as i32 => Ok(published),
                _ => Err(Error::new(result.code.into(), result.message)),
            })
            .collect())
    }

    /// Publishes an event of `event_type` for the admin key's account: `data_json`, or the type's example
    /// with fresh ids.
    pub async fn trigger_event(
        &self,
        event_type: &str,
        data_json: Option<&str>,
    ) -> Result<proto::PublishEventResponse, Error> {
        let reply = self
            .events
            .clone()
            .trigger_event(proto::TriggerEventRequest {
                r#type: event_type.into(),
                data_json: data_json.unwrap_or_default().into(),
            })
            .await?;
        Ok(reply.into_inner())
    }

    pub async fn get_event(&self, id: &str) -> Result<proto::Event, Error> {
        Ok(self
            .events
            .clone()
            .get_event(proto::GetEventRequest { id: id.into() })
            .await?
            .into_inner())
    }

    /// Events, newest first, optionally of one type and (publisher keys) one account.
    pub fn list_events(
        &self,
        event_type: Option<String>,
        account_id: Option<String>,
    ) -> impl Stream<Item = Result<proto::Event, Error>> + '_ {
        paginate(move |page_token| {
            let mut client = self.events.clone();
            let (event_type, account_id) = (event_type.clone(), account_id.clone());
            async move {
                let page = client
                    .list_events(proto::ListEventsRequest {
                        r#type: event_type.unwrap_or_default(),
                        account_id: account_id.unwrap_or_default(),
                        page_size: PAGE_SIZE,
                        page_token,
                    })
                    .await?
                    .into_inner();
                Ok((page.events, page.next_page_token))
            }
        })
    }

    /// The catalogue of event types.
    pub async fn event_types(&self) -> Result<Vec<proto::EventType>, Error> {
        let reply = self
            .events
            .clone()
            .list_event_types(proto::ListEventTypesRequest {})
            .await?;
        Ok(reply.into_inner().event_types)
    }
}

fn headers(pairs: Vec<(String, String)>) -> Vec<proto::Header> {
    pairs
        .into_iter()
        .map(|(name, value)| proto::Header { name, value })
        .collect()
}

/// Turns a page fetcher into a stream of items that follows page tokens until the last page.
pub(crate) fn paginate<'a, T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T, Error>> + 'a
where
    T: 'a,
    F: Fn(String) -> Fut + 'a,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), Error>> + 'a,
{
    stream::try_unfold((Some(String::new()), fetch), |(token, fetch)| async move {
        let Some(token) = token else {
            return Ok::<_, Error>(None);
        };
        let (items, next) = fetch(token).await?;
        let next = (!next.is_empty()).then_some(next);
        Ok(Some((
            stream::iter(items.into_iter().map(Ok::<T, Error>)),
            (next, fetch),
        )))
    })
    .try_flatten()
}

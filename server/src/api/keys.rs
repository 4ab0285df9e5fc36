//! `ApiKeyService`: an account admin's own API keys. An admin creates admin keys for its own account only
//! (publisher and daemon keys belong to no account: `kit-webhooks-server keys create` makes those), and
//! lists and revokes its account's keys; another account's key is NOT_FOUND.

use std::{sync::Arc, time::Duration};

use kit_webhooks::proto;
use tonic::{Request, Response, Status};

use super::{
    auth::{self, Authenticator},
    convert,
};
use crate::{
    core::{
        id::{self, Kind},
        page::PageRequest,
        time, Error, Role,
    },
    keys,
    state::AppState,
};

/// The shortest life a key may be given: shorter is a mistake, not a policy.
const MIN_EXPIRES_IN: Duration = Duration::from_secs(60);

pub struct ApiKeyApi {
    state: Arc<AppState>,
    /// To forget a revoked key at once on this replica (the others within their cache's second).
    auth: Arc<Authenticator>,
}

impl ApiKeyApi {
    pub fn new(state: Arc<AppState>, auth: Arc<Authenticator>) -> Self {
        ApiKeyApi { state, auth }
    }
}

#[tonic::async_trait]
impl proto::api_key_service_server::ApiKeyService for ApiKeyApi {
    async fn list_api_keys(
        &self,
        request: Request<proto::ListApiKeysRequest>,
    ) -> Result<Response<proto::ListApiKeysResponse>, Status> {
        let account = auth::require_admin(&request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page_size, &req.page_token, Kind::ApiKey)?;
        let mut rows = self
            .state
            .store
            .list_api_keys(Some(&account), &page)
            .await
            .map_err(Error::from)?;
        let next_page_token = page.finish(&mut rows, |row| &row.id);
        Ok(Response::new(proto::ListApiKeysResponse {
            api_keys: rows.into_iter().map(convert::api_key).collect(),
            next_page_token,
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<proto::CreateApiKeyRequest>,
    ) -> Result<Response<proto::CreateApiKeyResponse>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let expires_at = match request.into_inner().expires_in {
            None => None,
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                return Err(Error::invalid("expires_in", "must not be negative").into())
            }
            Some(d) if (d.seconds as u64) < MIN_EXPIRES_IN.as_secs() => {
                return Err(Error::invalid("expires_in", "must be at least 60s").into())
            }
            // Past 10,000 years is as good as never; saturating keeps the sum in range.
            Some(d) => Some(time::now_ms().saturating_add(d.seconds.saturating_mul(1000))),
        };
        let (row, key) = keys::create(
            &self.state.store,
            Role::Admin,
            Some(&actor.account_id),
            expires_at,
            &actor.key_id,
        )
        .await
        .map_err(|err| Status::unavailable(format!("creating the key failed: {err:#}")))?;
        tracing::info!(key = %row.id, by = %actor.key_id, "API key created");
        Ok(Response::new(proto::CreateApiKeyResponse {
            api_key: Some(convert::api_key(row)),
            key,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<proto::RevokeApiKeyRequest>,
    ) -> Result<Response<proto::ApiKey>, Status> {
        let actor = auth::require_admin_actor(&request)?;
        let id = id::parse("id", Kind::ApiKey, &request.get_ref().id)?;
        let row = self
            .state
            .store
            .revoke_api_key(Some(&actor.account_id), id, &actor.key_id)
            .await?
            .ok_or_else(|| Error::not_found("API key", id))?;
        self.auth.forget(id);
        tracing::info!(key = %id, by = %actor.key_id, "API key revoked");
        Ok(Response::new(convert::api_key(row)))
    }
}

//! The account's own API keys and its audit log (`ApiKeyService`, `AuditService`; admin key), as
//! [`Client`] methods.

use std::time::{Duration, SystemTime};

use futures::Stream;
use kit_webhooks::proto;

use crate::{
    client::{paginate, PAGE_SIZE},
    Client, Error,
};

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only those about this id (a webhook, a delivery, a key).
    pub target_id: Option<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

impl Client {
    /// The account's API keys, oldest first, following pages as the stream is read.
    pub fn list_api_keys(&self) -> impl Stream<Item = Result<proto::ApiKey, Error>> + '_ {
        paginate(move |page_token| {
            let mut client = self.keys.clone();
            async move {
                let page = client
                    .list_api_keys(proto::ListApiKeysRequest {
                        page_size: PAGE_SIZE,
                        page_token,
                    })
                    .await?
                    .into_inner();
                Ok((page.api_keys, page.next_page_token))
            }
        })
    }

    /// Creates an admin key for the caller's account, working for `expires_in` if given; returns it with
    /// the key, shown only now.
    pub async fn create_api_key(
        &self,
        expires_in: Option<Duration>,
    ) -> Result<(proto::ApiKey, String), Error> {
        let reply = self
            .keys
            .clone()
            .create_api_key(proto::CreateApiKeyRequest {
                expires_in: expires_in.map(|d| prost_types::Duration {
                    seconds: d.as_secs().min(i64::MAX as u64) as i64,
                    nanos: d.subsec_nanos() as i32,
                }),
            })
            .await?
            .into_inner();
        Ok((reply.api_key.unwrap_or_default(), reply.key))
    }

    /// Revokes one of the account's keys.
    pub async fn revoke_api_key(&self, id: &str) -> Result<proto::ApiKey, Error> {
        Ok(self
            .keys
            .clone()
            .revoke_api_key(proto::RevokeApiKeyRequest { id: id.into() })
            .await?
            .into_inner())
    }

    /// The account's audit entries, newest first, following pages as the stream is read.
    pub fn list_audit_entries(
        &self,
        query: AuditQuery,
    ) -> impl Stream<Item = Result<proto::AuditEntry, Error>> + '_ {
        paginate(move |page_token| {
            let mut client = self.audit.clone();
            let query = query.clone();
            async move {
                let page = client
                    .list_audit_entries(proto::ListAuditEntriesRequest {
                        page_size: PAGE_SIZE,
                        page_token,
                        target_id: query.target_id.unwrap_or_default(),
                        since: query.since.map(prost_types::Timestamp::from),
                        until: query.until.map(prost_types::Timestamp::from),
                    })
                    .await?
                    .into_inner();
                Ok((page.entries, page.next_page_token))
            }
        })
    }
}

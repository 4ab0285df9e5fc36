//! `AuditService`: an account admin reads its account's audit log, newest first (`core::audit` says what is
//! recorded; each change's store function records it).

use std::sync::Arc;

use kit_webhooks::proto;
use tonic::{Request, Response, Status};

use super::{auth, convert};
use crate::{
    core::{id::Kind, page::PageRequest, time, Error},
    state::AppState,
    store::audit::AuditFilter,
};

pub struct AuditApi {
    state: Arc<AppState>,
}

impl AuditApi {
    pub fn new(state: Arc<AppState>) -> Self {
        AuditApi { state }
    }
}

#[tonic::async_trait]
impl proto::audit_service_server::AuditService for AuditApi {
    async fn list_audit_entries(
        &self,
        request: Request<proto::ListAuditEntriesRequest>,
    ) -> Result<Response<proto::ListAuditEntriesResponse>, Status> {
        let account = auth::require_admin(&request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page_size, &req.page_token, Kind::AuditEntry)?;
        let filter = AuditFilter {
            target_id: (!req.target_id.is_empty()).then_some(req.target_id),
            since_ms: req.since.as_ref().map(time::to_ms),
            until_ms: req.until.as_ref().map(time::to_ms),
        };
        if let (Some(since), Some(until)) = (filter.since_ms, filter.until_ms) {
            if until <= since {
                return Err(Error::invalid("until", "must be after `since`").into());
            }
        }
        let mut rows = self
            .state
            .store
            .list_audit_entries(&account, &filter, &page)
            .await
            .map_err(Error::from)?;
        let next_page_token = page.finish(&mut rows, |row| &row.id);
        Ok(Response::new(proto::ListAuditEntriesResponse {
            entries: rows.into_iter().map(convert::audit_entry).collect(),
            next_page_token,
        }))
    }
}

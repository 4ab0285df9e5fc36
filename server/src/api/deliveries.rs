//! `DeliveryService`: the daemon-facing half of the pipeline (leases and reports).

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use kit_webhooks::proto;
use tonic::{Request, Response, Status};

use super::{auth::Role, AppState};

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
        self.state.auth.require(&request, &[Role::Daemon]).await?;
        Err(Status::unimplemented(
            "StreamDeliveries arrives with the delivery daemon",
        ))
    }

    async fn report_delivery(
        &self,
        request: Request<proto::ReportDeliveryRequest>,
    ) -> Result<Response<proto::ReportDeliveryResponse>, Status> {
        self.state.auth.require(&request, &[Role::Daemon]).await?;
        Err(Status::unimplemented(
            "ReportDelivery arrives with the delivery daemon",
        ))
    }
}

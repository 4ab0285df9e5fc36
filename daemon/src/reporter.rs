//! Reporting attempts: every attempt a daemon makes goes back to the server in a `ReportDeliveries` call,
//! batched, and retried until it is recorded or its lease is known lost: a call that fails as a whole (the
//! server unreachable, busy or restarting) is sent again, and so is each report the server answers with a
//! passing failure of its own (its storage unavailable), for up to [`REPORT_PATIENCE`]. The lease stays
//! the daemon's until its report commits.
//!
//! A report that finds the reporter idle waits up to [`REPORT_LINGER`] for company before it is sent. Nobody
//! waits on a report but the lease it releases (the receiver already has the delivery), and at a steady
//! low rate each report would otherwise be a call of its own and a server transaction of its own
//! (docs/PERFORMANCE.md, step 41). Under load the reports queue while the previous call is out, their linger
//! has long passed, and they go at once.
//!
//! A batch is encoded once per call: the common case (one call, answered) never copies the reports' header
//! maps and bodies, which cloning the request for a possible retry did on every call.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::{BufMut, Bytes};
use futures::{
    future::{self, Either},
    FutureExt as _,
};
use kit_webhooks::proto;
use prost::Message;
use tokio::{sync::mpsc::error::TryRecvError, time::Instant};
use tonic::{
    codec::{Codec, EncodeBuf, Encoder},
    service::interceptor::InterceptedService,
    transport::Channel,
    Code, Status,
};

use crate::{metrics::Metrics, Auth, FIRST_BACKOFF, MAX_BACKOFF, REPORT_PATIENCE};

/// The most reports sent in one `ReportDeliveries` call.
const MAX_REPORTS_PER_CALL: usize = 500;

/// How long a report that arrives while nothing else is queued waits for others to go with it.
const REPORT_LINGER: Duration = Duration::from_millis(5);

/// A report, when it was queued, and who waits for its answer.
type Queued = (
    proto::ReportDeliveryRequest,
    Instant,
    tokio::sync::oneshot::Sender<()>,
);

type Grpc = tonic::client::Grpc<InterceptedService<Channel, Auth>>;

/// Sends attempt reports to the server in batches: whatever queued up while the previous call was out goes in
/// the next `ReportDeliveries` call, so a busy daemon makes one call per batch and a quiet one one call per
/// [`REPORT_LINGER`] at most.
#[derive(Clone)]
pub(crate) struct Reporter {
    tx: tokio::sync::mpsc::Sender<Queued>,
}

impl Reporter {
    pub(crate) fn spawn(
        service: InterceptedService<Channel, Auth>,
        metrics: Arc<Metrics>,
    ) -> Reporter {
        let (tx, rx) = tokio::sync::mpsc::channel(4 * MAX_REPORTS_PER_CALL);
        tokio::spawn(send_batches(Grpc::new(service), rx, metrics));
        Reporter { tx }
    }

    /// Queues `report` and waits until the server has answered for it (or the daemon gave up on it).
    ///
    /// Every attempt task holds this future at its end (`crate::attempt`), so it holds the report once: room
    /// in the queue is reserved before the report is moved in (not a second copy inside the queue's send),
    /// and it is a chain rather than an `async fn`, which would keep its argument beside the report it moves
    /// on.
    pub(crate) fn report(
        &self,
        report: proto::ReportDeliveryRequest,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.tx.reserve().then(move |room| {
            let Ok(room) = room else {
                return Either::Left(future::ready(()));
            };
            let (done, answered) = tokio::sync::oneshot::channel();
            room.send((report, Instant::now(), done));
            Either::Right(answered.map(|_| ()))
        })
    }
}

async fn send_batches(
    mut grpc: Grpc,
    mut rx: tokio::sync::mpsc::Receiver<Queued>,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let (_, queued_at, _) = &first;
        let send_by = *queued_at + REPORT_LINGER;
        let mut batch = vec![first];
        while batch.len() < MAX_REPORTS_PER_CALL {
            let next = match rx.try_recv() {
                Ok(next) => next,
                // Nothing more queued: wait for more until the first report's linger is over.
                Err(TryRecvError::Empty) => match tokio::time::timeout_at(send_by, rx.recv()).await
                {
                    Ok(Some(next)) => next,
                    Ok(None) | Err(_) => break,
                },
                Err(TryRecvError::Disconnected) => break,
            };
            batch.push(next);
        }
        let mut reports = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for (report, _, done) in batch {
            reports.push(report);
            waiting.push(done);
        }
        let (count, started) = (reports.len() as u64, Instant::now());
        deliver_reports(&mut grpc, reports).await;
        metrics.report_duration.record(started.elapsed());
        metrics.reports_sent.increment(count);
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// Whether a call or a report that failed with `code` may succeed if sent again.
fn passing(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

/// Reports a batch: the whole call again while it fails in passing, then again the reports the server
/// answered with a passing failure, until each is recorded, refused for good, or [`REPORT_PATIENCE`] is
/// over. A report whose lease has ended means the delivery went back to the queue; it will be sent
/// again, so that report is dropped. The batch is encoded once per call, not per report.
async fn deliver_reports(grpc: &mut Grpc, reports: Vec<proto::ReportDeliveryRequest>) {
    let deadline = tokio::time::Instant::now() + REPORT_PATIENCE;
    let mut backoff = FIRST_BACKOFF;
    let mut request = proto::ReportDeliveriesRequest { reports };
    loop {
        let encoded = Bytes::from(request.encode_to_vec());
        let failure = match call(grpc, encoded).await {
            Ok(response) => {
                let mut again = Vec::new();
                let results = response
                    .results
                    .into_iter()
                    .map(Some)
                    .chain(std::iter::repeat(None));
                for (report, result) in std::mem::take(&mut request.reports)
                    .into_iter()
                    .zip(results)
                {
                    // A server that answers fewer results than reports recorded none of the rest.
                    let (code, message) = result
                        .map_or((Code::Unavailable, String::from("no result")), |r| {
                            (Code::from(r.code), r.message)
                        });
                    match code {
                        Code::Ok => {}
                        Code::FailedPrecondition => {
                            tracing::info!(delivery = %report.delivery_id, attempt = report.attempt_number, reason = %message, "report not accepted")
                        }
                        code if passing(code) => again.push(report),
                        code => tracing::error!(
                            delivery = %report.delivery_id, attempt = report.attempt_number, ?code, error = %message, "report rejected"
                        ),
                    }
                }
                if again.is_empty() {
                    return;
                }
                request.reports = again;
                format!("{} reports not recorded yet", request.reports.len())
            }
            Err(status) if passing(status.code()) => status.message().to_owned(),
            Err(status) => {
                tracing::error!(reports = request.reports.len(), code = ?status.code(), error = %status.message(), "reports rejected");
                return;
            }
        };
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(reports = request.reports.len(), error = %failure, "giving up on reports");
            return;
        }
        tracing::debug!(reports = request.reports.len(), error = %failure, retry_in = ?backoff, "reporting again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// `DeliveryService.ReportDeliveries` with an already encoded `ReportDeliveriesRequest`: what the generated
/// client's method does, minus the encoding.
async fn call(grpc: &mut Grpc, encoded: Bytes) -> Result<proto::ReportDeliveriesResponse, Status> {
    grpc.ready()
        .await
        .map_err(|err| Status::unknown(format!("the server connection is not ready: {err}")))?;
    let mut request = tonic::Request::new(encoded);
    request.extensions_mut().insert(tonic::GrpcMethod::new(
        "kit.webhooks.v1.DeliveryService",
        "ReportDeliveries",
    ));
    let path =
        http::uri::PathAndQuery::from_static("/kit.webhooks.v1.DeliveryService/ReportDeliveries");
    let response = grpc.unary(request, path, EncodedCodec).await?;
    Ok(response.into_inner())
}

/// Sends a message encoded beforehand; decodes the answer with prost, as the generated client does.
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = proto::ReportDeliveriesResponse;
    type Encoder = Encoded;
    type Decoder = <tonic_prost::ProstCodec<(), proto::ReportDeliveriesResponse> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        Encoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<(), proto::ReportDeliveriesResponse>::default().decoder()
    }
}

struct Encoded;

impl Encoder for Encoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

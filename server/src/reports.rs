//! Group commit of attempt reports. Every `ReportDelivery` call queues its report here and waits; one task
//! takes whatever has queued up (up to [`MAX_GROUP`]) and records it in a single transaction, so under load
//! the database sees one commit per group instead of one per delivery, and when idle a report is committed
//! at once. A call still returns only after its report is committed.

use tokio::sync::{mpsc, oneshot};

use crate::{
    core::{policy::RetryPolicy, time, Error},
    store::{
        leases::{AttemptReport, Recorded},
        Store,
    },
};

/// The most reports committed together.
const MAX_GROUP: usize = 512;
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<Recorded, Error>>;

#[derive(Clone)]
pub struct ReportQueue {
    tx: mpsc::Sender<(AttemptReport, Reply)>,
}

impl ReportQueue {
    /// Starts the committing task; it ends when every queue handle is dropped.
    pub fn spawn(store: Store, policy: RetryPolicy) -> ReportQueue {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(commit_groups(store, policy, rx));
        ReportQueue { tx }
    }

    /// Records one report; returns once it is committed (or refused).
    pub async fn record(&self, report: AttemptReport) -> Result<Recorded, Error> {
        let (reply, done) = oneshot::channel();
        let stopped = || Error::Storage(sea_orm::DbErr::Custom("the report queue has stopped".into()));
        self.tx.send((report, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

async fn commit_groups(store: Store, policy: RetryPolicy, mut rx: mpsc::Receiver<(AttemptReport, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (reports, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let started = std::time::Instant::now();
        let recorded = store.record_attempts(reports, &policy, time::now_ms()).await;
        tracing::debug!(reports = replies.len(), took = ?started.elapsed(), "group committed");
        match recorded {
            Ok(results) => {
                for (result, reply) in results.into_iter().zip(replies) {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                // Nothing was committed: every daemon in the group retries its report.
                tracing::warn!(error = %err, reports = replies.len(), "recording a group of attempts failed");
                for reply in replies {
                    let _ = reply.send(Err(Error::Storage(sea_orm::DbErr::Custom(err.to_string()))));
                }
            }
        }
    }
}

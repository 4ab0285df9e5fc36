//! Group commit: callers queue their writes and wait; one task takes whatever has queued up (up to a
//! limit) and commits it in a single transaction. Under load the database sees one commit per group
//! instead of one per call; when idle, a write is committed at once. A caller still returns only after its
//! own write is committed (or refused), so nothing is acknowledged before it is durable.
//!
//! Used for `PublishEvent` (events and their fan-out) and `ReportDelivery` (attempts and their outcome).

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::core::Error;

const QUEUE: usize = 8192;

type Reply<O> = oneshot::Sender<Result<O, Error>>;

pub struct GroupCommit<I, O> {
    tx: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for GroupCommit<I, O> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> GroupCommit<I, O> {
    /// Starts the committing task. `commit` writes one group in one transaction and returns one result per
    /// item, in order; an `Err` means nothing of the group was committed.
    pub fn spawn<F, Fut>(name: &'static str, max_group: usize, commit: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Result<O, Error>>, sea_orm::DbErr>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<(I, Reply<O>)>(QUEUE);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                while group.len() < max_group {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                let started = std::time::Instant::now();
                match commit(items).await {
                    Ok(results) => {
                        tracing::debug!(group = name, items = replies.len(), took = ?started.elapsed(), "committed");
                        for (result, reply) in results.into_iter().zip(replies) {
                            let _ = reply.send(result);
                        }
                    }
                    Err(err) => {
                        // Nothing was committed: every caller in the group gets the error and may retry.
                        tracing::warn!(group = name, error = %err, items = replies.len(), "group commit failed");
                        for reply in replies {
                            let _ = reply
                                .send(Err(Error::Storage(sea_orm::DbErr::Custom(err.to_string()))));
                        }
                    }
                }
            }
        });
        GroupCommit { tx }
    }

    /// Queues `item` and waits until its group is committed.
    pub async fn submit(&self, item: I) -> Result<O, Error> {
        let (reply, done) = oneshot::channel();
        let stopped =
            || Error::Storage(sea_orm::DbErr::Custom("the server is shutting down".into()));
        self.tx.send((item, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

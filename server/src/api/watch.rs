//! `WatchWebhooks`: one watcher's stream of its account's changes. It subscribes to the server's
//! [`Watchers`](crate::watch::Watchers) before the call is answered, so nothing committed after that is
//! missed, keeps the changes of its account (and webhook, if it asked for one), and sends each as the row
//! reads now. It ends when the caller hangs up or the server shuts down.

use std::sync::Arc;

use kit_webhooks::proto::{self, webhook_change::Change as Sent};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert;
use crate::{
    core::{time::to_timestamp, Error},
    state::AppState,
    watch::{Change, ChangeKind, MAX_WATCHERS},
};

/// What `WatchWebhooks` answers with.
pub type ChangeStream = ReceiverStream<Result<proto::WebhookChange, Status>>;

/// Changes read ahead of a slow caller, beyond which the watcher waits (and the broadcast drops for it).
const AHEAD: usize = 16;

/// The stream of `account`'s changes, of `webhook_id`'s only when given; refused `RESOURCE_EXHAUSTED` when
/// the server has as many watches open as it keeps.
pub fn changes(
    state: Arc<AppState>,
    account: String,
    webhook_id: Option<String>,
) -> Result<ChangeStream, Status> {
    let Some(mut changes) = state.watchers.watch() else {
        return Err(Status::resource_exhausted(format!(
            "this server has {MAX_WATCHERS} watches open, as many as it keeps; try again later"
        )));
    };
    let (sender, receiver) = mpsc::channel(AHEAD);
    // The watch is open: said at once, since a caller hears nothing of the call until its first message.
    let opened = proto::WebhookChange {
        at: Some(to_timestamp(crate::core::time::now_ms())),
        ..Default::default()
    };
    let _ = sender.try_send(Ok(opened));
    tokio::spawn(async move {
        let mut missed = 0;
        loop {
            let change = tokio::select! {
                _ = sender.closed() => return,
                _ = state.shutdown.cancelled() => return,
                change = changes.recv() => change,
            };
            let change = match change {
                Ok(change) => change,
                Err(RecvError::Lagged(dropped)) => {
                    missed += dropped;
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let mine = change.account_id == account
                && webhook_id
                    .as_ref()
                    .is_none_or(|id| *id == change.webhook_id);
            if !mine {
                continue;
            }
            let sent = match current(&state, &change).await {
                Ok(Some(sent)) => sent,
                // Deleted since: its deletion follows.
                Ok(None) => continue,
                Err(err) => {
                    let _ = sender.send(Err(err.into())).await;
                    return;
                }
            };
            let message = proto::WebhookChange {
                at: Some(to_timestamp(change.at)),
                change: Some(sent),
                missed: std::mem::take(&mut missed),
            };
            if sender.send(Ok(message)).await.is_err() {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(receiver))
}

/// What `change` is about, as it is now; `None` when it is gone.
async fn current(state: &AppState, change: &Change) -> Result<Option<Sent>, Error> {
    let account = &change.account_id;
    Ok(match &change.kind {
        ChangeKind::Webhook => state
            .store
            .find_webhook(account, &change.webhook_id)
            .await?
            .map(|row| Sent::Webhook(convert::webhook(row, &state.secrets))),
        ChangeKind::WebhookDeleted => Some(Sent::DeletedWebhookId(change.webhook_id.clone())),
        ChangeKind::Attempt { delivery_id } => state
            .store
            .find_delivery(account, delivery_id)
            .await?
            .map(|(row, attempts)| Sent::Delivery(convert::delivery(row, attempts))),
    })
}

//! Watching: the changes to webhooks and deliveries this server commits, told to whoever watches
//! (`WatchWebhooks`, `crate::api::watch`) as they happen, with no polling.
//!
//! A change carries ids only (a webhook changed, a delivery's attempt recorded); a watcher keeps its
//! account's and reads the current state to send, so the paths that commit changes pay one check of the
//! watcher count when nobody watches. A watcher that falls behind loses the oldest changes and is told how
//! many. Only this process's commits are seen: with several replicas, a watcher sees the changes made
//! through its own server and the attempts reported to it.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Changes kept for a watcher that is behind; older ones are dropped (and counted for it).
const BACKLOG: usize = 4096;
/// Watches one server keeps open at most: each reads a row for every change of its account.
pub const MAX_WATCHERS: usize = 1000;

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub account_id: String,
    pub webhook_id: String,
    pub kind: ChangeKind,
    /// When it was committed (Unix ms).
    pub at: i64,
}

impl Change {
    /// A change of `kind` to `webhook_id` of `account_id`, committed now.
    pub fn new(account_id: &str, webhook_id: &str, kind: ChangeKind) -> Self {
        Change {
            account_id: account_id.to_owned(),
            webhook_id: webhook_id.to_owned(),
            kind,
            at: crate::core::time::now_ms(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The webhook row changed (updated, paused, resumed, disabled, secret rotated).
    Webhook,
    /// The webhook was deleted.
    WebhookDeleted,
    /// An attempt of this delivery was recorded.
    Attempt { delivery_id: String },
}

/// The sending side, shared by every path that commits a change.
pub struct Watchers {
    sender: broadcast::Sender<Arc<Change>>,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers {
            sender: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Watchers {
    /// Whether anyone watches: when not, a change is not even built.
    pub fn watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Tells the watchers about `change`, if there are any.
    pub fn tell(&self, change: impl FnOnce() -> Change) {
        if self.watched() {
            // An error only means the last watcher left meanwhile.
            let _ = self.sender.send(Arc::new(change()));
        }
    }

    /// A new watcher: every change told from now on; `None` when [`MAX_WATCHERS`] are watching.
    pub fn watch(&self) -> Option<broadcast::Receiver<Arc<Change>>> {
        (self.sender.receiver_count() < MAX_WATCHERS).then(|| self.sender.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(webhook_id: &str) -> Change {
        Change::new("acct", webhook_id, ChangeKind::Webhook)
    }

    #[tokio::test]
    async fn nothing_is_built_unwatched_and_every_watcher_hears_the_rest() {
        let watchers = Watchers::default();
        watchers.tell(|| unreachable!("built with nobody watching"));
        let mut first = watchers.watch().unwrap();
        let mut second = watchers.watch().unwrap();
        watchers.tell(|| change("wh_1"));
        assert_eq!(first.recv().await.unwrap().webhook_id, "wh_1");
        assert_eq!(second.recv().await.unwrap().webhook_id, "wh_1");
    }
}

//! The daemon streams open on this server, by lease owner id: how a report recorded on any call reaches the
//! stream that holds its lease (more room: `crate::dispatch`), and which streams ended at shutdown with their
//! leases kept for their daemons to report (the server drains those before it stops).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use kit_webhooks::sync::lock;
use tokio::sync::Notify;

/// One open stream as the rest of the server sees it: its wake-up, and how many of its leases have been
/// reported here.
#[derive(Default)]
pub struct OpenStream {
    wake: Notify,
    reported: AtomicU64,
}

impl OpenStream {
    /// How many of the stream's leases have been reported on this server since it opened.
    pub fn reported(&self) -> u64 {
        self.reported.load(Ordering::Relaxed)
    }

    /// Completes at the next report of one of the stream's leases (or at once if one came since the last).
    pub async fn woken(&self) {
        self.wake.notified().await
    }
}

/// The streams open on this server, by lease owner id, and those that kept their leases at shutdown.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<String, Arc<OpenStream>>>,
    kept: Mutex<Vec<String>>,
}

impl Streams {
    /// How many streams are open.
    pub fn open_count(&self) -> usize {
        lock(&self.open).len()
    }

    /// Registers stream `owner` as open.
    pub fn open(&self, owner: &str) -> Arc<OpenStream> {
        let stream = Arc::new(OpenStream::default());
        lock(&self.open).insert(owner.to_owned(), stream.clone());
        stream
    }

    /// Unregisters stream `owner`.
    pub fn close(&self, owner: &str) {
        lock(&self.open).remove(owner);
    }

    /// Notes that stream `owner` ended at shutdown with its leases kept for its daemon to report.
    pub fn keep(&self, owner: &str) {
        lock(&self.kept).push(owner.to_owned());
    }

    /// The streams that ended at shutdown with their leases kept.
    pub fn kept(&self) -> Vec<String> {
        lock(&self.kept).clone()
    }

    /// Tells stream `owner` (if it is open here) that `count` of its leases were reported.
    pub fn reported(&self, owner: &str, count: u64) {
        let stream = lock(&self.open).get(owner).cloned();
        if let Some(stream) = stream {
            stream.reported.fetch_add(count, Ordering::Relaxed);
            // `notify_one` keeps a permit when the stream is busy, so the wake-up is never lost.
            stream.wake.notify_one();
        }
    }
}

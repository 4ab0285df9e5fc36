//! What the daemon's monitoring listener (`--metrics-listen`, `kit_webhooks::monitoring`) answers at
//! `/readyz`: ready while its delivery stream to a server is open and it is not stopping. A daemon whose
//! server is down is alive (`/healthz`) but not ready; it reconnects by itself, and is ready again then.

use std::sync::Arc;

use kit_webhooks::monitoring::{Probe, Readiness};
use tokio_util::sync::CancellationToken;

use crate::leases::Leases;

pub(crate) struct DaemonProbe {
    pub(crate) leases: Arc<Leases>,
    /// The daemon's stop: cancelled at the first SIGTERM.
    pub(crate) stop: CancellationToken,
}

impl Probe for DaemonProbe {
    async fn ready(&self) -> Readiness {
        if self.stop.is_cancelled() {
            return Err("stopping: finishing the deliveries in flight".into());
        }
        match self.leases.is_open() {
            true => Ok(()),
            false => Err("no delivery stream open to a server".into()),
        }
    }
}

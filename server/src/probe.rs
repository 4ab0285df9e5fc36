//! What the monitoring listener (`--metrics-listen`, `kit_webhooks::monitoring`) asks this server: whether
//! it is ready for calls, and the gauges to read before a scrape.

use std::{sync::Arc, time::Duration};

use kit_webhooks::monitoring::{Probe, Readiness};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// The longest `/readyz` waits for the database: a probe that hangs is worse than one that says no.
const DATABASE_PATIENCE: Duration = Duration::from_secs(2);

pub struct ServerProbe {
    pub state: Arc<AppState>,
    /// Cancelled as soon as the server is asked to stop, before it drains: a load balancer sends no new
    /// calls to a server that is going away.
    pub stopping: CancellationToken,
}

impl Probe for ServerProbe {
    /// Ready while it is not stopping and its database answers.
    async fn ready(&self) -> Readiness {
        if self.stopping.is_cancelled() {
            return Err("shutting down".into());
        }
        match tokio::time::timeout(DATABASE_PATIENCE, self.state.store.reader().ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("the database does not answer: {err}")),
            Err(_) => Err(format!(
                "the database did not answer within {DATABASE_PATIENCE:?}"
            )),
        }
    }

    async fn before_scrape(&self) {
        let state = &self.state;
        state
            .metrics
            .read_state(
                &state.store,
                state.streams.open_count(),
                state.config.lease_caps(),
            )
            .await;
    }
}

//! Kit Webhooks: what every part of the system shares.
//!
//! - [`proto`]: the generated gRPC contract (`kit.webhooks.v1`), clients and servers alike.
//! - [`catalogue`]: the fixed catalogue of event types and the subscription rules over it.
//! - [`definitions`]: what each event type's `data` holds (schema and example, from `catalogue/`).
//! - [`duration`]: durations in flags and messages (`5s`, `24h`).
//! - [`key_file`]: the file of first-start API keys the server writes and the CLI reads.
//! - [`logging`]: the server's and the daemon's log lines (`RUST_LOG`, `NO_COLOR`, text or JSON).
//! - [`monitoring`]: the server's and the daemon's metrics and health probes (`--metrics-listen`).
//! - [`request`]: the headers of a delivery's HTTP request that follow from its task.
//! - [`response`]: what an attempt keeps of an endpoint's response.
//! - [`signature`]: the Standard Webhooks signature scheme, for the daemon that signs and receivers that verify.
//! - [`sync`]: locking a mutex whose data stays whole if a holder panics.
//! - [`text`]: how a value a caller sent is quoted back in a message.
//!
//! The server, the delivery daemon and the client all depend on this crate, so the contract and the rules
//! that must agree on both sides of a connection live here exactly once.

pub mod catalogue;
pub mod definitions;
pub mod duration;
pub mod key_file;
pub mod logging;
pub mod monitoring;
pub mod request;
pub mod response;
pub mod signature;
pub mod sync;
pub mod text;

/// The generated code of `proto/kit/webhooks/v1`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("kit.webhooks.v1");

    /// The encoded descriptor set of the contract, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kit_webhooks_descriptor.bin"));
}

/// The most leases one delivery stream may hold unreported (`StreamDeliveriesRequest.max_in_flight`): a
/// server refuses more, and a daemon refuses to start asking for more.
pub const MAX_STREAM_IN_FLIGHT: u32 = 100_000;

/// The response metadata in which a server names a delivery stream (`DeliveryService`'s doc in the proto).
pub const STREAM_ID_METADATA: &str = "kit-stream-id";

/// How long past its shutdown grace a stopping process is given before it is ended regardless: its own
/// grace ends the normal way (the server's drain, the daemon's wait for its requests); this only catches a
/// stop stuck past it.
const GRACE_BACKSTOP: std::time::Duration = std::time::Duration::from_secs(5);

/// A future that completes when the process is asked to stop (SIGINT or SIGTERM): the graceful-shutdown
/// trigger of every Kit Webhooks binary. From then on, a second signal ends the process at once (exit code
/// 1), as does `grace` passing (and a few seconds more): what is still in flight is abandoned, and sent again
/// (a daemon's server returns its leases to the queue when its stream ends; a server's leases expire). The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives while the process is still starting is not
/// lost (nor does it kill the process the default way). Call it from within the tokio runtime.
pub fn shutdown_signal(
    grace: std::time::Duration,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).ok();
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        async fn one(stream: &mut Option<Signal>) {
            match stream {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        async fn either(terminate: &mut Option<Signal>, interrupt: &mut Option<Signal>) {
            tokio::select! {
                _ = one(terminate) => {}
                _ = one(interrupt) => {}
            }
        }
        async move {
            either(&mut terminate, &mut interrupt).await;
            tokio::spawn(async move {
                tokio::select! {
                    _ = either(&mut terminate, &mut interrupt) => {
                        tracing::warn!("asked again to stop: exiting now; the deliveries in flight will be sent again");
                    }
                    _ = tokio::time::sleep(grace + GRACE_BACKSTOP) => {
                        tracing::warn!(?grace, "still stopping past the shutdown grace: exiting now");
                    }
                }
                std::process::exit(1);
            });
        }
    }
    #[cfg(not(unix))]
    async move {
        let _ = tokio::signal::ctrl_c().await;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = tokio::time::sleep(grace + GRACE_BACKSTOP) => {}
            }
            std::process::exit(1);
        });
    }
}

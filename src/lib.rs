//! Kit Webhooks: what every part of the system shares.
//!
//! - [`proto`]: the generated gRPC contract (`kit.webhooks.v1`), clients and servers alike.
//! - [`catalogue`]: the fixed catalogue of event types and the subscription rules over it.
//! - [`duration`]: durations in flags and messages (`5s`, `24h`).
//! - [`key_file`]: the file of first-start API keys the server writes and the CLI reads.
//! - [`logging`]: the server's and the daemon's log lines (`RUST_LOG`, `NO_COLOR`, text or JSON).
//! - [`request`]: the headers of a delivery's HTTP request that follow from its task.
//! - [`response`]: what an attempt keeps of an endpoint's response.
//! - [`signature`]: the Standard Webhooks signature scheme, for the daemon that signs and receivers that verify.
//! - [`sync`]: locking a mutex whose data stays whole if a holder panics.
//! - [`text`]: how a value a caller sent is quoted back in a message.
//!
//! The server, the delivery daemon and the client all depend on this crate, so the contract and the rules
//! that must agree on both sides of a connection live here exactly once.

pub mod catalogue;
pub mod duration;
pub mod key_file;
pub mod logging;
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

/// A future that completes when the process is asked to stop (SIGINT or SIGTERM): the graceful-shutdown
/// trigger of every Kit Webhooks binary. The handlers are installed when this is called, not when the future
/// is first polled, so a signal that arrives while the process is still starting is not lost (nor does it
/// kill the process the default way). Call it from within the tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(terminate) => {}
                _ = wait(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

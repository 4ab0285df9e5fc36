//! Kit Webhooks: what every part of the system shares.
//!
//! - [`proto`]: the generated gRPC contract (`kit.webhooks.v1`), clients and servers alike.
//! - [`catalogue`]: the fixed catalogue of event types and the subscription rules over it.
//! - [`duration`]: durations in flags and messages (`5s`, `24h`).
//! - [`key_file`]: the file of first-start API keys the server writes and the CLI reads.
//! - [`signature`]: the Standard Webhooks signature scheme, for the daemon that signs and receivers that verify.
//!
//! The server, the delivery daemon and the client all depend on this crate, so the contract and the rules
//! that must agree on both sides of a connection live here exactly once.

pub mod catalogue;
pub mod duration;
pub mod key_file;
pub mod signature;

/// The generated code of `proto/kit/webhooks/v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("kit.webhooks.v1");

    /// The encoded descriptor set of the contract, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kit_webhooks_descriptor.bin"));
}

/// Completes when the process is asked to stop (SIGINT or SIGTERM): the graceful-shutdown trigger of every
/// Kit Webhooks binary.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

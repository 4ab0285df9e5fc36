//! Logging of the server and the daemon, set up one way for both: lines on stderr, filtered by `RUST_LOG`
//! (`RUST_LOG=kit_webhooks_server=debug`), coloured only for a person at a terminal: not when stderr is a
//! file, a pipe or a journal, nor when `NO_COLOR` is set (<https://no-color.org>).

use std::io::IsTerminal;

/// Installs the process's logger; `default_filter` applies when `RUST_LOG` is unset or unreadable.
pub fn init(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .init();
}

/// Whether log lines may carry colour codes.
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

//! Logging of the server and the daemon, set up one way for both: lines on stderr, filtered by `RUST_LOG`
//! (`RUST_LOG=kit_webhooks_server=debug`), as text for people or as JSON for a log pipeline (`--log-format
//! json`: one object per line, with the timestamp, level, target, message and the event's fields). Text is
//! coloured only for a person at a terminal: not when stderr is a file, a pipe or a journal, nor when
//! `NO_COLOR` is set (<https://no-color.org>).

use std::{fmt, io::IsTerminal, str::FromStr};

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("`{other}` is not a log format: text or json")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Text => "text",
            Format::Json => "json",
        })
    }
}

/// Installs the process's logger; `default_filter` applies when `RUST_LOG` is unset or unreadable.
pub fn init(default_filter: &str, format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Text => lines.with_ansi(colour()).init(),
        // Fields at the top level of each object, beside the message, where log pipelines index them.
        Format::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
/// Whether log lines may carry colour codes.
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

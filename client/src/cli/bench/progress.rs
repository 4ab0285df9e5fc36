//! Progress on stderr while a run goes on, when stderr is a terminal.

use std::{io::IsTerminal, sync::Arc, time::Duration};

use super::receivers::Tally;

/// Shows what the run is doing now.
pub fn note(text: &str) {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K{text}…");
    }
}

/// A progress bar on stderr (when it is a terminal) while deliveries arrive.
pub struct Progress(Option<tokio::task::JoinHandle<()>>);

impl Progress {
    pub fn start(expected: usize, tally: Arc<Tally>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        Progress(Some(tokio::spawn(async move {
            loop {
                let done = tally.unique();
                let width = 30;
                let filled = (done * width / expected.max(1)).min(width);
                eprint!(
                    "\r\x1b[2K[{}{}] {done}/{expected} deliveries",
                    "#".repeat(filled),
                    "-".repeat(width - filled)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })))
    }

    pub fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

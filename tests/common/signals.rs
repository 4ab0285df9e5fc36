//! Stopping a process the way a supervisor does: SIGTERM, then waiting for it to exit.

// Included on its own by some test crates.
#![allow(dead_code)]

use std::{
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

/// Sends SIGTERM to `child`.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
}

/// Waits at most `within` for `child` to exit, and returns how it exited.
pub fn exit_within(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            return exit;
        }
        assert!(Instant::now() < deadline, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

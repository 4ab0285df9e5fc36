//! The Python environment of the tests that prove other languages can use Kit Webhooks: a venv at `.venv`
//! with `tests/python/requirements.txt`, made on first use if `.ci/run` has not made it already.

#![allow(dead_code)]

use std::{path::PathBuf, process::Command, sync::Mutex};

static VENV: Mutex<()> = Mutex::new(());

/// The venv's Python, with the test requirements installed.
pub fn python() -> PathBuf {
    let _guard = VENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let venv = super::root().join(".venv");
    let python = venv.join("bin").join("python");
    let requirements = super::root().join("tests/python/requirements.txt");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import standardwebhooks, grpc_tools"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(status.success(), "creating the venv failed");
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&requirements)
            .status()
            .expect("pip install");
        assert!(
            status.success(),
            "installing {} failed",
            requirements.display()
        );
    }
    python
}

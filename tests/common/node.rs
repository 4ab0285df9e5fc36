//! The Node.js side of the tests that run TypeScript (a client generated from `proto/`, the console in a
//! browser): a package's locked dependencies, installed with `npm ci` on first use when `.ci/run` has not
//! installed them already, and its commands run with their output shown on failure.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

static INSTALL: Mutex<()> = Mutex::new(());

/// Installs `package`'s locked dependencies unless every binary of `bins` is there.
pub fn install(package: &Path, bins: &[&str]) {
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if bins.iter().all(|name| bin(package, name).exists()) {
        return;
    }
    run(
        Command::new("npm").current_dir(package).args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--silent",
        ]),
        &format!("npm ci in {}", package.display()),
    );
}

/// The package's installed binary `name`.
pub fn bin(package: &Path, name: &str) -> PathBuf {
    package.join("node_modules/.bin").join(name)
}

/// Runs `command`; its stdout, or a failure showing what it said.
pub fn run(command: &mut Command, what: &str) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

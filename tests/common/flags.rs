//! Flags of the test programs that run without libtest's harness (`server/tests/chaos.rs -- --seconds 600`):
//! read from the command line, anything else on it (libtest's own flags, which `cargo test` may pass) ignored.

/// The value after `name` on the command line, if `name` is there.
pub fn value<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|arg| arg == name)?;
    let value = args.get(at + 1).and_then(|value| value.parse().ok());
    Some(value.unwrap_or_else(|| panic!("{name} takes a value")))
}

//! The `kit-webhooks` command line: every admin action (README.md, The CLI), publishing events, and `listen`.
//!
//! - [`connection`]: which server and which key (flags, environment, or the server's key file).
//! - [`output`]: tables for people, `--output json` for scripts.
//! - [`listen`]: a local endpoint that verifies signatures and prints what arrives.
//! - [`trigger`]: `events trigger`, a type's example published and its deliveries' outcomes printed.
//! - [`commands`]: one function per subcommand; [`account`] those of `keys` and `audit`.
//! - [`words`]: errors in the CLI's words (a refused field named as its flag).
//! - [`bench`](mod@bench): the benchmark harness.

pub mod account;
pub mod bench;
pub mod commands;
pub mod connection;
pub mod listen;
pub mod output;
pub mod trigger;
pub mod words;

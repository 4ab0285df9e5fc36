//! The README's configuration tables against `kit-webhooks-server serve --help`, the binary's own account of
//! its flags: every flag of `serve` (the server's and the embedded daemon's) has a row, and every row names
//! the flag's environment variable and its default as `--help` shows them. A default written as a value
//! (a cell that starts with `` `…` ``) must be the flag's default; a cell in prose (`off`, `none`, `a quarter
//! of …`) must belong to a flag with no fixed default.

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

use std::{collections::BTreeMap, process::Command};

/// What `--help` or the README says of one flag.
#[derive(Debug, Default, PartialEq, Eq)]
struct Flag {
    env: Option<String>,
    default: Option<String>,
}

#[test]
fn the_readme_tables_match_serve_help() {
    let help = serve_help();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let rows = readme_rows(&readme);
    assert!(
        rows.len() >= 15,
        "found only {} flag rows in the README",
        rows.len()
    );
    for (name, flag) in &help {
        let row = rows
            .get(name)
            .unwrap_or_else(|| panic!("`{name}` is in `serve --help` but has no README row"));
        assert_eq!(
            row, flag,
            "the README's row for `{name}` differs from `serve --help`"
        );
    }
    for name in rows.keys() {
        assert!(
            help.contains_key(name),
            "the README documents `{name}`, which `serve --help` does not have"
        );
    }
}

/// The flags of `serve --help`, with their environment variable and default, by name (`--listen`).
fn serve_help() -> BTreeMap<String, Flag> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kit-webhooks-server"));
    command.args(["serve", "--help"]);
    // `--help` shows the environment's value beside the variable's name; show none.
    for (key, _) in std::env::vars() {
        if key.starts_with("KIT_WEBHOOKS_") {
            command.env_remove(key);
        }
    }
    let output = command.output().expect("run kit-webhooks-server");
    assert!(output.status.success(), "serve --help failed");
    let text = String::from_utf8(output.stdout).expect("UTF-8 help");
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if line.starts_with("  ") && (trimmed.starts_with("--") || trimmed.starts_with('-')) {
            let name = trimmed
                .split([' ', ','])
                .find(|word| word.starts_with("--"))
                .map(str::to_owned);
            current = name.filter(|name| name != "--help");
            if let Some(name) = &current {
                flags.insert(name.clone(), Flag::default());
            }
            continue;
        }
        let Some(flag) = current.as_ref().and_then(|name| flags.get_mut(name)) else {
            continue;
        };
        if let Some(env) = bracketed(trimmed, "[env: ") {
            flag.env = Some(env.trim_end_matches('=').to_owned());
        }
        // A default in prose (`[default: beside the SQLite file]`, written in the flag's doc) is not a value.
        if let Some(default) = bracketed(trimmed, "[default: ").filter(|d| !d.contains(' ')) {
            flag.default = Some(default.to_owned());
        }
    }
    flags
}

/// What follows `prefix` up to the closing bracket, if the line has it.
fn bracketed<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let start = line.find(prefix)? + prefix.len();
    let end = line[start..].find(']')? + start;
    Some(&line[start..end])
}

/// The README's flag rows: `| `--flag ARG` … | `ENV` | default |` (server) and
/// `| `--flag ARG` (`ENV`) | default |` (daemon).
fn readme_rows(readme: &str) -> BTreeMap<String, Flag> {
    let mut rows = BTreeMap::new();
    for line in readme.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let flag_cell = cells[0];
        let name = flag_cell
            .trim_start_matches('`')
            .split(['`', ' '])
            .next()
            .unwrap_or_default()
            .to_owned();
        let (env, default_cell) = match cells.len() {
            3 => (first_code(cells[1]), cells[2]),
            _ => (
                first_code(flag_cell.split_once('(').map_or("", |(_, rest)| rest)),
                cells[1],
            ),
        };
        let default = default_cell
            .starts_with('`')
            .then(|| first_code(default_cell))
            .flatten();
        rows.insert(name, Flag { env, default });
    }
    rows
}

/// The first `` `code` `` span of `text`.
fn first_code(text: &str) -> Option<String> {
    let start = text.find('`')? + 1;
    let end = text[start..].find('`')? + start;
    Some(text[start..end].to_owned())
}

//! Property tests of every request validator (the stable-toolchain stand-in for fuzzing: `cargo fuzz` needs
//! a nightly compiler). Whatever the input, a validator never panics, refuses with INVALID_ARGUMENT naming
//! its field in a message of bounded size, and what it accepts satisfies the rule it states. Each property
//! also runs over a corpus of known-hostile inputs (`tests/corpus/`), and `proptest-regressions/` keeps any
//! failing case found. `PROPTEST_CASES` sets how many generated cases each property runs (256 by default).

// A test reads as one scenario, top to bottom, however long.
#![allow(clippy::too_many_lines)]

use kit_webhooks_server::core::{
    event,
    id::{self, Kind},
    page::PageRequest,
    webhook, Error,
};
use proptest::prelude::*;
use tonic::{Code, Status};

/// The hostile inputs every string property also runs over: one per line, `\n`, `\t`, `\0` and `\\` escaped.
fn corpus() -> Vec<String> {
    include_str!("corpus/strings.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            line.replace("\\n", "\n")
                .replace("\\t", "\t")
                .replace("\\0", "\0")
                .replace("\\\\", "\\")
        })
        .chain([
            "x".repeat(300_000),
            format!("{{\"a\":{}{}}}", "[".repeat(40_000), "]".repeat(40_000)),
            "é".repeat(100_000),
        ])
        .collect()
}

/// Text of every kind: printable, control characters, unicode, and the shapes of valid values.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        "https?://[a-z0-9.:\\[\\]@%/?#_-]{0,60}",
        "(wh|evt|dlv|lse|dst)_[0-9A-Za-z]{0,30}",
        "[a-z_]{1,20}\\.[a-z_*]{1,20}",
        "[{}\\[\\]\",:0-9a-z\\\\ ]{0,200}",
    ]
}

/// `result` is either accepted or refused with INVALID_ARGUMENT naming `field` in a message of bounded size.
fn refused_properly<T>(result: &Result<T, Error>, field: &str) -> Result<(), TestCaseError> {
    if let Err(err) = result {
        let status = Status::from(err.copied());
        prop_assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        prop_assert!(status.message().starts_with(field), "{}", status.message());
        prop_assert!(
            status.message().len() < 1024,
            "{} bytes",
            status.message().len()
        );
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), TestCaseError> {
    for allow_http in [false, true] {
        let result = webhook::validate_url(url, allow_http);
        refused_properly(&result, "url")?;
        if let Ok(stored) = result {
            let parsed = url::Url::parse(&stored).expect("an accepted URL parses");
            prop_assert!(parsed.scheme() == "https" || (allow_http && parsed.scheme() == "http"));
            prop_assert!(parsed.host_str().is_some_and(|h| !h.is_empty()));
            prop_assert!(!stored.chars().any(char::is_control));
        }
    }
    Ok(())
}

fn check_data(data: &str) -> Result<(), TestCaseError> {
    let result = event::validate_data(data.to_owned(), 256 * 1024);
    refused_properly(&result, "data_json")?;
    if let Ok(stored) = result {
        let value: serde_json::Value =
            serde_json::from_str(&stored).expect("accepted data is JSON");
        prop_assert!(value.is_object());
    }
    Ok(())
}

fn check_text_fields(value: &str) -> Result<(), TestCaseError> {
    refused_properly(&webhook::validate_description(value), "description")?;
    if let Ok(accepted) = event::validate_idempotency_key(value) {
        prop_assert!(!accepted.unwrap_or_default().chars().any(char::is_control));
    }
    refused_properly(&event::validate_idempotency_key(value), "idempotency_key")?;
    refused_properly(
        &event::validate_account_id("account_id", value),
        "account_id",
    )?;
    refused_properly(&event::validate_type("type", value), "type")?;
    refused_properly(&event::validate_type_filter("type", value), "type")?;
    refused_properly(&webhook::validate_events(&[value.to_owned()]), "events")?;
    for kind in [
        Kind::Webhook,
        Kind::Event,
        Kind::Delivery,
        Kind::Lease,
        Kind::Stream,
    ] {
        let parsed = id::parse("id", kind, value);
        refused_properly(&parsed, "id")?;
        if let Ok(id) = parsed {
            prop_assert!(id.starts_with(kind.prefix()));
            prop_assert_eq!(id.len(), kind.prefix().len() + 26);
        }
        refused_properly(&PageRequest::parse(7, value, kind), "page_token")?;
    }
    Ok(())
}

#[test]
fn the_corpus_is_refused_or_accepted_properly() {
    for value in corpus() {
        let run = || -> Result<(), TestCaseError> {
            check_url(&value)?;
            check_data(&value)?;
            check_text_fields(&value)
        };
        if let Err(err) = run() {
            panic!(
                "{err} for corpus entry {}",
                kit_webhooks::text::quoted(&value)
            );
        }
    }
}

proptest! {
    #[test]
    fn urls(url in text()) {
        check_url(&url)?;
    }

    #[test]
    fn payloads(data in text()) {
        check_data(&data)?;
    }

    #[test]
    fn nested_payloads(depth in 0usize..200, arrays in any::<bool>()) {
        // The outer object is one level; `depth` more inside it.
        let (open, close) = if arrays { ("[", "]") } else { ("{\"k\":", "}") };
        let data = format!("{{\"a\":{}1{}}}", open.repeat(depth), close.repeat(depth));
        let result = event::validate_data(data.clone(), 1 << 20);
        refused_properly(&result, "data_json")?;
        prop_assert_eq!(result.is_ok(), depth < event::MAX_DATA_DEPTH);
    }

    #[test]
    fn text_fields_ids_and_page_tokens(value in text()) {
        check_text_fields(&value)?;
    }

    #[test]
    fn subscription_lists(events in proptest::collection::vec(text(), 0..8)) {
        let result = webhook::validate_events(&events);
        refused_properly(&result, "events")?;
        if let Ok(accepted) = result {
            prop_assert!(!accepted.is_empty());
        }
    }

    #[test]
    fn rates_and_grace_periods(n in any::<u32>()) {
        refused_properly(&webhook::validate_rate_limit(n), "rate_limit_per_second")?;
        refused_properly(&webhook::validate_grace_period(Some(n)), "grace_period_seconds")?;
    }

    #[test]
    fn page_tokens_round_trip(page_size in any::<u32>()) {
        let page = PageRequest::parse(page_size, "", Kind::Webhook).expect("no token");
        let mut rows: Vec<String> = (0..page.limit + 1).map(|_| id::new(Kind::Webhook)).collect();
        let token = page.finish(&mut rows, |row| row);
        let next = PageRequest::parse(page_size, &token, Kind::Webhook).expect("its own token");
        prop_assert_eq!(next.after.as_deref(), rows.last().map(String::as_str));
    }
}

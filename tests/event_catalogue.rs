//! The event catalogue's definitions (`catalogue/<type>.json`): one per type, each example matching its
//! schema's required fields, and docs/EVENTS.md generated from them and up to date. Run with
//! `KIT_WEBHOOKS_WRITE_DOCS=1` to rewrite the page after changing a definition.

use kit_webhooks::{catalogue, definitions};

#[test]
fn every_type_has_a_definition_and_every_file_is_a_type() {
    for event in definitions::types() {
        let definition = definitions::of(event.name)
            .unwrap_or_else(|| panic!("no catalogue/{}.json", event.name));
        assert_eq!(definition.name, event.name);
        assert_eq!(
            definition.schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(
            definition.schema["additionalProperties"], true,
            "{}",
            event.name
        );
        for field in definition.schema["required"].as_array().expect("required") {
            let field = field.as_str().expect("a name");
            assert!(
                !definition.example[field].is_null(),
                "{}'s example lacks `{field}`",
                event.name
            );
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
    let files = std::fs::read_dir(dir).expect("catalogue/").count();
    assert_eq!(
        files,
        catalogue::EVENT_TYPES.len() + catalogue::OPERATIONAL_TYPES.len() + 1,
        "one file per type, operational ones included, and test.ping"
    );
}

#[test]
fn docs_events_md_is_generated_from_the_catalogue() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/EVENTS.md");
    let generated = definitions::markdown();
    if std::env::var_os("KIT_WEBHOOKS_WRITE_DOCS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/EVENTS.md");
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == generated,
        "docs/EVENTS.md is stale: rerun with KIT_WEBHOOKS_WRITE_DOCS=1 cargo test --test event_catalogue"
    );
    for event in definitions::types() {
        assert!(generated.contains(&format!("### `{}`", event.name)));
    }
}

//! A published payload checked against its type's JSON Schema (`kit_webhooks::definitions`), when the server
//! runs with `--validate-payloads`: a mismatch is refused naming where in `data_json` and which rule, and
//! nothing is stored. Off by default, so that publishers written before the schemas keep working.

use std::{collections::HashMap, sync::OnceLock};

use jsonschema::Validator;
use kit_webhooks::definitions;

use super::Error;

/// Each type's compiled schema, built at the first validation.
fn validators() -> &'static HashMap<&'static str, Validator> {
    static VALIDATORS: OnceLock<HashMap<&'static str, Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        definitions::types()
            .filter_map(|event| Some((event.name, definitions::of(event.name)?)))
            .map(|(name, definition)| {
                let validator = jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&definition.schema)
                    // The schemas are part of the build, and a test compiles every one.
                    .unwrap_or_else(|err| panic!("catalogue/{name}.json's schema: {err}"));
                (name, validator)
            })
            .collect()
    })
}

/// Checks `data_json` (a JSON object, as `super::event::validate_data` admitted it) against `event_type`'s
/// schema. The message names the JSON pointer and the rule, never the value (it may be personal data).
pub fn check(event_type: &str, data_json: &str) -> Result<(), Error> {
    let Some(validator) = validators().get(event_type) else {
        return Ok(());
    };
    let data: serde_json::Value = serde_json::from_str(data_json)
        .map_err(|err| Error::invalid("data_json", format!("is not valid JSON: {err}")))?;
    let Some(error) = validator.iter_errors(&data).next() else {
        return Ok(());
    };
    let at = error.instance_path().to_string();
    let message = format!(
        "does not match the `{event_type}` schema at {}: {} (rule {})",
        if at.is_empty() { "/" } else { at.as_str() },
        error.masked(),
        error.schema_path()
    );
    Err(Error::invalid("data_json", message))
}

/// The `data` of a triggered event (`TriggerEvent`, or `SendTestPing` with a type): `data_json` if given,
/// else the type's example with fresh ids; either way checked against the schema, since a trigger tries a
/// receiver with what Kit would send.
pub fn triggered(event_type: &str, data_json: String, max_bytes: usize) -> Result<String, Error> {
    let data_json = match data_json.is_empty() {
        true => definitions::fresh_example(event_type)
            .map(|example| example.to_string())
            .unwrap_or_else(|| "{}".into()),
        false => super::event::validate_data(data_json, max_bytes)?,
    };
    check(event_type, &data_json)?;
    Ok(data_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_matches_its_schema() {
        let mut checked = 0;
        for event in definitions::types() {
            let definition = definitions::of(event.name).expect("a definition for every type");
            check(event.name, &definition.example.to_string())
                .unwrap_or_else(|err| panic!("{}'s example: {err}", event.name));
            checked += 1;
        }
        assert_eq!(
            checked, 25,
            "22 publishable types, 2 operational ones, test.ping"
        );
    }

    #[test]
    fn a_mismatch_names_the_path_and_the_rule_but_not_the_value() {
        let mut data = definitions::of("interview.scheduled")
            .unwrap()
            .example
            .clone();
        data["candidate"]["email"] = "ada-at-example".into();
        let err = check("interview.scheduled", &data.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("data_json: "), "{err}");
        assert!(err.contains("/candidate/email"), "{err}");
        assert!(err.contains("format"), "{err}");
        assert!(!err.contains("ada-at-example"), "{err}");
        let mut data = definitions::of("interview.scheduled")
            .unwrap()
            .example
            .clone();
        data.as_object_mut().unwrap().remove("occurred_at");
        let err = check("interview.scheduled", &data.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("occurred_at") && err.contains("required"),
            "{err}"
        );
        // Fields the schema does not know are welcome.
        let mut extra = definitions::of("offer.revised").unwrap().example.clone();
        extra["something_new"] = 1.into();
        check("offer.revised", &extra.to_string()).unwrap();
    }
}

//! The CLI's words for what the server names: a refused field is shown as the flag that set it
//! (`data_json: must be a JSON object` becomes `--data: must be a JSON object`), so that the error points at
//! what the user typed.

/// The contract's request fields and the flags (or argument) of this CLI that set them.
const FIELDS: &[(&str, &str)] = &[
    ("data_json", "--data"),
    ("account_id", "--account"),
    ("type", "--type"),
    ("idempotency_key", "--idempotency-key"),
    ("url", "--url"),
    ("description", "--description"),
    ("events", "--events"),
    ("rate_limit_per_second", "--rate-limit"),
    ("grace_period_seconds", "--grace"),
    ("webhook_id", "--webhook"),
    ("event_type", "--event-type"),
    ("status", "--status"),
    ("since", "--since"),
    ("until", "--until"),
    ("id", "ID"),
];

/// `err` as one line, with an invalid field named as its flag.
pub fn error_line(err: &anyhow::Error) -> String {
    if let Some(call) = err.downcast_ref::<kit_webhooks_client::Error>() {
        if call.code == tonic::Code::InvalidArgument {
            let message = match call.message.split_once(": ") {
                Some((field, rest)) => match FIELDS.iter().find(|(name, _)| *name == field) {
                    Some((_, flag)) => format!("{flag}: {rest}"),
                    None => call.message.clone(),
                },
                None => call.message.clone(),
            };
            let call = kit_webhooks_client::Error::new(call.code, message);
            return one_line(&call.to_string());
        }
    }
    one_line(&format!("{err:#}"))
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_field_is_named_as_its_flag() {
        let refused = |message: &str| {
            anyhow::Error::from(kit_webhooks_client::Error::new(
                tonic::Code::InvalidArgument,
                message,
            ))
        };
        assert_eq!(
            error_line(&refused("data_json: must be a JSON object")),
            "INVALID_ARGUMENT: --data: must be a JSON object"
        );
        assert_eq!(
            error_line(&refused("grace_period_seconds: 700000 is more than 7 days")),
            "INVALID_ARGUMENT: --grace: 700000 is more than 7 days"
        );
        assert_eq!(
            error_line(&refused("page_token: is not one this server issued")),
            "INVALID_ARGUMENT: page_token: is not one this server issued"
        );
        let other = anyhow::Error::from(kit_webhooks_client::Error::new(
            tonic::Code::NotFound,
            "url: not found",
        ));
        assert_eq!(error_line(&other), "NOT_FOUND: url: not found");
    }
}

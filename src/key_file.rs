//! The key file: where the server's first start leaves an admin key and a publisher key for a new user, and
//! where the CLI finds them. One `NAME=value` per line, so a shell can also source it (`set -a; . ./file`).

/// The admin key of account `default`.
pub const ADMIN_KEY: &str = "KIT_WEBHOOKS_ADMIN_KEY";
/// The publisher key.
pub const PUBLISHER_KEY: &str = "KIT_WEBHOOKS_PUBLISHER_KEY";
/// The file name the server uses when the database is not a SQLite file beside which to put it.
pub const DEFAULT_FILE_NAME: &str = "kit-webhooks.keys";

/// The file's text for these keys.
pub fn render(account: &str, admin_key: &str, publisher_key: &str) -> String {
    format!(
        "# Kit Webhooks API keys, created on the server's first start. Keep this file private.\n\
         # The admin key manages account `{account}`'s webhooks; the publisher key publishes events.\n\
         {ADMIN_KEY}={admin_key}\n\
         {PUBLISHER_KEY}={publisher_key}\n"
    )
}

/// The value of entry `name` in a key file's `text`.
pub fn read(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = render("default", "kit_a", "kit_p");
        assert_eq!(read(&text, ADMIN_KEY).as_deref(), Some("kit_a"));
        assert_eq!(read(&text, PUBLISHER_KEY).as_deref(), Some("kit_p"));
        assert_eq!(read(&text, "OTHER"), None);
    }
}

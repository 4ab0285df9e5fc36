//! Text fields of requests: what the server accepts to store. Every string field refuses control characters,
//! the same on both databases: PostgreSQL cannot store NUL at all (one such value would fail the writer
//! cycle it joins), and the others have no place in a label, a key, a name or a URL.

use super::Error;

/// Refuses `value` of request field `field` if it holds a control character (C0, DEL or C1).
pub fn refuse_control_characters(field: &'static str, value: &str) -> Result<(), Error> {
    match value.char_indices().find(|(_, c)| c.is_control()) {
        None => Ok(()),
        Some((at, c)) => Err(Error::invalid(
            field,
            format!(
                "must not contain control characters (found {} at byte {at})",
                c.escape_unicode()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_wherever_they_are() {
        assert!(refuse_control_characters("f", "plain text, é and 日本").is_ok());
        for bad in ["a\0b", "tab\there", "line\n", "\u{7f}", "c1\u{85}"] {
            let err = refuse_control_characters("f", bad).unwrap_err().to_string();
            assert!(
                err.starts_with("f: must not contain control characters"),
                "{err}"
            );
        }
    }
}

//! Quoting what a caller sent back to it in an error message: in backticks, cut short, control characters
//! escaped, so that a huge or binary value never makes a message larger than a client accepts (a gRPC status
//! travels in metadata, which clients limit to a few KiB) or garbles a terminal.

/// The most characters of a value quoted in a message.
pub const MAX_QUOTED_CHARS: usize = 64;

/// `value` in backticks, cut to [`MAX_QUOTED_CHARS`] characters and an ellipsis, control characters escaped.
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_QUOTED_CHARS) + 4);
    out.push('`');
    for (index, c) in value.chars().enumerate() {
        if index == MAX_QUOTED_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(quoted("offer.eaten"), "`offer.eaten`");
        assert_eq!(quoted("a\0b\n"), "`a\\u{0}b\\n`");
    }

    #[test]
    fn long_values_are_cut() {
        let long = "é".repeat(1_000_000);
        let message = quoted(&long);
        assert_eq!(message.chars().count(), MAX_QUOTED_CHARS + 3);
        assert!(message.ends_with("…`"));
    }
}

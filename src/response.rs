//! What an attempt keeps of an endpoint's response: the first [`MAX_BODY_BYTES`] of its body, and at most
//! [`MAX_HEADERS`] headers of at most [`MAX_HEADER_BYTES`] in all. The daemon reads and reports no more, and
//! the server stores no more whatever a daemon reports, so one endpoint's answer cannot make an attempt, a
//! report call or a page of history arbitrarily large.

use std::collections::BTreeMap;

/// The most of a response body that is read and stored.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The most response headers stored for one attempt.
pub const MAX_HEADERS: usize = 64;
/// The most bytes of response header names and values stored for one attempt.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The entry that says how many headers were left out. Parentheses cannot occur in a header name, so it
/// never collides with a real one.
pub const TRUNCATED_HEADERS: &str = "(truncated)";

/// `headers` within the limits: in name order, those that fit, and a [`TRUNCATED_HEADERS`] entry saying how
/// many were left out and how large they were.
pub fn capped_headers(headers: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let total: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if headers.len() <= MAX_HEADERS && total <= MAX_HEADER_BYTES {
        return headers;
    }
    let mut kept = BTreeMap::new();
    let (mut bytes, mut left_out, mut left_out_bytes) = (0usize, 0usize, 0usize);
    for (name, value) in headers {
        let size = name.len() + value.len();
        if name != TRUNCATED_HEADERS
            && kept.len() < MAX_HEADERS - 1
            && bytes + size <= MAX_HEADER_BYTES
        {
            bytes += size;
            kept.insert(name, value);
        } else {
            left_out += 1;
            left_out_bytes += size;
        }
    }
    kept.insert(
        TRUNCATED_HEADERS.to_owned(),
        format!("{left_out} more headers ({left_out_bytes} bytes) not stored"),
    );
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_within_the_limits_are_kept_whole() {
        let headers: BTreeMap<_, _> = [("content-type".to_owned(), "text/plain".to_owned())].into();
        assert_eq!(capped_headers(headers.clone()), headers);
    }

    #[test]
    fn too_many_or_too_large_headers_are_cut_and_say_so() {
        let many: BTreeMap<_, _> = (0..92)
            .map(|i| (format!("x-h{i:03}"), "v".repeat(4000)))
            .collect();
        let kept = capped_headers(many);
        let bytes: usize = kept.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(kept.len() <= MAX_HEADERS);
        assert!(bytes <= MAX_HEADER_BYTES + 100, "{bytes}");
        assert!(
            kept[TRUNCATED_HEADERS].starts_with("90 more headers"),
            "{kept:?}"
        );
    }
}

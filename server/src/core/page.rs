//! Pagination: page sizes and opaque page tokens. A token encodes the last id of the previous page, so a page
//! is one indexed range scan however deep the caller goes.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use super::{id, Error};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 500;

const TOKEN_VERSION: &str = "v1:";

/// Where a page starts and how long it is.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u64,
    /// The last id of the previous page.
    pub after: Option<String>,
}

impl PageRequest {
    /// Reads `page_size` and `page_token` for a list of `kind` ids.
    pub fn parse(page_size: u32, page_token: &str, kind: id::Kind) -> Result<Self, Error> {
        let limit = match u64::from(page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        if page_token.is_empty() {
            return Ok(PageRequest { limit, after: None });
        }
        let malformed = || {
            Error::invalid(
                "page_token",
                "is malformed; pass `next_page_token` of the previous page unchanged",
            )
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(page_token)
            .map_err(|_| malformed())?;
        let text = String::from_utf8(bytes).map_err(|_| malformed())?;
        let last = text.strip_prefix(TOKEN_VERSION).ok_or_else(malformed)?;
        id::parse("page_token", kind, last).map_err(|_| malformed())?;
        Ok(PageRequest {
            limit,
            after: Some(last.to_owned()),
        })
    }

    /// Trims `rows` (fetched with `limit + 1`) to the page and returns the token of the next page, if any.
    pub fn finish<T>(&self, rows: &mut Vec<T>, id_of: impl Fn(&T) -> &str) -> String {
        if rows.len() as u64 <= self.limit {
            return String::new();
        }
        rows.truncate(self.limit as usize);
        rows.last()
            .map(|row| URL_SAFE_NO_PAD.encode(format!("{TOKEN_VERSION}{}", id_of(row))))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_and_tokens() {
        assert_eq!(
            PageRequest::parse(0, "", id::Kind::Webhook).unwrap().limit,
            50
        );
        assert_eq!(
            PageRequest::parse(10_000, "", id::Kind::Webhook)
                .unwrap()
                .limit,
            500
        );
        let page = PageRequest::parse(2, "", id::Kind::Webhook).unwrap();
        let mut rows = vec![
            id::new(id::Kind::Webhook),
            id::new(id::Kind::Webhook),
            id::new(id::Kind::Webhook),
        ];
        let token = page.finish(&mut rows, |s| s);
        assert_eq!(rows.len(), 2);
        let next = PageRequest::parse(2, &token, id::Kind::Webhook).unwrap();
        assert_eq!(next.after.as_deref(), Some(rows[1].as_str()));
        assert!(PageRequest::parse(2, "garbage!", id::Kind::Webhook).is_err());
        assert!(PageRequest::parse(2, &token, id::Kind::Event).is_err());
    }
}

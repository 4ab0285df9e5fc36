//! The signature scheme (Standard Webhooks v1): how the daemon signs a request and how a
//! receiver verifies it.
//!
//! The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`, the key is the base64-decoded part of a
//! `whsec_…` secret, and the signature is `v1,` + base64(HMAC-SHA256). During a secret rotation grace a
//! request carries one `v1,` entry per valid secret, space-separated; a receiver accepts the request when any
//! entry matches its secret.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header names of the scheme.
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// How far a request's timestamp may be from the receiver's clock: 5 minutes.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 5 * 60;

const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signing secret is not `whsec_` + base64")]
    InvalidSecret,
    #[error("the `webhook-timestamp` header is missing or not an integer")]
    InvalidTimestamp,
    #[error("the timestamp is {0} s away from now, more than the tolerance allows")]
    TimestampOutOfTolerance(u64),
    #[error("the `webhook-signature` header has no `v1,` signature")]
    NoSignature,
    #[error("no signature matches the secret")]
    Mismatch,
}

/// The HMAC key of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD
        .decode(encoded)
        .map_err(|_| SignatureError::InvalidSecret)
}

/// A secret decoded and keyed once, for a receiver (or sender) that signs or verifies many requests with
/// it: each request then costs the HMAC of its content and nothing else (no base64 decoding, no key
/// schedule).
#[derive(Clone)]
pub struct Secret {
    keyed: Hmac<Sha256>,
}

impl Secret {
    /// Parses a `whsec_…` secret (the prefix is optional).
    pub fn parse(secret: &str) -> Result<Self, SignatureError> {
        Ok(Secret::from_key(&secret_key(secret)?))
    }

    /// A secret from its raw HMAC key.
    pub fn from_key(key: &[u8]) -> Self {
        // `new_from_slice` accepts keys of any length for HMAC; the error arm cannot happen.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        Secret { keyed }
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// One `v1,<base64>` signature of a request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut signature = String::with_capacity(SIGNATURE_LEN);
        self.sign_into(id, timestamp, body, &mut signature);
        signature
    }

    /// [`Secret::sign`], appended to `out` (a sender builds its header without a string per signature).
    pub fn sign_into(&self, id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        out.push_str("v1,");
        STANDARD.encode_string(self.mac(id, timestamp, body).finalize().into_bytes(), out);
    }

    /// Verifies a request as a receiver does: the timestamp within `tolerance_seconds` of `now` (Unix
    /// seconds), and at least one `v1,` entry of `signature` matching. Every entry is compared in constant
    /// time.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: i64,
        tolerance_seconds: u64,
    ) -> Result<(), SignatureError> {
        let sent: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::InvalidTimestamp)?;
        let skew = now.abs_diff(sent);
        if skew > tolerance_seconds {
            return Err(SignatureError::TimestampOutOfTolerance(skew));
        }
        let expected = self.mac(id, sent, body).finalize().into_bytes();
        let mut any = false;
        let mut matched = false;
        // Room for any entry of a 32-byte MAC's length (base64's decoder may want a little more than 32).
        let mut candidate = [0u8; 48];
        for entry in signature.split_whitespace() {
            let Some(encoded) = entry.strip_prefix("v1,") else {
                continue;
            };
            any = true;
            // A 32-byte MAC: an entry that does not decode to exactly 32 bytes cannot match.
            if let Ok(32) = STANDARD.decode_slice(encoded, &mut candidate) {
                // No early exit: every entry is checked, so timing does not tell which one matched.
                matched |= bool::from(candidate[..32].ct_eq(expected.as_slice()));
            }
        }
        match (any, matched) {
            (false, _) => Err(SignatureError::NoSignature),
            (true, false) => Err(SignatureError::Mismatch),
            (true, true) => Ok(()),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("Secret(..)")
    }
}

/// One `v1,<base64>` signature of a request.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    Secret::from_key(key).sign(id, timestamp, body)
}

/// The `webhook-signature` header value: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[String],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let mut header = String::with_capacity(secrets.len() * (SIGNATURE_LEN + 1));
    for secret in secrets {
        if !header.is_empty() {
            header.push(' ');
        }
        Secret::parse(secret)?.sign_into(id, timestamp, body, &mut header);
    }
    Ok(header)
}

/// The length of one `v1,<base64>` signature: the prefix and a 32-byte MAC in padded base64.
const SIGNATURE_LEN: usize = 3 + 44;

/// Verifies a request as a receiver does (see [`Secret::verify`]), parsing `secret` first. A receiver that
/// verifies many requests parses its secret once with [`Secret::parse`] instead.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: u64,
) -> Result<(), SignatureError> {
    Secret::parse(secret)?.verify(id, timestamp, signature, body, now, tolerance_seconds)
}

/// The three signature headers of a received request, copied out of whatever HTTP library the receiver uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedHeaders {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
}

impl SignedHeaders {
    /// Reads the headers with `header`, a lookup by (lower-case) name; a missing header reads as empty.
    pub fn read<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Self {
        let get = |name| header(name).unwrap_or_default().to_owned();
        SignedHeaders {
            id: get(WEBHOOK_ID),
            timestamp: get(WEBHOOK_TIMESTAMP),
            signature: get(WEBHOOK_SIGNATURE),
        }
    }

    /// [`verify`] against `secret`, now, with the default 5-minute tolerance.
    pub fn verify(&self, secret: &str, body: &[u8]) -> Result<(), SignatureError> {
        verify(
            secret,
            &self.id,
            &self.timestamp,
            &self.signature,
            body,
            unix_now(),
            DEFAULT_TOLERANCE_SECONDS,
        )
    }
}

/// The current Unix time in seconds, for [`verify`].
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The reference vector of the Standard Webhooks specification's libraries.
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(
            &secret_key(SECRET).unwrap(),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_parsed_secret_signs_and_verifies_as_the_functions_do_and_never_prints_its_key() {
        let secret = Secret::parse(SECRET).unwrap();
        let header = signature_header(&[SECRET.into()], "evt_1", 1000, b"{}").unwrap();
        assert_eq!(secret.sign("evt_1", 1000, b"{}"), header);
        assert_eq!(
            secret.verify("evt_1", "1000", &header, b"{}", 1000, 300),
            Ok(())
        );
        // An entry of another length (a truncated MAC, a longer one) is not a match, nor an error.
        let short = &header[..header.len() - 8];
        let long = format!("{header}AAAA");
        for entry in [short, long.as_str(), "v1,!!!"] {
            assert_eq!(
                secret.verify("evt_1", "1000", entry, b"{}", 1000, 300),
                Err(SignatureError::Mismatch),
                "{entry}"
            );
        }
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        assert_eq!(
            Secret::parse("whsec_not base64").err(),
            Some(SignatureError::InvalidSecret)
        );
    }

    #[test]
    fn verifies_any_of_several_signatures_and_rejects_tampering() {
        let other = "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0xMjM0NTY=";
        let header =
            signature_header(&[other.into(), SECRET.into()], "evt_1", 1000, b"{}").unwrap();
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(
            verify(SECRET, "evt_1", "1000", &header, b"{}", 1000, 300),
            Ok(())
        );
        assert_eq!(
            verify(other, "evt_1", "1000", &header, b"{}", 1010, 300),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, "evt_1", "1000", &header, b"{ }", 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, "evt_2", "1000", &header, b"{}", 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, "evt_1", "1000", &header, b"{}", 1301, 300),
            Err(SignatureError::TimestampOutOfTolerance(301))
        );
        assert_eq!(
            verify(SECRET, "evt_1", "x", &header, b"{}", 1000, 300),
            Err(SignatureError::InvalidTimestamp)
        );
        assert_eq!(
            verify(SECRET, "evt_1", "1000", "v2,abc", b"{}", 1000, 300),
            Err(SignatureError::NoSignature)
        );
    }
}

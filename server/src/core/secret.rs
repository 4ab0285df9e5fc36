//! Random credentials: webhook signing secrets and API keys, and the hash API keys are stored under.

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A new signing secret: `whsec_` + base64 of 32 random bytes (the Standard Webhooks format).
pub fn new_signing_secret() -> String {
    format!("whsec_{}", STANDARD.encode(random_bytes()))
}

/// A new API key. It is shown once; only [`hash_api_key`] of it is stored.
pub fn new_api_key() -> String {
    format!("kit_{}", URL_SAFE_NO_PAD.encode(random_bytes()))
}

/// The stored form of an API key. Keys carry 256 random bits, so a plain SHA-256 cannot be brute-forced and
/// keeps the per-request check cheap.
pub fn hash_api_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

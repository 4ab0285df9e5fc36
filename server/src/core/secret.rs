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

/// A new API key for key id `id` (`key_` and a ULID, 30 characters): `kwk_live_<id>_` and 256 random bits,
/// so that a log or a list can name the key by its id without revealing it. It is shown once; only [`hash_api_key`] of it is stored.
pub fn new_api_key(id: &str) -> String {
    format!("kwk_live_{id}_{}", URL_SAFE_NO_PAD.encode(random_bytes()))
}

/// The stored form of an API key. Keys carry 256 random bits, so a plain SHA-256 cannot be brute-forced and
/// keeps the per-request check cheap.
pub fn hash_api_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    // Every authenticated call hashes its key (the auth cache is keyed by the hash): one string, not one
    // per byte.
    let mut hex = String::with_capacity(2 * digest.len());
    for byte in digest {
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0xf)] as char);
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_key_hashes_to_its_sha256_in_lower_case_hex() {
        // FIPS 180-2's example: SHA-256("abc").
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

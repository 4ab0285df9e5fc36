//! Signing secrets sealed at rest: AES-256-GCM under a key the database never sees.
//!
//! A webhook's `secret` and `previous_secret` columns hold `sealed:v1:<key id>:<nonce and ciphertext>`; a
//! secret is opened only to build a delivery task or to show it to its admin. The key id (a hash of the key)
//! names which key sealed a value, so a [`Keyring`] can hold the key it seals with and, during a key
//! rotation, the one it replaces. The webhook's id is the associated data: a sealed value copied onto
//! another webhook does not open.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::Error;

const PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 12;

/// One 256-bit key and its id.
#[derive(Clone)]
pub struct SealingKey {
    id: String,
    cipher: Aes256Gcm,
}

impl SealingKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> SealingKey {
        let digest = Sha256::new()
            .chain_update(b"kit-webhooks sealing key id\0")
            .chain_update(bytes)
            .finalize();
        SealingKey {
            id: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }

    /// A key from a key file's text: the base64 of 32 bytes (what `openssl rand -base64 32` prints).
    pub fn parse(text: &str) -> Result<SealingKey, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|err| format!("is not base64 ({err})"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|bytes: Vec<u8>| format!("holds {} bytes; a key is 32", bytes.len()))?;
        Ok(SealingKey::from_bytes(&bytes))
    }

    /// A new random key, as a key file's text.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        format!("{}\n", STANDARD.encode(bytes))
    }

    /// The key's id: 16 hex digits of a hash of it, safe to store and to show.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealingKey({})", self.id)
    }
}

/// The key that seals, and the others that still open.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<SealingKey>,
}

impl Keyring {
    /// Seals with `current`; opens with it and `others`.
    pub fn new(current: SealingKey, others: Vec<SealingKey>) -> Keyring {
        let mut keys = vec![current];
        for key in others {
            if keys.iter().all(|known| known.id != key.id) {
                keys.push(key);
            }
        }
        Keyring { keys }
    }

    /// A keyring of one fresh key (tests and benchmarks that store webhooks directly).
    pub fn generate() -> Keyring {
        let current = SealingKey::parse(&SealingKey::generate()).expect("a generated key parses");
        Keyring::new(current, Vec::new())
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        self.keys[0].id()
    }

    /// The ids of every key held.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(SealingKey::id)
    }

    /// `secret` of webhook `webhook_id`, sealed with the current key.
    pub fn seal(&self, webhook_id: &str, secret: &str) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: webhook_id.as_bytes(),
        };
        // Encryption fails only for a message longer than 64 GiB.
        let sealed = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-GCM seals a short message");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, STANDARD.encode(bytes))
    }

    /// The secret `stored` holds for webhook `webhook_id`. A value that is not sealed, or sealed with a key
    /// this keyring does not hold, or altered, is an error: never read as clear text.
    pub fn open(&self, webhook_id: &str, stored: &str) -> Result<String, Error> {
        let (key_id, _) = sealed_parts(stored).ok_or_else(|| {
            Error::Sealing(format!("webhook `{webhook_id}`'s secret is not sealed"))
        })?;
        let key = self.keys.iter().find(|key| key.id == key_id).ok_or_else(|| {
            Error::Sealing(format!(
                "webhook `{webhook_id}`'s secret is sealed with key {key_id}, which this server does not hold"
            ))
        })?;
        let corrupt = || {
            Error::Sealing(format!(
                "webhook `{webhook_id}`'s sealed secret does not open"
            ))
        };
        let bytes = STANDARD
            .decode(&stored[PREFIX.len() + key_id.len() + 1..])
            .map_err(|_| corrupt())?;
        if bytes.len() < NONCE_BYTES {
            return Err(corrupt());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: sealed,
            aad: webhook_id.as_bytes(),
        };
        let clear = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| corrupt())?;
        String::from_utf8(clear).map_err(|_| corrupt())
    }
}

/// The id of the key that sealed `stored`, if it is sealed.
pub fn sealed_with(stored: &str) -> Option<&str> {
    sealed_parts(stored).map(|(id, _)| id)
}

fn sealed_parts(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(PREFIX)?.split_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_webhook_and_with_its_key() {
        let ring = Keyring::generate();
        let sealed = ring.seal("wh_1", "whsec_abc");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(sealed_with(&sealed), Some(ring.current_id()));
        assert_eq!(ring.open("wh_1", &sealed).unwrap(), "whsec_abc");
        assert!(ring.open("wh_2", &sealed).is_err(), "bound to its webhook");
        assert!(
            Keyring::generate().open("wh_1", &sealed).is_err(),
            "another key"
        );
        assert!(
            ring.open("wh_1", "whsec_abc").is_err(),
            "clear text is refused"
        );
        let mut altered = sealed.clone();
        altered.pop();
        altered.push('A');
        assert!(ring.open("wh_1", &altered).is_err());
    }

    #[test]
    fn a_rotating_keyring_opens_both_and_seals_with_the_new() {
        let old = Keyring::generate();
        let sealed_old = old.seal("wh_1", "whsec_old");
        let new_key = SealingKey::parse(&SealingKey::generate()).unwrap();
        let both = Keyring::new(new_key, old.keys.clone());
        assert_eq!(both.open("wh_1", &sealed_old).unwrap(), "whsec_old");
        assert_ne!(both.current_id(), old.current_id());
        assert_eq!(
            sealed_with(&both.seal("wh_1", "x")),
            Some(both.current_id())
        );
    }

    #[test]
    fn a_key_file_holds_32_bytes_of_base64() {
        assert!(SealingKey::parse(&SealingKey::generate()).is_ok());
        assert!(SealingKey::parse("not base64!").is_err());
        assert!(SealingKey::parse("AAAA").unwrap_err().contains("3 bytes"));
    }
}

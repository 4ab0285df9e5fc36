//! Authentication and authorisation: `authorization: Bearer <key>` to a [`Principal`] with a role.
//!
//! The key is checked on a call's headers before its body is read (`super::admission`); a handler checks the
//! role with [`require`]. Keys live hashed in the database (so `keys create` from another process takes
//! effect at once); lookups are cached briefly because every RPC makes one. The embedded daemon's key exists
//! only in memory.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use kit_webhooks::sync::lock;
use sea_orm::ActiveEnum;
use tonic::Request;

use crate::{
    core::{secret::hash_api_key, Error, Role},
    store::Store,
};

/// How long a looked-up key is trusted without asking the database again.
const CACHE_TTL: Duration = Duration::from_secs(30);

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    /// The account of an `admin` key; `None` for the other roles.
    pub account_id: Option<String>,
}

/// The caller of `request` (admitted by `super::admission`), if it holds one of `roles`.
pub fn require<T>(request: &Request<T>, roles: &[Role]) -> Result<Principal, Error> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("the call was not authenticated".into()))?;
    if roles.contains(&principal.role) {
        return Ok(principal);
    }
    let wanted: Vec<_> = roles.iter().map(|r| r.to_value()).collect();
    Err(Error::PermissionDenied(format!(
        "this call needs a key with role {}; this key has role {}",
        wanted.join(" or "),
        principal.role.to_value()
    )))
}

/// The account of the caller of `request`, who must hold an `admin` key.
pub fn require_admin<T>(request: &Request<T>) -> Result<String, Error> {
    require(request, &[Role::Admin])?
        .account_id
        .ok_or_else(|| Error::PermissionDenied("this admin key is bound to no account".into()))
}

pub struct Authenticator {
    store: Store,
    /// Keys known only to this process (the embedded daemon's), by hash.
    in_memory: HashMap<String, Principal>,
    cache: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Authenticator {
            store,
            in_memory: HashMap::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Accepts `key` for `principal` without storing it anywhere.
    pub fn add_in_memory_key(&mut self, key: &str, principal: Principal) {
        self.in_memory.insert(hash_api_key(key), principal);
    }

    /// The caller whose key `headers` carry.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, Error> {
        let header = headers.get("authorization").ok_or_else(|| {
            Error::Unauthenticated("missing `authorization: Bearer <api key>` metadata".into())
        })?;
        let key = header
            .to_str()
            .ok()
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                Error::Unauthenticated("`authorization` must be `Bearer <api key>`".into())
            })?;
        let hash = hash_api_key(key);
        if let Some(principal) = self.in_memory.get(&hash) {
            return Ok(principal.clone());
        }
        if let Some(principal) = self.cached(&hash) {
            return Ok(principal);
        }
        let row = self
            .store
            .find_api_key(&hash)
            .await?
            .ok_or_else(|| Error::Unauthenticated("unknown API key".into()))?;
        let principal = Principal {
            role: row.role,
            account_id: row.account_id,
        };
        lock(&self.cache).insert(hash, (principal.clone(), Instant::now()));
        Ok(principal)
    }

    fn cached(&self, hash: &str) -> Option<Principal> {
        let cache = lock(&self.cache);
        let (principal, at) = cache.get(hash)?;
        (at.elapsed() < CACHE_TTL).then(|| principal.clone())
    }
}

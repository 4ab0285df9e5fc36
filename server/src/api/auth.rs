//! Authentication and authorisation: `authorization: Bearer <key>` to a [`Principal`] with a role.
//!
//! The key is checked on a call's headers before its body is read (`super::admission`); a handler checks the
//! role with [`require`]. Keys live hashed in the database (so `keys create` from another process takes
//! effect at once); lookups are cached because every RPC makes one. A cached key is looked up again after
//! [`CACHE_TTL`] by one call while the calls beside it go on with the cached answer, and is never trusted past
//! [`CACHE_LIMIT`]: that bound is what makes a revocation or an expiry effective within a second on every
//! replica, whichever process revoked (an RPC, another replica, `keys revoke` on the command line) and whatever
//! the database, with no notification to miss; and one lookup per key and period, not one per call in flight
//! when the period ends, is what it costs. The replica that revokes forgets the key at once. The embedded
//! daemon's key exists only in memory.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use kit_webhooks::sync::lock;
use sea_orm::ActiveEnum;
use tonic::Request;

use crate::{
    core::{audit::Actor, secret::hash_api_key, time, Error, Role},
    store::Store,
};

/// How long a looked-up key is trusted before one call asks the database again.
const CACHE_TTL: Duration = Duration::from_millis(500);
/// The longest a looked-up key is trusted, while that call's lookup is out: a revoked key is refused within it.
const CACHE_LIMIT: Duration = Duration::from_millis(900);
/// How stale a key's `last_used_at` may get: it is written at most once per period and key.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id (`key_…`), as the audit log and the logs name it.
    pub key_id: String,
    pub role: Role,
    /// The account of an `admin` key; `None` for the other roles.
    pub account_id: Option<String>,
    /// When the key stops working, if it does.
    pub expires_at: Option<i64>,
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
    Ok(require_admin_actor(request)?.account_id)
}

/// The caller of `request`, who must hold an `admin` key, as the audit log records it.
pub fn require_admin_actor<T>(request: &Request<T>) -> Result<Actor, Error> {
    let principal = require(request, &[Role::Admin])?;
    let account_id = principal
        .account_id
        .ok_or_else(|| Error::PermissionDenied("this admin key is bound to no account".into()))?;
    Ok(Actor {
        key_id: principal.key_id,
        account_id,
    })
}

pub struct Authenticator {
    store: Store,
    /// Keys known only to this process (the embedded daemon's), by hash.
    in_memory: HashMap<String, Principal>,
    cache: Mutex<HashMap<String, Cached>>,
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
        let now = time::now_ms();
        let principal = match self.cached(&hash) {
            Some(principal) => principal,
            None => self.look_up(hash, now).await?,
        };
        if principal.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::Unauthenticated(format!(
                "API key {} expired",
                principal.key_id
            )));
        }
        Ok(principal)
    }

    /// The key of `hash` as the database has it, cached; notes its use.
    async fn look_up(&self, hash: String, now: i64) -> Result<Principal, Error> {
        let Some(row) = self.store.find_api_key(&hash).await? else {
            lock(&self.cache).remove(&hash);
            return Err(Error::Unauthenticated("unknown API key".into()));
        };
        if row.revoked_at.is_some() {
            lock(&self.cache).remove(&hash);
            return Err(Error::Unauthenticated(format!(
                "API key {} was revoked",
                row.id
            )));
        }
        if row
            .last_used_at
            .is_none_or(|at| at <= now - LAST_USED_RESOLUTION_MS)
        {
            // Off the call's path: the note is best effort.
            let (store, id) = (self.store.clone(), row.id.clone());
            tokio::spawn(async move {
                if let Err(err) = store.touch_api_key(&id, now).await {
                    tracing::debug!(key = %id, error = %err, "noting an API key's use failed");
                }
            });
        }
        let principal = Principal {
            key_id: row.id,
            role: row.role,
            account_id: row.account_id,
            expires_at: row.expires_at,
        };
        let cached = Cached {
            principal: principal.clone(),
            at: Instant::now(),
            refreshing: false,
        };
        lock(&self.cache).insert(hash, cached);
        Ok(principal)
    }

    /// The cached key of `hash`, or `None` for the caller to look it up: when there is none, when it is past
    /// [`CACHE_LIMIT`], or when it is past [`CACHE_TTL`] and no other call is looking it up yet (this one
    /// does, the others go on with it meanwhile).
    fn cached(&self, hash: &str) -> Option<Principal> {
        let mut cache = lock(&self.cache);
        let entry = cache.get_mut(hash)?;
        let age = entry.at.elapsed();
        if age < CACHE_TTL || (age < CACHE_LIMIT && entry.refreshing) {
            return Some(entry.principal.clone());
        }
        entry.refreshing = true;
        None
    }

    /// Stops trusting key `id` from the cache (it was just revoked here).
    pub fn forget(&self, id: &str) {
        lock(&self.cache).retain(|_, cached| cached.principal.key_id != id);
    }
}

/// A looked-up key, when, and whether a call is looking it up again.
struct Cached {
    principal: Principal,
    at: Instant,
    refreshing: bool,
}

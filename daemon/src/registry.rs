//! Values by key (a webhook's rate limiter, a host's or an account's request slots, a webhook's slow mark)
//! that are dropped once idle, so that a daemon which sends to millions of endpoints over its life keeps only
//! those in use.
//!
//! Idle values go whenever the map has doubled since it was last pruned (so a burst of new keys costs an
//! amortised constant each) and on the daemon's periodic sweep (so an idle daemon falls back too).

use std::collections::HashMap;

pub struct Registry<T> {
    entries: HashMap<String, T>,
    /// Whether a value can go: a new one made in its place would be the same.
    idle: fn(&T) -> bool,
    prune_at: usize,
}

/// The size below which a registry is not pruned on growth.
const SMALLEST_PRUNE: usize = 64;

impl<T> Registry<T> {
    pub fn new(idle: fn(&T) -> bool) -> Self {
        Registry {
            entries: HashMap::new(),
            idle,
            prune_at: SMALLEST_PRUNE,
        }
    }

    /// The value for `key`, made by `new` if there is none (after pruning, if the map has grown enough).
    pub fn entry(&mut self, key: &str, new: impl FnOnce() -> T) -> &mut T {
        if !self.entries.contains_key(key) {
            if self.entries.len() >= self.prune_at {
                self.prune();
            }
            return self.entries.entry(key.to_owned()).or_insert_with(new);
        }
        // Looked up by `&str`: the key is copied only when it is new (this runs for every delivery).
        self.entries
            .get_mut(key)
            .expect("the key is present: contains_key said so just above")
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key)
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops the idle values.
    pub fn prune(&mut self) {
        let idle = self.idle;
        self.entries.retain(|_, value| !idle(value));
        if self.entries.capacity() > 2 * self.entries.len().max(SMALLEST_PRUNE) {
            self.entries.shrink_to_fit();
        }
        self.prune_at = (self.entries.len() * 2).max(SMALLEST_PRUNE);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }
}

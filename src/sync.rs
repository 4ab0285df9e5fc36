//! Locking the plain mutexes of this workspace.
//!
//! Each of them guards data that is changed in single steps (an insert, a remove, a push, a counter), so it
//! is whole even when a thread panicked holding the lock. A poisoned lock is therefore taken as it is: the
//! work behind it (parking a claim, counting a host's requests) goes on rather than being skipped.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

//! When freed memory goes back to the system, for the daemon's and the server's processes (both allocate with
//! mimalloc; each `main` calls [`keep_freed_memory`] first, then runs on a [`runtime`]).
//!
//! By default mimalloc gives a page's memory back to the OS moments after the last block on it is freed. A
//! busy process frees and reuses the same pages continually, so it gave them back and faulted them in again
//! moments later. A second's delay keeps working memory in the process while it is busy.
//!
//! mimalloc returns a thread's freed memory only when that thread allocates or frees again, so a process that
//! has gone idle keeps what its busy time left behind. [`collect_when_idle`], run as each runtime thread
//! parks, collects the heap of a thread that had been quiet, at most every [`COLLECT_EVERY`]: an idle daemon
//! falls back, a busy one is left alone.

use std::{
    cell::Cell,
    ffi::c_long,
    time::{Duration, Instant},
};

use libmimalloc_sys::{mi_collect, mi_option_set_default, mi_option_t};

/// `mi_option_purge_delay` of mimalloc 2.x's `mi_option_e` (the binding leaves the option unnamed); a test
/// pins it to the option's documented default.
const PURGE_DELAY: mi_option_t = 15;
const PURGE_DELAY_MS: c_long = 1_000;

/// Sets mimalloc's purge delay to a second, unless `MIMALLOC_PURGE_DELAY` says otherwise (a default, so the
/// environment still wins). Call before the process starts threads.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // SAFETY: sets a plain integer in mimalloc's option table; called at the start of `main`, before any
    // other thread exists, as `mi_option_set_default` requires.
    unsafe { mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS) }
}

/// A multi-threaded tokio runtime whose workers give their freed memory back as they go idle
/// ([`collect_when_idle`]). Call [`keep_freed_memory`] before.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(collect_when_idle)
        .build()
}

/// The least time between two collections of one thread's heap.
const COLLECT_EVERY: Duration = Duration::from_secs(5);
/// How long a thread must have gone without parking for its heap to be collected: a busy worker parks every
/// few milliseconds and is never collected (collecting forces freed pages back to the system, which a busy
/// thread would only fault in again); a thread of an idle process wakes seldom.
const QUIET: Duration = Duration::from_secs(1);

/// Gives the memory this thread has freed back to the system, if the thread had been parked a while and its
/// heap was not collected for [`COLLECT_EVERY`]: for a runtime's `on_thread_park`, which runs whenever a worker
/// runs out of work (costing a clock read then).
#[allow(unsafe_code)]
fn collect_when_idle() {
    thread_local! {
        static PARKED: Cell<Option<Instant>> = const { Cell::new(None) };
        static COLLECTED: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    let quiet = PARKED.with(|parked| {
        parked
            .replace(Some(now))
            .is_some_and(|at| now.duration_since(at) >= QUIET)
    });
    let due = quiet
        && COLLECTED.with(|collected| {
            let due = collected
                .get()
                .is_none_or(|at| now.duration_since(at) >= COLLECT_EVERY);
            if due {
                collected.set(Some(now));
            }
            due
        });
    if due {
        // SAFETY: collects the calling thread's own mimalloc heap; safe to call from any thread at any time.
        unsafe { mi_collect(true) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    #[test]
    #[allow(unsafe_code)]
    fn the_option_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // Read before any `set_default`: mimalloc 2.x documents 10 ms as the purge delay's default, and the
        // options beside it have other defaults (eager_commit_delay 1, use_numa_nodes 0).
        // SAFETY: reads mimalloc's option table.
        let (before, this, after) = unsafe {
            (
                mi_option_get(PURGE_DELAY - 1),
                mi_option_get(PURGE_DELAY),
                mi_option_get(PURGE_DELAY + 1),
            )
        };
        assert_eq!((before, this, after), (1, 10, 0));
    }
}

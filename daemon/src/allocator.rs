//! How long freed memory stays with the process: the one allocator setting the daemon's and the server's
//! processes change (both allocate with mimalloc; each `main` calls [`keep_freed_memory`] first).
//!
//! By default mimalloc gives a page's memory back to the OS moments after the last block on it is freed. A
//! busy process frees and reuses the same pages continually, so it gave them back and faulted them in again
//! moments later. A second's delay keeps working memory in the process while it is busy; an idle process
//! still returns it a second later (docs/PERFORMANCE.md, step 39).

use std::ffi::c_long;

use libmimalloc_sys::{mi_option_set_default, mi_option_t};

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

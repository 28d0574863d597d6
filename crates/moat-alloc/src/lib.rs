//! moat's allocator: mimalloc, which serves the request path's many small, short-lived
//! allocations at a fraction of glibc's cost (a GET: 15.6 against 23.6 µs of CPU, measured in
//! docs/BENCHMARKS.md), with one setting changed, and a server's process without transparent
//! huge pages ([`serving`]).
//!
//! mimalloc keeps freed memory for a second (`purge_delay` 1000 ms) before it gives it back to
//! the system. Moving large files allocates and frees a stream of 1 MiB buffers on many
//! threads, so a second of them stayed resident: the server's peak RSS grew by 79-105 MiB while
//! 4 GiB moved through it. 10 ms (the value mimalloc's own documentation names) bounds that
//! to 43-45 MiB, at no measured cost to the request path. `MIMALLOC_PURGE_DELAY` in the
//! environment still overrides it.

/// The allocator to install with `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;

/// mimalloc's `mi_option_purge_delay`, by its position in `mi_option_e` (mimalloc.h, v3), which
/// the bindings do not name.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Milliseconds before freed memory goes back to the system.
pub const PURGE_DELAY_MS: i64 = 10;

/// Applies moat's settings. Call first thing in `main`, before any other thread starts.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option in mimalloc's option table; documented as not
        // thread-safe, and called before the process starts a second thread.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS as _);
        }
    }
}

/// Settings for a long-running server, on top of [`tune`]: the process gets no transparent
/// huge pages. mimalloc asks for them (`allow_thp`), and with them a server's memory grows and
/// shrinks in 2 MiB steps: the 1 MiB buffers that files move through, allocated and freed on
/// many threads, each kept a whole huge page resident. Without them, the server's peak RSS
/// growth during a 1 GiB CLI upload fell from 57-69 MiB to 38-42 MiB, and the memory it starts
/// with from 34 to 22-27 MiB. The price, if any, is within this host's noise: upload medians
/// 2-3 % lower in A/Bs of nine rounds, download the same (docs/BENCHMARKS.md, session 12).
/// Short-lived commands keep them: a client faults its memory in once, and fewer, larger
/// faults are cheaper there. `MIMALLOC_ALLOW_THP` in the environment leaves the choice to
/// mimalloc. Returns whether huge pages are now off for the process.
pub fn serving() -> bool {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return false;
    }
    // PR_SET_THP_DISABLE: process-wide, for every page faulted in from now on.
    nix::sys::prctl::set_thp_disable(true).is_ok()
}

/// The purge delay in effect, in milliseconds.
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reads an integer option.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(PURGE_DELAY) as i64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc's default is 1000 ms; after tune, the option at this position reads 10,
        // which would not hold if the position named another option (their defaults differ).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("SKIP: MIMALLOC_PURGE_DELAY is set in the environment");
            return;
        }
        assert_eq!(super::purge_delay_ms(), 1000, "mimalloc's default purge delay");
        super::tune();
        assert_eq!(super::purge_delay_ms(), super::PURGE_DELAY_MS);
    }
}

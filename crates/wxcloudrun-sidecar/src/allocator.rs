//! Handing freed heap back to the system after every scrape.
//!
//! glibc's allocator keeps freed memory for reuse and returns only what lies at the top of its
//! heap. A scrape's transient memory (a parsed page is 5.5 MB for 10,000 series; a replayed one
//! still encodes a few MB of requests) is freed below what the converter keeps, so it would stay
//! resident for good, at the first scrape's peak. `malloc_trim(0)` returns the free pages wherever
//! they are (with `madvise`). The price, measured with `scripts/compare-agent.sh` on the 10,000-
//! series page: ~2 ms of CPU per scrape (the pages are faulted in again on the next one), for
//! 12.7 MiB resident instead of 15.9 MiB.

/// Returns the allocator's free pages to the system (glibc); does nothing elsewhere.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: `malloc_trim` takes a plain integer and has no preconditions; it only changes
    // which of the allocator's free pages stay mapped.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns the allocator's free pages to the system (glibc); does nothing elsewhere.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

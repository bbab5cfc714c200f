//! Handing freed heap back to the system after a parsed scrape.
//!
//! glibc's allocator keeps freed memory for reuse and returns only what lies at the top of its
//! heap. A parsed page (5.5 MB for 10,000 series) is freed after each full scrape, but the series
//! the converter remembers are allocated above it, so that memory stays resident for good; while
//! pages are parsed every scrape it is at least reused. Once replay reads only values, nothing
//! reuses it, and the container keeps paying for the first scrape's peak. `malloc_trim(0)`
//! returns the free pages wherever they are (with `madvise`), and costs a walk over the heap:
//! called after scrapes that parsed the page, not after replayed ones.

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

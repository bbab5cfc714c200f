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

/// The system allocator, counting the bytes it has handed out: the sidecar's binary installs it
/// (`#[global_allocator]`) so that the memory budget starts each scrape from the heap actually
/// in use (what the converter remembers, the queues, the learned shape) instead of a guess.
/// One relaxed atomic add per allocation.
#[derive(Debug)]
pub struct CountingAllocator;

static HEAP_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Heap bytes in use, when [`CountingAllocator`] is the global allocator; `None` otherwise
/// (tests, benchmarks, a library user's binary).
pub fn heap_bytes() -> Option<u64> {
    use std::sync::atomic::Ordering;
    COUNTING
        .load(Ordering::Relaxed)
        .then(|| HEAP_BYTES.load(Ordering::Relaxed) as u64)
}

#[allow(unsafe_code)]
// SAFETY: every call goes to the system allocator unchanged; only a counter is kept beside it.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering;
        // SAFETY: the caller's contract is passed on as it is.
        let ptr = unsafe { std::alloc::System.alloc(layout) };
        if !ptr.is_null() {
            COUNTING.store(true, Ordering::Relaxed);
            HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        use std::sync::atomic::Ordering;
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        use std::sync::atomic::Ordering;
        // SAFETY: the caller's contract is passed on as it is.
        let new = unsafe { std::alloc::System.realloc(ptr, layout, size) };
        if !new.is_null() {
            HEAP_BYTES.fetch_add(size, Ordering::Relaxed);
            HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

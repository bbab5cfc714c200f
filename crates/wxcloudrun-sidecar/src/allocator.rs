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

/// The system allocator, counting the bytes it uses: the sidecar's binary installs it
/// (`#[global_allocator]`) so that the memory budget starts each scrape from the heap actually
/// in use (what the converter remembers, the queues, the learned shape) instead of a guess.
///
/// It counts what malloc uses for each block, not the bytes asked for: glibc gives a block a
/// 16-byte-aligned chunk with an 8-byte header, at least 32 bytes, so a million 20-byte strings
/// use 32 MB, not 20 (a page of tiny series is mostly such blocks; counting the bytes asked for,
/// the sidecar once reached 133 MiB resident under a 128 MiB budget). One `malloc_usable_size`
/// and one relaxed atomic add per allocation (and, once [`reset_heap_peak`] asked for it, the
/// high-water mark too).
#[derive(Debug)]
pub struct CountingAllocator;

static HEAP_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static HEAP_PEAK_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The high-water mark is kept only once asked for: the sidecar itself never reads it, and a
/// `fetch_max` on every allocation would be its cost alone.
static TRACKING_PEAK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Heap bytes in use, when [`CountingAllocator`] is the global allocator; `None` otherwise
/// (tests, benchmarks, a library user's binary).
pub fn heap_bytes() -> Option<u64> {
    use std::sync::atomic::Ordering;
    COUNTING
        .load(Ordering::Relaxed)
        .then(|| HEAP_BYTES.load(Ordering::Relaxed) as u64)
}

/// The most heap in use since the last [`reset_heap_peak`], when [`CountingAllocator`] is the
/// global allocator; `None` otherwise (and before the first reset, as nothing was tracked). What
/// the memory budget's estimates are tested against.
pub fn heap_peak_bytes() -> Option<u64> {
    use std::sync::atomic::Ordering;
    (COUNTING.load(Ordering::Relaxed) && TRACKING_PEAK.load(Ordering::Relaxed))
        .then(|| HEAP_PEAK_BYTES.load(Ordering::Relaxed) as u64)
}

/// Starts a new [`heap_peak_bytes`] from the heap in use now (the first call starts tracking it).
pub fn reset_heap_peak() {
    use std::sync::atomic::Ordering;
    HEAP_PEAK_BYTES.store(HEAP_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
    TRACKING_PEAK.store(true, Ordering::Relaxed);
}

/// Counts `used` more bytes in use.
fn grew(used: usize) {
    use std::sync::atomic::Ordering;
    let now = HEAP_BYTES.fetch_add(used, Ordering::Relaxed) + used;
    if TRACKING_PEAK.load(Ordering::Relaxed) {
        HEAP_PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
    }
}

/// The bytes malloc uses for the live block at `ptr`: its usable size and the chunk's header.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn used_by(ptr: *mut u8, _requested: usize) -> usize {
    // SAFETY: `ptr` is a live block of the system allocator (glibc's malloc): the callers pass
    // only what it returned and has not freed yet.
    let usable = unsafe { libc::malloc_usable_size(ptr.cast()) };
    usable + size_of::<usize>()
}

/// The bytes asked for, where the allocator's own sizes are not known.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn used_by(_ptr: *mut u8, requested: usize) -> usize {
    requested
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
            grew(used_by(ptr, layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        use std::sync::atomic::Ordering;
        let used = used_by(ptr, layout.size());
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        HEAP_BYTES.fetch_sub(used, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        use std::sync::atomic::Ordering;
        let old = used_by(ptr, layout.size());
        // SAFETY: the caller's contract is passed on as it is.
        let new = unsafe { std::alloc::System.realloc(ptr, layout, size) };
        if !new.is_null() {
            // Old and new block counted together for a moment: a moved block had both.
            grew(used_by(new, size));
            HEAP_BYTES.fetch_sub(old, Ordering::Relaxed);
        }
        new
    }
}

//! The counting allocator the binary installs counts what malloc uses for each block, not the
//! bytes asked for: a page of tiny series is mostly small blocks, each of which costs glibc a
//! 16-byte-aligned chunk with an 8-byte header (at least 32 bytes), and the memory budget must
//! see that (issue 16: RSS reached 133 MiB under a 128 MiB budget while requested bytes were
//! under it).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use wxcloudrun_sidecar::allocator::{CountingAllocator, heap_bytes};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const BLOCKS: usize = 10_000;

#[test]
fn small_blocks_count_the_chunks_malloc_gives_them() {
    let mut index: Vec<Box<u8>> = Vec::with_capacity(BLOCKS);
    let before = heap_bytes().expect("the counting allocator is installed");
    index.extend((0..BLOCKS).map(|i| Box::new(i as u8)));
    let grown = heap_bytes().unwrap() - before;
    // 10,000 one-byte blocks asked for; glibc's smallest chunk is 32 bytes.
    assert!(
        grown >= (BLOCKS * 32) as u64,
        "{grown} bytes counted for {BLOCKS} one-byte blocks"
    );
    // Freed, they are uncounted exactly as they were counted (a realloc too).
    index.clear();
    let mut grows: Vec<u8> = Vec::with_capacity(1);
    for byte in 0..200_000u32 {
        grows.push(byte as u8);
    }
    drop(grows);
    let after = heap_bytes().unwrap();
    assert!(
        after.abs_diff(before) < 4096,
        "{before} bytes before, {after} after freeing what was counted"
    );
}

//! glibc's mmap threshold stays where `transport::fix_mmap_threshold` put it:
//! a block the size of a quinn endpoint's receive buffer is a fresh mapping
//! even after a larger mapped block was freed (glibc would otherwise raise
//! its threshold to that size and serve the next one from the heap, zeroing
//! it). Its own test binary: the count of mapped blocks is process-wide.

use std::hint::black_box;

use quicbench_wire::transport;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn mapped_blocks() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2() }.hblks
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_large_block_is_mapped_whatever_was_freed_before() {
    assert!(
        transport::fix_mmap_threshold(),
        "glibc refused M_MMAP_THRESHOLD"
    );
    // A large block freed: glibc's dynamic threshold would now be 8 MiB.
    drop(black_box(vec![0u8; 8 << 20]));
    for size in [3 << 20, transport::MMAP_THRESHOLD] {
        let before = mapped_blocks();
        let block = black_box(vec![0u8; size]);
        assert_eq!(
            mapped_blocks(),
            before + 1,
            "a {size}-byte block came from the heap, not a fresh mapping"
        );
        drop(block);
    }
    // Below the threshold: the heap, as before.
    let before = mapped_blocks();
    let small = black_box(vec![0u8; transport::MMAP_THRESHOLD / 2]);
    assert_eq!(mapped_blocks(), before);
    drop(small);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[test]
fn a_large_block_is_mapped_whatever_was_freed_before() {
    eprintln!("SKIPPED: glibc's mmap threshold is only fixed on Linux with glibc");
    assert!(!transport::fix_mmap_threshold());
}

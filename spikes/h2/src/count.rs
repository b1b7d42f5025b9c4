//! A counting global allocator: allocations and net live bytes, attributed to whichever side
//! (client, server, other) the harness says is running. Single-threaded use only (the spike
//! runs on one pinned thread); the counters are relaxed atomics so the type is `Sync`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

pub const OTHER: usize = 0;
pub const CLIENT: usize = 1;
pub const SERVER: usize = 2;

static SIDE: AtomicUsize = AtomicUsize::new(OTHER);
static ALLOCS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static LIVE: [AtomicI64; 3] = [AtomicI64::new(0), AtomicI64::new(0), AtomicI64::new(0)];

pub struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let s = SIDE.load(Relaxed);
        ALLOCS[s].fetch_add(1, Relaxed);
        LIVE[s].fetch_add(l.size() as i64, Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE[SIDE.load(Relaxed)].fetch_sub(l.size() as i64, Relaxed);
        // SAFETY: `p` came from `System.alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let s = SIDE.load(Relaxed);
        ALLOCS[s].fetch_add(1, Relaxed);
        LIVE[s].fetch_add(new as i64 - l.size() as i64, Relaxed);
        // SAFETY: `p` came from `System.alloc` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

/// Sets the side that allocations are charged to; returns the previous one.
pub fn enter(side: usize) -> usize {
    SIDE.swap(side, Relaxed)
}

pub fn allocs(side: usize) -> u64 {
    ALLOCS[side].load(Relaxed)
}

/// Net bytes allocated minus freed while `side` was running.
pub fn live(side: usize) -> i64 {
    LIVE[side].load(Relaxed)
}

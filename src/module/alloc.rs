//! The module's global allocator: Redis's own, so INFO memory, maxmemory and
//! MEMORY USAGE see every byte the module holds, with `realloc` and zeroed
//! allocation passed on.
//!
//! redis-module's `RedisAlloc` leaves `realloc` to the default (allocate,
//! copy, free), so each doubling of a big key's record slab copied it whole
//! (a stall measured in docs/benchmarks.md); Redis's realloc grows a
//! large block in place or by remapping pages instead.

use redis_module::alloc::RedisAlloc;
use redis_module::raw;
use std::alloc::{GlobalAlloc, Layout};

pub struct ModuleAlloc;

// SAFETY: every block comes from Redis's allocator through RedisAlloc, and
// realloc keeps the contract of GlobalAlloc::realloc (see below).
unsafe impl GlobalAlloc for ModuleAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { RedisAlloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the API table is filled once at load, before any
        // allocation goes through it, and never written again.
        let calloc = unsafe { raw::RedisModule_Calloc };
        match calloc {
            // SAFETY: as `realloc` below: Redis's allocators align every
            // block to at least 8 bytes. calloc hands out fresh zero pages
            // for big blocks instead of writing 16 MB of zeros (a txid
            // index for 1.5M records) in one command.
            Some(calloc) if layout.align() <= 8 => unsafe { calloc(1, layout.size()).cast() },
            _ => {
                // SAFETY: the default algorithm: allocate, then zero.
                unsafe {
                    let p = self.alloc(layout);
                    if !p.is_null() {
                        std::ptr::write_bytes(p, 0, layout.size());
                    }
                    p
                }
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` here, i.e. from Redis.
        unsafe { RedisAlloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `alloc_zeroed`.
        let realloc = unsafe { raw::RedisModule_Realloc };
        match realloc {
            // SAFETY: `ptr` is a live block from Redis's allocator, and both
            // of its allocators (jemalloc, libc malloc) align every block to
            // at least 8 bytes, so the moved block still fits `layout`.
            Some(realloc) if layout.align() <= 8 => unsafe { realloc(ptr.cast(), new_size).cast() },
            _ => {
                // SAFETY: the default algorithm: a new block of the same
                // alignment, the common prefix copied, the old block freed.
                unsafe {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

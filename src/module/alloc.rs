//! The module's global allocator: Redis's own, so INFO memory, maxmemory and
//! MEMORY USAGE see every byte the module holds, with `realloc` and zeroed
//! allocation passed on.
//!
//! redis-module's `RedisAlloc` leaves `realloc` to the default (allocate,
//! copy, free), so each doubling of a big key's record slab copied it whole
//! (a stall measured in docs/benchmarks.md); Redis's realloc grows a
//! large block in place or by remapping pages instead.
//!
//! `RedisAlloc` also assumes Redis's allocator aligns a block to its size.
//! libc malloc (the Valkey wheels are built with it) gives 16 bytes, and
//! std's channels ask for 128: blocks aligned beyond 8 bytes are placed by
//! `over_aligned` here instead.

use redis_module::alloc::RedisAlloc;
use redis_module::raw;
use std::alloc::{GlobalAlloc, Layout};

pub struct ModuleAlloc;

/// The alignment every block from Redis's allocator has. jemalloc and
/// glibc's malloc give 16 bytes, but a server whose allocator cannot tell a
/// block's size puts an 8-byte size header in front of each block
/// (zmalloc's `PREFIX_SIZE`), so only 8 is certain.
const ALIGNED: usize = 8;

// SAFETY: every block comes from Redis's allocator, aligned as its layout
// asks (`over_aligned` beyond `ALIGNED`), freed the way it was made, and
// realloc keeps the contract of GlobalAlloc::realloc (see below).
unsafe impl GlobalAlloc for ModuleAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = if layout.align() <= ALIGNED {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { RedisAlloc.alloc(layout) }
        } else {
            // SAFETY: as above; the alignment is over `ALIGNED`.
            unsafe { over_aligned(layout) }
        };
        checked(block, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the API table is filled once at load, before any
        // allocation goes through it, and never written again.
        let calloc = unsafe { raw::RedisModule_Calloc };
        match calloc {
            // calloc hands out fresh zero pages for big blocks instead of
            // writing 16 MB of zeros (a txid index for 1.5M records) in one
            // command.
            Some(calloc) if layout.align() <= ALIGNED => {
                // SAFETY: Redis's allocators align every block to `ALIGNED`.
                let block = unsafe { calloc(1, layout.size()) };
                checked(block.cast(), layout)
            }
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
        if layout.align() <= ALIGNED {
            // SAFETY: `ptr` came from `alloc`/`realloc` here, i.e. from Redis.
            unsafe { RedisAlloc.dealloc(ptr, layout) }
        } else {
            // SAFETY: `ptr` came from `over_aligned` (the layout is the one
            // it was made with), which stored Redis's block just below it.
            unsafe {
                if let Some(free) = raw::RedisModule_Free {
                    free(block_under(ptr).cast());
                }
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `alloc_zeroed`.
        let realloc = unsafe { raw::RedisModule_Realloc };
        match realloc {
            Some(realloc) if layout.align() <= ALIGNED => {
                // SAFETY: `ptr` is a live block from Redis's allocator, which
                // aligns every block to `ALIGNED`, so the moved block still
                // fits `layout`.
                let block = unsafe { realloc(ptr.cast(), new_size) };
                checked(block.cast(), layout)
            }
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

/// A block aligned beyond `ALIGNED`, from Redis's allocator.
///
/// # Safety
/// `layout.align()` is over `ALIGNED`.
unsafe fn over_aligned(layout: Layout) -> *mut u8 {
    // SAFETY: as in `alloc_zeroed`.
    let Some(alloc) = (unsafe { raw::RedisModule_Alloc }) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the caller's guarantee; `alloc` is a plain allocation.
    unsafe { place_over_aligned(layout, |size| alloc(size).cast()) }
}

/// Places a block of `layout` inside one of `align` more bytes from
/// `alloc`: the pointer moves up to the next multiple of `align` (by 8 to
/// `align` bytes, since `alloc`'s block is 8-aligned), and `alloc`'s block
/// is stored in the 8 bytes just below it, where `block_under` finds it.
/// Rare: std's channel (the freeing thread's) is the one such block the
/// module makes.
///
/// # Safety
/// `layout.align()` is over `ALIGNED`; `alloc` returns null or a block of
/// the size asked, aligned to `ALIGNED`.
unsafe fn place_over_aligned(layout: Layout, alloc: impl FnOnce(usize) -> *mut u8) -> *mut u8 {
    let align = layout.align();
    let Some(size) = layout.size().checked_add(align) else {
        return std::ptr::null_mut();
    };
    let block = alloc(size);
    if block.is_null() {
        return block;
    }
    let shift = align - (block as usize & (align - 1));
    // SAFETY: `shift` is 8 to `align` (`block` is 8-aligned and `align` a
    // larger power of two), so the pointer and its `layout.size()` bytes
    // stay inside the block, and so do the 8 bytes below it, 8-aligned.
    unsafe {
        let p = block.add(shift);
        p.cast::<*mut u8>().sub(1).write(block);
        p
    }
}

/// The block `place_over_aligned` placed `p` in.
///
/// # Safety
/// `p` came from `place_over_aligned` and its block is not freed yet.
unsafe fn block_under(p: *mut u8) -> *mut u8 {
    // SAFETY: `place_over_aligned` wrote the block's address there.
    unsafe { p.cast::<*mut u8>().sub(1).read() }
}

/// In debug builds (the integration tests run them on every server), every
/// block is checked against its layout's alignment: a misaligned block is
/// undefined behaviour that a release build would run on silently.
#[inline]
fn checked(p: *mut u8, layout: Layout) -> *mut u8 {
    if cfg!(debug_assertions) && !p.is_null() && p as usize % layout.align() != 0 {
        misaligned()
    }
    p
}

/// Stops the server: the allocator must not unwind, and nothing may run on
/// a block that breaks its type's alignment.
#[cold]
fn misaligned() -> ! {
    const MSG: &[u8] = b"inventory: a block below its layout's alignment\n";
    // SAFETY: a static buffer written to stderr; abort does not return.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::abort()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `place_over_aligned` on blocks from libc's malloc (16-aligned) and on
    /// blocks 8 bytes into one (8-aligned only, as behind zmalloc's size
    /// header): every alignment from 16 to 4096, sizes around it.
    #[test]
    fn over_aligned_blocks_are_aligned_inside_their_block_and_find_it() {
        for offset in [0, 8] {
            for shift in 4..=12 {
                let align = 1usize << shift;
                for size in [1, 8, align - 1, align, align + 1, 3 * align] {
                    let layout = Layout::from_size_align(size, align).unwrap();
                    let mut got = (std::ptr::null_mut::<u8>(), 0);
                    // SAFETY: align > 8; the closure returns a live block of
                    // the size asked, 8-aligned; it is freed below, once.
                    let p = unsafe {
                        place_over_aligned(layout, |n| {
                            let raw = libc::malloc(n + offset).cast::<u8>();
                            got = (raw.add(offset), n);
                            got.0
                        })
                    };
                    let (block, len) = got;
                    assert_eq!(
                        p as usize % align,
                        0,
                        "align {align} size {size} offset {offset}"
                    );
                    assert!(
                        p as usize >= block as usize + 8,
                        "no room for the block's address"
                    );
                    assert!(
                        p as usize + size <= block as usize + len,
                        "past the block's end"
                    );
                    // SAFETY: `p` came from `place_over_aligned` just now.
                    assert_eq!(unsafe { block_under(p) }, block);
                    // SAFETY: the block libc gave, freed once.
                    unsafe { libc::free(block.sub(offset).cast()) };
                }
            }
        }
    }

    #[test]
    fn a_failed_allocation_is_null() {
        let layout = Layout::from_size_align(64, 128).unwrap();
        // SAFETY: align > 8; the closure returns null.
        let p = unsafe { place_over_aligned(layout, |_| std::ptr::null_mut()) };
        assert!(p.is_null());
    }
}

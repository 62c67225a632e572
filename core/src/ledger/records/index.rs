//! The txid index of one SKU: a hash table from a txid's hash to its slot in
//! the record slab, laid out so that one lookup or one insert of a fresh
//! txid touches one cache line.
//!
//! Not hashbrown: its control bytes and values live in two arrays, so a
//! fresh txid on a big key misses the cache twice (docs/benchmarks.md). Here
//! a bucket is one aligned 64-byte line: 12 one-byte tags, an overflow count
//! and 12 slots.
//!
//! Collisions probe the next bucket (linear probing by cache line). Each
//! bucket counts the entries that had to move past it (F14's "outbound
//! overflow"), so a lookup stops at the first bucket whose count is zero,
//! and a removal decrements the counts it had added: no tombstones, no
//! rehash other than growth.

/// Slots per bucket.
const SLOTS: usize = 12;
/// u32 words per bucket: 3 of tags, 1 overflow count, 12 slots.
const WORDS: usize = 16;
const OVERFLOW: usize = 3;
const FIRST_SLOT: usize = 4;
/// How many placements a rebuild prefetches ahead.
const LOOKAHEAD: usize = 16;
/// Tables of at least this many buckets (2 MiB, a core's L2) rebuild with
/// prefetching.
const BIG: usize = 1 << 15;
/// Tables of at least this many buckets grow in the background instead of
/// in one step, so the biggest one-step rebuild moves the 5,376 entries of a
/// full 512-bucket table (about a tenth of a millisecond).
pub(super) const BACKGROUND: usize = 1 << 10;
/// Tag of an empty slot; live tags are 1..=255.
const EMPTY: u8 = 0;
/// Buffers of at least this many words (1 MiB) go to `RELEASE` when their
/// index goes.
const RELEASE_WORDS: usize = 1 << 18;

/// Where the buffer of a big index that is being dropped goes; dropped in
/// place when unset. jemalloc hands a freed block of 8 MiB or more straight
/// back to the kernel inside `free` (an `madvise` of most of a millisecond),
/// so a server sets a function that drops it on another thread.
static RELEASE: std::sync::OnceLock<fn(Vec<u32>)> = std::sync::OnceLock::new();

/// Sets where the buffers of big indexes are dropped (once per process;
/// later calls change nothing).
pub fn release_big_buffers_with(release: fn(Vec<u32>)) {
    let _ = RELEASE.set(release);
}

fn tag_of(hash: u64) -> u8 {
    let tag = (hash >> 56) as u8;
    tag.max(1)
}

/// The tag of slot `i` of a bucket.
fn tag_at(bucket: &[u32], i: usize) -> u8 {
    (bucket[i / 4] >> (8 * (i % 4))) as u8
}

fn set_tag(bucket: &mut [u32], i: usize, tag: u8) {
    let shift = 8 * (i % 4);
    bucket[i / 4] = (bucket[i / 4] & !(0xff << shift)) | (u32::from(tag) << shift);
}

/// The slots of a bucket that carry a tag, lowest first.
struct Matches(u128);

impl Iterator for Matches {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        // Bit 8i+7 stands for slot i.
        let i = self.0.trailing_zeros() as usize / 8;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

/// The slots of `bucket` whose tag is `tag`, all twelve compared at once
/// (the exact zero-byte test of "Bit Twiddling Hacks").
fn matching(bucket: &[u32], tag: u8) -> Matches {
    const LOW7: u128 = 0x7f7f_7f7f_7f7f_7f7f_7f7f_7f7f;
    const HIGH: u128 = 0x8080_8080_8080_8080_8080_8080;
    let tags = u128::from(bucket[0]) | u128::from(bucket[1]) << 32 | u128::from(bucket[2]) << 64;
    let x = tags ^ (u128::from(tag) * 0x0101_0101_0101_0101_0101_0101);
    // High bit of each byte set where `x` has a zero byte, i.e. a match.
    Matches(!(((x & LOW7) + LOW7) | x | LOW7) & HIGH)
}

/// Starts loading the cache line that holds `at`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn prefetch_line<T>(at: &T) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch is only a hint; it never faults, and `at` is a valid
    // reference anyway. SSE is part of the x86_64 baseline.
    unsafe { _mm_prefetch::<_MM_HINT_T0>((at as *const T).cast()) }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn prefetch_line<T>(_at: &T) {}

/// Most entries `buckets` buckets take before growing (7/8 load).
fn capacity(buckets: usize) -> usize {
    buckets * SLOTS / 8 * 7
}

/// What `Index::insert` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    Added,
    Found(u32),
    /// No room: the owner did not rebuild first. Nothing changed.
    Full,
}

#[derive(Default)]
pub(crate) struct Index {
    /// The buckets, starting at word `base` (the first 64-byte boundary).
    words: Vec<u32>,
    base: usize,
    /// A power of two, or 0 before the first insert.
    buckets: usize,
    len: usize,
}

impl Drop for Index {
    fn drop(&mut self) {
        let_go(std::mem::take(&mut self.words));
    }
}

/// Drops an index's buffer, a big one through the release hook.
fn let_go(words: Vec<u32>) {
    match RELEASE.get() {
        Some(release) if words.len() >= RELEASE_WORDS => release(words),
        _ => drop(words),
    }
}

impl Clone for Index {
    /// A copy with its own alignment (the base offset differs per allocation).
    fn clone(&self) -> Self {
        let mut copy = Index::with_buckets(self.buckets);
        let n = self.buckets * WORDS;
        copy.words[copy.base..copy.base + n].copy_from_slice(&self.words[self.base..self.base + n]);
        copy.len = self.len;
        copy
    }
}

impl Index {
    fn with_buckets(buckets: usize) -> Index {
        if buckets == 0 {
            return Index::default();
        }
        // The buckets start on a cache-line boundary. jemalloc (Redis's)
        // puts a block of a multiple of 64 bytes on one; only a block that
        // is not (libc malloc gives 16 bytes) is made again with 15 spare
        // words to start from. Asking for the spare words every time would
        // cost a whole size class where the size is a power of two: 8 MiB
        // and 60 bytes is a 10 MiB block to jemalloc, and counts so in
        // `used_memory` (docs/benchmarks.md).
        let n = buckets * WORDS;
        let mut words = vec![0u32; n];
        if words.as_ptr() as usize % 64 != 0 {
            let_go(words);
            words = vec![0u32; n + 15];
        }
        let base = (64 - words.as_ptr() as usize % 64) % 64 / 4;
        Index {
            words,
            base,
            buckets,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn allocation_size(&self) -> usize {
        self.words.capacity() * 4
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.buckets - 1)
    }

    fn next(&self, b: usize) -> usize {
        (b + 1) & (self.buckets - 1)
    }

    fn bucket(&self, b: usize) -> &[u32] {
        let at = self.base + b * WORDS;
        &self.words[at..at + WORDS]
    }

    fn bucket_mut(&mut self, b: usize) -> &mut [u32] {
        let at = self.base + b * WORDS;
        &mut self.words[at..at + WORDS]
    }

    /// Starts loading the bucket `hash` lives in, so a `find` or `insert`
    /// issued a few hundred instructions later does not wait on memory.
    pub fn prefetch(&self, hash: u64) {
        if self.buckets == 0 {
            return;
        }
        let at = self.base + self.home(hash) * WORDS;
        if let Some(word) = self.words.get(at) {
            prefetch_line(word);
        }
    }

    /// The slot stored under `hash` for which `eq` holds.
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let tag = tag_of(hash);
        let mut b = self.home(hash);
        for _ in 0..self.buckets {
            let bucket = self.bucket(b);
            for i in matching(bucket, tag) {
                if eq(bucket[FIRST_SLOT + i]) {
                    return Some(bucket[FIRST_SLOT + i]);
                }
            }
            if bucket[OVERFLOW] == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// Adds `slot` under `hash` unless `eq` finds an entry already.
    /// Grows nothing: the owner makes room first (`fits_more`, `rebuild`).
    pub fn insert(&mut self, hash: u64, slot: u32, mut eq: impl FnMut(u32) -> bool) -> Insert {
        if !self.fits_more(1) {
            return match self.find(hash, eq) {
                Some(found) => Insert::Found(found),
                None => Insert::Full,
            };
        }
        // One walk: look for the txid and note the first empty slot on the way.
        let tag = tag_of(hash);
        let home = self.home(hash);
        let mut b = home;
        let mut empty = None;
        for _ in 0..self.buckets {
            let bucket = self.bucket(b);
            for i in matching(bucket, tag) {
                if eq(bucket[FIRST_SLOT + i]) {
                    return Insert::Found(bucket[FIRST_SLOT + i]);
                }
            }
            if empty.is_none() {
                empty = matching(bucket, EMPTY).next().map(|i| (b, i));
            }
            if bucket[OVERFLOW] == 0 {
                break;
            }
            b = self.next(b);
        }
        let Some((at, i)) = empty else {
            // Every bucket of the chain is full: extend it.
            return if self.fill_first_empty(hash, slot) {
                Insert::Added
            } else {
                Insert::Full
            };
        };
        let bucket = self.bucket_mut(at);
        set_tag(bucket, i, tag);
        bucket[FIRST_SLOT + i] = slot;
        self.len += 1;
        // Lookups must walk past every bucket before the one it landed in.
        self.count_passing(home, at, 1);
        Insert::Added
    }

    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// Entries that still fit.
    pub fn free_entries(&self) -> usize {
        capacity(self.buckets).saturating_sub(self.len)
    }

    /// True when `entries` entries in all would fit.
    pub fn fits_in_total(&self, entries: usize) -> bool {
        entries <= capacity(self.buckets)
    }

    /// True when `additional` more entries fit without a rebuild.
    pub fn fits_more(&self, additional: usize) -> bool {
        self.len.saturating_add(additional) <= capacity(self.buckets)
    }

    /// A new index sized for `entries`, holding `items` (hash, slot), which
    /// must be distinct and at most `entries`. The owner passes its records
    /// in slab order: reading them sequentially is what keeps a rebuild of
    /// a million entries short.
    pub fn rebuild(entries: usize, items: impl Iterator<Item = (u64, u32)>) -> Index {
        let mut buckets = 1;
        while capacity(buckets) < entries {
            buckets *= 2;
        }
        let mut index = Index::with_buckets(buckets);
        index.extend(items);
        index
    }

    /// An empty index twice this one's size, to be filled in steps
    /// (`extend`) while this one keeps serving.
    pub fn successor(&self) -> Index {
        Index::with_buckets((self.buckets * 2).max(1))
    }

    /// True when this index is big enough to be grown in the background,
    /// and three quarters full: time to start.
    pub fn wants_successor(&self) -> bool {
        self.buckets >= BACKGROUND && self.len * 4 >= self.buckets * SLOTS * 3
    }

    /// Adds `items` (hash, slot), absent and within capacity.
    pub fn extend(&mut self, items: impl Iterator<Item = (u64, u32)>) {
        // Placements cannot fail: the owner keeps the table below 7/8 load.
        if self.buckets < BIG {
            for (hash, slot) in items {
                let _ = self.fill_first_empty(hash, slot);
            }
            return;
        }
        // Each placement reads a random bucket of a table bigger than the
        // caches: prefetch a few items ahead so the misses overlap instead of
        // queueing one after another.
        let mut ring = [(0u64, 0u32); LOOKAHEAD];
        let mut n = 0;
        for (hash, slot) in items {
            self.prefetch(hash);
            let due = std::mem::replace(&mut ring[n % LOOKAHEAD], (hash, slot));
            if n >= LOOKAHEAD {
                let _ = self.fill_first_empty(due.0, due.1);
            }
            n += 1;
        }
        for &(hash, slot) in ring.iter().take(n.min(LOOKAHEAD)) {
            let _ = self.fill_first_empty(hash, slot);
        }
    }

    /// Inserts an entry known to be absent (false, nothing stored, when the
    /// index is full).
    pub fn insert_new(&mut self, hash: u64, slot: u32) -> bool {
        self.fits_more(1) && self.fill_first_empty(hash, slot)
    }

    /// Stores an entry known to be absent in the first empty slot of its
    /// probe sequence. Always succeeds below full load, which growth
    /// guarantees; false (nothing stored) otherwise.
    fn fill_first_empty(&mut self, hash: u64, slot: u32) -> bool {
        let tag = tag_of(hash);
        let mut b = self.home(hash);
        for _ in 0..self.buckets {
            let bucket = self.bucket_mut(b);
            if let Some(i) = matching(bucket, EMPTY).next() {
                set_tag(bucket, i, tag);
                bucket[FIRST_SLOT + i] = slot;
                self.len += 1;
                return true;
            }
            bucket[OVERFLOW] = bucket[OVERFLOW].wrapping_add(1);
            b = self.next(b);
        }
        false
    }

    /// Adds `delta` (wrapping: u32::MAX subtracts one) to the overflow count
    /// of every bucket from `home` up to, not including, `at`.
    fn count_passing(&mut self, home: usize, at: usize, delta: u32) {
        let mut x = home;
        while x != at {
            let count = &mut self.bucket_mut(x)[OVERFLOW];
            *count = count.wrapping_add(delta);
            x = self.next(x);
        }
    }

    /// Points the entry holding `old` under `hash` at `new` instead (a
    /// record that moved); false when absent.
    pub fn replace(&mut self, hash: u64, old: u32, new: u32) -> bool {
        if self.len == 0 {
            return false;
        }
        let tag = tag_of(hash);
        let mut b = self.home(hash);
        for _ in 0..self.buckets {
            let bucket = self.bucket_mut(b);
            if let Some(i) = matching(bucket, tag).find(|&i| bucket[FIRST_SLOT + i] == old) {
                bucket[FIRST_SLOT + i] = new;
                return true;
            }
            if bucket[OVERFLOW] == 0 {
                return false;
            }
            b = self.next(b);
        }
        false
    }

    /// An empty index of the size `rebuild` would give `entries`, with room
    /// to grow before it wants a successor: what a key shrinks to.
    pub fn sized_for(entries: usize) -> Index {
        Index::rebuild(entries.saturating_mul(2), std::iter::empty())
    }

    /// True when this index holds a small share of what it could: a key that
    /// shrank a lot returns the rest by moving to `sized_for(len)`.
    pub fn oversized(&self) -> bool {
        self.buckets >= BACKGROUND && self.len * 8 < capacity(self.buckets)
    }

    /// Removes the entry holding `slot` under `hash`; false when absent.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        if self.len == 0 {
            return false;
        }
        let tag = tag_of(hash);
        let home = self.home(hash);
        let mut b = home;
        for _ in 0..self.buckets {
            let bucket = self.bucket_mut(b);
            let hit = matching(bucket, tag).find(|&i| bucket[FIRST_SLOT + i] == slot);
            if let Some(i) = hit {
                set_tag(bucket, i, EMPTY);
                bucket[FIRST_SLOT + i] = 0;
                self.len -= 1;
                // Undo the overflow counts this entry added on its way.
                self.count_passing(home, b, u32::MAX);
                return true;
            }
            if bucket[OVERFLOW] == 0 {
                return false;
            }
            b = self.next(b);
        }
        false
    }

    /// Every stored slot, in bucket order.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.buckets).flat_map(move |b| {
            let bucket = self.bucket(b);
            (0..SLOTS)
                .filter(move |&i| tag_at(bucket, i) != EMPTY)
                .map(move |i| bucket[FIRST_SLOT + i])
        })
    }

    /// Checks the overflow counts and the length against the entries; the
    /// first problem found.
    pub fn check(&self, mut rehash: impl FnMut(u32) -> u64) -> Result<(), String> {
        let mut expected = vec![0u32; self.buckets];
        let mut count = 0;
        for b in 0..self.buckets {
            let bucket = self.bucket(b);
            for i in (0..SLOTS).filter(|&i| tag_at(bucket, i) != EMPTY) {
                let hash = rehash(bucket[FIRST_SLOT + i]);
                if tag_of(hash) != tag_at(bucket, i) {
                    return Err(format!("index tag out of step in bucket {b}"));
                }
                let mut x = self.home(hash);
                while x != b {
                    expected[x] += 1;
                    x = self.next(x);
                }
                count += 1;
            }
        }
        if count != self.len {
            return Err(format!("index counts {} entries, holds {count}", self.len));
        }
        for (b, want) in expected.iter().enumerate() {
            if self.bucket(b)[OVERFLOW] != *want {
                return Err(format!("index overflow count out of step in bucket {b}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;

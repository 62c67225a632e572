//! A growable array in fixed-size chunks: pushing never moves what is
//! already stored. A `Vec` doubles by reallocating, and with jemalloc (Redis
//! 7.0) that copies a big key's record slab whole (docs/benchmarks.md).
//! Each chunk grows by doubling up to its full size, so a key's memory
//! follows its size: a new chunk allocated whole would hold up to `CHUNK`
//! empty elements (at 10,000 records, 6,000 empty 32-byte records:
//! docs/benchmarks.md). The biggest copy a doubling makes is half a chunk.

use std::ops::{Index, IndexMut};

/// Elements per chunk (a power of two).
const CHUNK_BITS: u32 = 13;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Elements a new chunk is allocated for.
const FIRST: usize = 4;

#[derive(Clone, Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, value: T) {
        let c = self.len >> CHUNK_BITS;
        // Chunks emptied by `pop` are kept (like a Vec's capacity), so an
        // array going back and forth over a boundary does not reallocate.
        match self.chunks.get_mut(c) {
            Some(chunk) => {
                if chunk.len() == chunk.capacity() {
                    // Doubling, never past a chunk (a Vec's own growth
                    // would be free to overshoot it).
                    let want = (chunk.capacity() * 2).clamp(FIRST, CHUNK);
                    chunk.reserve_exact(want - chunk.len());
                }
                chunk.push(value);
            }
            None => {
                let mut chunk = Vec::with_capacity(FIRST);
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<T> {
        let c = self.len.checked_sub(1)? >> CHUNK_BITS;
        let value = self.chunks.get_mut(c)?.pop();
        if value.is_some() {
            self.len -= 1;
        }
        value
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i >> CHUNK_BITS)?.get(i & (CHUNK - 1))
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(i >> CHUNK_BITS)?
            .get_mut(i & (CHUNK - 1))
    }

    pub fn last(&self) -> Option<&T> {
        self.get(self.len.checked_sub(1)?)
    }

    /// Elements from `from` (inclusive) to `to` (exclusive), in order; the
    /// start costs nothing however far in it is.
    pub fn range(&self, from: usize, to: usize) -> impl Iterator<Item = &T> + '_ {
        let to = to.min(self.len);
        (from.min(to)..to).map(move |i| &self[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    /// Elements the allocated chunks can hold.
    pub fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }

    /// Releases the chunks past the last element (`pop` keeps them) and
    /// the last chunk's room past it.
    pub fn shrink(&mut self) {
        let used = self.len.div_ceil(CHUNK);
        self.chunks.truncate(used);
        self.chunks.shrink_to_fit();
        if let Some(last) = self.chunks.last_mut() {
            last.shrink_to_fit();
        }
    }

    /// Makes room for `additional` more elements in the first chunk, when
    /// they fit in it (a key rebuilt at a known size allocates once).
    pub fn reserve(&mut self, additional: usize) {
        if self.chunks.len() <= 1 {
            let want = self.len.saturating_add(additional).min(CHUNK);
            match self.chunks.first_mut() {
                Some(first) => first.reserve_exact(want.saturating_sub(first.len())),
                None if want > 0 => self.chunks.push(Vec::with_capacity(want)),
                None => {}
            }
        }
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_vec_across_chunk_boundaries() {
        let mut c = Chunked::default();
        let mut v = Vec::new();
        for i in 0..(3 * CHUNK + 5) {
            c.push(i);
            v.push(i);
        }
        assert_eq!(c.len(), v.len());
        assert!(c.iter().eq(v.iter()));
        assert!(c
            .range(CHUNK - 2, 2 * CHUNK + 3)
            .eq(v[CHUNK - 2..2 * CHUNK + 3].iter()));
        assert_eq!(c.range(10, 5).count(), 0);
        assert_eq!(c.range(0, usize::MAX).count(), v.len());
        c[CHUNK] = 7;
        v[CHUNK] = 7;
        assert_eq!(c.get(CHUNK), Some(&7));
        *c.get_mut(2 * CHUNK).unwrap() = 8;
        v[2 * CHUNK] = 8;
        assert_eq!(c.get_mut(v.len()), None);
        assert_eq!(c.last(), v.last());
        assert_eq!(c.get(v.len()), None);
        for _ in 0..(CHUNK + 7) {
            assert_eq!(c.pop(), v.pop());
        }
        assert!(c.iter().eq(v.iter()));
        assert_eq!(c.get(0), v.first());
        let full = c.capacity();
        c.shrink();
        assert!(c.capacity() < full && c.capacity() >= c.len());
        assert!(c.iter().eq(v.iter()));
        while c.pop().is_some() {}
        assert!(c.is_empty() && c.iter().next().is_none() && c.last().is_none());
        c.shrink();
        assert_eq!(c.capacity(), 0);
        c.push(9);
        assert_eq!((c.len(), c[0]), (1, 9));
    }

    #[test]
    fn every_chunk_grows_by_doubling_and_never_past_a_chunk() {
        let mut c = Chunked::default();
        for n in 1..=(3 * CHUNK + CHUNK / 3) {
            c.push(n);
            let last = (n - 1) % CHUNK + 1;
            let room = c.capacity() - (n - last);
            assert!(
                room >= last && room <= (2 * last).max(FIRST),
                "{n} elements: the last chunk holds {last} in room for {room}"
            );
            assert!(c.chunks.iter().all(|k| k.capacity() <= CHUNK));
        }
        for _ in 0..CHUNK / 2 {
            c.pop();
        }
        c.shrink();
        assert_eq!(c.capacity(), c.len());
        c.push(0);
        assert!(c.capacity() <= 2 * c.len());
    }

    #[test]
    fn a_small_array_stays_small_and_reserve_fills_the_first_chunk() {
        let mut c = Chunked::default();
        c.push(1u32);
        assert!(c.capacity() < 16);
        let mut r: Chunked<u32> = Chunked::default();
        r.reserve(100);
        assert!(r.capacity() >= 100 && r.capacity() < CHUNK);
    }
}

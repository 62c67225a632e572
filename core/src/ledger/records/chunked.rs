//! A growable array in fixed-size chunks: pushing never moves what is
//! already stored. A `Vec` doubles by reallocating, and with jemalloc (Redis
//! 7.0) that copies a big key's record slab whole (docs/benchmarks.md).
//! Here only the first chunk grows by doubling (so a small key stays small);
//! every later chunk is allocated at full size once.

use std::ops::{Index, IndexMut};

/// Elements per chunk (a power of two).
const CHUNK_BITS: u32 = 13;
const CHUNK: usize = 1 << CHUNK_BITS;

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
            Some(chunk) => chunk.push(value),
            None => {
                let mut chunk = Vec::with_capacity(if c == 0 { 4 } else { CHUNK });
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

    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    /// Elements the allocated chunks can hold.
    pub fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }

    /// Releases the chunks past the last element (`pop` keeps them).
    pub fn shrink(&mut self) {
        let used = self.len.div_ceil(CHUNK);
        self.chunks.truncate(used);
        self.chunks.shrink_to_fit();
        if let Some(first) = self.chunks.first_mut().filter(|_| used == 1) {
            first.shrink_to_fit();
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
    fn a_small_array_stays_small_and_reserve_fills_the_first_chunk() {
        let mut c = Chunked::default();
        c.push(1u32);
        assert!(c.capacity() < 16);
        let mut r: Chunked<u32> = Chunked::default();
        r.reserve(100);
        assert!(r.capacity() >= 100 && r.capacity() < CHUNK);
    }
}

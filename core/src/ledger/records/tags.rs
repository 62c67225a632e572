//! A value per record slot that only some records carry (the buyer of an
//! open hold), kept beside the slab so that finding it needs no lookup by
//! txid: the slot a command already found gives it. Sparse by block: a
//! block of slots is allocated at its first non-zero tag and freed when its
//! last one goes, so a key that tags nothing pays nothing and tagging one
//! record never fills the slots before it.

const BLOCK_BITS: u32 = 12;
const BLOCK: usize = 1 << BLOCK_BITS;

#[derive(Clone, Default)]
pub(crate) struct Tags {
    /// Per block of `BLOCK` slots: its tags (when any is set) and how many
    /// are non-zero.
    blocks: Vec<Option<(Box<[u32]>, u32)>>,
}

impl Tags {
    pub fn get(&self, slot: u32) -> u32 {
        let s = slot as usize;
        match self.blocks.get(s >> BLOCK_BITS) {
            Some(Some((tags, _))) => tags.get(s & (BLOCK - 1)).copied().unwrap_or(0),
            _ => 0,
        }
    }

    pub fn set(&mut self, slot: u32, tag: u32) {
        let s = slot as usize;
        let b = s >> BLOCK_BITS;
        if tag == 0 && !matches!(self.blocks.get(b), Some(Some(_))) {
            return;
        }
        if self.blocks.len() <= b {
            self.blocks.resize(b + 1, None);
        }
        let block = self.blocks[b].get_or_insert_with(|| (vec![0; BLOCK].into_boxed_slice(), 0));
        let old = std::mem::replace(&mut block.0[s & (BLOCK - 1)], tag);
        match (old != 0, tag != 0) {
            (false, true) => block.1 += 1,
            (true, false) => block.1 -= 1,
            _ => {}
        }
        if block.1 == 0 {
            self.blocks[b] = None;
            while matches!(self.blocks.last(), Some(None)) {
                self.blocks.pop();
            }
        }
    }

    /// Moves a slot's tag to another slot (a record that moved).
    pub fn relocate(&mut self, from: u32, to: u32) {
        let tag = self.get(from);
        if tag != 0 {
            self.set(from, 0);
            self.set(to, tag);
        }
    }

    pub fn mem_usage(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Option<(Box<[u32]>, u32)>>()
            + self.blocks.iter().flatten().count() * BLOCK * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_blocks_come_and_go() {
        let mut t = Tags::default();
        t.set(5, 0);
        assert_eq!(t.mem_usage(), 0);
        t.set(100_000, 7);
        assert_eq!((t.get(100_000), t.get(99_999), t.get(5)), (7, 0, 0));
        assert_eq!(t.blocks.iter().flatten().count(), 1);
        t.relocate(100_000, 3);
        assert_eq!((t.get(100_000), t.get(3)), (0, 7));
        assert_eq!(t.blocks.len(), 1);
        t.set(3, 0);
        assert!(t.blocks.is_empty());
    }
}

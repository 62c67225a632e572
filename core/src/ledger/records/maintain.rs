//! Work on a key's records that grows with the key, done in bounded steps
//! from housekeeping instead of inside one command: moving to a bigger (or,
//! after a big purge, smaller) txid index, and compaction, which moves the
//! records at the end of the slab into the holes purges left and releases
//! what the end held. Neither changes what any reader sees, so nothing is
//! replicated: masters and replicas step their own copies.

use super::chunked::Chunked;
use super::index::{Index, BACKGROUND};
use super::record::{live_hashes, Record};
use super::{which, Records};

/// Slots left to copy per insert left before the serving index is full,
/// at which inserts start to help a growth (see `help_growth`): the ratio
/// when a growth starts (at three quarters of the slots, full at seven
/// eighths), so inserts help only once housekeeping falls behind.
const LEAD: usize = 6;

/// An index under construction: it holds every live record whose slot is
/// below `cursor`; `grow_step` copies the rest in slab order, and changes
/// below the cursor are mirrored into it.
#[derive(Clone)]
pub(super) struct NextIndex {
    index: Index,
    cursor: usize,
}

impl NextIndex {
    pub fn allocation_size(&self) -> usize {
        self.index.allocation_size()
    }

    /// It holds exactly the live records below its cursor.
    pub fn check(&self, records: &Records) -> Result<(), String> {
        self.index.check(|s| records.slot_hash(s))?;
        let mut count = 0;
        for (hash, slot) in live_hashes(
            &records.slab,
            &records.long,
            &records.hasher,
            0,
            self.cursor,
        ) {
            if self.index.find(hash, |s| s == slot).is_none() {
                return Err(format!("the next index misses the record in slot {slot}"));
            }
            count += 1;
        }
        if self.index.len() != count {
            return Err("the next index holds records past its cursor".into());
        }
        Ok(())
    }
}

/// A compaction in progress: every slot below `hole` holds a record (or was
/// freed after the compaction passed it).
#[derive(Clone)]
pub(super) struct Compaction {
    hole: usize,
}

impl Records {
    /// How far the new index being filled has come (tests).
    #[cfg(test)]
    pub fn growth_cursor(&self) -> Option<usize> {
        self.next.as_ref().map(|n| n.cursor)
    }

    /// True while work remains for `maintain`.
    pub fn busy(&self) -> bool {
        self.next.is_some() || self.compaction.is_some()
    }

    /// Does up to about `budget` slots' worth of the pending work: the index
    /// first (it may be filling up), then compaction. Returns whether work
    /// remains.
    pub fn maintain(&mut self, budget: usize) -> bool {
        if self.next.is_some() {
            self.grow_step(budget);
        } else if self.compaction.is_some() {
            self.compact_step(budget);
        }
        self.busy()
    }

    /// An insert of `slot`: a new index below its cursor holds it too, and a
    /// full-enough index starts growing.
    pub(super) fn mirror_insert(&mut self, hash: u64, slot: u32) {
        match &mut self.next {
            Some(next) if (slot as usize) < next.cursor => {
                let _ = next.index.insert_new(hash, slot);
            }
            Some(_) => {}
            None if self.index.wants_successor() => {
                self.next = Some(NextIndex {
                    index: self.index.successor(),
                    cursor: 0,
                });
            }
            None => {}
        }
    }

    /// A removal of `slot`: a new index below its cursor forgets it too.
    pub(super) fn mirror_remove(&mut self, hash: u64, slot: u32) {
        if let Some(next) = self.next.as_mut().filter(|n| (slot as usize) < n.cursor) {
            next.index.remove(hash, slot);
        }
    }

    /// An insert while a new index is being filled copies slots into it
    /// when housekeeping's steps fall behind, as a hash table's incremental
    /// rehash does: enough to keep the slots left to copy at most `LEAD`
    /// per insert the serving index still has room for. So the move is done
    /// (but for a few slots) before the index fills however fast records
    /// arrive and even with no housekeeping at all (an AOF loading), no
    /// insert ever finishes a big move in one go, and while housekeeping
    /// keeps up (it also takes the new index's page faults), inserts copy
    /// nothing.
    pub(super) fn help_growth(&mut self) {
        let Some(next) = &self.next else {
            return;
        };
        let left = self.slab.len().saturating_sub(next.cursor);
        let room = self.index.free_entries().max(1);
        let copies = left.div_ceil(room).saturating_sub(LEAD);
        if copies > 0 {
            self.grow_step(copies);
        }
    }

    /// Makes room in the index for `additional` more entries. A background
    /// move that has not finished in time finishes now; an index too small
    /// is rebuilt in one go (only below `BACKGROUND` buckets in practice:
    /// bigger ones start growing at three quarters full).
    pub(super) fn index_room(&mut self, additional: usize) {
        // A smaller index started after a purge that can no longer hold
        // every record is given up (a bigger one always can).
        let needed = self.len().saturating_add(additional);
        if self
            .next
            .as_ref()
            .is_some_and(|n| !n.index.fits_in_total(needed))
        {
            self.next = None;
        }
        if self.index.fits_more(additional) {
            return;
        }
        if self.next.is_some() {
            self.grow_step(usize::MAX);
            if self.index.fits_more(additional) {
                return;
            }
        }
        let live = live_hashes(&self.slab, &self.long, &self.hasher, 0, self.slab.len());
        self.index = Index::rebuild(self.len().saturating_add(additional), live);
    }

    pub fn reserve(&mut self, n: usize) {
        self.slab.reserve(n);
        self.pos.reserve(n);
        self.index_room(n);
    }

    /// Copies up to `budget` slab slots into the next index; swaps it in
    /// once the whole slab is covered.
    fn grow_step(&mut self, budget: usize) {
        let Some(next) = self.next.as_mut() else {
            return;
        };
        let end = next.cursor.saturating_add(budget).min(self.slab.len());
        let live = live_hashes(&self.slab, &self.long, &self.hasher, next.cursor, end);
        next.index.extend(live);
        next.cursor = end;
        if end >= self.slab.len() {
            if let Some(done) = self.next.take() {
                self.index = done.index;
            }
        }
    }

    /// True when most slots are free, so compaction would return memory.
    fn sparse(&self) -> bool {
        self.slab.len() > 1024 && self.len() * 4 < self.slab.len()
    }

    /// After records were removed: starts a compaction when most slots are
    /// free. The free list is dropped: compaction finds the holes itself.
    pub fn after_removals(&mut self) {
        if self.compaction.is_none() && self.sparse() {
            self.free = Chunked::default();
            self.compaction = Some(Compaction { hole: 0 });
        }
    }

    /// Compacts in one go (tests and small keys).
    #[cfg(test)]
    pub fn compact(&mut self) {
        self.compaction = Some(Compaction { hole: 0 });
        self.free = Chunked::default();
        while self.compaction.is_some() {
            self.compact_step(usize::MAX);
        }
        while self.next.is_some() {
            self.grow_step(usize::MAX);
        }
    }

    /// Moves records from the end of the slab into the holes below, looking
    /// at up to about `budget` slots; finishes when no hole is left below the
    /// last record.
    fn compact_step(&mut self, budget: usize) {
        let Some(mut c) = self.compaction.take() else {
            return;
        };
        let mut work = 0usize;
        let mut moved = false;
        let done = loop {
            // Free slots at the end are cut off.
            while self.slab.len() > c.hole
                && self
                    .slab
                    .get(self.slab.len() - 1)
                    .is_some_and(Record::is_free)
            {
                self.slab.pop();
                self.pos.pop();
                work += 1;
            }
            while c.hole < self.slab.len() && !self.slab[c.hole].is_free() {
                c.hole += 1;
                work += 1;
            }
            if c.hole >= self.slab.len() {
                break true;
            }
            let last = self.slab.len() - 1;
            self.relocate(last, c.hole);
            self.slab.pop();
            self.pos.pop();
            moved = true;
            work += 1;
            if work >= budget {
                break false;
            }
        };
        if moved {
            // Slots were renumbered: scan cursors restart.
            self.epoch = self.epoch.wrapping_add(1);
        }
        if done {
            self.finish_compaction();
        } else {
            self.compaction = Some(c);
        }
    }

    /// Moves the record in slot `from` to the free slot `to`: the index
    /// entries, the heap position and the record itself (its txid bytes,
    /// deadline and time are unchanged, so no order changes).
    fn relocate(&mut self, from: usize, to: usize) {
        let hash = self.slot_hash(from as u32);
        let (f, t) = (from as u32, to as u32);
        self.index.replace(hash, f, t);
        if let Some(next) = self.next.as_mut() {
            match (from < next.cursor, to < next.cursor) {
                (true, true) => {
                    next.index.replace(hash, f, t);
                }
                (true, false) => {
                    next.index.remove(hash, f);
                }
                (false, true) => {
                    let _ = next.index.insert_new(hash, t);
                }
                (false, false) => {}
            }
        }
        self.tags.relocate(f, t);
        let record = std::mem::replace(&mut self.slab[from], Record::free());
        let w = which(record.state());
        self.slab[to] = record;
        let p = self.pos[from];
        let (heap, _, pos) = self.heap_parts(w);
        heap.place(p as usize, t, pos);
    }

    /// The slab holds no hole below its last record but the ones freed
    /// since the compaction passed them: spare chunks go back, and an index
    /// far too big for what is left moves to a smaller one in steps.
    fn finish_compaction(&mut self) {
        self.slab.shrink();
        self.pos.shrink();
        self.open.items.shrink();
        self.done.items.shrink();
        self.free.shrink();
        self.long_free.shrink();
        if self.next.is_none() && self.index.oversized() {
            let smaller = Index::sized_for(self.len());
            if smaller.buckets() >= BACKGROUND {
                self.next = Some(NextIndex {
                    index: smaller,
                    cursor: 0,
                });
            } else {
                let live = live_hashes(&self.slab, &self.long, &self.hasher, 0, self.slab.len());
                self.index = Index::rebuild(self.len().saturating_mul(2), live);
            }
        }
    }
}

//! Per-transaction records of one SKU, laid out for memory:
//! a slab of 32-byte records (txids up to 16 bytes inline, longer ones in a
//! side table), a hash index of u32 slots by txid (`index.rs`), and two
//! indexed min-heaps of slots ordered by each record's time: `open` (RESERVED
//! records by deadline) and `done` (finished records by the time their
//! retention is counted from). Each slot's heap position lives in `pos`, so a
//! record can leave or be re-keyed in either heap in O(log n). Open records
//! are also summed by deadline (`deadlines.rs`), so what is due at a time is
//! known without visiting it. Work that grows with the key (a bigger or
//! smaller index, compaction after a big purge) runs in bounded steps
//! (`maintain.rs`).

mod chunked;
mod deadlines;
mod heap;
mod index;
mod maintain;
mod record;
mod tags;

use super::txid::TxId;
pub(crate) use chunked::Chunked;
use deadlines::Deadlines;
use heap::{which, SlotHeap, Which};
pub use index::release_big_buffers_with;
pub(crate) use index::{prefetch_line, Index};
use maintain::{Compaction, NextIndex};
pub(crate) use record::Rec;
pub use record::State;
use record::{holds, id_bytes, Record};
use tags::Tags;
/// All records of one SKU.
#[derive(Clone)]
pub(crate) struct Records {
    slab: Chunked<Record>,
    pos: Chunked<u32>,
    /// Free slots to reuse, latest last. An entry can be stale (a slot that
    /// compaction filled or cut off the end): `free_slot` skips those.
    /// This and the side tables below are `Chunked` like the slab: a `Vec`
    /// of a million long txids doubling copied 8 MiB inside one insert
    /// (8-9 ms, docs/benchmarks.md).
    free: Chunked<u32>,
    /// Live records.
    live: usize,
    index: Index,
    /// The index being filled in steps (bigger or smaller), while `index`
    /// serves.
    next: Option<NextIndex>,
    /// A compaction in progress, moving records from the end into holes.
    compaction: Option<Compaction>,
    open: SlotHeap,
    done: SlotHeap,
    hasher: ahash::RandomState,
    /// Bytes of txids longer than 16 bytes, referenced from their records.
    long: Chunked<Box<[u8]>>,
    long_free: Chunked<u32>,
    heap_bytes: usize,
    /// Bumped whenever slots are renumbered, so scan cursors can restart.
    epoch: u32,
    /// Open records summed by deadline: what is due, without visiting it.
    deadlines: Deadlines,
    /// A value some records carry (the owner's: a hold's buyer), by slot.
    tags: Tags,
}

impl Default for Records {
    fn default() -> Self {
        Records {
            slab: Chunked::default(),
            pos: Chunked::default(),
            free: Chunked::default(),
            live: 0,
            index: Index::default(),
            next: None,
            compaction: None,
            open: SlotHeap::default(),
            done: SlotHeap::default(),
            hasher: ahash::RandomState::new(),
            long: Chunked::default(),
            long_free: Chunked::default(),
            heap_bytes: 0,
            epoch: 0,
            deadlines: Deadlines::default(),
            tags: Tags::default(),
        }
    }
}

/// What `Records::insert` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    Added,
    /// The txid already has a record.
    Exists,
    /// The key holds `MAX_RECORDS` already.
    Full,
}

/// Most records one key may hold (slots are u32).
pub const MAX_RECORDS: usize = (u32::MAX - 1) as usize;

impl Records {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn open_len(&self) -> usize {
        self.open.items.len()
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    fn hash(&self, txid: &[u8]) -> u64 {
        self.hasher.hash_one(txid)
    }

    /// Starts loading the index line a later `find`/`insert` of `txid` reads.
    pub fn prefetch(&self, txid: &[u8]) {
        if self.index.len() > 0 {
            self.index.prefetch(self.hash(txid));
        }
    }

    pub fn find(&self, txid: &[u8]) -> Option<u32> {
        // No hash to compute on a key without records.
        if self.index.len() == 0 {
            return None;
        }
        let (slab, long) = (&self.slab, &self.long);
        self.index
            .find(self.hash(txid), |s| holds(slab, long, s, txid))
    }

    /// The hash of the txid stored in `slot`, for the index's growth.
    fn slot_hash(&self, slot: u32) -> u64 {
        self.slab
            .get(slot as usize)
            .map_or(0, |r| self.hash(id_bytes(r, &self.long)))
    }

    pub fn get(&self, slot: u32) -> Option<Rec<'_>> {
        self.slab
            .get(slot as usize)
            .filter(|r| !r.is_free())
            .map(|r| Rec {
                r,
                long: &self.long,
            })
    }

    /// The slot the next insert takes: the latest freed slot that is still
    /// free, else a new one at the end. Stale free entries are dropped.
    fn free_slot(&mut self) -> u32 {
        while let Some(&slot) = self.free.last() {
            if self.slab.get(slot as usize).is_some_and(Record::is_free) {
                return slot;
            }
            self.free.pop();
        }
        self.slab.len() as u32
    }

    /// Adds a record, with one probe of the index.
    pub fn insert(&mut self, txid: &TxId, state: State, qty: u64, time: u64) -> Insert {
        self.insert_tagged(txid, state, qty, time, 0)
    }

    /// `insert`, the new record carrying `tag` (0: none).
    pub fn insert_tagged(
        &mut self,
        txid: &TxId,
        state: State,
        qty: u64,
        time: u64,
        tag: u32,
    ) -> Insert {
        if self.len() >= MAX_RECORDS {
            return Insert::Full;
        }
        let bytes = txid.as_bytes();
        let hash = self.hash(bytes);
        self.help_growth();
        self.index_room(1);
        // The slot the record will take, stored in the index by the same probe
        // that looks for the txid.
        let slot = self.free_slot();
        let (slab, long) = (&self.slab, &self.long);
        let probe = self
            .index
            .insert(hash, slot, |s| holds(slab, long, s, bytes));
        match probe {
            index::Insert::Added => {}
            index::Insert::Found(_) => return Insert::Exists,
            index::Insert::Full => return Insert::Full,
        }
        self.mirror_insert(hash, slot);
        let long = Record::is_long(bytes.len()).then(|| {
            self.heap_bytes += bytes.len();
            match self.long_free.pop() {
                Some(i) => {
                    self.long[i as usize] = bytes.into();
                    i
                }
                None => {
                    self.long.push(bytes.into());
                    (self.long.len() - 1) as u32
                }
            }
        });
        let record = Record::new(bytes, long, state, qty, time);
        if (slot as usize) < self.slab.len() {
            self.free.pop();
            self.slab[slot as usize] = record;
        } else {
            self.slab.push(record);
            self.pos.push(0);
        }
        self.live += 1;
        let (heap, slab, pos) = self.heap_parts(which(state));
        heap.push(slot, slab, pos);
        if state == State::Reserved {
            self.deadlines.add(time, qty as i64);
        }
        self.tags.set(slot, tag);
        Insert::Added
    }

    /// The tag of the record in `slot` (0: none).
    pub fn tag(&self, slot: u32) -> u32 {
        self.tags.get(slot)
    }

    pub fn set_tag(&mut self, slot: u32, tag: u32) {
        self.tags.set(slot, tag);
    }

    fn heap_parts(&mut self, w: Which) -> (&mut SlotHeap, &Chunked<Record>, &mut Chunked<u32>) {
        let heap = match w {
            Which::Open => &mut self.open,
            Which::Done => &mut self.done,
        };
        (heap, &self.slab, &mut self.pos)
    }

    /// Moves a record to another state, switching heaps when needed.
    pub fn set_state(&mut self, slot: u32, state: State) {
        let old = self.slab[slot as usize].state();
        if old == State::Reserved && state != State::Reserved {
            let r = &self.slab[slot as usize];
            self.deadlines.remove(r.time, r.qty() as i64);
        }
        if which(old) != which(state) {
            let (heap, slab, pos) = self.heap_parts(which(old));
            heap.remove(slot, slab, pos);
            self.slab[slot as usize].set_state(state);
            let (heap, slab, pos) = self.heap_parts(which(state));
            heap.push(slot, slab, pos);
        } else {
            self.slab[slot as usize].set_state(state);
        }
    }

    /// Changes a record's quantity (an adjusted hold; a confirm that sold
    /// fewer units than were held, once it left the open heap).
    pub fn set_qty(&mut self, slot: u32, qty: u64) {
        let r = &self.slab[slot as usize];
        if r.state() == State::Reserved {
            let (time, old) = (r.time, r.qty() as i64);
            self.deadlines.remove(time, old);
            self.deadlines.add(time, qty as i64);
        }
        self.slab[slot as usize].set_qty(qty);
    }

    /// Changes a record's time and restores its heap's order.
    pub fn set_time(&mut self, slot: u32, time: u64) {
        let r = &self.slab[slot as usize];
        if r.state() == State::Reserved {
            let (old, qty) = (r.time, r.qty() as i64);
            self.deadlines.remove(old, qty);
            self.deadlines.add(time, qty);
        }
        self.slab[slot as usize].time = time;
        let w = which(self.slab[slot as usize].state());
        let i = self.pos[slot as usize] as usize;
        let (heap, slab, pos) = self.heap_parts(w);
        heap.rekey(i, slab, pos);
    }

    /// Deletes a record entirely.
    pub fn remove(&mut self, slot: u32) {
        let r = &self.slab[slot as usize];
        if r.state() == State::Reserved {
            self.deadlines.remove(r.time, r.qty() as i64);
        }
        let w = which(self.slab[slot as usize].state());
        let (heap, slab, pos) = self.heap_parts(w);
        heap.remove(slot, slab, pos);
        let hash = self.slot_hash(slot);
        self.index.remove(hash, slot);
        self.mirror_remove(hash, slot);
        self.tags.set(slot, 0);
        let old = std::mem::replace(&mut self.slab[slot as usize], Record::free());
        if let Some(i) = old.long_index() {
            if let Some(b) = self.long.get_mut(i) {
                self.heap_bytes -= b.len();
                *b = Box::default();
                self.long_free.push(i as u32);
            }
        }
        self.free.push(slot);
        self.live -= 1;
        if self.live == 0 {
            *self = Records {
                hasher: self.hasher.clone(),
                epoch: self.epoch.wrapping_add(1),
                ..Records::default()
            };
        }
    }

    /// `(count, units)` of RESERVED records whose deadline is at or before
    /// `now`, without visiting them (amortised over the times asked).
    #[inline]
    pub fn due(&self, now: u64) -> (u64, i64) {
        self.deadlines.due(now)
    }

    /// Earliest deadline among RESERVED records.
    pub fn first_deadline(&self) -> Option<u64> {
        self.open.top()
    }

    /// Earliest retention reference time among finished records.
    pub fn first_done(&self) -> Option<u64> {
        self.done.top()
    }

    /// RESERVED records with deadline <= now, in no particular order.
    pub fn visit_due(&self, now: u64, visit: impl FnMut(u32) -> bool) {
        self.open.visit_upto(now, &self.slab, visit)
    }

    /// Finished records with time <= limit, in no particular order.
    pub fn visit_done_upto(&self, limit: u64, visit: impl FnMut(u32) -> bool) {
        self.done.visit_upto(limit, &self.slab, visit)
    }

    /// Live records from `slot` on: (slot, record).
    pub fn iter_from(&self, slot: usize) -> impl Iterator<Item = (usize, Rec<'_>)> {
        self.slab
            .range(slot, usize::MAX)
            .enumerate()
            .filter(|(_, r)| !r.is_free())
            .map(move |(i, r)| {
                (
                    slot + i,
                    Rec {
                        r,
                        long: &self.long,
                    },
                )
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = Rec<'_>> {
        self.iter_from(0).map(|(_, r)| r)
    }

    /// Bytes held by this structure outside the SKU itself.
    pub fn mem_usage(&self) -> usize {
        use std::mem::size_of;
        self.slab.capacity() * size_of::<Record>()
            + self.pos.capacity() * 4
            + self.free.capacity() * 4
            + (self.open.items.capacity() + self.done.items.capacity()) * 4
            + self.index.allocation_size()
            + self.next.as_ref().map_or(0, NextIndex::allocation_size)
            + self.long.capacity() * size_of::<Box<[u8]>>()
            + self.long_free.capacity() * 4
            + self.heap_bytes
            + self.deadlines.mem_usage()
            + self.tags.mem_usage()
    }

    /// Checks the internal structure; returns the first problem found.
    pub fn check(&self) -> Result<(), String> {
        let live = self.iter().count();
        if live != self.live {
            return Err(format!("{live} live records, counted as {}", self.live));
        }
        if self.index.len() != live {
            return Err(format!(
                "index holds {} slots for {live} records",
                self.index.len()
            ));
        }
        self.index.check(|s| self.slot_hash(s))?;
        if let Some(next) = &self.next {
            next.check(self)?;
        }
        for (slot, r) in self.iter_from(0) {
            if self.find(r.txid_bytes()) != Some(slot as u32) {
                return Err(format!("index does not find record in slot {slot}"));
            }
            let heap = if r.state() == State::Reserved {
                &self.open
            } else {
                &self.done
            };
            let p = self.pos[slot] as usize;
            if heap.items.get(p) != Some(&(slot as u32)) {
                return Err(format!("record in slot {slot} is missing from its heap"));
            }
        }
        for (name, heap) in [("open", &self.open), ("done", &self.done)] {
            for i in 1..heap.items.len() {
                if heap.key(i, &self.slab) < heap.key((i - 1) / 2, &self.slab) {
                    return Err(format!("{name} heap out of order at {i}"));
                }
            }
            if !heap.items.is_empty() && heap.top != heap.key(0, &self.slab) {
                return Err(format!("{name} heap's top is not its smallest key"));
            }
            if (0..heap.items.len()).any(|i| heap.key(i, &self.slab) > heap.max) {
                return Err(format!("{name} heap has a key above its bound"));
            }
        }
        self.deadlines.check(
            self.iter()
                .filter(|r| r.state() == State::Reserved)
                .map(|r| (r.time(), r.qty() as i64)),
        )?;
        let open = self.iter().filter(|r| r.state() == State::Reserved).count();
        if open != self.open.items.len() || live - open != self.done.items.len() {
            return Err("heap sizes do not match record states".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

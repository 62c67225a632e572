//! Per-transaction records of one SKU, laid out for memory:
//! a slab of 32-byte records (txids up to 16 bytes inline, longer ones in a
//! side table), a hash index of u32 slots by txid (`index.rs`), and two
//! indexed min-heaps of slots ordered by each record's time: `open` (RESERVED
//! records by deadline) and `done` (finished records by the time their
//! retention is counted from). Each slot's heap position lives in `pos`, so a
//! record can leave or be re-keyed in either heap in O(log n).

use super::chunked::Chunked;
use super::index::{self, Index};
use super::txid::TxId;

/// The life of one transaction on one SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Reserved,
    Confirmed,
    Cancelled,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Reserved => "RESERVED",
            State::Confirmed => "CONFIRMED",
            State::Cancelled => "CANCELLED",
            State::Expired => "EXPIRED",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            State::Reserved => 0,
            State::Confirmed => 1,
            State::Cancelled => 2,
            State::Expired => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<State> {
        Some(match code {
            0 => State::Reserved,
            1 => State::Confirmed,
            2 => State::Cancelled,
            3 => State::Expired,
            _ => return None,
        })
    }

    pub fn parse(word: &[u8]) -> Option<State> {
        [
            State::Reserved,
            State::Confirmed,
            State::Cancelled,
            State::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str().as_bytes().eq_ignore_ascii_case(word))
    }
}

const FREE: u8 = 7;
const INLINE: usize = 16;
const QTY_BITS: u32 = 53;
const QTY_MASK: u64 = (1 << QTY_BITS) - 1;
const STATE_SHIFT: u32 = 53;
const LEN_SHIFT: u32 = 56;

/// One record in 32 bytes: the txid (inline up to 16 bytes, else the index of
/// its bytes in the side table), one word packing qty (53 bits), state
/// (3 bits) and txid length (8 bits), and a time (the deadline while
/// RESERVED; kept as the retention reference afterwards).
#[derive(Clone)]
pub(crate) struct Record {
    id: [u8; INLINE],
    packed: u64,
    time: u64,
}

impl Record {
    fn free() -> Record {
        Record {
            id: [0; INLINE],
            packed: u64::from(FREE) << STATE_SHIFT,
            time: 0,
        }
    }

    fn state_code(&self) -> u8 {
        ((self.packed >> STATE_SHIFT) & 0x7) as u8
    }

    fn is_free(&self) -> bool {
        self.state_code() == FREE
    }

    fn state(&self) -> State {
        State::from_code(self.state_code()).unwrap_or(State::Cancelled)
    }

    fn qty(&self) -> u64 {
        self.packed & QTY_MASK
    }

    fn len(&self) -> usize {
        (self.packed >> LEN_SHIFT) as usize
    }

    fn set_state(&mut self, state: State) {
        self.packed =
            (self.packed & !(0x7 << STATE_SHIFT)) | (u64::from(state.code()) << STATE_SHIFT);
    }

    fn long_index(&self) -> Option<usize> {
        (self.len() > INLINE)
            .then(|| u32::from_le_bytes([self.id[0], self.id[1], self.id[2], self.id[3]]) as usize)
    }
}

/// A record's txid bytes, resolving long ones through the side table.
fn id_bytes<'a>(r: &'a Record, long: &'a [Box<[u8]>]) -> &'a [u8] {
    match r.long_index() {
        None => &r.id[..r.len().min(INLINE)],
        Some(i) => long.get(i).map_or(&[][..], |b| &b[..]),
    }
}

/// True when `slot` holds a record of `txid`.
fn holds(slab: &Chunked<Record>, long: &[Box<[u8]>], slot: u32, txid: &[u8]) -> bool {
    slab.get(slot as usize)
        .is_some_and(|r| id_bytes(r, long) == txid)
}

/// (hash of the txid, slot) of the live records in slots `from..to`, in slab
/// order: what an index is built from.
fn live_hashes<'a>(
    slab: &'a Chunked<Record>,
    long: &'a [Box<[u8]>],
    hasher: &'a ahash::RandomState,
    from: usize,
    to: usize,
) -> impl Iterator<Item = (u64, u32)> + 'a {
    slab.range(from, to)
        .enumerate()
        .filter(|(_, r)| !r.is_free())
        .map(move |(i, r)| (hasher.hash_one(id_bytes(r, long)), (from + i) as u32))
}

/// A live record, readable with its txid.
#[derive(Clone, Copy)]
pub(crate) struct Rec<'a> {
    r: &'a Record,
    long: &'a [Box<[u8]>],
}

impl<'a> Rec<'a> {
    pub fn state(&self) -> State {
        self.r.state()
    }

    pub fn qty(&self) -> u64 {
        self.r.qty()
    }

    pub fn time(&self) -> u64 {
        self.r.time
    }

    pub fn txid_bytes(&self) -> &'a [u8] {
        id_bytes(self.r, self.long)
    }

    pub fn txid(&self) -> TxId {
        TxId::from_valid(self.txid_bytes())
    }
}

/// Which heap a record belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Open,
    Done,
}

fn which(state: State) -> Which {
    if state == State::Reserved {
        Which::Open
    } else {
        Which::Done
    }
}

/// A binary min-heap of slots keyed by `slab[slot].time`.
///
/// It also keeps its smallest key and a bound on its largest, so that the
/// operations every command performs read no older record: "is anything
/// due?" and "when is the next deadline?" read `top`, and a push at or above
/// `max` (every reserve with the usual TTL) is in order without comparing to
/// its parent, whose record is long out of cache.
#[derive(Clone)]
struct SlotHeap {
    items: Chunked<u32>,
    /// The key of `items[0]`; `u64::MAX` while empty.
    top: u64,
    /// At least every key (0 while empty).
    max: u64,
}

impl Default for SlotHeap {
    fn default() -> Self {
        SlotHeap {
            items: Chunked::default(),
            top: u64::MAX,
            max: 0,
        }
    }
}

impl SlotHeap {
    fn key(&self, i: usize, slab: &Chunked<Record>) -> u64 {
        slab[self.items[i] as usize].time
    }

    fn place(&mut self, i: usize, slot: u32, pos: &mut Chunked<u32>) {
        self.items[i] = slot;
        pos[slot as usize] = i as u32;
    }

    fn push(&mut self, slot: u32, slab: &Chunked<Record>, pos: &mut Chunked<u32>) {
        let key = slab[slot as usize].time;
        self.items.push(slot);
        let i = self.items.len() - 1;
        pos[slot as usize] = i as u32;
        self.top = self.top.min(key);
        if key >= self.max {
            // Every key, the parent's included, is <= max <= key.
            self.max = key;
            return;
        }
        self.sift_up(i, slab, pos);
    }

    fn remove(&mut self, slot: u32, slab: &Chunked<Record>, pos: &mut Chunked<u32>) {
        let i = pos[slot as usize] as usize;
        let Some(last) = self.items.pop() else { return };
        if i < self.items.len() {
            self.place(i, last, pos);
            self.rekey(i, slab, pos);
        } else if self.items.is_empty() {
            *self = SlotHeap {
                items: std::mem::take(&mut self.items),
                ..SlotHeap::default()
            };
        }
    }

    /// Restores the order after the key at `i` changed.
    fn rekey(&mut self, i: usize, slab: &Chunked<Record>, pos: &mut Chunked<u32>) {
        let key = self.key(i, slab);
        self.max = self.max.max(key);
        let at = self.sift_up(i, slab, pos);
        self.sift_down(at, slab, pos);
        // Only a change at the top can raise the smallest key; a smaller key
        // anywhere has just risen to the top.
        self.top = if i == 0 {
            self.key(0, slab)
        } else {
            self.top.min(key)
        };
    }

    fn sift_up(&mut self, mut i: usize, slab: &Chunked<Record>, pos: &mut Chunked<u32>) -> usize {
        let slot = self.items[i];
        let key = slab[slot as usize].time;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.key(parent, slab) <= key {
                break;
            }
            let p = self.items[parent];
            self.place(i, p, pos);
            i = parent;
        }
        self.place(i, slot, pos);
        i
    }

    fn sift_down(&mut self, mut i: usize, slab: &Chunked<Record>, pos: &mut Chunked<u32>) {
        let slot = self.items[i];
        let key = slab[slot as usize].time;
        let n = self.items.len();
        loop {
            let left = 2 * i + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.key(right, slab) < self.key(left, slab) {
                right
            } else {
                left
            };
            if self.key(child, slab) >= key {
                break;
            }
            let c = self.items[child];
            self.place(i, c, pos);
            i = child;
        }
        self.place(i, slot, pos);
    }

    /// The smallest key, without reading its record.
    fn top(&self) -> Option<u64> {
        (!self.items.is_empty()).then_some(self.top)
    }

    /// Visits slots whose time is <= `limit` (in heap order, not sorted),
    /// stopping when `visit` returns false. Work is proportional to the
    /// number of slots visited.
    fn visit_upto(&self, limit: u64, slab: &Chunked<Record>, mut visit: impl FnMut(u32) -> bool) {
        // The common case, nothing due, costs one comparison and no allocation.
        if self.top().is_none_or(|top| top > limit) {
            return;
        }
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            if self.key(i, slab) > limit {
                continue;
            }
            if !visit(self.items[i]) {
                return;
            }
            for c in [2 * i + 1, 2 * i + 2] {
                if c < self.items.len() {
                    stack.push(c);
                }
            }
        }
    }
}

/// All records of one SKU.
#[derive(Clone)]
pub(crate) struct Records {
    slab: Chunked<Record>,
    pos: Chunked<u32>,
    free: Vec<u32>,
    index: Index,
    /// The bigger index being filled in steps, while `index` serves.
    next: Option<NextIndex>,
    open: SlotHeap,
    done: SlotHeap,
    hasher: ahash::RandomState,
    /// Bytes of txids longer than 16 bytes, referenced from their records.
    long: Vec<Box<[u8]>>,
    long_free: Vec<u32>,
    heap_bytes: usize,
    /// Bumped whenever slots are renumbered, so scan cursors can restart.
    epoch: u32,
}

impl Default for Records {
    fn default() -> Self {
        Records {
            slab: Chunked::default(),
            pos: Chunked::default(),
            free: Vec::new(),
            index: Index::default(),
            next: None,
            open: SlotHeap::default(),
            done: SlotHeap::default(),
            hasher: ahash::RandomState::new(),
            long: Vec::new(),
            long_free: Vec::new(),
            heap_bytes: 0,
            epoch: 0,
        }
    }
}

/// A bigger index under construction: it holds every live record whose slot
/// is below `cursor`; `Records::grow_step` copies the rest in slab order, and
/// inserts and removals below the cursor are mirrored into it.
#[derive(Clone)]
struct NextIndex {
    index: Index,
    cursor: usize,
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
        self.slab.len() - self.free.len()
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
        self.index.prefetch(self.hash(txid));
    }

    pub fn find(&self, txid: &[u8]) -> Option<u32> {
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

    /// Adds a record, with one probe of the index.
    pub fn insert(&mut self, txid: &TxId, state: State, qty: u64, time: u64) -> Insert {
        if self.len() >= MAX_RECORDS {
            return Insert::Full;
        }
        let bytes = txid.as_bytes();
        let hash = self.hash(bytes);
        self.index_room(1);
        // The slot the record will take, stored in the index by the same probe
        // that looks for the txid.
        let slot = self.free.last().copied().unwrap_or(self.slab.len() as u32);
        let (slab, long) = (&self.slab, &self.long);
        let probe = self
            .index
            .insert(hash, slot, |s| holds(slab, long, s, bytes));
        match probe {
            index::Insert::Added => {}
            index::Insert::Found(_) => return Insert::Exists,
            index::Insert::Full => return Insert::Full,
        }
        match &mut self.next {
            Some(next) if (slot as usize) < next.cursor => {
                let _ = next.index.put(hash, slot);
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
        let mut id = [0u8; INLINE];
        if bytes.len() <= INLINE {
            id[..bytes.len()].copy_from_slice(bytes);
        } else {
            let i = match self.long_free.pop() {
                Some(i) => {
                    self.long[i as usize] = bytes.into();
                    i
                }
                None => {
                    self.long.push(bytes.into());
                    (self.long.len() - 1) as u32
                }
            };
            id[..4].copy_from_slice(&i.to_le_bytes());
            self.heap_bytes += bytes.len();
        }
        let packed = (qty & QTY_MASK)
            | (u64::from(state.code()) << STATE_SHIFT)
            | ((bytes.len() as u64) << LEN_SHIFT);
        let record = Record { id, packed, time };
        match self.free.pop() {
            Some(slot) => self.slab[slot as usize] = record,
            None => {
                self.slab.push(record);
                self.pos.push(0);
            }
        }
        let (heap, slab, pos) = self.heap_parts(which(state));
        heap.push(slot, slab, pos);
        Insert::Added
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

    /// Changes a record's time and restores its heap's order.
    pub fn set_time(&mut self, slot: u32, time: u64) {
        self.slab[slot as usize].time = time;
        let w = which(self.slab[slot as usize].state());
        let i = self.pos[slot as usize] as usize;
        let (heap, slab, pos) = self.heap_parts(w);
        heap.rekey(i, slab, pos);
    }

    /// Deletes a record entirely.
    pub fn remove(&mut self, slot: u32) {
        let w = which(self.slab[slot as usize].state());
        let (heap, slab, pos) = self.heap_parts(w);
        heap.remove(slot, slab, pos);
        let hash = self.slot_hash(slot);
        self.index.remove(hash, slot);
        if let Some(next) = self.next.as_mut().filter(|n| (slot as usize) < n.cursor) {
            next.index.remove(hash, slot);
        }
        let old = std::mem::replace(&mut self.slab[slot as usize], Record::free());
        if let Some(i) = old.long_index() {
            if let Some(b) = self.long.get_mut(i) {
                self.heap_bytes -= b.len();
                *b = Box::default();
                self.long_free.push(i as u32);
            }
        }
        self.free.push(slot);
        if self.len() == 0 {
            *self = Records {
                hasher: self.hasher.clone(),
                epoch: self.epoch.wrapping_add(1),
                ..Records::default()
            };
        }
    }

    /// True when most slots are free, so a rebuild would return memory.
    pub fn sparse(&self) -> bool {
        self.slab.len() > 1024 && self.len() * 4 < self.slab.len()
    }

    /// Renumbers live records densely and releases the spare capacity.
    pub fn compact(&mut self) {
        let old = std::mem::take(self);
        let epoch = old.epoch.wrapping_add(1);
        let mut fresh = Records {
            hasher: old.hasher.clone(),
            epoch,
            ..Records::default()
        };
        fresh.reserve(old.len());
        for r in old.slab.iter().filter(|r| !r.is_free()) {
            let txid = TxId::from_valid(id_bytes(r, &old.long));
            let _ = fresh.insert(&txid, r.state(), r.qty(), r.time);
        }
        *self = fresh;
    }

    pub fn reserve(&mut self, n: usize) {
        self.slab.reserve(n);
        self.pos.reserve(n);
        self.index_room(n);
    }

    /// Rebuilds the index bigger when `additional` entries would not fit,
    /// reading the records in slab order (sequential memory, not random).
    fn index_room(&mut self, additional: usize) {
        if self.index.has_room(additional) {
            return;
        }
        // A background growth that has not finished in time finishes now.
        if self.next.is_some() {
            self.grow_step(usize::MAX);
            if self.index.has_room(additional) {
                return;
            }
        }
        let live = live_hashes(&self.slab, &self.long, &self.hasher, 0, self.slab.len());
        self.index = Index::rebuild(self.len().saturating_add(additional), live);
    }

    /// True while a bigger index is being built in steps.
    pub fn growing(&self) -> bool {
        self.next.is_some()
    }

    /// Copies up to `budget` slab slots into the index being built; swaps it
    /// in once the whole slab is covered. Returns whether work remains.
    pub fn grow_step(&mut self, budget: usize) -> bool {
        let Some(next) = self.next.as_mut() else {
            return false;
        };
        let end = next.cursor.saturating_add(budget).min(self.slab.len());
        let live = live_hashes(&self.slab, &self.long, &self.hasher, next.cursor, end);
        next.index.extend(live);
        next.cursor = end;
        if end < self.slab.len() {
            return true;
        }
        if let Some(done) = self.next.take() {
            self.index = done.index;
        }
        false
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
            + self.next.as_ref().map_or(0, |n| n.index.allocation_size())
            + self.long.capacity() * size_of::<Box<[u8]>>()
            + self.long_free.capacity() * 4
            + self.heap_bytes
    }

    /// Checks the internal structure; returns the first problem found.
    pub fn check(&self) -> Result<(), String> {
        let live = self.iter().count();
        if self.index.len() != live {
            return Err(format!(
                "index holds {} slots for {live} records",
                self.index.len()
            ));
        }
        self.index.check(|s| self.slot_hash(s))?;
        if let Some(next) = &self.next {
            next.index.check(|s| self.slot_hash(s))?;
            let mut count = 0;
            for (hash, slot) in live_hashes(&self.slab, &self.long, &self.hasher, 0, next.cursor) {
                if next.index.find(hash, |s| s == slot).is_none() {
                    return Err(format!("growing index misses the record in slot {slot}"));
                }
                count += 1;
            }
            if next.index.len() != count {
                return Err("growing index holds records past its cursor".into());
            }
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
        let open = self.iter().filter(|r| r.state() == State::Reserved).count();
        if open != self.open.items.len() || live - open != self.done.items.len() {
            return Err("heap sizes do not match record states".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Record>(), 32);
    }

    #[test]
    fn long_txids_live_in_the_side_table() {
        let mut r = Records::default();
        let long = [b'L'; 100];
        assert_eq!(
            r.insert(&TxId::new(&long).unwrap(), State::Reserved, 5, 9),
            Insert::Added
        );
        assert_eq!(
            r.insert(&TxId::new(b"short").unwrap(), State::Reserved, 1, 9),
            Insert::Added
        );
        assert_eq!(
            r.insert(&TxId::new(&long).unwrap(), State::Reserved, 5, 9),
            Insert::Exists
        );
        let slot = r.find(&long).unwrap();
        assert_eq!(r.get(slot).unwrap().txid_bytes(), &long[..]);
        assert_eq!(r.get(slot).unwrap().qty(), 5);
        r.remove(slot);
        assert!(r.find(&long).is_none());
        assert_eq!(
            r.insert(&TxId::new(&[b'M'; 17]).unwrap(), State::Confirmed, 0, 1),
            Insert::Added
        );
        assert_eq!(r.long.len(), 1, "the freed side-table entry is reused");
        r.check().unwrap();
    }

    #[test]
    fn index_survives_growth_removal_and_compaction() {
        let mut r = Records::default();
        let id = |i: usize| {
            // Every seventh txid is long, so the side table takes part.
            let len = if i % 7 == 0 { 40 } else { 16 };
            TxId::new(format!("{i:0len$}").as_bytes()).unwrap()
        };
        for i in 0..20_000 {
            assert_eq!(
                r.insert(&id(i), State::Reserved, 1, i as u64),
                Insert::Added
            );
        }
        for i in (0..20_000).step_by(2) {
            r.remove(r.find(id(i).as_bytes()).unwrap());
        }
        r.check().unwrap();
        for i in 0..20_000 {
            assert_eq!(r.find(id(i).as_bytes()).is_some(), i % 2 == 1, "txid {i}");
        }
        for i in (0..20_000).step_by(4) {
            r.remove(r.find(id(i + 1).as_bytes()).unwrap());
        }
        r.compact();
        r.check().unwrap();
        assert_eq!(r.len(), 5_000);
        for i in (3..20_000).step_by(4) {
            assert_eq!(
                r.get(r.find(id(i).as_bytes()).unwrap()).unwrap().time(),
                i as u64
            );
        }
    }

    /// Big enough that the index grows in the background (>= 4096 buckets),
    /// with removals, slot reuse, small steps and a forced finish mixed in.
    #[test]
    fn index_grows_in_steps_while_records_change() {
        let mut r = Records::default();
        let id = |i: u64| TxId::new(format!("{i:016}").as_bytes()).unwrap();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut live = std::collections::BTreeSet::new();
        let (mut started, mut steps) = (0, 0);
        for i in 0..150_000u64 {
            assert_eq!(r.insert(&id(i), State::Reserved, 1, i), Insert::Added);
            live.insert(i);
            if next() % 8 == 0 {
                // Remove a random earlier record; its slot is reused later.
                let victim = next() % (i + 1);
                if live.remove(&victim) {
                    r.remove(r.find(id(victim).as_bytes()).unwrap());
                }
            }
            if r.growing() {
                started += 1;
                // Sometimes no step at all, so the forced finish is reached.
                if next() % 3 != 0 {
                    r.grow_step((next() % 300) as usize);
                    steps += 1;
                }
            }
            if i % 10_000 == 0 {
                r.check().unwrap();
            }
        }
        assert!(started > 0 && steps > 0, "the background path ran");
        r.check().unwrap();
        while r.grow_step(1_000) {}
        r.check().unwrap();
        assert_eq!(r.len(), live.len());
        for i in 0..150_000u64 {
            assert_eq!(
                r.find(id(i).as_bytes()).is_some(),
                live.contains(&i),
                "txid {i}"
            );
        }
    }

    /// Without housekeeping steps (a replica, or a master too busy), the
    /// growth finishes in one go when the serving index is full.
    #[test]
    fn an_unfinished_growth_completes_when_the_index_fills() {
        let mut r = Records::default();
        let id = |i: u64| TxId::new(format!("{i:016}").as_bytes()).unwrap();
        let mut i = 0u64;
        while !r.growing() {
            r.insert(&id(i), State::Reserved, 1, i);
            i += 1;
        }
        r.grow_step(1_000);
        r.check().unwrap();
        while r.growing() {
            r.insert(&id(i), State::Reserved, 1, i);
            i += 1;
        }
        r.check().unwrap();
        assert!((0..i).all(|k| r.find(id(k).as_bytes()).is_some()));
    }

    #[test]
    fn heaps_follow_state_and_time() {
        let mut r = Records::default();
        for (i, t) in [50u64, 10, 30, 20, 40].iter().enumerate() {
            let added = r.insert(
                &TxId::new(format!("t{i}").as_bytes()).unwrap(),
                State::Reserved,
                1,
                *t,
            );
            assert_eq!(added, Insert::Added);
        }
        assert_eq!(r.first_deadline(), Some(10));
        let s = r.find(b"t1").unwrap();
        r.set_state(s, State::Confirmed);
        assert_eq!(r.first_deadline(), Some(20));
        assert_eq!(r.first_done(), Some(10));
        r.set_time(r.find(b"t0").unwrap(), 5);
        assert_eq!(r.first_deadline(), Some(5));
        let mut due = vec![];
        r.visit_due(25, |s| {
            due.push(r.get(s).unwrap().time());
            true
        });
        due.sort();
        assert_eq!(due, vec![5, 20]);
        r.remove(r.find(b"t3").unwrap());
        assert!(r.find(b"t3").is_none());
        r.check().unwrap();
        r.compact();
        r.check().unwrap();
        assert_eq!(r.len(), 4);
    }

    proptest::proptest! {
        /// The heaps' cached smallest key (and bound on the largest) stay
        /// exact through every kind of change, in any order: `check` compares
        /// them with the heap itself, and the earliest deadline and the due
        /// set with a brute-force scan of the records.
        #[test]
        fn heap_tops_stay_exact(ops in proptest::collection::vec((0u8..5, 0usize..40, 0u64..50), 1..300)) {
            let mut r = Records::default();
            let id = |i: usize| TxId::new(format!("t{i}").as_bytes()).unwrap();
            for (op, i, time) in ops {
                let slot = r.find(id(i).as_bytes());
                match (op, slot) {
                    (0 | 1, None) => {
                        let state = if op == 0 { State::Reserved } else { State::Confirmed };
                        proptest::prop_assert_eq!(r.insert(&id(i), state, 1, time), Insert::Added);
                    }
                    (2, Some(s)) => r.set_time(s, time),
                    (3, Some(s)) => r.remove(s),
                    (4, Some(s)) => r.set_state(s, State::Cancelled),
                    _ => {}
                }
                proptest::prop_assert!(r.check().is_ok(), "{:?}", r.check());
                let min_of = |open: bool| {
                    r.iter()
                        .filter(|x| (x.state() == State::Reserved) == open)
                        .map(|x| x.time())
                        .min()
                };
                proptest::prop_assert_eq!(r.first_deadline(), min_of(true));
                proptest::prop_assert_eq!(r.first_done(), min_of(false));
                let mut due = 0;
                r.visit_due(time, |_| {
                    due += 1;
                    true
                });
                let expected = r
                    .iter()
                    .filter(|x| x.state() == State::Reserved && x.time() <= time)
                    .count();
                proptest::prop_assert_eq!(due, expected);
            }
        }
    }
}

//! The buyers of one SKU: for each buyer id given with `BUYER`, the units
//! its open holds keep (`held`) and the units it bought in the current sale
//! (`bought`), which a per-buyer limit counts. Laid out for memory, since a
//! flash sale can bring a million buyers to one key: 28-byte entries in a
//! chunked slab (ids up to 16 bytes inline, longer ones in a side table)
//! and the txid index's hash table of u32 slots, split in 64 shards so that
//! a growth rebuilds one shard (a 64th of the buyers) in one step.
//!
//! Clearing every buyer's `bought` for a new sale is O(1): each entry notes
//! the sale its `bought` belongs to, and a `bought` of an earlier sale
//! reads as 0.

use super::error::{Error, Result};
use super::records::{prefetch_line, Chunked, Index};
use super::txid::TxId;

/// Longest accepted buyer id, in bytes.
pub const MAX_BUYER_LEN: usize = 64;
/// Most units one buyer may hold plus have bought on one key.
pub const MAX_BUYER_UNITS: i64 = u32::MAX as i64;
const INLINE: usize = 16;
const SHARDS: usize = 64;

/// A validated buyer id: 1 to 64 bytes, binary safe.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuyerId(TxId);

impl BuyerId {
    pub fn new(bytes: &[u8]) -> Result<BuyerId> {
        if bytes.is_empty() || bytes.len() > MAX_BUYER_LEN {
            return Err(Error::invalid(format!(
                "buyer id must be 1 to {MAX_BUYER_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(BuyerId(TxId::from_valid(bytes)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Display for BuyerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Debug for BuyerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BuyerId({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// One buyer: its id (inline, or the index of its bytes in the side table),
/// its counters, the id's length (0: a free slot) and the sale `bought`
/// belongs to.
#[derive(Clone, Copy)]
struct Entry {
    id: [u8; INLINE],
    held: u32,
    bought: u32,
    len: u8,
    sale: u16,
}

impl Entry {
    const FREE: Entry = Entry {
        id: [0; INLINE],
        held: 0,
        bought: 0,
        len: 0,
        sale: 0,
    };

    fn long_index(&self) -> Option<usize> {
        (usize::from(self.len) > INLINE)
            .then(|| u32::from_le_bytes([self.id[0], self.id[1], self.id[2], self.id[3]]) as usize)
    }
}

/// A buyer's counters as readers see them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuyerView {
    pub held: i64,
    pub bought: i64,
}

#[derive(Clone)]
pub(crate) struct Buyers {
    slab: Chunked<Entry>,
    free: Vec<u32>,
    /// Empty until the first buyer; then `SHARDS` indexes.
    shards: Vec<Index>,
    long: Vec<Box<[u8]>>,
    long_free: Vec<u32>,
    long_bytes: usize,
    hasher: ahash::RandomState,
    live: usize,
    sale: u16,
}

impl Default for Buyers {
    fn default() -> Self {
        Buyers {
            slab: Chunked::default(),
            free: Vec::new(),
            shards: Vec::new(),
            long: Vec::new(),
            long_free: Vec::new(),
            long_bytes: 0,
            hasher: ahash::RandomState::new(),
            live: 0,
            sale: 0,
        }
    }
}

impl Buyers {
    pub fn len(&self) -> usize {
        self.live
    }

    fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    fn shard_of(hash: u64) -> usize {
        ((hash >> 40) as usize) & (SHARDS - 1)
    }

    fn id_of<'a>(&'a self, e: &'a Entry) -> &'a [u8] {
        match e.long_index() {
            None => &e.id[..usize::from(e.len).min(INLINE)],
            Some(i) => self.long.get(i).map_or(&[][..], |b| &b[..]),
        }
    }

    fn holds(&self, slot: u32, id: &[u8]) -> bool {
        self.slab
            .get(slot as usize)
            .is_some_and(|e| e.len != 0 && self.id_of(e) == id)
    }

    fn find_hashed(&self, hash: u64, id: &[u8]) -> Option<u32> {
        self.shards
            .get(Self::shard_of(hash))?
            .find(hash, |s| self.holds(s, id))
    }

    /// Starts loading the index line a later lookup of `id` reads.
    pub fn prefetch(&self, id: &[u8]) {
        if self.live == 0 {
            return;
        }
        let h = self.hash(id);
        if let Some(index) = self.shards.get(Self::shard_of(h)) {
            index.prefetch(h);
        }
    }

    pub fn find(&self, id: &[u8]) -> Option<u32> {
        if self.live == 0 {
            return None;
        }
        self.find_hashed(self.hash(id), id)
    }

    fn bought_of(&self, e: &Entry) -> i64 {
        if e.sale == self.sale {
            i64::from(e.bought)
        } else {
            0
        }
    }

    /// A buyer's counters (zero for one never seen).
    pub fn view(&self, id: &[u8]) -> BuyerView {
        self.find(id)
            .map_or(BuyerView::default(), |slot| self.view_slot(slot))
    }

    pub fn view_slot(&self, slot: u32) -> BuyerView {
        self.slab
            .get(slot as usize)
            .map_or(BuyerView::default(), |e| BuyerView {
                held: i64::from(e.held),
                bought: self.bought_of(e),
            })
    }

    pub fn id_at(&self, slot: u32) -> Option<BuyerId> {
        let e = self.slab.get(slot as usize).filter(|e| e.len != 0)?;
        Some(BuyerId(TxId::from_valid(self.id_of(e))))
    }

    /// The slot of `id`, made (with zero counters) if it has none.
    pub fn slot_for(&mut self, id: &BuyerId) -> u32 {
        let bytes = id.as_bytes();
        let hash = self.hash(bytes);
        if let Some(slot) = self.find_hashed(hash, bytes) {
            return slot;
        }
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| Index::default()).collect();
        }
        let shard = Self::shard_of(hash);
        if !self.shards[shard].fits_more(1) {
            self.grow(shard);
        }
        let slot = self.free.pop().unwrap_or(self.slab.len() as u32);
        let mut e = Entry {
            len: bytes.len() as u8,
            sale: self.sale,
            ..Entry::FREE
        };
        if bytes.len() > INLINE {
            self.long_bytes += bytes.len();
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
            e.id[..4].copy_from_slice(&i.to_le_bytes());
        } else {
            e.id[..bytes.len()].copy_from_slice(bytes);
        }
        if (slot as usize) < self.slab.len() {
            self.slab[slot as usize] = e;
        } else {
            self.slab.push(e);
        }
        // Room was made above, and the id is absent.
        let _ = self.shards[shard].insert(hash, slot, |_| false);
        self.live += 1;
        slot
    }

    /// Rebuilds one shard's index at twice its size, from its own entries.
    /// Their ids are hashed again from the slab, where a shard's entries lie
    /// scattered (one line each): each entry is prefetched `AHEAD` entries
    /// before it is read, which more than halved the rebuild's share of a
    /// reserve with a new buyer (docs/benchmarks.md).
    fn grow(&mut self, shard: usize) {
        const AHEAD: usize = 8;
        let old = std::mem::take(&mut self.shards[shard]);
        let slots: Vec<u32> = old.slots().collect();
        let mut items = Vec::with_capacity(slots.len());
        for (i, &s) in slots.iter().enumerate() {
            if let Some(e) = slots
                .get(i + AHEAD)
                .and_then(|&t| self.slab.get(t as usize))
            {
                prefetch_line(e);
            }
            let h = self
                .slab
                .get(s as usize)
                .map_or(0, |e| self.hash(self.id_of(e)));
            items.push((h, s));
        }
        self.shards[shard] = Index::rebuild((old.len() * 2).max(8), items.into_iter());
    }

    /// Adds `delta` to a buyer's held units (the caller keeps it in range).
    pub fn add_held(&mut self, slot: u32, delta: i64) {
        if let Some(e) = self.slab.get_mut(slot as usize) {
            e.held = (i64::from(e.held) + delta).clamp(0, MAX_BUYER_UNITS) as u32;
        }
        // Adding units cannot leave the buyer empty.
        if delta <= 0 {
            self.release_if_empty(slot);
        }
    }

    /// Adds `units` to a buyer's bought units in the current sale.
    pub fn add_bought(&mut self, slot: u32, units: i64) {
        let sale = self.sale;
        if let Some(e) = self.slab.get_mut(slot as usize) {
            let before = if e.sale == sale {
                i64::from(e.bought)
            } else {
                0
            };
            e.bought = (before + units).clamp(0, MAX_BUYER_UNITS) as u32;
            e.sale = sale;
        }
    }

    /// Drops a buyer that holds nothing and bought nothing in this sale.
    fn release_if_empty(&mut self, slot: u32) {
        let Some(&e) = self.slab.get(slot as usize) else {
            return;
        };
        if e.len == 0 || e.held != 0 || self.bought_of(&e) != 0 {
            return;
        }
        let hash = self.hash(self.id_of(&e));
        if let Some(index) = self.shards.get_mut(Self::shard_of(hash)) {
            index.remove(hash, slot);
        }
        if let Some(i) = e.long_index() {
            if let Some(b) = self.long.get_mut(i) {
                self.long_bytes -= b.len();
                *b = Box::default();
                self.long_free.push(i as u32);
            }
        }
        self.slab[slot as usize] = Entry::FREE;
        self.free.push(slot);
        self.live -= 1;
    }

    /// Starts a new sale: every buyer's bought units read as 0 from now on;
    /// held units stay. Entries left empty go when next touched, or all at
    /// once when the sale counter wraps (every 65,536 sales).
    pub fn new_sale(&mut self) {
        self.sale = self.sale.wrapping_add(1);
        if self.sale == 0 {
            for slot in 0..self.slab.len() as u32 {
                if let Some(e) = self.slab.get_mut(slot as usize) {
                    e.bought = 0;
                    e.sale = 0;
                }
                self.release_if_empty(slot);
            }
        }
    }

    /// Sets a buyer's bought units in this sale (loading).
    pub fn set_bought(&mut self, id: &BuyerId, bought: i64) {
        let slot = self.slot_for(id);
        if let Some(e) = self.slab.get_mut(slot as usize) {
            e.bought = bought.clamp(0, MAX_BUYER_UNITS) as u32;
            e.sale = self.sale;
        }
        self.release_if_empty(slot);
    }

    /// Every buyer with held or bought units: (id, held, bought).
    pub fn iter(&self) -> impl Iterator<Item = (BuyerId, BuyerView)> + '_ {
        self.slab
            .iter()
            .filter(|e| e.len != 0)
            .map(|e| {
                (
                    BuyerId(TxId::from_valid(self.id_of(e))),
                    BuyerView {
                        held: i64::from(e.held),
                        bought: self.bought_of(e),
                    },
                )
            })
            .filter(|(_, v)| v.held != 0 || v.bought != 0)
    }

    pub fn mem_usage(&self) -> usize {
        use std::mem::size_of;
        self.slab.capacity() * size_of::<Entry>()
            + self.free.capacity() * 4
            + self.shards.capacity() * size_of::<Index>()
            + self
                .shards
                .iter()
                .map(Index::allocation_size)
                .sum::<usize>()
            + self.long.capacity() * size_of::<Box<[u8]>>()
            + self.long_free.capacity() * 4
            + self.long_bytes
    }

    /// Every live entry is found through its shard, and the shards hold
    /// nothing else.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut live = 0;
        for (slot, e) in self.slab.iter().enumerate() {
            if e.len == 0 {
                continue;
            }
            live += 1;
            if self.find(self.id_of(e)) != Some(slot as u32) {
                return Err(format!("buyer in slot {slot} is not indexed"));
            }
        }
        let indexed: usize = self.shards.iter().map(Index::len).sum();
        if live != self.live || indexed != live {
            return Err(format!(
                "{live} buyers, counted as {}, indexed {indexed}",
                self.live
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> BuyerId {
        BuyerId::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn counts_and_releases() {
        let mut b = Buyers::default();
        let long = "a-buyer-id-longer-than-sixteen-bytes";
        for name in ["alice", long] {
            let s = b.slot_for(&id(name));
            b.add_held(s, 3);
            assert_eq!(b.view(name.as_bytes()), BuyerView { held: 3, bought: 0 });
            b.add_held(s, -2);
            b.add_bought(s, 2);
            assert_eq!(b.view(name.as_bytes()), BuyerView { held: 1, bought: 2 });
        }
        b.check().unwrap();
        assert_eq!(b.len(), 2);
        b.new_sale();
        assert_eq!(b.view(b"alice"), BuyerView { held: 1, bought: 0 });
        let s = b.find(b"alice").unwrap();
        b.add_held(s, -1);
        assert_eq!(b.find(b"alice"), None);
        assert_eq!(b.len(), 1);
        b.check().unwrap();
        assert!(BuyerId::new(b"").is_err());
        assert!(BuyerId::new(&[b'x'; 65]).is_err());
    }

    #[test]
    fn an_entry_given_nothing_goes_and_one_given_units_stays() {
        // A reserve refused after its buyer's entry was made adds 0 units:
        // the entry must go. Adding units never leaves an entry empty.
        let mut b = Buyers::default();
        let s = b.slot_for(&id("refused"));
        b.add_held(s, 0);
        assert_eq!(b.find(b"refused"), None);
        assert_eq!(b.len(), 0);
        let s = b.slot_for(&id("kept"));
        b.add_held(s, 2);
        assert_eq!(b.view(b"kept"), BuyerView { held: 2, bought: 0 });
        b.add_held(s, -2);
        assert_eq!((b.find(b"kept"), b.len()), (None, 0));
        b.check().unwrap();
    }

    #[test]
    fn grows_through_many_buyers() {
        let mut b = Buyers::default();
        for i in 0..20_000u32 {
            let s = b.slot_for(&id(&format!("buyer-{i}")));
            b.add_held(s, 1);
        }
        b.check().unwrap();
        for i in (0..20_000u32).step_by(2) {
            let s = b.find(format!("buyer-{i}").as_bytes()).unwrap();
            b.add_held(s, -1);
        }
        assert_eq!(b.len(), 10_000);
        b.check().unwrap();
        assert_eq!(b.view(b"buyer-1").held, 1);
        assert_eq!(b.view(b"buyer-2").held, 0);
    }

    #[test]
    fn grows_through_ids_inline_and_long() {
        // Growth hashes every id again from the slab, long ones from the
        // side table: each must still be found afterwards.
        let name = |i: u32| {
            if i % 3 == 0 {
                format!("a-buyer-id-longer-than-sixteen-bytes-{i}")
            } else {
                format!("b{i}")
            }
        };
        let mut b = Buyers::default();
        for i in 0..6_000u32 {
            let s = b.slot_for(&id(&name(i)));
            b.add_held(s, i64::from(i % 7) + 1);
        }
        b.check().unwrap();
        for i in 0..6_000u32 {
            assert_eq!(
                b.view(name(i).as_bytes()).held,
                i64::from(i % 7) + 1,
                "{}",
                name(i)
            );
        }
        assert_eq!(b.view(b"b6000").held, 0);
    }

    #[test]
    fn sale_counter_wrap_sweeps() {
        let mut b = Buyers::default();
        let s = b.slot_for(&id("x"));
        b.add_bought(s, 1);
        for _ in 0..=u16::MAX {
            b.new_sale();
        }
        assert_eq!(b.len(), 0);
        b.check().unwrap();
    }
}

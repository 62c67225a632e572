//! A map from txid to a small value, for the few things a key notes beside
//! some of its records (the buyer an open hold counts against, a second
//! quantity). It can hold a million entries on one key, so it is split in
//! 64 hash tables by the txid's hash: a table grows or shrinks by rehashing
//! a 64th of the entries in one step (one table of a million took tens of
//! milliseconds), and a table that empties gives its memory back (a
//! hashbrown table keeps its capacity as entries go).

use super::txid::TxId;
use hashbrown::HashTable;

const SHARDS: usize = 64;
/// Tables smaller than this are not shrunk (their memory is small).
const MIN_SHRINK: usize = 8;

#[derive(Clone)]
pub(crate) struct TxMap<V> {
    /// Empty until the first insert; then `SHARDS` tables.
    shards: Vec<HashTable<(TxId, V)>>,
    hasher: ahash::RandomState,
    len: usize,
}

impl<V> Default for TxMap<V> {
    fn default() -> Self {
        TxMap {
            shards: Vec::new(),
            hasher: ahash::RandomState::new(),
            len: 0,
        }
    }
}

impl<V> TxMap<V> {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn hash(&self, txid: &[u8]) -> u64 {
        self.hasher.hash_one(txid)
    }

    fn shard(hash: u64) -> usize {
        (hash >> 58) as usize & (SHARDS - 1)
    }

    pub fn get(&self, txid: &[u8]) -> Option<&V> {
        if self.len == 0 {
            return None;
        }
        let h = self.hash(txid);
        self.shards
            .get(Self::shard(h))?
            .find(h, |(k, _)| k.as_bytes() == txid)
            .map(|(_, v)| v)
    }

    /// Sets `txid`'s value (replacing one it had).
    pub fn insert(&mut self, txid: TxId, value: V) {
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| HashTable::new()).collect();
        }
        let h = self.hash(txid.as_bytes());
        let hasher = &self.hasher;
        let table = &mut self.shards[Self::shard(h)];
        match table.find_mut(h, |(k, _)| k == &txid) {
            Some(slot) => slot.1 = value,
            None => {
                table.insert_unique(h, (txid, value), |(k, _)| hasher.hash_one(k.as_bytes()));
                self.len += 1;
            }
        }
    }

    pub fn remove(&mut self, txid: &[u8]) -> Option<V> {
        if self.len == 0 {
            return None;
        }
        let h = self.hash(txid);
        let hasher = &self.hasher;
        let table = self.shards.get_mut(Self::shard(h))?;
        let ((_, v), _) = table
            .find_entry(h, |(k, _)| k.as_bytes() == txid)
            .ok()?
            .remove();
        self.len -= 1;
        // A table down to an eighth of its room halves (or more): the
        // rehash moves at most that eighth.
        if table.capacity() >= MIN_SHRINK && table.len() * 8 < table.capacity() {
            table.shrink_to(table.len() * 2, |(k, _)| hasher.hash_one(k.as_bytes()));
        }
        if self.len == 0 {
            self.shards = Vec::new();
        }
        Some(v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TxId, &V)> + '_ {
        self.shards
            .iter()
            .flat_map(|t| t.iter().map(|(k, v)| (k, v)))
    }

    /// Bytes allocated, the txids' own heap bytes included.
    pub fn mem_usage(&self) -> usize {
        self.shards.capacity() * std::mem::size_of::<HashTable<(TxId, V)>>()
            + self
                .shards
                .iter()
                .map(|t| t.allocation_size())
                .sum::<usize>()
            + self.iter().map(|(k, _)| k.heap_bytes()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map_and_gives_memory_back() {
        let mut m: TxMap<u32> = TxMap::default();
        let id = |i: u32| TxId::new(format!("tx-{i}").as_bytes()).unwrap();
        for i in 0..50_000 {
            m.insert(id(i), i);
        }
        m.insert(id(7), 70);
        assert_eq!(
            (m.len(), m.get(b"tx-7"), m.get(b"tx-9")),
            (50_000, Some(&70), Some(&9))
        );
        let full = m.mem_usage();
        for i in 0..49_990 {
            assert!(m.remove(id(i).as_bytes()).is_some());
        }
        assert_eq!(m.len(), 10);
        assert!(m.mem_usage() * 20 < full, "{} vs {full}", m.mem_usage());
        assert_eq!(m.get(b"tx-49995"), Some(&49_995));
        for i in 49_990..50_000 {
            m.remove(id(i).as_bytes());
        }
        assert!(m.is_empty() && m.mem_usage() == 0);
        assert_eq!(m.remove(b"tx-1"), None);
    }
}

//! A hash map split in 64 tables by the key's hash, for maps that may hold
//! a hundred thousand or a million entries on one key (a second quantity
//! beside some records, a waiting room's places): a table grows or shrinks
//! by rehashing a 64th of the entries in one step (one table of a million
//! took tens of milliseconds, a whole event-loop turn), and a table that
//! empties gives its memory back (a hashbrown table keeps its capacity as
//! entries go).

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use std::borrow::Borrow;
use std::hash::Hash;

const SHARDS: usize = 64;
/// Tables smaller than this are not shrunk (their memory is small).
const MIN_SHRINK: usize = 8;

#[derive(Clone)]
pub struct ShardedMap<K, V> {
    /// Empty until the first insert; then `SHARDS` tables.
    shards: Vec<HashTable<(K, V)>>,
    hasher: ahash::RandomState,
    len: usize,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            shards: Vec::new(),
            hasher: ahash::RandomState::new(),
            len: 0,
        }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for ShardedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(hash: u64) -> usize {
        (hash >> 58) as usize & (SHARDS - 1)
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.len == 0 {
            return None;
        }
        let h = self.hash(key);
        self.shards
            .get(Self::shard(h))?
            .find(h, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.len == 0 {
            return None;
        }
        let h = self.hash(key);
        self.shards
            .get_mut(Self::shard(h))?
            .find_mut(h, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// `key`'s entry in its shard (the shards made on first use), and the
    /// count an insert through it must raise.
    fn slot(&mut self, key: &K) -> (Entry<'_, (K, V)>, &mut usize) {
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| HashTable::new()).collect();
        }
        let h = self.hash(key);
        let hasher = &self.hasher;
        let table = &mut self.shards[Self::shard(h)];
        let entry = table.entry(h, |(k, _)| k == key, |(k, _)| hasher.hash_one(k));
        (entry, &mut self.len)
    }

    /// Sets `key`'s value (replacing one it had).
    pub fn insert(&mut self, key: K, value: V) {
        match self.slot(&key) {
            (Entry::Occupied(mut slot), _) => slot.get_mut().1 = value,
            (Entry::Vacant(slot), len) => {
                slot.insert((key, value));
                *len += 1;
            }
        }
    }

    /// `key`'s value, made by `new` when it has none.
    pub fn entry(&mut self, key: K, new: impl FnOnce() -> V) -> &mut V {
        let (entry, len) = self.slot(&key);
        let (_, v) = entry
            .or_insert_with(|| {
                *len += 1;
                (key, new())
            })
            .into_mut();
        v
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.len == 0 {
            return None;
        }
        let h = self.hash(key);
        let hasher = &self.hasher;
        let table = self.shards.get_mut(Self::shard(h))?;
        let ((_, v), _) = table
            .find_entry(h, |(k, _)| k.borrow() == key)
            .ok()?
            .remove();
        self.len -= 1;
        // A table down to an eighth of its room halves (or more): the
        // rehash moves at most that eighth.
        if table.capacity() >= MIN_SHRINK && table.len() * 8 < table.capacity() {
            table.shrink_to(table.len() * 2, |(k, _)| hasher.hash_one(k));
        }
        if self.len == 0 {
            self.shards = Vec::new();
        }
        Some(v)
    }

    /// Bytes allocated for the tables (not what the entries point to).
    pub fn table_bytes(&self) -> usize {
        self.shards.capacity() * std::mem::size_of::<HashTable<(K, V)>>()
            + self
                .shards
                .iter()
                .map(|t| t.allocation_size())
                .sum::<usize>()
    }
}

impl<K, V> ShardedMap<K, V> {
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.shards
            .iter()
            .flat_map(|t| t.iter().map(|(k, v)| (k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::TxId;

    #[test]
    fn behaves_like_a_map_and_gives_memory_back() {
        let mut m: ShardedMap<TxId, u32> = ShardedMap::default();
        let id = |i: u32| TxId::new(format!("tx-{i}").as_bytes()).unwrap();
        for i in 0..50_000 {
            m.insert(id(i), i);
        }
        m.insert(id(7), 70);
        assert_eq!(
            (
                m.len(),
                m.get(b"tx-7".as_slice()),
                m.get(b"tx-9".as_slice())
            ),
            (50_000, Some(&70), Some(&9))
        );
        let full = m.table_bytes();
        for i in 0..49_990 {
            assert!(m.remove(id(i).as_bytes()).is_some());
        }
        assert_eq!(m.len(), 10);
        assert!(m.table_bytes() * 20 < full, "{} vs {full}", m.table_bytes());
        assert_eq!(m.get(b"tx-49995".as_slice()), Some(&49_995));
        for i in 49_990..50_000 {
            m.remove(id(i).as_bytes());
        }
        assert!(m.is_empty() && m.table_bytes() == 0);
        assert_eq!(m.remove(b"tx-1".as_slice()), None);
        assert_eq!(*m.entry(id(3), || 30), 30);
        *m.entry(id(3), || 0) += 1;
        assert_eq!((m.get(b"tx-3".as_slice()), m.len()), (Some(&31), 1));
        assert!(m.get_mut(b"tx-4".as_slice()).is_none());
    }
}

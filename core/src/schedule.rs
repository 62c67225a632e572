//! When each key next has housekeeping work: the registry the timer pops
//! due keys from. Pure: keys are bytes, times are numbers, nothing here
//! talks to a server.
//!
//! A key's work is due at the earliest of: its first open deadline (expiry),
//! its first finished record's time plus the retention (purge), or the time
//! it was marked due now, when it has background work (`maintain`) or
//! arrived by a path that did not schedule it (RDB load, RENAME, ...). The
//! three are kept in orders apart, so a change of the retention needs no
//! rescheduling (it applies to every key alike), and keys marked now take
//! turns with due deadlines instead of going first. Each database has its
//! own schedule, so SWAPDB swaps two of them and FLUSHDB drops one, whatever
//! their size.

use std::collections::{BTreeSet, HashMap};

/// A key's pending work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Earliest deadline of an open record.
    pub deadline: Option<u64>,
    /// Earliest time a finished record's retention counts from.
    pub done: Option<u64>,
    /// Work due now (background steps, or a look at a key that arrived by
    /// a path that did not schedule it): the time it was marked.
    pub now: Option<u64>,
}

impl Work {
    /// Look at the key as soon as possible (marked at `t`).
    pub fn now(t: u64) -> Work {
        Work {
            now: Some(t),
            ..Work::default()
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Work::default()
    }
}

struct Slot {
    key: Box<[u8]>,
    work: Work,
}

/// One database's keys and their work.
#[derive(Default)]
struct Schedule {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Ids by key bytes (the key is stored once, in its slot).
    ids: hashbrown::HashTable<u32>,
    hasher: ahash::RandomState,
    by_deadline: BTreeSet<(u64, u32)>,
    by_done: BTreeSet<(u64, u32)>,
    by_now: BTreeSet<(u64, u32)>,
}

impl Schedule {
    fn slot(&self, id: u32) -> Option<&Slot> {
        self.slots.get(id as usize)?.as_ref()
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.ids
            .find(hash, |&id| self.slot(id).is_some_and(|s| &*s.key == key))
            .copied()
    }

    /// Takes `id` out of the orders its current work puts it in.
    fn unorder(&mut self, id: u32) {
        let Some(work) = self.slot(id).map(|s| s.work) else {
            return;
        };
        if let Some(t) = work.deadline {
            self.by_deadline.remove(&(t, id));
        }
        if let Some(t) = work.done {
            self.by_done.remove(&(t, id));
        }
        if let Some(t) = work.now {
            self.by_now.remove(&(t, id));
        }
    }

    fn order(&mut self, id: u32, work: Work) {
        if let Some(t) = work.deadline {
            self.by_deadline.insert((t, id));
        }
        if let Some(t) = work.done {
            self.by_done.insert((t, id));
        }
        if let Some(t) = work.now {
            self.by_now.insert((t, id));
        }
    }

    fn set(&mut self, key: &[u8], work: Work) {
        let id = match self.find(key) {
            Some(id) => {
                self.unorder(id);
                id
            }
            None if work.is_none() => return,
            None => {
                let slot = Slot {
                    key: key.into(),
                    work,
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.slots[id as usize] = Some(slot);
                        id
                    }
                    None => {
                        self.slots.push(Some(slot));
                        (self.slots.len() - 1) as u32
                    }
                };
                let hasher = &self.hasher;
                let slots = &self.slots;
                self.ids.insert_unique(hasher.hash_one(key), id, |&i| {
                    slots[i as usize]
                        .as_ref()
                        .map_or(0, |s| hasher.hash_one(&*s.key))
                });
                id
            }
        };
        if work.is_none() {
            self.remove_id(id);
            return;
        }
        if let Some(slot) = self.slots[id as usize].as_mut() {
            slot.work = work;
        }
        self.order(id, work);
    }

    fn remove_id(&mut self, id: u32) {
        self.unorder(id);
        let Some(slot) = self.slots.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        let hash = self.hasher.hash_one(&*slot.key);
        if let Ok(entry) = self.ids.find_entry(hash, |&i| i == id) {
            entry.remove();
        }
        self.free.push(id);
    }

    /// The earliest work due at `now` with this retention (`None`: only
    /// keys marked now count): (when, id).
    fn due(&self, now: u64, retention: Option<u64>) -> Option<(u64, u32)> {
        let marked = self.by_now.first().copied();
        let deadline = retention.and(self.by_deadline.first().copied());
        let done = retention.and_then(|retention| {
            let &(t, id) = self.by_done.first()?;
            Some((t.saturating_add(retention), id))
        });
        [marked, deadline, done]
            .into_iter()
            .flatten()
            .filter(|&(t, _)| t <= now)
            .min()
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Every database's schedule.
#[derive(Default)]
pub struct Registry {
    dbs: HashMap<i32, Schedule>,
}

impl Registry {
    /// Records `key`'s pending work (none: forgets the key).
    pub fn set(&mut self, db: i32, key: &[u8], work: Work) {
        if work.is_none() && !self.dbs.contains_key(&db) {
            return;
        }
        let schedule = self.dbs.entry(db).or_default();
        schedule.set(key, work);
        if schedule.len() == 0 {
            self.dbs.remove(&db);
        }
    }

    /// Forgets `key` (deleted, or moved away).
    pub fn remove(&mut self, db: i32, key: &[u8]) {
        self.set(db, key, Work::default());
    }

    /// Takes a key whose work is due at `now` (retention counted from each
    /// finished record's time) out of the registry: the caller visits it
    /// and sets its next work.
    pub fn pop_due(&mut self, now: u64, retention: u64) -> Option<(i32, Box<[u8]>)> {
        self.pop(now, Some(retention))
    }

    /// Like `pop_due`, for keys marked now only (a replica, which does
    /// background work but never expires or purges by itself).
    pub fn pop_marked(&mut self, now: u64) -> Option<(i32, Box<[u8]>)> {
        self.pop(now, None)
    }

    fn pop(&mut self, now: u64, retention: Option<u64>) -> Option<(i32, Box<[u8]>)> {
        let (_, db, id) = self
            .dbs
            .iter()
            .filter_map(|(&db, s)| s.due(now, retention).map(|(t, id)| (t, db, id)))
            .min()?;
        let schedule = self.dbs.get_mut(&db)?;
        let key = schedule.slot(id)?.key.clone();
        schedule.remove_id(id);
        if schedule.len() == 0 {
            self.dbs.remove(&db);
        }
        Some((db, key))
    }

    /// SWAPDB: the two databases exchange their keys.
    pub fn swap(&mut self, a: i32, b: i32) {
        let (sa, sb) = (self.dbs.remove(&a), self.dbs.remove(&b));
        if let Some(s) = sa {
            self.dbs.insert(b, s);
        }
        if let Some(s) = sb {
            self.dbs.insert(a, s);
        }
    }

    /// FLUSHDB (`Some(db)`) or FLUSHALL (`None`): forgets those keys. The
    /// forgotten part is returned, for the caller to drop where it likes
    /// (a big one on another thread).
    pub fn flush(&mut self, db: Option<i32>) -> Flushed {
        match db {
            Some(db) => Flushed(self.dbs.remove(&db).into_iter().collect()),
            None => Flushed(std::mem::take(&mut self.dbs).into_values().collect()),
        }
    }

    /// The earliest open deadline of any key, all databases: once it is in
    /// the past, how far expiry is behind.
    pub fn earliest_deadline(&self) -> Option<u64> {
        self.dbs
            .values()
            .filter_map(|s| s.by_deadline.first().map(|&(t, _)| t))
            .min()
    }

    /// Keys holding an open deadline at or before `now` (reservations due
    /// but not yet expired), all databases, counted up to `cap` so the
    /// count's cost is bounded when expiry is far behind.
    pub fn due_keys(&self, now: u64, cap: usize) -> usize {
        let mut n = 0;
        for s in self.dbs.values() {
            n += s
                .by_deadline
                .range(..=(now, u32::MAX))
                .take(cap - n)
                .count();
            if n >= cap {
                break;
            }
        }
        n
    }

    /// Up to `cap` keys holding an open deadline at or before `now`, as
    /// (database, key), for a caller to look into.
    pub fn due_list(&self, now: u64, cap: usize) -> Vec<(i32, Box<[u8]>)> {
        let mut out = Vec::new();
        for (&db, s) in &self.dbs {
            for &(_, id) in s
                .by_deadline
                .range(..=(now, u32::MAX))
                .take(cap - out.len())
            {
                if let Some(slot) = s.slot(id) {
                    out.push((db, slot.key.clone()));
                }
            }
            if out.len() >= cap {
                break;
            }
        }
        out
    }

    /// Keys registered, all databases.
    pub fn len(&self) -> usize {
        self.dbs.values().map(Schedule::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }
}

/// Schedules taken out by `flush`, to be dropped.
pub struct Flushed(Vec<Schedule>);

impl Flushed {
    /// Keys it holds.
    pub fn len(&self) -> usize {
        self.0.iter().map(Schedule::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(deadline: Option<u64>, done: Option<u64>) -> Work {
        Work {
            deadline,
            done,
            now: None,
        }
    }

    fn drain(r: &mut Registry, now: u64, retention: u64) -> Vec<(i32, Vec<u8>)> {
        std::iter::from_fn(|| r.pop_due(now, retention))
            .map(|(db, k)| (db, k.to_vec()))
            .collect()
    }

    #[test]
    fn keys_come_due_by_deadline_or_retention_and_now_first() {
        let mut r = Registry::default();
        r.set(0, b"a", at(Some(100), None));
        r.set(0, b"b", at(None, Some(10)));
        r.set(1, b"c", at(Some(50), Some(5)));
        r.set(0, b"d", Work::now(0));
        assert_eq!(r.len(), 4);
        assert_eq!(drain(&mut r, 0, 1000), vec![(0, b"d".to_vec())]);
        // With retention 100: c's purge is due at 105, b's at 110.
        assert_eq!(drain(&mut r, 60, 100), vec![(1, b"c".to_vec())]);
        assert_eq!(drain(&mut r, 100, 100), vec![(0, b"a".to_vec())]);
        // A lower retention brings b's purge forward with no rescheduling.
        assert_eq!(drain(&mut r, 100, 50), vec![(0, b"b".to_vec())]);
        assert!(r.is_empty());
        // Marked now at 170, a key takes its turn after a deadline of 160.
        r.set(2, b"e", Work::now(170));
        r.set(2, b"f", at(Some(160), None));
        assert_eq!(
            drain(&mut r, 180, 0),
            vec![(2, b"f".to_vec()), (2, b"e".to_vec())]
        );
    }

    #[test]
    fn setting_again_moves_a_key_and_no_work_forgets_it() {
        let mut r = Registry::default();
        r.set(0, b"k", at(Some(10), None));
        r.set(0, b"k", at(Some(30), None));
        assert_eq!(r.len(), 1);
        assert!(drain(&mut r, 20, 0).is_empty());
        r.set(0, b"k", Work::default());
        assert!(r.is_empty());
        r.set(0, b"k", Work::now(1));
        r.remove(0, b"k");
        assert!(r.is_empty() && drain(&mut r, u64::MAX, 0).is_empty());
        // Only keys marked now come out for a replica.
        r.set(0, b"due", at(Some(1), Some(1)));
        r.set(0, b"marked", Work::now(5));
        assert_eq!(r.pop_marked(4), None);
        assert_eq!(
            r.pop_marked(9).map(|(_, k)| k.to_vec()),
            Some(b"marked".to_vec())
        );
        assert_eq!(r.pop_marked(u64::MAX), None);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn swap_and_flush_move_whole_databases() {
        let mut r = Registry::default();
        for i in 0..100u32 {
            r.set(
                (i % 3) as i32,
                &i.to_be_bytes(),
                at(Some(u64::from(i)), None),
            );
        }
        r.swap(0, 5);
        assert!(drain(&mut r, 0, 0).iter().all(|(db, _)| *db == 5));
        let flushed = r.flush(Some(1));
        assert_eq!(flushed.len(), 33);
        assert_eq!(r.len(), 100 - 33 - 1);
        assert!(drain(&mut r, 1000, 0).iter().all(|(db, _)| *db != 1));
        r.set(2, b"x", Work::now(3));
        let _ = r.flush(None);
        assert!(r.is_empty());
    }

    /// Random changes against a plain map: what pops, and when, agrees.
    #[test]
    fn agrees_with_a_map() {
        let mut r = Registry::default();
        let mut model: HashMap<(i32, Vec<u8>), Work> = HashMap::new();
        let mut rng = crate::TestRng::new();
        let mut next = |n: u64| rng.below(n);
        for step in 0..20_000 {
            let db = next(3) as i32;
            let key = format!("k{}", next(200)).into_bytes();
            match next(5) {
                0 | 1 => {
                    let w = at(
                        (next(2) == 0).then(|| next(1000)),
                        (next(2) == 0).then(|| next(1000)),
                    );
                    r.set(db, &key, w);
                    if w.is_none() {
                        model.remove(&(db, key));
                    } else {
                        model.insert((db, key), w);
                    }
                }
                2 => {
                    r.remove(db, &key);
                    model.remove(&(db, key));
                }
                3 => {
                    let w = Work::now(next(1000));
                    r.set(db, &key, w);
                    model.insert((db, key), w);
                }
                _ => {
                    let (now, retention) = (next(1200), next(300));
                    let when = |w: &Work| {
                        [w.now, w.deadline, w.done.map(|t| t + retention)]
                            .into_iter()
                            .flatten()
                            .filter(|&t| t <= now)
                            .min()
                    };
                    let earliest = model.values().filter_map(when).min();
                    match r.pop_due(now, retention) {
                        Some((db, k)) => {
                            let w = model.remove(&(db, k.to_vec())).expect("a known key");
                            assert_eq!(when(&w), earliest, "step {step}: {w:?} at {now}");
                        }
                        None => assert_eq!(earliest, None, "step {step}"),
                    }
                }
            }
            assert_eq!(r.len(), model.len(), "step {step}");
        }
    }

    #[test]
    fn due_keys_count_deadlines_at_or_before_now_up_to_the_cap() {
        let mut r = Registry::default();
        assert_eq!(r.due_keys(100, 10), 0);
        r.set(0, b"a", at(Some(50), None));
        r.set(0, b"b", at(Some(100), None));
        r.set(0, b"c", at(Some(101), None));
        r.set(2, b"d", at(Some(10), None));
        r.set(2, b"e", at(None, Some(1)));
        r.set(1, b"f", Work::now(5));
        assert_eq!(r.due_keys(9, 10), 0);
        assert_eq!(r.due_keys(100, 10), 3);
        assert_eq!(r.due_keys(1000, 10), 4);
        assert_eq!(r.due_keys(1000, 2), 2);
        r.set(0, b"a", at(Some(500), None));
        assert_eq!(r.due_keys(100, 10), 2);
        let mut listed = r.due_list(100, 10);
        listed.sort();
        assert_eq!(listed, [(0, b"b"[..].into()), (2, b"d"[..].into())]);
        assert_eq!(r.due_list(100, 1).len(), 1);
    }

    #[test]
    fn the_earliest_deadline_spans_every_database() {
        let mut r = Registry::default();
        assert_eq!(r.earliest_deadline(), None);
        r.set(0, b"a", at(Some(50), None));
        r.set(3, b"b", at(Some(20), Some(5)));
        r.set(0, b"c", at(None, Some(1)));
        assert_eq!(r.earliest_deadline(), Some(20));
        r.remove(3, b"b");
        assert_eq!(r.earliest_deadline(), Some(50));
        r.set(0, b"a", at(Some(70), None));
        assert_eq!(r.earliest_deadline(), Some(70));
    }
}

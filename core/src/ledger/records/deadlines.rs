//! What is due at a given time, without visiting what is due.
//!
//! Every reply carries `available`, which leaves out the units of RESERVED
//! records past their deadline that housekeeping has not expired yet. Found
//! by visiting those records, that cost grew with how far housekeeping was
//! behind (a million reservations sharing one deadline, a replica whose
//! master is down), on every command and read of the key. Here open records
//! are summed per deadline (one bucket per millisecond that some open
//! record ends at), and a running sum covers every bucket up to the last
//! time asked: asking at a later time adds only the buckets in between, so
//! over time each bucket is added once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Open records ending at one millisecond.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    count: u64,
    units: i64,
}

/// Open records summed by deadline, with the running sum of those due at
/// `upto`. The running sum is a cache of the buckets (moved by readers, so
/// kept in atomics: reads take `&self`); it is never persisted.
#[derive(Default)]
pub(crate) struct Deadlines {
    /// The latest deadline's bucket, kept out of the tree: reservations
    /// with one TTL end in order, many in the same millisecond, so nearly
    /// every reserve lands here without a search.
    latest: Option<(u64, Bucket)>,
    /// Every earlier deadline's bucket.
    buckets: BTreeMap<u64, Bucket>,
    upto: AtomicU64,
    /// No bucket ends after `upto` and before `next`: until the clock
    /// reaches it, asking at a later time changes nothing, and costs no
    /// search of the tree.
    next: AtomicU64,
    due_count: AtomicU64,
    due_units: AtomicI64,
}

impl Clone for Deadlines {
    fn clone(&self) -> Self {
        Deadlines {
            latest: self.latest,
            buckets: self.buckets.clone(),
            upto: AtomicU64::new(self.upto.load(Relaxed)),
            next: AtomicU64::new(self.next.load(Relaxed)),
            due_count: AtomicU64::new(self.due_count.load(Relaxed)),
            due_units: AtomicI64::new(self.due_units.load(Relaxed)),
        }
    }
}

impl Deadlines {
    /// Bytes a bucket takes, B-tree nodes included (leaves hold up to 11 of
    /// 24-byte entries; about two thirds full on average).
    const BUCKET_BYTES: usize = 40;

    fn count_due(&self, time: u64, count: i64, units: i64) {
        if time <= self.upto.load(Relaxed) {
            let c = self.due_count.load(Relaxed) as i64 + count;
            self.due_count.store(c.max(0) as u64, Relaxed);
            self.due_units
                .store(self.due_units.load(Relaxed) + units, Relaxed);
        }
    }

    /// An open record of `units` ending at `time`.
    pub fn add(&mut self, time: u64, units: i64) {
        let next = self.next.get_mut();
        if time < *next && time > *self.upto.get_mut() {
            *next = time;
        }
        let b = match &mut self.latest {
            Some((t, b)) if *t == time => b,
            Some((t, _)) if *t > time => self.buckets.entry(time).or_default(),
            latest => {
                if let Some((t, b)) = latest.take() {
                    self.buckets.insert(t, b);
                }
                &mut latest.insert((time, Bucket::default())).1
            }
        };
        b.count += 1;
        b.units += units;
        self.count_due(time, 1, units);
    }

    /// An open record of `units` ending at `time` is no longer open.
    pub fn remove(&mut self, time: u64, units: i64) {
        let emptied = match &mut self.latest {
            Some((t, b)) if *t == time => {
                b.count = b.count.saturating_sub(1);
                b.units -= units;
                if b.count == 0 {
                    self.latest = self.buckets.pop_last();
                }
                true
            }
            _ => match self.buckets.get_mut(&time) {
                Some(b) => {
                    b.count = b.count.saturating_sub(1);
                    b.units -= units;
                    if b.count == 0 {
                        self.buckets.remove(&time);
                    }
                    true
                }
                None => false,
            },
        };
        if emptied {
            self.count_due(time, -1, -units);
        }
    }

    /// Every bucket, in time order.
    fn all(&self) -> impl Iterator<Item = (&u64, &Bucket)> + '_ {
        self.buckets
            .iter()
            .chain(self.latest.as_ref().map(|(t, b)| (t, b)))
    }

    /// `(count, units)` of the open records ending at or before `now`.
    #[inline]
    pub fn due(&self, now: u64) -> (u64, i64) {
        let upto = self.upto.load(Relaxed);
        let (mut count, mut units) = (
            self.due_count.load(Relaxed) as i64,
            self.due_units.load(Relaxed),
        );
        if now > upto && now < self.next.load(Relaxed) {
            self.upto.store(now, Relaxed);
        } else if now != upto {
            // Only the buckets between the two times change the sum.
            let (range, sign) = if now > upto {
                (upto.saturating_add(1)..=now, 1)
            } else {
                (now.saturating_add(1)..=upto, -1)
            };
            let latest = self
                .latest
                .as_ref()
                .filter(|(t, _)| range.contains(t))
                .map(|(_, b)| b);
            for b in self.buckets.range(range).map(|(_, b)| b).chain(latest) {
                count += sign * b.count as i64;
                units += sign * b.units;
            }
            self.upto.store(now, Relaxed);
            self.due_count.store(count.max(0) as u64, Relaxed);
            self.due_units.store(units, Relaxed);
            self.next.store(self.first_after(now), Relaxed);
        }
        (count.max(0) as u64, units)
    }

    /// The earliest deadline after `now` (u64::MAX when none).
    fn first_after(&self, now: u64) -> u64 {
        let after = now.saturating_add(1);
        self.buckets
            .range(after..)
            .map(|(t, _)| *t)
            .next()
            .or(self.latest.map(|(t, _)| t).filter(|t| *t >= after))
            .unwrap_or(u64::MAX)
    }

    pub fn mem_usage(&self) -> usize {
        self.buckets.len() * Self::BUCKET_BYTES
    }

    /// Compares the buckets with the open records, given as
    /// `(deadline, units)`, and the running sum with the buckets.
    pub fn check(&self, open: impl Iterator<Item = (u64, i64)>) -> Result<(), String> {
        let mut recount: BTreeMap<u64, Bucket> = BTreeMap::new();
        for (time, units) in open {
            let b = recount.entry(time).or_default();
            b.count += 1;
            b.units += units;
        }
        let ours: BTreeMap<u64, Bucket> = self.all().map(|(t, b)| (*t, *b)).collect();
        if recount != ours {
            return Err("deadline sums do not match the open records".into());
        }
        if self
            .latest
            .is_some_and(|(t, _)| self.buckets.last_key_value().is_some_and(|(e, _)| *e >= t))
        {
            return Err("the latest deadline's bucket is not the latest".into());
        }
        let upto = self.upto.load(Relaxed);
        let next = self.next.load(Relaxed);
        if ours.keys().any(|t| *t > upto && *t < next) {
            return Err("a deadline lies before the next one noted".into());
        }
        let (count, units) = ours
            .range(..=upto)
            .fold((0, 0), |(c, u), (_, b)| (c + b.count, u + b.units));
        if (count, units) != (self.due_count.load(Relaxed), self.due_units.load(Relaxed)) {
            return Err("the running sum of due records is out of step".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running sum agrees with a brute-force sum whatever the order of
    /// changes and of the times asked, backwards included.
    #[test]
    fn due_sums_match_a_recount() {
        let mut d = Deadlines::default();
        let mut open: Vec<(u64, i64)> = Vec::new();
        let mut rng = crate::TestRng::new();
        let mut next = |n: u64| rng.below(n);
        for step in 0..20_000 {
            match next(4) {
                0 | 1 => {
                    let (t, u) = (next(500), 1 + next(9) as i64);
                    d.add(t, u);
                    open.push((t, u));
                }
                2 if !open.is_empty() => {
                    let (t, u) = open.swap_remove(next(open.len() as u64) as usize);
                    d.remove(t, u);
                }
                _ => {
                    let now = next(520);
                    let want = open
                        .iter()
                        .filter(|(t, _)| *t <= now)
                        .fold((0, 0), |(c, u), (_, x)| (c + 1, u + x));
                    assert_eq!(d.due(now), want, "at {now}");
                }
            }
            if step % 97 == 0 {
                d.check(open.iter().copied()).unwrap();
            }
        }
        d.check(open.iter().copied()).unwrap();
    }
}

//! A key's waiting room: reserves that found no stock and wait (`BLOCK ms`)
//! for units to come back, served strictly in arrival order.
//!
//! The queue is not state of the key: it lives beside it, on the master, as
//! long as its clients stay connected, and is never persisted or
//! replicated; what it produces are ordinary reservations, planned by
//! `Sku::plan_grant` and applied as any other. Strict order: a head that
//! wants more than is available keeps everyone behind it waiting (no
//! smaller request overtakes it), so a request can never starve behind a
//! stream of smaller ones. A buyer's waiting units count against the key's
//! per-buyer limit while they wait.
//!
//! Removing a waiter (a cancel, a timeout, a disconnect) is O(1): its slot
//! is emptied in place and passed when it reaches the front.

use super::buyers::BuyerId;
use super::plan::Ttl;
use super::records::Chunked;
use super::txid::TxId;
use crate::shardmap::ShardedMap;
use std::collections::VecDeque;

/// One waiting reserve. `H` is whatever the shell answers it through (a
/// blocked client). When its wait ends unanswered is kept by the queue
/// (`WaitQueue::push`), not here: a queue of a hundred thousand waiters
/// counts every byte of this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter<H> {
    pub handle: H,
    pub txid: TxId,
    pub qty: i64,
    /// The reservation's TTL, counted from the grant (or its PXAT), packed
    /// in 8 bytes (`Waiter::ttl`).
    ttl: u64,
    pub buyer: Option<BuyerId>,
}

/// `Waiter::ttl`'s packing: `Ttl::Default` is all ones, `Ttl::At(t)` has
/// the top bit set; `Ttl::Millis(ms)` is `ms` (both below 2^63).
const TTL_DEFAULT: u64 = u64::MAX;
const TTL_AT: u64 = 1 << 63;

impl<H> Waiter<H> {
    pub fn new(handle: H, txid: TxId, qty: i64, ttl: Ttl, buyer: Option<BuyerId>) -> Self {
        let ttl = match ttl {
            Ttl::Default => TTL_DEFAULT,
            Ttl::Millis(ms) => ms.min(TTL_AT - 1),
            Ttl::At(t) => t.min(TTL_AT - 2) | TTL_AT,
        };
        Waiter {
            handle,
            txid,
            qty,
            ttl,
            buyer,
        }
    }

    /// The reservation's TTL.
    pub fn ttl(&self) -> Ttl {
        match self.ttl {
            TTL_DEFAULT => Ttl::Default,
            t if t & TTL_AT != 0 => Ttl::At(t & !TTL_AT),
            ms => Ttl::Millis(ms),
        }
    }
}

/// What waits ahead of a new reserve on a key: whether anyone does (then a
/// new reserve takes nothing, however many units are available), and the
/// units its buyer already waits for (they count against the limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ahead {
    pub queued: bool,
    pub buyer_waiting: i64,
}

impl Ahead {
    /// Nobody waits.
    pub const NONE: Ahead = Ahead {
        queued: false,
        buyer_waiting: 0,
    };
}

/// Slots per chunk of a queue (the first chunk grows to it by doubling).
const CHUNK: usize = 256;

/// The waiters of one key, in arrival order.
///
/// Nothing in it grows in one step with the queue's length, so that a
/// reserve joining a queue of a hundred thousand stays short: the slots are
/// chunks that never move, the maps are `ShardedMap`s (a 64th rehashed at a
/// time), and the heap of wait ends sits on chunks too (`Ends`).
#[derive(Debug)]
pub struct WaitQueue<H> {
    /// Waiters by arrival, `CHUNK` slots a chunk (every chunk but the last
    /// full); `None` where one was served or left early. The front,
    /// `chunks[0][head]`, is a waiter while anyone waits.
    chunks: VecDeque<Vec<Option<Waiter<H>>>>,
    /// Arrival number of `chunks[0][0]`.
    first: u64,
    /// Slots of `chunks[0]` already passed.
    head: usize,
    /// Where each waiting txid stands (its arrival number).
    by_txid: ShardedMap<TxId, u64>,
    /// Units each buyer waits for.
    by_buyer: ShardedMap<BuyerId, i64>,
    /// (until, arrival) of every waiter whose wait ends, earliest first;
    /// entries of waiters that left are skipped when they surface.
    ends: Ends,
}

impl<H> Default for WaitQueue<H> {
    fn default() -> Self {
        WaitQueue {
            chunks: VecDeque::new(),
            first: 0,
            head: 0,
            by_txid: ShardedMap::default(),
            by_buyer: ShardedMap::default(),
            ends: Ends::default(),
        }
    }
}

impl<H> WaitQueue<H> {
    /// Waiters still waiting.
    pub fn len(&self) -> usize {
        self.by_txid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_txid.is_empty()
    }

    pub fn contains(&self, txid: &TxId) -> bool {
        self.by_txid.contains_key(txid)
    }

    /// What a new reserve by `buyer` finds ahead of it.
    pub fn ahead(&self, buyer: Option<&BuyerId>) -> Ahead {
        Ahead {
            queued: !self.is_empty(),
            buyer_waiting: buyer.map_or(0, |b| self.buyer_waiting(b)),
        }
    }

    /// Units `buyer` waits for on this key.
    pub fn buyer_waiting(&self, buyer: &BuyerId) -> i64 {
        self.by_buyer.get(buyer).copied().unwrap_or(0)
    }

    /// The arrival number the next waiter gets.
    fn next_arrival(&self) -> u64 {
        let slots = match self.chunks.back() {
            None => 0,
            Some(last) => (self.chunks.len() - 1) * CHUNK + last.len(),
        };
        self.first + slots as u64
    }

    /// Adds a waiter at the back, whose wait ends unanswered at `until`
    /// (unix ms; 0: never), and returns its arrival number (for
    /// `remove_arrival`). The caller has checked that its txid is not
    /// waiting already (`contains`); a duplicate is handed back.
    pub fn push(&mut self, w: Waiter<H>, until: u64) -> Result<u64, Waiter<H>> {
        if self.by_txid.contains_key(&w.txid) {
            return Err(w);
        }
        let seq = self.next_arrival();
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
            // The first chunk starts small (most queues are short); the
            // next ones are whole chunks.
            let room = if self.chunks.is_empty() { 4 } else { CHUNK };
            self.chunks.push_back(Vec::with_capacity(room));
        }
        self.by_txid.insert(w.txid.clone(), seq);
        if until != 0 {
            self.ends.push((until, seq));
        }
        if let Some(b) = &w.buyer {
            *self.by_buyer.entry(b.clone(), || 0) += w.qty;
        }
        if let Some(last) = self.chunks.back_mut() {
            last.push(Some(w));
        }
        Ok(seq)
    }

    /// The waiter served next.
    pub fn front(&self) -> Option<&Waiter<H>> {
        self.chunks.front()?.get(self.head)?.as_ref()
    }

    /// Takes the waiter served next out of the queue.
    pub fn pop_front(&mut self) -> Option<Waiter<H>> {
        let w = self.chunks.front_mut()?.get_mut(self.head)?.take()?;
        self.forget(&w);
        self.skip_gaps();
        Some(w)
    }

    /// Takes `txid`'s waiter out, wherever it stands.
    pub fn remove(&mut self, txid: &TxId) -> Option<Waiter<H>> {
        let seq = *self.by_txid.get(txid)?;
        self.remove_arrival(seq)
    }

    /// Takes out the waiter that arrived as number `seq` (`push`'s answer),
    /// if it still waits.
    pub fn remove_arrival(&mut self, seq: u64) -> Option<Waiter<H>> {
        let at = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        let w = self
            .chunks
            .get_mut(at / CHUNK)?
            .get_mut(at % CHUNK)?
            .take()?;
        self.forget(&w);
        self.skip_gaps();
        Some(w)
    }

    /// Takes out a waiter whose wait has ended by `now` (its BLOCK or PXAT
    /// passed), earliest first, wherever it stands: `None` when no wait has
    /// ended; `Some(None)` for one step past the end of a waiter that left
    /// already (the caller bounds how many steps a turn takes: a hundred
    /// thousand waiters that left leave as many ends behind).
    pub fn pop_ended(&mut self, now: u64) -> Option<Option<Waiter<H>>> {
        let (until, seq) = self.ends.peek()?;
        if until > now {
            return None;
        }
        self.ends.pop();
        Some(self.remove_arrival(seq))
    }

    /// When the next wait ends, if any does (possibly one that already
    /// left: a hint for when to look again).
    pub fn next_end(&self) -> Option<u64> {
        self.ends.peek().map(|(until, _)| until)
    }

    /// The buyer's waiting units, not counting `w`'s own: what counts
    /// against the limit when `w` is served.
    pub fn others_of_buyer(&self, w: &Waiter<H>) -> i64 {
        w.buyer
            .as_ref()
            .map_or(0, |b| self.buyer_waiting(b) - w.qty)
            .max(0)
    }

    fn forget(&mut self, w: &Waiter<H>) {
        self.by_txid.remove(&w.txid);
        if let Some(b) = &w.buyer {
            if let Some(units) = self.by_buyer.get_mut(b) {
                *units -= w.qty;
                if *units <= 0 {
                    self.by_buyer.remove(b);
                }
            }
        }
    }

    /// Passes the emptied slots at the front, so the front is a waiter
    /// (each slot is passed once: O(1) a waiter, amortized); when nobody
    /// waits, gives a big queue's memory back.
    fn skip_gaps(&mut self) {
        if self.by_txid.is_empty() {
            self.first = self.next_arrival();
            self.head = 0;
            self.chunks = VecDeque::new();
            self.ends = Ends::default();
            return;
        }
        while let Some(chunk) = self.chunks.front() {
            match chunk.get(self.head) {
                Some(Some(_)) => return,
                Some(None) => self.head += 1,
                // Unreachable while anyone waits: the last chunk holds one.
                None if chunk.len() < CHUNK => return,
                None => {
                    self.chunks.pop_front();
                    self.first += CHUNK as u64;
                    self.head = 0;
                }
            }
        }
    }
}

/// A min-heap of (until, arrival) on `Chunked` storage: growing copies at
/// most half a chunk, where a `BinaryHeap` of a million ends copies 16 MB
/// in one step.
#[derive(Debug, Default)]
struct Ends(Chunked<(u64, u64)>);

impl Ends {
    fn peek(&self) -> Option<(u64, u64)> {
        self.0.get(0).copied()
    }

    fn push(&mut self, end: (u64, u64)) {
        self.0.push(end);
        let mut i = self.0.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.0[parent] <= self.0[i] {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn pop(&mut self) -> Option<(u64, u64)> {
        let last = self.0.pop()?;
        if self.0.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.0[0], last);
        let len = self.0.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < len && self.0[l] < self.0[least] {
                least = l;
            }
            if r < len && self.0[r] < self.0[least] {
                least = r;
            }
            if least == i {
                break;
            }
            self.swap(i, least);
            i = least;
        }
        Some(top)
    }

    fn swap(&mut self, a: usize, b: usize) {
        let x = self.0[a];
        self.0[a] = self.0[b];
        self.0[b] = x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(txid: &str) -> TxId {
        TxId::new(txid.as_bytes()).unwrap()
    }

    fn w(txid: &str, qty: i64, buyer: Option<&str>) -> Waiter<u32> {
        let buyer = buyer.map(|b| BuyerId::new(b.as_bytes()).unwrap());
        Waiter::new(
            0,
            TxId::new(txid.as_bytes()).unwrap(),
            qty,
            Ttl::Default,
            buyer,
        )
    }

    #[test]
    fn serves_in_arrival_order_and_skips_who_left() {
        let mut q = WaitQueue::default();
        for (t, b) in [("a", Some("x")), ("b", None), ("c", Some("x")), ("d", None)] {
            q.push(w(t, 2, b), 0).unwrap();
        }
        assert!(q.push(w("b", 1, None), 0).is_err(), "a txid waits once");
        let x = BuyerId::new(b"x").unwrap();
        assert_eq!(
            q.ahead(Some(&x)),
            Ahead {
                queued: true,
                buyer_waiting: 4
            }
        );
        assert_eq!(q.remove(&id("b")).map(|w| w.qty), Some(2));
        assert!(q.remove(&id("b")).is_none());
        let order: Vec<Vec<u8>> = std::iter::from_fn(|| q.pop_front())
            .map(|w| w.txid.as_bytes().to_vec())
            .collect();
        assert_eq!(order, [b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        assert!(q.is_empty());
        assert_eq!(q.ahead(Some(&x)), Ahead::NONE);
    }

    #[test]
    fn removing_the_front_moves_it_to_the_next_waiter() {
        let mut q = WaitQueue::default();
        for t in ["a", "b", "c"] {
            q.push(w(t, 1, None), 0).unwrap();
        }
        q.remove(&id("b")).unwrap();
        q.remove(&id("a")).unwrap();
        assert_eq!(
            q.front().map(|w| w.txid.as_bytes().to_vec()),
            Some(b"c".to_vec())
        );
        assert_eq!(q.len(), 1);
        q.push(w("e", 1, None), 0).unwrap();
        assert!(q.contains(&id("e")) && !q.contains(&id("a")));
        let left: Vec<_> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(left.len(), 2);
        assert!(q.is_empty() && q.front().is_none());
    }

    #[test]
    fn a_buyers_other_waiting_units_exclude_the_one_served() {
        let mut q = WaitQueue::default();
        q.push(w("a", 2, Some("x")), 0).unwrap();
        q.push(w("b", 3, Some("x")), 0).unwrap();
        let front = q.front().unwrap().clone();
        assert_eq!(q.others_of_buyer(&front), 3);
        q.pop_front();
        q.pop_front();
        assert_eq!(q.buyer_waiting(&BuyerId::new(b"x").unwrap()), 0);
    }
}

#[cfg(test)]
mod chunks {
    use super::*;

    fn w(i: usize) -> Waiter<usize> {
        Waiter::new(
            i,
            TxId::new(format!("t{i}").as_bytes()).unwrap(),
            1,
            Ttl::Default,
            None,
        )
    }

    /// Across chunk boundaries: arrival order kept, places left anywhere
    /// skipped, a stale arrival number finds nothing once the queue moved
    /// on, and numbers keep growing after the queue empties.
    #[test]
    fn order_holds_across_chunks() {
        let n = CHUNK * 3 + 7;
        let mut q = WaitQueue::default();
        let seqs: Vec<u64> = (0..n).map(|i| q.push(w(i), 0).unwrap()).collect();
        assert_eq!(seqs, (0..n as u64).collect::<Vec<_>>());
        // Everyone in the first chunk and a half leaves but one, out of order.
        for i in (1..CHUNK + CHUNK / 2).rev() {
            assert_eq!(q.remove_arrival(seqs[i]).map(|w| w.handle), Some(i));
        }
        assert_eq!(q.front().map(|w| w.handle), Some(0));
        assert_eq!(q.pop_front().map(|w| w.handle), Some(0));
        assert_eq!(q.front().map(|w| w.handle), Some(CHUNK + CHUNK / 2));
        assert!(q.remove_arrival(seqs[3]).is_none(), "already gone");
        let rest: Vec<usize> = std::iter::from_fn(|| q.pop_front())
            .map(|w| w.handle)
            .collect();
        assert_eq!(rest, (CHUNK + CHUNK / 2..n).collect::<Vec<_>>());
        assert!(q.is_empty() && q.chunks.is_empty());
        assert_eq!(q.push(w(0), 0), Ok(n as u64));
        assert!(
            q.remove_arrival(seqs[0]).is_none(),
            "an old number is not the new waiter"
        );
        assert_eq!(q.len(), 1);
    }
}

#[cfg(test)]
mod ends {
    use super::*;

    #[test]
    fn waits_end_earliest_first_wherever_the_waiter_stands() {
        let w = |t: &str| Waiter::new(0u8, TxId::new(t.as_bytes()).unwrap(), 1, Ttl::Default, None);
        let mut q = WaitQueue::default();
        for (t, until) in [("a", 0), ("b", 30), ("c", 10), ("d", 20)] {
            q.push(w(t), until).unwrap();
        }
        q.remove(&TxId::new(b"d").unwrap()).unwrap();
        assert_eq!(q.next_end(), Some(10));
        assert!(q.pop_ended(9).is_none());
        let ended: Vec<Vec<u8>> = std::iter::from_fn(|| q.pop_ended(30))
            .flatten()
            .map(|w| w.txid.as_bytes().to_vec())
            .collect();
        assert_eq!(
            ended,
            [b"c".to_vec(), b"b".to_vec()],
            "d left before its end"
        );
        assert_eq!(
            q.front().map(|w| w.txid.as_bytes().to_vec()),
            Some(b"a".to_vec())
        );
    }
}

#[cfg(test)]
#[test]
fn ends_pop_in_order_across_chunks() {
    let mut h = Ends::default();
    let mut want = Vec::new();
    let mut x: u64 = 12345;
    for i in 0..20_000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let e = (x >> 40, i);
        h.push(e);
        want.push(e);
    }
    want.sort();
    let got: Vec<_> = std::iter::from_fn(|| h.pop()).collect();
    assert_eq!(got, want);
}

#[cfg(test)]
#[test]
fn a_waiters_ttl_packs_and_unpacks() {
    for ttl in [
        Ttl::Default,
        Ttl::Millis(0),
        Ttl::Millis(600_000),
        Ttl::At(1_800_000_000_000),
    ] {
        let w = Waiter::new((), TxId::new(b"t").unwrap(), 1, ttl, None);
        assert_eq!(w.ttl(), ttl);
    }
}

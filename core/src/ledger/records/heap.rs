//! The two heaps of a key's records: open records by deadline, finished
//! ones by the time their retention counts from.

use super::chunked::Chunked;
use super::record::{Record, State};

/// Which heap a record belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Which {
    Open,
    Done,
}

pub(super) fn which(state: State) -> Which {
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
pub(super) struct SlotHeap {
    pub(super) items: Chunked<u32>,
    /// The key of `items[0]`; `u64::MAX` while empty.
    pub(super) top: u64,
    /// At least every key (0 while empty).
    pub(super) max: u64,
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
    pub(super) fn key(&self, i: usize, slab: &Chunked<Record>) -> u64 {
        slab[self.items[i] as usize].time
    }

    pub(super) fn place(&mut self, i: usize, slot: u32, pos: &mut Chunked<u32>) {
        self.items[i] = slot;
        pos[slot as usize] = i as u32;
    }

    pub(super) fn push(&mut self, slot: u32, slab: &Chunked<Record>, pos: &mut Chunked<u32>) {
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

    pub(super) fn remove(&mut self, slot: u32, slab: &Chunked<Record>, pos: &mut Chunked<u32>) {
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
    pub(super) fn rekey(&mut self, i: usize, slab: &Chunked<Record>, pos: &mut Chunked<u32>) {
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
    pub(super) fn top(&self) -> Option<u64> {
        (!self.items.is_empty()).then_some(self.top)
    }

    /// Visits slots whose time is <= `limit` (in heap order, not sorted),
    /// stopping when `visit` returns false. Work is proportional to the
    /// number of slots visited.
    pub(super) fn visit_upto(
        &self,
        limit: u64,
        slab: &Chunked<Record>,
        mut visit: impl FnMut(u32) -> bool,
    ) {
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

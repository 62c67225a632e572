//! One SKU: stock, reserved, sold, version and its transaction records, and
//! how readers see them at a given time. Planning (`plan.rs`), applying
//! (`apply.rs`) and loading (`restore.rs`) extend `Sku` in their own files.
//!
//! A RESERVED record whose deadline has passed is expired for every reader
//! (`view`, `tx`, plans) even before an `Expire` effect materialises it.

use super::buyers::{BuyerId, Buyers};
use super::effect::RecordParts;
use super::error::{Error, Result};
use super::records::{Records, State};
use super::sale::Rules;
use super::txid::TxId;
use crate::shardmap::ShardedMap;

/// Largest quantity, stock or delta, and largest stock + sold (the units
/// that ever entered a key): 2^53-1.
pub const MAX_AMOUNT: i64 = (1 << 53) - 1;

/// A key as a reader sees it at a given time: what `INV.GET` answers
/// first, under the names of `View::fields`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct View {
    /// Units on hand, reserved ones included.
    pub stock: i64,
    /// Units held by open reservations.
    pub reserved: i64,
    /// `stock - reserved`.
    pub available: i64,
    /// Units confirmed since the key was created.
    pub sold: i64,
    /// +1 on every change; use it with `IFVERSION`.
    pub version: u64,
    /// RESERVED records not yet past their deadline.
    pub open: u64,
    /// All records kept, finished ones and fences included.
    pub records: u64,
}

impl View {
    /// The counters under their `INV.GET` names, in reply order.
    pub fn fields(&self) -> [(&'static str, i64); 7] {
        [
            ("stock", self.stock),
            ("reserved", self.reserved),
            ("available", self.available),
            ("sold", self.sold),
            ("version", self.version as i64),
            ("open", self.open as i64),
            ("records", self.records as i64),
        ]
    }

    /// A view read back from `INV.GET`'s pairs, `get` answering each name
    /// of `fields`; the first name it cannot answer when one is missing.
    pub fn from_fields(
        get: impl Fn(&str) -> Option<i64>,
    ) -> std::result::Result<View, &'static str> {
        let f = |name: &'static str| get(name).ok_or(name);
        let count = |name: &'static str| f(name).map(|v| v.max(0) as u64);
        Ok(View {
            stock: f("stock")?,
            reserved: f("reserved")?,
            available: f("available")?,
            sold: f("sold")?,
            version: count("version")?,
            open: count("open")?,
            records: count("records")?,
        })
    }
}

/// One record as a reader sees it at a given time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxView {
    pub txid: TxId,
    pub state: State,
    /// Units held (for a CONFIRMED record, the units held when confirmed).
    pub qty: i64,
    /// Units sold (CONFIRMED only; 0 otherwise).
    pub sold: i64,
    /// Deadline while RESERVED; afterwards the time retention counts from.
    pub time: u64,
    /// The buyer an open hold counts against.
    pub buyer: Option<BuyerId>,
}

/// Counters and records of one SKU.
#[derive(Clone, Default)]
pub struct Sku {
    pub(super) stock: i64,
    /// Units held by RESERVED records, including ones past their deadline
    /// that no `Expire` has materialised yet.
    pub(super) reserved: i64,
    pub(super) sold: i64,
    pub(super) version: u64,
    pub(super) records: Records,
    /// The seller's rules (INV.RULES).
    pub(super) rules: Rules,
    /// Per-buyer held and bought units.
    pub(super) buyers: Buyers,
    /// A record's second quantity: the first quantity of an adjusted open
    /// hold (what a late retry of its INV.RESERVE names), or the units held
    /// when a partial confirm sold fewer (the record's qty is then the sold
    /// units).
    pub(super) alt: ShardedMap<TxId, i64>,
    /// The housekeeping time last registered for this value (not persisted):
    /// lets a hot key skip the registry when its next event did not move.
    pub(super) scheduled: Option<Pending>,
}

/// What housekeeping has pending on a key: expiry from the first open
/// deadline, purges from the first finished record's time (plus the
/// retention), background work (`maintain`) now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub deadline: Option<u64>,
    pub done: Option<u64>,
    pub busy: bool,
}

/// Counters persisted with a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub stock: i64,
    pub sold: i64,
    pub version: u64,
    pub records: u64,
}

impl Sku {
    /// An empty SKU (version 0: not yet created).
    pub fn new() -> Sku {
        Sku::default()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Units held by RESERVED records, including ones past their deadline
    /// that no `Expire` has materialised yet.
    pub fn reserved_raw(&self) -> i64 {
        self.reserved
    }

    pub fn open_raw(&self) -> u64 {
        self.records.open_len() as u64
    }

    pub fn records_len(&self) -> usize {
        self.records.len()
    }

    /// `(count, units)` of reservations past their deadline at `now` that
    /// housekeeping has not expired yet (O(1) amortised).
    pub fn due(&self, now: u64) -> (u64, i64) {
        self.records.due(now)
    }

    pub fn view(&self, now: u64) -> View {
        let (due_count, due_units) = self.records.due(now);
        let reserved = self.reserved - due_units;
        View {
            stock: self.stock,
            reserved,
            available: self.stock - reserved,
            sold: self.sold,
            version: self.version,
            open: self.open_raw() - due_count,
            records: self.records.len() as u64,
        }
    }

    pub(super) fn view_state(state: State, time: u64, now: u64) -> State {
        if state == State::Reserved && time <= now {
            State::Expired
        } else {
            state
        }
    }

    /// A hint that `txid` is about to be looked up: on a key with many
    /// records its index line is then loaded while the caller does other work.
    pub fn prefetch(&self, txid: &[u8]) {
        self.records.prefetch(txid);
    }

    /// The same hint for a buyer id.
    pub fn prefetch_buyer(&self, id: &[u8]) {
        self.buyers.prefetch(id);
    }

    pub fn tx(&self, txid: &[u8], now: u64) -> Option<TxView> {
        let (state, qty, time) = self.lookup(txid, now)?;
        Some(self.tx_view(TxId::from_valid(txid), state, qty, time))
    }

    /// A record as readers see it: a partially confirmed one shows the
    /// units held beside the units sold.
    fn tx_view(&self, txid: TxId, state: State, qty: i64, time: u64) -> TxView {
        let (held, sold) = match state {
            State::Confirmed => (self.alt_of(txid.as_bytes()).unwrap_or(qty), qty),
            _ => (qty, 0),
        };
        let buyer = match state {
            State::Reserved => self.holder_of(txid.as_bytes()),
            _ => None,
        };
        TxView {
            txid,
            state,
            qty: held,
            sold,
            time,
            buyer,
        }
    }

    pub(super) fn alt_of(&self, txid: &[u8]) -> Option<i64> {
        if self.alt.is_empty() {
            return None;
        }
        self.alt.get(txid).copied()
    }

    /// The buyer slot an open hold counts against (the record's tag).
    pub(super) fn holder_slot(&self, txid: &[u8]) -> Option<u32> {
        if self.buyers.len() == 0 {
            return None;
        }
        self.buyer_at(self.records.find(txid)?)
    }

    pub(super) fn holder_of(&self, txid: &[u8]) -> Option<BuyerId> {
        self.buyers.id_at(self.holder_slot(txid)?)
    }

    /// `(state as seen at now, qty, time)` of a txid's record, for planning
    /// (no copy of the txid).
    pub(super) fn lookup(&self, txid: &[u8], now: u64) -> Option<(State, i64, u64)> {
        let r = self.records.get(self.records.find(txid)?)?;
        Some((
            Self::view_state(r.state(), r.time(), now),
            r.qty() as i64,
            r.time(),
        ))
    }

    /// What housekeeping has pending on this key, when it differs from
    /// what was last noted (so a hot key whose pending work did not move
    /// leaves the registry alone); notes it.
    pub fn schedule_change(&mut self) -> Option<Pending> {
        let p = self.pending();
        (self.scheduled != Some(p)).then(|| {
            self.scheduled = Some(p);
            p
        })
    }

    /// Notes `p` as scheduled for this value.
    pub fn mark_scheduled(&mut self, p: Pending) {
        self.scheduled = Some(p);
    }

    /// Advances the key's background work (a move to a bigger or smaller
    /// txid index, compaction after a big purge) by up to about `budget`
    /// record slots. Housekeeping's work, not a change of state: nothing to
    /// replicate. Returns whether work remains.
    pub fn maintain(&mut self, budget: usize) -> bool {
        self.records.maintain(budget)
    }

    /// What housekeeping has pending on this key.
    pub fn pending(&self) -> Pending {
        Pending {
            deadline: self.records.first_deadline(),
            done: self.records.first_done(),
            busy: self.records.busy(),
        }
    }

    pub fn audit(&self) -> Result<()> {
        let open_sum: i64 = self
            .records
            .iter()
            .filter(|r| r.state() == State::Reserved)
            .map(|r| r.qty() as i64)
            .sum();
        if open_sum != self.reserved {
            return Err(Error::Drift(format!(
                "reserved is {} but open reservations hold {open_sum}",
                self.reserved
            )));
        }
        if self.stock < self.reserved {
            return Err(Error::Drift(format!(
                "available is negative: stock {} reserved {}",
                self.stock, self.reserved
            )));
        }
        if self.sold < 0 || self.stock < 0 {
            return Err(Error::Drift("stock or sold is negative".into()));
        }
        self.records
            .check()
            .map_err(|e| Error::Drift(format!("index out of step: {e}")))?;
        self.audit_buyers()
    }

    /// Records from a cursor; returns the next cursor (0 when done). The
    /// cursor carries the slot layout's epoch: a scan that spans a
    /// renumbering restarts, so records present throughout are never missed.
    pub fn scan(&self, cursor: u64, count: usize, now: u64) -> (u64, Vec<TxView>) {
        let epoch = u64::from(self.records.epoch());
        let start = if cursor >> 32 == epoch {
            (cursor & 0xFFFF_FFFF) as usize
        } else {
            0
        };
        let mut out = Vec::new();
        let mut next = 0u64;
        for (slot, r) in self.records.iter_from(start) {
            if out.len() >= count {
                next = (epoch << 32) | slot as u64;
                break;
            }
            out.push(self.tx_view(
                r.txid(),
                Self::view_state(r.state(), r.time(), now),
                r.qty() as i64,
                r.time(),
            ));
        }
        (next, out)
    }

    pub fn header(&self) -> Header {
        Header {
            stock: self.stock,
            sold: self.sold,
            version: self.version,
            records: self.records.len() as u64,
        }
    }

    /// All records as persisted, in slab order.
    pub fn record_parts(&self) -> impl Iterator<Item = RecordParts> + '_ {
        self.records.iter_from(0).map(|(slot, r)| RecordParts {
            txid: r.txid(),
            state: r.state(),
            qty: r.qty() as i64,
            time: r.time(),
            buyer: self
                .records
                .tag(slot as u32)
                .checked_sub(1)
                .and_then(|b| self.buyers.id_at(b)),
            alt: self.alt_of(r.txid_bytes()).unwrap_or(0),
        })
    }

    pub fn mem_usage(&self) -> usize {
        use std::mem::size_of;
        size_of::<Sku>()
            + self.records.mem_usage()
            + self.buyers.mem_usage()
            + self.alt.table_bytes()
            + self.alt.iter().map(|(k, _)| k.heap_bytes()).sum::<usize>()
    }
}

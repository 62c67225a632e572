//! One SKU: stock, reserved, sold, version and its transaction records.
//!
//! Every command is split in two steps:
//! - `plan_*` reads the key and the clock, applies policy (TTL bounds, limits,
//!   idempotency rules) and returns the status to reply with and the effects
//!   that would realise it; it never changes anything.
//! - `apply` performs one effect without looking at any clock, validating it
//!   against the state first, so a master, its replicas and an AOF replay
//!   that apply the same effects reach the same state.
//!
//! A RESERVED record whose deadline has passed is expired for every reader
//! (`view`, `tx`, plans) even before an `Expire` effect materialises it.

use super::effect::{Effect, RecordParts};
use super::error::{Error, Result};
use super::records::{Insert, Records, State, MAX_RECORDS};
use super::txid::TxId;

/// Largest absolute value of any quantity, stock or delta: 2^53-1.
pub const MAX_AMOUNT: i64 = (1 << 53) - 1;

/// The state a command replies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Reserved,
    NoStock,
    Confirmed,
    Cancelled,
    Expired,
    Unknown,
}

impl Status {
    /// The reply word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "RESERVED",
            Status::NoStock => "NOSTOCK",
            Status::Confirmed => "CONFIRMED",
            Status::Cancelled => "CANCELLED",
            Status::Expired => "EXPIRED",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl From<State> for Status {
    fn from(s: State) -> Status {
        match s {
            State::Reserved => Status::Reserved,
            State::Confirmed => Status::Confirmed,
            State::Cancelled => Status::Cancelled,
            State::Expired => Status::Expired,
        }
    }
}

/// What a planned command amounts to, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new reservation.
    Reserve,
    /// RESERVE refused for lack of available units.
    NoStock,
    /// A retry that found its work already done.
    Replay,
    /// RESERVE refused because the txid is already finished (or fenced).
    Fenced,
    Confirm,
    /// CONFIRM that found the reservation expired.
    ConfirmLate,
    Cancel,
    /// CANCEL of an unknown txid: records a fence.
    EmptyRollback,
    /// Anything else (stock changes, extends, no-ops).
    Other,
}

/// A plan's effects: most commands have one or two, kept inline.
pub type Effects = smallvec::SmallVec<[Effect; 2]>;

/// The outcome of planning a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub status: Status,
    pub event: Event,
    pub effects: Effects,
}

impl Plan {
    fn new(status: Status, event: Event) -> Plan {
        Plan {
            status,
            event,
            effects: Effects::new(),
        }
    }

    fn with(mut self, effects: Effects) -> Plan {
        self.effects = effects;
        self
    }
}

/// How long a reservation lives, as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    Default,
    Millis(u64),
    /// Absolute deadline in unix milliseconds.
    At(u64),
}

/// Settings that shape plans (never used by `apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub default_ttl_ms: u64,
    pub max_ttl_ms: u64,
    /// 0 means unlimited.
    pub max_open_per_key: u64,
    pub retention_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            default_ttl_ms: 600_000,
            max_ttl_ms: 7 * 86_400_000,
            max_open_per_key: 0,
            retention_ms: 86_400_000,
        }
    }
}

impl Policy {
    /// The absolute deadline for a TTL asked at `now`.
    pub fn deadline(&self, ttl: Ttl, now: u64) -> Result<u64> {
        let max = self.max_ttl_ms;
        match ttl {
            Ttl::Default => Ok(now.saturating_add(self.default_ttl_ms.min(max))),
            Ttl::Millis(ms) if (1..=max).contains(&ms) => Ok(now.saturating_add(ms)),
            Ttl::Millis(ms) => Err(Error::invalid(format!(
                "TTL must be 1 to {max} milliseconds (inventory.max-ttl-ms), got {ms}"
            ))),
            Ttl::At(at) if at > now && at - now <= max => Ok(at),
            Ttl::At(at) => Err(Error::invalid(format!(
                "PXAT must be a unix time in milliseconds after now ({now}) and at most \
                 {max} ms ahead (inventory.max-ttl-ms), got {at}"
            ))),
        }
    }
}

/// A key as a reader sees it at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct View {
    pub stock: i64,
    pub reserved: i64,
    pub available: i64,
    pub sold: i64,
    pub version: u64,
    /// RESERVED records not yet past their deadline.
    pub open: u64,
    /// All records kept, finished ones and fences included.
    pub records: u64,
}

/// One record as a reader sees it at a given time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxView {
    pub txid: TxId,
    pub state: State,
    pub qty: i64,
    /// Deadline while RESERVED; afterwards the time retention counts from.
    pub time: u64,
}

/// Counters and records of one SKU.
#[derive(Clone, Default)]
pub struct Sku {
    stock: i64,
    reserved: i64,
    sold: i64,
    version: u64,
    records: Records,
    /// The housekeeping time last registered for this value (not persisted):
    /// lets a hot key skip the registry when its next event did not move.
    scheduled: Option<Option<u64>>,
}

/// Counters persisted with a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub stock: i64,
    pub sold: i64,
    pub version: u64,
    pub records: u64,
}

fn inserted(result: Insert, txid: &TxId) -> Result<()> {
    match result {
        Insert::Added => Ok(()),
        Insert::Exists => Err(Error::Apply(format!("txid {txid:?} exists"))),
        Insert::Full => Err(Error::Apply("too many records".into())),
    }
}

fn amount(v: i64, what: &str) -> Result<i64> {
    if (0..=MAX_AMOUNT).contains(&v) {
        Ok(v)
    } else {
        Err(Error::Apply(format!("{what} {v} out of range")))
    }
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

    /// Units and count of RESERVED records due at `now`.
    fn due(&self, now: u64) -> (i64, u64) {
        let (mut units, mut count) = (0i64, 0u64);
        self.records.visit_due(now, |slot| {
            if let Some(r) = self.records.get(slot) {
                units = units.saturating_add(r.qty() as i64);
                count += 1;
            }
            true
        });
        (units, count)
    }

    pub fn view(&self, now: u64) -> View {
        let (due_units, due_count) = self.due(now);
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

    fn view_state(state: State, time: u64, now: u64) -> State {
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

    pub fn tx(&self, txid: &[u8], now: u64) -> Option<TxView> {
        let (state, qty, time) = self.lookup(txid, now)?;
        Some(TxView {
            txid: TxId::from_valid(txid),
            state,
            qty,
            time,
        })
    }

    /// `(state as seen at now, qty, time)` of a txid's record, for planning
    /// (no copy of the txid).
    fn lookup(&self, txid: &[u8], now: u64) -> Option<(State, i64, u64)> {
        let r = self.records.get(self.records.find(txid)?)?;
        Some((
            Self::view_state(r.state(), r.time(), now),
            r.qty() as i64,
            r.time(),
        ))
    }

    fn check_version(&self, expected: Option<u64>) -> Result<()> {
        match expected {
            Some(v) if v != self.version => Err(Error::Version {
                current: self.version,
                expected: v,
            }),
            _ => Ok(()),
        }
    }

    /// Due records to expire so that `stock_after - reserved >= need` and,
    /// when `open_cap` is set, fewer than `open_cap` records stay open.
    fn make_room(&self, stock_after: i64, need: i64, open_cap: u64, now: u64) -> Effects {
        let mut reserved = self.reserved;
        let mut open = self.open_raw();
        let done = |reserved: i64, open: u64| {
            stock_after - reserved >= need && (open_cap == 0 || open < open_cap)
        };
        if done(reserved, open) {
            return Effects::new();
        }
        let mut ids = Vec::new();
        self.records.visit_due(now, |slot| {
            if let Some(r) = self.records.get(slot) {
                ids.push(r.txid());
                reserved -= r.qty() as i64;
                open -= 1;
            }
            !done(reserved, open)
        });
        if ids.is_empty() {
            Effects::new()
        } else {
            smallvec::smallvec![Effect::Expire(ids)]
        }
    }

    pub fn plan_set(&self, stock: i64, if_version: Option<u64>, now: u64) -> Result<Plan> {
        self.check_version(if_version)?;
        if self.version > 0 && stock == self.stock {
            return Ok(Plan::new(Status::Reserved, Event::Other));
        }
        let view = self.view(now);
        if stock < view.reserved {
            return Err(Error::NoStock(format!(
                "stock {stock} is below the {} units held by open reservations",
                view.reserved
            )));
        }
        let mut effects = self.make_room(stock, 0, 0, now);
        effects.push(Effect::Stock(stock));
        Ok(Plan::new(Status::Reserved, Event::Other).with(effects))
    }

    pub fn plan_add(&self, delta: i64, if_version: Option<u64>, now: u64) -> Result<Plan> {
        self.check_version(if_version)?;
        if self.version > 0 && delta == 0 {
            return Ok(Plan::new(Status::Reserved, Event::Other));
        }
        let view = self.view(now);
        let after = self.stock + delta;
        if after > MAX_AMOUNT {
            return Err(Error::invalid(format!(
                "stock would become {after}, above the maximum {MAX_AMOUNT}"
            )));
        }
        if view.available + delta < 0 {
            return Err(Error::NoStock(format!(
                "cannot remove {} units: {} available",
                -delta, view.available
            )));
        }
        let mut effects = self.make_room(after, 0, 0, now);
        effects.push(Effect::Add(delta));
        Ok(Plan::new(Status::Reserved, Event::Other).with(effects))
    }

    pub fn plan_reserve(
        &self,
        txid: &TxId,
        qty: i64,
        ttl: Ttl,
        now: u64,
        policy: &Policy,
    ) -> Result<Plan> {
        let deadline = policy.deadline(ttl, now)?;
        if let Some((state, held, _)) = self.lookup(txid.as_bytes(), now) {
            return match state {
                State::Reserved if held == qty => Ok(Plan::new(Status::Reserved, Event::Replay)),
                State::Reserved => Err(Error::TxConflict { held, asked: qty }),
                other => Ok(Plan::new(other.into(), Event::Fenced)),
            };
        }
        let view = self.view(now);
        if view.available < qty {
            return Ok(Plan::new(Status::NoStock, Event::NoStock));
        }
        let cap = policy.max_open_per_key;
        if cap > 0 && view.open >= cap {
            return Err(Error::Limit { max: cap });
        }
        let mut effects = self.make_room(self.stock, qty, cap, now);
        effects.push(Effect::Reserve {
            txid: txid.clone(),
            qty,
            deadline,
        });
        Ok(Plan::new(Status::Reserved, Event::Reserve).with(effects))
    }

    pub fn plan_confirm(&self, txid: &TxId, now: u64) -> Plan {
        match self.lookup(txid.as_bytes(), now).map(|t| t.0) {
            None => Plan::new(Status::Unknown, Event::Other),
            Some(State::Reserved) => Plan::new(Status::Confirmed, Event::Confirm)
                .with(smallvec::smallvec![Effect::Confirm(txid.clone())]),
            Some(State::Confirmed) => Plan::new(Status::Confirmed, Event::Replay),
            Some(State::Expired) => Plan::new(Status::Expired, Event::ConfirmLate),
            Some(State::Cancelled) => Plan::new(Status::Cancelled, Event::Other),
        }
    }

    pub fn plan_cancel(&self, txid: &TxId, now: u64) -> Plan {
        match self.lookup(txid.as_bytes(), now).map(|t| t.0) {
            None => Plan::new(Status::Cancelled, Event::EmptyRollback).with(smallvec::smallvec![
                Effect::Fence {
                    txid: txid.clone(),
                    at: now,
                }
            ]),
            Some(State::Reserved) => Plan::new(Status::Cancelled, Event::Cancel)
                .with(smallvec::smallvec![Effect::Cancel(txid.clone())]),
            Some(State::Cancelled) => Plan::new(Status::Cancelled, Event::Replay),
            Some(other) => Plan::new(other.into(), Event::Other),
        }
    }

    pub fn plan_extend(&self, txid: &TxId, ttl_ms: u64, now: u64, policy: &Policy) -> Result<Plan> {
        let deadline = policy.deadline(Ttl::Millis(ttl_ms), now)?;
        Ok(match self.tx(txid.as_bytes(), now) {
            None => Plan::new(Status::Unknown, Event::Other),
            Some(t) if t.state == State::Reserved && t.time != deadline => {
                Plan::new(Status::Reserved, Event::Other).with(smallvec::smallvec![
                    Effect::Extend {
                        txid: txid.clone(),
                        deadline,
                    }
                ])
            }
            Some(t) => Plan::new(t.state.into(), Event::Other),
        })
    }

    /// Expiry of due records and purge of records past retention, at most
    /// `budget` records in all.
    pub fn plan_housekeeping(&self, now: u64, retention_ms: u64, budget: usize) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut due = Vec::new();
        self.records.visit_due(now, |slot| {
            if let Some(r) = self.records.get(slot) {
                due.push(r.txid());
            }
            due.len() < budget
        });
        let left = budget - due.len().min(budget);
        if !due.is_empty() {
            effects.push(Effect::Expire(due));
        }
        if left > 0 && now >= retention_ms {
            let mut old = Vec::new();
            self.records.visit_done_upto(now - retention_ms, |slot| {
                if let Some(r) = self.records.get(slot) {
                    old.push(r.txid());
                }
                old.len() < left
            });
            if !old.is_empty() {
                effects.push(Effect::Purge(old));
            }
        }
        effects
    }

    /// The next housekeeping time if it differs from the one last marked.
    pub fn schedule_change(&mut self, retention_ms: u64) -> Option<Option<u64>> {
        let next = self.next_event(retention_ms);
        (self.scheduled != Some(next)).then(|| {
            self.scheduled = Some(next);
            next
        })
    }

    /// Records that housekeeping was scheduled at `at` for this value.
    pub fn mark_scheduled(&mut self, at: Option<u64>) {
        self.scheduled = Some(at);
    }

    /// Advances a background growth of the txid index by up to `budget`
    /// record slots (housekeeping's work, not a change of state: nothing to
    /// replicate). Returns whether work remains.
    pub fn grow_index(&mut self, budget: usize) -> bool {
        self.records.grow_step(budget)
    }

    /// When housekeeping next has work on this key, if ever. A txid index
    /// growing in the background is work due now (time 0).
    pub fn next_event(&self, retention_ms: u64) -> Option<u64> {
        if self.records.growing() {
            return Some(0);
        }
        let purge = self
            .records
            .first_done()
            .map(|t| t.saturating_add(retention_ms));
        match (self.records.first_deadline(), purge) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn slot_in(&self, txid: &TxId, state: State) -> Result<u32> {
        let slot = self
            .records
            .find(txid.as_bytes())
            .ok_or_else(|| Error::Apply(format!("unknown txid {txid:?}")))?;
        match self.records.get(slot) {
            Some(r) if r.state() == state => Ok(slot),
            _ => Err(Error::Apply(format!(
                "txid {txid:?} is not {}",
                state.as_str()
            ))),
        }
    }

    fn bump(&mut self) {
        self.version = self.version.saturating_add(1);
    }

    /// Performs one effect. Validates everything before changing anything,
    /// so an error leaves the SKU untouched.
    pub fn apply(&mut self, effect: &Effect) -> Result<()> {
        match effect {
            Effect::Stock(stock) => {
                let stock = amount(*stock, "stock")?;
                if stock < self.reserved {
                    return Err(Error::Apply(format!(
                        "stock {stock} below reserved {}",
                        self.reserved
                    )));
                }
                self.stock = stock;
            }
            Effect::Add(delta) => {
                let after = self
                    .stock
                    .checked_add(*delta)
                    .ok_or_else(|| Error::Apply("stock overflow".into()))?;
                let after = amount(after, "stock")?;
                if after < self.reserved {
                    return Err(Error::Apply(format!(
                        "stock {after} below reserved {}",
                        self.reserved
                    )));
                }
                self.stock = after;
            }
            Effect::Reserve {
                txid,
                qty,
                deadline,
            } => {
                let qty = amount(*qty, "qty")?;
                if qty < 1 || self.stock - self.reserved < qty {
                    return Err(Error::Apply(format!("cannot reserve {qty}")));
                }
                let added = self
                    .records
                    .insert(txid, State::Reserved, qty as u64, *deadline);
                inserted(added, txid)?;
                self.reserved += qty;
            }
            Effect::Confirm(txid) => {
                let slot = self.slot_in(txid, State::Reserved)?;
                let qty = self.records.get(slot).map_or(0, |r| r.qty() as i64);
                let sold = self
                    .sold
                    .checked_add(qty)
                    .ok_or_else(|| Error::Apply("sold overflow".into()))?;
                self.records.set_state(slot, State::Confirmed);
                self.stock -= qty;
                self.reserved -= qty;
                self.sold = sold;
            }
            Effect::Cancel(txid) => {
                let slot = self.slot_in(txid, State::Reserved)?;
                let qty = self.records.get(slot).map_or(0, |r| r.qty() as i64);
                self.records.set_state(slot, State::Cancelled);
                self.reserved -= qty;
            }
            Effect::Fence { txid, at } => {
                inserted(self.records.insert(txid, State::Cancelled, 0, *at), txid)?;
            }
            Effect::Extend { txid, deadline } => {
                let slot = self.slot_in(txid, State::Reserved)?;
                self.records.set_time(slot, *deadline);
            }
            Effect::Expire(ids) => {
                let slots = self.slots_in(ids, |s| s == State::Reserved, "RESERVED")?;
                for slot in slots {
                    let qty = self.records.get(slot).map_or(0, |r| r.qty() as i64);
                    self.records.set_state(slot, State::Expired);
                    self.reserved -= qty;
                }
            }
            Effect::Purge(ids) => {
                let slots = self.slots_in(ids, |s| s != State::Reserved, "finished")?;
                for slot in slots {
                    self.records.remove(slot);
                }
                if self.records.sparse() {
                    self.records.compact();
                }
            }
            Effect::Load {
                stock,
                sold,
                version,
            } => {
                *self = Sku::from_header(Header {
                    stock: *stock,
                    sold: *sold,
                    version: *version,
                    records: 0,
                })
                .map_err(|e| Error::Apply(e.to_string()))?;
                return Ok(());
            }
            Effect::Records(parts) => {
                self.restore_records(parts)
                    .map_err(|e| Error::Apply(e.to_string()))?;
                return Ok(());
            }
        }
        self.bump();
        Ok(())
    }

    /// Slots of distinct txids that all pass `ok`, or an error naming one that does not.
    fn slots_in(&self, ids: &[TxId], ok: impl Fn(State) -> bool, what: &str) -> Result<Vec<u32>> {
        let mut slots = Vec::with_capacity(ids.len());
        for id in ids {
            let slot = self
                .records
                .find(id.as_bytes())
                .filter(|&s| self.records.get(s).is_some_and(|r| ok(r.state())))
                .ok_or_else(|| Error::Apply(format!("txid {id:?} is not {what}")))?;
            slots.push(slot);
        }
        slots.sort_unstable();
        if slots.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Apply("txid listed twice".into()));
        }
        Ok(slots)
    }

    /// INV.AUDIT: every invariant, or the first one broken.
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
            .map_err(|e| Error::Drift(format!("index out of step: {e}")))
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
            out.push(TxView {
                txid: r.txid(),
                state: Self::view_state(r.state(), r.time(), now),
                qty: r.qty() as i64,
                time: r.time(),
            });
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
        self.records.iter().map(|r| RecordParts {
            txid: r.txid(),
            state: r.state(),
            qty: r.qty() as i64,
            time: r.time(),
        })
    }

    /// An SKU with these counters and no records yet (loading).
    pub fn from_header(h: Header) -> Result<Sku> {
        let stock = amount(h.stock, "stock").map_err(|_| Error::invalid("stock out of range"))?;
        if h.sold < 0 || h.version == 0 || h.records > MAX_RECORDS as u64 {
            return Err(Error::invalid("sold, version or record count out of range"));
        }
        let mut sku = Sku {
            stock,
            sold: h.sold,
            version: h.version,
            ..Sku::default()
        };
        // Never trust a count from a payload with a large allocation.
        sku.records.reserve((h.records as usize).min(1 << 16));
        Ok(sku)
    }

    /// A loaded record's quantity, if valid for its state.
    fn record_qty(p: &RecordParts) -> Result<i64> {
        let qty = amount(p.qty, "qty").map_err(|_| Error::invalid("record qty out of range"))?;
        let min_qty = if p.state == State::Cancelled { 0 } else { 1 };
        if qty < min_qty {
            return Err(Error::invalid("record qty out of range"));
        }
        Ok(qty)
    }

    /// Adds a batch of records all or nothing: everything is checked
    /// against the key and the batch first, then inserted, so no copy of the
    /// key is needed (AOF rewrites replay thousands of batches on big keys).
    pub fn restore_records(&mut self, parts: &[RecordParts]) -> Result<()> {
        let mut reserved = self.reserved;
        let mut seen = std::collections::HashSet::with_capacity(parts.len());
        for p in parts {
            let qty = Self::record_qty(p)?;
            if p.state == State::Reserved {
                if self.stock - reserved < qty {
                    return Err(Error::invalid("open reservations exceed stock"));
                }
                reserved += qty;
            }
            if !seen.insert(p.txid.as_bytes()) || self.records.find(p.txid.as_bytes()).is_some() {
                return Err(Error::invalid("duplicate txid"));
            }
        }
        if self.records.len() + parts.len() > MAX_RECORDS {
            return Err(Error::invalid("too many records"));
        }
        for p in parts {
            self.restore_record(p.clone())?;
        }
        Ok(())
    }

    /// Adds one loaded record, checking it against the rest.
    pub fn restore_record(&mut self, p: RecordParts) -> Result<()> {
        let qty = Self::record_qty(&p)?;
        if p.state == State::Reserved && self.stock - self.reserved < qty {
            return Err(Error::invalid("open reservations exceed stock"));
        }
        match self.records.insert(&p.txid, p.state, qty as u64, p.time) {
            Insert::Added => {}
            Insert::Exists => return Err(Error::invalid("duplicate txid")),
            Insert::Full => return Err(Error::invalid("too many records")),
        }
        if p.state == State::Reserved {
            self.reserved += qty;
        }
        Ok(())
    }

    /// Bytes this SKU holds, for MEMORY USAGE.
    pub fn mem_usage(&self) -> usize {
        std::mem::size_of::<Sku>() + self.records.mem_usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn id(s: &str) -> TxId {
        TxId::new(s.as_bytes()).unwrap()
    }

    fn run(sku: &mut Sku, plan: impl FnOnce(&Sku) -> Result<Plan>) -> Status {
        let plan = plan(sku).unwrap();
        for e in &plan.effects {
            sku.apply(e).unwrap();
        }
        plan.status
    }

    fn stocked(n: i64) -> Sku {
        let mut s = Sku::new();
        run(&mut s, |s| s.plan_set(n, None, NOW));
        s
    }

    #[test]
    fn reserve_confirm_cancel_cycle() {
        let p = Policy::default();
        let mut s = stocked(10);
        assert_eq!(s.version(), 1);
        assert_eq!(
            run(&mut s, |s| s.plan_reserve(
                &id("a"),
                4,
                Ttl::Default,
                NOW,
                &p
            )),
            Status::Reserved
        );
        assert_eq!(s.view(NOW).available, 6);
        assert_eq!(s.version(), 2);
        // Retry: same answer, nothing changes.
        let replay = s.plan_reserve(&id("a"), 4, Ttl::Default, NOW, &p).unwrap();
        assert_eq!(
            (replay.status, replay.event, replay.effects.len()),
            (Status::Reserved, Event::Replay, 0)
        );
        assert_eq!(
            s.plan_reserve(&id("a"), 5, Ttl::Default, NOW, &p),
            Err(Error::TxConflict { held: 4, asked: 5 })
        );
        assert_eq!(
            run(&mut s, |s| Ok(s.plan_confirm(&id("a"), NOW))),
            Status::Confirmed
        );
        let v = s.view(NOW);
        assert_eq!(
            (v.stock, v.reserved, v.available, v.sold, v.version),
            (6, 0, 6, 4, 3)
        );
        assert_eq!(s.plan_cancel(&id("a"), NOW).status, Status::Confirmed);
        assert_eq!(
            s.plan_reserve(&id("a"), 4, Ttl::Default, NOW, &p)
                .unwrap()
                .status,
            Status::Confirmed
        );
    }

    #[test]
    fn cancel_before_reserve_fences() {
        let p = Policy::default();
        let mut s = stocked(10);
        assert_eq!(
            run(&mut s, |s| Ok(s.plan_cancel(&id("late"), NOW))),
            Status::Cancelled
        );
        let plan = s
            .plan_reserve(&id("late"), 1, Ttl::Default, NOW, &p)
            .unwrap();
        assert_eq!(
            (plan.status, plan.event, plan.effects.len()),
            (Status::Cancelled, Event::Fenced, 0)
        );
        assert_eq!(s.view(NOW).available, 10);
    }

    #[test]
    fn due_records_count_as_expired_before_materialising() {
        let p = Policy::default();
        let mut s = stocked(5);
        run(&mut s, |s| {
            s.plan_reserve(&id("a"), 5, Ttl::Millis(100), NOW, &p)
        });
        let later = NOW + 100;
        let v = s.view(later);
        assert_eq!((v.available, v.reserved, v.open), (5, 0, 0));
        assert_eq!(s.tx(b"a", later).unwrap().state, State::Expired);
        assert_eq!(s.plan_confirm(&id("a"), later).status, Status::Expired);
        // A reserve that needs the units materialises the expiry first.
        let plan = s
            .plan_reserve(&id("b"), 5, Ttl::Default, later, &p)
            .unwrap();
        assert_eq!(plan.effects[0], Effect::Expire(vec![id("a")]));
        run(&mut s, |_| Ok(plan));
        s.audit().unwrap();
        assert_eq!(s.tx(b"a", later).unwrap().state, State::Expired);
    }

    #[test]
    fn apply_validates_before_changing() {
        let mut s = stocked(1);
        let before = s.header();
        assert!(s
            .apply(&Effect::Reserve {
                txid: id("x"),
                qty: 2,
                deadline: 1
            })
            .is_err());
        assert!(s.apply(&Effect::Expire(vec![id("nope")])).is_err());
        assert!(s.apply(&Effect::Stock(-1)).is_err());
        assert_eq!(s.header(), before);
    }

    #[test]
    fn a_bad_records_batch_changes_nothing() {
        let mut s = stocked(5);
        let part = |t: &str, state, qty| RecordParts {
            txid: id(t),
            state,
            qty,
            time: 1,
        };
        let good = vec![
            part("a", State::Reserved, 2),
            part("b", State::Confirmed, 1),
        ];
        s.apply(&Effect::Records(good)).unwrap();
        let before = s.header();
        for bad in [
            vec![
                part("c", State::Reserved, 1),
                part("c", State::Cancelled, 0),
            ],
            vec![part("d", State::Reserved, 1), part("a", State::Expired, 1)],
            vec![part("e", State::Reserved, 3), part("f", State::Reserved, 1)],
            vec![part("g", State::Reserved, 0)],
        ] {
            assert!(s.apply(&Effect::Records(bad)).is_err());
            assert_eq!((s.header(), s.reserved_raw()), (before, 2));
        }
        s.audit().unwrap();
    }

    #[test]
    fn ttl_bounds() {
        let p = Policy {
            max_ttl_ms: 1000,
            ..Policy::default()
        };
        assert!(p.deadline(Ttl::Millis(0), NOW).is_err());
        assert!(p.deadline(Ttl::Millis(1001), NOW).is_err());
        assert_eq!(p.deadline(Ttl::At(NOW + 1000), NOW), Ok(NOW + 1000));
        assert!(p.deadline(Ttl::At(NOW), NOW).is_err());
        assert_eq!(p.deadline(Ttl::Default, NOW), Ok(NOW + 1000));
    }
}

//! Planning: each command reads the key and the clock, applies policy (TTL
//! bounds, limits, idempotency rules) and returns the status to reply with
//! and the effects that would realise it. A plan never changes anything; the
//! effects it returns always apply (every bound `apply` checks is checked
//! here first), so a command applies all of its effects or, on an error,
//! none.
//!
//! A RESERVED record whose deadline has passed is expired for every reader
//! (`view`, `tx`, plans) even before an `Expire` effect materialises it.

use super::buyers::BuyerId;
use super::effect::Effect;
use super::error::{Error, Result};
use super::records::{State, MAX_RECORDS};
use super::sku::{Sku, MAX_AMOUNT};
use super::status::Status;
use super::txid::TxId;
use super::waiting::{Ahead, WaitQueue};

/// Most due records one command expires to make room for itself.
pub const MAX_EXPIRE_PER_COMMAND: usize = 1000;

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
    /// RESERVE refused: the buyer's limit.
    Limited,
    /// RESERVE refused: before the sale window.
    NotYet,
    /// RESERVE refused: after the sale window.
    Closed,
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
    pub(super) fn new(status: Status, event: Event) -> Plan {
        Plan {
            status,
            event,
            effects: Effects::new(),
        }
    }

    pub(super) fn with(mut self, effects: Effects) -> Plan {
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

/// What `plan_grant` decides for the front waiter of a queue.
#[derive(Debug)]
pub enum Grant {
    /// Its units are not there (or cannot be taken this turn): it keeps
    /// waiting, and so does everyone behind it.
    Wait,
    /// Its wait ends: the plan to commit (its reservation, or no effect)
    /// and the state it answers, or the error it answers.
    Done(Result<Plan>),
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

impl Sku {
    fn check_version(&self, expected: Option<u64>) -> Result<()> {
        match expected {
            Some(v) if v != self.version => Err(Error::Version {
                current: self.version,
                expected: v,
            }),
            _ => Ok(()),
        }
    }

    /// Due records to expire first so that `stock_after - reserved >= need`
    /// and, when `open_cap` is set, fewer than `open_cap` records stay open.
    /// The caller has checked, against the view, that expiring every due
    /// record would do; at most `MAX_EXPIRE_PER_COMMAND` are expired here,
    /// and when that is not enough the command is refused with TRYAGAIN
    /// (housekeeping expires the rest within milliseconds).
    pub(super) fn make_room(
        &self,
        stock_after: i64,
        need: i64,
        open_cap: u64,
        now: u64,
    ) -> Result<Effects> {
        let mut reserved = self.reserved;
        let mut open = self.open_raw();
        let done = |reserved: i64, open: u64| {
            stock_after - reserved >= need && (open_cap == 0 || open < open_cap)
        };
        if done(reserved, open) {
            return Ok(Effects::new());
        }
        let mut ids = Vec::new();
        self.records.visit_due(now, |slot| {
            if let Some(r) = self.records.get(slot) {
                ids.push(r.txid());
                reserved -= r.qty() as i64;
                open -= 1;
            }
            !done(reserved, open) && ids.len() < MAX_EXPIRE_PER_COMMAND
        });
        if !done(reserved, open) {
            return Err(Error::TryAgain(format!(
                "more than {MAX_EXPIRE_PER_COMMAND} reservations past their deadline must \
                 expire first; retry shortly"
            )));
        }
        Ok(smallvec::smallvec![Effect::ExpireFirst(ids)])
    }

    /// Refuses a stock that would take stock + sold past `MAX_AMOUNT`: a
    /// confirm moves units from stock to sold, so this bound is what keeps
    /// `sold` in range however many confirms follow.
    fn check_total(&self, stock_after: i64) -> Result<()> {
        let total = stock_after.saturating_add(self.sold);
        if total > MAX_AMOUNT {
            return Err(Error::invalid(format!(
                "stock {stock_after} and sold {} would total {total}, above the maximum \
                 {MAX_AMOUNT}",
                self.sold
            )));
        }
        Ok(())
    }

    /// Refuses a new record on a key that holds as many as a key can.
    fn check_room_for_record(&self) -> Result<()> {
        if self.records.len() >= MAX_RECORDS {
            return Err(Error::Full { max: MAX_RECORDS });
        }
        Ok(())
    }

    pub fn plan_set(&self, stock: i64, if_version: Option<u64>, now: u64) -> Result<Plan> {
        self.check_version(if_version)?;
        if self.version > 0 && stock == self.stock {
            return Ok(Plan::new(Status::Reserved, Event::Other));
        }
        self.check_total(stock)?;
        let view = self.view(now);
        if stock < view.reserved {
            return Err(Error::NoStock(format!(
                "stock {stock} is below the {} units held by open reservations",
                view.reserved
            )));
        }
        let mut effects = self.make_room(stock, 0, 0, now)?;
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
        self.check_total(after)?;
        if view.available + delta < 0 {
            return Err(Error::NoStock(format!(
                "cannot remove {} units: {} available",
                -delta, view.available
            )));
        }
        let mut effects = self.make_room(after, 0, 0, now)?;
        effects.push(Effect::Add(delta));
        Ok(Plan::new(Status::Reserved, Event::Other).with(effects))
    }

    /// A retry of a known txid answers its state whatever the time, the
    /// configs or the rules now; then the sale window, the buyer's limit
    /// and the stock decide, in that order, for a new reservation.
    pub fn plan_reserve(
        &self,
        txid: &TxId,
        qty: i64,
        ttl: Ttl,
        now: u64,
        policy: &Policy,
    ) -> Result<Plan> {
        self.plan_reserve_for(txid, qty, ttl, None, now, policy)
    }

    /// `plan_reserve` with `BUYER id`.
    pub fn plan_reserve_for(
        &self,
        txid: &TxId,
        qty: i64,
        ttl: Ttl,
        buyer: Option<&BuyerId>,
        now: u64,
        policy: &Policy,
    ) -> Result<Plan> {
        self.plan_reserve_behind(txid, qty, ttl, buyer, Ahead::NONE, now, policy)
    }

    /// `plan_reserve_for` on a key with a waiting room: while anyone waits
    /// (`ahead.queued`), a new reservation takes nothing (NOSTOCK), however
    /// many units are available, so no reserve overtakes the queue; the
    /// units its buyer waits for count against the limit. A known txid
    /// still answers its state first.
    #[allow(clippy::too_many_arguments)]
    pub fn plan_reserve_behind(
        &self,
        txid: &TxId,
        qty: i64,
        ttl: Ttl,
        buyer: Option<&BuyerId>,
        ahead: Ahead,
        now: u64,
        policy: &Policy,
    ) -> Result<Plan> {
        if let Some((state, held, _)) = self.lookup(txid.as_bytes(), now) {
            return self.retry(txid, state, held, qty, buyer);
        }
        let deadline = policy.deadline(ttl, now)?;
        let counted = qty.saturating_add(ahead.buyer_waiting);
        if let Some(refused) = self.sale_gate(buyer, counted, now)? {
            return Ok(refused);
        }
        let view = self.view(now);
        if ahead.queued || view.available < qty {
            return Ok(Plan::new(Status::NoStock, Event::NoStock));
        }
        let cap = policy.max_open_per_key;
        if cap > 0 && view.open >= cap {
            return Err(Error::Limit { max: cap });
        }
        self.check_room_for_record()?;
        let mut effects = self.make_room(self.stock, qty, cap, now)?;
        effects.push(Effect::Reserve {
            txid: txid.clone(),
            qty,
            deadline,
            buyer: buyer.cloned(),
        });
        Ok(Plan::new(Status::Reserved, Event::Reserve).with(effects))
    }

    /// What the front waiter of `queue` gets now (`None`: nobody waits):
    /// its reservation when its units are there (its TTL counted from now),
    /// `Grant::Wait` while they are not (it keeps waiting, and so does
    /// everyone behind it), or the answer that ends its wait otherwise: a
    /// rule that now refuses it, a txid that meanwhile got a state of its
    /// own, NOSTOCK once its PXAT has passed. (A wait whose BLOCK ended is
    /// taken out by `WaitQueue::pop_ended`.)
    pub fn plan_grant<H>(&self, queue: &WaitQueue<H>, now: u64, policy: &Policy) -> Option<Grant> {
        let w = queue.front()?;
        if matches!(w.ttl(), Ttl::At(at) if at <= now) {
            return Some(Grant::Done(Ok(Plan::new(Status::NoStock, Event::NoStock))));
        }
        let ahead = Ahead {
            queued: false,
            buyer_waiting: queue.others_of_buyer(w),
        };
        let plan = self.plan_reserve_behind(
            &w.txid,
            w.qty,
            w.ttl(),
            w.buyer.as_ref(),
            ahead,
            now,
            policy,
        );
        Some(match plan {
            Ok(p) if p.status == Status::NoStock => Grant::Wait,
            Err(Error::TryAgain(_)) => Grant::Wait,
            other => Grant::Done(other),
        })
    }

    pub fn plan_confirm(&self, txid: &TxId, now: u64) -> Plan {
        self.plan_confirm_qty(txid, None, now)
            .unwrap_or_else(|_| Plan::new(Status::Unknown, Event::Other))
    }

    pub fn plan_cancel(&self, txid: &TxId, now: u64) -> Result<Plan> {
        Ok(match self.lookup(txid.as_bytes(), now).map(|t| t.0) {
            None => {
                self.check_room_for_record()?;
                Plan::new(Status::Cancelled, Event::EmptyRollback).with(smallvec::smallvec![
                    Effect::Fence {
                        txid: txid.clone(),
                        at: now,
                    }
                ])
            }
            Some(State::Reserved) => Plan::new(Status::Cancelled, Event::Cancel)
                .with(smallvec::smallvec![Effect::Cancel(txid.clone())]),
            Some(State::Cancelled) => Plan::new(Status::Cancelled, Event::Replay),
            Some(other) => Plan::new(other.into(), Event::Other),
        })
    }

    /// Only a RESERVED record's TTL is checked: any other answers its state.
    pub fn plan_extend(&self, txid: &TxId, ttl_ms: u64, now: u64, policy: &Policy) -> Result<Plan> {
        Ok(match self.lookup(txid.as_bytes(), now) {
            None => Plan::new(Status::Unknown, Event::Other),
            Some((State::Reserved, _, time)) => {
                let deadline = policy.deadline(Ttl::Millis(ttl_ms), now)?;
                let plan = Plan::new(Status::Reserved, Event::Other);
                if time == deadline {
                    plan
                } else {
                    plan.with(smallvec::smallvec![Effect::Extend {
                        txid: txid.clone(),
                        deadline,
                    }])
                }
            }
            Some((state, _, _)) => Plan::new(state.into(), Event::Other),
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
                // One pass is one change: an expiry before a purge moves no version.
                if let Some(Effect::Expire(ids)) = effects.pop() {
                    effects.push(Effect::ExpireFirst(ids));
                }
                effects.push(Effect::Purge(old));
            }
        }
        effects
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

//! Flash-sale rules: the seller's rules of a key (a per-buyer limit, a sale
//! window), what they decide for a new reservation, partial confirms and
//! adjusting an open hold. Like `plan.rs`, planning here reads the key and
//! the clock and changes nothing.

use super::buyers::{BuyerId, BuyerView, MAX_BUYER_UNITS};
use super::effect::Effect;
use super::error::{Error, Result};
use super::plan::{Event, Plan};
use super::records::State;
use super::sku::{Sku, MAX_AMOUNT};
use super::status::Status;
use super::txid::TxId;
use super::MAX_TIME;

/// The seller's rules of a key; 0 means not set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Units one buyer may hold plus buy on the key.
    pub limit: u64,
    /// New reservations from this unix time in ms.
    pub start: u64,
    /// No new reservations from this unix time in ms.
    pub end: u64,
    /// Every change of the key appends entries to its feed stream
    /// (`feed.rs`).
    pub feed: bool,
    /// The feed's `lowstock` threshold: available units at or below it.
    pub low: u64,
}

impl Rules {
    /// The rules that are set, by name, in the order INV.GET shows them
    /// (`feed` as 1).
    pub fn set(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("limit", self.limit),
            ("start", self.start),
            ("end", self.end),
            ("feed", u64::from(self.feed)),
            ("low", self.low),
        ]
        .into_iter()
        .filter(|(_, v)| *v != 0)
    }

    /// Refuses values no INV.RULES can set.
    pub fn check(&self) -> Result<()> {
        if self.limit > MAX_BUYER_UNITS as u64 {
            return Err(Error::invalid(format!(
                "LIMIT must be 0 to {MAX_BUYER_UNITS}, got {}",
                self.limit
            )));
        }
        if self.start > MAX_TIME || self.end > MAX_TIME {
            return Err(Error::invalid("START and END must be unix times in ms"));
        }
        if self.low > MAX_AMOUNT as u64 {
            return Err(Error::invalid(format!(
                "LOW must be 0 to {MAX_AMOUNT}, got {}",
                self.low
            )));
        }
        if self.start != 0 && self.end != 0 && self.end <= self.start {
            return Err(Error::invalid(format!(
                "the sale window must end after it starts: START {} END {}",
                self.start, self.end
            )));
        }
        Ok(())
    }
}

/// INV.RULES as asked: `None` leaves a rule as it is, `Some(0)` clears it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RulesChange {
    pub limit: Option<u64>,
    pub start: Option<u64>,
    pub end: Option<u64>,
    /// `FEED ON|OFF`.
    pub feed: Option<bool>,
    pub low: Option<u64>,
    /// Clear every buyer's bought units (a new sale).
    pub new_sale: bool,
}

impl Sku {
    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// One buyer's held and bought units on this key.
    pub fn buyer(&self, id: &[u8]) -> BuyerView {
        self.buyers.view(id)
    }

    /// Every buyer's bought units in this sale, for persistence.
    pub fn buyer_parts(&self) -> impl Iterator<Item = (BuyerId, i64)> + '_ {
        self.buyers
            .iter()
            .filter(|(_, v)| v.bought != 0)
            .map(|(id, v)| (id, v.bought))
    }

    pub fn plan_rules(&self, change: &RulesChange) -> Result<Plan> {
        if self.version == 0 {
            return Err(Error::invalid(
                "INV.RULES needs an existing key: create it with INV.SET first",
            ));
        }
        let r = self.rules;
        let rules = Rules {
            limit: change.limit.unwrap_or(r.limit),
            start: change.start.unwrap_or(r.start),
            end: change.end.unwrap_or(r.end),
            feed: change.feed.unwrap_or(r.feed),
            low: change.low.unwrap_or(r.low),
        };
        rules.check()?;
        // A new sale changes something only where a buyer has bought.
        let new_sale = change.new_sale && self.buyer_parts().next().is_some();
        let plan = Plan::new(Status::Reserved, Event::Other);
        if rules == r && !new_sale {
            return Ok(plan);
        }
        Ok(plan.with(smallvec::smallvec![Effect::Rules { rules, new_sale }]))
    }

    /// What the rules answer a new reservation of `qty` for `buyer` at
    /// `now`, in the order the window, then the limit (`None`: go on).
    pub(super) fn sale_gate(
        &self,
        buyer: Option<&BuyerId>,
        qty: i64,
        now: u64,
    ) -> Result<Option<Plan>> {
        let r = self.rules;
        if r.start != 0 && now < r.start {
            return Ok(Some(Plan::new(Status::NotYet, Event::NotYet)));
        }
        if r.end != 0 && now >= r.end {
            return Ok(Some(Plan::new(Status::Closed, Event::Closed)));
        }
        let Some(b) = buyer else {
            if r.limit != 0 {
                return Err(Error::invalid(format!(
                    "this key has a per-buyer limit (INV.RULES LIMIT {}): a new reservation \
                     needs BUYER id",
                    r.limit
                )));
            }
            return Ok(None);
        };
        self.buyer_room(self.buyers.view(b.as_bytes()), qty, || {
            format!("buyer '{b}'")
        })
    }

    /// Whether a buyer (named by `who` in the error, made only then) with
    /// counters `v` may take `more` units: LIMITED past the key's limit, an
    /// error past the most one buyer can count (`None`: it may).
    fn buyer_room(
        &self,
        v: BuyerView,
        more: i64,
        who: impl FnOnce() -> String,
    ) -> Result<Option<Plan>> {
        let total = v.held + v.bought + more;
        if self.rules.limit != 0 && total > self.rules.limit as i64 {
            return Ok(Some(Plan::new(Status::Limited, Event::Limited)));
        }
        if total > MAX_BUYER_UNITS {
            return Err(Error::invalid(format!(
                "{} would hold and have bought {total} units of this key, above the \
                 maximum {MAX_BUYER_UNITS}",
                who()
            )));
        }
        Ok(None)
    }

    /// A known txid's answer to a reserve retry: its state, or a conflict
    /// when the quantity or the buyer differ from the open hold's.
    pub(super) fn retry(
        &self,
        txid: &TxId,
        state: State,
        held: i64,
        qty: i64,
        buyer: Option<&BuyerId>,
    ) -> Result<Plan> {
        if state != State::Reserved {
            return Ok(Plan::new(state.into(), Event::Fenced));
        }
        let first = self.alt_of(txid.as_bytes()).unwrap_or(held);
        if qty != held && qty != first {
            return Err(Error::TxConflict { held, asked: qty });
        }
        if let Some(b) = buyer {
            let holder = self.holder_of(txid.as_bytes());
            if holder.as_ref() != Some(b) {
                return Err(Error::Conflict(format!(
                    "txid '{txid}' is held for {}, not for buyer '{b}'",
                    holder.map_or("no buyer".to_string(), |h| format!("buyer '{h}'"))
                )));
            }
        }
        Ok(Plan::new(Status::Reserved, Event::Replay))
    }

    /// INV.CONFIRM with or without `QTY n`: sells n of the held units (all
    /// of them without QTY) and releases the rest.
    pub fn plan_confirm_qty(&self, txid: &TxId, qty: Option<i64>, now: u64) -> Result<Plan> {
        let Some((state, units, _)) = self.lookup(txid.as_bytes(), now) else {
            return Ok(Plan::new(Status::Unknown, Event::Other));
        };
        Ok(match state {
            State::Reserved => {
                let effect = match qty {
                    None => Effect::Confirm(txid.clone()),
                    Some(n) if n == units => Effect::Confirm(txid.clone()),
                    Some(n) if (1..units).contains(&n) => Effect::ConfirmPart {
                        txid: txid.clone(),
                        qty: n,
                    },
                    Some(n) => {
                        return Err(Error::invalid(format!(
                            "QTY must be 1 to the {units} units txid '{txid}' holds, got {n}"
                        )))
                    }
                };
                Plan::new(Status::Confirmed, Event::Confirm).with(smallvec::smallvec![effect])
            }
            State::Confirmed => match qty {
                Some(n) if n != units => {
                    let held = self.alt_of(txid.as_bytes()).unwrap_or(units);
                    return Err(Error::Conflict(format!(
                        "txid '{txid}' was confirmed for {units} of {held} units, not {n}"
                    )));
                }
                _ => Plan::new(Status::Confirmed, Event::Replay),
            },
            State::Expired => Plan::new(Status::Expired, Event::ConfirmLate),
            State::Cancelled => Plan::new(Status::Cancelled, Event::Other),
        })
    }

    /// INV.ADJUST: sets an open hold's quantity to `qty`, deadline kept.
    pub fn plan_adjust(&self, txid: &TxId, qty: i64, now: u64) -> Result<Plan> {
        let Some((state, held, _)) = self.lookup(txid.as_bytes(), now) else {
            return Ok(Plan::new(Status::Unknown, Event::Other));
        };
        if state != State::Reserved {
            return Ok(Plan::new(state.into(), Event::Other));
        }
        let plan = Plan::new(Status::Reserved, Event::Other);
        if qty == held {
            return Ok(plan);
        }
        if qty > held {
            let more = qty - held;
            if let Some(slot) = self.holder_slot(txid.as_bytes()) {
                let v = self.buyers.view_slot(slot);
                if let Some(refused) = self.buyer_room(v, more, || "the buyer".into())? {
                    return Ok(refused);
                }
            }
            if self.view(now).available < more {
                return Ok(Plan::new(Status::NoStock, Event::NoStock));
            }
            let mut effects = self.make_room(self.stock, more, 0, now)?;
            effects.push(Effect::Adjust {
                txid: txid.clone(),
                qty,
            });
            return Ok(plan.with(effects));
        }
        debug_assert!((1..=MAX_AMOUNT).contains(&qty));
        Ok(plan.with(smallvec::smallvec![Effect::Adjust {
            txid: txid.clone(),
            qty,
        }]))
    }

    /// Each buyer's held units match its open holds, and only open holds
    /// name a buyer.
    pub(super) fn audit_buyers(&self) -> Result<()> {
        let mut held: hashbrown::HashMap<u32, i64, ahash::RandomState> = Default::default();
        for (slot, r) in self.records.iter_from(0) {
            let Some(buyer) = self.records.tag(slot as u32).checked_sub(1) else {
                continue;
            };
            if r.state() != State::Reserved {
                return Err(Error::Drift(format!(
                    "'{}' names a buyer but is {:?}",
                    r.txid(),
                    r.state()
                )));
            }
            if self.buyers.id_at(buyer).is_none() {
                return Err(Error::Drift(format!("'{}' names no known buyer", r.txid())));
            }
            *held.entry(buyer).or_default() += r.qty() as i64;
        }
        for (slot, units) in &held {
            let v = self.buyers.view_slot(*slot);
            if v.held != *units {
                return Err(Error::Drift(format!(
                    "a buyer holds {} units but its open reservations hold {units}",
                    v.held
                )));
            }
        }
        let counted = self.buyers.iter().filter(|(_, v)| v.held != 0).count();
        if counted != held.len() {
            return Err(Error::Drift(format!(
                "{counted} buyers hold units but {} have open reservations",
                held.len()
            )));
        }
        self.buyers
            .check()
            .map_err(|e| Error::Drift(format!("buyer index out of step: {e}")))
    }
}

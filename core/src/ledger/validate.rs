//! When an effect fits a key: `validate`, the one statement of it, shared
//! by `Sku::apply` (apply.rs), which validates then performs one effect, and
//! by `check`, which validates a whole list as if each were applied in turn
//! and changes nothing. A commit of several effects, or of several keys,
//! checks everything first, so it applies all or nothing.

use super::buyers::MAX_BUYER_UNITS;
use super::effect::Effect;
use super::error::{Error, Result};
use super::records::{State, MAX_RECORDS};
use super::sku::{Sku, MAX_AMOUNT};
use super::txid::TxId;
use std::collections::HashMap;

/// Latest time a record may hold (replies carry times as signed integers).
pub const MAX_TIME: u64 = i64::MAX as u64;
/// Highest version (replies carry it as a signed integer).
pub const MAX_VERSION: u64 = i64::MAX as u64;

/// The counters an effect changes, as `validate` computes them.
#[derive(Clone, Copy)]
pub(super) struct Counters {
    pub(super) stock: i64,
    pub(super) reserved: i64,
    pub(super) sold: i64,
    pub(super) records: usize,
}

pub(super) fn apply_err(msg: String) -> Error {
    Error::Apply(msg)
}

impl Counters {
    /// Stock set to `stock`: within its range, not below what open
    /// reservations hold, and stock + sold (the units that ever entered the
    /// key, which a confirm only moves from one to the other) within range.
    fn with_stock(self, stock: i64) -> Result<Counters> {
        if !(0..=MAX_AMOUNT).contains(&stock) {
            return Err(apply_err(format!("stock {stock} out of range")));
        }
        if stock < self.reserved {
            return Err(apply_err(format!(
                "stock {stock} below reserved {}",
                self.reserved
            )));
        }
        // Both terms are at most MAX_AMOUNT, so the sum cannot overflow.
        if stock + self.sold > MAX_AMOUNT {
            return Err(apply_err(format!(
                "stock + sold would be {}, above {MAX_AMOUNT}",
                stock + self.sold
            )));
        }
        Ok(Counters { stock, ..self })
    }

    #[inline(always)]
    fn with_record(self) -> Result<Counters> {
        if self.records >= MAX_RECORDS {
            return Err(apply_err("too many records".into()));
        }
        Ok(Counters {
            records: self.records + 1,
            ..self
        })
    }
}

pub(super) fn exists(txid: &TxId) -> Error {
    apply_err(format!("txid '{txid}' exists"))
}

fn time(t: u64) -> Result<u64> {
    if t > MAX_TIME {
        return Err(apply_err(format!("time {t} out of range")));
    }
    Ok(t)
}

/// Records changed by earlier effects of the list `check` walks: a txid's
/// state and qty as they left it (`None`: removed).
type Overlay<'e> = HashMap<&'e [u8], Option<(State, i64)>>;

/// A record as `validate` sees it: where it lives (`None` for one that only
/// an earlier effect of the checked list created), its state and qty.
#[derive(Clone, Copy)]
struct Found {
    slot: Option<u32>,
    state: State,
    qty: i64,
}

/// What `perform` needs beyond the effect: the validated counters and the
/// slots `validate` found.
pub(super) struct Valid {
    pub(super) counters: Counters,
    pub(super) slots: Vec<u32>,
}

impl Sku {
    #[inline]
    pub(super) fn counters(&self) -> Counters {
        Counters {
            stock: self.stock,
            reserved: self.reserved,
            sold: self.sold,
            records: self.records.len(),
        }
    }

    #[inline(always)]
    fn found(&self, txid: &[u8], overlay: Option<&Overlay>) -> Option<Found> {
        if let Some(changed) = overlay.and_then(|o| o.get(txid)) {
            return changed.map(|(state, qty)| Found {
                slot: None,
                state,
                qty,
            });
        }
        let slot = self.records.find(txid)?;
        let r = self.records.get(slot)?;
        Some(Found {
            slot: Some(slot),
            state: r.state(),
            qty: r.qty() as i64,
        })
    }

    #[inline]
    fn reserved_record(&self, txid: &TxId, overlay: Option<&Overlay>) -> Result<Found> {
        match self.found(txid.as_bytes(), overlay) {
            None => Err(apply_err(format!("unknown txid '{txid}'"))),
            Some(f) if f.state == State::Reserved => Ok(f),
            Some(_) => Err(apply_err(format!("txid '{txid}' is not RESERVED"))),
        }
    }

    /// A txid that an effect adds must be new. Checking a list, it is looked
    /// up (and noted as added); applying one effect, the insert itself finds
    /// it (its probe changes nothing when the txid exists), which saves a
    /// lookup on every reserve.
    #[inline(always)]
    fn new_txid<'e>(
        &self,
        txid: &'e TxId,
        overlay: Option<&mut Overlay<'e>>,
        added: (State, i64),
    ) -> Result<()> {
        if let Some(o) = overlay {
            if self.found(txid.as_bytes(), Some(o)).is_some() {
                return Err(exists(txid));
            }
            o.insert(txid.as_bytes(), Some(added));
        }
        Ok(())
    }

    /// Every id names a distinct record that passes `ok`; their units.
    fn all_in<'e>(
        &self,
        ids: &'e [TxId],
        ok: fn(State) -> bool,
        what: &str,
        overlay: &mut Option<&mut Overlay<'e>>,
        after: Option<State>,
    ) -> Result<(i64, Vec<u32>)> {
        let mut units = 0i64;
        let mut slots = Vec::with_capacity(ids.len());
        for id in ids {
            let f = self
                .found(id.as_bytes(), overlay.as_deref())
                .filter(|f| ok(f.state))
                .ok_or_else(|| apply_err(format!("txid '{id}' is not {what}")))?;
            units = units.saturating_add(f.qty);
            slots.extend(f.slot);
            // Checking a list: a txid listed twice is found changed the second time.
            if let Some(o) = overlay.as_deref_mut() {
                o.insert(id.as_bytes(), after.map(|s| (s, f.qty)));
            }
        }
        if overlay.is_none() {
            slots.sort_unstable();
            if slots.windows(2).any(|w| w[0] == w[1]) {
                return Err(apply_err("txid listed twice".into()));
            }
        }
        Ok((units, slots))
    }

    /// Whether `e` fits counters `c` and the records (as `overlay` says
    /// earlier effects changed them), and what it leaves. With an overlay,
    /// records `e` changes are noted in it.
    // Inlined into `apply` (the hot path), where the overlay is known to be
    // absent and its branches fold away.
    #[inline(always)]
    pub(super) fn validate<'e>(
        &self,
        c: Counters,
        e: &'e Effect,
        mut overlay: Option<&mut Overlay<'e>>,
    ) -> Result<Valid> {
        let (counters, slots) = match e {
            Effect::Stock(stock) => (c.with_stock(*stock)?, Vec::new()),
            Effect::Add(delta) => {
                let after = c
                    .stock
                    .checked_add(*delta)
                    .ok_or_else(|| apply_err("stock overflow".into()))?;
                (c.with_stock(after)?, Vec::new())
            }
            Effect::Reserve {
                txid,
                qty,
                deadline,
                buyer,
            } => {
                time(*deadline)?;
                if !(1..=MAX_AMOUNT).contains(qty) || c.stock - c.reserved < *qty {
                    return Err(apply_err(format!("cannot reserve {qty}")));
                }
                // Applying one effect, `perform` checks the buyer's bound
                // with the lookup it needs anyway.
                if let (Some(b), true) = (buyer, overlay.is_some()) {
                    let v = self.buyers.view(b.as_bytes());
                    if v.held + v.bought + qty > MAX_BUYER_UNITS {
                        return Err(apply_err(format!(
                            "buyer '{b}' would pass {MAX_BUYER_UNITS} units"
                        )));
                    }
                }
                self.new_txid(txid, overlay.as_deref_mut(), (State::Reserved, *qty))?;
                let c = c.with_record()?;
                (
                    Counters {
                        reserved: c.reserved + qty,
                        ..c
                    },
                    Vec::new(),
                )
            }
            Effect::Confirm(txid) => {
                let f = self.reserved_record(txid, overlay.as_deref())?;
                let sold = c
                    .sold
                    .checked_add(f.qty)
                    .filter(|s| *s <= MAX_AMOUNT)
                    .ok_or_else(|| apply_err("sold out of range".into()))?;
                if let Some(o) = overlay.as_deref_mut() {
                    o.insert(txid.as_bytes(), Some((State::Confirmed, f.qty)));
                }
                let counters = Counters {
                    stock: c.stock - f.qty,
                    reserved: c.reserved - f.qty,
                    sold,
                    ..c
                };
                (counters, f.slot.into_iter().collect())
            }
            Effect::ConfirmPart { txid, qty } => {
                let f = self.reserved_record(txid, overlay.as_deref())?;
                if !(1..f.qty).contains(qty) {
                    return Err(apply_err(format!("cannot confirm {qty} of {}", f.qty)));
                }
                let sold = c
                    .sold
                    .checked_add(*qty)
                    .filter(|s| *s <= MAX_AMOUNT)
                    .ok_or_else(|| apply_err("sold out of range".into()))?;
                if let Some(o) = overlay.as_deref_mut() {
                    o.insert(txid.as_bytes(), Some((State::Confirmed, *qty)));
                }
                let counters = Counters {
                    stock: c.stock - qty,
                    reserved: c.reserved - f.qty,
                    sold,
                    ..c
                };
                (counters, f.slot.into_iter().collect())
            }
            Effect::Adjust { txid, qty } => {
                let f = self.reserved_record(txid, overlay.as_deref())?;
                let more = qty - f.qty;
                if !(1..=MAX_AMOUNT).contains(qty) || (more > 0 && c.stock - c.reserved < more) {
                    return Err(apply_err(format!("cannot adjust to {qty}")));
                }
                if let Some(slot) = f.slot.and_then(|s| self.buyer_at(s)) {
                    let v = self.buyers.view_slot(slot);
                    if v.held + v.bought + more > MAX_BUYER_UNITS {
                        return Err(apply_err(format!(
                            "the buyer would pass {MAX_BUYER_UNITS} units"
                        )));
                    }
                }
                if let Some(o) = overlay.as_deref_mut() {
                    o.insert(txid.as_bytes(), Some((State::Reserved, *qty)));
                }
                let counters = Counters {
                    reserved: c.reserved + more,
                    ..c
                };
                (counters, f.slot.into_iter().collect())
            }
            Effect::Rules { rules, .. } => {
                rules.check().map_err(|e| apply_err(e.to_string()))?;
                (c, Vec::new())
            }
            Effect::Cancel(txid) => {
                let f = self.reserved_record(txid, overlay.as_deref())?;
                if let Some(o) = overlay.as_deref_mut() {
                    o.insert(txid.as_bytes(), Some((State::Cancelled, f.qty)));
                }
                let counters = Counters {
                    reserved: c.reserved - f.qty,
                    ..c
                };
                (counters, f.slot.into_iter().collect())
            }
            Effect::Fence { txid, at } => {
                time(*at)?;
                self.new_txid(txid, overlay.as_deref_mut(), (State::Cancelled, 0))?;
                (c.with_record()?, Vec::new())
            }
            Effect::Extend { txid, deadline } => {
                time(*deadline)?;
                let f = self.reserved_record(txid, overlay.as_deref())?;
                (c, f.slot.into_iter().collect())
            }
            Effect::Expire(ids) | Effect::ExpireFirst(ids) => {
                let (units, slots) = self.all_in(
                    ids,
                    |s| s == State::Reserved,
                    "RESERVED",
                    &mut overlay,
                    Some(State::Expired),
                )?;
                let counters = Counters {
                    reserved: c.reserved - units,
                    ..c
                };
                (counters, slots)
            }
            Effect::Purge(ids) => {
                let (_, slots) = self.all_in(
                    ids,
                    |s| s != State::Reserved,
                    "finished",
                    &mut overlay,
                    None,
                )?;
                let counters = Counters {
                    records: c.records - ids.len(),
                    ..c
                };
                (counters, slots)
            }
            // Whole-key loads (AOF rewrite) are validated by restore.
            Effect::Load { .. } | Effect::Records(_) | Effect::Buyers(_) => (c, Vec::new()),
        };
        Ok(Valid { counters, slots })
    }

    /// Checks that `effects`, applied in this order, all apply; changes
    /// nothing.
    pub fn check(&self, effects: &[Effect]) -> Result<()> {
        let mut c = self.counters();
        let mut overlay = Overlay::new();
        for e in effects {
            c = self.validate(c, e, Some(&mut overlay))?.counters;
        }
        Ok(())
    }
}

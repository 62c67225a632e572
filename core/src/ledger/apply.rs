//! Applying effects: `apply` validates one effect (validate.rs) and then
//! performs it; nothing changes unless the whole effect fits.
//!
//! Applying never reads a clock or a config, so a master, its replicas and
//! an AOF replay that apply the same effects reach the same state.

use super::buyers::MAX_BUYER_UNITS;
use super::effect::Effect;
use super::error::Result;
use super::records::{Insert, State};
use super::sku::{Header, Sku};
use super::txid::TxId;
use super::validate::{apply_err, exists, Valid, MAX_VERSION};

impl Sku {
    /// Performs one effect. Validates everything before changing anything,
    /// so an error leaves the SKU untouched.
    pub fn apply(&mut self, effect: &Effect) -> Result<()> {
        match effect {
            Effect::Load {
                stock,
                sold,
                version,
                rules,
            } => {
                rules.check().map_err(|e| apply_err(e.to_string()))?;
                *self = Sku::from_header(Header {
                    stock: *stock,
                    sold: *sold,
                    version: *version,
                    records: 0,
                })
                .map_err(|e| apply_err(e.to_string()))?;
                self.rules = *rules;
                return Ok(());
            }
            Effect::Records(parts) => {
                return self
                    .restore_records(parts)
                    .map_err(|e| apply_err(e.to_string()));
            }
            Effect::Buyers(list) => {
                return self
                    .restore_buyers(list)
                    .map_err(|e| apply_err(e.to_string()));
            }
            _ => {}
        }
        let valid = self.validate(self.counters(), effect, None)?;
        self.perform(effect, valid)?;
        if !matches!(effect, Effect::ExpireFirst(_)) {
            self.version = self.version.saturating_add(1).min(MAX_VERSION);
        }
        Ok(())
    }

    /// The hold in record `slot` ends (call before its state changes): its
    /// buyer, if any, gets the held units back and counts `sold` as bought;
    /// its second quantity goes. Returns the units it held.
    fn finish_hold(&mut self, slot: u32, sold: Option<i64>) -> i64 {
        let Some(r) = self.records.get(slot) else {
            return 0;
        };
        let held = r.qty() as i64;
        let tag = self.records.tag(slot);
        if tag != 0 {
            self.records.set_tag(slot, 0);
            let buyer = tag - 1;
            let sold = sold.unwrap_or(0);
            if sold > 0 {
                self.buyers.add_bought(buyer, sold);
            }
            self.buyers.add_held(buyer, -held);
        }
        if !self.alt.is_empty() {
            if let Some(r) = self.records.get(slot) {
                let txid = r.txid_bytes().to_vec();
                self.alt.remove(txid.as_slice());
            }
        }
        held
    }

    /// The buyer slot the open hold in record `slot` counts against.
    pub(super) fn buyer_at(&self, slot: u32) -> Option<u32> {
        self.records.tag(slot).checked_sub(1)
    }

    /// Changes the records as a validated effect says, then the counters.
    /// Fails, changing nothing, only on a txid an effect adds that exists
    /// (the one check `validate` leaves to the insert).
    fn perform(&mut self, effect: &Effect, valid: Valid) -> Result<()> {
        let added = |insert: Insert, txid: &TxId| match insert {
            Insert::Added => Ok(()),
            Insert::Exists => Err(exists(txid)),
            // Validated: there is room.
            Insert::Full => Err(apply_err("too many records".into())),
        };
        match effect {
            Effect::Reserve {
                txid,
                qty,
                deadline,
                buyer,
            } => {
                // The buyer's bound is checked here, before the record is
                // added (validate leaves it to this one lookup).
                let buyer_slot = match buyer {
                    Some(b) => {
                        let slot = self.buyers.slot_for(b);
                        let v = self.buyers.view_slot(slot);
                        if v.held + v.bought + qty > MAX_BUYER_UNITS {
                            self.buyers.add_held(slot, 0);
                            return Err(apply_err(format!(
                                "buyer '{b}' would pass {MAX_BUYER_UNITS} units"
                            )));
                        }
                        Some(slot)
                    }
                    None => None,
                };
                let tag = buyer_slot.map_or(0, |b| b + 1);
                let inserted =
                    self.records
                        .insert_tagged(txid, State::Reserved, *qty as u64, *deadline, tag);
                if let Some(b) = buyer_slot {
                    // An entry made for a reserve that did not happen goes.
                    let units = if inserted == Insert::Added { *qty } else { 0 };
                    self.buyers.add_held(b, units);
                }
                added(inserted, txid)?;
            }
            Effect::Fence { txid, at } => {
                added(self.records.insert(txid, State::Cancelled, 0, *at), txid)?
            }
            Effect::Confirm(_) => {
                for &s in &valid.slots {
                    let held = self.records.get(s).map_or(0, |x| x.qty() as i64);
                    self.finish_hold(s, Some(held));
                    self.records.set_state(s, State::Confirmed);
                }
            }
            Effect::ConfirmPart { txid, qty } => {
                for &s in &valid.slots {
                    let held = self.finish_hold(s, Some(*qty));
                    self.records.set_state(s, State::Confirmed);
                    self.records.set_qty(s, *qty as u64);
                    self.alt.insert(txid.clone(), held);
                }
            }
            Effect::Adjust { txid, qty } => {
                for &s in &valid.slots {
                    let held = self.records.get(s).map_or(0, |x| x.qty() as i64);
                    self.records.set_qty(s, *qty as u64);
                    if let Some(b) = self.buyer_at(s) {
                        self.buyers.add_held(b, qty - held);
                    }
                    let first = self.alt_of(txid.as_bytes()).unwrap_or(held);
                    if first == *qty {
                        self.alt.remove(txid.as_bytes());
                    } else {
                        self.alt.insert(txid.clone(), first);
                    }
                }
            }
            Effect::Cancel(_) => {
                for &s in &valid.slots {
                    self.finish_hold(s, None);
                    self.records.set_state(s, State::Cancelled);
                }
            }
            Effect::Extend { deadline, .. } => valid
                .slots
                .iter()
                .for_each(|&s| self.records.set_time(s, *deadline)),
            Effect::Expire(_) | Effect::ExpireFirst(_) => {
                for &s in &valid.slots {
                    self.finish_hold(s, None);
                    self.records.set_state(s, State::Expired);
                }
            }
            Effect::Purge(ids) => {
                valid.slots.iter().for_each(|&s| self.records.remove(s));
                self.records.after_removals();
                if !self.alt.is_empty() {
                    for id in ids {
                        self.alt.remove(id.as_bytes());
                    }
                }
            }
            Effect::Rules { rules, new_sale } => {
                self.rules = *rules;
                if *new_sale {
                    self.buyers.new_sale();
                }
            }
            Effect::Stock(_)
            | Effect::Add(_)
            | Effect::Load { .. }
            | Effect::Records(_)
            | Effect::Buyers(_) => {}
        }
        let c = valid.counters;
        (self.stock, self.reserved, self.sold) = (c.stock, c.reserved, c.sold);
        Ok(())
    }
}

//! Loading a key as persisted (RDB, DUMP/RESTORE, MIGRATE, AOF rewrite):
//! every value is checked against what commands can produce, so a malformed
//! payload is refused whole, never loaded in part.

use super::buyers::{BuyerId, MAX_BUYER_UNITS};
use super::effect::RecordParts;
use super::error::{Error, Result};
use super::records::{Insert, State, MAX_RECORDS};
use super::sku::{Header, Sku, MAX_AMOUNT};
use super::validate::{MAX_TIME, MAX_VERSION};

impl Sku {
    /// An SKU with these counters and no records yet (loading). Refuses any
    /// counter no sequence of commands can produce.
    pub fn from_header(h: Header) -> Result<Sku> {
        let in_range = |v: i64| (0..=MAX_AMOUNT).contains(&v);
        if !in_range(h.stock) {
            return Err(Error::invalid("stock out of range"));
        }
        if !in_range(h.sold) || !in_range(h.stock + h.sold) {
            return Err(Error::invalid("sold out of range"));
        }
        if !(1..=MAX_VERSION).contains(&h.version) {
            return Err(Error::invalid("version out of range"));
        }
        if h.records > MAX_RECORDS as u64 {
            return Err(Error::invalid("record count out of range"));
        }
        let mut sku = Sku {
            stock: h.stock,
            sold: h.sold,
            version: h.version,
            ..Sku::default()
        };
        // Never trust a count from a payload with a large allocation.
        sku.records.reserve((h.records as usize).min(1 << 16));
        Ok(sku)
    }

    /// A loaded record's quantity, if valid for its state, after checking
    /// its time too.
    fn record_qty(p: &RecordParts) -> Result<i64> {
        let min_qty = if p.state == State::Cancelled { 0 } else { 1 };
        if !(min_qty..=MAX_AMOUNT).contains(&p.qty) {
            return Err(Error::invalid("record qty out of range"));
        }
        if p.time > MAX_TIME {
            return Err(Error::invalid("record time out of range"));
        }
        if p.buyer.is_some() && p.state != State::Reserved {
            return Err(Error::invalid("only an open record has a buyer"));
        }
        let alt_ok = match p.state {
            _ if p.alt == 0 => true,
            State::Reserved => (1..=MAX_AMOUNT).contains(&p.alt),
            State::Confirmed => p.alt > p.qty && p.alt <= MAX_AMOUNT,
            _ => false,
        };
        if !alt_ok {
            return Err(Error::invalid("record's second quantity out of range"));
        }
        Ok(p.qty)
    }

    /// Sets buyers' bought units, all or nothing.
    pub fn restore_buyers(&mut self, list: &[(BuyerId, i64)]) -> Result<()> {
        for (b, bought) in list {
            let v = self.buyers.view(b.as_bytes());
            if !(1..=MAX_BUYER_UNITS).contains(bought) || v.held + bought > MAX_BUYER_UNITS {
                return Err(Error::invalid("buyer's bought units out of range"));
            }
        }
        for (b, bought) in list {
            self.buyers.set_bought(b, *bought);
        }
        Ok(())
    }

    /// Adds a batch of records all or nothing: everything is checked
    /// against the key and the batch first, then inserted, so no copy of the
    /// key is needed (AOF rewrites replay thousands of batches on big keys).
    pub fn restore_records(&mut self, parts: &[RecordParts]) -> Result<()> {
        let mut reserved = self.reserved;
        let mut seen = std::collections::HashSet::with_capacity(parts.len());
        let mut buyers: std::collections::HashMap<&[u8], i64> = Default::default();
        for p in parts {
            let qty = Self::record_qty(p)?;
            if let Some(b) = &p.buyer {
                let units = buyers.entry(b.as_bytes()).or_insert_with(|| {
                    let v = self.buyers.view(b.as_bytes());
                    v.held + v.bought
                });
                *units += qty;
                if *units > MAX_BUYER_UNITS {
                    return Err(Error::invalid("buyer's units out of range"));
                }
            }
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
        if let Some(b) = &p.buyer {
            let v = self.buyers.view(b.as_bytes());
            if v.held + v.bought + qty > MAX_BUYER_UNITS {
                return Err(Error::invalid("buyer's units out of range"));
            }
        }
        let buyer = p.buyer.as_ref().map(|b| self.buyers.slot_for(b));
        let tag = buyer.map_or(0, |b| b + 1);
        let inserted = self
            .records
            .insert_tagged(&p.txid, p.state, qty as u64, p.time, tag);
        if let Some(b) = buyer {
            let units = if inserted == Insert::Added { qty } else { 0 };
            self.buyers.add_held(b, units);
        }
        match inserted {
            Insert::Added => {}
            Insert::Exists => return Err(Error::invalid("duplicate txid")),
            Insert::Full => return Err(Error::invalid("too many records")),
        }
        if p.state == State::Reserved {
            self.reserved += qty;
        }
        if p.alt != 0 {
            self.alt.insert(p.txid, p.alt);
        }
        Ok(())
    }
}

//! Parsers of the flash-sale commands and options: INV.CONFIRM's `QTY`,
//! INV.ADJUST, INV.RULES, INV.BUYER, INV.MCONFIRM's per-key `QTY`, and
//! where the keys of the multi-key commands are (their key positions move
//! with their options, so the server asks the module: `getkeys-api`).

use super::{key_count, Arg, Args};
use crate::ledger::{BuyerId, Error, Result, RulesChange, TxId, MAX_AMOUNT, MAX_TIME};

/// `INV.CONFIRM key txid [QTY n]`
#[derive(Debug, PartialEq, Eq)]
pub struct Confirm<A> {
    pub key: A,
    pub txid: TxId,
    pub txid_arg: A,
    pub qty: Option<i64>,
}

/// `INV.ADJUST key txid qty`
#[derive(Debug, PartialEq, Eq)]
pub struct Adjust<A> {
    pub key: A,
    pub txid: TxId,
    pub txid_arg: A,
    pub qty: i64,
}

/// `INV.RULES key [LIMIT n] [START unix-ms] [END unix-ms] [FEED ON|OFF]
/// [LOW n] [NEWSALE]`
#[derive(Debug, PartialEq, Eq)]
pub struct Rules<A> {
    pub key: A,
    pub change: RulesChange,
}

/// `INV.BUYER key buyer`
#[derive(Debug, PartialEq, Eq)]
pub struct Buyer<A> {
    pub key: A,
    pub buyer: BuyerId,
}

/// `INV.MCONFIRM txid key [QTY n] [key [QTY n] ...]`: distinct keys in
/// first-seen order, each with the units to sell (all held when absent).
#[derive(Debug, PartialEq, Eq)]
pub struct MConfirm<A> {
    pub txid: TxId,
    pub items: Vec<(A, Option<i64>)>,
}

const RULES: &str = "LIMIT n, START unix-ms, END unix-ms, FEED ON|OFF, LOW n, NEWSALE";

impl<A: Arg> Args<'_, A> {
    /// `QTY n` when the next word is QTY.
    fn qty_option(&mut self) -> Result<Option<i64>> {
        match self.items.get(self.pos) {
            Some(w) if w.bytes().eq_ignore_ascii_case(b"QTY") => {
                self.pos += 1;
                Ok(Some(self.int_in("QTY", 1, MAX_AMOUNT)?.0))
            }
            _ => Ok(None),
        }
    }

    /// `ON` or `OFF` after the option `what`.
    fn switch(&mut self, what: &str) -> Result<bool> {
        let w = self.arg()?;
        match w.bytes() {
            b if b.eq_ignore_ascii_case(b"ON") => Ok(true),
            b if b.eq_ignore_ascii_case(b"OFF") => Ok(false),
            _ => Err(Error::invalid(format!("{what} takes ON or OFF"))),
        }
    }

    fn time(&mut self, what: &str) -> Result<u64> {
        Ok(self.int_in(what, 0, MAX_TIME as i64)?.0 as u64)
    }
}

pub fn confirm<A: Arg>(a: &[A]) -> Result<Confirm<A>> {
    let mut a = Args::new("inv.confirm", a, 2, 4)?;
    let key = a.arg()?;
    let (txid, txid_arg) = a.txid()?;
    let qty = a.qty_option()?;
    a.finish()?;
    Ok(Confirm {
        key,
        txid,
        txid_arg,
        qty,
    })
}

pub fn adjust<A: Arg>(a: &[A]) -> Result<Adjust<A>> {
    let mut a = Args::new("inv.adjust", a, 3, 3)?;
    let key = a.arg()?;
    let (txid, txid_arg) = a.txid()?;
    let (qty, _) = a.qty()?;
    a.finish()?;
    Ok(Adjust {
        key,
        txid,
        txid_arg,
        qty,
    })
}

pub fn rules<A: Arg>(a: &[A]) -> Result<Rules<A>> {
    let mut a = Args::new("inv.rules", a, 2, 12)?;
    let key = a.arg()?;
    let mut c = RulesChange::default();
    while let Some(w) = a.next() {
        let word = w.bytes();
        let is = |name: &str| word.eq_ignore_ascii_case(name.as_bytes());
        if is("LIMIT") && c.limit.is_none() {
            c.limit = Some(a.int_in("LIMIT", 0, crate::ledger::MAX_BUYER_UNITS)?.0 as u64);
        } else if is("START") && c.start.is_none() {
            c.start = Some(a.time("START")?);
        } else if is("END") && c.end.is_none() {
            c.end = Some(a.time("END")?);
        } else if is("FEED") && c.feed.is_none() {
            c.feed = Some(a.switch("FEED")?);
        } else if is("LOW") && c.low.is_none() {
            c.low = Some(a.int_in("LOW", 0, MAX_AMOUNT)?.0 as u64);
        } else if is("NEWSALE") && !c.new_sale {
            c.new_sale = true;
        } else {
            return Err(a.unknown(word, RULES));
        }
    }
    a.finish()?;
    Ok(Rules { key, change: c })
}

pub fn buyer<A: Arg>(a: &[A]) -> Result<Buyer<A>> {
    let mut a = Args::new("inv.buyer", a, 2, 2)?;
    let key = a.arg()?;
    let (buyer, _) = a.buyer()?;
    a.finish()?;
    Ok(Buyer { key, buyer })
}

pub fn mconfirm<A: Arg>(a: &[A], max_keys: usize) -> Result<MConfirm<A>> {
    let mut a = Args::new("inv.mconfirm", a, 2, usize::MAX)?;
    let (txid, _) = a.txid()?;
    let mut items: Vec<(A, Option<i64>)> = Vec::new();
    let mut seen: ahash::AHashMap<&[u8], usize> = ahash::AHashMap::new();
    let all = a.items;
    while a.remaining() > 0 {
        let i = a.pos;
        let key = a.arg()?;
        let qty = a.qty_option()?;
        let bytes = all.get(i).map_or(&[][..], Arg::bytes);
        match seen.get(bytes).and_then(|&i| items.get(i)) {
            Some((_, q)) if *q != qty => {
                return Err(Error::invalid(
                    "a key named twice in 'inv.mconfirm' must name the same QTY",
                ))
            }
            Some(_) => {}
            None => {
                seen.insert(bytes, items.len());
                items.push((key, qty));
            }
        }
        key_count("inv.mconfirm", items.len(), max_keys)?;
    }
    a.finish()?;
    Ok(MConfirm { txid, items })
}

/// Arguments before INV.MRESERVE's first key: `txid ttl-ms` (2) or
/// `txid BUYER id ttl-ms` (4). The old form's second argument is a number,
/// so the word BUYER there is never a TTL.
pub fn mreserve_head<A: Arg>(a: &[A]) -> usize {
    match a.get(1) {
        Some(w) if w.bytes().eq_ignore_ascii_case(b"BUYER") => 4,
        _ => 2,
    }
}

/// Where INV.MRESERVE's keys are, as indexes of the arguments after the
/// command name (for the server's key lookups, which run before parsing:
/// a malformed call gets the positions its shape suggests and then its
/// error from the parser).
pub fn mreserve_keys<A: Arg>(a: &[A]) -> Vec<usize> {
    (mreserve_head(a)..a.len()).step_by(2).collect()
}

/// Where INV.MCONFIRM's keys are: after the txid, every argument that is
/// not a `QTY n` option. A key named QTY is read as a key only right after
/// the txid or after another key's `QTY n`.
pub fn mconfirm_keys<A: Arg>(a: &[A]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 1;
    while i < a.len() {
        out.push(i);
        i += 1;
        if a.get(i)
            .is_some_and(|w| w.bytes().eq_ignore_ascii_case(b"QTY"))
        {
            i += 2;
        }
    }
    out
}

//! Typed parsing of every command's arguments. Pure: the exact error texts
//! are unit-tested without a server. A parser takes the arguments after the
//! command name as handles of any type that shows its bytes (`Arg`): the
//! parsed command keeps the handles of the arguments it needs, so the shell
//! opens its key, prefetches its txid and echoes its strings into
//! replication through them, never by position. Each parser consumes its
//! arguments and ends with one `finish()`, which rejects anything left over.

use crate::ledger::{
    quote, BuyerId, Effect, Error, FeedStamp, Result, StreamId, Ttl, TxId, MAX_AMOUNT,
};

/// One argument as the parsers see it: a handle to its bytes.
pub trait Arg: Copy {
    fn bytes(&self) -> &[u8];
}

impl Arg for &[u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Cursor over one command's arguments (the command name excluded).
pub struct Args<'a, A> {
    cmd: &'static str,
    items: &'a [A],
    pos: usize,
}

/// A decimal integer: optional sign, then digits only, at most 19 of them
/// (what any i64 needs), read as the effects' numbers are (`std_int`).
fn int(b: &[u8]) -> Option<i64> {
    let digits = match b {
        [b'-' | b'+', rest @ ..] => rest,
        _ => b,
    };
    if digits.len() > 19 {
        return None;
    }
    crate::ledger::std_int(b)
}

impl<'a, A: Arg> Args<'a, A> {
    /// Checks arity: between `min` and `max` arguments after the name.
    pub fn new(cmd: &'static str, items: &'a [A], min: usize, max: usize) -> Result<Self> {
        if items.len() < min || items.len() > max {
            return Err(Error::Arity(cmd));
        }
        Ok(Args { cmd, items, pos: 0 })
    }

    #[inline]
    fn next(&mut self) -> Option<A> {
        let item = self.items.get(self.pos).copied();
        self.pos += 1;
        item
    }

    fn remaining(&self) -> usize {
        self.items.len().saturating_sub(self.pos)
    }

    /// The next argument, whatever it holds (a key).
    pub fn arg(&mut self) -> Result<A> {
        self.next().ok_or(Error::Arity(self.cmd))
    }

    /// The next argument as a txid, with its handle.
    pub fn txid(&mut self) -> Result<(TxId, A)> {
        let a = self.arg()?;
        Ok((TxId::new(a.bytes())?, a))
    }

    /// The next argument as a buyer id, with its handle.
    pub fn buyer(&mut self) -> Result<(BuyerId, A)> {
        let a = self.arg()?;
        Ok((BuyerId::new(a.bytes())?, a))
    }

    /// An integer in `lo..=hi`, named `what` in the error, with its handle.
    pub fn int_in(&mut self, what: &str, lo: i64, hi: i64) -> Result<(i64, A)> {
        let a = self.arg()?;
        let raw = a.bytes();
        let v = int(raw).filter(|v| (lo..=hi).contains(v)).ok_or_else(|| {
            Error::invalid(format!(
                "{what} must be an integer from {lo} to {hi}, got '{}'",
                quote(raw)
            ))
        })?;
        Ok((v, a))
    }

    pub fn qty(&mut self) -> Result<(i64, A)> {
        self.int_in("qty", 1, MAX_AMOUNT)
    }

    /// A non-negative integer; the error says `what` must be `kind` (the
    /// text is made only for an error: this runs on every reserve).
    fn non_negative(&mut self, what: &str, kind: &str) -> Result<u64> {
        let a = self.arg()?;
        let raw = a.bytes();
        int(raw)
            .filter(|v| *v >= 0)
            .map(|v| v as u64)
            .ok_or_else(|| Error::invalid(format!("{what} must be {kind}, got '{}'", quote(raw))))
    }

    fn millis(&mut self, what: &str) -> Result<u64> {
        self.non_negative(what, "a non-negative integer of milliseconds")
    }

    fn version(&mut self) -> Result<u64> {
        self.non_negative("IFVERSION", "a non-negative integer")
    }

    fn unknown(&self, word: &[u8], accepted: &str) -> Error {
        Error::invalid(format!(
            "unknown option '{}' for '{}'; accepted: {accepted}",
            quote(word),
            self.cmd
        ))
    }

    /// `[IFVERSION v]`, the only option of INV.SET and INV.ADD.
    fn if_version(&mut self) -> Result<Option<u64>> {
        let mut v = None;
        while let Some(word) = self.next() {
            if word.bytes().eq_ignore_ascii_case(b"IFVERSION") && v.is_none() {
                v = Some(self.version()?);
            } else {
                return Err(self.unknown(word.bytes(), "IFVERSION version"));
            }
        }
        Ok(v)
    }

    /// The arguments left, taken as they are (an effect's words).
    fn rest(&mut self) -> &'a [A] {
        let rest = self.items.get(self.pos..).unwrap_or(&[]);
        self.pos = self.items.len();
        rest
    }

    /// Ends a parse: rejects leftover arguments.
    #[inline]
    pub fn finish(&mut self) -> Result<()> {
        match self.next() {
            None => Ok(()),
            Some(word) => Err(self.unknown(word.bytes(), "no further arguments")),
        }
    }
}

/// `INV.SET key stock [IFVERSION v]`
#[derive(Debug, PartialEq, Eq)]
pub struct Set<A> {
    pub key: A,
    pub stock: i64,
    pub if_version: Option<u64>,
}

/// `INV.ADD key delta [IFVERSION v]`
#[derive(Debug, PartialEq, Eq)]
pub struct Add<A> {
    pub key: A,
    pub delta: i64,
    pub if_version: Option<u64>,
}

/// `INV.GET key`, `INV.AUDIT key`
#[derive(Debug, PartialEq, Eq)]
pub struct KeyOnly<A> {
    pub key: A,
}

/// `INV.CONFIRM|INV.CANCEL|INV.TX key txid`
#[derive(Debug, PartialEq, Eq)]
pub struct KeyTxid<A> {
    pub key: A,
    pub txid: TxId,
    /// The txid's own argument, echoed into replication.
    pub txid_arg: A,
}

/// `INV.RESERVE key txid qty [TTL ms | PXAT unix-ms] [BUYER id]`
#[derive(Debug, PartialEq, Eq)]
pub struct Reserve<A> {
    pub key: A,
    pub txid: TxId,
    pub txid_arg: A,
    pub qty: i64,
    /// The qty's own argument, echoed into replication.
    pub qty_arg: A,
    pub ttl: Ttl,
    /// The buyer, with its own argument (echoed into replication).
    pub buyer: Option<(BuyerId, A)>,
    /// `BLOCK ms`: wait up to ms (0: while connected) for units when there
    /// are none.
    pub block: Option<u64>,
}

/// `INV.EXTEND key txid ttl-ms`
#[derive(Debug, PartialEq, Eq)]
pub struct Extend<A> {
    pub key: A,
    pub txid: TxId,
    pub txid_arg: A,
    pub ttl_ms: u64,
}

/// `INV.MRESERVE txid [BUYER id] ttl-ms key qty [key qty ...]`: keys with
/// summed quantities, in first-seen order.
#[derive(Debug, PartialEq, Eq)]
pub struct MReserve<A> {
    pub txid: TxId,
    pub ttl: Ttl,
    pub buyer: Option<BuyerId>,
    pub items: Vec<(A, i64)>,
}

/// `INV.MCONFIRM|INV.MCANCEL txid key [key ...]`: distinct keys in
/// first-seen order.
#[derive(Debug, PartialEq, Eq)]
pub struct Multi<A> {
    pub txid: TxId,
    pub keys: Vec<A>,
}

/// `INV.SCAN key cursor [COUNT n]`
#[derive(Debug, PartialEq, Eq)]
pub struct Scan<A> {
    pub key: A,
    pub cursor: u64,
    pub count: usize,
}

/// `INV.APPLY key <effect...>`
#[derive(Debug, PartialEq, Eq)]
pub struct Apply<A> {
    pub key: A,
    pub effect: Effect,
    /// Where the master wrote the effect's feed entries.
    pub feed: Option<FeedStamp>,
}

/// Largest COUNT INV.SCAN accepts.
pub const MAX_SCAN_COUNT: i64 = 100_000;

pub fn set<A: Arg>(a: &[A]) -> Result<Set<A>> {
    let mut a = Args::new("inv.set", a, 2, 4)?;
    let key = a.arg()?;
    let (stock, _) = a.int_in("stock", 0, MAX_AMOUNT)?;
    let if_version = a.if_version()?;
    a.finish()?;
    Ok(Set {
        key,
        stock,
        if_version,
    })
}

pub fn add<A: Arg>(a: &[A]) -> Result<Add<A>> {
    let mut a = Args::new("inv.add", a, 2, 4)?;
    let key = a.arg()?;
    let (delta, _) = a.int_in("delta", -MAX_AMOUNT, MAX_AMOUNT)?;
    let if_version = a.if_version()?;
    a.finish()?;
    Ok(Add {
        key,
        delta,
        if_version,
    })
}

/// Commands that take only `key` (INV.GET, INV.AUDIT).
pub fn key_only<A: Arg>(cmd: &'static str, a: &[A]) -> Result<KeyOnly<A>> {
    let mut a = Args::new(cmd, a, 1, 1)?;
    let key = a.arg()?;
    a.finish()?;
    Ok(KeyOnly { key })
}

/// Commands that take `key txid` (INV.CONFIRM, INV.CANCEL, INV.TX).
pub fn key_txid<A: Arg>(cmd: &'static str, a: &[A]) -> Result<KeyTxid<A>> {
    let mut a = Args::new(cmd, a, 2, 2)?;
    let key = a.arg()?;
    let (txid, txid_arg) = a.txid()?;
    a.finish()?;
    Ok(KeyTxid {
        key,
        txid,
        txid_arg,
    })
}

pub fn reserve<A: Arg>(a: &[A]) -> Result<Reserve<A>> {
    let mut a = Args::new("inv.reserve", a, 3, 9)?;
    let key = a.arg()?;
    let (txid, txid_arg) = a.txid()?;
    let (qty, qty_arg) = a.qty()?;
    let mut ttl = None;
    let mut buyer = None;
    let mut block = None;
    while let Some(w) = a.next() {
        let word = w.bytes();
        if word.eq_ignore_ascii_case(b"TTL") && ttl.is_none() {
            ttl = Some(Ttl::Millis(a.millis("TTL")?));
        } else if word.eq_ignore_ascii_case(b"PXAT") && ttl.is_none() {
            ttl = Some(Ttl::At(a.millis("PXAT")?));
        } else if word.eq_ignore_ascii_case(b"BUYER") && buyer.is_none() {
            buyer = Some(a.buyer()?);
        } else if word.eq_ignore_ascii_case(b"BLOCK") && block.is_none() {
            block = Some(a.millis("BLOCK")?);
        } else {
            return Err(a.unknown(word, "TTL ms | PXAT unix-ms, BUYER id, BLOCK ms"));
        }
    }
    a.finish()?;
    Ok(Reserve {
        key,
        txid,
        txid_arg,
        qty,
        qty_arg,
        ttl: ttl.unwrap_or(Ttl::Default),
        buyer,
        block,
    })
}

pub fn extend<A: Arg>(a: &[A]) -> Result<Extend<A>> {
    let mut a = Args::new("inv.extend", a, 3, 3)?;
    let key = a.arg()?;
    let (txid, txid_arg) = a.txid()?;
    let ttl_ms = a.millis("ttl-ms")?;
    a.finish()?;
    Ok(Extend {
        key,
        txid,
        txid_arg,
        ttl_ms,
    })
}

/// Refuses more keys than `inventory.max-keys-per-command` allows.
pub(crate) fn key_count(cmd: &str, given: usize, max: usize) -> Result<()> {
    if given > max {
        return Err(Error::invalid(format!(
            "too many keys for '{cmd}': {given}, at most {max} (inventory.max-keys-per-command)"
        )));
    }
    Ok(())
}

pub fn mreserve<A: Arg>(a: &[A], max_keys: usize) -> Result<MReserve<A>> {
    let head = mreserve_head(a);
    if a.len() < head + 2 || a.len() % 2 != 0 {
        return Err(Error::Arity("inv.mreserve"));
    }
    key_count("inv.mreserve", (a.len() - head) / 2, max_keys)?;
    let mut a = Args::new("inv.mreserve", a, 4, usize::MAX)?;
    let (txid, _) = a.txid()?;
    let buyer = if head == 4 {
        a.next();
        Some(a.buyer()?.0)
    } else {
        None
    };
    let ttl = match a.millis("ttl-ms")? {
        0 => Ttl::Default,
        ms => Ttl::Millis(ms),
    };
    let mut items: Vec<(A, i64)> = Vec::new();
    let mut seen: ahash::AHashMap<&[u8], usize> = ahash::AHashMap::new();
    let all = a.items;
    while a.remaining() > 0 {
        let i = a.pos;
        let key = a.arg()?;
        let (qty, _) = a.qty()?;
        // The map borrows the key's bytes from the caller's slice.
        let bytes = all.get(i).map_or(&[][..], Arg::bytes);
        match seen.get(bytes).and_then(|&i| items.get_mut(i)) {
            Some((_, q)) if *q + qty > MAX_AMOUNT => {
                return Err(Error::invalid(format!(
                    "qty for a key must total at most {MAX_AMOUNT}"
                )))
            }
            Some((_, q)) => *q += qty,
            None => {
                seen.insert(bytes, items.len());
                items.push((key, qty));
            }
        }
    }
    a.finish()?;
    Ok(MReserve {
        txid,
        ttl,
        buyer,
        items,
    })
}

pub fn multi<A: Arg>(cmd: &'static str, a: &[A], max_keys: usize) -> Result<Multi<A>> {
    let mut a = Args::new(cmd, a, 2, usize::MAX)?;
    key_count(cmd, a.remaining() - 1, max_keys)?;
    let (txid, _) = a.txid()?;
    let mut keys: Vec<A> = Vec::new();
    let mut seen: ahash::AHashSet<&[u8]> = ahash::AHashSet::new();
    let all = a.items;
    while a.remaining() > 0 {
        let i = a.pos;
        let key = a.arg()?;
        if seen.insert(all.get(i).map_or(&[][..], Arg::bytes)) {
            keys.push(key);
        }
    }
    a.finish()?;
    Ok(Multi { txid, keys })
}

pub fn scan<A: Arg>(a: &[A]) -> Result<Scan<A>> {
    let mut a = Args::new("inv.scan", a, 2, 4)?;
    let key = a.arg()?;
    let cursor = std::str::from_utf8(a.arg()?.bytes())
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Error::invalid("invalid cursor"))?;
    let mut count = 10;
    while let Some(w) = a.next() {
        if w.bytes().eq_ignore_ascii_case(b"COUNT") {
            count = a.int_in("COUNT", 1, MAX_SCAN_COUNT)?.0 as usize;
        } else {
            return Err(a.unknown(w.bytes(), "COUNT n"));
        }
    }
    a.finish()?;
    Ok(Scan { key, cursor, count })
}

/// How many of an `INV.APPLY`'s words after the key are a separate feed
/// stamp, `FEED <first id> <maxlen> [MINID <id>]` (the form earlier builds
/// wrote): 3, 5, or 0 without one (or with a joined one). The
/// shape only (`apply` reads the values); a replica also uses it to find
/// the effect's txid before parsing.
pub fn stamp_len<A: Arg>(words: &[A]) -> usize {
    let is = |i: usize, w: &[u8]| {
        words
            .get(i)
            .is_some_and(|a| a.bytes().eq_ignore_ascii_case(w))
    };
    if !is(0, b"FEED") || words.len() < 3 {
        0
    } else if words.len() >= 5 && is(3, b"MINID") {
        5
    } else {
        3
    }
}

/// `INV.APPLY key <NAME>:<first id>:<maxlen>[:<minid>] <effect args...>`
/// (a fed effect as masters write it, `FeedStamp::joined`), `INV.APPLY key
/// FEED <first id> <maxlen> [MINID <id>] <effect...>` (the same, as earlier
/// builds wrote it) or `INV.APPLY key <effect...>`.
pub fn apply<A: Arg>(a: &[A]) -> Result<Apply<A>> {
    let mut a = Args::new("inv.apply", a, 2, usize::MAX)?;
    let key = a.arg()?;
    // On the stack for every single-record effect (a replica applies one
    // per change it receives), with its feed stamp: no allocation on that
    // path.
    let mut words: smallvec::SmallVec<[&[u8]; 12]> = a.rest().iter().map(Arg::bytes).collect();
    let bad = || Error::Apply("malformed effect".into());
    let n = stamp_len(&words);
    let (stamp, words) = words.split_at_mut(n);
    let joined = match (stamp.is_empty(), words.first_mut()) {
        (true, Some(name)) => FeedStamp::split_joined(name)?.map(|(n, stamp)| {
            *name = n;
            stamp
        }),
        _ => None,
    };
    let feed = match stamp {
        [_, id, maxlen, minid @ ..] => Some(FeedStamp {
            first: StreamId::parse(id).ok_or_else(bad)?,
            maxlen: crate::ledger::decimal(maxlen).ok_or_else(bad)?,
            minid: match minid {
                [_, m] => Some(StreamId::parse(m).ok_or_else(bad)?),
                _ => None,
            },
        }),
        _ => joined,
    };
    let effect = Effect::parse(words)?;
    a.finish()?;
    Ok(Apply { key, effect, feed })
}

mod sale;
pub use sale::*;

#[cfg(test)]
mod tests;

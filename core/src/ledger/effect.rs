//! Effects: the fully determined changes a master applies to a key, in the
//! form replicas and the AOF replay them (`INV.APPLY key <OP> ...`). Applying
//! an effect never reads a clock, so every copy reaches the same state.

use super::buyers::BuyerId;
use super::error::{Error, Result};
use super::records::State;
use super::sale::Rules;
use super::txid::TxId;
use std::ffi::CStr;

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Set stock (creates the key).
    Stock(i64),
    /// Add to stock (creates the key).
    Add(i64),
    Reserve {
        txid: TxId,
        qty: i64,
        deadline: u64,
        /// The buyer the hold counts against.
        buyer: Option<BuyerId>,
    },
    Confirm(TxId),
    /// Sell `qty` of the units a hold keeps, fewer than all, and release
    /// the rest.
    ConfirmPart {
        txid: TxId,
        qty: i64,
    },
    /// Set an open hold's quantity.
    Adjust {
        txid: TxId,
        qty: i64,
    },
    /// Set the seller's rules; with `new_sale`, clear every buyer's bought
    /// units too.
    Rules {
        rules: Rules,
        new_sale: bool,
    },
    Cancel(TxId),
    /// Record a CANCELLED fence for a txid never reserved (creates the key).
    Fence {
        txid: TxId,
        at: u64,
    },
    Extend {
        txid: TxId,
        deadline: u64,
    },
    /// Expire these RESERVED records: a change of its own (housekeeping).
    Expire(Vec<TxId>),
    /// Expire these RESERVED records as the first step of a change whose
    /// next effect follows (a command that needs their units, or a
    /// housekeeping pass that purges too): the version moves once, with
    /// the last effect of the change.
    ExpireFirst(Vec<TxId>),
    Purge(Vec<TxId>),
    /// Replace the key by an empty one with these counters and rules (AOF
    /// rewrite).
    Load {
        stock: i64,
        sold: i64,
        version: u64,
        rules: Rules,
    },
    /// Add records as they are (AOF rewrite, after `Load`).
    Records(Vec<RecordParts>),
    /// Set buyers' bought units in the current sale (AOF rewrite).
    Buyers(Vec<(BuyerId, i64)>),
}

/// A record as persisted: txid, state, quantity, time, the buyer an open
/// hold counts against, and its second quantity (`Sku::alt`; 0: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordParts {
    pub txid: TxId,
    pub state: State,
    pub qty: i64,
    pub time: u64,
    pub buyer: Option<BuyerId>,
    pub alt: i64,
}

impl RecordParts {
    /// Whether the record needs more than the four fields of `RECORDS`.
    fn is_plain(&self) -> bool {
        self.buyer.is_none() && self.alt == 0
    }
}

impl Effect {
    /// The keyspace event this effect raises (class `d`).
    pub fn event(&self) -> &'static CStr {
        match self {
            Effect::Stock(_) | Effect::Load { .. } | Effect::Records(_) | Effect::Buyers(_) => {
                c"inv.set"
            }
            Effect::Add(_) => c"inv.add",
            Effect::Reserve { .. } => c"inv.reserve",
            Effect::Confirm(_) | Effect::ConfirmPart { .. } => c"inv.confirm",
            Effect::Adjust { .. } => c"inv.adjust",
            Effect::Rules { .. } => c"inv.rules",
            Effect::Cancel(_) | Effect::Fence { .. } => c"inv.cancel",
            Effect::Extend { .. } => c"inv.extend",
            Effect::Expire(_) | Effect::ExpireFirst(_) => c"inv.expire",
            Effect::Purge(_) => c"inv.purge",
        }
    }

    /// True for a rules change that leaves the key's feed on (turning it
    /// on, or keeping it on).
    pub fn turns_feed_on(&self) -> bool {
        matches!(self, Effect::Rules { rules, .. } if rules.feed)
    }

    /// True for effects that may create a missing key.
    pub fn creates_key(&self) -> bool {
        matches!(
            self,
            Effect::Stock(_) | Effect::Add(_) | Effect::Fence { .. } | Effect::Load { .. }
        )
    }

    /// The arguments after `INV.APPLY key`.
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        fn n(v: impl ToString) -> Vec<u8> {
            v.to_string().into_bytes()
        }
        fn t(id: &TxId) -> Vec<u8> {
            id.as_bytes().to_vec()
        }
        match self {
            Effect::Stock(s) => vec![b"STOCK".to_vec(), n(s)],
            Effect::Add(d) => vec![b"ADD".to_vec(), n(d)],
            Effect::Reserve {
                txid,
                qty,
                deadline,
                buyer,
            } => {
                let mut v = vec![b"RESERVE".to_vec(), t(txid), n(qty), n(deadline)];
                if let Some(b) = buyer {
                    v.push(b"BUYER".to_vec());
                    v.push(b.as_bytes().to_vec());
                }
                v
            }
            Effect::Confirm(id) => vec![b"CONFIRM".to_vec(), t(id)],
            Effect::ConfirmPart { txid, qty } => {
                vec![b"CONFIRM".to_vec(), t(txid), b"QTY".to_vec(), n(qty)]
            }
            Effect::Adjust { txid, qty } => vec![b"ADJUST".to_vec(), t(txid), n(qty)],
            Effect::Rules { rules, new_sale } => {
                let mut v = vec![b"RULES".to_vec()];
                rules_args(rules, &mut v);
                if *new_sale {
                    v.push(b"NEWSALE".to_vec());
                }
                v
            }
            Effect::Cancel(id) => vec![b"CANCEL".to_vec(), t(id)],
            Effect::Fence { txid, at } => vec![b"FENCE".to_vec(), t(txid), n(at)],
            Effect::Extend { txid, deadline } => vec![b"EXTEND".to_vec(), t(txid), n(deadline)],
            Effect::Expire(ids) => std::iter::once(b"EXPIRE".to_vec())
                .chain(ids.iter().map(t))
                .collect(),
            Effect::ExpireFirst(ids) => std::iter::once(b"EXPIRE-FIRST".to_vec())
                .chain(ids.iter().map(t))
                .collect(),
            Effect::Purge(ids) => std::iter::once(b"PURGE".to_vec())
                .chain(ids.iter().map(t))
                .collect(),
            Effect::Load {
                stock,
                sold,
                version,
                rules,
            } => {
                let mut v = vec![b"LOAD".to_vec(), n(stock), n(sold), n(version)];
                if *rules != Rules::default() {
                    rules_args(rules, &mut v);
                }
                v
            }
            Effect::Records(recs) => {
                // Old replicas read `RECORDS`; only records that need the
                // new fields use `RECORDS2`, which they refuse.
                let plain = recs.iter().all(RecordParts::is_plain);
                let name: &[u8] = if plain { b"RECORDS" } else { b"RECORDS2" };
                let mut out = vec![name.to_vec()];
                for r in recs {
                    out.push(t(&r.txid));
                    out.push(r.state.as_str().as_bytes().to_vec());
                    out.push(n(r.qty));
                    out.push(n(r.time));
                    if !plain {
                        out.push(
                            r.buyer
                                .as_ref()
                                .map_or(Vec::new(), |b| b.as_bytes().to_vec()),
                        );
                        out.push(n(r.alt));
                    }
                }
                out
            }
            Effect::Buyers(list) => {
                let mut out = vec![b"BUYERS".to_vec()];
                for (b, bought) in list {
                    out.push(b.as_bytes().to_vec());
                    out.push(n(bought));
                }
                out
            }
        }
    }

    /// Parses the arguments after `INV.APPLY key`.
    pub fn parse(args: &[&[u8]]) -> Result<Effect> {
        let bad = || Error::Apply("malformed effect".into());
        let (op, rest) = args.split_first().ok_or_else(bad)?;
        let int = |a: &[u8]| -> Result<i64> { std_int(a).ok_or_else(bad) };
        let time = |a: &[u8]| -> Result<u64> { std_uint(a).ok_or_else(bad) };
        let id = |a: &[u8]| TxId::new(a).map_err(|_| bad());
        let ids = |r: &[&[u8]]| -> Result<Vec<TxId>> {
            if r.is_empty() {
                return Err(bad());
            }
            r.iter().map(|a| id(a)).collect()
        };
        // Upper-cased on the stack: a replica parses one name per change.
        let mut name = [0u8; 12];
        let op = name
            .get_mut(..op.len())
            .map(|n| {
                n.copy_from_slice(op);
                n.make_ascii_uppercase();
                &*n
            })
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or_else(bad)?;
        let buyer = |a: &[u8]| BuyerId::new(a).map_err(|_| bad());
        // A record's first four words: txid, state, qty, time.
        let record = |c: &[&[u8]]| -> Result<RecordParts> {
            Ok(RecordParts {
                txid: id(c[0])?,
                state: State::parse(c[1]).ok_or_else(bad)?,
                qty: int(c[2])?,
                time: time(c[3])?,
                buyer: None,
                alt: 0,
            })
        };
        let word = |a: &[u8], w: &str| a.eq_ignore_ascii_case(w.as_bytes());
        Ok(match (op, rest) {
            ("STOCK", [s]) => Effect::Stock(int(s)?),
            ("ADD", [d]) => Effect::Add(int(d)?),
            ("RESERVE", [tx, q, d]) => Effect::Reserve {
                txid: id(tx)?,
                qty: int(q)?,
                deadline: time(d)?,
                buyer: None,
            },
            ("RESERVE", [tx, q, d, w, b]) if word(w, "BUYER") => Effect::Reserve {
                txid: id(tx)?,
                qty: int(q)?,
                deadline: time(d)?,
                buyer: Some(buyer(b)?),
            },
            ("CONFIRM", [tx]) => Effect::Confirm(id(tx)?),
            ("CONFIRM", [tx, w, q]) if word(w, "QTY") => Effect::ConfirmPart {
                txid: id(tx)?,
                qty: int(q)?,
            },
            ("ADJUST", [tx, q]) => Effect::Adjust {
                txid: id(tx)?,
                qty: int(q)?,
            },
            ("RULES", r) => {
                let (new_sale, r) = match r.split_last() {
                    Some((last, head)) if word(last, "NEWSALE") => (true, head),
                    _ => (false, r),
                };
                Effect::Rules {
                    rules: parse_rules(r).ok_or_else(bad)?,
                    new_sale,
                }
            }
            ("CANCEL", [tx]) => Effect::Cancel(id(tx)?),
            ("FENCE", [tx, at]) => Effect::Fence {
                txid: id(tx)?,
                at: time(at)?,
            },
            ("EXTEND", [tx, d]) => Effect::Extend {
                txid: id(tx)?,
                deadline: time(d)?,
            },
            ("EXPIRE", r) => Effect::Expire(ids(r)?),
            ("EXPIRE-FIRST", r) => Effect::ExpireFirst(ids(r)?),
            ("PURGE", r) => Effect::Purge(ids(r)?),
            ("LOAD", [s, sold, v, r @ ..]) => Effect::Load {
                stock: int(s)?,
                sold: int(sold)?,
                version: time(v)?,
                rules: parse_rules(r).ok_or_else(bad)?,
            },
            ("RECORDS", r) if !r.is_empty() && r.len() % 4 == 0 => {
                Effect::Records(r.chunks_exact(4).map(record).collect::<Result<_>>()?)
            }
            ("RECORDS2", r) if !r.is_empty() && r.len() % 6 == 0 => Effect::Records(
                r.chunks_exact(6)
                    .map(|c| {
                        Ok(RecordParts {
                            buyer: match c[4] {
                                [] => None,
                                b => Some(buyer(b)?),
                            },
                            alt: int(c[5])?,
                            ..record(c)?
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            ("BUYERS", r) if !r.is_empty() && r.len() % 2 == 0 => Effect::Buyers(
                r.chunks_exact(2)
                    .map(|c| Ok((buyer(c[0])?, int(c[1])?)))
                    .collect::<Result<_>>()?,
            ),
            _ => return Err(bad()),
        })
    }
}

/// An i64 as `str::parse` reads it (an optional sign, then digits; here at
/// most 20 of them, as the master writes), without a UTF-8 check or a
/// string: a replica reads several per change (and the command parser
/// every number a client sends, `parse::int`).
pub(crate) fn std_int(a: &[u8]) -> Option<i64> {
    let (negative, digits) = match a.split_first() {
        Some((b'-', d)) => (true, d),
        Some((b'+', d)) => (false, d),
        _ => (false, a),
    };
    let v = i128::from(super::feed::decimal(digits)?);
    i64::try_from(if negative { -v } else { v }).ok()
}

/// A u64 as `str::parse` reads it (an optional `+`, then at most 20
/// digits).
fn std_uint(a: &[u8]) -> Option<u64> {
    super::feed::decimal(a.strip_prefix(b"+").unwrap_or(a))
}

/// `LIMIT n START ms END ms FEED 1 LOW n`, each pair only when set.
fn rules_args(rules: &Rules, out: &mut Vec<Vec<u8>>) {
    for (name, v) in rules.set() {
        out.push(name.to_ascii_uppercase().into_bytes());
        out.push(v.to_string().into_bytes());
    }
}

/// Rule pairs as `rules_args` writes them, any order, each at most once;
/// rules not named are 0 (off).
fn parse_rules(words: &[&[u8]]) -> Option<Rules> {
    let mut rules = Rules::default();
    let mut seen = [false; 5];
    for pair in words.chunks(2) {
        let [name, value] = pair else { return None };
        let v: u64 = std::str::from_utf8(value).ok()?.parse().ok()?;
        let i = ["LIMIT", "START", "END", "FEED", "LOW"]
            .iter()
            .position(|n| name.eq_ignore_ascii_case(n.as_bytes()))?;
        if std::mem::replace(&mut seen[i], true) {
            return None;
        }
        match i {
            0 => rules.limit = v,
            1 => rules.start = v,
            2 => rules.end = v,
            3 if v <= 1 => rules.feed = v == 1,
            3 => return None,
            _ => rules.low = v,
        }
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TxId {
        TxId::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn args_round_trip() {
        let all = vec![
            Effect::Stock(5),
            Effect::Add(-3),
            Effect::Reserve {
                txid: id("a"),
                qty: 2,
                deadline: 99,
                buyer: None,
            },
            Effect::Reserve {
                txid: id("a"),
                qty: 2,
                deadline: 99,
                buyer: Some(BuyerId::new(b"alice").unwrap()),
            },
            Effect::Confirm(id("a")),
            Effect::ConfirmPart {
                txid: id("a"),
                qty: 1,
            },
            Effect::Adjust {
                txid: id("a"),
                qty: 3,
            },
            Effect::Rules {
                rules: Rules {
                    limit: 2,
                    start: 0,
                    end: 9,
                    feed: true,
                    low: 4,
                },
                new_sale: true,
            },
            Effect::Rules {
                rules: Rules::default(),
                new_sale: false,
            },
            Effect::Buyers(vec![(BuyerId::new(b"bob").unwrap(), 4)]),
            Effect::Cancel(id("b")),
            Effect::Fence {
                txid: id("c"),
                at: 7,
            },
            Effect::Extend {
                txid: id("a"),
                deadline: 100,
            },
            Effect::Expire(vec![id("a"), id("b")]),
            Effect::ExpireFirst(vec![id("b")]),
            Effect::Purge(vec![id("c")]),
            Effect::Load {
                stock: 1,
                sold: 2,
                version: 3,
                rules: Rules::default(),
            },
            Effect::Load {
                stock: 1,
                sold: 2,
                version: 3,
                rules: Rules {
                    limit: 1,
                    start: 2,
                    end: 3,
                    feed: true,
                    low: 0,
                },
            },
            Effect::Records(vec![RecordParts {
                txid: id("z"),
                state: State::Expired,
                qty: 4,
                time: 5,
                buyer: None,
                alt: 0,
            }]),
            Effect::Records(vec![
                RecordParts {
                    txid: id("z"),
                    state: State::Reserved,
                    qty: 4,
                    time: 5,
                    buyer: Some(BuyerId::new(b"carol").unwrap()),
                    alt: 6,
                },
                RecordParts {
                    txid: id("y"),
                    state: State::Confirmed,
                    qty: 1,
                    time: 5,
                    buyer: None,
                    alt: 0,
                },
            ]),
        ];
        for e in all {
            let args = e.to_args();
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            assert_eq!(Effect::parse(&refs).unwrap(), e);
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &[][..],
            &[&b"STOCK"[..]],
            &[b"NOPE", b"1"],
            &[b"EXPIRE"],
            &[b"RECORDS", b"a", b"RESERVED", b"1"],
            &[b"RESERVE", b"a", b"1", b"2", b"BUYER", b""],
            &[b"RULES", b"LIMIT", b"1", b"LIMIT", b"2"],
            &[b"RULES", b"LIMIT"],
            &[b"BUYERS", b"x"],
        ] {
            assert!(Effect::parse(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod number_tests {
    use super::{std_int, std_uint};

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The effect parser's numbers are the standard parser's, for any
        /// sign and up to 20 digits (the master writes no more), and for
        /// any bytes at all.
        #[test]
        fn numbers_read_as_the_standard_parser_reads_them(
            text in "[+-]?[0-9]{0,20}|[+-]?[0-9]{0,4}[^0-9][0-9]{0,3}|-?(9223372036854775|1844674407370955)[0-9]{3,4}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
        ) {
            proptest::prop_assert_eq!(std_int(text.as_bytes()), text.parse::<i64>().ok(), "{}", text);
            proptest::prop_assert_eq!(std_uint(text.as_bytes()), text.parse::<u64>().ok(), "{}", text);
            let s = std::str::from_utf8(&bytes).ok();
            proptest::prop_assert_eq!(std_int(&bytes), s.and_then(|s| s.parse::<i64>().ok()));
            proptest::prop_assert_eq!(std_uint(&bytes), s.and_then(|s| s.parse::<u64>().ok()));
        }
    }
}

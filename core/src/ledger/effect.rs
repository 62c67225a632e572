//! Effects: the fully determined changes a master applies to a key, in the
//! form replicas and the AOF replay them (`INV.APPLY key <OP> ...`). Applying
//! an effect never reads a clock, so every copy reaches the same state.

use super::error::{Error, Result};
use super::records::State;
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
    },
    Confirm(TxId),
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
    /// Replace the key by an empty one with these counters (AOF rewrite).
    Load {
        stock: i64,
        sold: i64,
        version: u64,
    },
    /// Add records as they are (AOF rewrite, after `Load`).
    Records(Vec<RecordParts>),
}

/// A record as persisted: txid, state, quantity, time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordParts {
    pub txid: TxId,
    pub state: State,
    pub qty: i64,
    pub time: u64,
}

impl Effect {
    /// The keyspace event this effect raises (class `d`).
    pub fn event(&self) -> &'static CStr {
        match self {
            Effect::Stock(_) | Effect::Load { .. } | Effect::Records(_) => c"inv.set",
            Effect::Add(_) => c"inv.add",
            Effect::Reserve { .. } => c"inv.reserve",
            Effect::Confirm(_) => c"inv.confirm",
            Effect::Cancel(_) | Effect::Fence { .. } => c"inv.cancel",
            Effect::Extend { .. } => c"inv.extend",
            Effect::Expire(_) | Effect::ExpireFirst(_) => c"inv.expire",
            Effect::Purge(_) => c"inv.purge",
        }
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
            } => {
                vec![b"RESERVE".to_vec(), t(txid), n(qty), n(deadline)]
            }
            Effect::Confirm(id) => vec![b"CONFIRM".to_vec(), t(id)],
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
            } => {
                vec![b"LOAD".to_vec(), n(stock), n(sold), n(version)]
            }
            Effect::Records(recs) => {
                let mut out = vec![b"RECORDS".to_vec()];
                for r in recs {
                    out.push(t(&r.txid));
                    out.push(r.state.as_str().as_bytes().to_vec());
                    out.push(n(r.qty));
                    out.push(n(r.time));
                }
                out
            }
        }
    }

    /// Parses the arguments after `INV.APPLY key`.
    pub fn parse(args: &[&[u8]]) -> Result<Effect> {
        let bad = || Error::Apply("malformed effect".into());
        let (op, rest) = args.split_first().ok_or_else(bad)?;
        let int = |a: &[u8]| -> Result<i64> {
            std::str::from_utf8(a)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)
        };
        let time = |a: &[u8]| -> Result<u64> {
            std::str::from_utf8(a)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)
        };
        let id = |a: &[u8]| TxId::new(a).map_err(|_| bad());
        let ids = |r: &[&[u8]]| -> Result<Vec<TxId>> {
            if r.is_empty() {
                return Err(bad());
            }
            r.iter().map(|a| id(a)).collect()
        };
        let op = std::str::from_utf8(op)
            .map_err(|_| bad())?
            .to_ascii_uppercase();
        Ok(match (op.as_str(), rest) {
            ("STOCK", [s]) => Effect::Stock(int(s)?),
            ("ADD", [d]) => Effect::Add(int(d)?),
            ("RESERVE", [tx, q, d]) => Effect::Reserve {
                txid: id(tx)?,
                qty: int(q)?,
                deadline: time(d)?,
            },
            ("CONFIRM", [tx]) => Effect::Confirm(id(tx)?),
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
            ("LOAD", [s, sold, v]) => Effect::Load {
                stock: int(s)?,
                sold: int(sold)?,
                version: time(v)?,
            },
            ("RECORDS", r) if !r.is_empty() && r.len() % 4 == 0 => Effect::Records(
                r.chunks_exact(4)
                    .map(|c| {
                        Ok(RecordParts {
                            txid: id(c[0])?,
                            state: State::parse(c[1]).ok_or_else(bad)?,
                            qty: int(c[2])?,
                            time: time(c[3])?,
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            _ => return Err(bad()),
        })
    }
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
            },
            Effect::Confirm(id("a")),
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
            },
            Effect::Records(vec![RecordParts {
                txid: id("z"),
                state: State::Expired,
                qty: 4,
                time: 5,
            }]),
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
        ] {
            assert!(Effect::parse(bad).is_err(), "{bad:?}");
        }
    }
}

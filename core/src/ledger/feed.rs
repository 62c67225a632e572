//! The change feed of a key (`INV.RULES key FEED ON`): every record
//! transition and stock change of the key is an entry in a Redis Stream
//! beside it, written by the same command (or housekeeping pass) as the
//! change. This file decides what the entries of one effect are, from the
//! key before and after it, and names the stream; the module writes them.
//!
//! Exactness: the entries follow from the effect and the key alone (no
//! clock), and the master's first entry ID travels with the effect, so a
//! replica or an AOF replay writes the same entries under the same IDs.

use super::buyers::BuyerId;
use super::effect::Effect;
use super::error::{Error, Result};
use super::records::State;
use super::sku::Sku;
use super::txid::TxId;
use smallvec::SmallVec;

/// One feed entry before it is written: its `event` and the fields that
/// apply (`txid`, `buyer` and `deadline` only where the change has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEntry {
    pub event: &'static str,
    pub txid: Option<TxId>,
    pub qty: i64,
    pub buyer: Option<BuyerId>,
    /// A hold's deadline (unix ms); 0: none.
    pub deadline: u64,
}

impl FeedEntry {
    fn plain(event: &'static str, qty: i64) -> FeedEntry {
        FeedEntry {
            event,
            txid: None,
            qty,
            buyer: None,
            deadline: 0,
        }
    }

    /// Calls `f` with the entry's fields in stream order: `event`, `key`,
    /// `txid`, `qty`, `version`, `buyer`, `deadline` (the optional ones
    /// only when set), as (field, value) pairs of the change ending at
    /// `version`. A replica writes one entry per change it receives, so
    /// the pairs go straight to the caller, not through a list.
    pub fn for_each_pair<'a>(&'a self, version: u64, mut f: impl FnMut(Field, FieldValue<'a>)) {
        let int = |v: u64| FieldValue::Int(i64::try_from(v).unwrap_or(i64::MAX));
        f(Field::Event, FieldValue::Word(self.event));
        f(Field::Key, FieldValue::Key);
        if let Some(t) = &self.txid {
            f(Field::Txid, FieldValue::Bytes(t.as_bytes()));
        }
        f(Field::Qty, FieldValue::Int(self.qty));
        f(Field::Version, int(version));
        if let Some(b) = &self.buyer {
            f(Field::Buyer, FieldValue::Bytes(b.as_bytes()));
        }
        if self.deadline != 0 {
            f(Field::Deadline, int(self.deadline));
        }
    }

    /// `for_each_pair`'s pairs as a list.
    pub fn pairs(&self, version: u64) -> SmallVec<[(Field, FieldValue<'_>); 7]> {
        let mut out = SmallVec::new();
        self.for_each_pair(version, |field, value| out.push((field, value)));
        out
    }
}

/// A field's value in a feed entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// One of the fixed words (an event name).
    Word(&'static str),
    /// The key's name.
    Key,
    Bytes(&'a [u8]),
    Int(i64),
}

/// Every field name an entry may carry, in stream order.
pub const FEED_FIELDS: [&str; 7] = [
    "event", "key", "txid", "qty", "version", "buyer", "deadline",
];

/// A field of a feed entry: `FEED_FIELDS[field as usize]` is its name (the
/// shell keeps one shared string per field, found by this index rather
/// than by comparing names on every entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Event,
    Key,
    Txid,
    Qty,
    Version,
    Buyer,
    Deadline,
}

impl Field {
    pub fn name(self) -> &'static str {
        FEED_FIELDS[self as usize]
    }
}

/// Every `event` word.
pub const FEED_EVENTS: [&str; 12] = [
    "reserved",
    "confirmed",
    "cancelled",
    "fenced",
    "expired",
    "extended",
    "adjusted",
    "stock",
    "rules",
    "soldout",
    "backinstock",
    "lowstock",
];

/// The entries of one effect, in the order they are written.
pub type FeedEntries = SmallVec<[FeedEntry; 2]>;

/// A stream entry ID (`ms-seq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// The smallest ID after this one (`None` after the last possible).
    pub fn next(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (u64::MAX, u64::MAX) => None,
            (ms, u64::MAX) => Some(StreamId { ms: ms + 1, seq: 0 }),
            (ms, seq) => Some(StreamId { ms, seq: seq + 1 }),
        }
    }

    /// `ms-seq`, as XADD writes it (not 0-0).
    pub fn parse(s: &[u8]) -> Option<StreamId> {
        match StreamId::parse_then(s)? {
            (id, None) => Some(id),
            (_, Some(_)) => None,
        }
    }

    /// The `ms-seq` ID at the start of `s`, up to a `:` (JOIN) or the end,
    /// and what follows that `:` (`None`: `s` ended), in one pass.
    fn parse_then(s: &[u8]) -> Option<(StreamId, Option<&[u8]>)> {
        let (ms, rest) = number_then(s, b'-')?;
        let (seq, rest) = number_then(rest?, JOIN)?;
        let id = StreamId { ms, seq };
        (id != StreamId::default()).then_some((id, rest))
    }
}

/// A u64 written in decimal digits only (1 to 20 of them, no sign), as a
/// replica reads the master's numbers on every fed change.
pub fn decimal(s: &[u8]) -> Option<u64> {
    match number_then(s, JOIN)? {
        (n, None) => Some(n),
        (_, Some(_)) => None,
    }
}

/// The decimal number (1 to 20 digits, as `decimal` reads them) at the start of `s`,
/// up to the byte `stop` or the end, and what follows `stop` (`None`: `s`
/// ended); `None` for anything else. One pass: a replica reads a joined
/// stamp's three numbers on every fed change it receives.
fn number_then(s: &[u8], stop: u8) -> Option<(u64, Option<&[u8]>)> {
    let mut n = 0u64;
    for (i, &b) in s.iter().enumerate() {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            // Up to 19 digits fit in a u64 unchecked (as in `decimal`);
            // only a 20th digit is checked, and a 21st refused.
            n = if i < 19 {
                n.wrapping_mul(10).wrapping_add(u64::from(d))
            } else if i == 19 {
                n.checked_mul(10)?.checked_add(u64::from(d))?
            } else {
                return None;
            };
        } else {
            // A stop after at least one digit; `s[i + 1..]` exists as
            // `i < s.len()`.
            return (b == stop && i > 0).then(|| (n, s.get(i + 1..)));
        }
    }
    (!s.is_empty()).then_some((n, None))
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// What travels with a fed effect to replicas and the AOF: the ID of the
/// effect's first entry (the others follow it one by one), the length the
/// master trimmed the stream to afterwards (0: not trimmed) and, when it
/// trims by age, the oldest ID it kept. Masters write it joined to the
/// effect's name in one word (`INV.APPLY key <NAME>:<first id>:<maxlen>[:<minid>]
/// <effect args>`, `joined`), so a fed reserve has as many words as the
/// INV.RESERVE it came from; the earlier form (`INV.APPLY key FEED <first
/// id> <maxlen> [MINID <id>] <effect>`) is still read, from AOF files and
/// masters of earlier builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedStamp {
    pub first: StreamId,
    pub maxlen: u64,
    pub minid: Option<StreamId>,
}

/// Separates an effect's name from its joined stamp's parts (no effect
/// name and no number holds it).
const JOIN: u8 = b':';

/// A joined word, on the stack: at most 117 bytes (a 12-byte name, two
/// 41-byte IDs, a 20-digit length and three separators).
pub type JoinedWord = SmallVec<[u8; 128]>;

impl FeedStamp {
    /// `name` and this stamp in one word, `<name>:<first id>:<maxlen>` with
    /// `:<minid>` when it trims by age.
    pub fn joined(&self, name: &[u8]) -> JoinedWord {
        let mut w = JoinedWord::new();
        let mut num = itoa::Buffer::new();
        let mut id = |w: &mut JoinedWord, id: StreamId| {
            w.push(JOIN);
            w.extend_from_slice(num.format(id.ms).as_bytes());
            w.push(b'-');
            w.extend_from_slice(num.format(id.seq).as_bytes());
        };
        w.extend_from_slice(name);
        id(&mut w, self.first);
        w.push(JOIN);
        w.extend_from_slice(itoa::Buffer::new().format(self.maxlen).as_bytes());
        if let Some(m) = self.minid {
            id(&mut w, m);
        }
        w
    }

    /// Splits a joined word into the effect's name and its stamp: `None`
    /// for a word without one, an error for a stamp that does not parse.
    pub fn split_joined(word: &[u8]) -> Result<Option<(&[u8], FeedStamp)>> {
        let Some(at) = word.iter().position(|&b| b == JOIN) else {
            return Ok(None);
        };
        let stamp = || -> Option<FeedStamp> {
            let (first, rest) = StreamId::parse_then(word.get(at + 1..)?)?;
            let (maxlen, rest) = number_then(rest?, JOIN)?;
            let minid = match rest {
                None => None,
                Some(r) => Some(StreamId::parse(r)?),
            };
            Some(FeedStamp {
                first,
                maxlen,
                minid,
            })
        };
        match stamp() {
            Some(stamp) => Ok(Some((word.get(..at).unwrap_or_default(), stamp))),
            None => Err(Error::Apply("malformed effect".into())),
        }
    }
}

/// The oldest entry ID a stream trimmed to `max_age_ms` keeps, for a change
/// whose first entry is `first` (its time is the master's clock): `None`
/// when age trimming is off (0).
pub fn age_floor(first: StreamId, max_age_ms: u64) -> Option<StreamId> {
    // At least 1-0: 0-0 is no entry's ID.
    (max_age_ms > 0).then(|| StreamId {
        ms: first.ms.saturating_sub(max_age_ms).max(1),
        seq: 0,
    })
}

/// The feed stream of `key`: `inv:feed:{N}:<key>`, N being the smallest
/// non-negative decimal number whose hash slot is the key's. The braces
/// come first in the name, so they are its hash tag whatever the key holds
/// (braces of its own, a `}` without a `{`): the stream always lives in the
/// key's slot, on the key's node.
pub fn stream_name(key: &[u8]) -> Vec<u8> {
    let n = slot_tags()[usize::from(crate::slot::slot(key))];
    let mut name = format!("inv:feed:{{{n}}}:").into_bytes();
    name.extend_from_slice(key);
    name
}

/// Builds the table `stream_name` reads, if it is not built yet.
pub fn warm_stream_names() {
    slot_tags();
}

/// For every slot, the smallest decimal number that hashes to it (built
/// once: about 170,000 CRC16s of short strings, a few milliseconds, with no
/// allocation but the table's). The module builds it when it loads
/// (`warm_stream_names`), so no command waits for it.
fn slot_tags() -> &'static [u32] {
    static TAGS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        let slots = 16384;
        let mut tags = vec![u32::MAX; slots];
        let mut left = slots;
        let mut n = 0u32;
        let mut digits = itoa::Buffer::new();
        while left > 0 {
            let s = usize::from(crate::slot::slot(digits.format(n).as_bytes()));
            if tags[s] == u32::MAX {
                tags[s] = n;
                left -= 1;
            }
            n += 1;
        }
        tags
    })
}

impl Sku {
    /// Whether applying `effect` writes to the feed: the feed is on before
    /// it, or the effect turns it on (so turning it on and off are both
    /// entries).
    pub fn feeds(&self, effect: &Effect) -> bool {
        self.rules.feed || effect.turns_feed_on()
    }

    /// Units available by the key's counters alone (holds past their
    /// deadline still count until their expiry is applied), which every
    /// copy of the key agrees on.
    pub fn available_raw(&self) -> i64 {
        self.stock - self.reserved
    }

    /// The version the change `effect` belongs to ends at: an
    /// `ExpireFirst` leaves the version to the effect after it.
    pub fn feed_version(&self, effect: &Effect) -> u64 {
        match effect {
            Effect::ExpireFirst(_) => self.version + 1,
            _ => self.version,
        }
    }

    /// Adds to `out` the transitions `effect` makes, read before it is
    /// applied (what an expiry or cancel releases is the record's, not the
    /// effect's).
    pub fn feed_transitions(&self, effect: &Effect, out: &mut FeedEntries) {
        let open = |t: &TxId| {
            self.tx(t.as_bytes(), 0)
                .filter(|v| v.state == State::Reserved)
        };
        let record = |event, t: &TxId, qty: Option<i64>| {
            let v = open(t);
            FeedEntry {
                event,
                txid: Some(t.clone()),
                qty: qty.unwrap_or_else(|| v.as_ref().map_or(0, |v| v.qty)),
                buyer: v.as_ref().and_then(|v| v.buyer.clone()),
                deadline: v.map_or(0, |v| v.time),
            }
        };
        match effect {
            Effect::Stock(n) => out.push(FeedEntry::plain("stock", *n)),
            Effect::Add(d) => out.push(FeedEntry::plain("stock", self.stock.saturating_add(*d))),
            Effect::Reserve {
                txid,
                qty,
                deadline,
                buyer,
            } => out.push(FeedEntry {
                event: "reserved",
                txid: Some(txid.clone()),
                qty: *qty,
                buyer: buyer.clone(),
                deadline: *deadline,
            }),
            Effect::Confirm(t) => out.push(FeedEntry {
                deadline: 0,
                ..record("confirmed", t, None)
            }),
            Effect::ConfirmPart { txid, qty } => out.push(FeedEntry {
                deadline: 0,
                ..record("confirmed", txid, Some(*qty))
            }),
            Effect::Adjust { txid, qty } => out.push(record("adjusted", txid, Some(*qty))),
            Effect::Cancel(t) => out.push(FeedEntry {
                deadline: 0,
                ..record("cancelled", t, None)
            }),
            Effect::Fence { txid, .. } => out.push(FeedEntry {
                txid: Some(txid.clone()),
                ..FeedEntry::plain("fenced", 0)
            }),
            Effect::Extend { txid, deadline } => out.push(FeedEntry {
                deadline: *deadline,
                ..record("extended", txid, None)
            }),
            Effect::Expire(ids) | Effect::ExpireFirst(ids) => {
                out.extend(ids.iter().map(|t| record("expired", t, None)))
            }
            Effect::Rules { .. } => out.push(FeedEntry::plain("rules", 0)),
            // Purging finished records changes no state a reader sees, and
            // an AOF rewrite's effects rebuild a key that was already fed.
            Effect::Purge(_) | Effect::Load { .. } | Effect::Records(_) | Effect::Buyers(_) => {}
        }
    }

    /// The threshold crossings of a change that took the available units
    /// from `before` to what they are now: `soldout` (reaching 0),
    /// `backinstock` (leaving 0), `lowstock` (falling to or below the key's
    /// `LOW` from above it), each once per crossing, added to `out`.
    pub fn feed_thresholds(&self, before: i64, out: &mut FeedEntries) {
        let after = self.available_raw();
        let low = i64::try_from(self.rules.low).unwrap_or(i64::MAX);
        if low > 0 && before > low && after <= low {
            out.push(FeedEntry::plain("lowstock", after));
        }
        if before > 0 && after <= 0 {
            out.push(FeedEntry::plain("soldout", after));
        }
        if before <= 0 && after > 0 {
            out.push(FeedEntry::plain("backinstock", after));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_share_the_key_slot() {
        use crate::slot::slot as key_slot;
        for key in [
            &b"sku:1"[..],
            b"{user1}:cart",
            b"a}b",
            b"}{",
            b"{}x",
            b"x{y",
            b"{a}{b}",
            b"",
            &[0xff, b'{', 0, b'}'],
        ] {
            let name = stream_name(key);
            assert_eq!(key_slot(&name), key_slot(key), "{key:?}");
            assert!(name.ends_with(key));
        }
        assert_eq!(slot_tags().iter().filter(|&&t| t == u32::MAX).count(), 0);
    }

    /// The one-pass readers against a plain reading: split at `:`, an ID
    /// split at its first `-`, each number by the standard parser (1 to 20
    /// digits and nothing else).
    fn reference_number(s: &[u8]) -> Option<u64> {
        let digits = !s.is_empty() && s.len() <= 20 && s.iter().all(u8::is_ascii_digit);
        std::str::from_utf8(s).ok()?.parse().ok().filter(|_| digits)
    }

    fn reference_id(s: &[u8]) -> Option<StreamId> {
        let dash = s.iter().position(|&b| b == b'-')?;
        let id = StreamId {
            ms: reference_number(&s[..dash])?,
            seq: reference_number(&s[dash + 1..])?,
        };
        (id != StreamId::default()).then_some(id)
    }

    fn reference_joined(word: &[u8]) -> Option<Option<(Vec<u8>, FeedStamp)>> {
        let parts: Vec<&[u8]> = word.split(|&b| b == JOIN).collect();
        match parts.as_slice() {
            [_] => Some(None),
            [name, first, maxlen, minid @ ..] if minid.len() <= 1 => {
                let stamp = FeedStamp {
                    first: reference_id(first)?,
                    maxlen: reference_number(maxlen)?,
                    minid: match minid {
                        [m] => Some(reference_id(m)?),
                        _ => None,
                    },
                };
                Some(Some((name.to_vec(), stamp)))
            }
            _ => None,
        }
    }

    fn joined_agrees(word: &[u8]) {
        let ours = FeedStamp::split_joined(word)
            .ok()
            .map(|o| o.map(|(n, s)| (n.to_vec(), s)));
        assert_eq!(
            ours,
            reference_joined(word),
            "{:?}",
            String::from_utf8_lossy(word)
        );
        for part in word.split(|&b| b == JOIN) {
            assert_eq!(StreamId::parse(part), reference_id(part), "{part:?}");
            assert_eq!(decimal(part), reference_number(part), "{part:?}");
        }
    }

    #[test]
    fn joined_stamps_read_as_split_words_do() {
        for w in [
            &b"RESERVE"[..],
            b"RESERVE:1-0:5",
            b"RESERVE:1765134567890-12:1000000",
            b"RESERVE:1-0:0:1-0",
            b"RESERVE:1-0:5:",
            b"RESERVE:1-0",
            b"RESERVE:1-0:5:1-0:1-0",
            b"RESERVE:0-0:5",
            b"RESERVE:-0:5",
            b"RESERVE:1--0:5",
            b"RESERVE:1-0-3:5",
            b"RESERVE::5",
            b":1-0:5",
            b"RESERVE:18446744073709551615-18446744073709551615:18446744073709551615",
            b"RESERVE:18446744073709551616-0:1",
            b"RESERVE:00000000000000000001-0:1",
            b"RESERVE:000000000000000000001-0:1",
            b"RESERVE:1-0:000000000000000000001",
            b"RESERVE:1-0:5\0",
            b"RESERVE:1-0:+5",
            b":",
            b"",
        ] {
            joined_agrees(w);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_joined_word_reads_as_split_words_do(
            w in proptest::collection::vec(proptest::sample::select(b"019-:R+".to_vec()), 0..48)
        ) {
            joined_agrees(&w);
        }
    }

    #[test]
    fn ids_parse_and_follow() {
        let id = StreamId::parse(b"5-18446744073709551615").unwrap();
        assert_eq!(id.next(), Some(StreamId { ms: 6, seq: 0 }));
        assert_eq!(id.to_string(), "5-18446744073709551615");
        assert_eq!(StreamId::parse(b"0-0"), None);
        assert_eq!(StreamId::parse(b"7"), None);
        assert_eq!(StreamId::parse(b"-1-2"), None);
        assert_eq!(StreamId::parse(b"1-+2"), None);
        assert_eq!(StreamId::parse(b"1-18446744073709551616"), None);
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"007"), Some(7));
        assert_eq!(decimal(b""), None);
        assert_eq!(
            decimal(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b"99999999999999999999"), None);
        assert_eq!(decimal(b"000000000000000000001"), None);
        assert_eq!(decimal(b"1844674407370955161x"), None);
        assert_eq!(decimal(b"184467440737095516x5"), None);
        let last = StreamId {
            ms: u64::MAX,
            seq: u64::MAX,
        };
        assert_eq!(last.next(), None);
    }
}

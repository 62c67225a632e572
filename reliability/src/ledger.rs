//! The one checker every scenario shares: what clients were told, and
//! whether the servers still hold it.
//!
//! Every request the load sends is logged with its outcome: acknowledged
//! (a reply came back; durable or not, as the scenario decides: with WAIT
//! below its target a reply is acknowledged but not durable), refused (an
//! error reply: nothing changed) or unanswered (cut by a fault: it may or may
//! not have applied). A check reads every key back and compares.
//!
//! A check runs in one of two views. `Durable` counts only durable
//! acknowledgements as promises (the others are treated like unanswered
//! requests); a broken promise there is a failure. `All` counts every
//! acknowledgement, which is how a scenario measures what was acknowledged
//! and lost (without WAIT, say).

use crate::server_state::{read_all, Snapshot};
use redis::Connection;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Milliseconds since the Unix epoch: the load's clock and the server's are
/// the same machine's, so a request's send time is a lower bound for the
/// time the server applied it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A reply's state: the core's own type, parsed from the same words.
pub use inventory_core::ledger::Status as State;

/// What the checker asks of a state.
trait Promise {
    fn terminal(self) -> bool;
    fn recorded(self) -> bool;
}

impl Promise for State {
    fn terminal(self) -> bool {
        matches!(self, State::Confirmed | State::Cancelled | State::Expired)
    }

    /// The reply says a record for the txid exists.
    fn recorded(self) -> bool {
        matches!(
            self,
            State::Reserved | State::Confirmed | State::Cancelled | State::Expired
        )
    }
}

/// What a request did, as far as its client knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// A reply came back; `durable` is false when WAIT fell short.
    Acked { durable: bool },
    /// An error reply: nothing changed.
    Refused,
    /// No reply (a fault cut it): it may or may not have applied.
    Unanswered,
}

/// The operations on one txid of one key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Reserve {
        qty: i64,
        deadline_floor: i64,
    },
    /// Confirms all held units, or `Some(n)` of them (`QTY n`).
    Confirm(Option<i64>),
    Cancel,
    /// Extends to at least `deadline_floor` (the load only ever extends
    /// past every deadline it set before, so deadlines never move back).
    Extend {
        deadline_floor: i64,
    },
}

#[derive(Default, Debug)]
struct Tx {
    qty: Option<i64>,
    /// The first reserve's send time + TTL: whichever attempt applied did so
    /// no earlier.
    reserve_floor: Option<i64>,
    sent_reserve: bool,
    sent_confirm: bool,
    /// The units a `QTY` confirm asked to sell.
    confirm_qty: Option<i64>,
    sent_cancel: bool,
    /// Acknowledged replies in order: (state, durable, extend floor).
    acked: Vec<(State, bool, Option<i64>)>,
}

#[derive(Default, Debug)]
struct Key {
    /// Stock added by acknowledged requests (the setup's INV.SET included).
    added: Vec<(i64, bool)>,
    /// Adds that may or may not have applied.
    unanswered_adds: Vec<i64>,
    txs: HashMap<String, Tx>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum View {
    Durable,
    All,
}

/// Counts of requests by outcome, for the report.
#[derive(Clone, Copy, Default, Debug)]
pub struct Counts {
    pub acked: u64,
    pub not_durable: u64,
    pub refused: u64,
    pub unanswered: u64,
}

#[derive(Default)]
pub struct Ledger {
    keys: HashMap<String, Key>,
    pub counts: Counts,
    /// The load turned every key's change feed on (standalone servers):
    /// each check replays the feed against the key.
    pub feed: bool,
}

impl Ledger {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Acked { durable: true } => self.counts.acked += 1,
            Outcome::Acked { durable: false } => {
                self.counts.acked += 1;
                self.counts.not_durable += 1
            }
            Outcome::Refused => self.counts.refused += 1,
            Outcome::Unanswered => self.counts.unanswered += 1,
        }
    }

    /// Stock put into `key` (INV.SET on a new key, INV.ADD with a positive delta).
    pub fn add(&mut self, key: &str, units: i64, outcome: Outcome) {
        self.count(outcome);
        let k = self.keys.entry(key.to_string()).or_default();
        match outcome {
            Outcome::Acked { durable } => k.added.push((units, durable)),
            Outcome::Unanswered => k.unanswered_adds.push(units),
            Outcome::Refused => {}
        }
    }

    /// One request on a txid of `keys` (several for a multi-key command),
    /// with the state each key's item answered when acknowledged.
    pub fn tx(&mut self, items: &[(&str, Option<State>)], txid: &str, op: Op, outcome: Outcome) {
        self.count(outcome);
        if outcome == Outcome::Refused {
            return;
        }
        for (key, state) in items {
            let tx = self
                .keys
                .entry(key.to_string())
                .or_default()
                .txs
                .entry(txid.to_string())
                .or_default();
            let mut extend_floor = None;
            match op {
                Op::Reserve {
                    qty,
                    deadline_floor,
                } => {
                    tx.sent_reserve = true;
                    tx.qty = Some(qty);
                    tx.reserve_floor.get_or_insert(deadline_floor);
                }
                Op::Confirm(qty) => {
                    tx.sent_confirm = true;
                    tx.confirm_qty = qty;
                }
                Op::Cancel => tx.sent_cancel = true,
                Op::Extend { deadline_floor } => extend_floor = Some(deadline_floor),
            }
            if let (Outcome::Acked { durable }, Some(state)) = (outcome, state) {
                // Only an extend that found its reservation RESERVED moved the deadline.
                let floor = extend_floor.filter(|_| *state == State::Reserved);
                tx.acked.push((*state, durable, floor));
            }
        }
    }

    /// Reads every key from `c` and returns what breaks a promise in `view`,
    /// one line each. The load must be quiet and expiry caught up.
    pub fn check(&self, c: &mut Connection, view: View) -> Result<BTreeSet<String>, String> {
        let mut names: Vec<&String> = self.keys.keys().collect();
        names.sort();
        let read = read_all(c, &names)?;
        let mut bad = BTreeSet::new();
        let (mut open_total, mut reserved_total, mut keys_present) = (0, 0, 0);
        let mut streams = 0;
        // Reads show a reservation past its deadline as EXPIRED at once;
        // INFO counts it until housekeeping expires it, within milliseconds.
        let (mut just_open, mut just_reserved) = (0, 0);
        for (name, snap) in names.iter().zip(&read.keys) {
            let key = &self.keys[*name];
            let Some(snap) = snap else {
                if key.added.iter().any(|(_, d)| *d || view == View::All)
                    || key.txs.values().any(|t| promised(t, view).is_some())
                {
                    bad.insert(format!("{name}: acknowledged key missing"));
                }
                continue;
            };
            keys_present += 1;
            open_total += snap.open;
            reserved_total += snap.reserved;
            for rec in snap.records.values() {
                if rec.state == State::Expired && rec.deadline > read.time - 1_000 {
                    just_open += 1;
                    just_reserved += rec.qty;
                }
            }
            check_key(name, key, snap, view, &mut bad);
            if self.feed {
                check_feed(name, snap, &mut bad);
                streams += i64::from(!snap.feed.is_empty());
            }
            if snap.audit != "OK" {
                bad.insert(format!("{name}: INV.AUDIT says {}", snap.audit));
            }
            // Fences (and cancels) still refuse their reserve.
            for (txid, rec) in snap.records.iter().take(2_000) {
                if rec.state == State::Cancelled {
                    let reply: redis::RedisResult<(String, i64, i64)> = redis::cmd("INV.RESERVE")
                        .arg(*name)
                        .arg(txid)
                        .arg(key.txs.get(txid).and_then(|t| t.qty).unwrap_or(1))
                        .query(c);
                    match reply {
                        Ok((s, _, _)) if s == "CANCELLED" => {}
                        other => {
                            bad.insert(format!(
                                "{name} {txid}: a reserve after its cancel answered {other:?}"
                            ));
                        }
                    }
                }
            }
        }
        if read.dbsize != keys_present + streams {
            bad.insert(format!(
                "DBSIZE {} but {keys_present} of the load's keys and {streams} feed streams exist",
                read.dbsize
            ));
        }
        let fields = [
            ("inventory_keys", keys_present, 0),
            ("inventory_open_reservations", open_total, just_open),
            ("inventory_reserved_units", reserved_total, just_reserved),
        ];
        for (field, want, slack) in fields {
            let got = read
                .info
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .and_then(|v| v.trim().parse::<i64>().ok());
            if !got.is_some_and(|g| (want..=want + slack).contains(&g)) {
                bad.insert(format!(
                    "INFO {field} is {got:?}, reads show {want} (+{slack} that expired in the last second)"
                ));
            }
        }
        Ok(bad)
    }
}

/// A key's change feed against its records as stored, read in one MULTI:
/// a consumer that followed only the entries knows every record's state
/// (an open hold with its units, confirmed with the units sold, cancelled,
/// fenced, expired), each transition exactly once and in an order the
/// ledger allows; versions never go back, and the last is the key's own or
/// older. A change without its entry, an entry without its change, or one
/// written twice breaks it.
fn check_feed(name: &str, snap: &Snapshot, bad: &mut BTreeSet<String>) {
    let mut known: HashMap<&str, (State, i64)> = HashMap::new();
    let mut last = 0;
    for (i, e) in snap.feed.iter().enumerate() {
        let num = |f: &str| e.get(f).and_then(|v| v.parse::<i64>().ok());
        let (Some(event), Some(version), Some(qty)) = (e.get("event"), num("version"), num("qty"))
        else {
            bad.insert(format!(
                "{name}: feed entry {i} lacks event, version or qty: {e:?}"
            ));
            return;
        };
        if version < last || e.get("key").map(String::as_str) != Some(name) {
            bad.insert(format!(
                "{name}: feed entry {i} ({event}) out of order or of another key"
            ));
        }
        last = version;
        let Some(txid) = e.get("txid") else { continue };
        let before = known.get(txid.as_str()).copied();
        let open = matches!(before, Some((State::Reserved, _)));
        let next = match event.as_str() {
            "reserved" if before.is_none() => (State::Reserved, qty),
            "adjusted" if open => (State::Reserved, qty),
            "extended" if open => before.unwrap_or((State::Reserved, qty)),
            "confirmed" if open => (State::Confirmed, qty),
            "cancelled" if open => (State::Cancelled, -1),
            "expired" if open => (State::Expired, -1),
            "fenced" if before.is_none() => (State::Cancelled, -1),
            _ => {
                bad.insert(format!(
                    "{name} {txid}: feed entry {i} says {event} after {before:?}"
                ));
                continue;
            }
        };
        known.insert(txid, next);
    }
    if last > snap.version {
        bad.insert(format!(
            "{name}: the feed's last version {last} is past the key's {}",
            snap.version
        ));
    }
    for (txid, (state, qty)) in &snap.stored {
        // Units are compared where the record keeps them: open holds, and
        // the units a confirm sold.
        let want = match state {
            State::Reserved | State::Confirmed => Some((*state, *qty)),
            _ => None,
        };
        match known.get(txid.as_str()) {
            Some(&(s, q)) if s == *state && want.is_none_or(|w| w == (s, q)) => {}
            other => {
                bad.insert(format!(
                    "{name} {txid}: stored {state:?} {qty}, but its feed says {other:?}"
                ));
            }
        }
    }
    for txid in known.keys().filter(|t| !snap.stored.contains_key(**t)) {
        bad.insert(format!("{name} {txid}: in the feed, not in the key"));
    }
}

/// The state a txid was last promised in `view`, if any.
fn promised(tx: &Tx, view: View) -> Option<State> {
    tx.acked
        .iter()
        .filter(|(s, durable, _)| s.recorded() && (*durable || view == View::All))
        .map(|(s, _, _)| *s)
        .next_back()
}

fn check_key(name: &str, key: &Key, snap: &Snapshot, view: View, bad: &mut BTreeSet<String>) {
    let counts = |d: bool| d || view == View::All;
    // stock + sold = every promised add plus some of the uncertain ones.
    let base: i64 = key
        .added
        .iter()
        .filter(|(_, d)| counts(*d))
        .map(|(u, _)| u)
        .sum();
    let uncertain: Vec<i64> = key
        .added
        .iter()
        .filter(|(_, d)| !counts(*d))
        .map(|(u, _)| *u)
        .chain(key.unanswered_adds.iter().copied())
        .collect();
    let total = snap.stock + snap.sold;
    if !subset_sums(&uncertain).contains(&(total - base)) {
        bad.insert(format!(
            "{name}: stock + sold is {total}; acknowledged adds give {base} plus some of {uncertain:?}"
        ));
    }
    let (mut sold, mut reserved, mut open) = (0, 0, 0);
    for (txid, rec) in &snap.records {
        match rec.state {
            State::Confirmed => {
                sold += rec.sold;
                let want = tx_confirm_qty(key, txid).unwrap_or(rec.qty);
                if rec.sold != want {
                    bad.insert(format!(
                        "{name} {txid}: sold {} of {} held, but {want} was asked",
                        rec.sold, rec.qty
                    ));
                }
            }
            State::Reserved => {
                reserved += rec.qty;
                open += 1;
            }
            _ => {}
        }
        let Some(tx) = key.txs.get(txid) else {
            bad.insert(format!(
                "{name} {txid}: a record nobody sent ({:?})",
                rec.state
            ));
            continue;
        };
        let reachable = match rec.state {
            State::Reserved | State::Expired => tx.sent_reserve,
            State::Confirmed => tx.sent_reserve && tx.sent_confirm,
            State::Cancelled => tx.sent_cancel,
            _ => false,
        };
        if !reachable {
            bad.insert(format!(
                "{name} {txid}: {:?}, which no request asked for",
                rec.state
            ));
        }
        let terminal = tx
            .acked
            .iter()
            .find(|(s, d, _)| s.terminal() && counts(*d))
            .map(|(s, _, _)| *s);
        if let Some(t) = terminal {
            if t != rec.state {
                bad.insert(format!(
                    "{name} {txid}: acknowledged {t:?}, now {:?}",
                    rec.state
                ));
            }
        }
        if matches!(
            rec.state,
            State::Reserved | State::Confirmed | State::Expired
        ) {
            if Some(rec.qty) != tx.qty {
                bad.insert(format!(
                    "{name} {txid}: qty {} but {:?} was reserved",
                    rec.qty, tx.qty
                ));
            }
            let floor = tx
                .acked
                .iter()
                .filter(|(_, d, _)| counts(*d))
                .filter_map(|(_, _, f)| *f)
                .chain(tx.reserve_floor)
                .max();
            if let Some(floor) = floor {
                if rec.deadline < floor {
                    bad.insert(format!(
                        "{name} {txid}: deadline {} earlier than the acknowledged {floor}",
                        rec.deadline
                    ));
                }
            }
        }
    }
    for (txid, tx) in &key.txs {
        if !snap.records.contains_key(txid) {
            if let Some(s) = promised(tx, view) {
                bad.insert(format!("{name} {txid}: acknowledged {s:?}, now missing"));
            }
        }
    }
    if (sold, reserved, open) != (snap.sold, snap.reserved, snap.open) {
        bad.insert(format!(
            "{name}: sold/reserved/open {}/{}/{} but the records give {sold}/{reserved}/{open}",
            snap.sold, snap.reserved, snap.open
        ));
    }
}

/// The units a `QTY` confirm of `txid` asked to sell, if it named some.
fn tx_confirm_qty(key: &Key, txid: &str) -> Option<i64> {
    key.txs.get(txid).and_then(|t| t.confirm_qty)
}

/// Every sum of a subset of `values` (up to 16 of them; past that, every
/// total in the range they span, which only weakens the check).
fn subset_sums(values: &[i64]) -> HashSet<i64> {
    if values.len() > 16 {
        let hi: i64 = values.iter().filter(|v| **v > 0).sum();
        let lo: i64 = values.iter().filter(|v| **v < 0).sum();
        return (lo..=hi).collect();
    }
    let mut sums = HashSet::from([0]);
    for v in values {
        let more: Vec<i64> = sums.iter().map(|s| s + v).collect();
        sums.extend(more);
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_sums_of_a_few_values() {
        let s = subset_sums(&[2, 5]);
        assert_eq!(s, HashSet::from([0, 2, 5, 7]));
        assert!(subset_sums(&[1; 20]).contains(&20));
    }

    #[test]
    fn the_last_recorded_promise_counts_in_its_view() {
        let mut l = Ledger::default();
        let floor = 0;
        let reserve = Op::Reserve {
            qty: 1,
            deadline_floor: floor,
        };
        l.tx(
            &[("k", Some(State::Reserved))],
            "t",
            reserve,
            Outcome::Acked { durable: false },
        );
        let tx = &l.keys["k"].txs["t"];
        assert_eq!(promised(tx, View::Durable), None);
        assert_eq!(promised(tx, View::All), Some(State::Reserved));
    }
}

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

use redis::{Connection, Value};
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
        if read.dbsize != keys_present {
            bad.insert(format!(
                "DBSIZE {} but {keys_present} of the load's keys exist",
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

pub struct Record {
    pub state: State,
    /// Units held (for a confirmed record, held when it was confirmed).
    pub qty: i64,
    pub deadline: i64,
    /// Units sold (confirmed records).
    pub sold: i64,
}

pub struct Snapshot {
    pub stock: i64,
    pub sold: i64,
    pub reserved: i64,
    pub open: i64,
    pub records: HashMap<String, Record>,
    pub audit: String,
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        other => format!("{other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    redis::from_redis_value(v).unwrap_or(i64::MIN)
}

/// Every key as INV.GET, INV.SCAN, DUMP and INV.AUDIT show it, with INFO
/// and DBSIZE, all in one MULTI: housekeeping cannot run inside it, so an
/// expiry cannot fall between the reads of one key, or between the keys
/// and INFO. The records come from DUMP, decoded by the module's own
/// decoder, so a key of any size is read whole in that one step. INV.SCAN's
/// first page must show the same records; it also shows the states a client
/// sees (a reservation past its deadline is EXPIRED at once, by the
/// module's clock).
struct ReadAll {
    /// The server's clock (ms) when the MULTI ran.
    time: i64,
    keys: Vec<Option<Snapshot>>,
    info: String,
    dbsize: i64,
}

/// The INV.SCAN page compared with each DUMP. Small, so that both the
/// records on it and those past it are checked on every run.
const SCAN_PAGE: usize = 1_000;

fn read_all(c: &mut Connection, names: &[&String]) -> Result<ReadAll, String> {
    let mut p = redis::pipe();
    p.atomic();
    p.cmd("TIME");
    for key in names {
        p.cmd("INV.GET").arg(*key);
        p.cmd("INV.SCAN")
            .arg(*key)
            .arg(0)
            .arg("COUNT")
            .arg(SCAN_PAGE);
        p.cmd("DUMP").arg(*key);
        p.cmd("INV.AUDIT").arg(*key);
        p.cmd("TIME");
    }
    p.cmd("INFO").arg("inventory").cmd("DBSIZE");
    let replies: Vec<Value> = p.query(c).map_err(|e| format!("reading the keys: {e}"))?;
    let n = names.len() * 5;
    if replies.len() != n + 3 {
        return Err(format!("{} replies to the read", replies.len()));
    }
    let time = |v: &Value| -> Result<i64, String> {
        let (secs, micros): (i64, i64) =
            redis::from_redis_value(v).map_err(|e| format!("TIME: {e}"))?;
        Ok(secs * 1000 + micros / 1000)
    };
    let start = time(&replies[0])?;
    let mut keys = Vec::new();
    for (name, r) in names.iter().zip(replies[1..=n].chunks_exact(5)) {
        // The module's clock for this key's reads lies between the two
        // TIMEs (a millisecond either side: one cached per MULTI or command).
        let clock = (start - 1, time(&r[4])? + 1);
        keys.push(snapshot(name, clock, &r[0], &r[1], &r[2], &r[3])?);
    }
    Ok(ReadAll {
        time: start,
        keys,
        info: text(&replies[n + 1]),
        dbsize: int(&replies[n + 2]),
    })
}

fn rec_sold_differs(records: &HashMap<String, Record>, txid: &str, sold: i64) -> bool {
    records.get(txid).is_some_and(|r| r.sold != sold)
}

fn snapshot(
    key: &str,
    clock: (i64, i64),
    get: &Value,
    scan: &Value,
    dump: &Value,
    audit: &Value,
) -> Result<Option<Snapshot>, String> {
    let get: Option<Vec<(String, Value)>> =
        redis::from_redis_value(get).map_err(|e| format!("INV.GET {key}: {e}"))?;
    let Some(get) = get else { return Ok(None) };
    let field = |n: &str| {
        get.iter()
            .find(|(k, _)| k == n)
            .map_or(i64::MIN, |(_, v)| int(v))
    };
    let mut records = dumped_records(key, dump)?;
    let (next, page): (String, Vec<Vec<Value>>) =
        redis::from_redis_value(scan).map_err(|e| format!("INV.SCAN {key}: {e}"))?;
    if next == "0" && page.len() != records.len() {
        return Err(format!(
            "INV.SCAN {key} shows {} records, its DUMP {}",
            page.len(),
            records.len()
        ));
    }
    let mut seen = HashSet::new();
    for r in page {
        let [txid, state, qty, deadline, sold] = &r[..] else {
            return Err(format!("INV.SCAN {key}: a record of {} fields", r.len()));
        };
        let state = State::parse(&text(state)).ok_or_else(|| format!("state {state:?}"))?;
        let (txid, qty, deadline) = (text(txid), int(qty), int(deadline));
        if rec_sold_differs(&records, &txid, int(sold)) {
            return Err(format!(
                "INV.SCAN {key} {txid}: sold {sold:?} differs from its DUMP"
            ));
        }
        let Some(rec) = records.get_mut(&txid) else {
            return Err(format!("INV.SCAN {key} shows {txid}, its DUMP does not"));
        };
        let seen_expired = rec.state == State::Reserved && state == State::Expired;
        if (rec.qty, rec.deadline) != (qty, deadline) || (rec.state != state && !seen_expired) {
            return Err(format!(
                "{key} {txid}: INV.SCAN shows {state:?} {qty} {deadline}, its DUMP {:?} {} {}",
                rec.state, rec.qty, rec.deadline
            ));
        }
        rec.state = state;
        seen.insert(txid);
    }
    expire_past_the_page(&mut records, &seen, clock, field("open"));
    Ok(Some(Snapshot {
        stock: field("stock"),
        sold: field("sold"),
        reserved: field("reserved"),
        open: field("open"),
        records,
        audit: text(audit),
    }))
}

/// Shows the reservations past INV.SCAN's page as a client saw them: those
/// whose deadline passed by the module's clock as EXPIRED. That clock lies
/// within `clock`; reservations whose deadline falls inside it are settled
/// by INV.GET's `open`, earliest deadline first, as one reading of the clock
/// would. When no reading gives `open`, they stay RESERVED and the key's
/// sums report it.
fn expire_past_the_page(
    records: &mut HashMap<String, Record>,
    seen: &HashSet<String>,
    (lo, hi): (i64, i64),
    open: i64,
) {
    let mut unsure: Vec<&mut Record> = Vec::new();
    let mut open_known = 0;
    for (txid, rec) in records.iter_mut() {
        if rec.state != State::Reserved {
            continue;
        }
        if seen.contains(txid) || rec.deadline > hi {
            open_known += 1;
        } else if rec.deadline <= lo {
            rec.state = State::Expired;
        } else {
            unsure.push(rec);
        }
    }
    let Some(expired) = usize::try_from(open_known + unsure.len() as i64 - open)
        .ok()
        .filter(|n| *n <= unsure.len())
    else {
        return;
    };
    unsure.sort_by_key(|r| r.deadline);
    // One clock reading: every deadline at or before it passed.
    let Some(reading) = expired.checked_sub(1).map(|i| unsure[i].deadline) else {
        return;
    };
    if unsure.get(expired).is_some_and(|r| r.deadline <= reading) {
        return;
    }
    for rec in unsure {
        if rec.deadline <= reading {
            rec.state = State::Expired;
        }
    }
}

/// A key's records as stored, from its DUMP payload decoded by the
/// module's own decoder.
fn dumped_records(key: &str, dump: &Value) -> Result<HashMap<String, Record>, String> {
    let Value::BulkString(payload) = dump else {
        return Err(format!("DUMP {key}: {dump:?}"));
    };
    let (version, buffers) =
        crate::dump::module_buffers(payload).map_err(|e| format!("DUMP {key}: {e}"))?;
    let mut buffers = buffers.into_iter();
    let sku = inventory_core::ledger::decode(version, || {
        buffers
            .next()
            .ok_or_else(|| inventory_core::ledger::Error::invalid("DUMP ends early"))
    })
    .map_err(|e| format!("DUMP {key} does not decode: {e}"))?;
    let records = sku.record_parts().map(|r| {
        let confirmed = r.state == inventory_core::ledger::State::Confirmed;
        let record = Record {
            state: State::parse(r.state.as_str()).unwrap_or(State::Unknown),
            // A partial confirm keeps the held units beside the sold ones.
            qty: if confirmed && r.alt != 0 {
                r.alt
            } else {
                r.qty
            },
            deadline: r.time as i64,
            sold: if confirmed { r.qty } else { 0 },
        };
        (
            String::from_utf8_lossy(r.txid.as_bytes()).into_owned(),
            record,
        )
    });
    Ok(records.collect())
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
    fn past_the_page_one_clock_reading_settles_the_open_count() {
        let reserved = |deadline| Record {
            state: State::Reserved,
            qty: 1,
            deadline,
            sold: 0,
        };
        let fresh = || -> HashMap<String, Record> {
            [5, 12, 14, 14, 30]
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("t{i}"), reserved(*d)))
                .collect()
        };
        let expired = |r: &HashMap<String, Record>| {
            let mut e: Vec<i64> = r
                .values()
                .filter(|r| r.state == State::Expired)
                .map(|r| r.deadline)
                .collect();
            e.sort();
            e
        };
        let none = HashSet::new();
        // The clock lies in (10, 20]: 5 has passed, 30 has not, and INV.GET's
        // open count says how many of 12, 14, 14 had.
        for (open, want) in [(4, vec![5]), (3, vec![5, 12]), (1, vec![5, 12, 14, 14])] {
            let mut r = fresh();
            expire_past_the_page(&mut r, &none, (10, 20), open);
            assert_eq!(expired(&r), want, "open {open}");
        }
        // No one reading gives open 2 (14 and 14 pass together), nor 5.
        for open in [2, 5] {
            let mut r = fresh();
            expire_past_the_page(&mut r, &none, (10, 20), open);
            assert_eq!(r.values().filter(|r| r.state == State::Reserved).count(), 4);
        }
        // A record on the page keeps the state INV.SCAN showed.
        let mut r = fresh();
        let seen = HashSet::from(["t0".to_string()]);
        expire_past_the_page(&mut r, &seen, (10, 20), 5);
        assert_eq!(expired(&r), Vec::<i64>::new());
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

//! Reading what the servers hold: every key the load touched, by INV.GET,
//! INV.SCAN and DUMP inside one MULTI, as the checker (ledger.rs) compares
//! it with what clients were told.

use crate::ledger::State;
use redis::{Connection, Value};
use std::collections::{HashMap, HashSet};

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
    /// The records as stored (no clock applied: a hold past its deadline
    /// stays RESERVED until its expiry is recorded), txid -> (state, qty).
    pub stored: HashMap<String, (State, i64)>,
    /// The key's version.
    pub version: i64,
    /// Its change feed's entries (`event` and fields) up to the last one
    /// when the MULTI read the key (read in pages after it); empty when
    /// the feed is off.
    pub feed: Vec<HashMap<String, String>>,
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
pub struct ReadAll {
    /// The server's clock (ms) when the MULTI ran.
    pub time: i64,
    /// Each key asked for, in order: `None` when missing.
    pub keys: Vec<Option<Snapshot>>,
    /// `INFO inventory`.
    pub info: String,
    pub dbsize: i64,
}

/// The INV.SCAN page compared with each DUMP. Small, so that both the
/// records on it and those past it are checked on every run.
const SCAN_PAGE: usize = 1_000;

/// Values read per key: INV.GET, INV.SCAN, DUMP, INV.AUDIT, the feed's
/// last entry, TIME.
const PER_KEY: usize = 6;

/// Feed entries read per XRANGE after the MULTI: a whole stream in one
/// reply (hundreds of thousands of entries in a long run) would hold a
/// cluster node past its node timeout, and the cluster would fail it over.
const FEED_PAGE: usize = 2_000;

pub fn read_all(c: &mut Connection, names: &[&String]) -> Result<ReadAll, String> {
    let mut p = redis::pipe();
    p.atomic();
    p.cmd("TIME");
    for key in names {
        let stream = inventory_core::ledger::stream_name(key.as_bytes());
        p.cmd("INV.GET").arg(*key);
        p.cmd("INV.SCAN")
            .arg(*key)
            .arg(0)
            .arg("COUNT")
            .arg(SCAN_PAGE);
        p.cmd("DUMP").arg(*key);
        p.cmd("INV.AUDIT").arg(*key);
        p.cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        p.cmd("TIME");
    }
    p.cmd("INFO").arg("inventory").cmd("DBSIZE");
    let replies: Vec<Value> = p.query(c).map_err(|e| format!("reading the keys: {e}"))?;
    let n = names.len() * PER_KEY;
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
    for (name, r) in names.iter().zip(replies[1..=n].chunks_exact(PER_KEY)) {
        // The module's clock for this key's reads lies between the two
        // TIMEs (a millisecond either side: one cached per MULTI or command).
        let clock = (start - 1, time(&r[5])? + 1);
        let mut snap = snapshot(name, clock, &r[0], &r[1], &r[2], &r[3])?;
        if let Some(s) = snap.as_mut() {
            let last: Vec<(String, HashMap<String, String>)> =
                redis::from_redis_value(&r[4]).map_err(|e| format!("the feed of {name}: {e}"))?;
            if let Some((id, _)) = last.first() {
                s.feed = feed_until(c, name, id)?;
            }
        }
        keys.push(snap);
    }
    Ok(ReadAll {
        time: start,
        keys,
        info: text(&replies[n + 1]),
        dbsize: int(&replies[n + 2]),
    })
}

/// The entries of `key`'s feed up to `last` (its last entry when the MULTI
/// read the key), in pages: nothing at or before `last` changes after the
/// MULTI (entries are only appended, and no run comes near the trim cap),
/// so the pages hold exactly what the stream held then.
fn feed_until(
    c: &mut Connection,
    key: &str,
    last: &str,
) -> Result<Vec<HashMap<String, String>>, String> {
    let stream = inventory_core::ledger::stream_name(key.as_bytes());
    let mut out = Vec::new();
    let mut from = "-".to_string();
    loop {
        let page: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(&from)
            .arg(last)
            .arg("COUNT")
            .arg(FEED_PAGE)
            .query(c)
            .map_err(|e| format!("the feed of {key}: {e}"))?;
        let Some((id, _)) = page.last() else {
            break;
        };
        let done = id == last || page.len() < FEED_PAGE;
        from = format!("({id}");
        out.extend(page.into_iter().map(|(_, fields)| fields));
        if done {
            break;
        }
    }
    Ok(out)
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
    let (mut records, stored, version) = dumped_records(key, dump)?;
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
        stored,
        version,
        feed: Vec::new(),
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

/// The records and raw states as stored, and the version.
type Dumped = (HashMap<String, Record>, HashMap<String, (State, i64)>, i64);

/// A key's records as stored, from its DUMP payload decoded by the
/// module's own decoder (with their raw states, and the key's version).
fn dumped_records(key: &str, dump: &Value) -> Result<Dumped, String> {
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
    let stored = sku
        .record_parts()
        .map(|r| {
            let state = State::parse(r.state.as_str()).unwrap_or(State::Unknown);
            let txid = String::from_utf8_lossy(r.txid.as_bytes()).into_owned();
            (txid, (state, r.qty))
        })
        .collect();
    let version = i64::try_from(sku.version()).unwrap_or(i64::MAX);
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
    Ok((records.collect(), stored, version))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

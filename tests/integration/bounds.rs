//! Bounds and contracts: no counter overflows, multi-key commands apply all
//! or nothing, loading refuses what commands cannot produce, retries answer
//! state, one change moves the version by one.

use crate::harness::*;
use redis::Value;
use std::time::Duration;
use testkit::hostile::with_crc;

const MAX: i64 = (1 << 53) - 1;

/// Units that ever entered a key (stock + sold) are bounded, so `sold`
/// cannot pass its bound whatever the confirms: the restock that would take
/// the total past it is refused, and every reservation granted confirms.
#[test]
fn stock_plus_sold_is_bounded_so_every_reservation_confirms() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "{o}a", &MAX.to_string()]);
    ok(c, &["INV.RESERVE", "{o}a", "t0", &MAX.to_string()]);
    assert_eq!(outcome(c, &["INV.CONFIRM", "{o}a", "t0"]).0, "CONFIRMED");
    assert_eq!((get(c, "{o}a", "sold"), get(c, "{o}a", "stock")), (MAX, 0));
    assert_eq!(
        err(c, &["INV.ADD", "{o}a", "1"]),
        format!(
            "ERR stock 1 and sold {MAX} would total {}, above the maximum {MAX}",
            MAX + 1
        )
    );
    assert_eq!(
        err(c, &["INV.SET", "{o}a", "1"]),
        format!(
            "ERR stock 1 and sold {MAX} would total {}, above the maximum {MAX}",
            MAX + 1
        )
    );
    // A cart over three keys confirms on every key or none.
    ok(c, &["INV.SET", "{o}b", "10"]);
    ok(c, &["INV.SET", "{o}x", "10"]);
    ok(c, &["INV.MRESERVE", "cart", "0", "{o}x", "1", "{o}b", "1"]);
    let (state, _): (String, Value) = redis::cmd("INV.MCONFIRM")
        .arg(&["cart", "{o}x", "{o}b", "{o}a"])
        .query(c)
        .unwrap();
    assert_eq!(state, "UNKNOWN");
    assert_eq!((get(c, "{o}x", "sold"), get(c, "{o}b", "sold")), (0, 0));
    let (state, _): (String, Value) = redis::cmd("INV.MCONFIRM")
        .arg(&["cart", "{o}x", "{o}b"])
        .query(c)
        .unwrap();
    assert_eq!(state, "CONFIRMED");
    for k in ["{o}a", "{o}b", "{o}x"] {
        assert_eq!(ok(c, &["INV.AUDIT", k]), Value::Okay, "{k}");
    }
}

/// bincode's varint of an unsigned integer (the RDB encoding's header).
fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=250 => vec![v as u8],
        251..=0xffff => [vec![251], (v as u16).to_le_bytes().to_vec()].concat(),
        0x1_0000..=0xffff_ffff => [vec![252], (v as u32).to_le_bytes().to_vec()].concat(),
        _ => [vec![253], v.to_le_bytes().to_vec()].concat(),
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// RESTORE refuses a header no command sequence produces: a version past
/// 2^63-1 (INV.GET showed it as -1 and it froze), a sold past the bound on
/// stock + sold.
#[test]
fn restore_refuses_counters_commands_cannot_produce() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "k", "5"]);
    let dump: Vec<u8> = redis::cmd("DUMP").arg("k").query(c).unwrap();
    // The header {stock 5, sold 0, version 1, records 0, limit 0, start 0,
    // end 0, buyers 0, feed off, low 0} as saved: a string buffer of 10
    // bytes after the module string opcode 5.
    let header = [5u8, 10, 10, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    let at = dump
        .windows(header.len())
        .position(|w| w == header)
        .expect("the header in the DUMP payload");
    let restore = |c: &mut redis::Connection, name: &str, stock: i64, sold: i64, version: u64| {
        let body = [
            varint(zigzag(stock)),
            varint(zigzag(sold)),
            varint(version),
            varint(0),
            vec![0, 0, 0, 0, 0, 0],
        ]
        .concat();
        let mut payload = dump[..at].to_vec();
        payload.extend([5, body.len() as u8]);
        payload.extend(&body);
        payload.extend(&dump[at + header.len()..]);
        redis::cmd("RESTORE")
            .arg(name)
            .arg(0)
            .arg(with_crc(payload))
            .query::<()>(c)
    };
    restore(c, "fits", 5, MAX - 5, i64::MAX as u64).expect("the largest values commands produce");
    assert_eq!(get(c, "fits", "version"), i64::MAX);
    assert!(restore(c, "version", 5, 0, i64::MAX as u64 + 1).is_err());
    assert!(restore(c, "sold", 0, MAX + 1, 1).is_err());
    assert!(restore(c, "total", 6, MAX - 5, 1).is_err());
    assert!(restore(c, "negative", 5, -1, 1).is_err());
    for k in ["version", "sold", "total", "negative"] {
        assert_eq!(ok(c, &["EXISTS", k]), Value::Int(0), "{k}");
    }
    let log = s.log();
    for what in ["version out of range", "sold out of range"] {
        assert!(log.contains(what), "{what}: {log}");
    }
    // The version stops at its bound instead of wrapping.
    ok(c, &["INV.ADD", "fits", "-1"]);
    assert_eq!(get(c, "fits", "version"), i64::MAX);
}

/// A retried reserve answers the txid's state whatever the time or the
/// configs now: its PXAT passing, or max-ttl-ms lowered, does not turn it
/// into an error.
#[test]
fn a_retried_reserve_answers_its_state_after_its_deadline_or_a_config_change() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "k", "5"]);
    let now: Vec<String> = redis::cmd("TIME").query(c).unwrap();
    let now_ms = now[0].parse::<u64>().unwrap() * 1000 + now[1].parse::<u64>().unwrap() / 1000;
    let at = (now_ms + 200).to_string();
    assert_eq!(
        outcome(c, &["INV.RESERVE", "k", "p", "1", "PXAT", &at]).0,
        "RESERVED"
    );
    assert_eq!(
        outcome(c, &["INV.RESERVE", "k", "t", "2", "TTL", "600000"]).0,
        "RESERVED"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        outcome(c, &["INV.RESERVE", "k", "p", "1", "PXAT", &at]).0,
        "EXPIRED"
    );
    ok(c, &["CONFIG", "SET", "inventory.max-ttl-ms", "1000"]);
    assert_eq!(
        outcome(c, &["INV.RESERVE", "k", "t", "2", "TTL", "600000"]).0,
        "RESERVED"
    );
    assert_eq!(outcome(c, &["INV.EXTEND", "k", "p", "600000"]).0, "EXPIRED");
    // A new reservation is still held to the limits.
    assert_eq!(
        err(c, &["INV.RESERVE", "k", "new", "1", "TTL", "600000"]),
        "ERR TTL must be 1 to 1000 milliseconds (inventory.max-ttl-ms), got 600000"
    );
}

/// A reserve that first expires a reservation past its deadline (to take its
/// units) is one change: the version moves by one, as INV.GET documents.
#[test]
fn a_command_that_expires_first_moves_the_version_by_one() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    // One pipeline, read in one go: housekeeping cannot run between the
    // sleep and the second reserve, so the reserve finds `a` due.
    let mut p = redis::pipe();
    p.cmd("INV.SET").arg("k").arg(1).ignore();
    p.cmd("INV.RESERVE")
        .arg(&["k", "a", "1", "TTL", "20"])
        .ignore();
    p.cmd("DEBUG").arg(&["SLEEP", "0.05"]).ignore();
    p.cmd("INV.RESERVE").arg(&["k", "b", "1"]);
    let (reply,): ((String, i64, i64),) = p.query(c).unwrap();
    assert_eq!(reply, ("RESERVED".into(), 0, 3));
    assert_eq!(tx_state(c, "k", "a").as_deref(), Some("EXPIRED"));
    assert_eq!(info_field(c, "expired"), 1);
}

/// Where the server caches the command time for a whole MULTI (Valkey, and
/// Redis from 7.2), every command in it sees one time; Redis 7.0 reads the
/// live clock per command. README states which.
#[test]
fn one_multi_sees_one_time_where_the_server_caches_it() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    let server = testkit::version(c);
    ok(c, &["INV.SET", "k", "1"]);
    let mut p = redis::pipe();
    p.atomic();
    p.cmd("INV.RESERVE")
        .arg(&["k", "a", "1", "TTL", "20"])
        .ignore();
    p.cmd("DEBUG").arg(&["SLEEP", "0.05"]).ignore();
    p.cmd("INV.TX").arg(&["k", "a"]);
    let (tx,): (Vec<Value>,) = p.query(c).unwrap();
    let state: String = redis::from_redis_value(&tx[1]).unwrap();
    let want = if server.starts_with("Redis 7.0") {
        "EXPIRED"
    } else {
        "RESERVED"
    };
    assert_eq!(state, want, "{server}");
}

/// Multi-key commands are capped by inventory.max-keys-per-command, which
/// the error names, and find repeated keys in linear time.
#[test]
fn multi_key_commands_are_capped_and_merge_repeats_at_scale() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    let keys: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let mut cmd = redis::cmd("INV.MCANCEL");
    cmd.arg("t").arg(&keys);
    let e = cmd.query::<Value>(c).unwrap_err();
    assert_eq!(
        e.detail(),
        Some(
            "too many keys for 'inv.mcancel': 1001, at most 1000 (inventory.max-keys-per-command)"
        )
    );
    ok(
        c,
        &["CONFIG", "SET", "inventory.max-keys-per-command", "50000"],
    );
    // 40,000 keys naming 20,000 distinct ones, each twice.
    let mut cmd = redis::cmd("INV.MRESERVE");
    cmd.arg("order").arg(0);
    for i in 0..40_000 {
        cmd.arg(format!("sku{}", i % 20_000)).arg(1);
    }
    let (state, items): (String, Vec<Value>) = cmd.query(c).unwrap();
    assert_eq!((state.as_str(), items.len()), ("NOSTOCK", 20_000));
    let mut cmd = redis::cmd("INV.MCANCEL");
    cmd.arg("order");
    for i in 0..40_000 {
        cmd.arg(format!("sku{}", i % 20_000));
    }
    let (state, items): (String, Vec<Value>) = cmd.query(c).unwrap();
    assert_eq!((state.as_str(), items.len()), ("CANCELLED", 20_000));
    assert_eq!(
        tx_state(c, "sku19999", "order").as_deref(),
        Some("CANCELLED")
    );
}

//! Flash-sale rules on a real server: per-buyer limits, the sale window,
//! partial confirms and adjusts, their replies, errors, INFO counters and
//! keyspace events; every copy (replica, DEBUG RELOAD, DUMP/RESTORE, AOF
//! rewrite and restart) reaching the same state; and the multi-key forms'
//! keys found by COMMAND GETKEYS and ACL key patterns.

use crate::harness::*;
use redis::{Connection, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn buyer(c: &mut Connection, key: &str, b: &str) -> (i64, i64) {
    let pairs: Vec<(String, i64)> = redis::cmd("INV.BUYER").arg(key).arg(b).query(c).unwrap();
    let get = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|p| p.1).unwrap();
    (get("held"), get("bought"))
}

/// The state word a command answers (the first element of its reply).
fn state(c: &mut Connection, args: &[&str]) -> String {
    match ok(c, args) {
        Value::Array(items) => redis::from_redis_value(&items[0]).unwrap(),
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn limits_and_the_sale_window_decide_in_order() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    assert_eq!(
        err(c, &["INV.RULES", "sku", "LIMIT", "2"]),
        "ERR INV.RULES needs an existing key: create it with INV.SET first"
    );
    ok(c, &["INV.SET", "sku", "10"]);
    ok(c, &["INV.RESERVE", "sku", "early", "1", "BUYER", "alice"]);
    assert_eq!(ok(c, &["INV.RULES", "sku", "LIMIT", "2"]), Value::Okay);
    assert_eq!(get(c, "sku", "limit"), 2);
    assert_eq!(field(c, &["INV.GET", "sku"], "start"), None);
    // Buyers were tracked before the limit: alice holds 1 of her 2.
    assert_eq!(buyer(c, "sku", "alice"), (1, 0));
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "a1", "2", "BUYER", "alice"]),
        "LIMITED"
    );
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "a1", "1", "BUYER", "alice"]),
        "RESERVED"
    );
    assert_eq!(
        err(c, &["INV.RESERVE", "sku", "n1", "1"]),
        "ERR this key has a per-buyer limit (INV.RULES LIMIT 2): a new reservation needs BUYER id"
    );
    // A known txid answers first: a retry without BUYER, or after the
    // window closed, is still RESERVED; another buyer is a conflict.
    assert_eq!(state(c, &["INV.RESERVE", "sku", "a1", "1"]), "RESERVED");
    assert_eq!(
        err(c, &["INV.RESERVE", "sku", "a1", "1", "BUYER", "bob"]),
        "TXCONFLICT txid 'a1' is held for buyer 'alice', not for buyer 'bob'"
    );
    let later = (now_ms() + 3_600_000).to_string();
    ok(c, &["INV.RULES", "sku", "START", &later]);
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "b1", "1", "BUYER", "bob"]),
        "NOTYET"
    );
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "a1", "1", "BUYER", "alice"]),
        "RESERVED"
    );
    let past = (now_ms() - 1000).to_string();
    assert_eq!(
        err(c, &["INV.RULES", "sku", "END", &past]),
        format!("ERR the sale window must end after it starts: START {later} END {past}")
    );
    ok(c, &["INV.RULES", "sku", "START", "0", "END", &past]);
    // Window before limit: a limited buyer sees CLOSED.
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "a2", "5", "BUYER", "alice"]),
        "CLOSED"
    );
    // Holds made inside the window keep working.
    assert_eq!(state(c, &["INV.CONFIRM", "sku", "a1"]), "CONFIRMED");
    assert_eq!(buyer(c, "sku", "alice"), (1, 1));
    ok(c, &["INV.RULES", "sku", "END", "0"]);
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "a3", "1", "BUYER", "alice"]),
        "LIMITED"
    );
    // Cancel gives the allowance back; confirmed units count for good.
    assert_eq!(state(c, &["INV.CANCEL", "sku", "early"]), "CANCELLED");
    assert_eq!(buyer(c, "sku", "alice"), (0, 1));
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "a3", "1", "BUYER", "alice"]),
        "RESERVED"
    );
    ok(c, &["INV.CONFIRM", "sku", "a3"]);
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "a4", "1", "BUYER", "alice"]),
        "LIMITED"
    );
    // A new sale clears what buyers bought.
    ok(c, &["INV.RULES", "sku", "NEWSALE"]);
    assert_eq!(buyer(c, "sku", "alice"), (0, 0));
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "a4", "2", "BUYER", "alice"]),
        "RESERVED"
    );
    // Expiry gives the allowance back within milliseconds of the deadline.
    ok(
        c,
        &[
            "INV.RESERVE",
            "sku",
            "c1",
            "2",
            "BUYER",
            "carol",
            "TTL",
            "50",
        ],
    );
    assert_eq!(buyer(c, "sku", "carol"), (2, 0));
    eventually("carol's hold expired", Duration::from_secs(5), || {
        buyer(c, "sku", "carol") == (0, 0)
    });
    for (name, n) in [
        ("reserves_limited", 3),
        ("reserves_notyet", 1),
        ("reserves_closed", 1),
    ] {
        assert_eq!(info_field(c, name), n, "{name}");
    }
    let long = "x".repeat(65);
    for (args, want) in [
        (
            vec!["INV.RULES", "sku", "LIMIT", "-1"],
            "ERR LIMIT must be an integer from 0 to 4294967295, got '-1'",
        ),
        (
            vec!["INV.RESERVE", "sku", "z", "1", "BUYER", ""],
            "ERR buyer id must be 1 to 64 bytes, got 0",
        ),
        (
            vec!["INV.RESERVE", "sku", "z", "1", "BUYER", &long],
            "ERR buyer id must be 1 to 64 bytes, got 65",
        ),
        (
            vec!["INV.BUYER", "sku", ""],
            "ERR buyer id must be 1 to 64 bytes, got 0",
        ),
    ] {
        assert_eq!(err(c, &args), want, "{args:?}");
    }
    assert_eq!(ok(c, &["INV.AUDIT", "sku"]), Value::Okay);
}

#[test]
fn partial_confirm_and_adjust() {
    let s = Server::start(&["--notify-keyspace-events", "Ed"]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "10"]);
    ok(c, &["INV.RULES", "sku", "LIMIT", "6"]);
    ok(c, &["INV.RESERVE", "sku", "t1", "4", "BUYER", "al"]);
    // Adjust up within the limit and the stock, down always.
    assert_eq!(outcome(c, &["INV.ADJUST", "sku", "t1", "7"]).0, "LIMITED");
    assert_eq!(
        outcome(c, &["INV.ADJUST", "sku", "t1", "6"]),
        ("RESERVED".into(), 4, 4)
    );
    assert_eq!(buyer(c, "sku", "al"), (6, 0));
    assert_eq!(
        outcome(c, &["INV.ADJUST", "sku", "t1", "6"]),
        ("RESERVED".into(), 4, 4)
    );
    ok(c, &["INV.RULES", "sku", "LIMIT", "0"]);
    ok(c, &["INV.RESERVE", "sku", "other", "4"]);
    assert_eq!(outcome(c, &["INV.ADJUST", "sku", "t1", "7"]).0, "NOSTOCK");
    assert_eq!(
        outcome(c, &["INV.ADJUST", "sku", "t1", "5"]),
        ("RESERVED".into(), 1, 7)
    );
    // The original reserve's retry still answers RESERVED; another qty conflicts.
    assert_eq!(
        state(c, &["INV.RESERVE", "sku", "t1", "4", "BUYER", "al"]),
        "RESERVED"
    );
    assert_eq!(
        err(c, &["INV.RESERVE", "sku", "t1", "3"]),
        "TXCONFLICT txid is already reserved with qty 5, not 3"
    );
    assert_eq!(
        err(c, &["INV.CONFIRM", "sku", "t1", "QTY", "6"]),
        "ERR QTY must be 1 to the 5 units txid 't1' holds, got 6"
    );
    assert_eq!(
        outcome(c, &["INV.CONFIRM", "sku", "t1", "QTY", "2"]),
        ("CONFIRMED".into(), 4, 8)
    );
    assert_eq!((get(c, "sku", "stock"), get(c, "sku", "sold")), (8, 2));
    assert_eq!(buyer(c, "sku", "al"), (0, 2));
    assert_eq!(field(c, &["INV.TX", "sku", "t1"], "qty"), Some(5));
    assert_eq!(field(c, &["INV.TX", "sku", "t1"], "sold"), Some(2));
    assert_eq!(
        state(c, &["INV.CONFIRM", "sku", "t1", "QTY", "2"]),
        "CONFIRMED"
    );
    assert_eq!(state(c, &["INV.CONFIRM", "sku", "t1"]), "CONFIRMED");
    assert_eq!(
        err(c, &["INV.CONFIRM", "sku", "t1", "QTY", "3"]),
        "TXCONFLICT txid 't1' was confirmed for 2 of 5 units, not 3"
    );
    assert_eq!(outcome(c, &["INV.ADJUST", "sku", "t1", "1"]).0, "CONFIRMED");
    assert_eq!(outcome(c, &["INV.ADJUST", "sku", "nope", "1"]).0, "UNKNOWN");
    type Row = (String, String, i64, i64, i64);
    let scan: (String, Vec<Row>) = redis::cmd("INV.SCAN").arg("sku").arg(0).query(c).unwrap();
    let t1 = scan.1.iter().find(|r| r.0 == "t1").unwrap();
    assert_eq!((t1.1.as_str(), t1.2, t1.4), ("CONFIRMED", 5, 2));
    // MCONFIRM sells per key.
    ok(c, &["INV.SET", "{o}a", "5"]);
    ok(c, &["INV.SET", "{o}b", "5"]);
    ok(
        c,
        &[
            "INV.MRESERVE",
            "m",
            "BUYER",
            "bo",
            "0",
            "{o}a",
            "3",
            "{o}b",
            "2",
        ],
    );
    assert_eq!(
        err(c, &["INV.MCONFIRM", "m", "{o}a", "QTY", "4", "{o}b"]),
        "ERR QTY must be 1 to the 3 units txid 'm' holds, got 4"
    );
    assert_eq!(get(c, "{o}a", "sold"), 0);
    ok(c, &["INV.MCONFIRM", "m", "{o}a", "QTY", "1", "{o}b"]);
    assert_eq!((get(c, "{o}a", "sold"), get(c, "{o}b", "sold")), (1, 2));
    assert_eq!(
        (buyer(c, "{o}a", "bo"), buyer(c, "{o}b", "bo")),
        ((0, 1), (0, 2))
    );
    for k in ["sku", "{o}a", "{o}b"] {
        assert_eq!(ok(c, &["INV.AUDIT", k]), Value::Okay);
    }
}

#[test]
fn new_changes_fire_keyspace_events() {
    let s = Server::start(&["--notify-keyspace-events", "Ed"]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "5"]);
    let mut sub = s.conn();
    let mut ps = sub.as_pubsub();
    ps.psubscribe("__keyevent@0__:inv.*").unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    ok(c, &["INV.RULES", "sku", "LIMIT", "3"]);
    ok(c, &["INV.RESERVE", "sku", "t", "2", "BUYER", "b"]);
    ok(c, &["INV.ADJUST", "sku", "t", "1"]);
    ok(c, &["INV.CONFIRM", "sku", "t", "QTY", "1"]);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(ps.get_message().unwrap().get_channel_name().to_string());
    }
    assert_eq!(
        got,
        ["inv.rules", "inv.reserve", "inv.adjust", "inv.confirm"]
            .map(|e| format!("__keyevent@0__:{e}"))
    );
}

/// Buyers, rules, partial confirms and adjusts on a few keys.
fn sale_workload(c: &mut Connection, key: &str) {
    let at = (now_ms() + 3_600_000).to_string();
    ok(c, &["INV.SET", key, "1000"]);
    ok(c, &["INV.RESERVE", key, "plain", "2"]);
    ok(c, &["INV.RULES", key, "LIMIT", "9", "END", "9999999999999"]);
    for i in 0..60 {
        let b = format!("buyer-{}-{}", i % 7, "x".repeat(i % 3 * 10));
        let (tx, qty) = (format!("o{i}"), (1 + i % 2).to_string());
        // Every shape replication takes: with a TTL before or after the
        // buyer (the reserve's own argument array reused), and without.
        let args: Vec<&str> = match i % 3 {
            0 => vec!["INV.RESERVE", key, &tx, &qty, "BUYER", &b],
            1 => vec!["INV.RESERVE", key, &tx, &qty, "TTL", "600000", "BUYER", &b],
            _ => vec!["INV.RESERVE", key, &tx, &qty, "BUYER", &b, "PXAT", &at],
        };
        ok(c, &args);
    }
    for i in 0..10 {
        ok(c, &["INV.CONFIRM", key, &format!("o{i}")]);
        ok(
            c,
            &["INV.CONFIRM", key, &format!("o{}", i + 10), "QTY", "1"],
        );
        ok(c, &["INV.ADJUST", key, &format!("o{}", i + 20), "3"]);
        ok(c, &["INV.CANCEL", key, &format!("o{}", i + 30)]);
    }
}

#[test]
fn every_copy_reaches_the_same_state() {
    let master = Server::start(&["--appendonly", "yes", "--aof-use-rdb-preamble", "no"]);
    let replica = replica_of(&master, &[]);
    let c = &mut master.conn();
    sale_workload(c, "sku");
    sale_workload(c, "{x}other");
    ok(c, &["INV.RULES", "sku", "NEWSALE"]);
    wait_replicated(c);
    let d = digest(c);
    assert_eq!(digest(&mut replica.conn()), d, "replica");
    let get = ok(c, &["INV.GET", "sku"]);
    assert_eq!(ok(&mut replica.conn(), &["INV.GET", "sku"]), get);
    ok(c, &["DEBUG", "RELOAD"]);
    assert_eq!(digest(c), d, "DEBUG RELOAD");
    dump_restore(c, "sku", "restored");
    let digest_of = |c: &mut Connection, k: &str| -> Vec<String> {
        redis::cmd("DEBUG")
            .arg("DIGEST-VALUE")
            .arg(k)
            .query(c)
            .unwrap()
    };
    assert_eq!(
        digest_of(c, "restored"),
        digest_of(c, "sku"),
        "DUMP/RESTORE"
    );
    ok(c, &["DEL", "restored"]);
    // The AOF as written, effect by effect, replays to the same state...
    let master = master.restart();
    let c = &mut master.conn();
    assert_eq!(digest(c), d, "AOF replay");
    // ...and so does its rewrite.
    ok(c, &["BGREWRITEAOF"]);
    eventually("AOF rewritten", Duration::from_secs(20), || {
        info_value(c, "persistence", "aof_rewrite_in_progress") == "0"
            && info_value(c, "persistence", "aof_rewrite_scheduled") == "0"
    });
    let master = master.restart();
    let c = &mut master.conn();
    assert_eq!(digest(c), d, "AOF rewrite then restart");
    for k in ["sku", "{x}other"] {
        assert_eq!(ok(c, &["INV.AUDIT", k]), Value::Okay);
    }
    assert_eq!(
        buyer(c, "sku", "buyer-1-"),
        buyer(&mut replica.conn(), "sku", "buyer-1-")
    );
}

fn info_value(c: &mut Connection, section: &str, name: &str) -> String {
    testkit::info_value(c, section, name)
}

#[test]
fn multi_key_forms_report_their_keys() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    let keys = |c: &mut Connection, args: &[&str]| -> Vec<String> {
        redis::cmd("COMMAND")
            .arg("GETKEYS")
            .arg(args)
            .query(c)
            .unwrap()
    };
    assert_eq!(
        keys(c, &["INV.MRESERVE", "t", "0", "a", "1", "b", "2"]),
        ["a", "b"]
    );
    assert_eq!(
        keys(
            c,
            &["INV.MRESERVE", "t", "BUYER", "bob", "0", "a", "1", "b", "2"]
        ),
        ["a", "b"]
    );
    assert_eq!(keys(c, &["INV.MCONFIRM", "t", "a", "b"]), ["a", "b"]);
    assert_eq!(
        keys(c, &["INV.MCONFIRM", "t", "a", "QTY", "2", "b"]),
        ["a", "b"]
    );
    assert_eq!(keys(c, &["INV.MCONFIRM", "t", "QTY", "b"]), ["QTY", "b"]);
    // ACL key patterns see the same keys.
    let admin = &mut s.conn();
    ok(
        admin,
        &["ACL", "SETUSER", "shop", "on", ">pw", "~{s}A:*", "+@all"],
    );
    ok(admin, &["INV.SET", "{s}A:1", "5"]);
    ok(admin, &["INV.SET", "{s}B:1", "5"]);
    let u = &mut s.conn();
    ok(u, &["AUTH", "shop", "pw"]);
    let refused = |u: &mut Connection, args: &[&str]| matches!(call(u, args), Err(e) if e.code() == Some("NOPERM"));
    assert!(refused(
        u,
        &[
            "INV.MRESERVE",
            "t",
            "BUYER",
            "b",
            "0",
            "{s}A:1",
            "1",
            "{s}B:1",
            "1"
        ]
    ));
    assert!(refused(
        u,
        &["INV.MCONFIRM", "t", "{s}A:1", "QTY", "1", "{s}B:1"]
    ));
    assert_eq!(
        state(u, &["INV.MRESERVE", "t", "BUYER", "b", "0", "{s}A:1", "1"]),
        "RESERVED"
    );
    assert_eq!(
        state(u, &["INV.MCONFIRM", "t", "{s}A:1", "QTY", "1"]),
        "CONFIRMED"
    );
}

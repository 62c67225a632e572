//! Replies under RESP2 and RESP3 (`HELLO 3`, redis-rs's `protocol=resp3`):
//! INV.GET and INV.TX answer maps under RESP3 and flat pairs under RESP2
//! with the same fields and values; every other reply is the same in both.

use crate::harness::*;
use redis::{Connection, Value};

fn resp3(s: &Server) -> Connection {
    redis::Client::open(format!("{}?protocol=resp3", s.url()))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// A RESP3 map as the RESP2 pairs array it stands for.
fn as_pairs(v: &Value) -> Value {
    match v {
        Value::Map(pairs) => Value::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [k.clone(), v.clone()])
                .collect(),
        ),
        other => panic!("expected a map, got {other:?}"),
    }
}

#[test]
fn reads_answer_maps_under_resp3_and_the_same_pairs_under_resp2() {
    let s = Server::start(&[]);
    let (two, three) = (&mut s.conn(), &mut resp3(&s));
    ok(two, &["INV.SET", "k", "10"]);
    ok(two, &["INV.RESERVE", "k", "t1", "3", "TTL", "60000"]);

    for args in [&["INV.GET", "k"][..], &["INV.TX", "k", "t1"]] {
        let (a, b) = (ok(two, args), ok(three, args));
        assert!(matches!(a, Value::Array(_)), "{args:?}: {a:?}");
        assert_eq!(as_pairs(&b), a, "{args:?}");
    }
    let Value::Map(fields) = ok(three, &["INV.GET", "k"]) else {
        unreachable!()
    };
    let names: Vec<String> = fields
        .iter()
        .map(|(k, _)| redis::from_redis_value(k).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "stock",
            "reserved",
            "available",
            "sold",
            "version",
            "open",
            "records"
        ]
    );

    // Unknown key and txid: nil in both.
    assert_eq!(ok(two, &["INV.GET", "none"]), Value::Nil);
    assert_eq!(ok(three, &["INV.GET", "none"]), Value::Nil);
    assert_eq!(ok(three, &["INV.TX", "k", "nope"]), Value::Nil);
}

#[test]
fn writes_scans_and_errors_are_the_same_under_both_protocols() {
    let s = Server::start(&[]);
    let (two, three) = (&mut s.conn(), &mut resp3(&s));
    ok(two, &["INV.SET", "a", "10"]);
    ok(two, &["INV.SET", "b", "10"]);
    // The same command twice is a replay: both connections must see the
    // same reply, whichever goes first.
    for args in [
        &["INV.RESERVE", "a", "t1", "2"][..],
        &["INV.CONFIRM", "a", "t1"],
        &["INV.CANCEL", "a", "t2"],
        &["INV.MRESERVE", "t3", "0", "a", "1", "b", "1"],
        &["INV.MCANCEL", "t3", "a", "b"],
        &["INV.RESERVE", "a", "t4", "1"],
        &["INV.SCAN", "a", "0"],
        &["INV.AUDIT", "a"],
    ] {
        let first = ok(two, args);
        assert_eq!(ok(three, args), first, "{args:?}");
    }
    assert_eq!(
        ok(three, &["INV.ADD", "a", "1"]),
        Value::Int(redis::from_redis_value::<i64>(&ok(two, &["INV.ADD", "a", "0"])).unwrap())
    );
    for args in [
        &["INV.RESERVE", "a", "t9", "0"][..],
        &["INV.SET", "a", "x"],
        &["INV.RESERVE", "a", "t4", "5"],
    ] {
        assert_eq!(err(three, args), err(two, args), "{args:?}");
    }
}

/// The module writes its state words from replies it makes at load with
/// ECHO (one write each instead of three). A server without ECHO (renamed
/// away) gets the same bytes written piece by piece.
#[test]
fn state_words_are_the_same_on_a_server_without_echo() {
    let with = Server::start(&[]);
    let without = Server::start(&["--rename-command", "ECHO", ""]);
    let stats = |s: &Server| -> String {
        redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut s.conn())
            .unwrap()
    };
    assert!(stats(&with).contains("cmdstat_echo:calls=9,"));
    assert!(!stats(&without).contains("cmdstat_echo"));
    for s in [&with, &without] {
        ok(&mut s.conn(), &["INV.SET", "a", "2"]);
    }
    // Every state word, each command sent twice (a replay the second time).
    for args in [
        &["INV.RESERVE", "a", "t1", "1", "TTL", "60000"][..],
        &["INV.RESERVE", "a", "t2", "5"],
        &["INV.CONFIRM", "a", "t1"],
        &["INV.CANCEL", "a", "t3"],
        &["INV.RESERVE", "a", "t4", "1", "TTL", "200"],
        &["INV.CONFIRM", "a", "t9"],
    ] {
        for conn in [resp3 as fn(&Server) -> Connection, |s: &Server| s.conn()] {
            let reply = ok(&mut conn(&with), args);
            assert_eq!(ok(&mut conn(&without), args), reply, "{args:?}");
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(250));
    for s in [&with, &without] {
        let Value::Array(items) = ok(&mut s.conn(), &["INV.CONFIRM", "a", "t4"]) else {
            panic!("INV.CONFIRM replies with an array");
        };
        assert_eq!(items[0], Value::BulkString(b"EXPIRED".to_vec()));
    }
}

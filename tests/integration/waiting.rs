//! The waiting room on a real server: `INV.RESERVE ... BLOCK ms` waits for
//! returned units (cancel, expiry, restock) and gets them in arrival order;
//! nothing overtakes the queue; timeouts, disconnects, retries, cancels,
//! MULTI and scripts, a deleted key, a master turned replica each get
//! their defined answer; grants replicate like any reservation.

use crate::harness::*;
use redis::{Connection, RedisResult, Value};
use std::io::Write;
use std::thread::JoinHandle;
use std::time::Duration;
use testkit::cluster::Cluster;

/// `[state, available, version]` of a reply.
fn outcome_of(v: &Value) -> (String, i64, i64) {
    match v {
        Value::Array(items) if items.len() == 3 => (
            redis::from_redis_value(&items[0]).unwrap(),
            redis::from_redis_value(&items[1]).unwrap(),
            redis::from_redis_value(&items[2]).unwrap(),
        ),
        other => panic!("not [state, available, version]: {other:?}"),
    }
}

/// Sends `args` on a connection of its own, on a thread: a reserve that may
/// block. Returns once the server counts one more waiter (or the call
/// returned), so callers start waiters in a known arrival order.
fn start(s: &Server, args: &[&str]) -> JoinHandle<RedisResult<Value>> {
    start_on(|| s.conn(), args)
}

/// `start` on any server a connection can be opened to (a cluster node).
fn start_on(conn: impl Fn() -> Connection, args: &[&str]) -> JoinHandle<RedisResult<Value>> {
    let admin = &mut conn();
    let before = info_field(admin, "waiters");
    let mut c = conn();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let h = std::thread::spawn(move || {
        let mut cmd = redis::cmd(&args[0]);
        for a in &args[1..] {
            cmd.arg(a);
        }
        cmd.query::<Value>(&mut c)
    });
    eventually("the reserve waits", Duration::from_secs(5), || {
        h.is_finished() || info_field(admin, "waiters") > before
    });
    h
}

fn answer(h: JoinHandle<RedisResult<Value>>) -> (String, i64, i64) {
    outcome_of(&h.join().unwrap().unwrap())
}

fn waiters(c: &mut Connection) -> i64 {
    info_field(c, "waiters")
}

#[test]
fn returned_units_go_to_waiters_in_arrival_order() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "1"]);
    ok(c, &["INV.RESERVE", "sku", "first", "1", "TTL", "300"]);
    let w: Vec<_> = (1..=4)
        .map(|i| {
            let txid = format!("w{i}");
            start(&s, &["INV.RESERVE", "sku", &txid, "1", "BLOCK", "20000"])
        })
        .collect();
    assert_eq!(waiters(c), 4);
    let mut w = w.into_iter();
    // The first hold expires by itself: its unit goes to w1, not to a poller.
    let (state, available, _) = answer(w.next().unwrap());
    assert_eq!((state.as_str(), available), ("RESERVED", 0));
    // A restock of 2: w2 and w3, in that order (versions tell the order).
    ok(c, &["INV.ADD", "sku", "2"]);
    let (s2, _, v2) = answer(w.next().unwrap());
    let (s3, _, v3) = answer(w.next().unwrap());
    assert_eq!((s2.as_str(), s3.as_str()), ("RESERVED", "RESERVED"));
    assert!(v2 < v3, "w2 was served before w3");
    // A cancel: its own reply describes the cancel alone, then w4 gets it.
    let (cs, cav, cv) = outcome(c, &["INV.CANCEL", "sku", "w2"]);
    assert_eq!((cs.as_str(), cav), ("CANCELLED", 1));
    let (s4, a4, v4) = answer(w.next().unwrap());
    assert_eq!((s4.as_str(), a4, v4), ("RESERVED", 0, cv + 1));
    assert_eq!(waiters(c), 0);
    assert_eq!(info_field(c, "grants"), 4);
    assert_eq!(tx_state(c, "sku", "w4").as_deref(), Some("RESERVED"));
    ok(c, &["INV.AUDIT", "sku"]);
}

#[test]
fn nothing_overtakes_the_queue_and_the_head_keeps_its_place() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    let big = start(&s, &["INV.RESERVE", "sku", "big", "3", "BLOCK", "20000"]);
    let small = start(&s, &["INV.RESERVE", "sku", "small", "1", "BLOCK", "20000"]);
    // Two units come back: not enough for the head, and the one behind it
    // (who wants 1) does not overtake it, nor does a polling reserve.
    ok(c, &["INV.ADD", "sku", "2"]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(waiters(c), 2);
    let (poll, available, _) = outcome(c, &["INV.RESERVE", "sku", "poll", "1"]);
    assert_eq!((poll.as_str(), available), ("NOSTOCK", 2));
    let (m, _) = multi_state(c, &["INV.MRESERVE", "order", "0", "sku", "1"]);
    assert_eq!(m, "NOSTOCK");
    // The third unit: the head gets its 3, then the small one waits on.
    ok(c, &["INV.ADD", "sku", "1"]);
    assert_eq!(answer(big).0, "RESERVED");
    assert_eq!(waiters(c), 1);
    ok(c, &["INV.CANCEL", "sku", "big"]);
    assert_eq!(answer(small).0, "RESERVED");
}

/// The overall state of a multi-key reply.
fn multi_state(c: &mut Connection, args: &[&str]) -> (String, Value) {
    match ok(c, args) {
        Value::Array(items) => (
            redis::from_redis_value(&items[0]).unwrap(),
            items[1].clone(),
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_timeout_answers_nostock_and_records_nothing() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    let h = start(&s, &["INV.RESERVE", "sku", "t", "1", "BLOCK", "200"]);
    let (state, available, version) = answer(h);
    assert_eq!((state.as_str(), available, version), ("NOSTOCK", 0, 1));
    assert_eq!(tx_state(c, "sku", "t"), None);
    assert_eq!(info_field(c, "wait_timeouts"), 1);
    assert_eq!(waiters(c), 0);
    // PXAT bounds a wait too, BLOCK 0 included.
    let at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 300)
        .to_string();
    let h = start(
        &s,
        &["INV.RESERVE", "sku", "p", "1", "PXAT", &at, "BLOCK", "0"],
    );
    assert_eq!(answer(h).0, "NOSTOCK");
}

#[test]
fn a_waiting_txid_is_refused_a_second_place_and_a_cancel_fences_it() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    let h = start(&s, &["INV.RESERVE", "sku", "t", "1", "BLOCK", "20000"]);
    assert_eq!(
        err(c, &["INV.RESERVE", "sku", "t", "1", "BLOCK", "100"]),
        "WAITING txid 't' is already waiting for units on this key"
    );
    assert_eq!(
        err(c, &["INV.RESERVE", "sku", "t", "1"]),
        "WAITING txid 't' is already waiting for units on this key"
    );
    let (state, _, version) = outcome(c, &["INV.CANCEL", "sku", "t"]);
    assert_eq!(state, "CANCELLED");
    assert_eq!(answer(h), ("CANCELLED".to_string(), 0, version));
    // The cancel left a fence: the txid never takes stock now.
    ok(c, &["INV.ADD", "sku", "5"]);
    assert_eq!(outcome(c, &["INV.RESERVE", "sku", "t", "1"]).0, "CANCELLED");
    // So does INV.MCANCEL.
    ok(c, &["INV.SET", "sku", "5"]);
    ok(c, &["INV.RESERVE", "sku", "all", "5"]);
    let h = start(&s, &["INV.RESERVE", "sku", "m", "1", "BLOCK", "20000"]);
    multi_state(c, &["INV.MCANCEL", "m", "sku"]);
    assert_eq!(answer(h).0, "CANCELLED");
    assert_eq!(waiters(c), 0);
}

#[test]
fn a_closed_connection_gives_its_place_to_the_next() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    let mut gone = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    gone.write_all(b"*6\r\n$11\r\nINV.RESERVE\r\n$3\r\nsku\r\n$4\r\ngone\r\n$1\r\n1\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n")
        .unwrap();
    eventually("the raw client waits", Duration::from_secs(5), || {
        waiters(c) == 1
    });
    let next = start(&s, &["INV.RESERVE", "sku", "next", "1", "BLOCK", "20000"]);
    drop(gone);
    eventually("its place is dropped", Duration::from_secs(5), || {
        waiters(c) == 1
    });
    assert_eq!(info_field(c, "waiters_dropped"), 1);
    ok(c, &["INV.ADD", "sku", "1"]);
    assert_eq!(answer(next).0, "RESERVED");
    assert_eq!(tx_state(c, "sku", "gone"), None);
}

#[test]
fn multi_and_scripts_do_not_wait() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    let replies: Vec<Value> = redis::pipe()
        .atomic()
        .cmd("INV.RESERVE")
        .arg("sku")
        .arg("m")
        .arg(1)
        .arg("BLOCK")
        .arg(0)
        .query(c)
        .unwrap();
    assert_eq!(outcome_of(&replies[0]).0, "NOSTOCK");
    let v: Value = redis::cmd("EVAL")
        .arg("return redis.call('INV.RESERVE', KEYS[1], 'l', 1, 'BLOCK', 0)")
        .arg(1)
        .arg("sku")
        .query(c)
        .unwrap();
    assert_eq!(outcome_of(&v).0, "NOSTOCK");
    assert_eq!(waiters(c), 0);
}

#[test]
fn a_buyers_waiting_units_count_against_the_limit() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    ok(c, &["INV.RULES", "sku", "LIMIT", "2"]);
    let h = start(
        &s,
        &[
            "INV.RESERVE",
            "sku",
            "a1",
            "2",
            "BUYER",
            "alice",
            "BLOCK",
            "20000",
        ],
    );
    assert_eq!(
        outcome(
            c,
            &[
                "INV.RESERVE",
                "sku",
                "a2",
                "1",
                "BUYER",
                "alice",
                "BLOCK",
                "100"
            ]
        )
        .0,
        "LIMITED"
    );
    ok(c, &["INV.ADD", "sku", "3"]);
    assert_eq!(answer(h).0, "RESERVED");
    let pairs: Vec<(String, i64)> = redis::cmd("INV.BUYER")
        .arg("sku")
        .arg("alice")
        .query(c)
        .unwrap();
    assert_eq!(pairs[0], ("held".to_string(), 2));
}

#[test]
fn a_deleted_key_answers_its_waiters_and_another_type_is_wrongtype() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    // A key that does not exist yet: its waiters wait for the stock.
    let early = start(&s, &["INV.RESERVE", "sale", "e", "1", "BLOCK", "20000"]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(waiters(c), 1);
    ok(c, &["INV.SET", "sale", "1"]);
    assert_eq!(answer(early).0, "RESERVED");
    // Once the key was there, deleting it answers NOSTOCK (a missing key).
    let h = start(&s, &["INV.RESERVE", "sale", "d", "1", "BLOCK", "20000"]);
    ok(c, &["DEL", "sale"]);
    assert_eq!(answer(h), ("NOSTOCK".to_string(), 0, 0));
    ok(c, &["INV.SET", "sale", "0"]);
    let h = start(&s, &["INV.RESERVE", "sale", "w", "1", "BLOCK", "20000"]);
    // In one transaction: a housekeeping tick between the two would find
    // the key gone (NOSTOCK) first.
    let _: () = redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg("sale")
        .ignore()
        .cmd("SET")
        .arg("sale")
        .arg("text")
        .ignore()
        .query(c)
        .unwrap();
    let e = h.join().unwrap().unwrap_err();
    assert_eq!(e.code(), Some("WRONGTYPE"), "{e}");
    assert_eq!(info_field(c, "waiters_dropped"), 2);
}

#[test]
fn grants_replicate_and_a_master_turned_replica_unblocks_its_waiters() {
    let m = Server::start(&[]);
    let r = replica_of(&m, &[]);
    let c = &mut m.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    let h = start(&m, &["INV.RESERVE", "sku", "g", "2", "BLOCK", "20000"]);
    ok(c, &["INV.ADD", "sku", "2"]);
    assert_eq!(answer(h).0, "RESERVED");
    wait_replicated(c);
    let rc = &mut r.conn();
    assert_eq!(tx_state(rc, "sku", "g").as_deref(), Some("RESERVED"));
    assert_eq!(digest(rc), digest(c));
    // A blocking reserve sent to a replica is a write: refused, never queued.
    let e = call(rc, &["INV.RESERVE", "sku", "r", "1", "BLOCK", "0"]).unwrap_err();
    assert_eq!(e.code(), Some("READONLY"), "{e}");
    assert_eq!(waiters(rc), 0);
    // A waiter on a master that becomes a replica: the server answers it.
    let h = start(&m, &["INV.RESERVE", "sku", "x", "1", "BLOCK", "0"]);
    ok(c, &["REPLICAOF", "127.0.0.1", &r.port.to_string()]);
    let e = h.join().unwrap().unwrap_err();
    assert!(e.to_string().contains("UNBLOCKED"), "{e}");
    assert_eq!(waiters(c), 0);
}

#[test]
fn client_unblock_ends_a_wait_as_a_timeout_does() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    let h = start(&s, &["INV.RESERVE", "sku", "u", "1", "BLOCK", "0"]);
    let list: String = redis::cmd("CLIENT").arg("LIST").query(c).unwrap();
    let id = list
        .lines()
        .find(|l| l.contains("cmd=inv.reserve"))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .expect("the waiting client is listed")
        .to_string();
    let unblocked: i64 = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(&id)
        .query(c)
        .unwrap();
    assert_eq!(unblocked, 1);
    assert_eq!(answer(h).0, "NOSTOCK");
    assert_eq!(waiters(c), 0);
    assert_eq!(tx_state(c, "sku", "u"), None);
}

#[test]
fn a_huge_block_waits_like_block_0_and_a_full_queue_is_refused() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    let h = start(
        &s,
        &[
            "INV.RESERVE",
            "sku",
            "h",
            "1",
            "BLOCK",
            "9223372036854775807",
        ],
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(waiters(c), 1, "a huge BLOCK still waits");
    ok(c, &["CONFIG", "SET", "inventory.max-waiters-per-key", "1"]);
    assert_eq!(
        err(c, &["INV.RESERVE", "sku", "x", "1", "BLOCK", "10"]),
        "LIMIT key already has 1 waiting reserves (inventory.max-waiters-per-key)"
    );
    ok(c, &["INV.ADD", "sku", "1"]);
    assert_eq!(answer(h).0, "RESERVED");
}

/// The key moves to another master while a reserve waits for it (by
/// MIGRATE as a cluster manager does it, and on Valkey 9 by atomic slot
/// migration): the waiter is told to retry (TRYAGAIN), and finds the key
/// on its new owner.
#[test]
fn a_waiter_whose_key_moves_to_another_node_is_told_to_retry() {
    let cluster = Cluster::start_shaped(&testkit::server_bin(), testkit::Build::Debug, &[], 0);
    let key = "{wr}sku";
    let slot = cluster.slot_of(key);
    let from = cluster.owner(slot);
    let to = (from + 1) % cluster.nodes.len();
    let src = &mut cluster.nodes[from].conn();
    ok(src, &["INV.SET", key, "0"]);
    let h = start_on(
        || cluster.nodes[from].conn(),
        &["INV.RESERVE", key, "w", "1", "BLOCK", "20000"],
    );
    let (s, from_id, to_id) = (slot.to_string(), cluster.node_id(from), cluster.node_id(to));
    let dst = &mut cluster.nodes[to].conn();
    ok(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
    ok(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
    let port = cluster.nodes[to].port.to_string();
    ok(src, &["MIGRATE", "127.0.0.1", &port, key, "0", "5000"]);
    for m in cluster.masters() {
        ok(
            &mut cluster.nodes[m].conn(),
            &["CLUSTER", "SETSLOT", &s, "NODE", &to_id],
        );
    }
    let e = h.join().unwrap().unwrap_err();
    assert_eq!(e.code(), Some("TRYAGAIN"), "{e}");
    assert_eq!(info_field(src, "waiters"), 0);
    // Where the key is now, the reserve waits again and is served there.
    let h = start_on(
        || cluster.nodes[to].conn(),
        &["INV.RESERVE", key, "w", "1", "BLOCK", "20000"],
    );
    ok(dst, &["INV.ADD", key, "1"]);
    assert_eq!(answer(h).0, "RESERVED");
    if !cluster.has_atomic_migration() {
        testkit::skip("no CLUSTER MIGRATESLOTS on this server (Valkey 9 only)");
        return;
    }
    let h = start_on(
        || cluster.nodes[to].conn(),
        &["INV.RESERVE", key, "v", "5", "BLOCK", "20000"],
    );
    cluster.migrate_atomically(slot, to, from).unwrap();
    let e = h.join().unwrap().unwrap_err();
    assert_eq!(e.code(), Some("TRYAGAIN"), "{e}");
}

/// Units that come back just as waits end: every waiter gets exactly one
/// answer (none is lost between a grant and its end of wait), and what it
/// was told is what the key records.
/// Sends `args` on a new raw connection without reading the reply (a
/// reserve that may block; thousands of them need no thread each).
fn send_raw(s: &Server, args: &[&str]) -> std::net::TcpStream {
    let mut t = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    t.write_all(cmd.as_bytes()).unwrap();
    t
}

/// The state word of a `[state, available, version]` reply read off a raw
/// connection.
fn read_state(t: std::net::TcpStream, who: &str) -> String {
    use std::io::{BufRead, BufReader};
    let mut r = BufReader::new(t);
    let mut line = String::new();
    r.read_line(&mut line).expect("every waiter is answered");
    assert_eq!(line, "*3\r\n", "{who}: {line:?}");
    let (mut len, mut word) = (String::new(), String::new());
    r.read_line(&mut len).unwrap();
    r.read_line(&mut word).unwrap();
    word.trim_end().to_string()
}

#[test]
fn grants_at_the_end_of_waits_are_never_lost() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "0"]);
    let n = 200;
    let mut streams = Vec::new();
    for i in 0..n {
        let txid = format!("e{i:03}");
        let block = (250 + i % 20).to_string();
        let t = send_raw(&s, &["INV.RESERVE", "sku", &txid, "1", "BLOCK", &block]);
        streams.push((txid, t));
    }
    eventually("all wait", Duration::from_secs(5), || waiters(c) == n);
    // Units trickle back across the moment the waits end.
    std::thread::sleep(Duration::from_millis(230));
    for _ in 0..60 {
        ok(c, &["INV.ADD", "sku", "1"]);
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut granted = 0;
    for (txid, t) in streams {
        match read_state(t, &txid).as_str() {
            "RESERVED" => {
                granted += 1;
                assert_eq!(
                    tx_state(c, "sku", &txid).as_deref(),
                    Some("RESERVED"),
                    "{txid}"
                );
            }
            "NOSTOCK" => assert_eq!(tx_state(c, "sku", &txid), None, "{txid}"),
            other => panic!("{txid}: {other}"),
        }
    }
    assert_eq!(granted, info_field(c, "grants"));
    assert_eq!(waiters(c), 0);
    ok(c, &["INV.AUDIT", "sku"]);
}

/// More ended waits than one housekeeping tick answers (64), on one key
/// and on more keys than one tick looks at (128), and more waiters of
/// deleted keys than that: every one is answered, in later ticks.
#[test]
fn waits_beyond_one_ticks_share_are_all_answered() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    let block = || "5000".to_string();
    let mut ending = Vec::new();
    ok(c, &["INV.SET", "one", "0"]);
    for i in 0..300 {
        let txid = format!("o{i}");
        ending.push((
            txid.clone(),
            send_raw(&s, &["INV.RESERVE", "one", &txid, "1", "BLOCK", &block()]),
        ));
    }
    for k in 0..150 {
        let key = format!("end{k}");
        ending.push((
            key.clone(),
            send_raw(&s, &["INV.RESERVE", &key, "t", "1", "BLOCK", &block()]),
        ));
    }
    let mut dropped = Vec::new();
    for k in 0..150 {
        let key = format!("del{k}");
        ok(c, &["INV.SET", &key, "0"]);
        dropped.push((
            key.clone(),
            send_raw(&s, &["INV.RESERVE", &key, "t", "1", "BLOCK", "0"]),
        ));
    }
    let last_sent = std::time::Instant::now();
    eventually("all wait", Duration::from_secs(5), || waiters(c) == 600);
    for k in 0..150 {
        ok(c, &["DEL", &format!("del{k}")]);
    }
    // Frozen past every end: the first tick after finds all 450 due.
    signal("STOP", s.pid());
    std::thread::sleep(Duration::from_millis(5_300).saturating_sub(last_sent.elapsed()));
    signal("CONT", s.pid());
    for (who, t) in ending.into_iter().chain(dropped) {
        assert_eq!(read_state(t, &who), "NOSTOCK", "{who}");
    }
    assert_eq!(
        (
            waiters(c),
            info_field(c, "wait_timeouts"),
            info_field(c, "waiters_dropped")
        ),
        (0, 450, 150)
    );
    assert_eq!(tx_state(c, "one", "o0"), None);
}

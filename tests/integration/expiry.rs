//! Expiry and purge without any client touching the key, including keys that
//! moved by RENAME, MOVE, COPY and RESTORE.

use crate::harness::*;
use std::time::Duration;

#[test]
fn units_return_by_themselves_without_clients() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "5"]);
    ok(c, &["INV.RESERVE", "sku", "o", "5", "TTL", "100"]);
    // How soon is a benchmark's goal (make bench, phase 4); here a loaded
    // machine's margin.
    eventually("expiry", Duration::from_secs(10), || {
        info_field(c, "expired") == 1
    });
    assert_eq!(
        (
            info_field(c, "reserved_units"),
            info_field(c, "open_reservations")
        ),
        (0, 0)
    );
    assert_eq!(
        (get(c, "sku", "available"), get(c, "sku", "version")),
        (5, 3)
    );
    assert_eq!(outcome(c, &["INV.CONFIRM", "sku", "o"]).0, "EXPIRED");
    assert_eq!(info_field(c, "confirms_late"), 1);
}

#[test]
fn expiry_follows_keys_that_moved() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    // Due after every move below, even on a loaded machine: each copy
    // must expire where it landed.
    for k in ["a", "b", "c", "d"] {
        ok(c, &["INV.SET", k, "5"]);
        ok(c, &["INV.RESERVE", k, "o", "1", "TTL", "3000"]);
    }
    let dump: Vec<u8> = redis::cmd("DUMP").arg("d").query(c).unwrap();
    ok(c, &["DEL", "d"]);
    let _: () = redis::cmd("RESTORE")
        .arg("restored")
        .arg(0)
        .arg(&dump)
        .query(c)
        .unwrap();
    ok(c, &["RENAME", "a", "renamed"]);
    ok(c, &["MOVE", "b", "3"]);
    ok(c, &["COPY", "c", "copied"]);
    ok(c, &["SWAPDB", "0", "5"]);
    // a, c, copied, restored live in db 5 now; b in db 3. Five reservations.
    eventually("all five expire", Duration::from_secs(15), || {
        info_field(c, "expired") == 5
    });
    for (db, k) in [
        ("5", "renamed"),
        ("3", "b"),
        ("5", "c"),
        ("5", "copied"),
        ("5", "restored"),
    ] {
        ok(c, &["SELECT", db]);
        assert_eq!(get(c, k, "version"), 3, "{k} in db {db}");
    }
    assert_eq!(info_field(c, "open_reservations"), 0);
}

#[test]
fn finished_records_and_fences_are_purged_after_retention() {
    let s = Server::start(&["retention-ms", "200"]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "5"]);
    // Confirmed before its deadline even on a loaded machine; purged 200 ms
    // after the deadline (retention counts from it).
    ok(c, &["INV.RESERVE", "sku", "o", "1", "TTL", "1000"]);
    ok(c, &["INV.CONFIRM", "sku", "o"]);
    ok(c, &["INV.CANCEL", "sku", "fence"]);
    eventually("purge", Duration::from_secs(10), || {
        info_field(c, "purged") == 2
    });
    assert_eq!(tx_state(c, "sku", "o"), None);
    assert_eq!(get(c, "sku", "records"), 0);
    assert_eq!(get(c, "sku", "sold"), 1);
}

#[test]
fn many_due_at_once_all_come_back() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    let n = 30_000;
    ok(c, &["INV.SET", "sku", &n.to_string()]);
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("INV.RESERVE")
            .arg("sku")
            .arg(format!("order-{i:010}"))
            .arg(1)
            .arg("TTL")
            .arg(5000)
            .ignore();
    }
    let _: () = pipe.query(c).unwrap();
    assert_eq!(get(c, "sku", "available"), 0);
    eventually("all units back", Duration::from_secs(10), || {
        info_field(c, "reserved_units") == 0
    });
    assert_eq!(info_field(c, "expired"), n);
    assert_eq!(ok(c, &["INV.AUDIT", "sku"]), redis::Value::Okay);
}

#[test]
fn move_leaves_the_callers_db_selected() {
    // Valkey 8.1 switches MOVE's caller to the target db when a module
    // listens to generic events; the module undoes that.
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["SET", "x", "1"]);
    ok(c, &["SET", "y", "1"]);
    ok(c, &["MOVE", "x", "3"]);
    assert_eq!(
        ok(c, &["EXISTS", "y"]),
        redis::Value::Int(1),
        "the connection left db 0"
    );
}

#[test]
fn binary_key_names_and_txids_work_everywhere() {
    // NUL bytes in key names and txids: multi-key commands, timer expiry,
    // replication batches and AOF rewrite all handle them.
    let s = Server::start(&["--appendonly", "yes", "--aof-use-rdb-preamble", "no"]);
    let c = &mut s.conn();
    let (a, b) = ("{\x00c}a\x00", "{\x00c}b\x00");
    ok(c, &["INV.SET", a, "5"]);
    ok(c, &["INV.SET", b, "5"]);
    let (state, _): (String, redis::Value) = redis::cmd("INV.MRESERVE")
        .arg(&["\x00order", "100", a, "2", b, "3"])
        .query(c)
        .unwrap();
    assert_eq!(state, "RESERVED");
    eventually(
        "expiry of binary keys and txids",
        Duration::from_secs(10),
        || info_field(c, "expired") == 2,
    );
    ok(c, &["BGREWRITEAOF"]);
    wait_for_aof_rewrite(c);
    let before = digest(c);
    let s = s.restart();
    let c = &mut s.conn();
    assert_eq!(digest(c), before);
    assert_eq!(tx_state(c, a, "\x00order").as_deref(), Some("EXPIRED"));
}

/// One of INFO inventory's gauges.
fn gauge(c: &mut redis::Connection, field: &str) -> i64 {
    testkit::info_value(c, "inventory", field)
        .parse()
        .unwrap_or_else(|_| panic!("{field}"))
}

#[test]
fn info_shows_expiry_falling_behind_and_catching_up() {
    let m = Server::start(&[]);
    let mc = &mut m.conn();
    let r = replica_of(&m, &[]);
    let rc = &mut r.conn();
    ok(mc, &["INV.SET", "k", "10"]);
    ok(mc, &["INV.RESERVE", "k", "t", "1", "TTL", "1000"]);
    wait_replicated(mc);
    assert_eq!(gauge(rc, "inventory_expiry_lag_ms"), 0);
    // A healthy master expires on time: past the deadline its lag comes
    // back to 0 (reads answer EXPIRED as soon as the deadline passes; the
    // record itself expires in housekeeping's next step).
    eventually("the master expires t", Duration::from_secs(5), || {
        let tx: Vec<String> = redis::from_redis_value(&ok(mc, &["INV.TX", "k", "t"])).unwrap();
        // Open reservations at 0: housekeeping expired it (a lag of 0 can
        // also be read in the deadline's own millisecond, before it did).
        tx[1] == "EXPIRED"
            && gauge(mc, "inventory_expiry_lag_ms") == 0
            && gauge(mc, "inventory_open_reservations") == 0
    });

    // The replica expires only what its master sends. With the master
    // stopped, a reservation passes its deadline there and stays open.
    // (TTL 2 s: a loaded test machine may take over 1 s to get from the
    // reserves to the replica's INFO, and this must read nothing due yet.)
    ok(mc, &["INV.SET", "k2", "10"]);
    ok(mc, &["INV.RESERVE", "k", "u", "1", "TTL", "2000"]);
    ok(mc, &["INV.RESERVE", "k2", "u", "1", "TTL", "2000"]);
    ok(mc, &["INV.RESERVE", "k2", "v", "1", "TTL", "60000"]);
    wait_replicated(mc);
    assert_eq!(gauge(rc, "inventory_due_keys"), 0);
    signal("STOP", m.pid());
    std::thread::sleep(Duration::from_millis(2800));
    let (lag, due, held) = (
        gauge(rc, "inventory_expiry_lag_ms"),
        gauge(rc, "inventory_due_keys"),
        gauge(rc, "inventory_due_reservations"),
    );
    signal("CONT", m.pid());
    assert!((500..60_000).contains(&lag), "lag {lag} ms");
    assert_eq!(due, 2, "k and k2 each hold a due reservation");
    assert_eq!(held, 2, "u on k and u on k2 (v on k2 is not due)");
    eventually("the replica catches up", Duration::from_secs(10), || {
        gauge(rc, "inventory_expiry_lag_ms") == 0
            && gauge(rc, "inventory_due_keys") == 0
            && gauge(rc, "inventory_due_reservations") == 0
    });
}

/// While the server pauses writes (CLIENT PAUSE WRITE; FAILOVER, a manual
/// cluster failover and the end of an atomic slot migration pause the same
/// way), anything a timer sends to the replication stream aborts it. Expiry
/// found due then waits for the pause to end: the server lives, reads show
/// the units back at once, INFO shows the reservation due, and the AOF and
/// the replica get the expiry afterwards.
#[test]
fn expiry_waits_while_writes_are_paused_instead_of_aborting_the_server() {
    let m = Server::start(&["--appendonly", "yes"]);
    let r = replica_of(&m, &[]);
    let c = &mut m.conn();
    ok(c, &["INV.SET", "k", "10"]);
    ok(c, &["INV.RESERVE", "k", "t", "3", "TTL", "200"]);
    // Paused far longer than the test needs, then unpaused by hand: the
    // checks below never race the pause's end.
    ok(c, &["CLIENT", "PAUSE", "60000", "WRITE"]);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(ok(c, &["PING"]), redis::Value::SimpleString("PONG".into()));
    assert_eq!(get(c, "k", "available"), 10);
    assert_eq!(gauge(c, "inventory_open_reservations"), 1);
    ok(c, &["CLIENT", "UNPAUSE"]);
    eventually(
        "the expiry after the pause",
        Duration::from_secs(10),
        || gauge(c, "inventory_open_reservations") == 0,
    );
    assert_eq!(tx_state(c, "k", "t").as_deref(), Some("EXPIRED"));
    wait_replicated(c);
    assert_eq!(digest(c), digest(&mut r.conn()));
    let m = m.restart();
    assert_eq!(
        tx_state(&mut m.conn(), "k", "t").as_deref(),
        Some("EXPIRED")
    );
    assert!(!m.log().contains("ASSERTION"), "{}", m.log());
}

/// A `FAILOVER` pauses the master's writes while its replica catches up,
/// then swaps their roles. Reservations falling due before, during and
/// after it each expire exactly once: decided by whichever server was
/// master at the time (INFO counts expiries where decided), equal on both
/// servers afterwards.
#[test]
fn expiry_keeps_its_promise_across_a_failover() {
    let m = Server::start(&[]);
    let r = replica_of(&m, &[]);
    let (mc, rc) = (&mut m.conn(), &mut r.conn());
    ok(mc, &["INV.SET", "k", "1000"]);
    let txids: Vec<String> = (0..150)
        .map(|i| {
            let txid = format!("t{i:03}");
            ok(
                mc,
                &[
                    "INV.RESERVE",
                    "k",
                    &txid,
                    "1",
                    "TTL",
                    &(100 + i * 10).to_string(),
                ],
            );
            txid
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    ok(mc, &["FAILOVER", "TIMEOUT", "10000"]);
    eventually("the roles swapped", Duration::from_secs(20), || {
        testkit::info_value(rc, "replication", "role") == "master"
            && testkit::info_value(mc, "replication", "master_link_status") == "up"
    });
    eventually("every reservation expired", Duration::from_secs(10), || {
        info_field(rc, "open_reservations") == 0
    });
    for t in &txids {
        assert_eq!(tx_state(rc, "k", t).as_deref(), Some("EXPIRED"), "{t}");
    }
    assert_eq!(get(rc, "k", "available"), 1000);
    assert_eq!(
        info_field(mc, "expired") + info_field(rc, "expired"),
        txids.len() as i64,
        "expiries decided, old and new master"
    );
    wait_replicated(rc);
    assert_eq!(digest(mc), digest(rc));
    assert!(!m.log().contains("ASSERTION"), "{}", m.log());
}

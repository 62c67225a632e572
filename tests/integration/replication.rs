//! Master and replica reach the same state, expiry included; a promoted
//! replica takes over expiry.

use crate::harness::*;
use redis::{Connection, Value};
use std::time::Duration;

#[test]
fn replica_digest_equals_master_after_mixed_workload_with_expiry() {
    let m = Server::start(&[]);
    let mc = &mut m.conn();
    // Data that reaches the replica by full sync...
    crate::persistence::workload(mc, "before-sync");
    let r = replica_of(&m, &[]);
    let rc = &mut r.conn();
    // ...and by the command stream, with expiry and purges along the way.
    ok(mc, &["CONFIG", "SET", "inventory.retention-ms", "300"]);
    crate::persistence::workload(mc, "streamed");
    ok(mc, &["INV.SET", "{c}a", "5"]);
    ok(mc, &["INV.SET", "{c}b", "5"]);
    ok(
        mc,
        &["INV.MRESERVE", "cart", "100", "{c}a", "2", "{c}b", "3"],
    );
    ok(mc, &["INV.RESERVE", "{c}a", "x", "1", "TTL", "5000"]);
    ok(mc, &["INV.EXTEND", "{c}a", "x", "200"]);
    eventually(
        "expiry and purge on the master",
        Duration::from_secs(3),
        || {
            // Each workload leaves 21 open reservations; the cart and "x" expire.
            info_field(mc, "open_reservations") == 2 * 21 && info_field(mc, "purged") > 0
        },
    );
    // The SYNC made propagation needed for good, and a tick since retired
    // the command filter that watched for it: the stream above went on
    // without it.
    assert_eq!(info_field(mc, "propagating"), 1);
    assert_eq!(info_field(mc, "command_filter"), 0);
    wait_replicated(mc);
    assert_eq!(digest(rc), digest(mc));
    for k in ["before-sync", "streamed", "{c}a", "{c}b"] {
        assert_eq!(ok(rc, &["INV.GET", k]), ok(mc, &["INV.GET", k]), "{k}");
    }
    // Replicas never expire on their own: their INFO counts no expiry.
    assert_eq!(info_field(rc, "expired"), 0);
    assert!(info_field(mc, "expired") > 0);
}

#[test]
fn promoted_replica_takes_over_expiry() {
    let m = Server::start(&[]);
    let r = replica_of(&m, &[]);
    let mc = &mut m.conn();
    ok(mc, &["INV.SET", "sku", "5"]);
    // Long enough for the master to be gone before the deadline on a
    // loaded machine: the replica must decide this expiry itself.
    ok(mc, &["INV.RESERVE", "sku", "o", "5", "TTL", "3000"]);
    wait_replicated(mc);
    drop(m);
    let rc = &mut r.conn();
    ok(rc, &["REPLICAOF", "NO", "ONE"]);
    eventually(
        "the new master expires the reservation",
        Duration::from_secs(10),
        || info_field(rc, "expired") == 1,
    );
    assert_eq!(
        (get(rc, "sku", "available"), get(rc, "sku", "version")),
        (5, 3)
    );
}

#[test]
fn a_replica_never_counts_an_expired_reservation() {
    // The master is stopped (SIGSTOP) right after the reserve replicates,
    // and stays stopped past the deadline, so no expiry reaches the
    // replica: its replies must still treat the units as free.
    let m = Server::start(&[]);
    let r = replica_of(&m, &[]);
    let mc = &mut m.conn();
    ok(mc, &["INV.SET", "sku", "5"]);
    ok(mc, &["INV.RESERVE", "sku", "o", "4", "TTL", "2000"]);
    wait_replicated(mc);
    let version: i64 = get(mc, "sku", "version");
    signal("STOP", m.pid());
    let rc = &mut r.conn();
    // Read once the deadline has passed, however long that took here.
    testkit::holds_within(Duration::from_secs(30), || {
        tx_state(rc, "sku", "o").as_deref() == Some("EXPIRED")
    });
    let expired = tx_state(rc, "sku", "o");
    let seen = (
        get(rc, "sku", "available"),
        get(rc, "sku", "reserved"),
        get(rc, "sku", "open"),
        get(rc, "sku", "version"),
    );
    signal("CONT", m.pid());
    assert_eq!(version, 2, "the reserve was the master's last change");
    assert_eq!(expired.as_deref(), Some("EXPIRED"));
    // Nothing was materialised on the replica by its own clock (version 2).
    assert_eq!(seen, (5, 0, 0, 2));
    eventually(
        "the master's expiry reaches the replica",
        Duration::from_secs(10),
        || get(rc, "sku", "version") == 3,
    );
}

#[test]
fn migrate_moves_the_exact_value_and_expiry_follows() {
    let a = Server::start(&[]);
    let b = Server::start(&[]);
    let ac = &mut a.conn();
    ok(ac, &["INV.SET", "sku", "5"]);
    ok(ac, &["INV.RESERVE", "sku", "keep", "1", "TTL", "60000"]);
    // Due well after the MIGRATE, even on a loaded machine: the target
    // must be the one to expire it.
    ok(ac, &["INV.RESERVE", "sku", "o", "2", "TTL", "3000"]);
    let value: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg("sku")
        .query(ac)
        .unwrap();
    ok(
        ac,
        &[
            "MIGRATE",
            "127.0.0.1",
            &b.port.to_string(),
            "sku",
            "0",
            "5000",
        ],
    );
    let bc = &mut b.conn();
    let moved: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg("sku")
        .query(bc)
        .unwrap();
    assert_eq!(moved, value);
    eventually("expiry on the target", Duration::from_secs(10), || {
        info_field(bc, "expired") == 1
    });
    assert_eq!(
        (get(bc, "sku", "available"), get(bc, "sku", "open")),
        (4, 1)
    );
}

/// A key past 36,864 records grows its txid index in timer steps on the
/// replica too (growth changes no state, so replicas do it themselves); the
/// replica stays consistent and equal to its master throughout. 40,000
/// records stay below the point (43,008) where an unfinished growth would
/// complete in one go, so only the timer steps can finish it.
#[test]
fn a_replica_grows_a_big_keys_index_consistently() {
    let m = Server::start(&[]);
    let mc = &mut m.conn();
    let r = replica_of(&m, &[]);
    let rc = &mut r.conn();
    ok(mc, &["INV.SET", "big", "1000000000"]);
    pipelined(mc, 0..40_000, |p, i| {
        p.cmd("INV.RESERVE")
            .arg("big")
            .arg(format!("t{i:07}"))
            .arg(1)
            .ignore();
    });
    wait_replicated(mc);
    assert_eq!(ok(rc, &["INV.AUDIT", "big"]), redis::Value::Okay);
    // More records while the replica's index may still be growing.
    ok(mc, &["INV.CANCEL", "big", "t0000007"]);
    ok(mc, &["INV.RESERVE", "big", "late", "1"]);
    wait_replicated(mc);
    // Finished on both: the old index is gone and both hold the same memory.
    // Compared within 1 KiB, far below any index this move allocates (the
    // smallest grown in the background is 256 KiB): Valkey 9.1's own share
    // of MEMORY USAGE (the key's object, not the module's value) sometimes
    // differs between master and replica by 16 bytes under load, while the
    // value's parts, logged from the module, were identical on both.
    let usage = |c: &mut redis::Connection| -> i64 {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg("big")
            .query(c)
            .unwrap()
    };
    let mut seen = (0, 0);
    let converged = (0..500).any(|_| {
        seen = (usage(rc), usage(mc));
        std::thread::sleep(Duration::from_millis(20));
        seen.0.abs_diff(seen.1) < 1024
    });
    assert!(converged, "MEMORY USAGE replica / master: {seen:?}");
    assert_eq!(ok(rc, &["INV.AUDIT", "big"]), redis::Value::Okay);
    assert_eq!(digest(rc), digest(mc));
    assert_eq!(get(rc, "big", "open"), 40_000);
    for t in ["t0000000", "t0039999", "late"] {
        assert_eq!(tx_state(rc, "big", t).as_deref(), Some("RESERVED"), "{t}");
    }
    assert_eq!(
        tx_state(rc, "big", "t0000007").as_deref(),
        Some("CANCELLED")
    );
}

/// A reserve reaches replicas and the AOF as its effect with an absolute
/// deadline, never as the call itself (which a replica would decide again
/// by its own clock): from a client, a script and MULTI alike, and in the
/// TTL form whose effect is replicated through the call's own argument
/// slots. Checked where it cannot pass by luck: the replica never ran
/// INV.RESERVE, the AOF never names it, and the replica holds the master's
/// exact deadlines.
#[test]
fn reserves_replicate_as_effects_from_calls_scripts_and_multi() {
    let m = Server::start(&["--appendonly", "yes"]);
    let mc = &mut m.conn();
    let r = replica_of(&m, &[]);
    let rc = &mut r.conn();
    ok(mc, &["INV.SET", "k", "100"]);
    ok(mc, &["INV.RESERVE", "k", "plain", "1", "TTL", "60000"]);
    ok(mc, &["INV.RESERVE", "k", "default", "1"]);
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000;
    ok(
        mc,
        &["INV.RESERVE", "k", "at", "1", "PXAT", &at.to_string()],
    );
    ok(
        mc,
        &[
            "EVAL",
            "return redis.call('INV.RESERVE', KEYS[1], 'lua', 2, 'TTL', 60000)",
            "1",
            "k",
        ],
    );
    let _: redis::Value = redis::pipe()
        .atomic()
        .cmd("INV.RESERVE")
        .arg(&["k", "multi", "3", "TTL", "5000"])
        .cmd("INV.CONFIRM")
        .arg(&["k", "plain"])
        .query(mc)
        .unwrap();
    wait_replicated(mc);
    for txid in ["plain", "default", "at", "lua", "multi"] {
        let (a, b) = (
            ok(mc, &["INV.TX", "k", txid]),
            ok(rc, &["INV.TX", "k", txid]),
        );
        assert_eq!(a, b, "{txid}");
    }
    let stats: String = redis::cmd("INFO").arg("commandstats").query(rc).unwrap();
    assert!(!stats.contains("cmdstat_inv.reserve"), "{stats}");
    assert!(stats.contains("cmdstat_inv.apply"), "{stats}");
    let aof_dir = m.dir.path().join("appendonlydir");
    let mut aof = String::new();
    for f in std::fs::read_dir(&aof_dir).unwrap() {
        let path = f.unwrap().path();
        if path.to_string_lossy().ends_with(".incr.aof") {
            aof.push_str(&String::from_utf8_lossy(&std::fs::read(path).unwrap()));
        }
    }
    assert!(aof.contains("INV.APPLY"), "{aof}");
    assert!(!aof.to_uppercase().contains("INV.RESERVE"), "{aof}");
}

/// A confirm and a cancel travel in the three words of the calls they come
/// from (`INV.APPLY.CONFIRM|CANCEL key txid`, through the call's own
/// arguments), from a plain call, MULTI and a script alike; other shapes
/// (a partial confirm, a fence) keep INV.APPLY's. A replica and an AOF
/// replay reach the master's state, and an AOF holding the earlier
/// four-word form (`INV.APPLY key CONFIRM txid`) replays to the same.
#[test]
fn confirm_and_cancel_travel_in_three_words_and_the_four_word_form_still_loads() {
    let m = Server::start(PLAIN_AOF);
    let mc = &mut m.conn();
    let r = replica_of(&m, &[]);
    let rc = &mut r.conn();
    ok(mc, &["INV.SET", "k", "20"]);
    let txids = ["a", "b", "c", "d", "e", "f"];
    for t in txids {
        ok(mc, &["INV.RESERVE", "k", t, "2", "TTL", "100000"]);
    }
    ok(mc, &["INV.CONFIRM", "k", "a"]);
    ok(mc, &["INV.CANCEL", "k", "b"]);
    ok(mc, &["INV.CONFIRM", "k", "c", "QTY", "1"]);
    ok(mc, &["INV.CANCEL", "k", "never"]);
    let _: () = redis::pipe()
        .atomic()
        .cmd("INV.CONFIRM")
        .arg("k")
        .arg("d")
        .ignore()
        .cmd("INV.CANCEL")
        .arg("k")
        .arg("e")
        .ignore()
        .query(mc)
        .unwrap();
    let _: Value = redis::cmd("EVAL")
        .arg("return redis.call('INV.CONFIRM', KEYS[1], ARGV[1])")
        .arg(1)
        .arg("k")
        .arg("f")
        .query(mc)
        .unwrap();
    wait_replicated(mc);
    let states = |c: &mut Connection| -> Vec<Option<String>> {
        txids
            .iter()
            .chain(&["never"])
            .map(|t| tx_state(c, "k", t))
            .collect()
    };
    let want = states(mc);
    assert_eq!(
        want,
        [
            "CONFIRMED",
            "CANCELLED",
            "CONFIRMED",
            "CONFIRMED",
            "CANCELLED",
            "CONFIRMED",
            "CANCELLED"
        ]
        .map(|s| Some(s.to_string()))
    );
    assert_eq!(states(rc), want);
    assert_eq!(digest(rc), digest(mc));
    let stats: String = redis::cmd("INFO").arg("commandstats").query(rc).unwrap();
    assert!(
        stats.contains("cmdstat_inv.apply.confirm:calls=3"),
        "{stats}"
    );
    assert!(
        stats.contains("cmdstat_inv.apply.cancel:calls=2"),
        "{stats}"
    );
    // From a client, refused.
    assert!(err(mc, &["INV.APPLY.CONFIRM", "k", "a"]).contains("is internal"));
    let before = digest(mc);
    drop(r);
    let m = m.restart_with(|dir| {
        let path = incr_aof(dir);
        let commands = resp_commands(&std::fs::read(&path).unwrap());
        let shapes: Vec<(String, usize)> = commands
            .iter()
            .filter(|w| w[0].to_ascii_uppercase().starts_with(b"INV.APPLY"))
            .filter(|w| w.len() < 4 || !w[2].eq_ignore_ascii_case(b"RESERVE"))
            .map(|w| {
                let what = if w.len() > 3 { &w[2] } else { &w[0] };
                (String::from_utf8_lossy(what).to_uppercase(), w.len())
            })
            .collect();
        assert_eq!(
            shapes,
            [
                ("STOCK", 4),
                ("INV.APPLY.CONFIRM", 3),
                ("INV.APPLY.CANCEL", 3),
                ("CONFIRM", 6),
                ("FENCE", 5),
                ("INV.APPLY.CONFIRM", 3),
                ("INV.APPLY.CANCEL", 3),
                ("INV.APPLY.CONFIRM", 3),
            ]
            .map(|(n, l)| (n.to_string(), l)),
            "{commands:?}"
        );
        let old: Vec<Vec<Vec<u8>>> = commands
            .iter()
            .map(|w| match w[0].to_ascii_uppercase().as_slice() {
                b"INV.APPLY.CONFIRM" | b"INV.APPLY.CANCEL" => {
                    let effect = w[0][b"INV.APPLY.".len()..].to_vec();
                    vec![b"INV.APPLY".to_vec(), w[1].clone(), effect, w[2].clone()]
                }
                _ => w.clone(),
            })
            .collect();
        std::fs::write(&path, resp_file(&old)).unwrap();
    });
    let mc = &mut m.conn();
    assert_eq!(digest(mc), before);
    assert_eq!(states(mc), want);
}

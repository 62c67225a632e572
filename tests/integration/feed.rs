//! The change feed on a real server: one entry per transition, written by
//! the command (or expiry pass) that makes the change, with its fields and
//! version; threshold events; the stream's name rule; every copy (replica,
//! AOF replay after a kill, AOF rewrite, DEBUG RELOAD) holding the master's
//! entries under the same IDs; trimming; a stream name taken by another
//! type refusing the change; readers blocked on the stream woken.

use crate::harness::*;
use redis::{Connection, Value};
use std::collections::HashMap;
use std::time::Duration;

/// One entry: its ID and its fields.
type Entry = (String, HashMap<String, String>);

fn feed_name(c: &mut Connection, key: &str) -> String {
    redis::cmd("INV.FEED").arg(key).query(c).unwrap()
}

fn entries(c: &mut Connection, key: &str) -> Vec<Entry> {
    let stream = feed_name(c, key);
    redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(c)
        .unwrap()
}

/// `event[:txid]` of each entry, in order.
fn events(list: &[Entry]) -> Vec<String> {
    list.iter()
        .map(|(_, f)| match f.get("txid") {
            Some(t) => format!("{}:{t}", f["event"]),
            None => f["event"].clone(),
        })
        .collect()
}

#[test]
fn every_change_writes_its_entries_in_the_same_command() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "3"]);
    // Off by default: nothing written, no pair in INV.GET.
    ok(c, &["INV.RESERVE", "sku", "before", "1"]);
    assert_eq!(field(c, &["INV.GET", "sku"], "feed"), None);
    assert_eq!(entries(c, "sku"), vec![]);
    ok(c, &["INV.CANCEL", "sku", "before"]);

    assert_eq!(
        ok(c, &["INV.RULES", "sku", "FEED", "ON", "LOW", "2"]),
        Value::Okay
    );
    assert_eq!(get(c, "sku", "feed"), 1);
    assert_eq!(get(c, "sku", "low"), 2);
    ok(c, &["INV.RESERVE", "sku", "t1", "1", "BUYER", "alice"]);
    ok(c, &["INV.RESERVE", "sku", "t2", "2", "TTL", "150"]);
    // A retry changes nothing and writes nothing.
    ok(c, &["INV.RESERVE", "sku", "t1", "1", "BUYER", "alice"]);
    ok(c, &["INV.CONFIRM", "sku", "t1"]);
    eventually("t2 expired", Duration::from_secs(5), || {
        tx_state(c, "sku", "t2").as_deref() == Some("EXPIRED") && info_field(c, "expired") == 1
    });
    ok(c, &["INV.CANCEL", "sku", "never"]);
    ok(c, &["INV.ADD", "sku", "5"]);
    ok(c, &["INV.RESERVE", "sku", "t3", "2", "TTL", "60000"]);
    ok(c, &["INV.EXTEND", "sku", "t3", "90000"]);
    ok(c, &["INV.ADJUST", "sku", "t3", "1"]);
    ok(c, &["INV.CONFIRM", "sku", "t3"]);
    ok(c, &["INV.RULES", "sku", "FEED", "OFF"]);
    ok(c, &["INV.RESERVE", "sku", "after", "1"]);

    let list = entries(c, "sku");
    assert_eq!(
        events(&list),
        [
            "rules",
            "reserved:t1",
            "lowstock",
            "reserved:t2",
            "soldout",
            "confirmed:t1",
            "expired:t2",
            "backinstock",
            "fenced:never",
            "stock",
            "reserved:t3",
            "extended:t3",
            "adjusted:t3",
            "confirmed:t3",
            "rules",
        ]
    );
    let f = |i: usize| &list[i].1;
    // Every entry names the key and the version its change ended at.
    for (_, fields) in &list {
        assert_eq!(fields["key"], "sku");
    }
    let version = |i: usize| f(i)["version"].parse::<i64>().unwrap();
    assert_eq!(version(1), version(2), "a crossing belongs to its change");
    assert!(list.windows(2).all(|w| w[0].0 < w[1].0), "IDs rise");
    assert_eq!(version(14), get(c, "sku", "version") - 1);
    assert_eq!(f(1)["buyer"], "alice");
    assert_eq!(f(1)["qty"], "1");
    assert!(f(1)["deadline"].parse::<u64>().unwrap() > 0);
    assert_eq!(f(5)["buyer"], "alice");
    assert_eq!(f(6)["qty"], "2");
    assert_eq!(f(9)["qty"], "7", "stock: the stock after the change");
    assert_eq!(f(12)["qty"], "1", "adjusted: the new quantity");
    assert_eq!(f(13)["qty"], "1", "confirmed: the units sold");
    assert_eq!(f(2)["qty"], "2", "lowstock: the units available");
    assert_eq!(info_field(c, "feed_entries"), 15);
    assert_eq!(info_field(c, "feed_errors"), 0);
}

#[test]
fn multi_key_changes_write_one_entry_per_key_in_its_own_stream() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    for k in ["{cart}a", "{cart}b"] {
        ok(c, &["INV.SET", k, "5"]);
        ok(c, &["INV.RULES", k, "FEED", "ON"]);
    }
    ok(
        c,
        &[
            "INV.MRESERVE",
            "order-1",
            "60000",
            "{cart}a",
            "2",
            "{cart}b",
            "1",
        ],
    );
    ok(
        c,
        &["INV.MCONFIRM", "order-1", "{cart}a", "QTY", "1", "{cart}b"],
    );
    for k in ["{cart}a", "{cart}b"] {
        let list = entries(c, k);
        assert_eq!(
            events(&list),
            ["rules", "reserved:order-1", "confirmed:order-1"],
            "{k}"
        );
    }
    assert_eq!(entries(c, "{cart}a")[2].1["qty"], "1");
    // All or nothing: one key's stream name taken by another type refuses
    // the command before any key changes.
    let stream = feed_name(c, "{cart}b");
    ok(c, &["DEL", &stream]);
    ok(c, &["SET", &stream, "squatter"]);
    let version = get(c, "{cart}a", "version");
    let e = err(
        c,
        &[
            "INV.MRESERVE",
            "order-2",
            "60000",
            "{cart}a",
            "1",
            "{cart}b",
            "1",
        ],
    );
    assert!(e.contains("holds another type"), "{e}");
    assert_eq!(get(c, "{cart}a", "version"), version);
    assert_eq!(tx_state(c, "{cart}a", "order-2"), None);
    assert_eq!(entries(c, "{cart}a").len(), 3);
}

#[test]
fn the_stream_lives_in_the_key_slot_whatever_the_name() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    for key in ["sku:1", "{user1}:cart", "a}b", "}{", "{}x", "x{y", "{a}{b}"] {
        let name = feed_name(c, key);
        assert!(name.starts_with("inv:feed:{"), "{name}");
        assert!(name.ends_with(key), "{name}");
        assert_eq!(
            inventory_core::slot::slot(name.as_bytes()),
            inventory_core::slot::slot(key.as_bytes()),
            "{key} -> {name}"
        );
    }
    // Binary key names too, and the answer does not need the key.
    let raw: Vec<u8> = redis::cmd("INV.FEED")
        .arg(&b"k\x00\xff"[..])
        .query(c)
        .unwrap();
    assert!(raw.ends_with(b"k\x00\xff"));
    assert_eq!(
        err(c, &["INV.FEED"]),
        "ERR wrong number of arguments for 'inv.feed' command"
    );
}

#[test]
fn a_stream_name_holding_another_type_refuses_the_change() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "5"]);
    let stream = feed_name(c, "sku");
    ok(c, &["SET", &stream, "squatter"]);
    let e = err(c, &["INV.RULES", "sku", "FEED", "ON"]);
    assert!(e.contains("holds another type"), "{e}");
    assert_eq!(field(c, &["INV.GET", "sku"], "feed"), None);
    ok(c, &["DEL", &stream]);
    ok(c, &["INV.RULES", "sku", "FEED", "ON"]);
    ok(c, &["SET", &stream, "squatter"]);
    let version = get(c, "sku", "version");
    let e = err(c, &["INV.RESERVE", "sku", "t1", "1"]);
    assert!(e.contains("holds another type"), "{e}");
    assert_eq!(get(c, "sku", "version"), version);
    assert_eq!(get(c, "sku", "reserved"), 0);
    assert_eq!(tx_state(c, "sku", "t1"), None);
    // Turning the feed off is a change like the others: refused too.
    let e = err(c, &["INV.RULES", "sku", "FEED", "OFF"]);
    assert!(e.contains("holds another type"), "{e}");
    assert_eq!(get(c, "sku", "feed"), 1);

    // An expiry cannot be recorded either: housekeeping says so about once
    // a second (it does not spin on the key), and records it, entry and
    // all, once the name is a stream's again.
    ok(c, &["DEL", &stream]);
    ok(c, &["INV.RESERVE", "sku", "due", "1", "TTL", "50"]);
    ok(c, &["SET", &stream, "squatter"]);
    std::thread::sleep(Duration::from_millis(1_600));
    assert_eq!(info_field(c, "expired"), 0);
    assert_eq!(info_field(c, "open_reservations"), 1, "not yet recorded");
    let said = s.log().matches("housekeeping failed").count();
    assert!((1..=3).contains(&said), "{said} warnings in 1.6 s");
    ok(c, &["DEL", &stream]);
    eventually("the expiry recorded", Duration::from_secs(3), || {
        info_field(c, "expired") == 1
    });
    assert_eq!(events(&entries(c, "sku")), ["expired:due"]);
}

#[test]
fn trimming_keeps_the_newest_entries_on_every_copy() {
    let m = Server::start(PLAIN_AOF);
    let mc = &mut m.conn();
    let r = replica_of(&m, &[]);
    let rc = &mut r.conn();
    ok(mc, &["CONFIG", "SET", "inventory.feed-maxlen", "4"]);
    ok(mc, &["INV.SET", "sku", "100"]);
    ok(mc, &["INV.RULES", "sku", "FEED", "ON"]);
    for i in 0..10 {
        ok(mc, &["INV.RESERVE", "sku", &format!("t{i}"), "1"]);
    }
    let list = entries(mc, "sku");
    assert_eq!(
        events(&list),
        ["reserved:t6", "reserved:t7", "reserved:t8", "reserved:t9"]
    );
    assert_eq!(info_field(mc, "feed_trimmed"), 7);
    wait_replicated(mc);
    // The replica trims to the master's cap, whatever its own config says.
    assert_eq!(entries(rc, "sku"), list);
    assert_eq!(digest(rc), digest(mc));
    let before = digest(mc);
    // A stamp names the cap only when the master trimmed to it (0: it
    // trimmed nothing): the feed's own entry and three reserves fit in 4,
    // every later reserve trims.
    let m = m.restart_with(|dir| {
        let commands = resp_commands(&std::fs::read(incr_aof(dir)).unwrap());
        let caps: Vec<String> = commands
            .iter()
            .filter(|w| w[0].eq_ignore_ascii_case(b"INV.APPLY") && w[2].contains(&b':'))
            .map(|w| {
                String::from_utf8_lossy(w[2].split(|&b| b == b':').nth(2).unwrap()).into_owned()
            })
            .collect();
        assert_eq!(
            caps,
            [["0"; 4].as_slice(), &["4"; 7]].concat(),
            "{commands:?}"
        );
    });
    // Replayed with those stamps, the stream is the same.
    let mc = &mut m.conn();
    assert_eq!(entries(mc, "sku"), list);
    assert_eq!(digest(mc), before);
}

#[test]
fn replicas_aof_replay_and_reloads_hold_the_masters_entries() {
    let m = Server::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mc = &mut m.conn();
    let r = replica_of(&m, &[]);
    let rc = &mut r.conn();
    ok(mc, &["INV.SET", "{s}a", "4"]);
    ok(mc, &["INV.SET", "{s}b", "4"]);
    ok(mc, &["INV.RULES", "{s}a", "FEED", "ON", "LOW", "1"]);
    ok(mc, &["INV.RULES", "{s}b", "FEED", "ON"]);
    for i in 0..6 {
        let key = if i % 2 == 0 { "{s}a" } else { "{s}b" };
        ok(
            mc,
            &["INV.RESERVE", key, &format!("t{i}"), "1", "TTL", "100"],
        );
    }
    ok(
        mc,
        &["INV.MRESERVE", "cart", "100", "{s}a", "1", "{s}b", "1"],
    );
    ok(mc, &["INV.CONFIRM", "{s}a", "t0"]);
    ok(mc, &["INV.CANCEL", "{s}a", "t4"]);
    ok(mc, &["INV.ADD", "{s}b", "1"]);
    ok(
        mc,
        &[
            "INV.RESERVE",
            "{s}b",
            "tb",
            "1",
            "TTL",
            "100",
            "BUYER",
            "zed",
        ],
    );
    // Expiry is the master's: the replica's entries for it come from the
    // master's pass.
    eventually("holds expired", Duration::from_secs(5), || {
        info_field(mc, "expired") == 7
    });
    wait_replicated(mc);
    let a = entries(mc, "{s}a");
    let b = entries(mc, "{s}b");
    assert!(events(&a).contains(&"expired:t2".to_string()), "{a:?}");
    assert!(events(&b).contains(&"expired:cart".to_string()), "{b:?}");
    assert_eq!(entries(rc, "{s}a"), a);
    assert_eq!(entries(rc, "{s}b"), b);
    assert_eq!(digest(rc), digest(mc));
    let digest_before = digest(mc);
    drop(r);

    // AOF replay after kill -9: the same entries under the same IDs.
    let m = m.kill_and_restart();
    let mc = &mut m.conn();
    assert_eq!(entries(mc, "{s}a"), a);
    assert_eq!(entries(mc, "{s}b"), b);
    assert_eq!(digest(mc), digest_before);
    // A rewritten AOF, then a restart; and DEBUG RELOAD (the RDB).
    ok(mc, &["BGREWRITEAOF"]);
    wait_for_aof_rewrite(mc);
    let m = m.kill_and_restart();
    let mc = &mut m.conn();
    assert_eq!(entries(mc, "{s}a"), a);
    assert_eq!(get(mc, "{s}a", "feed"), 1);
    assert_eq!(get(mc, "{s}a", "low"), 1);
    ok(mc, &["DEBUG", "RELOAD"]);
    assert_eq!(entries(mc, "{s}b"), b);
    assert_eq!(digest(mc), digest_before);
    // And the feed goes on from there.
    ok(mc, &["INV.ADD", "{s}a", "1"]);
    let after = entries(mc, "{s}a");
    assert_eq!(after.len(), a.len() + 1);
    assert!(after[a.len()].0 > a[a.len() - 1].0);
}

#[test]
fn a_reader_blocked_on_the_stream_wakes_with_the_change() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "5"]);
    ok(c, &["INV.RULES", "sku", "FEED", "ON"]);
    let stream = feed_name(c, "sku");
    let mut reader = s.conn();
    let waiting = std::thread::spawn(move || {
        let v: Value = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(10_000)
            .arg("STREAMS")
            .arg(&stream)
            .arg("$")
            .query(&mut reader)
            .unwrap();
        v
    });
    eventually("the reader blocked", Duration::from_secs(5), || {
        let info: String = redis::cmd("INFO").arg("clients").query(c).unwrap();
        info.contains("blocked_clients:1")
    });
    ok(c, &["INV.RESERVE", "sku", "t1", "1"]);
    let got = format!("{:?}", waiting.join().unwrap());
    assert!(got.contains("reserved"), "{got}");
}

/// Moves `key` of `slot` from node `from` to node `to` as a cluster manager
/// does (`redis-cli --cluster reshard`: IMPORTING, MIGRATING, MIGRATE key by
/// key, then NODE everywhere), with `between` run while `first` has moved
/// and `second` not yet.
fn reshard_key_by_key(
    cluster: &testkit::cluster::Cluster,
    slot: u16,
    (from, to): (usize, usize),
    (first, second): (&str, &str),
    between: impl FnOnce(&mut Connection, &mut Connection),
) {
    let (s, from_id, to_id) = (slot.to_string(), cluster.node_id(from), cluster.node_id(to));
    let (src, dst) = (
        &mut cluster.nodes[from].conn(),
        &mut cluster.nodes[to].conn(),
    );
    ok(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
    ok(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
    let port = cluster.nodes[to].port.to_string();
    ok(src, &["MIGRATE", "127.0.0.1", &port, first, "0", "5000"]);
    between(src, dst);
    ok(src, &["MIGRATE", "127.0.0.1", &port, second, "0", "5000"]);
    for m in cluster.masters() {
        ok(
            &mut cluster.nodes[m].conn(),
            &["CLUSTER", "SETSLOT", &s, "NODE", &to_id],
        );
    }
}

/// A key-by-key reshard moves a fed key and its stream at different
/// moments. While they are apart every change of the key answers TRYAGAIN
/// (on the node that has the key, whichever went first), nothing changed,
/// and a hold falling due meanwhile is not expired there; once both have
/// arrived the feed goes on where it stopped: every change has its entry,
/// once, in order.
#[test]
fn a_key_by_key_reshard_never_splits_a_change_from_its_entry() {
    let cluster = testkit::cluster::Cluster::start_shaped(
        &testkit::server_bin(),
        testkit::Build::Debug,
        &[],
        0,
    );
    let key = "{kr}sku";
    let slot = cluster.slot_of(key);
    let a = cluster.owner(slot);
    let b = (a + 1) % cluster.nodes.len();
    let c = &mut cluster.nodes[a].conn();
    ok(c, &["INV.SET", key, "10"]);
    ok(c, &["INV.RULES", key, "FEED", "ON"]);
    let stream = feed_name(c, key);
    ok(c, &["INV.RESERVE", key, "t1", "2", "TTL", "60000"]);
    ok(c, &["INV.RESERVE", key, "due", "1", "TTL", "400"]);
    let refused = |c: &mut Connection, asking: bool| {
        let version = {
            if asking {
                ok(c, &["ASKING"]);
            }
            get(c, key, "version")
        };
        for args in [
            &["INV.RESERVE", key, "t9", "1"][..],
            &["INV.ADD", key, "1"],
            &["INV.CANCEL", key, "t1"],
            &["INV.MRESERVE", "t3", "1", key, "1"],
            &["INV.RULES", key, "FEED", "OFF"],
        ] {
            if asking {
                ok(c, &["ASKING"]);
            }
            let e = err(c, args);
            assert!(e.starts_with("TRYAGAIN"), "{args:?}: {e}");
        }
        if asking {
            ok(c, &["ASKING"]);
        }
        assert_eq!(get(c, key, "version"), version, "nothing changed");
    };

    // The stream goes first: the key, still on the source, refuses.
    reshard_key_by_key(&cluster, slot, (a, b), (&stream, key), |src, _| {
        refused(src, false);
        // The hold falls due while the two are apart: not expired here.
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(info_field(src, "expired"), 0);
        refused(src, false);
    });
    let d = &mut cluster.nodes[b].conn();
    eventually("the hold expired once", Duration::from_secs(5), || {
        info_field(d, "expired") == 1
    });
    assert_eq!(outcome(d, &["INV.RESERVE", key, "t2", "1"]).0, "RESERVED");

    // The key goes first (back): on the target, asked for it, it refuses.
    reshard_key_by_key(&cluster, slot, (b, a), (key, &stream), |_, dst| {
        refused(dst, true);
    });
    assert_eq!(outcome(c, &["INV.CONFIRM", key, "t1"]).0, "CONFIRMED");
    let list = entries(c, key);
    assert_eq!(
        events(&list),
        [
            "rules",
            "reserved:t1",
            "reserved:due",
            "expired:due",
            "reserved:t2",
            "confirmed:t1",
        ],
        "{list:?}"
    );
    let versions: Vec<i64> = list
        .iter()
        .map(|(_, f)| f["version"].parse().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert_eq!(versions.last(), Some(&get(c, key, "version")));
    assert_eq!(
        call(d, &["DBSIZE"]).unwrap(),
        Value::Int(0),
        "neither the key nor its stream stayed behind"
    );

    // Valkey 9's atomic slot migration moves the two at once, entries and
    // IDs as they were; the feed goes on there.
    if !cluster.has_atomic_migration() {
        testkit::skip("no CLUSTER MIGRATESLOTS on this server (Valkey 9 only)");
        return;
    }
    cluster.migrate_atomically(slot, a, b).unwrap();
    eventually("the target owns the slot", Duration::from_secs(20), || {
        cluster.owner(slot) == b
    });
    assert_eq!(entries(d, key), list);
    assert_eq!(outcome(d, &["INV.CANCEL", key, "t2"]).0, "CANCELLED");
    let after = entries(d, key);
    assert_eq!(after.len(), list.len() + 1);
    assert_eq!(events(&after[list.len()..]), ["cancelled:t2"]);
}

/// `inventory.feed-default 1`: a key the master creates (INV.SET, INV.ADD,
/// a cancel that fences an unknown txid) starts with its feed on, its first
/// stock in the feed (available leaving 0 is a `backinstock` as for any
/// key); replicas and an AOF replay hold the same, whatever
/// their own config; keys that existed before, and keys created after the
/// config goes back to 0, keep or get the feed off.
#[test]
fn the_feed_default_turns_the_feed_on_for_new_keys() {
    // Started with the default on (a module argument), as the AOF replay
    // below and the replica run: only the master's decision counts, so the
    // keys it created with the default off stay unfed there too.
    let on = ["--inventory.feed-default", "1"];
    let m = Server::start(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        on[0],
        on[1],
    ]);
    let mc = &mut m.conn();
    ok(mc, &["CONFIG", "SET", "inventory.feed-default", "0"]);
    let r = replica_of(&m, &on);
    let rc = &mut r.conn();
    ok(mc, &["INV.SET", "old", "5"]);
    ok(mc, &["CONFIG", "SET", "inventory.feed-default", "1"]);
    assert_eq!(
        err(mc, &["CONFIG", "SET", "inventory.feed-default", "2"])
            .split(' ')
            .next(),
        Some("ERR")
    );
    ok(mc, &["INV.SET", "new", "5"]);
    ok(mc, &["INV.ADD", "added", "3"]);
    ok(mc, &["INV.CANCEL", "fenced", "t1"]);
    ok(mc, &["INV.ADD", "old", "1"]);
    assert_eq!(get(mc, "new", "feed"), 1);
    assert_eq!(field(mc, &["INV.GET", "old"], "feed"), None);
    let new = entries(mc, "new");
    assert_eq!(events(&new), ["stock", "backinstock", "rules"]);
    assert_eq!(new[0].1["qty"], "5");
    assert_eq!(
        events(&entries(mc, "added")),
        ["stock", "backinstock", "rules"]
    );
    assert_eq!(events(&entries(mc, "fenced")), ["fenced:t1", "rules"]);
    assert!(entries(mc, "old").is_empty());
    ok(mc, &["CONFIG", "SET", "inventory.feed-default", "0"]);
    ok(mc, &["INV.SET", "later", "1"]);
    assert!(entries(mc, "later").is_empty());

    // The replica's config says 1: it follows the master's effects.
    wait_replicated(mc);
    for key in ["new", "added", "fenced", "old", "later"] {
        assert_eq!(entries(rc, key), entries(mc, key), "{key}");
        assert_eq!(
            field(rc, &["INV.GET", key], "feed"),
            field(mc, &["INV.GET", key], "feed")
        );
    }
    assert_eq!(digest(rc), digest(mc));
    let before = digest(mc);
    let m = m.kill_and_restart();
    let mc = &mut m.conn();
    assert_eq!(digest(mc), before, "AOF replay");
    assert_eq!(
        events(&entries(mc, "new")),
        ["stock", "backinstock", "rules"]
    );
    for key in ["old", "later"] {
        assert!(entries(mc, key).is_empty(), "{key} after the AOF replay");
        assert_eq!(field(mc, &["INV.GET", key], "feed"), None, "{key}");
    }
}

/// `inventory.feed-max-age-ms`: each change the master feeds also drops
/// the entries older than the age by its clock (exactly, by ID), and
/// replicas and an AOF replay drop the same ones whatever their config.
#[test]
fn trimming_by_age_drops_the_same_old_entries_on_every_copy() {
    let m = Server::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mc = &mut m.conn();
    let r = replica_of(&m, &[]);
    let rc = &mut r.conn();
    ok(mc, &["CONFIG", "SET", "inventory.feed-max-age-ms", "400"]);
    ok(mc, &["INV.SET", "sku", "10"]);
    ok(mc, &["INV.RULES", "sku", "FEED", "ON"]);
    ok(mc, &["INV.RESERVE", "sku", "old", "1"]);
    std::thread::sleep(Duration::from_millis(600));
    let trimmed = info_field(mc, "feed_trimmed");
    ok(mc, &["INV.RESERVE", "sku", "new", "1"]);
    assert_eq!(events(&entries(mc, "sku")), ["reserved:new"]);
    assert_eq!(info_field(mc, "feed_trimmed"), trimmed + 2);
    // Within the age, nothing more goes.
    ok(mc, &["INV.CONFIRM", "sku", "new"]);
    assert_eq!(
        events(&entries(mc, "sku")),
        ["reserved:new", "confirmed:new"]
    );
    wait_replicated(mc);
    assert_eq!(entries(rc, "sku"), entries(mc, "sku"));
    assert_eq!(digest(rc), digest(mc));
    let before = entries(mc, "sku");
    drop(r);
    let m = m.kill_and_restart();
    let mc = &mut m.conn();
    assert_eq!(entries(mc, "sku"), before, "AOF replay");
}

/// A master writes a fed effect's stamp joined to the effect's name, so a
/// fed reserve travels in as many words as the INV.RESERVE it came from;
/// an AOF holding the earlier form (`FEED <id> <maxlen> [MINID <id>]`
/// before the effect), as earlier builds wrote it, replays to the same
/// entries and digest.
#[test]
fn a_fed_effect_travels_with_its_stamp_in_its_name_word_and_the_old_form_still_loads() {
    let s = Server::start(PLAIN_AOF);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "9"]);
    ok(c, &["INV.RULES", "sku", "FEED", "ON"]);
    ok(
        c,
        &["CONFIG", "SET", "inventory.feed-max-age-ms", "86400000"],
    );
    ok(c, &["INV.RESERVE", "sku", "t1", "1", "TTL", "100000"]);
    ok(
        c,
        &[
            "INV.RESERVE",
            "sku",
            "t2",
            "2",
            "TTL",
            "100000",
            "BUYER",
            "b",
        ],
    );
    ok(c, &["INV.RESERVE", "sku", "t3", "1"]);
    ok(c, &["INV.CANCEL", "sku", "t1"]);
    ok(c, &["INV.ADD", "sku", "1"]);
    let before = (entries(c, "sku"), digest(c));
    let s = s.restart_with(|dir| {
        let path = incr_aof(dir);
        let commands = resp_commands(&std::fs::read(&path).unwrap());
        let fed: Vec<&Vec<Vec<u8>>> = commands
            .iter()
            .filter(|w| w[0].eq_ignore_ascii_case(b"INV.APPLY") && w[2].contains(&b':'))
            .collect();
        let shape: Vec<(String, usize)> = fed
            .iter()
            .map(|w| {
                let name = w[2].split(|&b| b == b':').next().unwrap();
                (String::from_utf8_lossy(name).into_owned(), w.len())
            })
            .collect();
        // The feed turned on (its own entry), then the reserves: 6 words,
        // 8 with a buyer, as INV.RESERVE's (the one without a TTL through
        // RM_Replicate), the cancel and the restock.
        assert_eq!(
            shape,
            [
                ("RULES", 5),
                ("RESERVE", 6),
                ("RESERVE", 8),
                ("RESERVE", 6),
                ("CANCEL", 4),
                ("ADD", 4)
            ]
            .map(|(n, l)| (n.to_string(), l)),
            "{commands:?}"
        );
        // Age trimming was turned on after the first: its floor comes with
        // every later one.
        let parts: Vec<usize> = fed
            .iter()
            .map(|w| w[2].split(|&b| b == b':').count())
            .collect();
        assert_eq!(parts, [3, 4, 4, 4, 4, 4]);
        // The same effects in the earlier form.
        let old: Vec<Vec<Vec<u8>>> = commands
            .iter()
            .map(|w| {
                if !(w[0].eq_ignore_ascii_case(b"INV.APPLY") && w[2].contains(&b':')) {
                    return w.clone();
                }
                let parts: Vec<&[u8]> = w[2].split(|&b| b == b':').collect();
                let mut out = vec![w[0].clone(), w[1].clone(), b"FEED".to_vec()];
                out.extend([parts[1].to_vec(), parts[2].to_vec()]);
                if let Some(m) = parts.get(3) {
                    out.extend([b"MINID".to_vec(), m.to_vec()]);
                }
                out.push(parts[0].to_vec());
                out.extend(w[3..].iter().cloned());
                out
            })
            .collect();
        std::fs::write(&path, resp_file(&old)).unwrap();
    });
    let c = &mut s.conn();
    assert_eq!((entries(c, "sku"), digest(c)), before);
    assert_eq!(
        events(&before.0),
        [
            "rules",
            "reserved:t1",
            "reserved:t2",
            "reserved:t3",
            "cancelled:t1",
            "stock"
        ]
    );
}

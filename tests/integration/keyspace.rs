//! Keyspace notifications (class d), WATCH, and INFO fields.

use crate::harness::*;
use std::time::Duration;

#[test]
fn keyspace_events_for_every_change() {
    let s = Server::start(&["--notify-keyspace-events", "Ed"]);
    let mut sub = s.conn();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut ps = sub.as_pubsub();
    ps.psubscribe("__keyevent@0__:inv.*").unwrap();
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "5"]);
    ok(c, &["INV.ADD", "sku", "1"]);
    ok(c, &["INV.RESERVE", "sku", "a", "1"]);
    // The expiry's event must come last: due after the commands below even
    // on a loaded machine.
    ok(c, &["INV.EXTEND", "sku", "a", "2000"]);
    ok(c, &["INV.RESERVE", "sku", "b", "1"]);
    ok(c, &["INV.CONFIRM", "sku", "b"]);
    ok(c, &["INV.CANCEL", "sku", "c"]);
    let want = [
        "inv.set",
        "inv.add",
        "inv.reserve",
        "inv.extend",
        "inv.reserve",
        "inv.confirm",
        "inv.cancel",
        "inv.expire",
    ];
    for w in want {
        let msg = ps.get_message().expect("event");
        let payload: String = msg.get_payload().unwrap();
        assert_eq!(
            (msg.get_channel_name(), payload.as_str()),
            (format!("__keyevent@0__:{w}").as_str(), "sku")
        );
    }
}

#[test]
fn watch_sees_changes_but_not_replays() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    let other = &mut s.conn();
    ok(c, &["INV.SET", "sku", "5"]);
    ok(c, &["INV.RESERVE", "sku", "a", "1"]);
    let run = |c: &mut redis::Connection, other: &mut redis::Connection, args: &[&str]| -> bool {
        ok(c, &["WATCH", "sku"]);
        ok(other, args);
        let r: Option<Vec<redis::Value>> = redis::pipe()
            .atomic()
            .cmd("INV.GET")
            .arg("sku")
            .query(c)
            .unwrap();
        r.is_some()
    };
    assert!(
        !run(c, other, &["INV.RESERVE", "sku", "b", "1"]),
        "a change must abort EXEC"
    );
    assert!(
        run(c, other, &["INV.RESERVE", "sku", "b", "1"]),
        "a replay changes nothing"
    );
}

#[test]
fn info_reports_every_field() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "5"]);
    ok(c, &["INV.RESERVE", "sku", "a", "2"]);
    ok(c, &["INV.RESERVE", "sku", "a", "2"]);
    let _ = call(c, &["INV.RESERVE", "sku", "a", "3"]);
    ok(c, &["INV.RESERVE", "sku", "big", "9"]);
    ok(c, &["INV.RESERVE", "sku", "b", "1"]);
    ok(c, &["INV.CANCEL", "sku", "b"]);
    for (name, want) in [
        ("keys", 1),
        ("open_reservations", 1),
        ("reserved_units", 2),
        ("reserves", 2),
        ("reserves_nostock", 1),
        ("replays", 1),
        ("fenced", 0),
        ("confirms", 0),
        ("confirms_late", 0),
        ("cancels", 1),
        ("empty_rollbacks", 0),
        ("expired", 0),
        ("purged", 0),
        ("tx_conflicts", 1),
        ("audits_failed", 0),
    ] {
        assert_eq!(info_field(c, name), want, "{name}");
    }
    ok(c, &["DEL", "sku"]);
    assert_eq!(
        (info_field(c, "keys"), info_field(c, "reserved_units")),
        (0, 0)
    );
}

#[test]
fn client_tracking_is_invalidated_by_changes() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "5"]);
    let mut sub = s.conn();
    let sub_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut sub).unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut ps = sub.as_pubsub();
    ps.subscribe("__redis__:invalidate").unwrap();
    let reader = &mut s.conn();
    ok(
        reader,
        &["CLIENT", "TRACKING", "on", "REDIRECT", &sub_id.to_string()],
    );
    ok(reader, &["INV.GET", "sku"]);
    ok(c, &["INV.RESERVE", "sku", "a", "1"]);
    let msg = ps.get_message().expect("invalidation");
    let keys: Vec<String> = msg.get_payload().unwrap();
    assert_eq!(keys, ["sku"]);
    // Tracked again; a retry changes nothing and must not invalidate. A
    // real change of another tracked key comes after it: the next message
    // names that key, so the retry sent none (no wall-clock wait).
    ok(c, &["INV.SET", "other", "5"]);
    ok(reader, &["INV.GET", "sku"]);
    ok(reader, &["INV.GET", "other"]);
    ok(c, &["INV.RESERVE", "sku", "a", "1"]);
    ok(
        c,
        &["INV.CANCEL", "sku", "never-reserved-but-fenced-elsewhere"],
    );
    let msg = ps.get_message().expect("invalidation");
    let keys: Vec<String> = msg.get_payload().unwrap();
    assert_eq!(keys, ["sku"], "the fence is a change");
    ok(reader, &["INV.GET", "sku"]);
    ok(c, &["INV.RESERVE", "sku", "a", "1"]);
    ok(
        c,
        &["INV.CANCEL", "sku", "never-reserved-but-fenced-elsewhere"],
    );
    ok(c, &["INV.ADD", "other", "1"]);
    let msg = ps.get_message().expect("invalidation");
    let keys: Vec<String> = msg.get_payload().unwrap();
    assert_eq!(
        keys,
        ["other"],
        "retries of a reserve and of a cancel invalidated sku"
    );
}

#[test]
fn purging_a_finished_record_fires_inv_purge() {
    let s = Server::start(&["--notify-keyspace-events", "Ed"]);
    let c = &mut s.conn();
    ok(c, &["CONFIG", "SET", "inventory.retention-ms", "1"]);
    let mut sub = s.conn();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ps = sub.as_pubsub();
    ps.psubscribe("__keyevent@0__:inv.*").unwrap();
    ok(c, &["INV.SET", "sku", "5"]);
    // Retention counts from the deadline: purged 1 ms after it, a second
    // from now (a confirm that came after the deadline would be late).
    ok(c, &["INV.RESERVE", "sku", "a", "1", "TTL", "1000"]);
    let confirmed = ok(c, &["INV.CONFIRM", "sku", "a"]);
    assert!(
        format!("{confirmed:?}").contains("CONFIRMED"),
        "{confirmed:?}"
    );
    for w in ["inv.set", "inv.reserve", "inv.confirm", "inv.purge"] {
        let msg = ps.get_message().expect("event");
        let payload: String = msg.get_payload().unwrap();
        assert_eq!(
            (msg.get_channel_name(), payload.as_str()),
            (format!("__keyevent@0__:{w}").as_str(), "sku")
        );
    }
    assert_eq!(tx_state(c, "sku", "a"), None, "purged");
    assert_eq!(info_field(c, "purged"), 1);
}

#[test]
fn configs_from_the_server_configuration() {
    // The same directives redis.conf holds, given on the command line.
    let s = Server::start(&[
        "--inventory.max-ttl-ms",
        "5000",
        "--inventory.max-open-per-key",
        "3",
    ]);
    let c = &mut s.conn();
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "inventory.max-*"])
        .query(c)
        .unwrap();
    let got: std::collections::BTreeMap<_, _> =
        v.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    assert_eq!(got["inventory.max-ttl-ms"], "5000");
    assert_eq!(got["inventory.max-open-per-key"], "3");
}

/// Fences (one per key) on `n` keys named `{prefix}{i}`: each key is then
/// registered for its purge, a day later.
fn fenced_keys(c: &mut redis::Connection, prefix: &str, n: usize) {
    pipelined(c, 0..n, |p, i| {
        p.cmd("INV.CANCEL")
            .arg(format!("{prefix}{i}"))
            .arg("t")
            .ignore();
    });
}

/// Deleted keys leave the housekeeping registry by every path (DEL,
/// UNLINK, a key's own TTL, eviction, FLUSHDB, FLUSHALL), and memory goes
/// back to where it was: repeated rounds do not grow it.
#[test]
fn deleted_keys_leave_nothing_behind() {
    let s = Server::start(&["--maxmemory-policy", "allkeys-random"]);
    let c = &mut s.conn();
    let scheduled = |c: &mut redis::Connection| info_field(c, "scheduled_keys");
    let settle = |c: &mut redis::Connection| {
        eventually("the registry empties", Duration::from_secs(10), || {
            scheduled(c) == 0
        });
    };
    fenced_keys(c, "warm", 1_000);
    ok(c, &["FLUSHALL", "SYNC"]);
    settle(c);
    let baseline = testkit::used_memory(c);
    for round in 0..3 {
        fenced_keys(c, "a", 50_000);
        assert_eq!(scheduled(c), 50_000);
        ok(c, &["FLUSHALL", "SYNC"]);
        settle(c);
        fenced_keys(c, "b", 20_000);
        ok(c, &["SELECT", "1"]);
        fenced_keys(c, "b", 5_000);
        ok(c, &["FLUSHDB", "ASYNC"]);
        ok(c, &["SELECT", "0"]);
        eventually("db 1 forgotten", Duration::from_secs(10), || {
            scheduled(c) == 20_000
        });
        pipelined(c, 0..20_000, |p, i| {
            let key = format!("b{i}");
            match i % 3 {
                0 => p.cmd("DEL").arg(key).ignore(),
                1 => p.cmd("UNLINK").arg(key).ignore(),
                _ => p.cmd("PEXPIRE").arg(key).arg(1).ignore(),
            };
        });
        // Keys with a TTL go when Redis expires them, actively or on access.
        pipelined(c, 0..20_000, |p, i| {
            p.cmd("EXISTS").arg(format!("b{i}")).ignore();
        });
        settle(c);
        // Eviction: a maxmemory below what the keys hold evicts some.
        fenced_keys(c, "e", 20_000);
        let used = testkit::used_memory(c);
        ok(
            c,
            &[
                "CONFIG",
                "SET",
                "maxmemory",
                &(used - 1_000_000).to_string(),
            ],
        );
        ok(c, &["SET", "trigger", "x"]);
        ok(c, &["CONFIG", "SET", "maxmemory", "0"]);
        let left: i64 = redis::cmd("DBSIZE").query(c).unwrap();
        assert!(left < 20_001, "nothing was evicted");
        eventually("evicted keys forgotten", Duration::from_secs(10), || {
            // The evicted ones go; the rest stay registered for their purge.
            let keys: i64 = redis::cmd("DBSIZE").query(c).unwrap();
            scheduled(c) == keys - i64::from(ok(c, &["EXISTS", "trigger"]) == redis::Value::Int(1))
        });
        ok(c, &["FLUSHALL", "SYNC"]);
        settle(c);
        // Big buffers (a big flush's schedules) are freed on the module's
        // freeing thread, which runs at the lowest priority: on a busy
        // host a moment after the flush.
        let mut used = 0;
        let freed = testkit::holds_within(Duration::from_secs(10), || {
            used = testkit::used_memory(c);
            used < baseline + 1_000_000
        });
        assert!(
            freed,
            "round {round}: used_memory {used} against a baseline of {baseline}, 10 s after the flush"
        );
    }
}

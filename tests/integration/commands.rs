//! Every command and every row of the semantics table; the bad-input table.

use crate::harness::*;

/// An INV.SCAN reply: next cursor and [txid, state, qty, deadline] records.
type ScanReply = (String, Vec<(Vec<u8>, String, i64, i64, i64)>);

#[test]
fn module_and_type_are_named_inventory() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    let list = format!("{:?}", ok(c, &["MODULE", "LIST"]));
    assert!(list.contains("inventory"), "{list}");
    ok(c, &["INV.SET", "sku", "1"]);
    assert_eq!(
        redis::cmd("TYPE").arg("sku").query::<String>(c).unwrap(),
        "inventory"
    );
}

#[test]
fn reserve_semantics() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    // Missing key: NOSTOCK, nothing created.
    assert_eq!(
        outcome(c, &["INV.RESERVE", "sku", "a", "1"]),
        ("NOSTOCK".into(), 0, 0)
    );
    assert_eq!(call(c, &["EXISTS", "sku"]).unwrap(), redis::Value::Int(0));
    ok(c, &["INV.SET", "sku", "5"]);
    assert_eq!(get(c, "sku", "version"), 1);
    assert_eq!(
        outcome(c, &["INV.RESERVE", "sku", "a", "3"]),
        ("RESERVED".into(), 2, 2)
    );
    // Retry: same reply, nothing changes.
    assert_eq!(
        outcome(c, &["INV.RESERVE", "sku", "a", "3"]),
        ("RESERVED".into(), 2, 2)
    );
    assert_eq!(
        err(c, &["INV.RESERVE", "sku", "a", "2"]),
        "TXCONFLICT txid is already reserved with qty 3, not 2"
    );
    // Not enough: NOSTOCK, nothing recorded.
    assert_eq!(
        outcome(c, &["INV.RESERVE", "sku", "b", "3"]),
        ("NOSTOCK".into(), 2, 2)
    );
    assert_eq!(tx_state(c, "sku", "b"), None);
    assert_eq!(
        outcome(c, &["INV.CONFIRM", "sku", "a"]),
        ("CONFIRMED".into(), 2, 3)
    );
    // A reserve after confirm or cancel answers that state and takes nothing.
    assert_eq!(
        outcome(c, &["INV.RESERVE", "sku", "a", "3"]),
        ("CONFIRMED".into(), 2, 3)
    );
    assert_eq!(
        (
            get(c, "sku", "stock"),
            get(c, "sku", "sold"),
            get(c, "sku", "reserved")
        ),
        (2, 3, 0)
    );
}

#[test]
fn confirm_and_cancel_semantics() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "10"]);
    assert_eq!(
        outcome(c, &["INV.CONFIRM", "sku", "nope"]),
        ("UNKNOWN".into(), 10, 1)
    );
    ok(c, &["INV.RESERVE", "sku", "a", "4"]);
    assert_eq!(
        outcome(c, &["INV.CANCEL", "sku", "a"]),
        ("CANCELLED".into(), 10, 3)
    );
    assert_eq!(
        outcome(c, &["INV.CANCEL", "sku", "a"]),
        ("CANCELLED".into(), 10, 3)
    );
    assert_eq!(
        outcome(c, &["INV.CONFIRM", "sku", "a"]),
        ("CANCELLED".into(), 10, 3)
    );
    assert_eq!(get(c, "sku", "sold"), 0);
    ok(c, &["INV.RESERVE", "sku", "b", "1"]);
    ok(c, &["INV.CONFIRM", "sku", "b"]);
    assert_eq!(
        outcome(c, &["INV.CONFIRM", "sku", "b"]),
        ("CONFIRMED".into(), 9, 5)
    );
    assert_eq!(
        outcome(c, &["INV.CANCEL", "sku", "b"]),
        ("CONFIRMED".into(), 9, 5)
    );
}

#[test]
fn cancel_before_reserve_fences_the_late_reserve() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    // On a missing key the fence creates the key with stock 0.
    assert_eq!(
        outcome(c, &["INV.CANCEL", "sku", "late"]),
        ("CANCELLED".into(), 0, 1)
    );
    assert_eq!(get(c, "sku", "stock"), 0);
    ok(c, &["INV.ADD", "sku", "5"]);
    assert_eq!(
        outcome(c, &["INV.RESERVE", "sku", "late", "1"]),
        ("CANCELLED".into(), 5, 2)
    );
    assert_eq!(get(c, "sku", "reserved"), 0);
    assert_eq!(info_field(c, "empty_rollbacks"), 1);
    assert_eq!(info_field(c, "fenced"), 1);
}

#[test]
fn set_add_and_ifversion() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    assert_eq!(
        err(c, &["INV.ADD", "sku", "-1"]),
        "NOSTOCK cannot remove 1 units: 0 available"
    );
    assert_eq!(call(c, &["EXISTS", "sku"]).unwrap(), redis::Value::Int(0));
    assert_eq!(ok(c, &["INV.ADD", "sku", "5"]), redis::Value::Int(5));
    ok(c, &["INV.RESERVE", "sku", "a", "3"]);
    assert_eq!(
        err(c, &["INV.SET", "sku", "2"]),
        "NOSTOCK stock 2 is below the 3 units held by open reservations"
    );
    assert_eq!(
        err(c, &["INV.ADD", "sku", "-3"]),
        "NOSTOCK cannot remove 3 units: 2 available"
    );
    assert_eq!(ok(c, &["INV.ADD", "sku", "-2"]), redis::Value::Int(0));
    let v = get(c, "sku", "version");
    assert_eq!(
        err(c, &["INV.SET", "sku", "9", "IFVERSION", "1"]),
        format!("VERSION key is at version {v}, not 1")
    );
    ok(c, &["INV.SET", "sku", "9", "IFVERSION", &v.to_string()]);
    // A call that changes nothing does not bump the version.
    ok(c, &["INV.SET", "sku", "9"]);
    ok(c, &["INV.ADD", "sku", "0"]);
    assert_eq!(get(c, "sku", "version"), v + 1);
    // IFVERSION 0: create only if missing.
    ok(c, &["INV.SET", "new", "1", "IFVERSION", "0"]);
    assert!(err(c, &["INV.SET", "new", "1", "IFVERSION", "0"])
        .starts_with("VERSION key is at version 1"));
}

#[test]
fn get_tx_extend_scan_audit() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    assert_eq!(ok(c, &["INV.GET", "none"]), redis::Value::Nil);
    assert_eq!(ok(c, &["INV.TX", "none", "t"]), redis::Value::Nil);
    ok(c, &["INV.SET", "sku", "100"]);
    for i in 0..25 {
        ok(c, &["INV.RESERVE", "sku", &format!("t{i}"), "2"]);
    }
    let names: Vec<String> = redis::cmd("INV.GET")
        .arg("sku")
        .query::<Vec<redis::Value>>(c)
        .unwrap()
        .iter()
        .step_by(2)
        .map(|v| redis::from_redis_value(v).unwrap())
        .collect();
    assert_eq!(
        names[..6],
        ["stock", "reserved", "available", "sold", "version", "open"]
    );
    assert_eq!(
        (
            get(c, "sku", "reserved"),
            get(c, "sku", "available"),
            get(c, "sku", "open")
        ),
        (50, 50, 25)
    );
    let d0 = field(c, &["INV.TX", "sku", "t0"], "deadline").unwrap();
    assert_eq!(
        outcome(c, &["INV.EXTEND", "sku", "t0", "5000000"]).0,
        "RESERVED"
    );
    let d1 = field(c, &["INV.TX", "sku", "t0"], "deadline").unwrap();
    assert!(d1 > d0 - 600_000 + 4_000_000, "{d0} -> {d1}");
    assert_eq!(
        outcome(c, &["INV.EXTEND", "sku", "zz", "1000"]).0,
        "UNKNOWN"
    );
    ok(c, &["INV.CONFIRM", "sku", "t1"]);
    assert_eq!(
        outcome(c, &["INV.EXTEND", "sku", "t1", "1000"]).0,
        "CONFIRMED"
    );
    // SCAN visits every record exactly once.
    let mut cursor = "0".to_string();
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let (next, recs): ScanReply = redis::cmd("INV.SCAN")
            .arg("sku")
            .arg(&cursor)
            .arg("COUNT")
            .arg(7)
            .query(c)
            .unwrap();
        for r in recs {
            assert!(seen.insert(r.0));
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(ok(c, &["INV.AUDIT", "sku"]), redis::Value::Okay);
}

#[test]
fn multi_key_commands() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "{cart}a", "5"]);
    ok(c, &["INV.SET", "{cart}b", "1"]);
    // Blocked: the first blocking item's state, nothing changes.
    let (state, items): (String, Vec<(String, String, i64, i64)>) = redis::cmd("INV.MRESERVE")
        .arg(&["o1", "0", "{cart}a", "2", "{cart}b", "2"])
        .query(c)
        .unwrap();
    assert_eq!(state, "NOSTOCK");
    assert_eq!(items[1], ("{cart}b".into(), "NOSTOCK".into(), 1, 1));
    assert_eq!(get(c, "{cart}a", "reserved"), 0);
    // A key listed twice sums its quantities.
    let (state, items): (String, Vec<(String, String, i64, i64)>) = redis::cmd("INV.MRESERVE")
        .arg(&["o1", "0", "{cart}a", "2", "{cart}b", "1", "{cart}a", "1"])
        .query(c)
        .unwrap();
    assert_eq!(state, "RESERVED");
    assert_eq!(
        items,
        vec![
            ("{cart}a".into(), "RESERVED".into(), 2, 2),
            ("{cart}b".into(), "RESERVED".into(), 0, 2)
        ]
    );
    // Retrying the whole order is idempotent.
    let (state, _): (String, redis::Value) = redis::cmd("INV.MRESERVE")
        .arg(&["o1", "0", "{cart}a", "3", "{cart}b", "1"])
        .query(c)
        .unwrap();
    assert_eq!(
        (state, get(c, "{cart}a", "reserved")),
        ("RESERVED".into(), 3)
    );
    // MCONFIRM is blocked by an unknown item and changes nothing.
    let (state, _): (String, redis::Value) = redis::cmd("INV.MCONFIRM")
        .arg(&["o1", "{cart}a", "{cart}c"])
        .query(c)
        .unwrap();
    assert_eq!((state.as_str(), get(c, "{cart}a", "sold")), ("UNKNOWN", 0));
    let (state, _): (String, redis::Value) = redis::cmd("INV.MCONFIRM")
        .arg(&["o1", "{cart}a", "{cart}b"])
        .query(c)
        .unwrap();
    assert_eq!(
        (
            state.as_str(),
            get(c, "{cart}a", "sold"),
            get(c, "{cart}b", "sold")
        ),
        ("CONFIRMED", 3, 1)
    );
    // MCANCEL fences unknown items and reports a confirmed one.
    ok(c, &["INV.SET", "{cart}c", "4"]);
    let (state, _): (String, redis::Value) = redis::cmd("INV.MCANCEL")
        .arg(&["o1", "{cart}a", "{cart}c"])
        .query(c)
        .unwrap();
    assert_eq!(state, "CONFIRMED");
    assert_eq!(tx_state(c, "{cart}c", "o1").as_deref(), Some("CANCELLED"));
    // Key positions for routing and ACLs.
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg(&["GETKEYS", "INV.MRESERVE", "t", "0", "a", "1", "b", "2"])
        .query(c)
        .unwrap();
    assert_eq!(keys, ["a", "b"]);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg(&["GETKEYS", "INV.MCANCEL", "t", "a", "b"])
        .query(c)
        .unwrap();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "10"]);
    ok(c, &["INV.RESERVE", "sku", "a", "1"]);
    ok(c, &["SET", "str", "x"]);
    let long = "x".repeat(129);
    let before = digest(c);
    let table: &[(&[&str], &str)] = &[
        (&["INV.RESERVE", "sku", "t"], "ERR wrong number of arguments for 'inv.reserve' command"),
        (&["INV.RESERVE", "sku", "t", "0"], "ERR qty must be an integer from 1 to 9007199254740991, got '0'"),
        (&["INV.RESERVE", "sku", "t", "9007199254740992"], "ERR qty must be an integer from 1 to 9007199254740991, got '9007199254740992'"),
        (&["INV.RESERVE", "sku", "t", "1.5"], "ERR qty must be an integer from 1 to 9007199254740991, got '1.5'"),
        (&["INV.RESERVE", "sku", "t", "1", "TTL", "0"], "ERR TTL must be 1 to 86400000 milliseconds (inventory.max-ttl-ms), got 0"),
        (&["INV.RESERVE", "sku", "t", "1", "TTL", "86400001"], "ERR TTL must be 1 to 86400000 milliseconds (inventory.max-ttl-ms), got 86400001"),
        (&["INV.RESERVE", "sku", "t", "1", "TTL"], "ERR wrong number of arguments for 'inv.reserve' command"),
        (&["INV.RESERVE", "sku", "t", "1", "EX", "5"], "ERR unknown option 'EX' for 'inv.reserve'; accepted: TTL ms | PXAT unix-ms, BUYER id, BLOCK ms"),
        (&["INV.RESERVE", "sku", "", "1"], "ERR txid must be 1 to 128 bytes, got 0"),
        (&["INV.RESERVE", "sku", &long, "1"], "ERR txid must be 1 to 128 bytes, got 129"),
        (&["INV.RESERVE", "str", "t", "1"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        // The key is opened before the arguments parse (to prefetch the txid's
        // index line); malformed arguments still win over WRONGTYPE.
        (&["INV.RESERVE", "str", "t", "0"], "ERR qty must be an integer from 1 to 9007199254740991, got '0'"),
        (&["INV.RESERVE", "str"], "ERR wrong number of arguments for 'inv.reserve' command"),
        (&["INV.RESERVE"], "ERR wrong number of arguments for 'inv.reserve' command"),
        (&["INV.CANCEL", "str", "t"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        (&["INV.EXTEND", "str", "t", "-1"], "ERR ttl-ms must be a non-negative integer of milliseconds, got '-1'"),
        (&["INV.RESERVE", "missing", "t", "x"], "ERR qty must be an integer from 1 to 9007199254740991, got 'x'"),
        (&["INV.CONFIRM", "sku"], "ERR wrong number of arguments for 'inv.confirm' command"),
        (&["INV.CANCEL", "sku", "a", "b"], "ERR wrong number of arguments for 'inv.cancel' command"),
        (&["INV.SET", "sku", "-1"], "ERR stock must be an integer from 0 to 9007199254740991, got '-1'"),
        (&["INV.SET", "sku", "1", "IFVERSION"], "ERR wrong number of arguments for 'inv.set' command"),
        (&["INV.SET", "sku", "1", "NX"], "ERR unknown option 'NX' for 'inv.set'; accepted: IFVERSION version"),
        (&["INV.ADD", "sku", "x"], "ERR delta must be an integer from -9007199254740991 to 9007199254740991, got 'x'"),
        (&["INV.EXTEND", "sku", "a", "-1"], "ERR ttl-ms must be a non-negative integer of milliseconds, got '-1'"),
        (&["INV.MRESERVE", "t", "0", "sku"], "ERR wrong number of arguments for 'inv.mreserve' command"),
        (&["INV.MRESERVE", "t", "0", "sku", "0"], "ERR qty must be an integer from 1 to 9007199254740991, got '0'"),
        (&["INV.SCAN", "sku", "x"], "ERR invalid cursor"),
        (&["INV.SCAN", "sku", "0", "COUNT", "0"], "ERR COUNT must be an integer from 1 to 100000, got '0'"),
        (&["INV.GET", "str"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        (&["INV.APPLY", "sku", "STOCK", "1"], "ERR INV.APPLY is internal: accepted only from a master's replication stream or an AOF being loaded"),
        (&["INV.APPLY.CONFIRM", "sku", "t"], "ERR INV.APPLY.CONFIRM is internal: accepted only from a master's replication stream or an AOF being loaded"),
        (&["INV.APPLY.CANCEL", "sku", "t"], "ERR INV.APPLY.CANCEL is internal: accepted only from a master's replication stream or an AOF being loaded"),
    ];
    for (args, want) in table {
        assert_eq!(&err(c, args), want, "{args:?}");
    }
    assert_eq!(digest(c), before, "an error changed the data");
}

#[test]
fn max_open_per_key_limits_reservations() {
    let s = Server::start(&["max-open-per-key", "2"]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku", "10"]);
    ok(c, &["INV.RESERVE", "sku", "a", "1"]);
    ok(c, &["INV.RESERVE", "sku", "b", "1"]);
    assert_eq!(
        err(c, &["INV.RESERVE", "sku", "c", "1"]),
        "LIMIT key already holds 2 open reservations (inventory.max-open-per-key)"
    );
    ok(c, &["INV.CONFIRM", "sku", "a"]);
    assert_eq!(outcome(c, &["INV.RESERVE", "sku", "c", "1"]).0, "RESERVED");
}

#[test]
fn configs_via_args_and_config_set() {
    let s = Server::start(&["default-ttl-ms", "1234"]);
    let c = &mut s.conn();
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "inventory.default-ttl-ms"])
        .query(c)
        .unwrap();
    assert_eq!(v[1], "1234");
    ok(c, &["CONFIG", "SET", "inventory.max-ttl-ms", "5000"]);
    assert_eq!(
        err(c, &["INV.RESERVE", "k", "t", "1", "TTL", "5001"]),
        "ERR TTL must be 1 to 5000 milliseconds (inventory.max-ttl-ms), got 5001"
    );
    assert!(call(c, &["CONFIG", "SET", "inventory.retention-ms", "-1"]).is_err());
}

#[test]
fn hot_sku_never_oversells_under_200_connections() {
    let s = Server::start(&["--maxclients", "1000"]);
    ok(&mut s.conn(), &["INV.SET", "hot", "150"]);
    let port = s.port;
    let handles: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                let mut c = client.get_connection().unwrap();
                let mut won = 0;
                for j in 0..5 {
                    let txid = format!("buyer-{i}-{j}");
                    let (state, _, _): (String, i64, i64) = redis::cmd("INV.RESERVE")
                        .arg("hot")
                        .arg(&txid)
                        .arg(1)
                        .query(&mut c)
                        .unwrap();
                    if state == "RESERVED" {
                        won += 1;
                        let _: redis::Value = redis::cmd("INV.CONFIRM")
                            .arg("hot")
                            .arg(&txid)
                            .query(&mut c)
                            .unwrap();
                    }
                }
                won
            })
        })
        .collect();
    let won: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let c = &mut s.conn();
    assert_eq!(won, 150, "every unit sold once, none twice");
    assert_eq!(
        (
            get(c, "hot", "sold"),
            get(c, "hot", "stock"),
            get(c, "hot", "available")
        ),
        (150, 0, 0)
    );
    assert_eq!(ok(c, &["INV.AUDIT", "hot"]), redis::Value::Okay);
}

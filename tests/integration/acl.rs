//! What the server and ACL know of the module and each command: its version,
//! exact arity, key specs (read or write, per key), docs, and the ACL
//! categories where the server lets a module set them (Valkey; not Redis
//! 7.0). Checked with real ACL users.

use crate::harness::*;
use redis::{Connection, Value};
use std::time::Duration;
use testkit::version;

/// A connection logged in as a new user with `rules` (password "pw").
fn user(s: &Server, name: &str, rules: &[&str]) -> Connection {
    let admin = &mut s.conn();
    let mut setuser = vec!["ACL", "SETUSER", name, "reset", "on", ">pw"];
    setuser.extend_from_slice(rules);
    ok(admin, &setuser);
    let mut c = s.conn();
    ok(&mut c, &["AUTH", name, "pw"]);
    c
}

fn refused(c: &mut Connection, args: &[&str]) -> bool {
    match call(c, args) {
        Err(e) => e.code() == Some("NOPERM"),
        Ok(_) => false,
    }
}

fn allowed(c: &mut Connection, args: &[&str]) -> bool {
    match call(c, args) {
        Err(e) => e.code() != Some("NOPERM"),
        Ok(_) => true,
    }
}

/// `COMMAND INFO name`'s fields as text: arity and ACL categories.
fn arity_and_categories(c: &mut Connection, name: &str) -> (i64, Vec<String>) {
    let v: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query(c)
        .unwrap();
    let Value::Array(outer) = v else {
        panic!("{v:?}")
    };
    let Some(Value::Array(info)) = outer.first() else {
        panic!("{outer:?}")
    };
    let arity = match &info[1] {
        Value::Int(n) => *n,
        other => panic!("{other:?}"),
    };
    let categories = match &info[6] {
        Value::Array(items) | Value::Set(items) => items
            .iter()
            .map(|i| redis::from_redis_value::<String>(i).unwrap())
            .collect(),
        other => panic!("{other:?}"),
    };
    (arity, categories)
}

/// Each key `COMMAND GETKEYSANDFLAGS` finds, with its flags joined.
fn keys_and_flags(c: &mut Connection, args: &[&str]) -> Vec<(String, String)> {
    let v: Vec<(String, Vec<String>)> = redis::cmd("COMMAND")
        .arg("GETKEYSANDFLAGS")
        .arg(args)
        .query(c)
        .unwrap();
    v.into_iter().map(|(k, f)| (k, f.join(" "))).collect()
}

#[test]
fn every_command_has_its_exact_arity_and_what_it_does_to_each_key() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    for (name, arity) in [
        ("inv.set", -3),
        ("inv.add", -3),
        ("inv.get", 2),
        ("inv.reserve", -4),
        ("inv.confirm", -3),
        ("inv.adjust", 4),
        ("inv.rules", -3),
        ("inv.buyer", 3),
        ("inv.cancel", 3),
        ("inv.extend", 4),
        ("inv.tx", 3),
        ("inv.mreserve", -5),
        ("inv.mconfirm", -3),
        ("inv.mcancel", -3),
        ("inv.scan", -3),
        ("inv.audit", 2),
        ("inv.feed", 2),
        ("inv.apply", -3),
        ("inv.apply.confirm", 3),
        ("inv.apply.cancel", 3),
    ] {
        assert_eq!(arity_and_categories(c, name).0, arity, "{name}");
    }
    let e = call(c, &["INV.GET", "a", "b"]).unwrap_err();
    assert!(e.to_string().contains("wrong number of arguments"), "{e}");

    let ro = |k: &str| (k.to_string(), "RO access".to_string());
    assert_eq!(keys_and_flags(c, &["INV.GET", "k"]), [ro("k")]);
    assert_eq!(keys_and_flags(c, &["INV.TX", "k", "t"]), [ro("k")]);
    assert_eq!(keys_and_flags(c, &["INV.SCAN", "k", "0"]), [ro("k")]);
    assert_eq!(keys_and_flags(c, &["INV.AUDIT", "k"]), [ro("k")]);
    assert_eq!(keys_and_flags(c, &["INV.FEED", "k"]), [ro("k")]);
    let ins = |k: &str| (k.to_string(), "RW access insert".to_string());
    assert_eq!(
        keys_and_flags(c, &["INV.RESERVE", "k", "t", "1"]),
        [ins("k")]
    );
    assert_eq!(
        keys_and_flags(c, &["INV.MRESERVE", "t", "0", "a", "1", "b", "2"]),
        [ins("a"), ins("b")]
    );
    assert_eq!(
        keys_and_flags(
            c,
            &["INV.MRESERVE", "t", "BUYER", "b", "0", "a", "1", "b", "2"]
        ),
        [ins("a"), ins("b")]
    );
    let upd = |k: &str| (k.to_string(), "RW access update".to_string());
    assert_eq!(keys_and_flags(c, &["INV.CONFIRM", "k", "t"]), [upd("k")]);
    assert_eq!(
        keys_and_flags(c, &["INV.ADJUST", "k", "t", "1"]),
        [upd("k")]
    );
    assert_eq!(
        keys_and_flags(c, &["INV.RULES", "k", "LIMIT", "1"]),
        [upd("k")]
    );
    assert_eq!(keys_and_flags(c, &["INV.BUYER", "k", "b"]), [ro("k")]);
    assert_eq!(
        keys_and_flags(c, &["INV.MCONFIRM", "t", "a", "QTY", "1", "b"]),
        [upd("a"), upd("b")]
    );
    assert_eq!(
        keys_and_flags(c, &["INV.MCANCEL", "t", "a", "b"]),
        [upd("a"), upd("b")]
    );
    assert_eq!(
        keys_and_flags(c, &["INV.SET", "k", "1"]),
        [("k".to_string(), "RW update".to_string())]
    );

    let words = |c: &mut Connection, name: &str| {
        let docs: Value = redis::cmd("COMMAND")
            .arg("DOCS")
            .arg(name)
            .query(c)
            .unwrap();
        let mut out = Vec::new();
        flatten(&docs, &mut out);
        out
    };
    let reserve = words(c, "inv.reserve");
    for w in [
        "Reserves units for a transaction id, idempotently, until a deadline; with BLOCK, waits in line for returned units",
        "TTL",
        "PXAT",
        "BLOCK",
        "oneof",
        "optional",
        "unix-time",
    ] {
        assert!(reserve.iter().any(|x| x == w), "{w} in {reserve:?}");
    }
    assert!(
        reserve.iter().any(|x| x.starts_with("O(log N)")),
        "{reserve:?}"
    );
    assert!(words(c, "inv.set").iter().any(|x| x == "IFVERSION"));
    assert!(words(c, "inv.scan").iter().any(|x| x == "COUNT"));
    let mreserve = words(c, "inv.mreserve");
    for w in ["block", "multiple", "key", "qty"] {
        assert!(mreserve.iter().any(|x| x == w), "{w} in {mreserve:?}");
    }
}

/// Every string in a reply, depth first.
fn flatten(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|i| flatten(i, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        _ => {}
    }
}

#[test]
fn a_read_only_key_user_reads_and_cannot_write() {
    let s = Server::start(&[]);
    ok(&mut s.conn(), &["INV.SET", "k", "5"]);
    let version_now = || {
        let v: Vec<Value> = redis::cmd("INV.GET").arg("k").query(&mut s.conn()).unwrap();
        redis::from_redis_value::<i64>(&v[9]).unwrap()
    };
    let before = version_now();
    let r = &mut user(&s, "reader", &["%R~*", "+@all"]);
    for args in [
        &["INV.GET", "k"][..],
        &["INV.TX", "k", "t"],
        &["INV.SCAN", "k", "0"],
        &["INV.AUDIT", "k"],
        &["INV.BUYER", "k", "b"],
        &["INV.FEED", "k"],
    ] {
        assert!(allowed(r, args), "{args:?}");
    }
    for args in [
        &["INV.SET", "k", "9"][..],
        &["INV.ADD", "k", "1"],
        &["INV.RESERVE", "k", "t", "1"],
        &["INV.CONFIRM", "k", "t"],
        &["INV.CANCEL", "k", "t"],
        &["INV.EXTEND", "k", "t", "1000"],
        &["INV.ADJUST", "k", "t", "1"],
        &["INV.RULES", "k", "LIMIT", "1"],
        &["INV.RULES", "k", "FEED", "ON"],
        &["INV.MRESERVE", "t", "0", "k", "1"],
        &["INV.MRESERVE", "t", "BUYER", "b", "0", "k", "1"],
        &["INV.MCONFIRM", "t", "k"],
        &["INV.MCANCEL", "t", "k"],
    ] {
        assert!(refused(r, args), "{args:?}");
    }
    assert_eq!(version_now(), before, "nothing changed");
}

#[test]
fn a_key_pattern_confines_single_and_multi_key_commands() {
    let s = Server::start(&[]);
    let admin = &mut s.conn();
    ok(admin, &["INV.SET", "{shop}A:1", "5"]);
    ok(admin, &["INV.SET", "{shop}B:1", "5"]);
    let a = &mut user(&s, "shopa", &["~{shop}A:*", "+@all"]);
    assert!(allowed(a, &["INV.RESERVE", "{shop}A:1", "t", "1"]));
    for args in [
        &["INV.GET", "{shop}B:1"][..],
        &["INV.RESERVE", "{shop}B:1", "t", "1"],
        &["INV.CANCEL", "{shop}B:1", "t"],
        &["INV.MRESERVE", "u", "0", "{shop}A:1", "1", "{shop}B:1", "1"],
        &["INV.MCONFIRM", "t", "{shop}A:1", "{shop}B:1"],
        &["INV.MCANCEL", "t", "{shop}B:1"],
    ] {
        assert!(refused(a, args), "{args:?}");
    }
    assert!(allowed(a, &["INV.MCONFIRM", "t", "{shop}A:1"]));
}

#[test]
fn acl_categories_where_the_server_has_them() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "k", "5"]);
    let (_, categories) = arity_and_categories(c, "inv.get");
    if version(c).starts_with("Redis 7.0") {
        // No RedisModule_SetCommandACLCategories before Redis 7.2: README
        // gives the rules by command name for this server.
        assert!(categories.is_empty(), "{categories:?}");
        testkit::skip(
            "no ACL categories for module commands before Redis 7.2 (checked that none are set)",
        );
        return;
    }
    assert_eq!(categories, ["@read", "@fast", "@inventory"]);
    let (_, categories) = arity_and_categories(c, "inv.reserve");
    assert_eq!(categories, ["@write", "@inventory"]);

    let reader = &mut user(&s, "reader", &["~*", "+@read"]);
    assert!(allowed(reader, &["INV.GET", "k"]));
    assert!(allowed(reader, &["INV.TX", "k", "t"]));
    assert!(refused(reader, &["INV.RESERVE", "k", "t", "1"]));

    let no_writes = &mut user(&s, "nowrites", &["~*", "+@all", "-@write", "-@dangerous"]);
    assert!(allowed(no_writes, &["INV.GET", "k"]));
    for args in [
        &["INV.SET", "k", "9"][..],
        &["INV.RESERVE", "k", "t", "1"],
        &["INV.MCANCEL", "t", "k"],
    ] {
        assert!(refused(no_writes, args), "{args:?}");
    }

    let inventory_reader = &mut user(&s, "invreader", &["~*", "+@inventory", "-@write"]);
    assert!(allowed(inventory_reader, &["INV.SCAN", "k", "0"]));
    assert!(refused(inventory_reader, &["INV.CONFIRM", "k", "t"]));
    assert!(refused(inventory_reader, &["GET", "k"]));
}

/// The ACL rules docs/commands.md gives each role, in the column for this
/// server.
fn documented_rules(redis_7_0: bool) -> Vec<(String, Vec<String>)> {
    let reference = include_str!("../../docs/commands.md");
    let section = reference
        .split("## ACL")
        .nth(1)
        .expect("docs/commands.md has an ACL section");
    [
        "order service",
        "seller",
        "read-only dashboard",
        "feed consumer",
    ]
    .iter()
    .map(|role| {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| {role} |")))
            .unwrap_or_else(|| panic!("docs/commands.md has no rules for {role}"));
        // `\|` inside a cell is a table's escaped `|`.
        let row = row.replace("\\|", "\u{0}");
        let cells: Vec<String> = row
            .split('|')
            .map(|c| c.trim().replace('\u{0}', "|"))
            .collect();
        let valkey = cells[2].as_str();
        let cell = match cells[3].as_str() {
            "the same" => valkey,
            other if redis_7_0 => other,
            _ => valkey,
        };
        let rules = cell
            .trim_matches('`')
            .split_whitespace()
            .map(String::from)
            .collect();
        (role.to_string(), rules)
    })
    .collect()
}

#[test]
fn the_documented_rules_give_each_role_what_they_say() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "sku:1", "5"]);
    let redis_7_0 = version(c).starts_with("Redis 7.0");
    for (role, rules) in documented_rules(redis_7_0) {
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        let u = &mut user(&s, &role.replace(' ', "-"), &rules);
        let stream: String = redis::cmd("INV.FEED").arg("sku:1").query(c).unwrap();
        let _: Value = redis::cmd("DEL").arg(&stream).query(c).unwrap();
        let can = [
            allowed(u, &["INV.RESERVE", "sku:1", "t", "1", "BUYER", "b"]),
            allowed(u, &["INV.ADJUST", "sku:1", "t", "1"]),
            allowed(u, &["INV.SET", "sku:1", "5"]),
            allowed(u, &["INV.RULES", "sku:1", "LIMIT", "3"]),
            allowed(u, &["INV.GET", "sku:1"]),
            allowed(u, &["INV.BUYER", "sku:1", "b"]),
            allowed(u, &["INV.FEED", "sku:1"]),
            allowed(u, &["XGROUP", "CREATE", &stream, "g", "0", "MKSTREAM"]),
            allowed(
                u,
                &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", &stream, ">"],
            ),
        ];
        let expected = match role.as_str() {
            "order service" => [true, true, false, false, true, true, true, false, false],
            "seller" => [false, false, true, true, true, true, false, false, false],
            "feed consumer" => [false, false, false, false, false, false, true, true, true],
            _ => [false, false, false, false, true, true, true, false, false],
        };
        assert_eq!(can, expected, "{role}: {rules:?}");
        assert!(refused(u, &["INV.GET", "other:1"]), "{role}: other keys");
    }
}

#[test]
fn module_list_reports_the_crate_version() {
    let s = Server::start(&[]);
    let modules: Vec<Vec<Value>> = redis::cmd("MODULE")
        .arg("LIST")
        .query(&mut s.conn())
        .unwrap();
    let ours = modules
        .iter()
        .find(|m| matches!(&m[1], Value::BulkString(b) if b == b"inventory"))
        .expect("MODULE LIST names inventory");
    let parts: Vec<i64> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    let expected = parts[0] * 10_000 + parts[1] * 100 + parts[2];
    assert_eq!(ours[3], Value::Int(expected), "{ours:?}");
}

#[test]
fn loading_logs_no_warning_and_says_once_that_defrag_is_not_done() {
    let s = Server::start(&[]);
    let log = s.log();
    // Redis's log lines: "pid:role date time level message", where the
    // level mark is '#' for warnings and '*' for notices.
    let ours: Vec<&str> = log.lines().filter(|l| l.contains("<inventory>")).collect();
    assert!(!ours.is_empty(), "no module line in:\n{log}");
    for line in &ours {
        let level = line.split_whitespace().nth(3);
        assert_ne!(level, Some("#"), "a warning at load: {line}");
    }
    let defrag = ours.iter().filter(|l| l.contains("active defrag")).count();
    assert_eq!(defrag, 1, "{ours:#?}");
}

/// The names of a process's threads.
fn threads(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc");
    let mut names: Vec<String> = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

/// A MODULE LOAD that fails leaves no thread of the module behind: the
/// server unmaps the module's code, which such a thread would still run.
/// The one that succeeds starts the freeing thread once.
#[test]
fn a_failed_module_load_leaves_no_thread_behind() {
    let s = Server::start_build(
        testkit::Build::NoModule,
        &["--enable-module-command", "yes"],
    );
    let c = &mut s.conn();
    let module = testkit::module_path(testkit::Build::Debug);
    let module = module.to_str().expect("a UTF-8 module path");
    let before = threads(s.pid());
    assert!(call(c, &["MODULE", "LOAD", module, "no-such-config", "1"]).is_err());
    assert_eq!(
        threads(s.pid()),
        before,
        "a thread outlived the failed load"
    );
    ok(c, &["MODULE", "LOAD", module]);
    // The thread names itself once it runs.
    let ours = || {
        threads(s.pid())
            .iter()
            .filter(|t| *t == "inventory-free")
            .count()
    };
    eventually("the freeing thread named", Duration::from_secs(5), || {
        ours() > 0
    });
    assert_eq!(ours(), 1, "{:?}", threads(s.pid()));
    assert_eq!(ok(c, &["INV.SET", "k", "5"]), Value::Okay);
}

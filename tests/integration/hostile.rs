//! Input a hostile client, an AOF or a master's stream can supply: any
//! byte, any UTF-8 character, in any argument. The server answers with an
//! error and lives; it never aborts.

use crate::harness::*;
use redis::Value;
use std::time::Duration;
use testkit::hostile::Rng;

fn pong(c: &mut redis::Connection) {
    assert_eq!(ok(c, &["PING"]), Value::SimpleString("PONG".into()));
}

/// The full error text of a command with binary arguments.
fn err_bytes(c: &mut redis::Connection, args: &[&[u8]]) -> String {
    match call_bytes(c, args) {
        Ok(v) => panic!("{args:?} succeeded with {v:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
    }
}

/// Characters whose code point is a multiple of 256 became NUL bytes in
/// redis-module's error path and aborted the server.
#[test]
fn any_character_in_an_argument_gets_an_error_reply() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "k", "5"]);
    let table: &[(&[&[u8]], &str)] = &[
        (
            &[b"INV.SET", b"k", "Ā".as_bytes()],
            "ERR stock must be an integer from 0 to 9007199254740991, got 'Ā'",
        ),
        (
            &[b"INV.RESERVE", b"k", b"t", b"1", "\u{3000}".as_bytes()],
            "ERR unknown option '\u{3000}' for 'inv.reserve'; accepted: TTL ms | PXAT unix-ms, BUYER id, BLOCK ms",
        ),
        (
            &[b"INV.SCAN", b"k", b"0", b"COUNT", "一".as_bytes()],
            "ERR COUNT must be an integer from 1 to 100000, got '一'",
        ),
        (
            &[b"INV.ADD", b"k", b"1\x00\r\n\xff"],
            "ERR delta must be an integer from -9007199254740991 to 9007199254740991, got '1\\x00\\x0d\\x0a\\xff'",
        ),
        (
            &[b"INV.EXTEND", b"k", b"t", b"%s%n"],
            "ERR ttl-ms must be a non-negative integer of milliseconds, got '%s%n'",
        ),
        (
            &[b"INV.SET", b"k", &[b'7'; 5000]],
            &format!(
                "ERR stock must be an integer from 0 to 9007199254740991, got '{}...'",
                "7".repeat(64)
            ),
        ),
    ];
    for (args, want) in table {
        assert_eq!(&err_bytes(c, args), want, "{args:?}");
        pong(c);
    }
    assert_eq!(get(c, "k", "stock"), 5);
}

/// The AOF loader runs INV.APPLY on whatever the file holds: an effect that
/// does not fit (here naming an unknown txid 'Ā') is refused and logged, and
/// the server starts with everything else loaded.
#[test]
fn an_aof_effect_naming_any_bytes_is_refused_at_startup_not_fatal() {
    let s = Server::start(&["--appendonly", "yes", "--aof-use-rdb-preamble", "no"]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "k", "5"]);
    ok(c, &["INV.RESERVE", "k", "kept", "2"]);
    let before = digest(c);
    let s = s.restart_with(|dir| {
        let aof_dir = dir.join("appendonlydir");
        let incr = std::fs::read_dir(&aof_dir)
            .expect("appendonlydir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
            .expect("an incremental AOF file");
        let mut aof = std::fs::read(&incr).unwrap();
        for txid in ["Ā".as_bytes(), b"%s%s%s%n", b"\x00\r\n"] {
            aof.extend_from_slice(b"*4\r\n$9\r\nINV.APPLY\r\n$1\r\nk\r\n$7\r\nCONFIRM\r\n");
            aof.extend_from_slice(format!("${}\r\n", txid.len()).as_bytes());
            aof.extend_from_slice(txid);
            aof.extend_from_slice(b"\r\n");
        }
        std::fs::write(&incr, aof).unwrap();
    });
    let c = &mut s.conn();
    pong(c);
    assert_eq!(digest(c), before);
    let log = s.log();
    assert!(
        log.contains("INV.APPLY on a key out of step: ERR INV.APPLY unknown txid 'Ā'")
            && log.contains("unknown txid '%s%s%s%n'")
            && log.contains("unknown txid '\\x00\\x0d\\x0a'"),
        "{log}"
    );
}

/// A replica whose key went out of step (written on it directly) is sent an
/// effect it cannot apply; the error names the txid, and the replica lives.
#[test]
fn a_replica_out_of_step_refuses_an_effect_naming_any_bytes_and_lives() {
    let m = Server::start(&[]);
    let r = replica_of(&m, &["--replica-read-only", "no"]);
    let (mc, rc) = (&mut m.conn(), &mut r.conn());
    ok(mc, &["INV.SET", "k", "5"]);
    for txid in ["Ā", "%s%s%n"] {
        ok(mc, &["INV.RESERVE", "k", txid, "1"]);
    }
    wait_replicated(mc);
    // The replica's own copy of the key loses the reservations.
    ok(rc, &["DEL", "k"]);
    ok(rc, &["INV.SET", "k", "5"]);
    for txid in ["Ā", "%s%s%n"] {
        ok(mc, &["INV.CONFIRM", "k", txid]);
    }
    wait_replicated(mc);
    pong(rc);
    assert_eq!(get(rc, "k", "sold"), 0);
    eventually("the refusals logged", Duration::from_secs(5), || {
        let log = r.log();
        log.contains("unknown txid 'Ā'") && log.contains("unknown txid '%s%s%n'")
    });
}

/// The hostile vectors aim at every command the module registers.
#[test]
fn the_hostile_command_list_names_every_command() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    let mut registered: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("inventory")
        .query(c)
        .unwrap();
    registered.sort();
    let mut listed: Vec<String> = testkit::hostile::COMMANDS
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    listed.sort();
    assert_eq!(listed, registered);
}

/// Thousands of random argument vectors over every INV command, some inside
/// MULTI/EXEC: every one gets a reply, the server lives, and every key that
/// exists afterwards passes INV.AUDIT.
#[test]
fn random_argument_vectors_never_bring_the_server_down() {
    let s = Server::start(&[]);
    let c = &mut s.conn();
    ok(c, &["INV.SET", "k", "100"]);
    ok(c, &["INV.SET", "{k}b", "100"]);
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for i in 0..3_000 {
        let atoms = rng.below(8);
        let args = rng.vector(atoms);
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        if i % 10 == 0 {
            let mut p = redis::pipe();
            p.atomic();
            p.cmd(std::str::from_utf8(refs[0]).unwrap());
            for a in &refs[1..] {
                p.arg(*a);
            }
            let _: redis::RedisResult<Value> = p.query(c);
        } else {
            let _ = call_bytes(c, &refs);
        }
        if i % 500 == 0 {
            pong(c);
        }
    }
    pong(c);
    for k in ["k", "{k}b"] {
        if ok(c, &["EXISTS", k]) == Value::Int(1) {
            assert_eq!(ok(c, &["INV.AUDIT", k]), Value::Okay, "{k}");
        }
    }
}

/// Hostile arguments around `BLOCK` (any value, any bytes after it, on a
/// key with stock and on a sold-out one): the server answers or the reserve
/// waits; a wait this test gives up on (its connection closed) leaves the
/// queue, nothing stalls, and every key passes its audit.
#[test]
fn hostile_blocking_reserves_never_stall_the_server() {
    let s = Server::start(&[]);
    let admin = &mut s.conn();
    ok(admin, &["INV.SET", "k", "100"]);
    ok(admin, &["INV.SET", "{k}b", "0"]);
    let fresh = || {
        let c = s.conn();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        c
    };
    let mut c = fresh();
    let mut rng = Rng::new(0x51_0c4e_d00d);
    let mut waited = 0;
    for i in 0..600 {
        let mut args: Vec<Vec<u8>> = vec![
            if i % 5 == 0 {
                b"INV.MRESERVE".to_vec()
            } else {
                b"INV.RESERVE".to_vec()
            },
            if i % 2 == 0 {
                b"k".to_vec()
            } else {
                b"{k}b".to_vec()
            },
        ];
        let atoms = rng.below(6);
        let at = rng.below(atoms + 1);
        for j in 0..=atoms {
            if j == at {
                args.push(b"BLOCK".to_vec());
            }
            args.push(rng.atom());
        }
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        if let Err(e) = call_bytes(&mut c, &refs) {
            if e.is_timeout() || e.is_io_error() {
                // It waits: give up on it (its place is dropped).
                waited += 1;
                c = fresh();
            }
        }
        if i % 100 == 0 {
            pong(admin);
        }
    }
    drop(c);
    assert!(waited > 0, "some reserves waited");
    eventually("no waiter left", Duration::from_secs(5), || {
        info_field(admin, "waiters") == 0
    });
    pong(admin);
    for k in ["k", "{k}b"] {
        assert_eq!(ok(admin, &["INV.AUDIT", k]), Value::Okay, "{k}");
    }
}

//! Reply helpers for the integration tests; the server harness itself is the
//! shared `testkit` crate.

pub use testkit::{eventually, Server};

use redis::{Connection, Value};
use std::time::Duration;

/// A server replicating `master`, its link up.
pub fn replica_of(master: &Server, extra: &[&str]) -> Server {
    let r = Server::start(extra);
    let c = &mut r.conn();
    ok(c, &["REPLICAOF", "127.0.0.1", &master.port.to_string()]);
    eventually("replica link up", Duration::from_secs(10), || {
        let info: String = redis::cmd("INFO").arg("replication").query(c).unwrap();
        info.contains("master_link_status:up")
    });
    r
}

/// Waits until the one replica has acknowledged everything written so far.
pub fn wait_replicated(master: &mut Connection) {
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(master).unwrap();
    assert_eq!(acked, 1);
}

/// Sends one command of binary arguments and returns the raw reply.
pub fn call_bytes(c: &mut Connection, args: &[&[u8]]) -> redis::RedisResult<Value> {
    let mut cmd = redis::Cmd::new();
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(c)
}

/// Sends one command and returns the raw reply (errors as `Err`).
pub fn call(c: &mut Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

/// Calls `add(pipeline, i)` for every `i` in `range`, sending pipelines of
/// 5,000 (for keys with tens of thousands of records).
pub fn pipelined(
    c: &mut Connection,
    range: std::ops::Range<usize>,
    mut add: impl FnMut(&mut redis::Pipeline, usize),
) {
    let mut i = range.start;
    while i < range.end {
        let mut p = redis::pipe();
        for j in i..(i + 5_000).min(range.end) {
            add(&mut p, j);
        }
        let _: () = p
            .query(c)
            .unwrap_or_else(|e| panic!("pipeline failed: {e}"));
        i += 5_000;
    }
}

/// DUMPs `from` and RESTOREs the payload as `to` (no TTL).
pub fn dump_restore(c: &mut Connection, from: &str, to: &str) {
    let dump: Vec<u8> = redis::cmd("DUMP").arg(from).query(c).unwrap();
    let _: () = redis::cmd("RESTORE")
        .arg(to)
        .arg(0)
        .arg(&dump)
        .query(c)
        .unwrap();
}

/// Sends a command that must succeed.
pub fn ok(c: &mut Connection, args: &[&str]) -> Value {
    call(c, args).unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// The full error text a command returns (code and message).
pub fn err(c: &mut Connection, args: &[&str]) -> String {
    match call(c, args) {
        Ok(v) => panic!("{args:?} succeeded with {v:?}"),
        Err(e) => {
            let code = e.code().unwrap_or("");
            let detail = e.detail().unwrap_or("");
            format!("{code} {detail}").trim().to_string()
        }
    }
}

/// `[state, available, version]` replies as a tuple.
pub fn outcome(c: &mut Connection, args: &[&str]) -> (String, i64, i64) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// A field of INV.GET / INV.TX (flat field/value pairs in RESP2).
pub fn field(c: &mut Connection, args: &[&str], name: &str) -> Option<i64> {
    let pairs: Option<Vec<(String, redis::Value)>> =
        redis::cmd(args[0]).arg(&args[1..]).query(c).ok()?;
    pairs?
        .into_iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| redis::from_redis_value(&v).ok())
}

pub fn get(c: &mut Connection, key: &str, name: &str) -> i64 {
    field(c, &["INV.GET", key], name).unwrap_or_else(|| panic!("INV.GET {key} has no {name}"))
}

pub fn tx_state(c: &mut Connection, key: &str, txid: &str) -> Option<String> {
    let pairs: Option<Vec<(String, redis::Value)>> =
        redis::cmd("INV.TX").arg(key).arg(txid).query(c).unwrap();
    pairs?
        .into_iter()
        .find(|(k, _)| k == "state")
        .and_then(|(_, v)| redis::from_redis_value(&v).ok())
}

pub fn digest(c: &mut Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

pub fn info_field(c: &mut Connection, name: &str) -> i64 {
    let info: String = redis::cmd("INFO").arg("inventory").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("inventory_{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO has no inventory_{name}:\n{info}"))
}

/// Waits until no AOF rewrite is running or scheduled, and checks the last one succeeded.
pub fn wait_for_aof_rewrite(c: &mut Connection) {
    eventually("AOF rewrite", Duration::from_secs(10), || {
        let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
        info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
    });
    let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
    assert!(
        info.contains("aof_last_bgrewrite_status:ok"),
        "the AOF rewrite failed: {info}"
    );
}

pub use testkit::signal;

/// Server arguments for an AOF of plain commands (no RDB preamble), each
/// write fsynced: for tests that read or rewrite what it holds.
pub const PLAIN_AOF: &[&str] = &[
    "--appendonly",
    "yes",
    "--aof-use-rdb-preamble",
    "no",
    "--appendfsync",
    "always",
];

/// The commands of a RESP file (an AOF without its RDB preamble), each as
/// its words.
pub fn resp_commands(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut at = 0;
    let line = |at: &mut usize| {
        let end = *at + bytes[*at..].windows(2).position(|w| w == b"\r\n").unwrap();
        let l = &bytes[*at + 1..end];
        *at = end + 2;
        std::str::from_utf8(l).unwrap().parse::<usize>().unwrap()
    };
    while at < bytes.len() {
        assert_eq!(bytes[at], b'*', "at byte {at}");
        let n = line(&mut at);
        let mut words = Vec::with_capacity(n);
        for _ in 0..n {
            let len = line(&mut at);
            words.push(bytes[at..at + len].to_vec());
            at += len + 2;
        }
        out.push(words);
    }
    out
}

/// Commands as a RESP file.
pub fn resp_file(commands: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    for words in commands {
        out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
        for w in words {
            out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
            out.extend_from_slice(w);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// The incremental AOF file of a stopped server's data dir.
pub fn incr_aof(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("appendonlydir"))
        .expect("appendonlydir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .expect("an incremental AOF file")
}

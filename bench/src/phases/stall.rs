//! Phase 3b: the edges, where one command or one housekeeping step could
//! hold the event loop: a key growing through its index's growth, a flood of
//! fresh reserves on one hot key (reservations expiring during it, or not),
//! a million reservations sharing one deadline expired and then purged, and
//! one command naming tens of thousands of keys. For each: the slowest
//! command SLOWLOG kept (threshold 1 ms) and the worst wait of a concurrent
//! PING probe.

use crate::common::*;
use crate::report::EdgeRow;
use crate::Args;
use redis::Connection;
use std::io::Write;
use std::time::Duration;

fn config_set(c: &mut Connection, name: &str, value: impl ToString) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value.to_string())
        .query(c)
        .unwrap();
}

/// Logs every command over 1 ms from now on.
fn watch_slowlog(c: &mut Connection) {
    config_set(c, "slowlog-log-slower-than", 1000);
    config_set(c, "slowlog-max-len", 1000);
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(c).unwrap();
}

/// The slowest command SLOWLOG kept: (ms, its first arguments); (0, "") when
/// none passed 1 ms while the log was armed at 1 ms. NaN, which meets no
/// goal, when that cannot be told: SLOWLOG or its threshold unreadable, the
/// threshold not 1 ms, or an entry without a duration.
fn slowest(c: &mut Connection) -> (f64, String) {
    let unknown = |why: &str| (f64::NAN, format!("not measured: {why}"));
    let armed: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-log-slower-than")
        .query(c);
    match armed.as_deref() {
        Ok([_, us]) if us == "1000" => {}
        other => return unknown(&format!("slowlog-log-slower-than is {other:?}")),
    }
    let slow: Vec<Vec<redis::Value>> = match redis::cmd("SLOWLOG").arg("GET").arg(1000).query(c) {
        Ok(s) => s,
        Err(e) => return unknown(&format!("SLOWLOG GET: {e}")),
    };
    // Entry: id, time, duration (us), argv, ...
    let mut entries = Vec::with_capacity(slow.len());
    for e in &slow {
        let Some(us) = e
            .get(2)
            .and_then(|d| redis::from_redis_value::<i64>(d).ok())
        else {
            return unknown("a SLOWLOG entry without a duration");
        };
        let argv: Vec<String> = e
            .get(3)
            .and_then(|a| redis::from_redis_value(a).ok())
            .unwrap_or_default();
        entries.push((
            us,
            argv.iter().take(3).cloned().collect::<Vec<_>>().join(" "),
        ));
    }
    let (us, command) = entries
        .into_iter()
        .max_by_key(|(us, _)| *us)
        .unwrap_or_default();
    (us as f64 / 1e3, command)
}

fn row(case: String, c: &mut Connection, pings: &[Duration]) -> EdgeRow {
    let (slowest_command_ms, slowest_command) = slowest(c);
    EdgeRow {
        case,
        worst_ping_ms: pings.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        p999_ping_ms: pct(pings, 0.999),
        slowest_command_ms,
        slowest_command,
    }
}

/// One key growing from `from` to `to` records through its txid index's
/// growth (started at three quarters of its buckets' slots, filled in
/// housekeeping steps). Txids are `tagged_txid`s: 16 bytes when `tag` is
/// short; a longer `tag` (a UUID's length) puts every txid in the side
/// table of long txids, which grows too.
pub(crate) fn growth(args: &Args, from: usize, to: usize, tag: &str) -> EdgeRow {
    let server = bench_server(&args.server);
    let c = &mut server.conn();
    let _: () = redis::cmd("INV.SET").arg("hot").arg(BIG).query(c).unwrap();
    fill(c, "hot", 0, from, tag);
    watch_slowlog(c);
    let probe = PingProbe::start(server.url(), || true);
    fill(c, "hot", from, to - from, tag);
    std::thread::sleep(Duration::from_millis(200));
    let pings = probe.finish();
    let txids = if tag.is_empty() {
        String::new()
    } else {
        format!(" ({}-byte txids)", tagged_txid(tag, to - 1).len())
    };
    row(
        format!("one key growing from {from} to {to} records{txids}"),
        c,
        &pings,
    )
}

/// One RESP command, as `redis-cli --pipe` reads it.
fn resp(out: &mut Vec<u8>, args: &[&str]) {
    out.extend(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
}

/// `n` fresh-txid reserves with this TTL on one hot key, sent as fast as
/// `redis-cli --pipe` can: with a short TTL, reservations reach their
/// deadline while the flood goes on, so commands meet due records that
/// housekeeping has not expired yet.
pub(crate) fn flood(args: &Args, n: usize, ttl_ms: u64) -> EdgeRow {
    let server = bench_server(&args.server);
    let c = &mut server.conn();
    let mut commands = Vec::with_capacity(n * 80);
    resp(&mut commands, &["INV.SET", "hot", &BIG.to_string()]);
    let ttl = ttl_ms.to_string();
    for i in 0..n {
        let txid = tagged_txid("", i);
        resp(
            &mut commands,
            &["INV.RESERVE", "hot", &txid, "1", "TTL", &ttl],
        );
    }
    watch_slowlog(c);
    let probe = PingProbe::start(server.url(), || true);
    let mut pipe = std::process::Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli (make deps installs it)");
    if let Some(mut stdin) = pipe.stdin.take() {
        stdin.write_all(&commands).expect("redis-cli --pipe input");
    }
    let status = pipe.wait().expect("redis-cli --pipe");
    assert!(status.success(), "redis-cli --pipe failed");
    std::thread::sleep(Duration::from_millis(200));
    let pings = probe.finish();
    row(
        format!("{n} fresh reserves on one key by redis-cli --pipe, TTL {ttl_ms} ms"),
        c,
        &pings,
    )
}

/// `n` reservations sharing one deadline: expired by housekeeping, then
/// purged (retention 1 s), with the compaction that follows a purge of
/// almost every record.
pub(crate) fn expire_and_purge(args: &Args, n: usize) -> EdgeRow {
    let server = bench_server(&args.server);
    let c = &mut server.conn();
    config_set(c, "inventory.retention-ms", 1000);
    let deadline = fill_sharing_one_deadline(c, n);
    watch_slowlog(c);
    let probe = PingProbe::start(server.url(), move || now_ms() + 100 >= deadline);
    let records = |c: &mut Connection| -> i64 {
        let pairs: Vec<(String, i64)> = redis::cmd("INV.GET").arg("hot").query(c).unwrap();
        pairs.iter().find(|p| p.0 == "records").map_or(-1, |p| p.1)
    };
    while records(c) > 0 {
        assert!(now_ms() < deadline + 120_000, "purge did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The compaction and index shrink that follow run in housekeeping steps.
    std::thread::sleep(Duration::from_millis(1_000));
    let pings = probe.finish();
    row(
        format!("{n} reservations sharing one deadline, expired then purged"),
        c,
        &pings,
    )
}

/// Server time of one command naming `keys` keys (each twice), per key, in
/// microseconds: INV.MCANCEL, which fences every key.
fn per_key_us(c: &mut Connection, keys: usize) -> f64 {
    testkit::reset_stats(c);
    let mut cmd = redis::cmd("INV.MCANCEL");
    cmd.arg(format!("order-{keys}"));
    for i in 0..2 * keys {
        cmd.arg(format!("{{many}}sku{}", i % keys));
    }
    let _: redis::Value = cmd.query(c).unwrap();
    let (_, usec) = testkit::command_usec(c, "inv.mcancel").unwrap_or((1, 0));
    usec as f64 / keys as f64
}

/// One multi-key command naming 1,000 and then 40,000 keys (each listed
/// twice): the cost per key stays flat, the mark of work linear in the
/// input (repeats were found by a search per key: 7.7 s for 40,000).
pub(crate) fn many_keys(args: &Args) -> (f64, f64) {
    let server = bench_server(&args.server);
    let c = &mut server.conn();
    config_set(c, "inventory.max-keys-per-command", 100_000);
    let small = per_key_us(c, 1_000);
    let big = per_key_us(c, 40_000);
    (small, big)
}

//! Soak: a long mixed load with short TTLs and a short retention. Memory
//! must come back to its baseline once everything is purged, and latency
//! must not drift (p99 of the first window against the last).

use super::Finding;
use crate::load::connect;
use crate::Setup;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::hostile::Rng;
use testkit::{eventually, info_value, Server};

const KEYS: usize = 8;

/// Latencies (µs) of one worker's requests in the first and last windows,
/// and what the requests were answered.
struct Samples {
    first: Vec<u64>,
    last: Vec<u64>,
    requests: u64,
    /// Replies by command and state ("INV.RESERVE RESERVED", "INV.ADD ok").
    outcomes: BTreeMap<String, u64>,
    /// Error replies and failed requests: none is expected.
    errors: u64,
    first_error: Option<String>,
}

impl Samples {
    /// Counts one reply of `cmd`: the state a reply of the
    /// `[state, available, version]` shape names, or "ok".
    fn tally(&mut self, cmd: &str, reply: redis::RedisResult<redis::Value>) {
        match reply {
            Ok(redis::Value::Array(v)) if !v.is_empty() => {
                let state: String = redis::from_redis_value(&v[0]).unwrap_or_else(|_| "?".into());
                *self.outcomes.entry(format!("{cmd} {state}")).or_default() += 1;
            }
            Ok(redis::Value::ServerError(e)) => self.error(cmd, format!("{e:?}")),
            Ok(_) => *self.outcomes.entry(format!("{cmd} ok")).or_default() += 1,
            Err(e) => self.error(cmd, e.to_string()),
        }
    }

    fn error(&mut self, cmd: &str, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(format!("{cmd}: {e}"));
    }
}

fn worker(
    url: String,
    seed: u64,
    run: Duration,
    window: Duration,
    stop: Arc<AtomicBool>,
) -> Samples {
    let mut c = connect(&url).expect("connect");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut s = Samples {
        first: Vec::new(),
        last: Vec::new(),
        requests: 0,
        outcomes: BTreeMap::new(),
        errors: 0,
        first_error: None,
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < run {
        n += 1;
        let key = format!("soak:{}", rng.below(KEYS));
        let txid = format!("s{seed}-{n}");
        let t = Instant::now();
        let reply = redis::cmd("INV.RESERVE")
            .arg(&key)
            .arg(&txid)
            .arg(1)
            .arg("TTL")
            .arg(200 + rng.below(800))
            .query(&mut c);
        s.tally("INV.RESERVE", reply);
        let after = match rng.below(4) {
            0 | 1 => Some("INV.CONFIRM"),
            2 => Some("INV.CANCEL"),
            _ => None,
        };
        if let Some(cmd) = after {
            let reply = redis::cmd(cmd).arg(&key).arg(&txid).query(&mut c);
            s.tally(cmd, reply);
        }
        if rng.below(200) == 0 {
            let reply = redis::cmd("INV.ADD").arg(&key).arg(200).query(&mut c);
            s.tally("INV.ADD", reply);
        }
        let us = t.elapsed().as_micros() as u64;
        s.requests += 1 + u64::from(after.is_some());
        let at = started.elapsed();
        if at < window {
            s.first.push(us);
        } else if at + window >= run {
            s.last.push(us);
        }
    }
    s
}

/// The 99th percentile; None without samples (a missing measurement must
/// not pass the drift check as 0).
fn p99(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() * 99 / 100).copied()
}

pub fn run(setup: &Setup, run: Duration, window: Duration, assert_latency: bool) -> Finding {
    let started = Instant::now();
    let mut f = Finding::new(
        "soak",
        "appendonly yes, retention-ms 1000, TTLs 200-1000 ms; 4 connections: reserve, then confirm (1/2), cancel (1/4) or leave to expire",
    );
    let s = Server::start_with(
        &setup.server,
        setup.build,
        &["retention-ms", "1000", "--appendonly", "yes"],
    );
    let c = &mut s.conn();
    for k in 0..KEYS {
        let _: () = redis::cmd("INV.SET")
            .arg(format!("soak:{k}"))
            .arg(1_000_000)
            .query(c)
            .unwrap();
    }
    let baseline = testkit::used_memory(c);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (url, stop) = (s.url(), Arc::clone(&stop));
            std::thread::spawn(move || worker(url, setup_seed(w), run, window, stop))
        })
        .collect();
    let mut peak_records = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(500));
        let open: i64 = info_value(c, "inventory", "inventory_open_reservations")
            .parse()
            .unwrap_or(0);
        peak_records = peak_records.max(open);
    }
    let samples: Vec<Samples> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let requests: u64 = samples.iter().map(|s| s.requests).sum();
    let first = p99(samples.iter().flat_map(|s| s.first.clone()).collect());
    let last = p99(samples.iter().flat_map(|s| s.last.clone()).collect());
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for s in &samples {
        for (k, n) in &s.outcomes {
            *outcomes.entry(k.clone()).or_default() += n;
        }
    }
    let errors: u64 = samples.iter().map(|s| s.errors).sum();
    if errors > 0 {
        let first_error = samples.iter().find_map(|s| s.first_error.clone());
        f.broken.insert(format!(
            "{errors} requests failed or answered an error, the first: {}",
            first_error.unwrap_or_default()
        ));
    }
    // Stocked keys: every reserve is granted (a retry never happens here).
    let granted = outcomes.get("INV.RESERVE RESERVED").copied().unwrap_or(0);
    let reserves: u64 = outcomes
        .iter()
        .filter(|(k, _)| k.starts_with("INV.RESERVE "))
        .map(|(_, n)| n)
        .sum();
    if granted == 0 || granted != reserves {
        f.broken.insert(format!(
            "{granted} of {reserves} reserves granted on keys stocked for all of them: {outcomes:?}"
        ));
    }
    let peak = testkit::used_memory(c).max(baseline);
    // Everything expires and is purged after the retention.
    eventually("every record purged", Duration::from_secs(30), || {
        (0..KEYS).all(|k| {
            let pairs: Vec<(String, i64)> = redis::cmd("INV.GET")
                .arg(format!("soak:{k}"))
                .query(c)
                .unwrap_or_default();
            pairs.iter().any(|(f, v)| f == "records" && *v == 0)
        })
    });
    // Index and slab shrink in housekeeping steps after a purge.
    std::thread::sleep(Duration::from_secs(2));
    let after = testkit::used_memory(c);
    for k in 0..KEYS {
        let a: redis::Value = redis::cmd("INV.AUDIT")
            .arg(format!("soak:{k}"))
            .query(c)
            .unwrap();
        if a != redis::Value::Okay {
            f.broken.insert(format!("soak:{k} audits as {a:?}"));
        }
    }
    let grown = after - baseline;
    if grown > 512 << 10 {
        f.broken.insert(format!(
            "used_memory {after} after purging, {grown} bytes above the baseline {baseline}"
        ));
    }
    match (first, last) {
        (Some(first), Some(last)) if assert_latency && last > 2 * first + 2_000 => {
            f.broken
                .insert(format!("p99 drifted from {first} µs to {last} µs"));
        }
        (Some(_), Some(_)) => {}
        _ => {
            f.broken.insert(format!(
                "no latency measured in a window (first {first:?} µs, last {last:?} µs)"
            ));
        }
    }
    f.scan_log("server", &s.log());
    f.faults = format!("{} s of load, {requests} requests", run.as_secs());
    f.notes.push(format!(
        "used_memory: baseline {baseline} B, {peak} B at the end of the load (up to {peak_records} open reservations), {after} B after purging ({grown:+} B)"
    ));
    f.notes.push(format!(
        "p99 latency: {} µs in the first {} s, {} µs in the last {} s",
        first.unwrap_or_default(),
        window.as_secs(),
        last.unwrap_or_default(),
        window.as_secs()
    ));
    f.notes.push(format!("replies: {outcomes:?}"));
    f.secs = started.elapsed().as_secs_f64();
    f
}

fn setup_seed(w: usize) -> u64 {
    0x50a4 + w as u64
}

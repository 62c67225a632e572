//! Whole-server CPU per request: what a user pays for a command, all of it
//! (reading, parsing, running, replying, feeding the AOF and the replicas).
//!
//! The CPU of every thread of the server process (`/proc/<pid>/task/*/
//! schedstat`, nanoseconds on a CPU) is read around each chunk of requests
//! of one variant, sent in a closed loop on one connection: 64 commands
//! written at once and all their replies read before the next 64, so the
//! server reads every variant in the same batches. With a replica, its CPU
//! is read once it has acknowledged everything (`WAIT 1`).
//!
//! A round readies every variant's keys (unmeasured; with an AOF, fsynced),
//! then sends each variant's requests (100,000 in `make bench`) in
//! `CHUNKS` chunks, the variants taking turns chunk by chunk, so that a slow
//! stretch of this shared machine falls on all of them; a chunk's first
//! fifth warms the caches up for its variant and is not read. Every round
//! runs on servers started for it and stopped after it, so no round pays
//! for what earlier ones left, and no reading keeps one process's luck
//! (where its memory landed, what it shares a core with); the setups take
//! turns too. Each figure is the median over the
//! rounds of a variant's CPU per measured request, and each ratio the median
//! of per-round ratios. The servers never rewrite their AOF on their own
//! while measuring: a rewrite's fork costs in proportion to the dataset,
//! not to the requests. docs/benchmarks.md (2026-12-07) shows what each of
//! these choices did to the spread.

mod report;
mod variants;

pub(crate) use report::{comparisons, goals, CpuRow};
use variants::{variants, Variant};

use redis::{Connection, ConnectionLike};
use testkit::Server;

/// Commands written before their replies are read.
pub(crate) const BATCH: usize = 64;

/// Nanoseconds the process `pid` has run on a CPU, all its threads.
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        panic!("no /proc/{pid}/task: the server is gone");
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// What a setup runs: the server binary, the module (the release build
/// when None), bare or as deployed, and whether a bare master's
/// propagation is on for good. Every round starts its own processes.
pub(crate) struct Setup {
    pub label: String,
    bin: String,
    module: Option<String>,
    deployed: bool,
    propagating: bool,
}

/// A setup's running master, and its replica as deployed.
struct Servers {
    label: String,
    master: Server,
    replica: Option<Server>,
}

/// One round's reading: CPU per request on the master and on the replica.
#[derive(Clone, Copy)]
pub(crate) struct Reading {
    pub master_ns: f64,
    pub replica_ns: Option<f64>,
    /// The second, labelled view: INFO commandstats' microseconds per call
    /// of the variant's command on the master (which times a module
    /// command's own propagation, but not a core command's).
    pub stat_us: f64,
}

/// The command INFO commandstats counts a variant's requests under.
fn stat_name(variant: &str) -> String {
    let first = variant.split_whitespace().next().unwrap_or("");
    match variant {
        v if v.starts_with("seed Lua") || v.starts_with("seckill Lua") => "evalsha".into(),
        v if v.starts_with("barrier Lua") => "fcall".into(),
        _ => first.to_ascii_lowercase(),
    }
}

/// Requests of one variant between two readings: a round sends each
/// variant's requests in `CHUNKS` chunks, the variants taking turns chunk by
/// chunk, so that whatever slows the machine for a while (the other
/// processes on its two cores, the hypervisor) falls on every variant alike.
pub(crate) const CHUNKS: usize = 20;

/// One variant's running totals over a round.
#[derive(Clone, Copy, Default)]
struct Totals {
    master_ns: u64,
    replica_ns: u64,
    errors: usize,
    /// Requests measured (a chunk's warm-up is not).
    requests: usize,
    calls: u64,
    usec: u64,
}

/// The first fifth of each chunk warms the caches up for its variant and is
/// not measured: without it, every chunk would start on caches the other
/// variants left, unlike a server that runs one kind of request for a while
/// (the cold start cost HINCRBY about 40% more per request, a reserve less).
const WARM_UP: usize = 5;

/// Sends requests `from..to` of `v` (round `r`) in closed-loop batches,
/// the first `(to - from) / WARM_UP` unmeasured, waits for the replica, and
/// adds the CPU the rest cost to `t`.
fn run_chunk(
    s: &Servers,
    c: &mut Connection,
    v: &Variant,
    r: usize,
    (from, to): (usize, usize),
    t: &mut Totals,
) {
    let measured = from + (to - from) / WARM_UP;
    send(c, v, r, from, measured, t);
    sync_replica(c, s);
    let stat = stat_name(v.name);
    let before = testkit::command_usec(c, &stat).unwrap_or_default();
    let (m0, r0) = (
        cpu_ns(s.master.pid()),
        s.replica.as_ref().map(|x| cpu_ns(x.pid())),
    );
    send(c, v, r, measured, to, t);
    sync_replica(c, s);
    t.master_ns += cpu_ns(s.master.pid()) - m0;
    if let (Some(x), Some(r0)) = (&s.replica, r0) {
        t.replica_ns += cpu_ns(x.pid()) - r0;
    }
    let after = testkit::command_usec(c, &stat).unwrap_or_default();
    t.requests += to - measured;
    t.calls += after.0 - before.0;
    t.usec += after.1 - before.1;
}

/// Sends requests `from..to` of `v` (round `r`), `BATCH` at a time, each
/// batch's replies read before the next is written; counts error replies.
fn send(c: &mut Connection, v: &Variant, r: usize, from: usize, to: usize, t: &mut Totals) {
    let mut i = from;
    while i < to {
        let end = (i + BATCH).min(to);
        let mut p = redis::pipe();
        for j in i..end {
            (v.add)(&mut p, r, j);
        }
        // The replies as they came, error replies included (`query` fails
        // the whole batch on the first one, which a refused variant sends
        // every time).
        let replies = c
            .req_packed_commands(&p.get_packed_pipeline(), 0, end - i)
            .unwrap_or_else(|e| panic!("{}: pipeline: {e}", v.name));
        t.errors += replies
            .iter()
            .filter(|x| matches!(x, redis::Value::ServerError(_)))
            .count();
        i += BATCH;
    }
}

/// One round of every variant on one setup: its servers started, their
/// keys readied (unmeasured), `n` requests each sent in `CHUNKS` chunks
/// taking turns, then the servers stopped, so the next round starts from
/// new processes with an empty dataset.
fn run_round(setup: &Setup, variants: &[Variant], r: usize, n: usize) -> Vec<Reading> {
    let s = &setup.start();
    let c = &mut s.master.conn();
    for v in variants {
        (v.prepare)(c, r, n);
    }
    sync_replica(c, s);
    settle_aof(c, s);
    let mut totals = vec![Totals::default(); variants.len()];
    for k in 0..CHUNKS {
        let (from, to) = (k * n / CHUNKS, (k + 1) * n / CHUNKS);
        // Each chunk starts one variant further on, so none always follows
        // the same one.
        for j in 0..variants.len() {
            let vi = (r + k + j) % variants.len();
            run_chunk(s, c, &variants[vi], r, (from, to), &mut totals[vi]);
        }
    }
    variants
        .iter()
        .zip(totals)
        .map(|(v, t)| {
            assert!(
                v.refused || t.errors < n,
                "{} on {}: all {n} requests answered an error",
                v.name,
                s.label
            );
            let measured = t.requests.max(1) as f64;
            Reading {
                master_ns: t.master_ns as f64 / measured,
                replica_ns: s.replica.as_ref().map(|_| t.replica_ns as f64 / measured),
                stat_us: t.usec as f64 / t.calls.max(1) as f64,
            }
        })
        .collect()
}

/// With an AOF, waits for the everysec fsync of what was written so far
/// (the round's setup writes), so the background thread's fsync of them
/// lands outside the readings.
fn settle_aof(c: &mut Connection, s: &Servers) {
    if testkit::info_value(c, "persistence", "aof_enabled") != "1" {
        return;
    }
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let started = std::time::Instant::now();
    while testkit::info_value(c, "persistence", "aof_pending_bio_fsync") != "0" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{}: the AOF fsync never finished",
            s.label
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits for the replica to have everything the master sent.
fn sync_replica(c: &mut Connection, s: &Servers) {
    if s.replica.is_some() {
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(30_000).query(c).unwrap();
        assert_eq!(acked, 1, "{}: the replica did not acknowledge", s.label);
    }
}

/// Every setup's readings of every variant, `rounds` rounds, the setups
/// taking turns (each round starting one further on): `out[setup][variant]`
/// lists the rounds' readings.
pub(crate) fn measure(
    setups: &[Setup],
    variants: &[Variant],
    n: usize,
    rounds: usize,
) -> Vec<Vec<Vec<Reading>>> {
    let mut out = vec![vec![Vec::new(); variants.len()]; setups.len()];
    for r in 0..rounds {
        for k in 0..setups.len() {
            let si = (r + k) % setups.len();
            let s = &setups[si];
            let readings = run_round(s, variants, r, n);
            for (vi, (v, reading)) in variants.iter().zip(readings).enumerate() {
                eprintln!(
                    "  round {r} {} {}: master {:.0} ns{}",
                    s.label,
                    v.name,
                    reading.master_ns,
                    reading
                        .replica_ns
                        .map_or(String::new(), |x| format!(", replica {x:.0} ns"))
                );
                out[si][vi].push(reading);
            }
        }
    }
    out
}

/// A master with the module at `module` (the release build when None),
/// bare or as deployed (AOF everysec and one replica). `propagating` turns
/// the module's propagation on for good on a bare master (an AOF switched
/// on and off again), to price what the propagation gate saves.
pub(crate) fn setup(
    bin: &str,
    label: &str,
    module: Option<&str>,
    deployed: bool,
    propagating: bool,
) -> Setup {
    Setup {
        label: label.to_string(),
        bin: bin.to_string(),
        module: module.map(String::from),
        deployed,
        propagating,
    }
}

impl Setup {
    fn start(&self) -> Servers {
        match &self.module {
            Some(m) => std::env::set_var("INVENTORY_MODULE", m),
            None => std::env::remove_var("INVENTORY_MODULE"),
        }
        let (master, replica) = crate::phases::deployed::servers_for(&self.bin, self.deployed);
        if self.propagating {
            let c = &mut master.conn();
            for v in ["yes", "no"] {
                let _: () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("appendonly")
                    .arg(v)
                    .query(c)
                    .unwrap();
            }
        }
        let info = testkit::info_value(&mut master.conn(), "inventory", "inventory_propagating");
        eprintln!("  {}: inventory_propagating:{info}", self.label);
        std::env::remove_var("INVENTORY_MODULE");
        Servers {
            label: self.label.clone(),
            master,
            replica,
        }
    }
}

/// The names `--variants` chooses from.
pub(crate) fn variant_names() -> Vec<&'static str> {
    variants().iter().map(|v| v.name).collect()
}

/// What a run leaves out, to measure a few variants quickly (`make bench`
/// measures everything).
#[derive(Default)]
pub(crate) struct Only {
    /// Variants to measure by name, with HINCRBY (empty: all).
    pub variants: Vec<String>,
    /// Only the deployed setup.
    pub deployed: bool,
}

/// The phase as `make bench` runs it: bare and as deployed, the current
/// build (and `baseline`'s, taking turns, when given); rows and the
/// per-variant table.
pub(crate) fn phase(
    bin: &str,
    baseline: Option<&str>,
    propagating: bool,
    only: &Only,
    requests: usize,
    rounds: usize,
) -> (Vec<CpuRow>, String) {
    let mut vs = variants();
    if !only.variants.is_empty() {
        vs.retain(|v| v.name == "HINCRBY" || only.variants.iter().any(|n| n == v.name));
    }
    let mut setups = Vec::new();
    for deployed in [false, true] {
        if only.deployed && !deployed {
            continue;
        }
        let shape = if deployed { "deployed" } else { "bare" };
        if let Some(base) = baseline {
            setups.push(setup(
                bin,
                &format!("{shape}, baseline"),
                Some(base),
                deployed,
                false,
            ));
        }
        setups.push(setup(bin, shape, None, deployed, false));
        if !deployed && propagating {
            setups.push(setup(bin, "bare, propagating", None, false, true));
        }
    }
    let out = measure(&setups, &vs, requests, rounds);
    let table = report::table(&setups, &vs, &out);
    (report::rows(&setups, &vs, &out, requests), table)
}

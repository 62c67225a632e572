//! Whole-server CPU per request: what a user pays for a command, all of it
//! (reading, parsing, running, replying, feeding the AOF and the replicas).
//!
//! The CPU of every thread of the server process (`/proc/<pid>/task/*/
//! schedstat`, nanoseconds on a CPU) is read around the requests of one
//! variant (100,000 in `make bench`), sent in a closed loop on one
//! connection: 64 commands written at once and all their replies read
//! before the next 64, so the server reads every variant in the same
//! batches. With a replica, its CPU is read
//! once it has acknowledged everything (`WAIT 1`). The variants and the
//! servers take turns within every round; each figure is the median over
//! the rounds, and each ratio the median of per-round ratios.

mod report;
mod variants;

pub(crate) use report::{comparisons, goals, CpuRow};
use variants::{variants, Variant};

use redis::Connection;
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

/// A master, and its replica as deployed.
pub(crate) struct Setup {
    pub label: String,
    pub master: Server,
    pub replica: Option<Server>,
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

/// Sends `n` requests of `v` (round `r`) in closed-loop batches and reads the
/// CPU they cost. A request answered with an error is counted: a run whose
/// every request failed would measure an error reply, not the command.
pub(crate) fn run_one(s: &Setup, v: &Variant, r: usize, n: usize) -> Reading {
    let c = &mut s.master.conn();
    (v.prepare)(c, r, n);
    sync_replica(c, s);
    testkit::reset_stats(c);
    let (m0, r0) = (
        cpu_ns(s.master.pid()),
        s.replica.as_ref().map(|x| cpu_ns(x.pid())),
    );
    let mut errors = 0;
    let mut i = 0;
    while i < n {
        let mut p = redis::pipe();
        for j in i..(i + BATCH).min(n) {
            (v.add)(&mut p, r, j);
        }
        let replies: Vec<redis::Value> = p
            .query(c)
            .unwrap_or_else(|e| panic!("{}: pipeline: {e}", v.name));
        errors += replies
            .iter()
            .filter(|x| matches!(x, redis::Value::ServerError(_)))
            .count();
        i += BATCH;
    }
    let master_ns = (cpu_ns(s.master.pid()) - m0) as f64 / n as f64;
    sync_replica(c, s);
    let replica_ns = s
        .replica
        .as_ref()
        .zip(r0)
        .map(|(x, r0)| (cpu_ns(x.pid()) - r0) as f64 / n as f64);
    assert!(
        v.refused || errors < n,
        "{} on {}: all {n} requests answered an error",
        v.name,
        s.label
    );
    Reading {
        master_ns,
        replica_ns,
        stat_us: testkit::usec_per_call(c, &stat_name(v.name)),
    }
}

/// Waits for the replica to have everything the master sent.
fn sync_replica(c: &mut Connection, s: &Setup) {
    if s.replica.is_some() {
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(30_000).query(c).unwrap();
        assert_eq!(acked, 1, "{}: the replica did not acknowledge", s.label);
    }
}

/// Every setup's readings of every variant, `rounds` rounds, taking turns:
/// `out[setup][variant]` lists the rounds' readings.
pub(crate) fn measure(
    setups: &[Setup],
    variants: &[Variant],
    n: usize,
    rounds: usize,
) -> Vec<Vec<Vec<Reading>>> {
    let mut out = vec![vec![Vec::new(); variants.len()]; setups.len()];
    for r in 0..rounds {
        for (si, s) in setups.iter().enumerate() {
            for (vi, v) in variants.iter().enumerate() {
                let reading = run_one(s, v, r, n);
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
    std::env::set_var("INVENTORY_SERVER", bin);
    match module {
        Some(m) => std::env::set_var("INVENTORY_MODULE", m),
        None => std::env::remove_var("INVENTORY_MODULE"),
    }
    let (master, replica) = crate::phases::deployed::servers_for(bin, deployed);
    if propagating {
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
    eprintln!("  {label}: inventory_propagating:{info}");
    std::env::remove_var("INVENTORY_MODULE");
    Setup {
        label: label.to_string(),
        master,
        replica,
    }
}

/// The phase as `make bench` runs it: bare and as deployed, the current
/// build (and `baseline`'s, taking turns, when given); rows and the
/// per-variant table.
pub(crate) fn phase(
    bin: &str,
    baseline: Option<&str>,
    propagating: bool,
    requests: usize,
    rounds: usize,
) -> (Vec<CpuRow>, String) {
    let mut setups = Vec::new();
    for deployed in [false, true] {
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
    let vs = variants();
    let out = measure(&setups, &vs, requests, rounds);
    let table = report::table(&setups, &vs, &out);
    (report::rows(&setups, &vs, &out, requests), table)
}

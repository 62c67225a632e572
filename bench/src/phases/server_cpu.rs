//! Whole-server CPU per request: what a user pays for a command, all of it
//! (reading, parsing, running, replying, feeding the AOF and the replicas).
//!
//! The CPU of every thread of the server process (`/proc/<pid>/task/*/
//! schedstat`, nanoseconds on a CPU) is read around `REQUESTS` requests of
//! one variant, sent in a closed loop on one connection: 64 commands written
//! at once and all their replies read before the next 64, so the server
//! reads every variant in the same batches. With a replica, its CPU is read
//! once it has acknowledged everything (`WAIT 1`). The variants and the
//! servers take turns within every round; each figure is the median over
//! the rounds, and each ratio the median of per-round ratios.

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

/// One kind of request: `prepare` readies round `r`'s keys, `add` puts
/// request `i` of round `r` in a pipeline.
pub(crate) struct Variant {
    pub name: &'static str,
    pub prepare: fn(&mut Connection, usize),
    pub add: fn(&mut redis::Pipeline, usize, usize),
}

/// One round's reading: CPU per request on the master and on the replica.
#[derive(Clone, Copy)]
pub(crate) struct Reading {
    pub master_ns: f64,
    pub replica_ns: Option<f64>,
}

/// Sends `n` requests of `v` (round `r`) in closed-loop batches and reads the
/// CPU they cost. A request answered with an error is counted: a run whose
/// every request failed would measure an error reply, not the command.
pub(crate) fn run_one(s: &Setup, v: &Variant, r: usize, n: usize) -> Reading {
    let c = &mut s.master.conn();
    (v.prepare)(c, r);
    sync_replica(c, s);
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
        errors < n,
        "{} on {}: all {n} requests answered an error",
        v.name,
        s.label
    );
    Reading {
        master_ns,
        replica_ns,
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

/// Units a sold-out key sold before a round, one per open reservation.
const SOLD: usize = 10_000;

fn stocked(c: &mut Connection, r: usize) {
    let _: () = redis::cmd("INV.SET")
        .arg(format!("cpu:stocked:{r}"))
        .arg(crate::common::BIG)
        .query(c)
        .unwrap();
}

fn sold_out(c: &mut Connection, r: usize) {
    let key = format!("cpu:soldout:{r}");
    let _: () = redis::cmd("INV.SET").arg(&key).arg(SOLD).query(c).unwrap();
    crate::common::fill(c, &key, 0, SOLD, "sold-");
}

fn reserve(p: &mut redis::Pipeline, key: String, r: usize, i: usize) {
    p.cmd("INV.RESERVE")
        .arg(key)
        .arg(crate::common::tagged_txid(&format!("{r}-"), i))
        .arg(1)
        .arg("TTL")
        .arg(crate::common::TTL);
}

/// What `--server-cpu` compares: a reserve (fresh txid, TTL) on a stocked
/// and on a sold-out key, and HINCRBY, the floor.
pub(crate) fn variants() -> Vec<Variant> {
    vec![
        Variant {
            name: "INV.RESERVE stocked",
            prepare: stocked,
            add: |p, r, i| reserve(p, format!("cpu:stocked:{r}"), r, i),
        },
        Variant {
            name: "INV.RESERVE sold out",
            prepare: sold_out,
            add: |p, r, i| reserve(p, format!("cpu:soldout:{r}"), r, i),
        },
        Variant {
            name: "HINCRBY",
            prepare: |_, _| {},
            add: |p, r, _| {
                p.cmd("HINCRBY")
                    .arg(format!("cpu:floor:{r}"))
                    .arg("n")
                    .arg(1);
            },
        },
    ]
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

/// The table: per setup and variant, the medians of master and replica
/// CPU per request and of the per-round ratio to the setup's HINCRBY.
pub(crate) fn table(setups: &[Setup], variants: &[Variant], out: &[Vec<Vec<Reading>>]) -> String {
    let floor = variants.iter().position(|v| v.name == "HINCRBY");
    let mut t = String::from(
        "| setup | request | master ns/request | replica ns/request | master / HINCRBY (range over rounds) |\n|---|---|---|---|---|\n",
    );
    for (si, s) in setups.iter().enumerate() {
        for (vi, v) in variants.iter().enumerate() {
            let rounds = &out[si][vi];
            let m = crate::common::median(rounds.iter().map(|x| x.master_ns).collect());
            let rep: Vec<f64> = rounds.iter().filter_map(|x| x.replica_ns).collect();
            // The median of per-round ratios, and their range.
            let ratio = floor.map(|f| {
                let per: Vec<f64> = rounds
                    .iter()
                    .zip(&out[si][f])
                    .map(|(a, b)| a.master_ns / b.master_ns)
                    .collect();
                let (lo, hi) = per
                    .iter()
                    .fold((f64::INFINITY, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
                (crate::common::median(per), lo, hi)
            });
            t += &format!(
                "| {} | {} | {m:.0} | {} | {} |\n",
                s.label,
                v.name,
                if rep.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.0}", crate::common::median(rep))
                },
                ratio.map_or("-".to_string(), |(r, lo, hi)| format!(
                    "{r:.2}x ({lo:.2}-{hi:.2})"
                ))
            );
        }
    }
    t
}

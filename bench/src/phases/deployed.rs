//! Phase 1d: server CPU per call as deployed. The same interleaved method
//! as phase 1c (every compared command takes turns in one pipeline, exact
//! usec from INFO commandstats, medians of per-run ratios), in two setups:
//! bare (no AOF, no replica: the module's propagation gate skips
//! replication) and production (`appendonly yes`, `appendfsync everysec`,
//! one replica attached), each with the stock on hand (stocked) and gone
//! (sold out: in a flash sale almost every request meets a sold-out key;
//! here one that sold its units to 10,000 open reservations).
//!
//! Compared with INV.RESERVE (fresh txid, TTL): HINCRBY (a floor), the seed
//! Lua reserve, a DTM-style barrier Lua try (bench/lua/barrier_try.lua, run
//! as a function so its commandstats line is its own), and TairString's
//! `EXINCRBY key -1 MIN 0` when `TAIRSTRING_MODULE` names a built
//! tairstring.so (loaded on master and replica).

use crate::common::*;
use crate::report::DeployedRow;
use crate::{Args, Sizes};
use redis::Connection;
use std::time::{Duration, Instant};
use testkit::{reset_stats, usec_per_call, Build, Server};

const BARRIER_TRY: &str = include_str!("../../lua/barrier_try.lua");

/// The barrier script as a Redis function library (FCALL barrier_try).
pub(crate) fn barrier_library() -> String {
    format!(
        "#!lua name=inventory_bench_barrier\n\
         redis.register_function('barrier_try', function(KEYS, ARGV)\n{BARRIER_TRY}\nend)\n"
    )
}

pub(crate) fn tairstring() -> Option<String> {
    std::env::var("TAIRSTRING_MODULE")
        .ok()
        .filter(|p| !p.is_empty())
}

/// A master (and, in production, its replica) with the release module.
pub(crate) fn servers(args: &Args, production: bool) -> (Server, Option<Server>) {
    servers_for(&args.server, production)
}

/// `servers` for a given server binary.
pub(crate) fn servers_for(bin: &str, production: bool) -> (Server, Option<Server>) {
    std::env::set_var("INVENTORY_SERVER", bin);
    let tair = tairstring();
    let mut extra: Vec<String> = MEASURING.map(String::from).to_vec();
    if let Some(path) = &tair {
        extra.extend(["--loadmodule".to_string(), path.clone()]);
    }
    // No automatic AOF rewrite while measuring: a rewrite forks and copies
    // in proportion to the dataset, not to the requests, and would land on
    // whichever variant happens to run then.
    let aof = [
        "--appendonly",
        if production { "yes" } else { "no" },
        "--appendfsync",
        "everysec",
        "--auto-aof-rewrite-percentage",
        "0",
    ];
    let mut master_args = extra.clone();
    master_args.extend(aof.map(String::from));
    let refs: Vec<&str> = master_args.iter().map(String::as_str).collect();
    let master = Server::start_build(Build::Release, &refs);
    if !production {
        return (master, None);
    }
    let mut replica_args = extra;
    replica_args.extend([
        "--replicaof".to_string(),
        "127.0.0.1".to_string(),
        master.port.to_string(),
    ]);
    let refs: Vec<&str> = replica_args.iter().map(String::as_str).collect();
    let replica = Server::start_build(Build::Release, &refs);
    let started = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut master.conn())
            .unwrap();
        if info.contains("connected_slaves:1") && info.contains("state=online") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "replica never came online: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (master, Some(replica))
}

/// Units a sold-out SKU sold before the run, one per reservation.
const SOLD: i64 = 10_000;

/// Every key of one run: stocked with `BIG` or sold out (0). A sold-out SKU
/// is one that sold `SOLD` units to as many open reservations, as in a flash
/// sale: each reserve then looks its txid up among records, as it would
/// there, rather than on an empty key.
fn prepare(c: &mut Connection, r: usize, stock: i64, tair: bool) {
    let sku = format!("dep:{r}");
    if stock == 0 {
        let _: () = redis::cmd("INV.SET").arg(&sku).arg(SOLD).query(c).unwrap();
        fill(c, &sku, 0, SOLD as usize, "sold-");
        let view: Vec<(String, i64)> = redis::cmd("INV.GET").arg(&sku).query(c).unwrap();
        assert!(
            view.contains(&("available".into(), 0)) && view.contains(&("open".into(), SOLD)),
            "{sku} is not sold out to {SOLD} reservations: {view:?}"
        );
    }
    let mut p = redis::pipe();
    if stock != 0 {
        p.cmd("INV.SET").arg(&sku).arg(stock).ignore();
    }
    p.cmd("HSET")
        .arg(format!("seed:dep:{r}"))
        .arg("stock")
        .arg(stock)
        .arg("reserved")
        .arg(0)
        .ignore();
    p.cmd("SET").arg(format!("{{bar:{r}}}")).arg(stock).ignore();
    if tair {
        p.cmd("EXSET").arg(format!("tair:{r}")).arg(stock).ignore();
    }
    let _: () = p.query(c).unwrap();
}

/// One setup and case: the medians of each command's usec and of the
/// per-run ratios of INV.RESERVE to each.
pub(crate) fn measure(args: &Args, sz: &Sizes, production: bool, sold_out: bool) -> DeployedRow {
    let (master, _replica) = servers(args, production);
    let c = &mut master.conn();
    let seed = load(c, SEED);
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(barrier_library())
        .query(c)
        .unwrap();
    let tair = tairstring().is_some();
    let kinds = if tair { 5 } else { 4 };
    let runs = sz.runs.max(5);
    let calls = (sz.ops * 2 / 5).max(1_000);
    let stock = if sold_out { 0 } else { BIG };
    let mut per: [Vec<f64>; 5] = Default::default();
    let mut ratio: [Vec<f64>; 5] = Default::default();
    for r in 0..runs {
        prepare(c, r, stock, tair);
        reset_stats(c);
        let (sku, seed_key, bar, tair_key, floor) = (
            format!("dep:{r}"),
            format!("seed:dep:{r}"),
            format!("{{bar:{r}}}"),
            format!("tair:{r}"),
            format!("floor:{r}"),
        );
        let mut i = 0;
        while i < kinds * calls {
            let mut p = redis::pipe();
            for j in i..(i + 100).min(kinds * calls) {
                let txid = format!("{r:07}-{:08}", j / kinds);
                match j % kinds {
                    0 => p
                        .cmd("INV.RESERVE")
                        .arg(&sku)
                        .arg(&txid)
                        .arg(1)
                        .arg("TTL")
                        .arg(TTL),
                    1 => p.cmd("HINCRBY").arg(&floor).arg("reserved").arg(1),
                    2 => p
                        .cmd("EVALSHA")
                        .arg(&seed)
                        .arg(1)
                        .arg(&seed_key)
                        .arg(&txid)
                        .arg(1),
                    3 => p
                        .cmd("FCALL")
                        .arg("barrier_try")
                        .arg(3)
                        .arg(&bar)
                        .arg(format!("{{bar:{r}}}:try:{txid}"))
                        .arg(format!("{{bar:{r}}}:rollback:{txid}"))
                        .arg(1)
                        .arg(TTL / 1000),
                    _ => p.cmd("EXINCRBY").arg(&tair_key).arg(-1).arg("MIN").arg(0),
                };
            }
            // Sold out, EXINCRBY answers an error: read the replies as
            // values so an error reply does not end the run.
            match p.query::<Vec<redis::Value>>(c) {
                Ok(_) => {}
                Err(e) if e.code().is_some() => {}
                Err(e) => panic!("pipeline: {e}"),
            }
            i += 100;
        }
        let names = ["inv.reserve", "hincrby", "evalsha", "fcall", "exincrby"];
        let us: Vec<f64> = names[..kinds].iter().map(|n| usec_per_call(c, n)).collect();
        eprintln!(
            "  {} {} run {r}: {}",
            if production { "production" } else { "bare" },
            if sold_out { "sold out" } else { "stocked" },
            names[..kinds]
                .iter()
                .zip(&us)
                .map(|(n, u)| format!("{n} {u:.3} us"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for k in 0..kinds {
            per[k].push(us[k]);
            ratio[k].push(us[0] / us[k]);
        }
    }
    let [inv, hincrby, seed_us, barrier, tair_us] = per.map(median);
    let [_, vs_hincrby, vs_seed, vs_barrier, vs_tair] = ratio.map(median);
    DeployedRow {
        setup: if production {
            "production (AOF everysec + 1 replica)".into()
        } else {
            "bare".into()
        },
        case: if sold_out { "sold out" } else { "stocked" }.into(),
        runs,
        calls_per_run: calls,
        reserve_usec: inv,
        hincrby_usec: hincrby,
        seed_usec: seed_us,
        barrier_usec: barrier,
        tair_usec: tair.then_some(tair_us),
        vs_hincrby,
        vs_seed,
        vs_barrier,
        vs_tair: tair.then_some(vs_tair),
    }
}

/// Phase 1d: bare and production, stocked and sold out.
pub(crate) fn phase_deployed(args: &Args, sz: &Sizes) -> Vec<DeployedRow> {
    let mut rows = Vec::new();
    for production in [false, true] {
        for sold_out in [false, true] {
            rows.push(measure(args, sz, production, sold_out));
        }
    }
    rows
}

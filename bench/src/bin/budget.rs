//! Issue #2's performance budget, measured in one run on one server:
//! - memory per open reservation (16-byte txids) on a hot key holding 1M;
//! - server CPU per INV.RESERVE with a fresh txid on that key, against the
//!   usual Lua reserve script (HGET stock, HGET reserved, HINCRBY,
//!   HSET tx_<id>) on a hash holding 1M tx fields, from INFO commandstats.
//!
//! Run with `make budget` (release module, redis-server from PATH; set
//! INVENTORY_SERVER for another binary). Prints a table; exits non-zero when
//! a budget is missed.

#[path = "../goals.rs"]
#[allow(dead_code)] // the bench's other goals
mod goals;

use goals::{at_most, BYTES_PER_RESERVATION, CPU_VS_SEED};
use testkit::{command_usec, reset_stats, used_memory, Build, Server};

const OPEN: usize = 1_000_000;
const SAMPLE: usize = 50_000;
/// Runs; the key grows by SAMPLE each run (1.05M to 1.45M records), so two of
/// them contain a one-off growth of the key's structures (the slab at 2^20
/// records, the index at 1,376,256); the median keeps them from deciding,
/// and the whole-window ratio, printed too, includes them.
const RUNS: usize = 9;

/// The seed-style reserve script, shared with `make bench`.
const LUA_RESERVE: &str = include_str!("../../lua/seed_reserve.lua");

fn txid(i: usize) -> String {
    format!("{i:016}")
}

fn pipelined(c: &mut redis::Connection, n: usize, make: impl Fn(&mut redis::Pipeline, usize)) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let mut p = redis::pipe();
        for &i in chunk {
            make(&mut p, i);
        }
        let _: () = p.query(c).unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let bin = testkit::server_bin();
    let server = Server::start_build(Build::Release, &["--appendonly", "no"]);
    let c = &mut server.conn();
    let server_version = testkit::version(c);

    let max = (1i64 << 53) - 1;
    let ttl = 86_400_000;
    let _: () = redis::cmd("INV.SET").arg("hot").arg(max).query(c).unwrap();
    let before = used_memory(c);
    pipelined(c, OPEN, |p, i| {
        p.cmd("INV.RESERVE")
            .arg("hot")
            .arg(txid(i))
            .arg(1)
            .arg("TTL")
            .arg(ttl)
            .ignore();
    });
    let per_res = (used_memory(c) - before) as f64 / OPEN as f64;

    let _: () = redis::cmd("HSET")
        .arg("lua")
        .arg("stock")
        .arg(max)
        .arg("reserved")
        .arg(0)
        .query(c)
        .unwrap();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(LUA_RESERVE)
        .query(c)
        .unwrap();
    let before = used_memory(c);
    pipelined(c, OPEN, |p, i| {
        p.cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg("lua")
            .arg(txid(i))
            .arg(1)
            .ignore();
    });
    let per_lua = (used_memory(c) - before) as f64 / OPEN as f64;

    let (mut inv, mut lua, mut ratio) = (vec![], vec![], vec![]);
    let (mut inv_total, mut lua_total) = ((0, 0), (0, 0));
    for run in 0..RUNS {
        let base = OPEN + (run + 1) * SAMPLE;
        reset_stats(c);
        pipelined(c, SAMPLE, |p, i| {
            p.cmd("INV.RESERVE")
                .arg("hot")
                .arg(txid(base + i))
                .arg(1)
                .arg("TTL")
                .arg(ttl)
                .ignore();
            p.cmd("EVALSHA")
                .arg(&sha)
                .arg(1)
                .arg("lua")
                .arg(txid(base + i))
                .arg(1)
                .ignore();
        });
        let stats = |c: &mut redis::Connection, cmd| {
            command_usec(c, cmd).unwrap_or_else(|| panic!("no commandstats for {cmd}"))
        };
        let (i, l) = (stats(c, "inv.reserve"), stats(c, "evalsha"));
        inv_total = (inv_total.0 + i.0, inv_total.1 + i.1);
        lua_total = (lua_total.0 + l.0, lua_total.1 + l.1);
        let (a, b) = (i.1 as f64 / i.0 as f64, l.1 as f64 / l.0 as f64);
        inv.push(a);
        lua.push(b);
        ratio.push(a / b);
        println!(
            "run {run}: INV.RESERVE {a:.3} us, Lua {b:.3} us, ratio {:.3}",
            a / b
        );
    }
    drop(server);

    let (inv, lua, ratio) = (median(inv), median(lua), median(ratio));
    let per_call = |(calls, usec): (u64, u64)| usec as f64 / calls as f64;
    let window = per_call(inv_total) / per_call(lua_total);
    println!("server: {server_version} ({bin})");
    println!("| measure (hot key, {OPEN} open reservations, 16-byte txids) | value |");
    println!("|---|---|");
    println!("| memory per open reservation, inventory | {per_res:.1} bytes |");
    println!("| memory per reservation, Lua hash layout | {per_lua:.1} bytes |");
    println!("| INV.RESERVE usec_per_call (median of {RUNS}) | {inv:.3} |");
    println!("| Lua reserve EVALSHA usec_per_call (median of {RUNS}) | {lua:.3} |");
    println!("| ratio INV.RESERVE / Lua (median of per-run ratios) | {ratio:.3} |");
    println!(
        "| ratio over the whole window, growth included ({:.3} / {:.3} usec) | {window:.3} |",
        per_call(inv_total),
        per_call(lua_total)
    );
    let budget = [
        at_most(
            format!("memory {per_res:.1} <= {BYTES_PER_RESERVATION} bytes per open reservation"),
            per_res,
            BYTES_PER_RESERVATION,
        ),
        at_most(
            format!("CPU ratio {ratio:.3} <= {CPU_VS_SEED}"),
            ratio,
            CPU_VS_SEED,
        ),
    ];
    if !goals::report_missed(&budget) {
        std::process::exit(1);
    }
    println!("budget met");
}

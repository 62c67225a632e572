//! Phases 2 and 3: cost per call and memory by the number of records a key holds.

use crate::common::*;
use crate::report::*;
use crate::{Args, Sizes};
use redis::Connection;
use std::time::Duration;
use testkit::{command_usec, reset_stats, used_memory};

// Sizes above GOAL_MAX_OPEN are measured in one round only, and count
// neither in the flatness goal nor in the memory comparison.
use crate::goals::GOAL_MAX_OPEN;

/// Slices each size's timed work is cut into per round (see `phase_growth`).
pub(crate) const SLICES: usize = 10;

/// Where one size stands in its round: the key in use and how many of its
/// timed reserves are done.
#[derive(Clone, Copy, Default)]
pub(crate) struct GrowthCursor {
    pub key: usize,
    pub done: usize,
    pub calls: u64,
    pub usec: u64,
}

/// Phases 2 and 3: cost per call and memory by the number of records a key
/// holds, and the Lua layouts' memory at the largest size.
///
/// Memory first, one size at a time on a fresh key (so no other key's
/// background work moves `used_memory` meanwhile).
///
/// The cost at size N is measured over a whole doubling: a key filled to N
/// records (untimed) takes N more fresh-txid reserves, and those are timed.
/// Every doubling window holds exactly one growth of the key's index and of
/// its record slab, so each row carries the same amortized share of growth,
/// wherever the thresholds fall. Small sizes use several keys one after
/// another (at least 100k timed calls per row and round). Each size's timed
/// work in a round is cut into ten slices, and the sizes take turns slice by
/// slice (a few hundred milliseconds each), so a burst of noise on this
/// shared machine hits every size rather than one row; exact usec totals,
/// median of the rounds. Keys are deleted after use.
pub(crate) fn phase_growth(args: &Args, sz: &Sizes) -> (Vec<GrowthRow>, Vec<MemoryRow>) {
    let server = bench_server(&args.server);
    let c = &mut server.conn();
    let rounds = sz.runs.max(3);
    let timed: usize = if args.quick { 10_000 } else { 100_000 };
    let mut rows: Vec<GrowthRow> = sz
        .growth
        .iter()
        .map(|&open| GrowthRow {
            open,
            usec_per_call: f64::NAN,
            bytes_per_reservation: f64::NAN,
            bytes_per_reservation_10s_later: None,
        })
        .collect();
    for row in rows.iter_mut() {
        let n = row.open as usize;
        let key = format!("mem{n}");
        let _: () = redis::cmd("INV.SET").arg(&key).arg(BIG).query(c).unwrap();
        let before = used_memory(c);
        fill(c, &key, 0, n, "f-");
        let per = |c: &mut Connection| (used_memory(c) - before) as f64 / n as f64;
        row.bytes_per_reservation = per(c);
        if row.open > GOAL_MAX_OPEN {
            std::thread::sleep(Duration::from_secs(10));
            row.bytes_per_reservation_10s_later = Some(per(c));
        }
        let _: () = redis::cmd("DEL").arg(&key).query(c).unwrap();
    }
    let mut cpu = vec![vec![]; rows.len()];
    for r in 0..rounds {
        let sizes: Vec<usize> = (0..rows.len())
            .filter(|&g| r == 0 || rows[g].open <= GOAL_MAX_OPEN)
            .collect();
        let mut at = vec![GrowthCursor::default(); rows.len()];
        for slice in 0..SLICES {
            for turn in 0..sizes.len() {
                let g = sizes[(turn + r + slice) % sizes.len()];
                let n = rows[g].open as usize;
                let total = timed.div_ceil(n) * n;
                let cur = &mut at[g];
                let mut left =
                    (total.div_ceil(SLICES) * (slice + 1)).min(total) - (cur.key * n + cur.done);
                while left > 0 {
                    let key = format!("g{n}:{r}:{}", cur.key);
                    if cur.done == 0 {
                        let _: () = redis::cmd("INV.SET").arg(&key).arg(BIG).query(c).unwrap();
                        fill(c, &key, 0, n, "f-");
                    }
                    let take = left.min(n - cur.done);
                    reset_stats(c);
                    fill(c, &key, n + cur.done, take, "m-");
                    if let Some((calls, usec)) = command_usec(c, "inv.reserve") {
                        cur.calls += calls;
                        cur.usec += usec;
                    }
                    cur.done += take;
                    left -= take;
                    if cur.done == n {
                        let _: () = redis::cmd("DEL").arg(&key).query(c).unwrap();
                        cur.key += 1;
                        cur.done = 0;
                    }
                }
            }
        }
        for &g in &sizes {
            cpu[g].push(at[g].usec as f64 / at[g].calls as f64);
        }
    }
    for (row, samples) in rows.iter_mut().zip(cpu) {
        row.usec_per_call = median(samples);
    }
    drop(server);
    let compared = rows
        .iter()
        .filter(|r| r.open <= GOAL_MAX_OPEN)
        .max_by_key(|r| r.open);
    let n = compared.map_or(0, |r| r.open as usize);
    let mut memory = vec![MemoryRow {
        layout: "inventory",
        bytes_per_reservation: compared.map_or(f64::NAN, |r| r.bytes_per_reservation),
    }];
    for (layout, imp) in [
        ("seed Lua hash (tx_<id> fields)", Impl::Seed),
        ("Lua TCC set (records hash + deadline ZSET)", Impl::Tcc),
    ] {
        let server = bench_server(&args.server);
        let c = &mut server.conn();
        setup_keys(c, 1);
        let s = scripts(c);
        let before = used_memory(c);
        run(c, n, 1000, |p, i| {
            add(p, &s, imp, Op::Reserve, "sku:0", &tagged_txid("", i))
        });
        memory.push(MemoryRow {
            layout,
            bytes_per_reservation: (used_memory(c) - before) as f64 / n as f64,
        });
    }
    (rows, memory)
}

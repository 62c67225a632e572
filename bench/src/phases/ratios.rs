//! Phase 1c: the interleaved CPU ratios the CPU goals are judged on.

use crate::common::*;
use crate::report::*;
use crate::{Args, Sizes};
use testkit::{reset_stats, usec_per_call};

/// Phase 1c: INV.RESERVE (fresh txids on a fresh hot key), the seed Lua
/// reserve (on that SKU's hash) and HINCRBY (a one-field hash) interleaved
/// call by call in pipelines of 99, so noise from this shared machine hits
/// all three alike. Exact usec totals from INFO commandstats; median of the
/// per-run ratios.
pub(crate) fn phase_ratios(args: &Args, sz: &Sizes) -> Ratios {
    let server = bench_server(&args.server);
    let c = &mut server.conn();
    let s = scripts(c);
    let runs = sz.runs.max(5);
    let (mut inv, mut seed, mut hincrby, mut vs_seed, mut vs_hincrby) =
        (vec![], vec![], vec![], vec![], vec![]);
    for r in 0..runs {
        let sku = format!("ratio:{r}");
        fresh_hot(c, &sku);
        let floor = format!("floor:{r}");
        reset_stats(c);
        run(c, 3 * sz.ops, 99, |p, i| {
            let txid = format!("{r:07}-{:08}", i / 3);
            match i % 3 {
                0 => add(p, &s, Impl::Module, Op::Reserve, &sku, &txid),
                1 => add(p, &s, Impl::Seed, Op::Reserve, &sku, &txid),
                _ => {
                    p.cmd("HINCRBY").arg(&floor).arg("reserved").arg(1).ignore();
                }
            }
        });
        let (a, b, h) = (
            usec_per_call(c, "inv.reserve"),
            usec_per_call(c, "evalsha"),
            usec_per_call(c, "hincrby"),
        );
        inv.push(a);
        seed.push(b);
        hincrby.push(h);
        eprintln!(
            "  run {r}: RESERVE {a:.3} us, seed Lua {b:.3} us, HINCRBY {h:.3} us: {:.3}, {:.2}",
            a / b,
            a / h
        );
        vs_seed.push(a / b);
        vs_hincrby.push(a / h);
    }
    Ratios {
        runs,
        calls_per_run: sz.ops,
        reserve_usec: median(inv),
        seed_usec: median(seed),
        hincrby_usec: median(hincrby),
        reserve_vs_seed: median(vs_seed),
        reserve_vs_hincrby: median(vs_hincrby),
    }
}

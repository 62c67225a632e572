//! Phase 1: server CPU per call and one-connection throughput, per implementation and operation.

use crate::common::*;
use crate::report::*;
use crate::{Args, Sizes};
use redis::Connection;
use testkit::{reset_stats, usec_per_call};

/// Phase 1 for one keyspace: every implementation and operation.
pub(crate) fn phase_ops(args: &Args, sz: &Sizes, keys: usize) -> Vec<OpRow> {
    let server = bench_server(&args.server);
    let c = &mut server.conn();
    setup_keys(c, keys);
    let s = scripts(c);
    let mut rows = Vec::new();
    let mut tag = 0usize;
    let mut measure =
        |c: &mut Connection, imp: Impl, op: Op, name: &'static str, cmd: &str| -> OpRow {
            let (mut cpu, mut p1, mut p16) = (vec![], vec![], vec![]);
            for _ in 0..sz.runs {
                // One hot key per measurement, created empty: no run absorbs
                // the slab and index growth another run caused.
                let sku = |k: usize, i: usize| {
                    if keys == 1 {
                        format!("hot:{k}")
                    } else {
                        format!("sku:{}", i % keys)
                    }
                };
                let txid = |k: usize, i: usize| format!("{k:07}-{i:08}"); // 16 bytes
                let prepare = |c: &mut Connection, k: usize, n: usize| {
                    if keys == 1 {
                        fresh_hot(c, &sku(k, 0));
                    }
                    if op != Op::Reserve && imp != Impl::Seed {
                        run(c, n, 1000, |p, i| {
                            add(p, &s, imp, Op::Reserve, &sku(k, i), &txid(k, i))
                        });
                    }
                };
                tag += 1;
                let k = tag;
                prepare(c, k, sz.ops);
                reset_stats(c);
                run(c, sz.ops, 100, |p, i| {
                    add(p, &s, imp, op, &sku(k, i), &txid(k, i))
                });
                cpu.push(usec_per_call(c, cmd));
                tag += 1;
                let k = tag;
                let n1 = sz.ops / 10;
                prepare(c, k, n1);
                p1.push(run(c, n1, 1, |p, i| {
                    add(p, &s, imp, op, &sku(k, i), &txid(k, i))
                }));
                tag += 1;
                let k = tag;
                prepare(c, k, sz.ops);
                p16.push(run(c, sz.ops, 16, |p, i| {
                    add(p, &s, imp, op, &sku(k, i), &txid(k, i))
                }));
            }
            OpRow {
                keys,
                implementation: implementation_name(imp),
                op: name,
                usec_per_call: median(cpu),
                p1_ops_per_s: median(p1),
                p16_ops_per_s: median(p16),
            }
        };
    for (imp, cmds) in [
        (Impl::Module, ["inv.reserve", "inv.confirm", "inv.cancel"]),
        (Impl::Tcc, ["evalsha"; 3]),
    ] {
        for (op, name, cmd) in [
            (Op::Reserve, "reserve", cmds[0]),
            (Op::Confirm, "confirm", cmds[1]),
            (Op::Cancel, "cancel", cmds[2]),
        ] {
            rows.push(measure(c, imp, op, name, cmd));
        }
        // The cycle: a reserve then its confirm; CPU adds up, throughput counts cycles.
        let r = rows[rows.len() - 3].clone();
        let f = rows[rows.len() - 2].clone();
        rows.push(OpRow {
            keys,
            implementation: r.implementation,
            op: "reserve+confirm",
            usec_per_call: r.usec_per_call + f.usec_per_call,
            p1_ops_per_s: 1.0 / (1.0 / r.p1_ops_per_s + 1.0 / f.p1_ops_per_s),
            p16_ops_per_s: 1.0 / (1.0 / r.p16_ops_per_s + 1.0 / f.p16_ops_per_s),
        });
    }
    rows.push(measure(c, Impl::Seed, Op::Reserve, "reserve", "evalsha"));
    // Floors.
    for (name, cmd) in [("HINCRBY", "hincrby"), ("PING", "ping")] {
        let (mut cpu, mut p1, mut p16) = (vec![], vec![], vec![]);
        for _ in 0..sz.runs {
            let make = |p: &mut redis::Pipeline, i: usize| {
                if cmd == "ping" {
                    p.cmd("PING").ignore();
                } else {
                    p.cmd("HINCRBY")
                        .arg(format!("seed:sku:{}", i % keys))
                        .arg("reserved")
                        .arg(1)
                        .ignore();
                }
            };
            reset_stats(c);
            run(c, sz.ops, 100, make);
            cpu.push(usec_per_call(c, cmd));
            p1.push(run(c, sz.ops / 10, 1, make));
            p16.push(run(c, sz.ops, 16, make));
        }
        rows.push(OpRow {
            keys,
            implementation: name,
            op: "floor",
            usec_per_call: median(cpu),
            p1_ops_per_s: median(p1),
            p16_ops_per_s: median(p16),
        });
    }
    rows
}

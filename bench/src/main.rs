//! `make bench`: redis-inventory against the Lua scripts it replaces, side by
//! side on one machine, in one run. Prints a table and the goals, writes
//! `results.json`, `results.md` and `growth.svg` to `--out` (`make bench`:
//! target/bench, untracked; `PUBLISH=1`: docs/bench, the published
//! figures), and exits non-zero on a broken run or an oversold unit, and on
//! a missed goal only with `--strict` (`STRICT=1`).
//!
//! Phases (each on a fresh server with the release module):
//! 1. Server CPU per call (`usec_per_call`) and throughput at pipeline depth 1
//!    and 16: RESERVE (fresh txids), CONFIRM, CANCEL and a reserve+confirm
//!    cycle, for the module and the full Lua TCC set; the seed Lua reserve;
//!    HINCRBY (single-field floor) and PING (dispatch floor). One hot key and
//!    many keys. The CPU goals use a separate interleaved measurement (1c):
//!    RESERVE, the seed Lua reserve and HINCRBY alternate in one pipeline, so
//!    all three see the same machine conditions.
//!    1d: the same interleaved method as deployed: bare and production
//!    (AOF everysec + one replica), stocked and sold out, against HINCRBY,
//!    the seed Lua, a barrier Lua try and (TAIRSTRING_MODULE) TairString.
//!    1e: whole-server CPU per request (every thread of master and replica),
//!    bare and as deployed: the measure the headline goals are stated in
//!    (phases/server_cpu), against the same baselines and the seckill Lua.
//! 2. Memory per open reservation (16-byte txids) against both Lua layouts.
//! 3. Growth: cost per call and memory as open reservations per key grow;
//!    3b: the worst stall a PING probe sees while one key grows through its
//!    txid index's growth.
//! 4. Expiry: many reservations sharing one deadline: time until all units are
//!    back, and the worst stall a concurrent PING probe sees.
//! 5. Flash sale through the Rust client against the same through the full
//!    Lua set, as deployed: throughput, latency percentiles, oversold units;
//!    5 sales each, the implementations taking turns (medians, range).

mod alloc;
mod chart;
mod common;
mod goals;
mod phases;
mod report;

use clap::Parser;
use common::*;
use goals::{at_least, at_most, Goal};
use phases::deployed::phase_deployed;
use phases::expiry::phase_expiry;
use phases::growth::phase_growth;
use phases::ops::phase_ops;
use phases::ratios::phase_ratios;
use phases::scenario::phase_sale;
use phases::stall;
use phases::throughput::phase_throughput;
use report::*;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "redis-inventory against the Lua scripts it replaces")]
pub(crate) struct Args {
    /// Smaller sizes: finishes in under a minute (smoke use).
    #[arg(long)]
    pub quick: bool,
    /// Server binary (redis-server or valkey-server).
    #[arg(long, default_value = "redis-server")]
    pub server: String,
    /// Also run the flash sale on a local 3-shard cluster (scripts/cluster.sh).
    #[arg(long)]
    pub cluster: bool,
    /// Where results go (`make bench PUBLISH=1` gives docs/bench).
    #[arg(long, default_value = "target/bench")]
    pub out: String,
    /// Run only phase 1c (the interleaved CPU ratios the CPU goals are
    /// judged on), print each run and exit non-zero if a CPU goal is missed.
    /// Writes nothing.
    #[arg(long)]
    pub ratios_only: bool,
    /// Run only phase 3b (the edges: slowest command and worst PING while a
    /// key grows, under a flood on one key, during a big purge, and one
    /// command naming many keys), print it and exit non-zero if a goal of
    /// it is missed. Writes nothing.
    #[arg(long)]
    pub edges_only: bool,
    /// Run only phase 1d (CPU ratios bare and as deployed, stocked and sold
    /// out, against HINCRBY, the Lua scripts and TairString when
    /// TAIRSTRING_MODULE is set), print it and exit non-zero if a goal of it
    /// is missed. Writes nothing.
    #[arg(long)]
    pub deployed_only: bool,
    /// Run only phase 5 (the flash sale through the client against the Lua
    /// TCC set, as deployed; with --cluster also on a 3-shard cluster), print
    /// it and exit non-zero if any unit was oversold. Writes nothing.
    #[arg(long)]
    pub sale_only: bool,
    /// Run only whole-server CPU per request (every thread of master and
    /// replica, closed-loop batches of 64; phases/server_cpu.rs), bare and
    /// as deployed, print the table and exit. Writes nothing.
    #[arg(long)]
    pub server_cpu: bool,
    /// With --server-cpu: also measure this build of the module (a path to
    /// libinventory.so), its servers taking turns with the current build's.
    #[arg(long)]
    pub baseline_module: Option<String>,
    /// With --server-cpu: also a bare master whose propagation is on (what
    /// the propagation gate saves, or a bare master after a slot export).
    #[arg(long)]
    pub propagating: bool,
    /// With --server-cpu: measure only these variants (comma-separated
    /// names as the table prints them; HINCRBY, the table's floor, always
    /// runs). Comparisons whose sides were not measured are left out.
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<String>,
    /// With --server-cpu: only the deployed setup (AOF everysec + one
    /// replica), not the bare one.
    #[arg(long)]
    pub deployed_shape: bool,
    /// With --server-cpu: rounds (each setup and variant once per round;
    /// medians over them).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Run only the memory per buyer (phase 1f: 10^6 buyers on one key;
    /// --quick: 10^5), print it and exit. Writes nothing.
    #[arg(long)]
    pub buyers_memory: bool,
    /// Run only the waiting room (phase 6: 10,000 waiters on one sold-out
    /// key, --quick: 1,000; against polling clients; then its longest
    /// steps), print it and exit. Writes nothing.
    #[arg(long)]
    pub waiting: bool,
    /// With --waiting: only its longest steps (the module's structures at
    /// 10^5 and 10^6 waiters, a server with 19,000; --quick: 10^5, 2,000).
    #[arg(long)]
    pub steps_only: bool,
    /// With --waiting: waiters on the server for its longest steps (default
    /// 19,000, --quick 2,000: this machine's open-file limit is 20,000 a
    /// process; 100,000 needs it raised past 200,000 for server and bench).
    #[arg(long)]
    pub step_waiters: Option<usize>,
    /// Exit non-zero when a goal is missed (without it, a missed goal is
    /// reported and the exit is 0; a broken run or an oversold unit always
    /// fails).
    #[arg(long)]
    pub strict: bool,
    /// Also measure growth at 10^7 open reservations on one key (one round:
    /// about 1 GB of server memory and a minute or two more). Reported, not
    /// part of the flatness goal, which the issue sets from 10^3 to 10^6.
    #[arg(long)]
    pub huge: bool,
}

pub(crate) struct Sizes {
    pub ops: usize,
    pub many_keys: usize,
    pub growth: Vec<u64>,
    pub expiry: usize,
    /// Fresh reserves in the flood on one key (phase 3b).
    pub flood: usize,
    pub buyers: usize,
    pub runs: usize,
}

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut sz = if args.quick {
        Sizes {
            ops: 3_000,
            many_keys: 2_000,
            growth: vec![1_000, 10_000, 30_000],
            expiry: 30_000,
            flood: 30_000,
            buyers: 1_000,
            runs: 1,
        }
    } else {
        Sizes {
            ops: 50_000,
            many_keys: 100_000,
            growth: vec![1_000, 10_000, 100_000, 1_000_000],
            expiry: 1_000_000,
            flood: 300_000,
            buyers: 10_000,
            runs: 3,
        }
    };
    if args.huge {
        sz.growth.push(10_000_000);
    }
    let started = Instant::now();
    let version = testkit::version(&mut bench_server(&args.server).conn());
    eprintln!(
        "bench: {version} on {}, {} mode",
        machine(),
        if args.quick { "quick" } else { "full" }
    );

    if args.ratios_only {
        let r = phase_ratios(&args, &sz);
        println!(
            "RESERVE {:.3} us, seed Lua {:.3} us, HINCRBY {:.3} us (medians of {} runs of {} calls each)",
            r.reserve_usec, r.seed_usec, r.hincrby_usec, r.runs, r.calls_per_run
        );
        let goals = cpu_goals(&r);
        finish(&goals, args.strict, 0);
    }
    if args.deployed_only {
        let rows = phase_deployed(&args, &sz);
        println!("{}", deployed_table(&rows));
        let goals = deployed_goals(&rows);
        finish(&goals, args.strict, 0);
    }
    if args.edges_only {
        let (edges, many) = phase_edges(&args, &sz);
        for e in &edges {
            println!(
                "{}: slowest command {:.2} ms ({}), worst PING {:.2} ms, p99.9 {:.2} ms",
                e.case, e.slowest_command_ms, e.slowest_command, e.worst_ping_ms, e.p999_ping_ms
            );
        }
        let goals = edge_goals(&edges, &many);
        finish(&goals, args.strict, 0);
    }
    if args.server_cpu {
        let names = phases::server_cpu::variant_names();
        if let Some(bad) = args.variants.iter().find(|n| !names.contains(&n.as_str())) {
            eprintln!(
                "--variants: no variant named '{bad}'; the variants: {}",
                names.join(", ")
            );
            std::process::exit(2);
        }
        let (rows, per_variant) = phases::server_cpu::phase(
            &args.server,
            args.baseline_module.as_deref(),
            args.propagating,
            &phases::server_cpu::Only {
                variants: args.variants.clone(),
                deployed: args.deployed_shape,
            },
            cpu_requests(&args),
            args.rounds,
        );
        println!("{}", phases::server_cpu::comparisons(&rows));
        println!("{per_variant}");
        finish(&phases::server_cpu::goals(&rows), args.strict, 0);
    }
    if args.buyers_memory {
        let n = if args.quick { 100_000 } else { 1_000_000 };
        let m = phases::buyers::phase(&args.server, n);
        println!("{}", phases::buyers::table(&m));
        finish(&phases::buyers::goals(&m), args.strict, 0);
    }
    if args.waiting {
        let (n, runs) = if args.quick { (1_000, 1) } else { (10_000, 3) };
        let r = if args.steps_only {
            None
        } else {
            Some(phases::waiting::phase_waiting(&args.server, n, runs).await)
        };
        if let Some(r) = &r {
            println!("{}", phases::waiting::table(r));
        }
        let sizes: &[usize] = if args.quick {
            &[100_000]
        } else {
            &[100_000, 1_000_000]
        };
        let core: Vec<_> = sizes
            .iter()
            .map(|&n| phases::waiting_steps::core_steps(n, 3))
            .collect();
        let served = args
            .step_waiters
            .unwrap_or(if args.quick { 2_000 } else { 19_000 });
        let steps = phases::waiting_steps::server_steps(&args.server, served).await;
        println!("{}", phases::waiting_steps::table(&core, &steps));
        let mut goals = r.as_ref().map(phases::waiting::goals).unwrap_or_default();
        goals.extend(phases::waiting_steps::goals(&steps));
        finish(&goals, args.strict, 0);
    }
    if args.sale_only {
        let rows = phase_sale(&args, &sz).await;
        println!("{}", scenario_table(&rows));
        let oversold: i64 = rows.iter().map(|s| s.oversold).sum();
        println!("oversold units: {oversold}");
        std::process::exit(i32::from(oversold != 0));
    }
    eprintln!("phase 1: cost per call and throughput");
    let mut ops = phase_ops(&args, &sz, 1);
    ops.extend(phase_ops(&args, &sz, sz.many_keys));
    eprintln!("phase 1c: interleaved hot-key CPU ratios");
    let ratios = phase_ratios(&args, &sz);
    eprintln!("phase 1d: CPU ratios bare and as deployed (AOF + replica)");
    let deployed = phase_deployed(&args, &sz);
    eprintln!("phase 1e: whole-server CPU per request, bare and as deployed");
    let (server_cpu, server_cpu_variants) = phases::server_cpu::phase(
        &args.server,
        None,
        false,
        &phases::server_cpu::Only::default(),
        cpu_requests(&args),
        args.rounds,
    );
    eprintln!("phase 1f: memory per buyer");
    let buyer_memory =
        phases::buyers::phase(&args.server, if args.quick { 100_000 } else { 1_000_000 });
    eprintln!("phase 1b: server throughput (redis-benchmark)");
    let throughput = phase_throughput(&args, &sz);
    eprintln!("phases 2-3: memory and growth");
    let (growth, memory) = phase_growth(&args, &sz);
    let (edges, many_keys) = phase_edges(&args, &sz);
    eprintln!("phase 4: expiry");
    let expiry = phase_expiry(&args, sz.expiry);
    eprintln!("phase 5: flash sale");
    let scenario = phase_sale(&args, &sz).await;

    let r = &ratios;
    let tp = |imp: &str| {
        throughput
            .iter()
            .find(|t| t.implementation == imp)
            .map_or(vec![], |t| t.p16_runs.clone())
    };
    let (inv_runs, seed_runs) = (tp("inventory"), tp("seed Lua reserve"));
    let p16_ratio = median(
        inv_runs
            .iter()
            .zip(&seed_runs)
            .map(|(a, b)| a / b)
            .collect(),
    );
    let (inv_p16, seed_p16) = (median(inv_runs), median(seed_runs));
    let mem_inv = memory[0].bytes_per_reservation;
    let mem_lua = memory
        .iter()
        .skip(1)
        .map(|m| m.bytes_per_reservation)
        .fold(f64::INFINITY, f64::min);
    let in_goal: Vec<&GrowthRow> = growth
        .iter()
        .filter(|g| g.open <= goals::GOAL_MAX_OPEN)
        .collect();
    let costs: Vec<f64> = in_goal.iter().map(|g| g.usec_per_call).collect();
    let flat = costs.iter().cloned().fold(0.0, f64::max)
        / costs.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut goals = phases::server_cpu::goals(&server_cpu);
    goals.extend(phases::buyers::goals(&buyer_memory));
    goals.extend(deployed_goals(&deployed));
    goals.extend(cpu_goals(r));
    goals.extend([
        at_least(format!("P16 RESERVE throughput >= {}x seed Lua (hot key, redis-benchmark; medians {inv_p16:.0} / {seed_p16:.0} ops/s; median of per-run ratios) = {p16_ratio:.2}", goals::P16_VS_SEED), p16_ratio, goals::P16_VS_SEED),
        at_most(format!("<= {} bytes per open reservation: {mem_inv:.1}", goals::BYTES_PER_RESERVATION), mem_inv, goals::BYTES_PER_RESERVATION),
        Goal { text: format!("below the Lua hash layouts: {mem_inv:.1} < {mem_lua:.1}"), met: mem_inv < mem_lua },
        at_most(format!("cost per call flat within {}x from {} to {} open: {flat:.2}x", goals::FLATNESS, in_goal[0].open, in_goal[in_goal.len() - 1].open), flat, goals::FLATNESS),
        at_most(format!("expiry of {}: all back within {} ms of the deadline: {:.0} ms", expiry.reservations, goals::EXPIRY_BACK_MS, expiry.all_back_after_deadline_ms), expiry.all_back_after_deadline_ms, goals::EXPIRY_BACK_MS),
        at_most(format!("expiry: no PING stall over {} ms: worst {:.2} ms", goals::EXPIRY_PING_MS, expiry.worst_ping_ms), expiry.worst_ping_ms, goals::EXPIRY_PING_MS),
    ]);
    goals.extend(edge_goals(&edges, &many_keys));
    goals.push(Goal {
        text: "no oversold units in any scenario".to_string(),
        met: scenario.iter().all(|s| s.oversold == 0),
    });
    let report = Report {
        date_unix: now_ms() / 1000,
        machine: machine(),
        server: version,
        command: format!(
            "make bench{}{}",
            if args.quick { " QUICK=1" } else { "" },
            if args.huge { " HUGE=1" } else { "" }
        ),
        ops,
        throughput,
        memory,
        growth,
        expiry: Some(expiry),
        edges,
        many_keys: Some(many_keys),
        scenario,
        ratios,
        deployed,
        server_cpu,
        server_cpu_variants,
        buyer_memory,
        goals: goals.iter().map(|g| (g.text.clone(), g.met)).collect(),
    };
    let text = table(&report);
    println!("{text}");
    eprintln!("bench took {:.0?}", started.elapsed());
    let _ = std::fs::create_dir_all(&args.out);
    let suffix = if args.quick { "-quick" } else { "" };
    let _ = std::fs::write(
        format!("{}/results{suffix}.json", args.out),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    let _ = std::fs::write(format!("{}/results{suffix}.md", args.out), &text);
    let points: Vec<(u64, f64, f64)> = report
        .growth
        .iter()
        .map(|g| (g.open, g.usec_per_call, g.bytes_per_reservation))
        .collect();
    if let Err(e) = chart::growth(&format!("{}/growth{suffix}.svg", args.out), &points) {
        eprintln!("chart: {e}");
    }
    let oversold: i64 = report.scenario.iter().map(|s| s.oversold).sum();
    finish(&goals, args.strict, oversold);
}

/// Ends the run: the goals, one line each, and the exit status. An oversold
/// unit always fails the run; a missed goal only with `--strict` (`make
/// bench STRICT=1`), since a slower machine than the goals' own is no
/// broken build.
fn finish(goals: &[Goal], strict: bool, oversold: i64) -> ! {
    println!("goals:");
    for g in goals {
        println!("  {} {}", if g.met { "met   " } else { "MISSED" }, g.text);
    }
    let all_met = goals::report_missed(goals);
    if oversold != 0 {
        eprintln!("FAILED: {oversold} units oversold");
        std::process::exit(1);
    }
    if strict && !all_met {
        eprintln!("FAILED: goals missed (--strict)");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// Requests per whole-server CPU reading (the method: 100,000).
fn cpu_requests(args: &Args) -> usize {
    if args.quick {
        20_000
    } else {
        100_000
    }
}

/// Phase 3b: every edge case, then one command naming many keys.
fn phase_edges(args: &Args, sz: &Sizes) -> (Vec<EdgeRow>, ManyKeysRow) {
    eprintln!("phase 3b: the edges (a key growing, a flood on one key, a big purge, many keys)");
    // Past the index's growth at 1,376,256 records; past 2^20 long txids.
    let ((from, to), (long_from, long_to)) = if args.quick {
        ((30_000, 60_000), (30_000, 40_000))
    } else {
        ((1_100_000, 1_500_000), (1_000_000, 1_100_000))
    };
    let edges = vec![
        stall::growth(args, from, to, ""),
        stall::growth(args, long_from, long_to, UUID_TAG),
        stall::flood(args, sz.flood, 1_500),
        stall::flood(args, sz.flood, 600_000),
        stall::expire_and_purge(args, sz.expiry),
    ];
    let (per_key_us_1k, per_key_us_40k) = stall::many_keys(args);
    (
        edges,
        ManyKeysRow {
            per_key_us_1k,
            per_key_us_40k,
        },
    )
}

/// Phase 3b's goals: in every edge case no command over 1 ms and no PING
/// over 5 ms; a command's cost per key flat from 1,000 to 40,000 keys.
fn edge_goals(edges: &[EdgeRow], m: &ManyKeysRow) -> Vec<Goal> {
    let mut goals = Vec::new();
    for e in edges {
        goals.push(at_most(
            format!(
                "{}: no command over {} ms: slowest {:.2} ms",
                e.case,
                goals::SLOWEST_COMMAND_MS,
                e.slowest_command_ms
            ),
            e.slowest_command_ms,
            goals::SLOWEST_COMMAND_MS,
        ));
        goals.push(at_most(
            format!(
                "{}: no PING over {} ms: worst {:.2} ms",
                e.case,
                goals::WORST_PING_MS,
                e.worst_ping_ms
            ),
            e.worst_ping_ms,
            goals::WORST_PING_MS,
        ));
    }
    goals.push(at_most(format!("one command naming 40,000 keys costs at most {}x per key what one naming 1,000 does: {:.2} / {:.2} us", goals::MANY_KEYS_PER_KEY, m.per_key_us_40k, m.per_key_us_1k), m.per_key_us_40k / m.per_key_us_1k, goals::MANY_KEYS_PER_KEY));
    goals
}

/// Phase 1d's goals, judged in the production setup.
fn deployed_goals(rows: &[DeployedRow]) -> Vec<Goal> {
    let mut goals = Vec::new();
    for r in rows.iter().filter(|r| r.setup.starts_with("production")) {
        let stocked = r.case == "stocked";
        let (hincrby, tair) = if stocked {
            (goals::DEPLOYED_VS_HINCRBY, goals::DEPLOYED_VS_TAIR)
        } else {
            (
                goals::DEPLOYED_VS_HINCRBY_SOLD_OUT,
                goals::DEPLOYED_VS_TAIR_SOLD_OUT,
            )
        };
        let case = format!("{}, {}; median of {} runs", r.setup, r.case, r.runs);
        goals.push(at_most(
            format!(
                "RESERVE CPU <= {hincrby}x HINCRBY ({case}): {:.3} / {:.3} us, ratio {:.2}",
                r.reserve_usec, r.hincrby_usec, r.vs_hincrby
            ),
            r.vs_hincrby,
            hincrby,
        ));
        if let (Some(vs), Some(us)) = (r.vs_tair, r.tair_usec) {
            goals.push(at_most(format!("RESERVE CPU <= {tair}x TairString EXINCRBY MIN 0 ({case}): {:.3} / {us:.3} us, ratio {vs:.2}", r.reserve_usec), vs, tair));
        }
        if stocked {
            goals.push(at_most(
                format!(
                    "RESERVE CPU <= {}x the barrier Lua ({case}): {:.3} / {:.3} us, ratio {:.3}",
                    goals::DEPLOYED_VS_BARRIER,
                    r.reserve_usec,
                    r.barrier_usec,
                    r.vs_barrier
                ),
                r.vs_barrier,
                goals::DEPLOYED_VS_BARRIER,
            ));
            goals.push(at_most(
                format!(
                    "RESERVE CPU <= {}x the seed Lua ({case}): {:.3} / {:.3} us, ratio {:.3}",
                    goals::DEPLOYED_VS_SEED,
                    r.reserve_usec,
                    r.seed_usec,
                    r.vs_seed
                ),
                r.vs_seed,
                goals::DEPLOYED_VS_SEED,
            ));
        }
    }
    goals
}

/// The CPU goals, judged on phase 1c's interleaved ratios.
fn cpu_goals(r: &Ratios) -> Vec<Goal> {
    vec![
        at_most(format!("RESERVE CPU <= {}x seed Lua (hot key, interleaved; median of {} runs): {:.3} / {:.3} us, ratio {:.3}", goals::CPU_VS_SEED, r.runs, r.reserve_usec, r.seed_usec, r.reserve_vs_seed), r.reserve_vs_seed, goals::CPU_VS_SEED),
        at_most(format!("RESERVE CPU <= {}x HINCRBY (hot key, interleaved; median of {} runs): {:.3} / {:.3} us, ratio {:.2}", goals::CPU_VS_HINCRBY, r.runs, r.reserve_usec, r.hincrby_usec, r.reserve_vs_hincrby), r.reserve_vs_hincrby, goals::CPU_VS_HINCRBY),
    ]
}

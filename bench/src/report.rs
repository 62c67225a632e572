//! The report: every phase's rows, the goals, and how they are printed and
//! written (Markdown table, JSON).

use serde::Serialize;

#[derive(Serialize, Clone)]
pub(crate) struct OpRow {
    pub keys: usize,
    pub implementation: &'static str,
    pub op: &'static str,
    pub usec_per_call: f64,
    pub p1_ops_per_s: f64,
    pub p16_ops_per_s: f64,
}

/// Server throughput from redis-benchmark (50 connections), hot key.
#[derive(Serialize, Clone)]
pub(crate) struct ThroughputRow {
    pub implementation: &'static str,
    pub command: &'static str,
    /// Medians over the runs.
    pub p1_ops_per_s: f64,
    pub p16_ops_per_s: f64,
    /// Every run's P16 figure, in run order (cases take turns within a run).
    pub p16_runs: Vec<f64>,
}

#[derive(Serialize)]
pub(crate) struct MemoryRow {
    pub layout: &'static str,
    pub bytes_per_reservation: f64,
}

#[derive(Serialize)]
pub(crate) struct GrowthRow {
    pub open: u64,
    pub usec_per_call: f64,
    /// Right after the fill.
    pub bytes_per_reservation: f64,
    /// Above the goal's range only: 10 s after the fill, when a txid index
    /// that was still growing in housekeeping steps (old and new index both
    /// allocated) has had time to finish.
    pub bytes_per_reservation_10s_later: Option<f64>,
}

/// One edge case of phase 3b.
#[derive(Serialize)]
pub(crate) struct EdgeRow {
    pub case: String,
    pub worst_ping_ms: f64,
    pub p999_ping_ms: f64,
    /// Slowest command SLOWLOG kept (0: none over 1 ms).
    pub slowest_command_ms: f64,
    /// Its first arguments ("" when none).
    pub slowest_command: String,
}

/// One command naming many keys: server time per key at 1,000 and 40,000.
#[derive(Serialize)]
pub(crate) struct ManyKeysRow {
    pub per_key_us_1k: f64,
    pub per_key_us_40k: f64,
}

#[derive(Serialize)]
pub(crate) struct ExpiryRow {
    pub reservations: usize,
    pub all_back_after_deadline_ms: f64,
    pub worst_ping_ms: f64,
}

#[derive(Serialize)]
pub(crate) struct ScenarioRow {
    pub deployment: String,
    pub implementation: &'static str,
    pub skus: usize,
    pub buyers: usize,
    pub units: i64,
    /// Sales run (implementations alternating); the figures are medians.
    pub rounds: usize,
    pub buyers_per_s: f64,
    pub buyers_per_s_min: f64,
    pub buyers_per_s_max: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Units oversold, summed over the sales.
    pub oversold: i64,
}

#[derive(Serialize)]
pub(crate) struct Report {
    pub date_unix: u64,
    pub machine: String,
    pub server: String,
    pub command: String,
    pub ops: Vec<OpRow>,
    pub throughput: Vec<ThroughputRow>,
    pub memory: Vec<MemoryRow>,
    pub growth: Vec<GrowthRow>,
    pub expiry: Option<ExpiryRow>,
    pub edges: Vec<EdgeRow>,
    pub many_keys: Option<ManyKeysRow>,
    pub scenario: Vec<ScenarioRow>,
    pub ratios: Ratios,
    pub deployed: Vec<DeployedRow>,
    /// Whole-server CPU per request: the comparisons, and the table per
    /// variant (markdown).
    pub server_cpu: Vec<crate::phases::server_cpu::CpuRow>,
    pub server_cpu_variants: String,
    pub buyer_memory: crate::phases::buyers::BuyerMemory,
    pub goals: Vec<(String, bool)>,
}

/// Phase 1d: one setup (bare or production) and case (stocked or sold
/// out): medians of each command's usec and of INV.RESERVE's per-run ratios.
#[derive(Serialize, Clone)]
pub(crate) struct DeployedRow {
    pub setup: String,
    pub case: String,
    pub runs: usize,
    pub calls_per_run: usize,
    pub reserve_usec: f64,
    pub hincrby_usec: f64,
    pub seed_usec: f64,
    pub barrier_usec: f64,
    pub tair_usec: Option<f64>,
    pub vs_hincrby: f64,
    pub vs_seed: f64,
    pub vs_barrier: f64,
    pub vs_tair: Option<f64>,
}

/// Phase 1d's table: the production rows first.
pub(crate) fn deployed_table(rows: &[DeployedRow]) -> String {
    let mut sorted: Vec<&DeployedRow> = rows.iter().collect();
    sorted.sort_by_key(|r| !r.setup.starts_with("production"));
    let tair = |v: Option<f64>, digits: usize| {
        v.map_or("not loaded".to_string(), |v| format!("{v:.digits$}"))
    };
    let mut t = String::from("INV.RESERVE (fresh txid, TTL) server CPU per call divided by each peer's, interleaved call by call in one pipeline (INFO commandstats; medians of per-run ratios). Production: `appendonly yes`, `appendfsync everysec`, one replica attached. TairString `EXINCRBY key -1 MIN 0` when TAIRSTRING_MODULE names a built module:\n\n");
    t.push_str(&md_table(
        &[
            "setup",
            "case",
            "vs HINCRBY",
            "vs TairString EXINCRBY",
            "vs barrier Lua",
            "vs seed Lua",
            "usec: INV.RESERVE / HINCRBY / EXINCRBY / barrier / seed",
        ],
        sorted.iter().map(|r| {
            vec![
                r.setup.clone(),
                r.case.clone(),
                format!("{:.2}x", r.vs_hincrby),
                tair(r.vs_tair, 2),
                format!("{:.3}x", r.vs_barrier),
                format!("{:.3}x", r.vs_seed),
                format!(
                    "{:.2} / {:.2} / {} / {:.2} / {:.2}",
                    r.reserve_usec,
                    r.hincrby_usec,
                    tair(r.tair_usec, 2),
                    r.barrier_usec,
                    r.seed_usec
                ),
            ]
        }),
    ));
    t
}

/// Phase 1c: the hot-key CPU ratios the goals are judged on.
#[derive(Serialize, Clone)]
pub(crate) struct Ratios {
    pub runs: usize,
    pub calls_per_run: usize,
    /// Medians over the runs of exact usec / calls.
    pub reserve_usec: f64,
    pub seed_usec: f64,
    pub hincrby_usec: f64,
    /// Medians of the per-run ratios.
    pub reserve_vs_seed: f64,
    pub reserve_vs_hincrby: f64,
}

/// Phase 5's rows: medians over the sales, the range of buyers/s, and the
/// units oversold in all of them.
pub(crate) fn scenario_table(rows: &[ScenarioRow]) -> String {
    md_table(
        &[
            "deployment",
            "implementation",
            "SKUs",
            "buyers",
            "units",
            "sales",
            "buyers/s (median, range)",
            "p50 ms (median)",
            "p99 ms (median)",
            "p99.9 ms (median)",
            "oversold",
        ],
        rows.iter().map(|s| {
            vec![
                s.deployment.clone(),
                s.implementation.to_string(),
                s.skus.to_string(),
                s.buyers.to_string(),
                s.units.to_string(),
                s.rounds.to_string(),
                format!(
                    "{:.0} ({:.0}-{:.0})",
                    s.buyers_per_s, s.buyers_per_s_min, s.buyers_per_s_max
                ),
                format!("{:.2}", s.p50_ms),
                format!("{:.2}", s.p99_ms),
                format!("{:.2}", s.p999_ms),
                s.oversold.to_string(),
            ]
        }),
    )
}

/// A Markdown table: header, separator, one line per row, then a blank line.
pub(crate) fn md_table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let mut t = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    t.push_str(&line(&vec!["---".to_string(); header.len()]).replace(' ', ""));
    for r in rows {
        t.push_str(&line(&r));
    }
    t.push('\n');
    t
}

pub(crate) fn table(report: &Report) -> String {
    let mut t = format!(
        "Machine: {}. Server: {}. Command: `{}`.\n\n",
        report.machine, report.server, report.command
    );
    t.push_str(
        "Whole-server CPU per request (every thread of master and replica; 64 requests written, 64 replies read; setups and variants interleaved; medians over rounds, range of per-round ratios):\n\n",
    );
    t.push_str(&crate::phases::server_cpu::comparisons(&report.server_cpu));
    t.push('\n');
    t.push_str(&report.server_cpu_variants);
    t.push_str("\n### Memory per buyer (phase 1f)\n\n");
    t.push_str(&crate::phases::buyers::table(&report.buyer_memory));
    t.push('\n');
    t.push_str("Server CPU per call, INFO commandstats view (times a module command's own propagation, not a core command's):\n\n");
    t.push_str(&deployed_table(&report.deployed));
    t.push_str(
        "Server throughput, hot key (redis-benchmark: 50 connections, random 12-digit txids; the commands take turns; medians of the runs):\n\n",
    );
    t.push_str(&md_table(
        &["implementation", "command", "P1 ops/s", "P16 ops/s"],
        report.throughput.iter().map(|r| {
            vec![
                r.implementation.to_string(),
                r.command.to_string(),
                format!("{:.0}", r.p1_ops_per_s),
                format!("{:.0}", r.p16_ops_per_s),
            ]
        }),
    ));
    t.push_str("Server CPU per call (INFO commandstats), and throughput from one client connection (client-bound):\n\n");
    t.push_str(&md_table(
        &[
            "keys",
            "implementation",
            "op",
            "usec_per_call",
            "P1 ops/s (1 conn)",
            "P16 ops/s (1 conn)",
        ],
        report.ops.iter().map(|r| {
            vec![
                r.keys.to_string(),
                r.implementation.to_string(),
                r.op.to_string(),
                format!("{:.2}", r.usec_per_call),
                format!("{:.0}", r.p1_ops_per_s),
                format!("{:.0}", r.p16_ops_per_s),
            ]
        }),
    ));
    t.push_str(&md_table(
        &["layout", "bytes per open reservation (16-byte txids)"],
        report.memory.iter().map(|m| {
            vec![
                m.layout.to_string(),
                format!("{:.1}", m.bytes_per_reservation),
            ]
        }),
    ));
    t.push_str("Growth: INV.RESERVE cost over a doubling (a key filled to N takes N more fresh txids; sizes take turns; median of the rounds), and memory at N:\n\n");
    t.push_str(&md_table(
        &[
            "open reservations on the key",
            "INV.RESERVE usec_per_call",
            "bytes per reservation",
        ],
        report.growth.iter().map(|g| {
            vec![
                g.open.to_string(),
                format!("{:.2}", g.usec_per_call),
                match g.bytes_per_reservation_10s_later {
                    Some(later) => {
                        format!("{:.1} ({later:.1} 10 s later)", g.bytes_per_reservation)
                    }
                    None => format!("{:.1}", g.bytes_per_reservation),
                },
            ]
        }),
    ));
    if report
        .growth
        .iter()
        .any(|g| g.open > crate::goals::GOAL_MAX_OPEN)
    {
        t.push_str(&format!(
            "Rows above {} (make bench HUGE=1) are measured in one round and are not part of the flatness goal; their memory is also read 10 s after the fill, since a txid index still growing in housekeeping steps holds the old and the new index until it finishes.\n\n",
            crate::goals::GOAL_MAX_OPEN
        ));
    }
    t.push_str("Edges: the slowest command in SLOWLOG (threshold 1 ms) and the worst wait of a PING probe (about one per millisecond) while:\n\n");
    t.push_str(&md_table(
        &[
            "case",
            "slowest command ms",
            "worst PING ms",
            "p99.9 PING ms",
        ],
        report.edges.iter().map(|e| {
            vec![
                e.case.clone(),
                if e.slowest_command.is_empty() {
                    format!("{:.2}", e.slowest_command_ms)
                } else {
                    format!("{:.2} ({})", e.slowest_command_ms, e.slowest_command)
                },
                format!("{:.2}", e.worst_ping_ms),
                format!("{:.2}", e.p999_ping_ms),
            ]
        }),
    ));
    if let Some(m) = &report.many_keys {
        t.push_str(&format!(
            "One INV.MCANCEL naming each key twice: {:.2} us of server time per key at 1,000 keys, {:.2} us at 40,000.\n\n",
            m.per_key_us_1k, m.per_key_us_40k
        ));
    }
    if let Some(e) = &report.expiry {
        t.push_str(&format!(
            "Expiry: {} reservations sharing one deadline: all units back {:.0} ms after it; worst PING {:.2} ms.\n\n",
            e.reservations, e.all_back_after_deadline_ms, e.worst_ping_ms
        ));
    }
    t.push_str(&scenario_table(&report.scenario));
    t.push_str(&md_table(
        &["goal", "met"],
        report
            .goals
            .iter()
            .map(|(g, ok)| vec![g.clone(), if *ok { "yes".into() } else { "**no**".into() }]),
    ));
    t
}

//! What `--server-cpu` reports: the per-variant table, the comparisons the
//! goals are stated in, and the goals.

use super::variants::Variant;
use super::{Reading, Setup};
use crate::goals::{self, at_most, Goal};
use serde::Serialize;

/// The table: per setup and variant, the medians of master and replica
/// CPU per request and of the per-round ratio to the setup's HINCRBY.
pub(crate) fn table(setups: &[Setup], variants: &[Variant], out: &[Vec<Vec<Reading>>]) -> String {
    let floor = variants.iter().position(|v| v.name == "HINCRBY");
    let mut t = String::from(
        "| setup | request | master ns/request | replica ns/request | master / HINCRBY (range over rounds) | INFO commandstats µs/call (master) |\n|---|---|---|---|---|---|\n",
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
            let stat = crate::common::median(rounds.iter().map(|x| x.stat_us).collect());
            t += &format!(
                "| {} | {} | {m:.0} | {} | {} | {stat:.2} |\n",
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

/// Which process's CPU a comparison reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Master,
    Replica,
    /// Master and replica summed: the whole deployment's CPU per request.
    Both,
}

/// One comparison: what it says, numerator and denominator variants,
/// which process it is read on, and its goal as deployed, if any.
pub(crate) struct Comparison {
    pub what: &'static str,
    pub num: &'static str,
    pub den: &'static str,
    pub side: Side,
    pub goal: Option<f64>,
}

const fn cmp(
    what: &'static str,
    num: &'static str,
    den: &'static str,
    side: Side,
    goal: Option<f64>,
) -> Comparison {
    Comparison {
        what,
        num,
        den,
        side,
        goal,
    }
}

const STOCKED: &str = "INV.RESERVE stocked";

/// The comparisons the whole-server goals are stated in.
pub(crate) const COMPARISONS: &[Comparison] = &[
    cmp(
        "reserve stocked / HINCRBY",
        STOCKED,
        "HINCRBY",
        Side::Master,
        Some(goals::WS_VS_HINCRBY),
    ),
    cmp(
        "reserve stocked / EXINCRBY stocked",
        STOCKED,
        "EXINCRBY stocked",
        Side::Master,
        Some(goals::WS_VS_TAIR),
    ),
    cmp(
        "reserve sold out / EXINCRBY sold out",
        "INV.RESERVE sold out",
        "EXINCRBY sold out",
        Side::Master,
        Some(goals::WS_VS_TAIR_SOLD_OUT),
    ),
    cmp(
        "replica: reserve / EXINCRBY",
        STOCKED,
        "EXINCRBY stocked",
        Side::Replica,
        Some(goals::WS_REPLICA_VS_TAIR),
    ),
    cmp(
        "replica: reserve / HINCRBY",
        STOCKED,
        "HINCRBY",
        Side::Replica,
        None,
    ),
    cmp(
        "reserve stocked / barrier Lua",
        STOCKED,
        "barrier Lua",
        Side::Master,
        Some(goals::WS_VS_BARRIER),
    ),
    cmp(
        "reserve stocked / seed Lua",
        STOCKED,
        "seed Lua",
        Side::Master,
        None,
    ),
    cmp(
        "reserve stocked / seckill Lua",
        STOCKED,
        "seckill Lua",
        Side::Master,
        Some(goals::WS_VS_SECKILL),
    ),
    cmp(
        "reserve BUYER stocked / seckill Lua",
        "INV.RESERVE BUYER stocked",
        "seckill Lua",
        Side::Master,
        Some(goals::WS_BUYER_VS_SECKILL),
    ),
    cmp(
        "reserve BUYER sold out / seckill Lua sold out",
        "INV.RESERVE BUYER sold out",
        "seckill Lua sold out",
        Side::Master,
        Some(goals::WS_BUYER_VS_SECKILL_SOLD_OUT),
    ),
    cmp(
        "reserve BUYER stocked / reserve stocked",
        "INV.RESERVE BUYER stocked",
        STOCKED,
        Side::Master,
        Some(goals::WS_BUYER_VS_RESERVE),
    ),
    cmp(
        "reserve FEED stocked / reserve stocked",
        "INV.RESERVE FEED stocked",
        STOCKED,
        Side::Master,
        Some(goals::WS_FEED_VS_RESERVE),
    ),
    cmp(
        "replica: reserve FEED / reserve",
        "INV.RESERVE FEED stocked",
        STOCKED,
        Side::Replica,
        Some(goals::WS_FEED_VS_RESERVE),
    ),
    cmp(
        "master + replica: reserve FEED / reserve",
        "INV.RESERVE FEED stocked",
        STOCKED,
        Side::Both,
        None,
    ),
    cmp(
        "reserve FEED stocked / seckill Lua",
        "INV.RESERVE FEED stocked",
        "seckill Lua",
        Side::Master,
        Some(goals::WS_FEED_VS_SECKILL),
    ),
    cmp(
        "reserve sold out / seckill Lua sold out",
        "INV.RESERVE sold out",
        "seckill Lua sold out",
        Side::Master,
        None,
    ),
    cmp(
        "CONFIRM / reserve stocked",
        "INV.CONFIRM",
        STOCKED,
        Side::Master,
        Some(goals::WS_CONFIRM_CANCEL),
    ),
    cmp(
        "CANCEL / reserve stocked",
        "INV.CANCEL",
        STOCKED,
        Side::Master,
        Some(goals::WS_CONFIRM_CANCEL),
    ),
];

/// One comparison on one setup, as the report keeps it.
#[derive(Serialize, Clone)]
pub(crate) struct CpuRow {
    pub setup: String,
    pub what: String,
    /// Median of the per-round ratios, and their range.
    pub ratio: f64,
    pub lo: f64,
    pub hi: f64,
    pub rounds: usize,
    pub requests: usize,
}

/// One comparison on one setup: the median of per-round ratios and their
/// range; None when a side was not measured (no TairString, no replica).
fn compare(
    variants: &[Variant],
    readings: &[Vec<Reading>],
    c: &Comparison,
) -> Option<(f64, f64, f64)> {
    let at = |name: &str| variants.iter().position(|v| v.name == name);
    let (a, b) = (at(c.num)?, at(c.den)?);
    let side = |x: &Reading| match c.side {
        Side::Master => Some(x.master_ns),
        Side::Replica => x.replica_ns,
        Side::Both => Some(x.master_ns + x.replica_ns?),
    };
    let per: Vec<f64> = readings[a]
        .iter()
        .zip(&readings[b])
        .map(|(x, y)| Some(side(x)? / side(y)?))
        .collect::<Option<_>>()?;
    if per.is_empty() {
        return None;
    }
    let (lo, hi) = per
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    Some((crate::common::median(per), lo, hi))
}

/// Every comparison measured on every setup.
pub(crate) fn rows(
    setups: &[Setup],
    variants: &[Variant],
    out: &[Vec<Vec<Reading>>],
    requests: usize,
) -> Vec<CpuRow> {
    let mut rows = Vec::new();
    for (s, readings) in setups.iter().zip(out) {
        for c in COMPARISONS {
            if let Some((ratio, lo, hi)) = compare(variants, readings, c) {
                rows.push(CpuRow {
                    setup: s.label.clone(),
                    what: c.what.to_string(),
                    ratio,
                    lo,
                    hi,
                    rounds: readings.first().map_or(0, Vec::len),
                    requests,
                });
            }
        }
    }
    rows
}

/// The comparisons, one row each, a column per setup.
pub(crate) fn comparisons(rows: &[CpuRow]) -> String {
    let mut setups: Vec<&str> = Vec::new();
    for r in rows {
        if !setups.contains(&r.setup.as_str()) {
            setups.push(&r.setup);
        }
    }
    let mut t = String::from("| whole-server CPU per request, median (range) |");
    for s in &setups {
        t += &format!(" {s} |");
    }
    t += "\n|---|";
    t += &"---|".repeat(setups.len());
    t += "\n";
    for c in COMPARISONS {
        let cells: Vec<String> = setups
            .iter()
            .map(|s| {
                rows.iter()
                    .find(|r| r.setup == *s && r.what == c.what)
                    .map_or("-".into(), |r| {
                        format!("{:.2}x ({:.2}-{:.2})", r.ratio, r.lo, r.hi)
                    })
            })
            .collect();
        if cells.iter().any(|c| c != "-") {
            t += &format!("| {} | {} |\n", c.what, cells.join(" | "));
        }
    }
    t
}

/// The goals, judged on the deployed setup's comparisons (those measured).
pub(crate) fn goals(rows: &[CpuRow]) -> Vec<Goal> {
    COMPARISONS
        .iter()
        .filter_map(|c| {
            let bound = c.goal?;
            let r = rows.iter().find(|r| r.setup == "deployed" && r.what == c.what)?;
            Some(at_most(
                format!(
                    "whole-server CPU, deployed: {} <= {bound}x: {:.2}x (range {:.2}-{:.2}, {} rounds)",
                    c.what, r.ratio, r.lo, r.hi, r.rounds
                ),
                r.ratio,
                bound,
            ))
        })
        .collect()
}
